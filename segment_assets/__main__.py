from segment_assets.cli import main

raise SystemExit(main())

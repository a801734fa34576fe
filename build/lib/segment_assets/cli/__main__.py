from segment_assets.cli.commands import main

raise SystemExit(main())

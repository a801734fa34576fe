from segment_assets.cli.doctor.report import main

raise SystemExit(main())

from dcpue.cli import main

raise SystemExit(main())

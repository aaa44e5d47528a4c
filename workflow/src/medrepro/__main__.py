from medrepro.cli import main

raise SystemExit(main())

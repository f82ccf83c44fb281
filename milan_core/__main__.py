"""``python -m milan_core``: the command line."""

from milan_core.cli import main

raise SystemExit(main())

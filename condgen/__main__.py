"""``python -m condgen``: the ``condgen`` command."""

from condgen.cli import main

raise SystemExit(main())

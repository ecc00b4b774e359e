"""``python -m hive.cli``: the ``hive`` command."""

from hive.cli import main

raise SystemExit(main())

"""``python -m cli``: the same as the ``citeqa`` command."""

from cli.main import main

raise SystemExit(main())

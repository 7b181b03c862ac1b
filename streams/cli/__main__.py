"""``python -m streams.cli``: the ``taskstream`` command line."""

from streams.cli.main import main

raise SystemExit(main())

"""``python -m vlmteach_fast ...`` is the ``vlmteach-fast`` command."""

from .cli import main

raise SystemExit(main())

"""``python -m service serve ...``: the same CLI as ``gradserve``."""

from .cli import main

raise SystemExit(main())

"""``python -m bench``: run the benchmark suite and print its table."""

from .run import main

raise SystemExit(main())

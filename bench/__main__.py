"""``python -m bench``: run the benchmark suite and print its table."""

import os
import sys


def _preset_threads(argv: list[str]) -> None:
    # BLAS thread pools size themselves when numpy loads, so --threads must act before that.
    for i, arg in enumerate(argv):
        n = argv[i + 1] if arg == "--threads" and i + 1 < len(argv) else \
            arg.partition("=")[2] if arg.startswith("--threads=") else None
        if n:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = n


_preset_threads(sys.argv[1:])

from .run import main  # noqa: E402  (after the thread settings)

raise SystemExit(main())

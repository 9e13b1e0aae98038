"""Gradserve's HTTP service.

The transport-free core (:mod:`service.core`, :mod:`service.wire`, :mod:`service.errors`,
:mod:`service.settings`) imports no web framework; :func:`create_app` (FastAPI) is loaded on
first use so that ``import service.core`` stays light.

>>> from service import create_app   # doctest: +SKIP
>>> app = create_app()               # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app
        return create_app
    raise AttributeError(f"module 'service' has no attribute {name!r}")

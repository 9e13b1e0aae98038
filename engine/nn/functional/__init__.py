"""``engine.nn.functional``: torch.nn.functional's ops with torch's names, signatures and gradients.

Ops live in private modules (``_activation``, ``_loss``, ...) and register themselves in
:data:`engine.OPS` under the ``nn.functional.`` prefix. This package imports every private module
in it, so a new module needs no edit here, and re-exports each registered op by its short name.

>>> import engine.nn.functional as F
>>> F.cross_entropy(engine.tensor([[2.0, 0.5, -1.0]]), engine.tensor([0]))
tensor(0.2413)
"""

from __future__ import annotations

import importlib
import pkgutil

from ...ops import OPS

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

_PREFIX = "nn.functional."
_exports = {name[len(_PREFIX):]: info.fn for name, info in OPS.items() if name.startswith(_PREFIX)}
globals().update(_exports)


def _inplace_form(fn):  # noqa: ANN001, ANN202
    def inplace_fn(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        return fn(*args, **kwargs, inplace=True)

    inplace_fn.__name__ = inplace_fn.__qualname__ = fn.__name__ + "_"
    inplace_fn.__doc__ = f"``{fn.__name__}(..., inplace=True)``."
    return inplace_fn


# torch's in-place forms: F.relu_(x) is F.relu(x, inplace=True)
_inplace = {n + "_": _inplace_form(_exports[n]) for n in
            ("celu", "elu", "hardtanh", "leaky_relu", "relu", "rrelu", "selu", "threshold") if n in _exports}
globals().update(_inplace)

__all__ = sorted(_exports)  # (the registered ops; the in-place forms are reachable as attributes)

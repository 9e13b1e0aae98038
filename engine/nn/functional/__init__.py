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

__all__ = sorted(_exports)

"""``engine.nn``: torch.nn's functional API, at ``engine.nn.functional``.

>>> import engine.nn.functional as F
>>> F.relu(engine.tensor([-1.0, 2.0]))
tensor([0., 2.])
"""

from __future__ import annotations

from . import functional

__all__ = ["functional"]

"""``engine.nn``: torch.nn's functional API, at ``engine.nn.functional`` (also ``F`` below).

>>> import engine.nn.functional as F
>>> F.relu(engine.tensor([-1.0, 2.0]))
tensor([0., 2.])
"""

from __future__ import annotations

from . import functional
from . import functional as F  # noqa: N812  (torch's conventional alias)

__all__ = ["functional", "F"]

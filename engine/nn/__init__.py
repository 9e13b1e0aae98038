"""``engine.nn``: torch.nn's modules, parameters and functional API.

>>> net = engine.nn.Sequential(engine.nn.Linear(3, 2), engine.nn.ReLU())
>>> [name for name, _ in net.named_parameters()]
['0.weight', '0.bias']
>>> import engine.nn.functional as F
>>> F.relu(engine.tensor([-1.0, 2.0]))
tensor([0., 2.])
"""

from __future__ import annotations

from . import functional, init, modules
from .modules import *  # noqa: F403  (torch.nn's namespace: every module class at engine.nn.X)
from .modules import __all__ as _modules_all
from .parameter import Buffer, Parameter

__all__ = ["functional", "init", "modules", "Parameter", "Buffer", *_modules_all]

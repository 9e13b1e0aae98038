"""Optimizers (``engine.optim.SGD``, ``Adam``, ...) and learning-rate schedules (``lr_scheduler``),
as torch.optim: the same names, arguments, defaults, state layout and ``state_dict`` format."""

from . import lr_scheduler, optimizer
from .algorithms import ASGD, SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, RAdam, RMSprop, Rprop
from .optimizer import Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta",
           "Rprop", "ASGD", "lr_scheduler", "optimizer"]

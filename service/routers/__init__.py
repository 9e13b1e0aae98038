"""HTTP routers, one per concern: gradients, the op catalogue, health."""

from . import grad, health, ops

__all__ = ["grad", "health", "ops"]

"""All public ops. Importing this package registers them in :data:`OPS` and binds Tensor operators.

Modules by kind of op: ``elementwise``, ``shape``, ``reduction``, ``indexing``, ``sorting``,
``creation``, ``composite`` (compositions only, no primitive), ``matrix``, ``linalg_prims`` (the
matrix primitives: matmul, tril/triu, diagonal, einsum, cross, vector norm), ``lapack_prims``
(inverse, det, solvers, factorizations) and ``special_prims`` (the special functions'), named
apart from the namespaces :mod:`engine.linalg` and :mod:`engine.special` built on them.
Each primitive is one record in the module of its public op: numpy forward, VJP, JVP, batching
rule and shape rule side by side (see :mod:`engine._autograd`), so adding an op means adding its
primitive's record (if it needs a new primitive) and its public function with ``@op`` there::

    @primitive(save=(0,))
    def _cube(x):
        return x ** 3

    _cube.defvjp(lambda ctx, g, x: g * 3 * x * x)
    _cube.defjvp(diagonal_jvp)
    _cube.defbatch(elementwise_batch)
    _cube.defshape(elementwise_shape)

    @op(method=True)
    def cube(input):
        return _cube(input)
"""

from __future__ import annotations

from .._autograd import scalar_operator
from ..tensor import Tensor
from . import (  # noqa: F401  (registration)
    composite,  # compositions of the others (each module imports what it builds on)
    creation,
    elementwise,
    indexing,
    lapack_prims,
    linalg_prims,
    matrix,
    reduction,
    shape,
    sorting,
    special_prims,
)
from ._registry import OPS, OpInfo, lookup, op, top_level


def _reflect(fn):
    return lambda self, other: fn(other, self)


_E = elementwise
for _name, _fn in {"add": _E.add, "sub": _E.sub, "mul": _E.mul, "truediv": _E.div, "pow": _E.pow}.items():
    setattr(Tensor, f"__{_name}__", _fn)
    setattr(Tensor, f"__r{_name}__", _reflect(_fn))
for _name, _prim, _fn in (("add", _E._add, _E.add), ("sub", _E._sub, _E.sub), ("mul", _E._mul, _E.mul),
                          ("truediv", _E._div, _E.div)):
    # tensor <op> Python number: straight to the primitive (the scalar chain is nothing else)
    setattr(Tensor, f"__{_name}__", scalar_operator(_prim, _fn))
    setattr(Tensor, f"__r{_name}__", scalar_operator(_prim, _fn, reflected=True))
for _name, _fn in {"eq": _E.eq, "ne": _E.ne, "lt": _E.lt, "le": _E.le, "gt": _E.gt, "ge": _E.ge}.items():
    setattr(Tensor, f"__{_name}__", _fn)
Tensor.__neg__ = _E.neg
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = _E.abs
Tensor.__floordiv__ = lambda self, other: _E.div(self, other, rounding_mode="floor")
Tensor.__rfloordiv__ = lambda self, other: _E.div(other, self, rounding_mode="floor")
Tensor.divide = Tensor.div
Tensor.subtract = Tensor.sub

# Aliases of Tensor-method ops are methods too, as in torch (x.absolute(), x.swapaxes(0, 1), ...).
for _name, _info in OPS.items():
    if "." not in _name and _name != _info.name and not hasattr(Tensor, _name):
        _method = getattr(Tensor, _info.name, None)
        if _method is not None:
            setattr(Tensor, _name, _method)

# In-place methods and views last: they wrap every op registered above.
from . import inplace  # noqa: E402, F401  (registration)

# The namespaces engine.linalg and engine.special stand above this package: engine/__init__
# imports them, and only then reads the top-level names (linalg registers det, inverse, ...).
__all__ = ["OPS", "OpInfo", "lookup", "op", "top_level"]

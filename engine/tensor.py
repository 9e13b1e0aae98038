"""The Tensor: a numpy array plus its place in the autograd graph.

Op methods (``x.exp()``, ``x + y``, ...) are attached by the op modules, each op defined once;
the in-place ones (``x.add_(y)``, ``x[0] = v``) by :mod:`engine.ops.inplace`, which also explains
views and version counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import _dtype, _tensor_str
from ._dtype import dtype as DType

# The autograd core (engine._autograd) sits above this module and registers itself here when it
# is imported, so Tensor.backward and friends reach it without an upward import.
_engine: Any = None
# The public forward-AD levels, innermost last. engine.autograd.forward_ad pushes and pops this
# very list (its dual_level); repr reads it to show a tangent as torch's does, without this
# bottom layer importing the autograd above it.
forward_levels: list[int] = []

__all__ = ["Tensor", "Size", "tensor", "as_tensor", "from_numpy", "is_tensor", "numel", "memory_format",
           "contiguous_format", "preserve_format", "channels_last", "channels_last_3d"]


class memory_format:
    """A tensor layout for ``clone``/``contiguous`` (``torch.memory_format``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"engine.{self.name}"

    def __reduce__(self) -> str:
        return self.name


contiguous_format = memory_format("contiguous_format")  # row-major (C order)
preserve_format = memory_format("preserve_format")      # the source's strides
channels_last = memory_format("channels_last")          # NCHW tensors laid out as NHWC
channels_last_3d = memory_format("channels_last_3d")    # NCDHW tensors laid out as NDHWC


def format_order(fmt: memory_format, ndim: int) -> tuple[int, ...]:
    """The dims of a tensor laid out in ``fmt``, outermost first (not for preserve_format)."""
    if fmt is contiguous_format:
        return tuple(range(ndim))
    rank = {channels_last: 4, channels_last_3d: 5}.get(fmt)
    if rank is None:
        raise TypeError(f"expected a memory format, got {fmt!r}")
    if ndim != rank:
        raise RuntimeError(f"required rank {rank} tensor to use {fmt.name} format")
    return (0, *range(2, ndim), 1)


def laid_out(a: Any, order: tuple[int, ...]) -> bool:
    """Whether array ``a`` is dense with its dims in memory in ``order`` (outermost first), dims
    of size 1 aside (torch's contiguity rule)."""
    if type(a) is not np.ndarray:
        return tuple(order) == tuple(range(len(order)))
    step = a.itemsize
    for d in reversed(order):
        if a.shape[d] != 1:
            if a.strides[d] != step:
                return False
            step *= a.shape[d]
    return True


_NON_LEAF_RG_MSG = (
    "you can only change requires_grad flags of leaf variables. If you want to use a computed "
    "variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach().")


class Size(tuple):
    """A tensor shape (``torch.Size``): a tuple of ints."""

    def __repr__(self) -> str:
        return f"torch.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


_new = object.__new__


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    >>> x = engine.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward(); x.grad
    tensor([2., 4.])
    """

    # ``_fw`` (forward-mode tangents) and ``_bat`` (vmap's batch) are set only on dual and
    # batched tensors (see engine._autograd): reading them goes through getattr. So are the
    # mutation slots (engine.ops.inplace): ``_vc`` the version counter (a one-item list shared by
    # a tensor and its views), ``_vbase`` a view's base and ``_vinfo`` how to re-derive the view.
    __slots__ = ("_data", "_rg", "grad_fn", "_out", "_grad", "_hooks", "_fw", "_bat", "_vc", "_vbase",
                 "_vinfo", "_views", "__weakref__")
    __array_priority__ = 1000  # numpy scalars defer to our reflected operators

    @classmethod
    def _make(cls, data: Any, grad_fn: Any = None, out: int = 0, rg: bool = False) -> Tensor:
        # Every tensor the engine creates comes through here: keep it short.
        t = _new(cls)
        if type(data) is not np.ndarray and type(data) is not Shadow:
            data = np.asarray(data)
        t._data = data
        t._out = out
        t._grad = None
        t._hooks = None
        # Only floating outputs of a recorded node require grad (indices, masks never do).
        if rg and data.dtype.kind == "f":
            t._rg = True
            t.grad_fn = grad_fn
        else:
            t._rg = False
            t.grad_fn = None
        return t

    def __init__(self, *args: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        # torch's legacy constructor: ``Tensor(2, 3)`` is a 2x3 tensor, ``Tensor([1, 2])`` data;
        # either way float32 unless ``dtype`` says otherwise.
        dtype = _dtype.float32 if dtype is None else dtype
        if args and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            src = tensor(np.zeros(args), dtype=dtype)
        elif len(args) <= 1:
            src = tensor(args[0] if args else (), dtype=dtype)
        else:
            raise TypeError("Tensor() takes one data argument or integer sizes")
        self._data, self.grad_fn, self._out, self._grad, self._hooks = src._data, None, 0, None, None
        self._rg = False
        if requires_grad:
            self.requires_grad_()

    # ------------------------------------------------------------ metadata
    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: int | None = None) -> Size | int:
        return Size(self._data.shape) if dim is None else self._data.shape[dim]

    def stride(self, dim: int | None = None) -> tuple[int, ...] | int:
        """Elements to step in memory along each dim (``torch.Tensor.stride``): a transpose's are
        its base's reversed, an expanded dim's 0.

        >>> engine.ones(2, 3).t().stride()
        (1, 3)
        """
        d = self._data
        if type(d) is np.ndarray:
            st = tuple(k // d.itemsize for k in d.strides)
        else:  # a batched tensor's stand-in under vmap: laid out in C order
            st, n = [], 1
            for k in reversed(d.shape):
                st.append(n)
                n *= k
            st = tuple(reversed(st))
        if dim is None:
            return st
        if not st:
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        if not -len(st) <= dim < len(st):
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-len(st)}, {len(st) - 1}], but got {dim})")
        return st[dim]

    def is_contiguous(self, memory_format: memory_format = contiguous_format) -> bool:
        """Whether the values lie in C order, dims of size 1 aside (``torch.Tensor.is_contiguous``).

        >>> engine.ones(2, 3).t().is_contiguous()
        False
        """
        d = self._data
        if memory_format is contiguous_format:
            return type(d) is not np.ndarray or d.flags.c_contiguous
        rank = {channels_last: 4, channels_last_3d: 5}.get(memory_format)
        if rank is None:
            raise RuntimeError(f"is_contiguous: memory format {memory_format!r} is not supported")
        return d.ndim == rank and laid_out(d, format_order(memory_format, rank))

    def element_size(self) -> int:
        """Bytes per element (``torch.Tensor.element_size``)."""
        return self._data.dtype.itemsize

    @property
    def itemsize(self) -> int:
        return self._data.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(self._data.size) * self._data.dtype.itemsize

    @property
    def dtype(self) -> DType:
        return _dtype.from_numpy_dtype(self._data.dtype)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    @property
    def device(self) -> str:
        return "cpu"

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    # ------------------------------------------------------------ autograd state
    @property
    def requires_grad(self) -> bool:
        return self._rg

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None:
            # torch: the attribute of a non-leaf cannot be set at all (requires_grad_ may set True)
            if value:
                raise RuntimeError("you can only change requires_grad flags of leaf variables.")
            raise RuntimeError(_NON_LEAF_RG_MSG)
        if value and self._data.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self._rg = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Make this leaf record operations (in place); returns the tensor."""
        if self.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(_NON_LEAF_RG_MSG)
            return self
        self.requires_grad = requires_grad
        return self

    @property
    def retains_grad(self) -> bool:
        """True for a non-leaf whose ``.grad`` is kept (see :meth:`retain_grad`)."""
        node = self.grad_fn
        ref = node.retains.get(self._out) if node is not None and node.retains else None
        return ref is not None and ref() is self

    @property
    def grad(self) -> Tensor | None:
        """The gradient accumulated by ``backward`` (leaves, and non-leaves that retain it)."""
        if self._grad is None and self.grad_fn is not None and not self.retains_grad:
            import warnings
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
                "attribute won't be populated during autograd.backward(). If you indeed want the .grad "
                "field to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. "
                "If you access the non-leaf Tensor by mistake, make sure you access the leaf Tensor "
                "instead. See github.com/pytorch/pytorch/pull/30531 for more informations.",
                UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        self._grad = value

    @property
    def output_nr(self) -> int:
        """Which output of its ``grad_fn`` this tensor is (0 for leaves)."""
        return self._out

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def _version(self) -> int:
        """How many in-place ops this tensor's storage has seen (shared with its views)."""
        vc = getattr(self, "_vc", None) or getattr(getattr(self, "_vbase", None), "_vc", None)
        return vc[0] if vc else 0

    @property
    def _base(self) -> Tensor | None:
        """The tensor this one is a view of (None for a tensor that is not a view)."""
        return getattr(self, "_vbase", None)

    def _is_view(self) -> bool:
        return getattr(self, "_vbase", None) is not None

    @property
    def data(self) -> Tensor:
        return Tensor._make(self._data)

    def detach(self) -> Tensor:
        """A tensor sharing the values and the version counter, cut from the graph."""
        t = Tensor._make(self._data)
        t._vc = _engine.version_counter(self)
        if type(self._data) is Shadow:  # under vmap: the same batch
            bat = getattr(self, "_bat", None)
            if bat is not None:
                t._bat = bat
        return t

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        _engine.retain_tensor_grad(self)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Any:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor replaces it."""
        return _engine.register_tensor_hook(self, hook)

    def backward(self, gradient: Tensor | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Any = None) -> None:
        """Accumulate the gradient of this tensor into the leaves' ``.grad``."""
        _engine.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    # ------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        """The values as a numpy array sharing memory, read-only: a write behind the engine's back
        would bump no version counter and so silently corrupt tensors saved for backward (mutate
        through the in-place ops instead)."""
        if self._rg:  # as torch: only while grad mode is on
            if _engine.is_grad_enabled():
                raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                                   "tensor.detach().numpy() instead.")
        return _readonly(self._data)

    def item(self) -> float | int | bool:
        if self._data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._data.reshape(()).item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._data.reshape(()).item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if dtype is not None and np.dtype(dtype) != self._data.dtype:
            return self._data.astype(dtype)
        return self._data.copy() if copy else _readonly(self._data)

    def __iter__(self) -> Iterator[Tensor]:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    __hash__ = object.__hash__

    def __getstate__(self) -> tuple:
        # A copy (pickle, deepcopy) is a tensor of its own: not a view, with no views
        state = {k: getattr(self, k) for k in Tensor.__slots__
                 if k not in _NOT_COPIED and hasattr(self, k)}
        return None, state

    def __setstate__(self, state: tuple) -> None:
        for k, v in state[1].items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        # torch's layout and print options (engine.set_printoptions); see engine/_tensor_str.py
        def tangent() -> Tensor | None:
            fw = getattr(self, "_fw", None)
            return fw.get(forward_levels[-1]) if fw and forward_levels else None

        return _tensor_str.tensor_repr(self._data, self.dtype, _dtype.get_default_dtype(),
                                       None if self.grad_fn is None else self.grad_fn.name(),
                                       self._rg, tangent)


_NOT_COPIED = frozenset({"__weakref__", "_views", "_vinfo", "_vbase"})


class VmapFallback(Exception):
    """Raised when code under a vectorized ``vmap`` reads the values of a batched tensor outside
    a primitive (a value the batching rules cannot see): ``vmap`` then runs the function once per
    batch element instead."""


class Shadow:
    """A batched tensor's ``_data`` under a vectorized ``vmap``: the shape and dtype of one batch
    element, and no values. Shape logic works on it as on an array; any read of its values (a
    numpy call, ``np.asarray``, indexing) raises :class:`VmapFallback`, so that no value of one
    element can silently stand in for the batch. The values live in the tensor's ``_bat``."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: tuple, dtype: np.dtype) -> None:
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for k in self.shape:
            n *= k
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    def astype(self, dtype: Any, copy: bool = True) -> Shadow:
        return Shadow(self.shape, dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, *a: Any, **k: Any) -> np.ndarray:
        raise VmapFallback("a numpy conversion")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raise VmapFallback(f"numpy.{ufunc.__name__}")

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        if func in _SHAPE_ONLY and args and args[0] is self:  # the values are not read
            return func(np.broadcast_to(np.zeros((), self.dtype), self.shape), *args[1:], **kwargs)
        raise VmapFallback(f"numpy.{func.__name__}")

    def __getattr__(self, name: str) -> Any:
        raise VmapFallback(f"ndarray.{name}")

    def __getitem__(self, key: Any) -> Any:
        raise VmapFallback("indexing")

    def __repr__(self) -> str:
        return f"Shadow({self.shape}, {self.dtype})"


_SHAPE_ONLY = {np.zeros_like, np.ones_like, np.empty_like, np.shape, np.ndim, np.size}


def _value_read(name: str) -> Callable:
    def op(self: Shadow, *args: Any) -> Any:
        raise VmapFallback(f"the {name} operator")
    return op


# Python's operators look on the type, past __getattr__: each one reads values.
for _op in ("lt", "le", "gt", "ge", "eq", "ne", "add", "radd", "sub", "rsub", "mul", "rmul", "truediv",
            "rtruediv", "floordiv", "rfloordiv", "mod", "rmod", "pow", "rpow", "neg", "pos", "abs", "invert",
            "and", "rand", "or", "ror", "xor", "rxor", "matmul", "rmatmul", "bool", "float", "int", "index",
            "iter", "contains"):
    setattr(Shadow, f"__{_op}__", _value_read(_op))
Shadow.__hash__ = object.__hash__  # type: ignore[assignment]


def _readonly(a: np.ndarray) -> np.ndarray:
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


# ---------------------------------------------------------------- construction
def _infer(data: Any, np_dtype: np.dtype | None = None) -> np.ndarray:
    if isinstance(data, Tensor):
        return data._data.copy()
    if isinstance(data, np.ndarray):
        return data.copy()
    if isinstance(data, np.generic):
        return np.asarray(data)
    if np_dtype is not None:  # straight to the asked dtype: no rounding through float32
        return np.array(data, dtype=np_dtype)
    arr = np.array(data)
    if arr.dtype == np.float64:
        return arr.astype(np.float32)  # Python floats default to float32, as in torch
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind not in "fb":
        raise TypeError(f"can't convert {type(data).__name__} of dtype {arr.dtype} to a tensor")
    return arr


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Build a leaf tensor from a number, a (nested) list or a numpy array (``torch.tensor``).

    >>> engine.tensor([1.0, 2.0], requires_grad=True).dtype
    engine.float32
    """
    np_dtype = _dtype.to_dtype(dtype).np if dtype is not None else None
    arr = _infer(data, np_dtype)
    if np_dtype is not None:
        arr = arr.astype(np_dtype, copy=False)
    else:
        _dtype.from_numpy_dtype(arr.dtype)  # rejects unsupported dtypes
    t = Tensor._make(arr)
    if requires_grad:
        if arr.dtype.kind != "f":  # torch's wording differs from requires_grad_()'s here
            raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
        t._rg = True
    return t


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """Like :func:`tensor`, sharing memory with a numpy array or tensor where possible."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype is _dtype.to_dtype(dtype)):
        return data
    if isinstance(data, np.ndarray):
        arr = data if dtype is None else data.astype(_dtype.to_dtype(dtype).np, copy=False)
        _dtype.from_numpy_dtype(arr.dtype)
        return Tensor._make(arr)
    return tensor(data, dtype=dtype)


def is_tensor(obj: Any) -> bool:
    """Whether ``obj`` is an engine tensor (``torch.is_tensor``).

    >>> engine.is_tensor(engine.ones(1)), engine.is_tensor([1.0])
    (True, False)
    """
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:
    """The number of elements (``torch.numel``).

    >>> engine.numel(engine.ones(2, 3))
    6
    """
    return input.numel()


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``arr`` (``torch.from_numpy``)."""
    _dtype.from_numpy_dtype(arr.dtype)
    return Tensor._make(arr)

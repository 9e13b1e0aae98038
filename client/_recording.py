"""Recording: client tensors remember the ops applied to them, as wire-format v1 nodes.

The op names, their signatures and which ones are Tensor methods all come from ``engine.OPS``,
so an op added to the engine is at once a client function and method. Nothing is computed here:
values come from the server (or the embedded core) when asked for. Shapes of computed tensors are
found by running the recorded forward pass locally with the engine, and only when asked for.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

import engine
from engine._functional_inplace import FUNCTIONAL_INPLACE, LEAF_MSG, VIEW_OF_LEAF_MSG, wire_op

__all__ = ["Tensor", "Node", "Recorder", "Namespace", "collect", "local_values", "rebind"]


class _BaseClient(Protocol):
    """What recorded tensors ask of the client that made them (``client.Client`` and
    ``client.AsyncClient`` provide it): recording an op, and fetching values on demand."""

    _recorder: Recorder
    _onnx_names: set[str]

    def tensor(self, data: Any, dtype: Any = None, requires_grad: bool = False, **kw: Any) -> Tensor: ...

    def _record(self, op: str, args: tuple, kwargs: dict) -> Any: ...

    def _constant(self, value: Any) -> Tensor: ...

    def _fetch_values_sync(self, tensors: Sequence[Tensor]) -> None: ...

class Node:
    """One recorded op: its wire form (``inputs``/``attributes`` already encoded) and its raw
    arguments (client tensors in place) for local shape evaluation."""

    __slots__ = ("op", "seq", "inputs", "attributes", "outputs", "parents", "args", "kwargs", "shadowed")

    def __init__(self, op: str, seq: int, inputs: list, attributes: dict, parents: tuple[Tensor, ...],
                 args: tuple, kwargs: dict) -> None:
        self.op = op
        self.seq = seq
        self.inputs = inputs
        self.attributes = attributes
        self.parents = parents
        self.args = args
        self.kwargs = kwargs
        self.outputs: list[Tensor] = []
        self.shadowed = False  # its outputs' meta twins are built (client._shadow)
        for p in parents:  # so that an in-place op can point earlier users at the old value
            p._users.append(self)

    def wire(self) -> dict[str, Any]:
        node: dict[str, Any] = {"op": self.op}
        if self.op != "grad":
            node["inputs"] = self.inputs
        if self.attributes:
            node["attributes"] = self.attributes
        node["outputs"] = [t.name for t in self.outputs]
        return node


class Tensor:
    """A tensor recorded by a :class:`~client.Client`: a leaf holding data, or the output of an op.

    It offers the engine's ops as methods and operators, and records them instead of computing.
    ``numpy()`` and ``item()`` fetch the value (one request, then cached).

    >>> x = c.tensor([1.0, 2.0], requires_grad=True)
    >>> y = (x * x).sum()          # recorded, nothing sent yet
    >>> y.item()                   # one request
    5.0
    """

    __slots__ = ("_client", "name", "_seq", "_node", "_value", "_has_value", "_meta", "_rg", "_users",
                 "_stale", "_shadow", "__weakref__")
    __array_priority__ = 1000
    __array_ufunc__ = None  # numpy defers to our reflected operators: np_array * t records a node

    def __init__(self, client: _BaseClient, name: str, seq: int, node: Node | None = None,
                 value: np.ndarray | None = None, requires_grad: bool = False) -> None:
        self._client = client
        self.name = name
        self._seq = seq
        self._node = node
        self._value = value
        self._has_value = value is not None
        self._meta: tuple[tuple[int, ...], np.dtype] | None = (
            (value.shape, value.dtype) if value is not None else None)
        self._rg = requires_grad
        self._users: list[Node] = []   # nodes recorded with this tensor as an argument
        self._stale: str | None = None  # why this tensor can no longer be used (a view, see rebind)
        self._shadow: Any = None       # its meta twin in the client's autograd record (_shadow.py)

    # ------------------------------------------------------------ identity and metadata
    @property
    def is_leaf(self) -> bool:
        """True for tensors made by ``c.tensor`` (and constants), False for op outputs."""
        return self._node is None

    @property
    def op(self) -> str | None:
        """The recorded op that produced this tensor (None for leaves)."""
        return None if self._node is None else self._node.op

    @property
    def requires_grad(self) -> bool:
        """Exact for leaves; for op outputs, whether a differentiable op was applied to a tensor
        that requires grad (the dtype rule, ints never require grad, is applied when known)."""
        if self._meta is not None and self._meta[1].kind != "f":
            return False
        return self._rg

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape; for op outputs found by a local forward pass (no request)."""
        return engine.Size(self._meta_now()[0])

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self) -> Any:
        """The engine dtype (``engine.float32``, ...)."""
        return engine._dtype.from_numpy_dtype(self._meta_now()[1])

    @property
    def ndim(self) -> int:
        return len(self._meta_now()[0])

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return math.prod(self._meta_now()[0])

    def _meta_now(self) -> tuple[tuple[int, ...], np.dtype]:
        if self._meta is None:
            try:
                local_values([self])
            except AttributeError as e:  # inside a property it would read as "no attribute 'shape'"
                raise RuntimeError(f"cannot infer the shape of {self.name!r}: {e}") from e
        assert self._meta is not None
        return self._meta

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __bool__(self) -> bool:
        raise TypeError(
            f"the truth value of recorded tensor {self.name!r} is not known while recording: "
            "use .item() to fetch it, or engine ops such as where() to branch inside the graph")

    __hash__ = object.__hash__  # identity: == records an `eq` node, as in torch

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        if self._node is not None:
            parts.append(f"op={self._node.op!r}")
        if self._meta is not None:
            parts.append(f"shape={tuple(self._meta[0])}, dtype={self._meta[1]}")
        if self._rg:
            parts.append("requires_grad=True")
        if self._has_value and self._value is not None and self._value.size <= 6:
            parts.append(f"value={self._value.tolist()}")
        return f"Tensor({', '.join(parts)})"

    # ------------------------------------------------------------ values (fetched on demand)
    def numpy(self) -> np.ndarray | None:
        """The value as a numpy array; for op outputs one request, cached afterwards.

        None only for the gradient of an unused input (``allow_unused=True``).
        """
        if not self._has_value:
            self._client._fetch_values_sync([self])
        return self._value

    def item(self) -> float | int | bool:
        arr = self.numpy()
        if arr is None:
            raise RuntimeError(f"{self.name!r} is None (the gradient of an unused input)")
        if arr.size != 1:
            raise RuntimeError(f"a Tensor with {arr.size} elements cannot be converted to Scalar")
        return arr.reshape(()).item()

    def tolist(self) -> Any:
        arr = self.numpy()
        return None if arr is None else arr.tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        if arr is None:
            raise TypeError(f"{self.name!r} is None (the gradient of an unused input)")
        return arr if dtype is None else arr.astype(dtype)

    # ------------------------------------------------------------ ops as methods
    def __getattr__(self, name: str) -> Any:
        if name in FUNCTIONAL_INPLACE:  # x.add_(y): record add_ and rebind x to its result
            inplace = FUNCTIONAL_INPLACE[name]
            fn = lambda *args, **kwargs: self._inplace(name, args, kwargs)
            fn.__name__, fn.__doc__ = name, inplace.fn.__doc__
            return fn
        info = engine.OPS.get(name)
        if info is None or name.startswith("_") or not callable(getattr(engine.Tensor, name, None)):
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
        client = self._client
        fn = lambda *args, **kwargs: client._record(name, (self, *args), kwargs)
        fn.__name__, fn.__doc__ = name, info.fn.__doc__
        return fn

    def __dir__(self) -> list[str]:
        ops = [n for n in engine.OPS if "." not in n and callable(getattr(engine.Tensor, n, None))]
        return sorted(set(super().__dir__()) | set(ops) | set(FUNCTIONAL_INPLACE))

    def where(self, condition: Any, y: Any) -> Tensor:
        """``x.where(condition, y)`` is ``where(condition, x, y)``."""
        return self._client._record("where", (condition, self, y), {})

    def reshape_as(self, other: Tensor) -> Tensor:
        return self._client._record("view_as", (self, other), {})

    def subtract(self, other: Any, *, alpha: Any = 1) -> Tensor:
        return self._client._record("sub", (self, other), {"alpha": alpha} if alpha != 1 else {})

    # casts (float-to-float casts stay differentiable, as in torch)
    def float(self) -> Tensor:
        return self._client._record("to", (self,), {"dtype": engine.float32})

    def double(self) -> Tensor:
        return self._client._record("to", (self,), {"dtype": engine.float64})

    def half(self) -> Tensor:
        return self._client._record("to", (self,), {"dtype": engine.float16})

    def long(self) -> Tensor:
        return self._client._record("to", (self,), {"dtype": engine.int64})

    def int(self) -> Tensor:
        return self._client._record("to", (self,), {"dtype": engine.int32})

    def bool(self) -> Tensor:
        return self._client._record("to", (self,), {"dtype": engine.bool})

    def type_as(self, other: Tensor) -> Tensor:
        return self._client._record("to", (self, other), {})

    def contiguous(self, memory_format: Any = None) -> Tensor:
        return self

    def cpu(self) -> Tensor:
        return self

    @property
    def T(self) -> Tensor:  # noqa: N802 - torch's name
        return self._client._record("permute", (self, *reversed(range(self.ndim))), {})

    @property
    def mT(self) -> Tensor:  # noqa: N802 - torch's name
        return self._client._record("transpose", (self, -2, -1), {})

    # ------------------------------------------------------------ operators
    def _bin(name: str, reflected: bool = False, **fixed: Any) -> Callable:  # noqa: N805
        if reflected:
            return lambda self, other: self._client._record(name, (other, self), dict(fixed))
        return lambda self, other: self._client._record(name, (self, other), dict(fixed))

    __add__, __radd__ = _bin("add"), _bin("add", True)
    __sub__, __rsub__ = _bin("sub"), _bin("sub", True)
    __mul__, __rmul__ = _bin("mul"), _bin("mul", True)
    __truediv__, __rtruediv__ = _bin("div"), _bin("div", True)
    __floordiv__ = _bin("div", rounding_mode="floor")
    __rfloordiv__ = _bin("div", True, rounding_mode="floor")
    __pow__, __rpow__ = _bin("pow"), _bin("pow", True)
    __matmul__, __rmatmul__ = _bin("matmul"), _bin("matmul", True)
    __eq__, __ne__ = _bin("eq"), _bin("ne")  # type: ignore[assignment]
    __lt__, __le__, __gt__, __ge__ = _bin("lt"), _bin("le"), _bin("gt"), _bin("ge")
    del _bin

    def __neg__(self) -> Tensor:
        return self._client._record("neg", (self,), {})

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self._client._record("abs", (self,), {})

    def __getitem__(self, key: Any) -> Tensor:
        return self._client._record("getitem", (self, key), {})

    # ------------------------------------------------------------ in-place ops (functional on the wire)
    def __setitem__(self, key: Any, value: Any) -> None:
        """``y[key] = value``: records ``setitem`` (a copy of y with the item replaced) and rebinds
        ``y`` to it, as torch's in-place write looks from Python."""
        check_inplace(self, key)
        if isinstance(value, str):  # as torch, before anything is recorded
            name = engine.ops.elementwise.type_name(self._meta_now()[1])
            raise TypeError(f"can't assign a str to a torch.{name}Tensor")
        rebind(self, self._client._record("setitem", (self, key, value), {}))

    def _inplace(self, name: str, args: tuple, kwargs: dict) -> Tensor:
        check_inplace(self)
        rebind(self, self._client._record(name, (self, *args), kwargs))
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Make a leaf require grad, as ``torch.Tensor.requires_grad_`` (floating leaves only)."""
        if self._node is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables.")
        if requires_grad and self._value is not None and self._value.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self._rg = bool(requires_grad)
        return self

    def _iop(name: str) -> Callable:  # noqa: N805
        def fn(self: Tensor, other: Any) -> Tensor:
            return self._inplace(name, (other,), {})
        fn.__name__ = f"__i{name[:-1]}__"
        return fn

    __iadd__, __isub__, __imul__, __itruediv__ = _iop("add_"), _iop("sub_"), _iop("mul_"), _iop("div_")
    __ipow__, __imod__ = _iop("pow_"), _iop("remainder_")
    del _iop


# ---------------------------------------------------------------- names
_AUTO = re.compile(r"_(\d+)$")


class Recorder:
    """Deterministic, unique names and sequence numbers for one client's tensors and nodes."""

    def __init__(self) -> None:
        self._count = itertools.count()
        self._issued = -1
        self._user: set[str] = set()

    def _seq(self) -> int:
        self._issued = next(self._count)
        return self._issued

    def name(self, prefix: str, user: str | None = None) -> tuple[str, int]:
        """A fresh ``(name, seq)``: ``user`` if given and free, else ``<prefix>_<seq>``."""
        if user is not None:
            if not isinstance(user, str) or not user:
                raise ValueError("a tensor name must be a non-empty string")
            m = _AUTO.search(user)
            if user in self._user or (m and int(m.group(1)) <= self._issued):
                raise ValueError(f"the name {user!r} is already used in this client")
            self._user.add(user)
            return user, self._seq()
        while True:
            seq = self._seq()
            name = f"{prefix}_{seq}"
            if name not in self._user:
                return name, seq


# ---------------------------------------------------------------- namespaces
class Namespace:
    """A torch-like namespace of recording functions (``c.exp``, ``c.nn.functional.relu``, ...)."""

    def __init__(self, client: _BaseClient, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        full = self._prefix + name
        info = engine.OPS.get(full)
        if info is not None:
            client = self._client
            fn = lambda *args, **kwargs: client._record(full, args, kwargs)
            fn.__name__, fn.__qualname__, fn.__doc__ = name, full, info.fn.__doc__
            fn.__signature__ = info.signature  # type: ignore[attr-defined]
            return fn
        if any(op.startswith(full + ".") for op in engine.OPS):
            return Namespace(self._client, full + ".")
        where = f"namespace {self._prefix[:-1]!r}" if self._prefix else "the engine"
        hint = ""
        if not self._prefix and name in _TORCH_FUNC:
            hint = ("; the client's functional API has torch.autograd.functional's names (c.jacobian, "
                    "c.hessian, c.vjp, c.jvp, c.hvp, c.vhp); torch.func's transforms are c.func.grad, "
                    "c.func.vmap, c.func.jacrev, ...")
        raise AttributeError(f"{where} has no op {name!r}{hint}")

    def __dir__(self) -> list[str]:
        n = len(self._prefix)
        return sorted({op[n:].split(".")[0] for op in engine.OPS if op.startswith(self._prefix)})


_TORCH_FUNC = frozenset({"func", "grad", "grad_and_value", "vmap", "jacrev", "jacfwd", "functional_call"})


# ---------------------------------------------------------------- argument encoding
def _scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, engine.Size):
        return list(v)
    return v


def _dtype_name(v: Any) -> str | None:
    if isinstance(v, engine.dtype):
        return v.name
    if v in (float, int, bool) or isinstance(v, np.dtype) or (
            isinstance(v, type) and issubclass(v, np.generic)):
        try:
            return engine._dtype.to_dtype(v).name
        except TypeError:
            return None
    return None


class _Encoder:
    """Encodes one op's arguments, creating constant leaves for arrays and non-finite scalars.

    Positional arguments go to ``inputs``, where a string names a value (so string literals are
    wrapped as ``{"literal": s}``); keyword arguments go to ``attributes``, where strings are
    literals and tensors are ``{"ref": name}``. Index keys use ``{"slice"}``, ``{"ellipsis"}`` and
    ``{"tuple"}``, as the server's expression compiler does.
    """

    def __init__(self, client: _BaseClient) -> None:
        self.client = client
        self.parents: list[Tensor] = []

    def tensor(self, t: Tensor) -> str:
        if t._client is not self.client:
            raise ValueError(f"tensor {t.name!r} was recorded by another client")
        check_fresh(t)
        if t._node is not None and t._node.op == "grad" and t._has_value and t._value is None:
            raise RuntimeError(f"{t.name!r} is None: the gradient of an input that was not used")
        self.parents.append(t)
        return t.name

    def lift(self, v: Any) -> Any:
        """Arguments as the server will see them: arrays, engine tensors and non-finite floats
        become constant leaves (JSON has no NaN or Infinity numbers; arrays travel as tensors)."""
        v = _scalar(v)
        if isinstance(v, (np.ndarray, engine.Tensor)) or (isinstance(v, float) and not math.isfinite(v)):
            return self.client._constant(v)
        if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
            return type(v)(self.lift(x) for x in v)
        if isinstance(v, dict):
            return {k: self.lift(x) for k, x in v.items()}
        return v

    def value(self, v: Any, in_inputs: bool) -> Any:
        if isinstance(v, Tensor):
            name = self.tensor(v)
            return name if in_inputs else {"ref": name}
        if v is None or isinstance(v, (bool, int, float)):
            return v
        if isinstance(v, str):
            return {"literal": v} if in_inputs else v
        if v is Ellipsis:
            return {"ellipsis": True}
        if isinstance(v, slice):
            return {"slice": [self.value(v.start, in_inputs), self.value(v.stop, in_inputs),
                              self.value(v.step, in_inputs)]}
        if isinstance(v, (list, tuple)):
            return [self.value(x, in_inputs) for x in v]
        if isinstance(v, dict):
            return {str(k): self.value(x, in_inputs) for k, x in v.items()}
        name = _dtype_name(v)
        if name is not None:
            return {"literal": name} if in_inputs else name
        raise TypeError(f"cannot send an argument of type {type(v).__name__} over the wire")

    def key(self, key: Any) -> Any:
        """An indexing key: a tuple stays a tuple (``x[0, 1]`` is not ``x[[0, 1]]``)."""
        if isinstance(key, tuple):
            return {"tuple": [self.value(k, True) for k in key]}
        return self.value(key, True)


def _dtype_to_keyword(info: engine.OpInfo, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``x.to(engine.float64)``: a dtype given positionally becomes the ``dtype`` keyword, the
    one place where the server turns a dtype name back into a dtype."""
    params = info.signature.parameters
    if "dtype" in kwargs or not ("dtype" in params or any(
            p.kind is p.VAR_KEYWORD for p in params.values())):
        return args, kwargs
    for i, a in enumerate(args[1:], 1):
        if not isinstance(a, (Tensor, engine.Tensor, np.ndarray)) and _dtype_name(a) is not None:
            return args[:i] + args[i + 1:], {**kwargs, "dtype": a}
    return args, kwargs


def encode_call(client: _BaseClient, op: str, args: tuple, kwargs: dict
                ) -> tuple[list, dict, list[Tensor], tuple, dict]:
    """Encode a call as wire ``inputs`` (the positional arguments) and ``attributes`` (the keyword
    arguments), after checking them against the op's signature as Python would. Also returns the
    arguments with constants lifted to leaves, for local shape evaluation."""
    info = wire_op(op)
    assert info is not None
    try:
        info.signature.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{op}(): {e}") from None
    args, kwargs = _dtype_to_keyword(info, tuple(args), dict(kwargs))
    enc = _Encoder(client)
    args, kwargs = enc.lift(args), enc.lift(kwargs)
    if op == "getitem" and len(args) == 2:
        inputs = [enc.value(args[0], True), enc.key(args[1])]
    elif op == "setitem" and len(args) == 3:
        inputs = [enc.value(args[0], True), enc.key(args[1]), enc.value(args[2], True)]
    else:
        inputs = [enc.value(a, True) for a in args]
    attributes = {k: enc.value(v, False) for k, v in kwargs.items()}
    return inputs, attributes, enc.parents, args, kwargs


# ---------------------------------------------------------------- in-place ops: rebinding
# Ops whose result is a view of their first argument in torch (sharing its storage). Over the wire
# no value is ever changed, so an in-place op records a new value and rebinds the tensor object to
# it; a view of it and its base are then brought up to date as torch's shared storage would:
# through a basic-index view (x[0], x[:, 1:]) both ways, as torch's CopySlices does; other views
# cannot be written back and are marked stale (an error if used again).
VIEW_OPS = frozenset({
    "getitem", "view", "view_as", "reshape", "reshape_as", "transpose", "t", "permute", "expand",
    "expand_as", "squeeze", "unsqueeze", "narrow", "select", "diagonal", "unflatten", "flatten",
    "movedim", "moveaxis", "swapaxes", "swapdims", "split", "chunk", "unbind", "detach", "alias",
    "unfold", "tensor_split", "hsplit", "vsplit", "dsplit", "split_with_sizes", "as_strided",
})


def _key_tuple(key: Any) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _basic(key: Any) -> bool:
    """A key torch indexes by a view (ints, slices, None, Ellipsis), not by a copy."""
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice, np.integer))
               and not isinstance(k, bool) for k in _key_tuple(key))


def _view_base(t: Tensor) -> tuple[Tensor, Any] | None:
    """``(base, key)`` when ``t`` is a basic-index view ``base[key]``; None otherwise."""
    n = t._node
    if n is not None and n.op == "getitem" and len(n.args) == 2 and isinstance(n.args[0], Tensor) \
            and _basic(n.args[1]) and len(n.outputs) == 1:
        return n.args[0], n.args[1]
    return None


def _is_view_node(n: Node) -> bool:
    if n.op == "getitem":  # an advanced index (a tensor, a list) copies
        return len(n.args) == 2 and _basic(n.args[1])
    return n.op in VIEW_OPS and bool(n.parents)


def _root(t: Tensor) -> Tensor:
    """The tensor ``t`` is a (chain of) view(s) of, or ``t`` itself."""
    while t._node is not None and _is_view_node(t._node):
        t = t._node.parents[0]
    return t


def check_inplace(t: Tensor, key: Any = ...) -> None:
    """torch's refusals of an in-place op on ``t`` (``key``: the item assigned, for ``y[key] = v``)."""
    check_fresh(t)
    root = _root(t)
    if root._node is None and root._rg:
        if root is not t:
            raise RuntimeError(VIEW_OF_LEAF_MSG)
        basic_view = key is not ... and _basic(key) and any(k is not Ellipsis for k in _key_tuple(key))
        raise RuntimeError(VIEW_OF_LEAF_MSG if basic_view else LEAF_MSG)


def check_fresh(t: Tensor) -> None:
    if t._stale is not None:
        raise RuntimeError(t._stale)


_STATE = ("name", "_seq", "_node", "_value", "_has_value", "_meta", "_rg", "_users", "_stale", "_shadow")


def _swap(v: Any, old: Tensor, new: Tensor) -> Any:
    if v is old:
        return new
    if isinstance(v, tuple) and not hasattr(v, "_fields"):
        return tuple(_swap(x, old, new) for x in v)
    if isinstance(v, list):
        return [_swap(x, old, new) for x in v]
    if isinstance(v, dict):
        return {k: _swap(x, old, new) for k, x in v.items()}
    return v


def _move(t: Tensor, new: Tensor) -> Tensor:
    """Make ``t`` (the object the user holds) the value ``new``; its previous value moves to a new
    object that the nodes recorded so far point at instead. Returns that object."""
    old = Tensor.__new__(Tensor)
    old._client = t._client
    for k in _STATE:
        setattr(old, k, getattr(t, k))
    for n in t._users:
        n.parents = _swap(n.parents, t, old)
        n.args, n.kwargs = _swap(n.args, t, old), _swap(n.kwargs, t, old)
    if t._node is not None:
        t._node.outputs = [old if o is t else o for o in t._node.outputs]
    for k in _STATE:
        setattr(t, k, getattr(new, k))
    assert new._node is not None
    new._node.outputs = [t if o is new else o for o in new._node.outputs]
    return old


def rebind(t: Tensor, new: Tensor) -> None:
    """``t`` takes the value ``new`` (the result of an in-place op on ``t``), and the tensors that
    share storage with ``t`` in torch follow: the base of a basic-index view gets the view written
    back, the basic-index views of ``t`` are taken again, and other views become stale."""
    base = _view_base(t)
    old = _move(t, new)
    old._stale = "superseded"  # only recorded nodes hold it: the user holds t
    _refresh_views(old, t)
    if base is not None:  # torch's CopySlices: the base holds the view's new values
        b, key = base
        rebind(b, t._client._record("setitem", (b, key, t), {}))
    elif old._node is not None and _is_view_node(old._node):
        b = old._node.parents[0]
        b._stale = (f"{b.name!r} has a view ({old._node.op}) that was changed in place; over the wire "
                    "tensors do not share storage, so only basic-index views (x[0], x[:, 1:]) write "
                    "back to their base: write y[...] = ... on the base instead")


def _refresh_views(old: Tensor, t: Tensor) -> None:
    """The views taken of ``t`` before it changed (now of ``old``): a basic-index view is taken
    again from the new value (as shared storage would show it); another view becomes stale."""
    for n in list(old._users):
        if not _is_view_node(n) or n.parents[0] is not old:
            continue
        for o in n.outputs:
            if o._stale is not None:
                continue
            if n.op == "getitem":
                _move(o, t._client._record("getitem", (t, n.args[1]), {}))._stale = "superseded"
            else:
                o._stale = (f"{o.name!r} is a view ({n.op}) of a tensor that was changed in place "
                            "since; over the wire tensors do not share storage: take the view again "
                            "after the in-place op")


def has_tensor(v: Any) -> bool:
    if isinstance(v, Tensor):
        return True
    if isinstance(v, (list, tuple)):
        return any(has_tensor(x) for x in v)
    if isinstance(v, dict):
        return any(has_tensor(x) for x in v.values())
    return False


# ---------------------------------------------------------------- graph collection
def collect(roots: Sequence[Tensor]) -> tuple[list[Tensor], list[Node]]:
    """The leaves and nodes the roots depend on, each in recording order (a topological order)."""
    leaves: dict[int, Tensor] = {}
    nodes: dict[int, Node] = {}
    stack = list(roots)
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t._node is None:
            leaves[id(t)] = t
        elif id(t._node) not in nodes:
            nodes[id(t._node)] = t._node
            stack.extend(t._node.parents)
    order = sorted(nodes.values(), key=lambda n: n.seq)
    return sorted(leaves.values(), key=lambda t: t._seq), order


# ---------------------------------------------------------------- local evaluation (shapes)
def _substitute(v: Any, env: dict[int, Any]) -> Any:
    if isinstance(v, Tensor):
        return env[id(v)]
    if isinstance(v, tuple):
        return tuple(_substitute(x, env) for x in v)
    if isinstance(v, list):
        return [_substitute(x, env) for x in v]
    if isinstance(v, dict):
        return {k: _substitute(x, env) for k, x in v.items()}
    return v


_FUNCTIONAL = frozenset({"jacobian", "hessian", "vjp", "jvp", "hvp", "vhp"})  # client._functional


def run_node(node: Node, env: dict[int, Any]) -> tuple[Any, ...]:
    """Run one recorded node with the engine; ``env`` maps ``id(client tensor)`` to engine tensors."""
    if node.op in _FUNCTIONAL:
        return run_functional_node(node, env)
    if node.op == "vmap" or node.op.startswith("func."):  # c.func's nodes (client._functional) run themselves
        return node.kwargs["run"](node, env)
    if node.op in ("onnx", "onnx.parameters"):  # client._onnx: the model object runs its own node
        return node.kwargs["model"].run_node(node, env)
    if node.op == "grad":
        a = node.kwargs
        outs = [env[id(t)] for t in a["outputs"]]
        ins = [env[id(t)] for t in a["inputs"]]
        gos = a["grad_outputs"]
        gos = None if gos is None else [None if g is None else env[id(g)] for g in gos]
        flags = {k: v for k, v in a.items() if k not in ("outputs", "inputs", "grad_outputs")}
        return tuple(engine.autograd_grad(outs, ins, gos, **flags))
    info = wire_op(node.op)
    assert info is not None
    res = info.fn(*_substitute(node.args, env), **_substitute(node.kwargs, env))
    return tuple(res) if isinstance(res, (tuple, list)) else (res,)


def local_values(targets: Sequence[Tensor]) -> list[Any]:
    """Run the recorded forward pass (and ``grad`` nodes) locally with the engine.

    Used only for metadata: shapes and dtypes of computed tensors, and the number of results of
    ops such as ``split``. It records the meta of every tensor it meets.
    """
    leaves, nodes = collect(targets)
    env: dict[int, Any] = {}
    for t in leaves:
        # no copy, read-only: an in-place write (batch_norm's running statistics) then rebinds the
        # engine tensor instead of writing into the client's array
        value = t._value.view() if isinstance(t._value, np.ndarray) else np.asarray(t._value)
        value.flags.writeable = False
        leaf = engine.from_numpy(value)
        env[id(t)] = leaf.requires_grad_() if t._rg else leaf
    for node in nodes:
        res = run_node(node, env)
        for t, r in zip(node.outputs, res, strict=False):
            env[id(t)] = r
            if r is not None and t._meta is None:
                t._meta = (tuple(r.shape), r._data.dtype)
                t._rg = r.requires_grad
    return [env.get(id(t)) for t in targets]


def run_functional_node(node: Node, env: dict[int, Any]) -> tuple[Any, ...]:
    """Evaluate a functional node with the engine (for local shapes), as the server does: the
    recorded nodes between its inputs and outputs are re-run as the function."""
    a = node.kwargs
    ins, outs = a["inputs"], a["outputs"]
    inner = sub_function(ins, outs, env)

    def func(*new: Any) -> Any:
        res = inner(*new)
        return res if a["out_tuple"] else res[0]

    xs = tuple(env[id(t)] for t in ins)
    args: list[Any] = [func, xs if a["in_tuple"] else xs[0]]
    if a["kind"] not in ("jacobian", "hessian"):
        vs = None if a["v"] is None else tuple(env[id(t)] for t in a["v"])
        args.append(None if vs is None else vs if a["v_tuple"] else vs[0])
    res = getattr(engine.autograd.functional, a["kind"])(*args, **a["flags"])
    return tuple(_flat(res if a["kind"] in ("jacobian", "hessian") else res[1]))


def sub_function(ins: Sequence[Tensor], outs: Sequence[Tensor], env: dict[int, Any]) -> Callable:
    """The recorded nodes between ``ins`` and ``outs`` as a function of new input values (a tuple
    of the outputs), as the server re-runs that part of the graph."""
    in_ids = {id(t) for t in ins}
    _, nodes = collect(list(outs))
    tainted = set(in_ids)
    rerun = []
    for n in nodes:
        if any(id(o) in in_ids for o in n.outputs):
            continue
        if any(id(p) in tainted for p in n.parents):
            rerun.append(n)
            tainted.update(id(o) for o in n.outputs)

    def func(*new: Any) -> tuple:
        local = {**env, **{id(t): x for t, x in zip(ins, new)}}
        for n in rerun:
            for t, r in zip(n.outputs, run_node(n, local), strict=False):
                local[id(t)] = r
        return tuple(local[id(t)] for t in outs)

    return func


def _flat(res: Any) -> list[Any]:
    if isinstance(res, (tuple, list)):
        return [t for r in res for t in _flat(r)]
    return [res]


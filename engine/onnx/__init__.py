"""ONNX models as engine graphs: ``load(model)`` gives a module whose call runs the model in
engine ops, so ``autograd_grad`` goes through it at any order.

A model is *lowered* once per set of input shapes and dtypes: every node becomes calls of
engine ops (:data:`engine.onnx._ops.CONVERTERS`, the one table of supported operators), run in
meta mode to learn shapes, with shape-computing subgraphs (``Shape -> Gather -> Concat ->
Reshape``) folded to constants. The result, a :class:`Program`, is a list of engine-op steps that
the module (and the service, :mod:`service.onnx_graph`) runs on real tensors.

Floating-point initializers are the parameters (leaf tensors with ``requires_grad=True``),
except BatchNormalization's running statistics, buffers as in torch; integer and boolean
initializers are constants. The ``onnx`` package is needed only here and is
imported lazily: ``import engine`` never needs it.

>>> import engine, engine.onnx  # doctest: +SKIP
>>> m = engine.onnx.load("mlp.onnx")  # doctest: +SKIP
>>> y = m(x=engine.randn(4, 3))  # doctest: +SKIP
>>> grads = engine.autograd_grad(y.sum(), list(m.parameters().values()))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _dtype, _meta
from .._autograd import enable_grad, no_grad
from ..ops import OPS
from ..tensor import Tensor, from_numpy

__all__ = ["load", "OnnxModule", "OnnxError", "Program", "Step", "Ref", "operators", "model_hash",
           "MIN_OPSET", "MAX_OPSET"]

MIN_OPSET, MAX_OPSET = 13, 21
_DOMAINS = ("", "ai.onnx")
ML_DOMAIN = "ai.onnx.ml"  # scikit-learn's linear models (skl2onnx): a few operators, keyed "ai.onnx.ml.<op>"


class OnnxError(ValueError):
    """A model the engine cannot run: names the node and operator (``node``, ``op_type``)."""

    def __init__(self, msg: str, node: str | None = None, op_type: str | None = None,
                 too_large: bool = False) -> None:
        self.node, self.op_type = node, op_type
        self.too_large = too_large  # a value over the element limit of the lowering
        where = f"node {node!r} ({op_type}): " if node is not None else (f"{op_type}: " if op_type else "")
        super().__init__(where + msg)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError("engine.onnx needs the onnx package: pip install onnx "
                          "(or gradserve[server])") from None
    return onnx


def operators() -> list[str]:
    """The supported ONNX operators, sorted: default-domain ones by name, others as
    ``"<domain>.<op>"`` (``"ai.onnx.ml.LinearRegressor"``).

    >>> "MatMul" in operators()
    True
    """
    from ._ops import CONVERTERS
    return sorted(CONVERTERS)


def model_hash(data: bytes) -> str:
    """``"sha256:<hex>"`` of a model's serialized bytes (the service's plan-cache key)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- lowered programs
@dataclass(eq=False)
class Ref:
    """A value named in a step's arguments; its name is fixed when the program is finished."""

    name: str


@dataclass(slots=True)
class Step:
    """One engine-op call: ``OPS[op](*args, **kwargs)``, results named ``outputs``; ``node``
    is the index of the ONNX node it comes from."""

    op: str
    args: tuple
    kwargs: dict
    outputs: list[Ref]
    node: int


@dataclass
class Program:
    """A model lowered for given input shapes: engine-op steps plus the values they start from."""

    inputs: list[str]                       # model inputs (in model order)
    params: dict[str, np.ndarray]           # float initializers: leaves that require grad
    constants: dict[str, np.ndarray]        # folded values and integer initializers
    steps: list[Step]
    outputs: list[str]                      # model outputs
    node_labels: list[str]                  # "name (OpType)" per ONNX node

    def values(self) -> set[str]:
        """Every name a run defines (inputs, parameters, constants, step outputs)."""
        names = set(self.inputs) | set(self.params) | set(self.constants)
        names.update(r.name for st in self.steps for r in st.outputs)
        return names

    def run(self, env: dict[str, Any]) -> dict[str, Any]:
        """Run the steps with ``env`` holding the inputs, parameters and constants as tensors;
        returns ``env`` with every step output added."""
        for st in self.steps:
            res = OPS[st.op].fn(*_resolve(st.args, env), **_resolve(st.kwargs, env))
            if len(st.outputs) == 1:
                env[st.outputs[0].name] = res
            else:
                for r, v in zip(st.outputs, res):
                    env[r.name] = v
        return env


def _resolve(v: Any, env: dict[str, Any]) -> Any:
    if type(v) is Ref:
        return env[v.name]
    if type(v) in (list, tuple):
        return type(v)(_resolve(x, env) for x in v)
    if type(v) is dict:
        return {k: _resolve(x, env) for k, x in v.items()}
    return v


# ---------------------------------------------------------------- lowering
class Sym:
    """A value known only at run time during lowering: a meta tensor and the ref naming it."""

    __slots__ = ("ref", "t", "node", "value")

    def __init__(self, ref: Ref, t: Tensor, node: int, value: np.ndarray | None = None) -> None:
        self.ref, self.t, self.node = ref, t, node
        self.value = value  # a parameter's initial value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.t.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.t._data.dtype


Value = Any  # Sym | np.ndarray


def _has_sym(v: Any) -> bool:
    if isinstance(v, Sym):
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_sym(x) for x in v)
    if isinstance(v, dict):
        return any(_has_sym(x) for x in v.values())
    return False


class Builder:
    """What a converter works with: :meth:`op` calls an engine op on the node's values (folding
    it when every operand is a constant) and returns the result's values."""

    def __init__(self, lowering: _Lowering, index: int, label: str, op_type: str) -> None:
        self.lw, self.index, self.label, self.op_type = lowering, index, label, op_type

    def fail(self, msg: str, too_large: bool = False) -> OnnxError:
        return OnnxError(msg, self.label, self.op_type, too_large)

    def check_size(self, shape: Sequence[int], what: str = "the result") -> None:
        """Refuse a constant of more elements than the lowering's limit before making it."""
        limit = self.lw.max_elements
        n = math.prod(int(d) for d in shape)
        if limit is not None and n > limit:
            raise self.fail(f"{what} would have {n} elements (shape {list(shape)}); the limit is {limit}",
                            too_large=True)

    def op(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``engine.OPS[name](*args, **kwargs)`` on values: a constant result (numpy) when no
        argument is a run-time value, otherwise Sym(s) and a recorded step."""
        fn = OPS[name].fn
        lw = self.lw
        if not _has_sym((args, kwargs)):
            if lw.max_elements is not None:  # shapes first: a folded Expand or Tile may be huge
                try:
                    self._meta_run(name, fn, args, kwargs)
                except OnnxError as e:
                    if e.too_large:
                        raise  # anything else the real run below decides
            with no_grad():
                res = fn(*_real(args), **_real(kwargs))
            return tuple(_np(r) for r in res) if isinstance(res, (tuple, list)) else _np(res)
        targs, tkwargs = lw.template(args), lw.template(kwargs)
        res, probe = self._meta_run(name, fn, args, kwargs)
        if probe:  # learn the result's shape and dtype on ones instead
            try:
                with no_grad():
                    res = fn(*_probe(args), **_probe(kwargs))
            except Exception as e:
                raise self.fail(f"{name}: {e}") from None
            res = (type(res)(_as_meta(r) for r in res) if isinstance(res, (tuple, list))
                   else _as_meta(res))
        many = isinstance(res, (tuple, list))
        outs = [Ref(lw.fresh()) for _ in (res if many else [res])]
        lw.steps.append(Step(name, targs, tkwargs, outs, self.index))
        syms = [Sym(r, t, self.index) for r, t in zip(outs, res if many else [res])]
        for s in syms:
            lw.made[id(s.ref)] = s
        return tuple(syms) if many else syms[0]

    def _meta_run(self, name: str, fn: Callable, args: Any, kwargs: Any) -> tuple[Any, bool]:
        """``fn`` in meta mode: (result, False), or (None, True) when op code read placeholder
        values and failed (the caller probes with ones)."""
        with _meta.meta_mode(self.lw.max_elements) as m, enable_grad():
            try:
                return fn(*_metas(args), **_metas(kwargs)), False
            except _meta.TooLarge as e:
                raise self.fail(f"{name}: {e}", too_large=True) from None
            except _meta.MetaAbort as e:
                raise self.fail(f"cannot infer the shape of {name}: {e}") from None
            except Exception as e:
                if m.rule_raised:  # shapes or dtypes do not fit: the real run would fail too
                    raise self.fail(f"{name}: {e}") from None
                return None, True  # op code read the placeholder values (an integer division by 0)

    def const(self, v: Value, what: str) -> np.ndarray:
        """The value of an operand that must be known when the model is loaded (shapes, axes)."""
        if isinstance(v, Sym) and v.value is not None:
            return v.value  # a parameter used where a constant goes: its value, not differentiated
        if isinstance(v, Sym):
            raise self.fail(f"{what} must be a constant (an initializer, a Constant, or computed from "
                            "shapes), not a value computed at run time")
        return v

    def ints(self, v: Value, what: str) -> list[int]:
        return [int(x) for x in np.asarray(self.const(v, what)).reshape(-1)]

    @staticmethod
    def shape(v: Value) -> tuple[int, ...]:
        return v.shape if isinstance(v, Sym) else tuple(np.shape(v))

    @staticmethod
    def dtype(v: Value) -> np.dtype:
        return v.dtype if isinstance(v, Sym) else np.asarray(v).dtype


def _np(r: Any) -> Any:
    return r.detach().numpy() if isinstance(r, Tensor) else r


def _real(v: Any) -> Any:
    """Engine values for op arguments: constants as tensors, Syms as their meta tensors."""
    if isinstance(v, Sym):
        return v.t
    if isinstance(v, np.ndarray):
        return from_numpy(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_real(x) for x in v)
    if isinstance(v, dict):
        return {k: _real(x) for k, x in v.items()}
    return v


_metas = _real


def _probe(v: Any) -> Any:
    """Like :func:`_real`, with run-time values as tensors of ones of their shape and dtype."""
    if isinstance(v, Sym):
        return from_numpy(np.ones(v.shape, v.dtype))
    if isinstance(v, np.ndarray):
        return from_numpy(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_probe(x) for x in v)
    if isinstance(v, dict):
        return {k: _probe(x) for k, x in v.items()}
    return v


def _as_meta(r: Any) -> Any:
    return from_numpy(_meta.meta_array(tuple(r.shape), r._data.dtype)) if isinstance(r, Tensor) else r


class _Lowering:
    def __init__(self, used_names: set[str], max_elements: int | None = None) -> None:
        self.max_elements = max_elements
        self.steps: list[Step] = []
        self.constants: dict[str, np.ndarray] = {}
        self.const_names: dict[int, str] = {}
        self.made: dict[int, Sym] = {}   # id(ref) -> Sym, for refs made by steps
        self.used = used_names
        self._n = itertools.count()

    def fresh(self) -> str:
        while True:
            name = f"_onnx_{next(self._n)}"
            if name not in self.used:
                self.used.add(name)
                return name

    def template(self, v: Any) -> Any:
        if isinstance(v, Sym):
            return v.ref
        if isinstance(v, np.ndarray):
            name = self.const_names.get(id(v))
            if name is None:
                name = self.fresh()
                self.constants[name] = v
                self.const_names[id(v)] = name
            return Ref(name)
        if isinstance(v, (list, tuple)):
            return type(v)(self.template(x) for x in v)
        if isinstance(v, dict):
            return {k: self.template(x) for k, x in v.items()}
        return v


# ---------------------------------------------------------------- models
def _np_dtype(onnx: Any, elem_type: int, what: str) -> np.dtype:
    try:
        dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        raise OnnxError(f"{what} has an unsupported element type {elem_type}") from None
    try:
        _dtype.from_numpy_dtype(dt)
    except Exception:
        raise OnnxError(f"{what} has dtype {dt}, which the engine does not support") from None
    return dt


def _attrs(onnx: Any, node: Any, label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.ref_attr_name:
            raise OnnxError(f"attribute {a.name!r} refers to a function attribute", label, node.op_type)
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
                      onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS,
                      onnx.AttributeProto.TYPE_PROTO, onnx.AttributeProto.TYPE_PROTOS):
            raise OnnxError(f"attribute {a.name!r} of this kind (subgraph, sparse tensor or type) is "
                            "not supported", label, node.op_type)
        v = onnx.helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.TENSOR:
            v = onnx.numpy_helper.to_array(v)
        elif a.type == onnx.AttributeProto.TENSORS:
            v = [onnx.numpy_helper.to_array(t) for t in v]
        elif isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif a.type == onnx.AttributeProto.STRINGS:
            v = [s.decode("utf-8", "replace") for s in v]
        out[a.name] = v
    return out


def _parse(model: Any) -> tuple[Any, bytes]:
    """The ModelProto and its bytes for a path, bytes or ModelProto."""
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model, model.SerializeToString()
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            data = f.read()
    elif isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
    else:
        raise TypeError(f"load() takes a path, bytes or onnx.ModelProto, not {type(model).__name__}")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:
        raise OnnxError(f"not an ONNX model (the protobuf does not parse: {e})") from None
    return proto, data


class OnnxModule:
    """A loaded ONNX model: call it with engine tensors by input name.

    One output gives a tensor, several a tuple in the model's output order. ``parameters()``
    gives the floating-point initializers as leaves that require grad (the same tensors on
    every call, as a torch module's parameters).

    >>> m = load(model_proto)  # doctest: +SKIP
    >>> y = m(x=engine.ones(2, 3))  # doctest: +SKIP
    """

    def __init__(self, proto: Any, data: bytes) -> None:
        onnx = _onnx()
        self.hash = model_hash(data)
        self.nbytes = len(data)
        g = proto.graph
        for t in g.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                raise OnnxError(f"initializer {t.name!r} keeps its data in an external file; "
                                "save the model with the data inside it")
        opset = None
        for o in proto.opset_import:
            if o.domain in _DOMAINS:
                opset = o.version
            elif o.domain != ML_DOMAIN and any(n.domain == o.domain for n in g.node):
                raise OnnxError(f"operator domain {o.domain!r} is not supported (only the default "
                                f"ONNX domain and a few operators of {ML_DOMAIN} are)")
        if opset is None:
            raise OnnxError("the model imports no default-domain opset")
        if not MIN_OPSET <= opset <= MAX_OPSET:
            raise OnnxError(f"opset {opset} is not supported (opsets {MIN_OPSET} to {MAX_OPSET} are)")
        self.opset = opset
        from ._ops import CONVERTERS
        self._nodes = []
        for i, n in enumerate(g.node):
            label = n.name or f"#{i}"
            if n.domain not in (*_DOMAINS, ML_DOMAIN):
                raise OnnxError(f"domain {n.domain!r} is not supported", label, n.op_type)
            conv = CONVERTERS.get(n.op_type if n.domain in _DOMAINS else f"{n.domain}.{n.op_type}")
            if conv is None:
                hint = (" (skl2onnx writes it for classifiers unless converted with options="
                        "{id(model): {'zipmap': False}})") if n.op_type == "ZipMap" else ""
                raise OnnxError("operator not supported (engine.onnx.operators() and the README's "
                                f"ONNX section list those that are){hint}", label, n.op_type)
            a = _attrs(onnx, n, label)
            extra = sorted(set(a) - conv.attrs)
            if extra:
                raise OnnxError(f"attribute {extra[0]!r} is not supported", label, n.op_type)
            self._nodes.append((label, n.op_type, list(n.input), list(n.output), a, conv))
        try:  # after the checks above, which name the node of an unsupported operator or attribute
            onnx.checker.check_model(proto)
        except Exception as e:
            raise OnnxError(f"the model does not pass onnx.checker: {str(e).splitlines()[0][:500]}") from None
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
        self._params: dict[str, np.ndarray] = {}
        self._init_consts: dict[str, np.ndarray] = {}
        # BatchNormalization's running mean and variance are buffers, not parameters (as in torch)
        stats = {x for n in g.node if n.op_type == "BatchNormalization" for x in n.input[3:5]}
        other = {x for n in g.node for k, x in enumerate(n.input)
                 if not (n.op_type == "BatchNormalization" and k in (3, 4))}
        buffers = stats - other - {o.name for o in g.output}
        for name, arr in inits.items():
            _np_dtype(onnx, onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), f"initializer {name!r}")
            param = arr.dtype.kind == "f" and name not in buffers
            (self._params if param else self._init_consts)[name] = arr
        self.input_names = [v.name for v in g.input if v.name not in inits]
        self.output_names = [v.name for v in g.output]
        self._input_types: dict[str, tuple[np.dtype, list[int | None]]] = {}
        for v in g.input:
            if v.name in inits:
                continue
            tt = v.type.tensor_type
            if not v.type.HasField("tensor_type"):
                raise OnnxError(f"input {v.name!r} is not a tensor")
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            self._input_types[v.name] = (_np_dtype(onnx, tt.elem_type, f"input {v.name!r}"), dims)
        self.value_names = {x for n in g.node for x in n.output if x} | set(inits) | set(self.input_names)
        self._programs: OrderedDict[tuple, Program] = OrderedDict()
        self._lock = threading.Lock()
        self._leaves: dict[str, Tensor] | None = None

    # ------------------------------------------------------------ lowering
    def input_spec(self, name: str) -> tuple[np.dtype, list[int | None]]:
        """The declared dtype and dims (None where symbolic) of a model input."""
        return self._input_types[name]

    def program(self, specs: Mapping[str, tuple[Sequence[int], Any]],
                max_elements: int | None = None) -> Program:
        """The model lowered for these input ``(shape, dtype)`` pairs (cached per shapes).
        ``max_elements`` bounds every value, folded constants included (OnnxError with
        ``too_large`` above it)."""
        missing = [n for n in self.input_names if n not in specs]
        if missing:
            raise OnnxError(f"missing model input(s) {missing} (the model's inputs are {self.input_names})")
        unknown = [n for n in specs if n not in self._input_types]
        if unknown:
            raise OnnxError(f"{unknown[0]!r} is not an input of the model (its inputs are "
                            f"{self.input_names})")
        key = tuple((n, tuple(int(d) for d in specs[n][0]), np.dtype(specs[n][1]).str)
                    for n in self.input_names) + ((max_elements,),)
        with self._lock:
            prog = self._programs.get(key)
            if prog is not None:
                self._programs.move_to_end(key)
                return prog
        prog = self._lower(key[:-1], max_elements)
        with self._lock:
            self._programs[key] = prog
            while len(self._programs) > 16:
                self._programs.popitem(last=False)
        return prog

    def _lower(self, key: tuple, max_elements: int | None) -> Program:
        lw = _Lowering(set(self.value_names), max_elements)
        env: dict[str, Value] = {}
        for name, shape, dt in key:
            want, dims = self._input_types[name]
            if np.dtype(dt) != want:
                raise OnnxError(f"input {name!r} must be {want}, got {np.dtype(dt)}")
            if len(dims) != len(shape) or any(d is not None and d != s for d, s in zip(dims, shape)):
                decl = ["?" if d is None else d for d in dims]
                raise OnnxError(f"input {name!r} has shape {list(shape)}; the model declares {decl}")
            env[name] = Sym(Ref(name), from_numpy(_meta.meta_array(shape, dt)), -1)
        for name, arr in self._params.items():
            env[name] = Sym(Ref(name), from_numpy(_meta.meta_array(arr.shape, arr.dtype)), -1, arr)
        env.update(self._init_consts)
        constants = dict(self._init_consts)
        labels = []
        for i, (label, op_type, ins, outs, attrs, conv) in enumerate(self._nodes):
            labels.append(f"{label} ({op_type})")
            b = Builder(lw, i, label, op_type)
            args = []
            for x in ins:
                if x and x not in env:
                    raise b.fail(f"input {x!r} is not defined before this node")
                args.append(env[x] if x else None)
            try:
                res = conv.fn(b, args, attrs, len([o for o in outs if o]))
            except OnnxError:
                raise
            except MemoryError:
                raise b.fail("out of memory", too_large=True) from None
            except Exception as e:  # a model the converter did not expect: refused, naming the node
                raise b.fail(f"{type(e).__name__}: {e}") from None
            res = list(res) if isinstance(res, (list, tuple)) else [res]
            for k, name in enumerate(outs):
                if not name:
                    continue
                if k >= len(res) or res[k] is None:
                    raise b.fail(f"output {k} ({name!r}) is not supported")
                env[name] = self._bind(b, lw, name, res[k], constants)
        missing = [o for o in self.output_names if o not in env]
        if missing:
            raise OnnxError(f"model output {missing[0]!r} is not computed by any node")
        for o in self.output_names:  # a model output that is a constant is still a value
            if not isinstance(env[o], Sym):
                constants[o] = env[o]
        constants.update(lw.constants)
        return Program([n for n, _, _ in key], self._params, constants, lw.steps, self.output_names, labels)

    @staticmethod
    def _bind(b: Builder, lw: _Lowering, name: str, v: Value, constants: dict[str, np.ndarray]) -> Value:
        """Give an ONNX output name to a converter's result."""
        if isinstance(v, Sym):
            made = lw.made.get(id(v.ref))
            if made is not None and v.node == b.index and v.ref.name.startswith("_onnx_"):
                v.ref.name = name  # the step's own output: rename it (refs to it follow)
                return v
            s = b.op("view_as", v, v)  # an alias (Identity, Dropout): a view, no copy
            s.ref.name = name
            return s
        arr = np.asarray(v)
        constants[name] = arr
        return arr

    # ------------------------------------------------------------ module API
    def parameters(self) -> dict[str, Tensor]:
        """The floating-point initializers as named leaf tensors with ``requires_grad=True``
        (BatchNormalization's running statistics excepted: they are constants, as torch's buffers)."""
        if self._leaves is None:
            self._leaves = {n: from_numpy(a).requires_grad_() for n, a in self._params.items()}
        return dict(self._leaves)

    def __call__(self, *args: Tensor, **inputs: Tensor) -> Any:
        """Run the model: inputs by name (or positionally, in the model's order)."""
        if args:
            if len(args) > len(self.input_names):
                raise TypeError(f"the model takes {len(self.input_names)} inputs, got {len(args)}")
            inputs = {**dict(zip(self.input_names, args)), **inputs}
        inputs = {k: v if isinstance(v, Tensor) else from_numpy(np.asarray(v)) for k, v in inputs.items()}
        values = self.run(inputs, self.output_names)
        outs = [values[o] for o in self.output_names]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def run(self, inputs: Mapping[str, Tensor], names: Sequence[str],
            params: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The values named ``names`` (outputs or intermediate values) for these inputs;
        ``params`` replaces parameters (default: :meth:`parameters`)."""
        prog = self.program({k: (tuple(v.shape), v._data.dtype) for k, v in inputs.items()})
        env: dict[str, Any] = dict(self.parameters())
        if params:
            env.update(params)
        env.update({k: from_numpy(a) for k, a in prog.constants.items()})
        env.update(inputs)
        prog.run(env)
        unknown = [n for n in names if n not in env]
        if unknown:
            raise KeyError(f"the model has no value {unknown[0]!r}")
        return {n: env[n] for n in names}

    def __repr__(self) -> str:
        return (f"OnnxModule(inputs={self.input_names}, outputs={self.output_names}, "
                f"parameters={len(self._params)}, opset={self.opset})")


def load(model: Any) -> OnnxModule:
    """Load an ONNX model (a path, its bytes, or an ``onnx.ModelProto``) as a callable module.

    Unsupported operators, domains, attributes, opsets and external data are refused here with
    :class:`OnnxError` naming the node and operator.

    >>> m = load("model.onnx")  # doctest: +SKIP
    >>> m.input_names, list(m.parameters())  # doctest: +SKIP
    (['x'], ['fc.weight', 'fc.bias'])
    """
    proto, data = _parse(model)
    try:
        return OnnxModule(proto, data)
    except OnnxError:
        raise
    except Exception as e:  # whatever a malformed model trips in onnx or here: refused
        raise OnnxError(f"cannot read the model: {type(e).__name__}: {e}") from None


Converter = Callable[..., Any]


@dataclass(frozen=True)
class Conv:
    """A table entry: the converter and the attributes it understands."""

    fn: Converter
    attrs: frozenset[str] = field(default_factory=frozenset)

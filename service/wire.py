"""Wire format v1: pydantic models of the JSON header of ``POST /v1/grad``.

Tensor payloads are never validated element by element here: ``data`` stays raw JSON (``Any``)
and ``b64`` a string, both turned into numpy arrays by :mod:`service.codec`.

>>> req = GradRequest.model_validate({
...     "graph": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2],
...                           "requires_grad": True}],
...               "nodes": [{"op": "mul", "inputs": ["x", "x"], "outputs": ["y"]},
...                         {"op": "sum", "inputs": ["y"], "outputs": ["loss"]}]},
...     "outputs": ["loss"], "inputs": ["x"]})
>>> req.graph.nodes[0].op
'mul'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

__all__ = [
    "DATATYPES", "DATATYPE_ALIASES", "canonical_datatype", "TensorParameters", "TensorIn", "Ref",
    "OpNode", "OnnxModelIn", "GradAttributes", "GradNode", "FUNCTIONAL_OPS", "FunctionalAttributes",
    "JacobianAttributes", "HessianAttributes", "ProductAttributes", "JacobianNode", "HessianNode",
    "ProductNode", "FuncAttributes", "FuncGradAttributes", "FuncJacrevAttributes", "FuncJacfwdAttributes",
    "FuncHessianAttributes", "FuncProductAttributes", "VmapAttributes", "FuncGradNode", "FuncJacrevNode",
    "FuncJacfwdNode", "FuncHessianNode", "FuncProductNode", "VmapNode", "FUNC_OPS", "Node", "Graph",
    "GradRequest", "TensorOut",
    "GradResponse", "ErrorItem", "Problem", "unbox",
]

# Open Inference Protocol names -> numpy dtype names, and the numpy names accepted as aliases.
DATATYPES: dict[str, str] = {"FP16": "float16", "FP32": "float32", "FP64": "float64",
                             "INT32": "int32", "INT64": "int64", "BOOL": "bool"}
DATATYPE_ALIASES: dict[str, str] = {v: k for k, v in DATATYPES.items()}


def canonical_datatype(name: str) -> str:
    """The OIP name for an OIP or numpy dtype name (``"float32"`` -> ``"FP32"``); ValueError if unknown."""
    if name in DATATYPES:
        return name
    if name in DATATYPE_ALIASES:
        return DATATYPE_ALIASES[name]
    raise ValueError(f"unknown datatype {name!r}; expected one of "
                     f"{', '.join(DATATYPES)} (or {', '.join(DATATYPE_ALIASES)})")


# ---------------------------------------------------------------- R's JSON
# R has no scalars, only vectors, and jsonlite writes them two ways: by default a length-1
# vector is a one-element array ("name": ["w"], "requires_grad": [true]); with auto_unbox = TRUE
# it is a bare scalar ("shape": 4, "return": "loss"). So a field that takes a scalar also takes
# a one-element array of it, and a field that takes a list also takes a bare scalar. Both forms
# were invalid before, so no valid request changes meaning. Fields where a list and a scalar
# are both valid already (top-level "outputs"/"inputs", a node's positional inputs, attributes)
# keep their meaning: ["x"] in a node's inputs stays a list of one tensor.
def unbox(v: Any) -> Any:
    """A one-element array stands for its element (jsonlite's default): ``["w"]`` -> ``"w"``."""
    return v[0] if type(v) is list and len(v) == 1 else v


def _box(v: Any) -> Any:
    """A scalar stands for a one-element list (jsonlite's auto_unbox): ``4`` -> ``[4]``."""
    return [v] if isinstance(v, (str, int, float)) else v  # bool is an int


def _null(v: Any) -> Any:
    """``{}`` (jsonlite's NULL) is null where null is allowed: ``allow_unused = NULL``."""
    return None if type(v) is dict and not v else v


def _unbox_or_null(v: Any) -> Any:
    """:func:`unbox` or :func:`_null`: ``grad_outputs = list(g, NULL)`` is ``[["g"], {}]``."""
    return unbox(_null(v))


def _empty_dict(v: Any) -> Any:
    """``[]`` (jsonlite's empty ``list()``) is an empty object."""
    return {} if type(v) is list and not v else v


_U = BeforeValidator(unbox)
_B = BeforeValidator(_box)
_N = BeforeValidator(_unbox_or_null)
_NULL = BeforeValidator(_null)
RStr = Annotated[str, _U]
RBool = Annotated[bool, _U]
RNames = Annotated[list[str], _B]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------- tensors
class TensorParameters(BaseModel):
    """Per-tensor parameters; ``binary_data_size`` marks a tensor carried in the binary body."""

    model_config = ConfigDict(extra="allow", strict=True)
    binary_data_size: Annotated[int | None, Field(ge=0), _U] = None


class TensorIn(_Model):
    """An input tensor: exactly one of ``data``, ``b64`` or ``parameters.binary_data_size``."""

    name: Annotated[str | None, _U] = None
    datatype: RStr
    shape: Annotated[list[Annotated[int, Field(ge=0)]], _B] = Field(max_length=64)  # numpy's most dimensions
    data: Any = None
    b64: Annotated[str | None, _U] = None
    parameters: TensorParameters | None = None
    requires_grad: RBool = False

    @field_validator("datatype")
    @classmethod
    def _datatype_ok(cls, v: str) -> str:
        return canonical_datatype(v)

    @model_validator(mode="after")
    def _one_source(self) -> TensorIn:
        sources = [k for k in ("data", "b64") if k in self.model_fields_set]
        if self.parameters is not None and self.parameters.binary_data_size is not None:
            sources.append("parameters.binary_data_size")
        if len(sources) != 1:
            found = ", ".join(sources) if sources else "none"
            raise ValueError("a tensor needs exactly one of data, b64 or parameters.binary_data_size "
                             f"(found: {found})")
        if "data" in self.model_fields_set and self.data is None:
            raise ValueError("data must be a number or a (nested) list, not null")
        return self

    @property
    def source(self) -> str:
        """Where the values are: ``"data"``, ``"b64"`` or ``"binary"``."""
        if "data" in self.model_fields_set:
            return "data"
        return "b64" if self.b64 is not None else "binary"


class Ref(_Model):
    """A reference to a named value where a plain string would be a literal: ``{"ref": "x"}``."""

    ref: RStr


# ---------------------------------------------------------------- nodes
class OpNode(_Model):
    """An engine op. ``inputs`` are positional (a string names a value; numbers, booleans and
    number lists are literals; ``{"ref"}``, ``{"literal"}``, ``{"slice"}``, ``{"tuple"}`` and
    ``{"ellipsis"}`` objects cover the rest), ``attributes`` are keyword arguments (strings are
    literals there; a tensor is ``{"ref": "name"}``), ``outputs`` names each result."""

    op: RStr
    inputs: Annotated[list[Any], _B] = Field(default_factory=list)
    attributes: Annotated[dict[str, Any], BeforeValidator(_empty_dict)] = Field(default_factory=dict)
    outputs: RNames = Field(min_length=1)


NameRef = str | Ref


class GradAttributes(_Model):
    """The arguments of ``autograd_grad`` inside a graph, with its defaults."""

    outputs: NameRef | list[NameRef]
    inputs: NameRef | list[NameRef]
    grad_outputs: Annotated[NameRef | list[Annotated[NameRef | None, _N]] | None, _NULL] = None
    retain_graph: Annotated[bool | None, _N] = None
    create_graph: RBool = False
    allow_unused: Annotated[bool | None, _N] = None
    materialize_grads: RBool = False
    is_grads_batched: RBool = False


class GradNode(_Model):
    """``autograd_grad`` as a node: one output name per differentiated input."""

    op: Annotated[Literal["grad"], _U]
    attributes: GradAttributes
    inputs: list[Any] = Field(default_factory=list, max_length=0,
                              description="Unused: a grad node takes its operands in attributes.")
    outputs: RNames = Field(min_length=1)


# ---------------------------------------------------------------- functional nodes
Strategy = Literal["reverse-mode", "forward-mode"]


class FunctionalAttributes(_Model):
    """The function a functional node differentiates: the part of the graph from the values
    named in ``inputs`` to those named in ``outputs``, which the server re-runs at fresh copies
    of the inputs (as ``torch.autograd.functional`` calls ``func``). A single name stands for a
    single tensor, a list for a tuple, exactly as torch distinguishes them."""

    outputs: NameRef | list[NameRef]
    inputs: NameRef | list[NameRef]
    create_graph: RBool = False
    strict: RBool = False


class JacobianAttributes(FunctionalAttributes):
    """``torch.autograd.functional.jacobian``'s options."""

    vectorize: RBool = False
    strategy: Annotated[Strategy, _U] = "reverse-mode"


class HessianAttributes(FunctionalAttributes):
    """``torch.autograd.functional.hessian``'s options (``outputs`` names one scalar)."""

    vectorize: RBool = False
    outer_jacobian_strategy: Annotated[Strategy, _U] = "reverse-mode"


class ProductAttributes(FunctionalAttributes):
    """``vjp``/``jvp``/``hvp``/``vhp``: ``v`` names the vector(s), shaped like the outputs (vjp)
    or the inputs (the others); null only where torch allows it (a one-element tensor)."""

    v: Annotated[NameRef | list[NameRef] | None, _NULL] = None


_NO_INPUTS = Field(default_factory=list, max_length=0,
                   description="Unused: a functional node takes its operands in attributes.")


class _FunctionalNode(_Model):
    """What every functional node kind shares: its function is in ``attributes`` (each kind
    narrows ``op`` and ``attributes``), and ``outputs`` names its results."""

    op: str
    attributes: Any
    inputs: list[Any] = _NO_INPUTS
    outputs: RNames = Field(min_length=1)


class JacobianNode(_FunctionalNode):
    """The Jacobian: one output name per (function output, function input) block, row-major;
    block ``[i][j]`` has shape ``outputs[i].shape + inputs[j].shape``."""

    op: Annotated[Literal["jacobian"], _U]
    attributes: JacobianAttributes


class HessianNode(_FunctionalNode):
    """The Hessian of a scalar: one output name per (input, input) block, row-major."""

    op: Annotated[Literal["hessian"], _U]
    attributes: HessianAttributes


class ProductNode(_FunctionalNode):
    """A vector product: one output name per function input (``vjp``, ``hvp``, ``vhp``) or per
    function output (``jvp``). The function's value is the graph value ``outputs`` names."""

    op: Annotated[Literal["vjp", "jvp", "hvp", "vhp"], _U]
    attributes: ProductAttributes


# ---------------------------------------------------------------- torch.func nodes
class FuncAttributes(_Model):
    """The function a ``torch.func`` node transforms, as for the functional nodes: the part of
    the graph from the values named in ``inputs`` (its positional arguments, one tensor each) to
    those named in ``outputs`` (a single name: it returns a tensor; a list: a tuple). With
    ``has_aux``, ``outputs`` is ``[output, aux, ...]``: the function returns ``(output, aux)``
    (aux a tuple when more than one is named)."""

    outputs: NameRef | list[NameRef]
    inputs: NameRef | list[NameRef]


Argnums = Annotated[int | list[int], _U]


class FuncGradAttributes(FuncAttributes):
    """``torch.func.grad`` and ``grad_and_value``: ``argnums`` (an int: one gradient; a list:
    one per position) and ``has_aux``."""

    argnums: Argnums = 0
    has_aux: RBool = False


class FuncJacrevAttributes(FuncGradAttributes):
    """``torch.func.jacrev``'s options."""

    chunk_size: Annotated[int | None, Field(ge=1), _N] = None


class FuncJacfwdAttributes(FuncGradAttributes):
    """``torch.func.jacfwd``'s options."""

    randomness: Annotated[Literal["error", "different", "same"], _U] = "error"


class FuncHessianAttributes(FuncAttributes):
    """``torch.func.hessian``'s options."""

    argnums: Argnums = 0


class FuncProductAttributes(FuncAttributes):
    """``torch.func.vjp`` (``v``: the cotangents, shaped like the outputs) and ``torch.func.jvp``
    (``v``: the tangents, one per input)."""

    v: NameRef | list[NameRef]
    has_aux: RBool = False


Dims = Annotated[int | None | list[int | None], _NULL]


class VmapAttributes(FuncAttributes):
    """``torch.func.vmap(func, in_dims, out_dims, randomness, chunk_size=...)(*args)``: the
    function (``inputs`` to ``outputs``, values of one batch element) is called on ``args``
    (one per input, batched along ``in_dims``; null passes an argument whole)."""

    args: NameRef | list[NameRef]
    in_dims: Dims = 0
    out_dims: Dims = 0
    randomness: Annotated[Literal["error", "different", "same"], _U] = "error"
    chunk_size: Annotated[int | None, Field(ge=1), _N] = None


class FuncGradNode(_FunctionalNode):
    """``func.grad``: one gradient per ``argnums`` position, then the aux values (``has_aux``);
    ``func.grad_and_value``: the gradients, the value, then the aux values."""

    op: Annotated[Literal["func.grad", "func.grad_and_value"], _U]
    attributes: FuncGradAttributes


class FuncJacrevNode(_FunctionalNode):
    """``func.jacrev``: one block per (output, argnums position) pair, row-major, then aux."""

    op: Annotated[Literal["func.jacrev"], _U]
    attributes: FuncJacrevAttributes


class FuncJacfwdNode(_FunctionalNode):
    """``func.jacfwd``: one block per (output, argnums position) pair, row-major, then aux."""

    op: Annotated[Literal["func.jacfwd"], _U]
    attributes: FuncJacfwdAttributes


class FuncHessianNode(_FunctionalNode):
    """``func.hessian``: one block per (output, position, position), row-major."""

    op: Annotated[Literal["func.hessian"], _U]
    attributes: FuncHessianAttributes


class FuncProductNode(_FunctionalNode):
    """``func.vjp``: one product per function input; ``func.jvp``: one per function output.
    The function's value (and aux) are the graph values ``outputs`` names."""

    op: Annotated[Literal["func.vjp", "func.jvp"], _U]
    attributes: FuncProductAttributes


class VmapNode(_FunctionalNode):
    """``vmap`` (``torch.vmap``, also ``func.vmap``): one result per function output, batched
    along ``out_dims``."""

    op: Annotated[Literal["vmap", "func.vmap"], _U]
    attributes: VmapAttributes


FUNCTIONAL_OPS: dict[str, str] = {"jacobian": "jacobian", "hessian": "hessian", "vjp": "product",
                                  "jvp": "product", "hvp": "product", "vhp": "product"}
# torch.func's transforms as node kinds (``grad`` alone is autograd_grad, as in the expression form)
FUNC_OPS: dict[str, str] = {"func.grad": "func.grad", "func.grad_and_value": "func.grad",
                            "func.jacrev": "func.jacrev", "func.jacfwd": "func.jacfwd",
                            "func.hessian": "func.hessian", "func.vjp": "func.product",
                            "func.jvp": "func.product", "vmap": "vmap", "func.vmap": "vmap"}
_NODE_TAGS: dict[type, str] = {GradNode: "grad", JacobianNode: "jacobian", HessianNode: "hessian",
                               ProductNode: "product", FuncGradNode: "func.grad",
                               FuncJacrevNode: "func.jacrev", FuncJacfwdNode: "func.jacfwd",
                               FuncHessianNode: "func.hessian",
                               FuncProductNode: "func.product", VmapNode: "vmap"}
_KIND_TAGS: dict[str, str] = {**FUNCTIONAL_OPS, **FUNC_OPS}
# What a node's "op" may be besides an engine op name (GET /v1/ops lists them).
NODE_KINDS: tuple[str, ...] = ("op", "grad", *FUNCTIONAL_OPS, *FUNC_OPS)


def _node_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        op = unbox(v.get("op"))
        if op == "grad":
            return "grad"
        return _KIND_TAGS.get(op, "op") if isinstance(op, str) else "op"
    if isinstance(v, BaseModel):
        return _NODE_TAGS.get(type(v), "op")
    return None


Node = Annotated[Annotated[OpNode, Tag("op")] | Annotated[GradNode, Tag("grad")]
                 | Annotated[JacobianNode, Tag("jacobian")] | Annotated[HessianNode, Tag("hessian")]
                 | Annotated[ProductNode, Tag("product")] | Annotated[FuncGradNode, Tag("func.grad")]
                 | Annotated[FuncJacrevNode, Tag("func.jacrev")]
                 | Annotated[FuncJacfwdNode, Tag("func.jacfwd")]
                 | Annotated[FuncHessianNode, Tag("func.hessian")]
                 | Annotated[FuncProductNode, Tag("func.product")] | Annotated[VmapNode, Tag("vmap")],
                 Discriminator(_node_kind, custom_error_type="invalid_node",
                               custom_error_message="a node must be an object with an 'op'")]


GRAPH_HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"


class OnnxModelIn(_Model):
    """An ONNX model's bytes, tensor-like: ``b64`` or ``parameters.binary_data_size`` (a part of
    the binary body, before the graph inputs'), or only the ``hash`` of a model sent before
    (409 ``plan-not-cached`` if this server no longer has it). ``hash`` next to the bytes is
    checked against them."""

    name: str | None = None
    datatype: Literal["BYTES", "UINT8"] | None = None
    shape: list[Annotated[int, Field(ge=0)]] | None = Field(None, max_length=1)
    b64: str | None = None
    parameters: TensorParameters | None = None
    hash: Annotated[str, Field(pattern=GRAPH_HASH_PATTERN)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> OnnxModelIn:
        binary = self.parameters is not None and self.parameters.binary_data_size is not None
        if self.b64 is not None and binary:
            raise ValueError("a model needs one of b64 or parameters.binary_data_size, not both")
        if self.b64 is None and not binary and self.hash is None:
            raise ValueError("a model needs b64, parameters.binary_data_size, or the hash of a model "
                             "sent before")
        return self

    @property
    def source(self) -> str:
        """Where the bytes are: ``"b64"``, ``"binary"`` or ``"hash"`` (none sent)."""
        if self.b64 is not None:
            return "b64"
        if self.parameters is not None and self.parameters.binary_data_size is not None:
            return "binary"
        return "hash"


class Graph(_Model):
    """Named input tensors plus exactly one of ``nodes``, an expression ``source``, or the
    ``hash`` of a graph sent before (see :func:`service.plan_cache.graph_hash`): a server that
    still has that graph's plan cached runs it on the new inputs, otherwise it answers 409
    ``plan-not-cached`` and the client sends the whole graph again."""

    inputs: list[TensorIn] = Field(default_factory=list)
    nodes: list[Node] | None = None
    source: Annotated[str | None, _U] = None
    hash: Annotated[str | None, Field(pattern=GRAPH_HASH_PATTERN), _U] = None
    onnx: OnnxModelIn | None = Field(None, description="An ONNX model: its values (inputs, "
                                     "initializers, node outputs) are graph values, and ``nodes``, "
                                     "if given, run after it (service.onnx_graph).")

    @model_validator(mode="after")
    def _nodes_or_source(self) -> Graph:
        if self.onnx is not None:
            if self.source is not None or self.hash is not None:
                raise ValueError("a graph with onnx takes nodes (run after the model), not source or hash")
        elif sum(x is not None for x in (self.nodes, self.source, self.hash)) != 1:
            raise ValueError("a graph needs exactly one of nodes, source, hash or onnx")
        for i, t in enumerate(self.inputs):
            if not t.name:
                raise ValueError(f"graph input {i} needs a name")
        return self


# ---------------------------------------------------------------- request
class GradRequest(_Model):
    """The top level is the final ``autograd_grad`` call; ``return`` adds values to send back.

    Leaving out both ``outputs`` and ``inputs`` skips the gradient (``grads`` is then empty).
    """

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    graph: Graph
    outputs: str | list[str] | None = None
    inputs: str | list[str] | None = None
    grad_outputs: Annotated[str | list[Annotated[str | TensorIn | None, _N]] | None, _NULL] = None
    retain_graph: Annotated[bool | None, _N] = None
    create_graph: RBool = False
    allow_unused: Annotated[bool | None, _N] = None
    materialize_grads: RBool = False
    is_grads_batched: RBool = False
    return_: RNames = Field(default_factory=list, alias="return")
    response_encoding: Annotated[Literal["json", "b64"], _U] = "json"
    allow_non_finite: RBool = Field(False, description="Accept NaN and infinity in input tensors "
                                    "(refused with 422 otherwise).")
    check_finite: RBool = Field(False, description="Refuse (422) the first node, or backward function, "
                               "that produces NaN or infinity, naming it (like torch's anomaly mode).")


# ---------------------------------------------------------------- response (documentation/clients)
class TensorOut(BaseModel):
    """A result tensor: ``data`` (flat, row-major), ``b64``, or ``parameters.binary_data_size``."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    b64: str | None = None
    parameters: dict[str, Any] | None = None


class GradResponse(BaseModel):
    """``grads`` lines up with the request's ``inputs`` (null where allow_unused gives None)."""

    grads: list[TensorOut | None]
    values: dict[str, TensorOut | None]


class ErrorItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details; ``exception`` is set for engine and autograd errors."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list)
    exception: str | None = None

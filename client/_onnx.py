"""``Client.onnx(model)``: an ONNX model as a recording module.

Calling the module records one node that stands for the whole model; its parameters are client
tensors whose values are the model's initializers (known here, never fetched). When a request is
built, the model becomes the request's ``graph.onnx`` and the recorded tensors take the model's
names (inputs, outputs, initializers), so the server runs the model and whatever was recorded
after it as one graph. The model's bytes travel once per client: afterwards the request names the
model by hash (and sends them again only if the server answers 409 ``plan-not-cached``).

One model call per request, with leaves (``c.tensor``) as the model's inputs.

>>> m = c.onnx("mlp.onnx")  # doctest: +SKIP
>>> y = m(x=c.tensor(x))  # doctest: +SKIP
>>> grads = c.autograd_grad((y * y).sum(), list(m.parameters().values()))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pybase64

import engine

from ._recording import Node, Tensor, _BaseClient

__all__ = ["OnnxModel", "CALL", "PARAMETERS", "split_onnx"]

CALL, PARAMETERS = "onnx", "onnx.parameters"  # the op names of the two pseudo-nodes


class OnnxModel:
    """A model recorded by a client: ``m(x=...)`` gives client tensors (one output: a tensor;
    several: a tuple in the model's order), ``m.parameters()`` the named parameters."""

    def __init__(self, client: _BaseClient, model: Any) -> None:
        import engine.onnx as eo
        if isinstance(model, (str, os.PathLike)):
            with open(model, "rb") as f:
                data = f.read()
        elif isinstance(model, (bytes, bytearray, memoryview)):
            data = bytes(model)
        elif hasattr(model, "SerializeToString"):
            data = model.SerializeToString()
        else:
            raise TypeError(f"onnx() takes a path, bytes or onnx.ModelProto, not {type(model).__name__}")
        self._client = client
        self.module = eo.load(data)  # checked here: an unsupported model fails before any request
        self.hash = self.module.hash
        self._b64: str | None = None
        self._data = data
        self.input_names = list(self.module.input_names)
        self.output_names = list(self.module.output_names)
        client._onnx_names |= self.module.value_names
        node = Node(PARAMETERS, -1, [], {}, (), (), {"model": self})
        self._params: dict[str, Tensor] = {}
        for name, arr in self.module._params.items():
            label, seq = client._recorder.name("param")
            t = Tensor(client, label, seq, node=node, value=arr, requires_grad=True)
            node.outputs.append(t)
            self._params[name] = t
        node.seq = node.outputs[0]._seq if node.outputs else -1

    def wire(self) -> dict[str, Any]:
        """The model as ``graph.onnx``: its bytes in base64 and its hash."""
        if self._b64 is None:
            self._b64 = pybase64.b64encode(self._data).decode("ascii")
        return {"b64": self._b64, "hash": self.hash}

    def parameters(self) -> dict[str, Tensor]:
        """The floating-point initializers by name, as tensors that require grad."""
        return dict(self._params)

    def __call__(self, *args: Any, **inputs: Any) -> Any:
        if len(args) > len(self.input_names):
            raise TypeError(f"the model takes {len(self.input_names)} inputs, got {len(args)}")
        inputs = {**dict(zip(self.input_names, args)), **inputs}
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise TypeError(f"the model's inputs are {self.input_names}; missing {missing}, unknown {extra}")
        c = self._client
        ins = {k: v if isinstance(v, Tensor) else c.tensor(np.asarray(v)) for k, v in inputs.items()}
        node = Node(CALL, -1, [], {}, tuple(ins.values()), (), {"model": self, "inputs": ins})
        for _ in self.output_names:
            label, seq = c._recorder.name("onnx")
            node.outputs.append(Tensor(c, label, seq, node=node, requires_grad=True))
        node.seq = node.outputs[0]._seq
        return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)

    def run_node(self, node: Node, env: dict[int, Any]) -> tuple[Any, ...]:
        """Run one of this model's pseudo-nodes locally with the engine (for shapes and dtypes)."""
        if node.op == PARAMETERS:
            return tuple(engine.from_numpy(t._value).requires_grad_() for t in node.outputs)
        ins = {k: env[id(t)] for k, t in node.kwargs["inputs"].items()}
        params = {name: env[id(t)] for name, t in self._params.items() if id(t) in env}
        values = self.module.run(ins, self.output_names, params)
        return tuple(values[o] for o in self.output_names)

    def __repr__(self) -> str:
        return f"OnnxModel({self.hash[:19]}..., inputs={self.input_names}, outputs={self.output_names})"


def split_onnx(nodes: Sequence[Node]) -> tuple[OnnxModel | None, dict[str, str], list[Node]]:
    """The model a request's nodes use, the renaming of client names to model names, and the
    other nodes (those that go on the wire as ``graph.nodes``)."""
    models = {id(n.kwargs["model"]): n.kwargs["model"] for n in nodes if n.op in (CALL, PARAMETERS)}
    if not models:
        return None, {}, list(nodes)
    if len(models) > 1:
        raise ValueError("a request can use one ONNX model; compute with each model separately")
    model = next(iter(models.values()))
    calls = [n for n in nodes if n.op == CALL]
    if len(calls) > 1:
        raise ValueError("a request can hold one call of an ONNX model; call it once per request "
                         "(or batch the inputs)")
    m: dict[str, str] = {}
    for n in nodes:
        if n.op == PARAMETERS:
            for name, t in model._params.items():
                m[t.name] = name
    for n in calls:
        for name, t in n.kwargs["inputs"].items():
            if t._node is not None:
                raise ValueError(f"ONNX model input {name!r} must be a leaf (c.tensor(...)), not the "
                                 f"result of {t._node.op!r}")
            if t.name in m and m[t.name] != name:
                raise ValueError(f"tensor {t.name!r} is given for two model inputs ({m[t.name]!r} and "
                                 f"{name!r}); pass a copy for one of them")
            m[t.name] = name
        for name, t in zip(model.output_names, n.outputs):
            m[t.name] = name
    return model, m, [n for n in nodes if n.op not in (CALL, PARAMETERS)]

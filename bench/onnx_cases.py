"""The ONNX case: the gradient of an exported CNN over HTTP, against torch on the same module.

The CNN of the ``cnn`` case (conv 3->16->32, relu, max_pool, linear; batch 32 of 32x32) as a
torch module, exported with ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``:
the model is the same and it exports in a fraction of a second). The "engine" column is the
bench server (:func:`bench.service_cases.server`) answering ``POST /v1/grad`` with the model named
by hash, the images and labels in a binary body, ``cross_entropy`` as a node after the model, and
the six parameter gradients back as binary; the "torch" column is forward plus
``torch.autograd.grad`` in this process. HTTP, encoding and decoding are counted against the
engine: the ratio is what a client of the service pays against running torch itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings

import numpy as np

from ._harness import Case, Run, register
from .model_cases import CNN

PARAMS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias")


def _module():  # noqa: ANN202 - torch is imported lazily
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c0, c1, c2 = CNN["channels"]
            self.conv1 = torch.nn.Conv2d(c0, c1, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(c1, c2, 3, padding=1)
            self.fc = torch.nn.Linear(c2 * (CNN["hw"] // 4) ** 2, CNN["classes"])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            F = torch.nn.functional
            h = F.max_pool2d(F.relu(self.conv1(x)), 2)
            h = F.max_pool2d(F.relu(self.conv2(h)), 2)
            return self.fc(h.flatten(1))

    torch.manual_seed(0)
    return Net().eval()


def _export(m, x) -> bytes:  # noqa: ANN001
    import torch
    f = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(m, (x,), f, input_names=["x"], output_names=["logits"], dynamo=False,
                          opset_version=18)
    return f.getvalue()


def build_onnx_cnn(quick: bool) -> dict[str, Run]:
    import base64

    import torch

    from .service_cases import Conn, body_of, read_binary, server, tensor
    rng = np.random.default_rng(0)
    b, hw = CNN["batch"], CNN["hw"]
    x = rng.standard_normal((b, CNN["channels"][0], hw, hw)).astype(np.float32)
    target = rng.integers(0, CNN["classes"], b).astype(np.int64)
    m = _module()
    data = _export(m, torch.from_numpy(x))
    h = "sha256:" + hashlib.sha256(data).hexdigest()

    xt, blob = tensor("x", x, "binary")
    tt = {"name": "target", "datatype": "INT64", "shape": [b],
          "parameters": {"binary_data_size": target.nbytes}}
    req = {"graph": {"onnx": {"hash": h}, "inputs": [xt, tt],
                     "nodes": [{"op": "nn.functional.cross_entropy", "inputs": ["logits", "target"],
                                "outputs": ["loss"]}]},
           "outputs": "loss", "inputs": list(PARAMS)}
    blobs = [blob, target.tobytes()]
    body, headers = body_of(req, blobs, binary_response=True)
    # the first request of each worker process carries the model; later ones name it by hash
    full, full_headers = body_of({**req, "graph": {**req["graph"], "onnx": {
        "b64": base64.b64encode(data).decode()}}}, blobs, binary_response=True)
    conn = Conn(server().port)

    def served() -> list[np.ndarray]:
        status, hdrs, content = conn.post("/v1/grad", body, headers)
        if status == 409:  # this worker has not seen the model yet (or forgot it)
            status, hdrs, content = conn.post("/v1/grad", full, full_headers)
        if status != 200:
            raise RuntimeError(f"POST /v1/grad: HTTP {status}: {content[:300]!r}")
        return read_binary(content, hdrs)

    params = [dict(m.named_parameters())[k] for k in PARAMS]
    xt_, tt_ = torch.from_numpy(x), torch.from_numpy(target)

    def torch_run() -> tuple:
        return torch.autograd.grad(torch.nn.functional.cross_entropy(m(xt_), tt_), params)

    return {"engine": served, "torch": torch_run}


def _unavailable() -> str | None:
    try:
        import onnx  # noqa: F401
        import torch.onnx  # noqa: F401
    except ImportError as e:
        return f"needs {e.name} (pip install -e '.[bench]')"
    return None


register(Case("onnx_cnn", "ONNX: the cnn case's CNN exported from torch, gradient of its six parameters "
              "over HTTP (model by hash, binary body) vs torch in process", build_onnx_cnn, reps=20,
              quick_reps=3, rtol=2e-3, atol=1e-5, unavailable=_unavailable))

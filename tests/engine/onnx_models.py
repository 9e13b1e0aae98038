"""Torch modules exported to ONNX for the ONNX tests (engine, service, e2e, bench): an MLP, a
small CNN and a transformer block, with the exporter torch 2.13 uses by default (dynamo, which
needs onnxscript; it keeps parameter names). ``torchscript=True`` selects the older TorchScript
exporter, whose graphs compute shapes at run time (Shape -> Gather -> Concat -> Reshape)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(3, 8), torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class CNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, stride=2)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BatchNorm after the ReLU: exporters fold a BatchNorm that follows a Conv into its weights
        h = torch.nn.functional.max_pool2d(self.bn(torch.relu(self.conv(x))), 2)
        h = torch.nn.functional.avg_pool2d(torch.sigmoid(self.conv2(h)), 1)
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


class Block(torch.nn.Module):
    """A pre-norm transformer block (GPT-2 style)."""

    def __init__(self, d: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.att = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        self.ff = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        a, _ = self.att(h, h, h, need_weights=False)
        x = x + a
        return x + self.ff(self.ln2(x))


class TinyLM(torch.nn.Module):
    """Token ids in (int64), logits out: embedding, a causal block, a tied head (GPT-2 style)."""

    def __init__(self, vocab: int = 11, d: int = 8) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.randn(5, d))
        self.block = Block(d)
        self.ln = torch.nn.LayerNorm(d)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.block(self.emb(ids) + self.pos[: ids.shape[1]])
        return self.ln(h) @ self.emb.weight.T


MODELS = {"mlp": (MLP, (4, 3)), "cnn": (CNN, (2, 2, 8, 8)), "block": (Block, (2, 5, 8)),
          "lm": (TinyLM, (2, 5))}


def make(name: str, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    """The eval-mode module ``name`` (BatchNorm with non-trivial running stats) and an input."""
    cls, shape = MODELS[name]
    torch.manual_seed(seed)
    m = cls().eval()
    with torch.no_grad():  # distinct values everywhere (LayerNorm starts at ones and zeros)
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
    if name == "lm":
        return m, torch.randint(0, 11, shape)
    return m, torch.randn(*shape)


@functools.cache
def exported(name: str, torchscript: bool = False) -> bytes:
    """The model's ONNX bytes (input ``x``, output ``y``), cached on disk by this file's content
    and torch's version (an export takes seconds; every test process needs them)."""
    key = hashlib.sha256(Path(__file__).read_bytes() + torch.__version__.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "gradserve-onnx-tests" / f"{name}-{int(torchscript)}-{key}.onnx"
    if path.exists():
        return path.read_bytes()
    data = _export(name, torchscript)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{id(data)}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: another process may be writing the same file
    return data


def _export(name: str, torchscript: bool) -> bytes:
    m, x = make(name)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        if torchscript:
            f = io.BytesIO()
            torch.onnx.export(m, (x,), f, input_names=["x"], output_names=["y"], dynamo=False,
                              opset_version=18)
            return f.getvalue()
        prog = torch.onnx.export(m, (x,), input_names=["x"], output_names=["y"], dynamo=True)
        return prog.model_proto.SerializeToString()


def torch_params(m: torch.nn.Module, initializers: dict[str, np.ndarray]
                 ) -> dict[str, tuple[torch.Tensor, bool]]:
    """For each initializer, the torch parameter it holds: by name, else by value (exporters
    transpose weights for MatMul): ``name -> (parameter, transposed)``."""
    named = dict(m.named_parameters())
    out = {}
    for k, arr in initializers.items():
        if k in named and np.array_equal(named[k].detach().numpy(), arr):
            out[k] = (named[k], False)
            continue
        for p in named.values():
            v = p.detach().numpy()
            if v.shape == arr.shape and np.array_equal(v, arr):
                out[k] = (p, False)
                break
            if v.ndim == 2 and v.T.shape == arr.shape and np.array_equal(v.T, arr):
                out[k] = (p, True)
                break
    return out

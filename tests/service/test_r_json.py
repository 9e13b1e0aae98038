"""Wire format v1 as R writes it: the bytes of ``jsonlite::toJSON`` under its default settings
(every length-1 vector a one-element array) and with ``auto_unbox = TRUE`` (every one a scalar).

The bodies are files in ``r_json/``, written by R (``r_json/make_fixtures.R``); with ``Rscript``
on the machine the test writes them again and checks R still writes those very bytes. Expected
values come from torch. The ambiguous forms keep their meaning, one test each.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch

from service import core
from tests._require import require_tool

from .helpers import read_tensor, wire_tensor

HERE = Path(__file__).parent / "r_json"
SETTINGS = ("default", "unbox")
R_APT = "apt-get install r-base-core r-cran-jsonlite"


def _t(values: object, dtype: torch.dtype = torch.float32, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


# ---------------------------------------------------------------- torch oracles, one per case
def _seed(shape: list[int]) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    w, b = _t(0.5, grad=True).reshape(shape), _t(0.9, grad=True).reshape(shape)
    x = _t([0.1, 0.4, 0.7, 0.9])
    loss = ((2 * x + 1 - (w * x + b)) ** 2).mean()
    return [g.numpy() for g in torch.autograd.grad(loss, [w, b])], {"loss": loss.detach().numpy()}


def _matrix() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    w = _t([[1, 2, 3], [4, 5, 6]], torch.float64, True)
    loss = ((w @ _t([1, -1, 2], torch.float64)) ** 2).sum()
    return [torch.autograd.grad(loss, w)[0].numpy()], {}


def _second_order() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    x = _t([1, 2, 3], torch.float64, True)
    g, = torch.autograd.grad((x ** 3).sum(), x, create_graph=True)
    return [torch.autograd.grad((g * _t([1, 0, 0], torch.float64)).sum(), x)[0].numpy()], {}


def _nulls() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    x = _t([1, 2], torch.float64, True)
    gx, = torch.autograd.grad([x * x, x.sum()], x, grad_outputs=[_t([10, 100], torch.float64), None])
    return [gx.numpy()], {}


def _nonfinite() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    nan, inf = float("nan"), float("inf")
    x = _t([0.5, nan, nan, inf, -inf], torch.float64, True)
    y = x * 2
    return [torch.autograd.grad(y.sum(), x)[0].numpy()], {"y": y.detach().numpy()}


def _b64() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    x = _t([1, 2, 3], grad=True)
    return [torch.autograd.grad((x * x).sum(), x)[0].numpy()], {}


ORACLES: dict[str, Callable[[], tuple[list[np.ndarray], dict[str, np.ndarray]]]] = {
    "seed_source": lambda: _seed([]), "matrix": _matrix, "second_order": _second_order,
    "nulls": _nulls, "nonfinite": _nonfinite, "b64": _b64,
}
WORKING = [(case, setting) for case in ORACLES for setting in SETTINGS] + [("seed_nodes", "unbox")]


def _check(resp: object, case: str) -> None:
    assert resp.status_code == 200, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    grads, values = _seed([1]) if case == "seed_nodes" else ORACLES[case]()
    assert len(body["grads"]) == len(grads)
    for got, want in zip(body["grads"], grads):
        arr = read_tensor(got)
        assert arr.shape == want.shape and arr.dtype == want.dtype
        np.testing.assert_allclose(arr, want, rtol=1e-6)
    assert sorted(body["values"]) == sorted(values)
    for k, want in values.items():
        np.testing.assert_allclose(read_tensor(body["values"][k]), want, rtol=1e-6)


def _post(client: object, body: bytes) -> object:
    return client.post("/v1/grad", content=body,  # type: ignore[attr-defined]
                       headers={"content-type": "application/json"})


@pytest.mark.parametrize(("case", "setting"), WORKING)
def test_r_json_fixture_gets_torchs_answer(client: object, case: str, setting: str) -> None:
    _check(_post(client, (HERE / f"{case}.{setting}.json").read_bytes()), case)


def test_fixtures_are_what_r_writes(client: object, tmp_path: Path) -> None:
    """R writes the checked-in bytes today, and the server answers them (needs Rscript)."""
    rscript = require_tool("Rscript", f"needs R and jsonlite: {R_APT}")
    subprocess.run([rscript, str(HERE / "make_fixtures.R"), str(tmp_path)], check=True, timeout=120)
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert written == sorted(p.name for p in HERE.glob("*.json"))
    for name in written:
        fresh = (tmp_path / name).read_bytes()
        assert fresh == (HERE / name).read_bytes(), f"R now writes {name} differently: run make_fixtures.R"
    for case, setting in WORKING:
        _check(_post(client, (tmp_path / f"{case}.{setting}.json").read_bytes()), case)


# ---------------------------------------------------------------- ambiguous forms keep their meaning
def _seed_request(w_shape: object, w_data: object) -> dict:
    return {"graph": {"inputs": [{"name": "w", "datatype": "FP32", "shape": w_shape, "data": w_data,
                                  "requires_grad": True}, wire_tensor("x", np.float32([1, 2, 3, 4]))],
                      "source": "loss = sum(w * x)"},
            "outputs": "loss", "inputs": "w"}


@pytest.mark.parametrize("data", [0.5, [0.5]])
def test_shape_empty_list_is_0d(client: object, data: object) -> None:
    """``"shape": []`` (R's integer(0)) is a 0-d tensor, whether data is 0.5 or [0.5]."""
    g = _post(client, orjson.dumps(_seed_request([], data))).json()["grads"][0]  # type: ignore[attr-defined]
    assert g["shape"] == [] and g["data"] == [10.0]


@pytest.mark.parametrize(("shape", "data"), [(1, 0.5), (1, [0.5]), ([1], 0.5), ([1], [0.5])])
def test_shape_one_is_1d(client: object, shape: object, data: object) -> None:
    """``"shape": 1`` and ``[1]`` are both 1-D of length 1 (R's torch_tensor(0.5)), never 0-d."""
    g = _post(client, orjson.dumps(_seed_request(shape, data))).json()["grads"][0]  # type: ignore[attr-defined]
    assert g["shape"] == [1] and g["data"] == [10.0]


def test_shape_scalar_is_a_length_not_a_0d_tensor(client: object) -> None:
    """``"shape": 4`` (auto_unbox of a length-4 vector's dim) is ``[4]``, not a scalar."""
    req = _seed_request([], 0.5)
    req["graph"]["inputs"][1] = {"name": "x", "datatype": "FP32", "shape": 4, "data": [1, 2, 3, 4]}
    resp = _post(client, orjson.dumps(req))
    assert resp.status_code == 200, resp.text  # type: ignore[attr-defined]
    req["graph"]["inputs"][1]["data"] = 1
    resp = _post(client, orjson.dumps(req))
    assert resp.status_code == 422  # type: ignore[attr-defined]
    assert "data has 1 elements but shape [4] needs 4" in resp.text  # type: ignore[attr-defined]


def _nodes_request(nodes: list, x: np.ndarray) -> dict:
    return {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True)], "nodes": nodes},
            "outputs": ["s"], "inputs": ["x"], "return": ["y"]}


def test_one_element_list_in_node_inputs_stays_a_list(client: object) -> None:
    """In a node's inputs ``["x"]`` is still a list holding one tensor (``cat([x])``) and ``[4]``
    a literal list (a shape), never unboxed."""
    x = np.float32([1, 2, 3, 4])
    nodes = [{"op": "cat", "inputs": [["x"]], "outputs": ["c"]},
             {"op": "reshape", "inputs": ["c", [4]], "outputs": ["y"]},
             {"op": "sum", "inputs": "y", "outputs": "s"}]
    body = _post(client, orjson.dumps(_nodes_request(nodes, x))).json()  # type: ignore[attr-defined]
    assert body["values"]["y"]["shape"] == [4]
    xt = _t(x, grad=True)
    want = torch.autograd.grad(torch.cat([xt]).reshape([4]).sum(), xt)[0].numpy()
    np.testing.assert_array_equal(read_tensor(body["grads"][0]), want)


def test_default_jsonlite_mixed_node_inputs_stay_invalid(client: object) -> None:
    """R's default writes ``list(2, "x")`` as ``[[2],["x"]]``: a list literal and a list of
    tensors taken as a constant, as before: the loss does not depend on w, and torch's error says
    so (R users write such nodes with auto_unbox, or use the expression form)."""
    resp = _post(client, (HERE / "seed_nodes.default.json").read_bytes())
    assert resp.status_code == 422, resp.text  # type: ignore[attr-defined]
    assert "does not require grad" in resp.json()["detail"]  # type: ignore[attr-defined]


def test_one_element_list_in_attributes_stays_a_list(client: object) -> None:
    """Attributes are op arguments: ``"dim": [1]`` is still the tuple (1,), and ``"keepdim":
    [false]`` is still refused (422), never read as false."""
    x = np.float32([[1, 2], [3, 4]])
    nodes = [{"op": "sum", "inputs": ["x"], "attributes": {"dim": [1]}, "outputs": ["y"]},
             {"op": "sum", "inputs": ["y"], "outputs": ["s"]}]
    body = _post(client, orjson.dumps(_nodes_request(nodes, x))).json()  # type: ignore[attr-defined]
    assert body["values"]["y"]["shape"] == [2] and body["values"]["y"]["data"] == [3.0, 7.0]
    nodes[0]["attributes"] = {"dim": 1, "keepdim": [False]}
    resp = _post(client, orjson.dumps(_nodes_request(nodes, x)))
    assert resp.status_code == 422, resp.text  # type: ignore[attr-defined]


def test_grad_outputs_list_of_one_stays_a_list(client: object) -> None:
    """``grad_outputs: [tensor]`` is not unboxed into a bare object (which is not allowed)."""
    req = {"graph": {"inputs": [wire_tensor("x", np.float64([1, 2]), requires_grad=True)],
                     "source": "y = x * 3"},
           "outputs": ["y"], "inputs": ["x"], "grad_outputs": [wire_tensor("g", np.float64([1, 10]))]}
    body = _post(client, orjson.dumps(req)).json()  # type: ignore[attr-defined]
    assert body["grads"][0]["data"] == [3.0, 30.0]


# ---------------------------------------------------------------- the fast paths see R's form too
def test_b64_excision_sees_through_one_element_array(client: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big ``"b64": ["..."]`` is still cut out of the body before parsing (not parsed whole)."""
    x = np.random.default_rng(0).random(400_000).astype(np.float32)  # 2 MiB of base64
    t = wire_tensor("x", x, requires_grad=True, encoding="b64")
    req = {"graph": {"inputs": [{**{k: [v] for k, v in t.items() if k != "shape"}, "shape": t["shape"]}],
                     "source": "s = sum(x * x)"},
           "outputs": ["s"], "inputs": ["x"], "response_encoding": ["b64"]}
    seen: list[int] = []
    real = core._parse_excising

    def spy(body: bytes, *args: object) -> tuple:
        out = real(body, *args)
        seen.append(len(out[1]))
        return out

    monkeypatch.setattr(core, "_parse_excising", spy)
    resp = _post(client, orjson.dumps(req))
    assert resp.status_code == 200, resp.text[:300]  # type: ignore[attr-defined]
    assert seen == [1]
    np.testing.assert_allclose(read_tensor(resp.json()["grads"][0]), 2 * x, rtol=1e-6)  # type: ignore[attr-defined]


def test_binary_body_with_r_header(client: object) -> None:
    """A binary body whose JSON header R wrote (boxed sizes, scalar shape)."""
    x = np.float32([1, 2, 3])
    header = {"graph": {"inputs": [{"name": ["x"], "datatype": ["FP32"], "shape": 3,
                                    "parameters": {"binary_data_size": [x.nbytes]}, "requires_grad": [True]}],
                        "nodes": [{"op": ["mul"], "inputs": ["x", "x"], "outputs": "y"},
                                  {"op": "sum", "inputs": "y", "outputs": ["s"]}]},
              "outputs": ["s"], "inputs": ["x"]}
    js = orjson.dumps(header)
    resp = client.post("/v1/grad", content=js + x.tobytes(),  # type: ignore[attr-defined]
                       headers={"content-type": "application/octet-stream",
                                "inference-header-content-length": str(len(js))})
    assert resp.status_code == 200, resp.text
    assert resp.json()["grads"][0]["data"] == [2.0, 4.0, 6.0]


def test_wrong_types_still_refused(client: object) -> None:
    """Only the R forms are new: a two-element name, a list shape of strings, a boxed object stay 422."""
    for name, shape in ((["x", "y"], [2]), ("x", ["2"]), ("x", [[2]])):
        req = {"graph": {"inputs": [{"name": name, "datatype": "FP32", "shape": shape, "data": [1, 2]}],
                         "source": "s = sum(x)"}, "return": "s"}
        resp = _post(client, orjson.dumps(req))
        assert resp.status_code == 422, (name, shape, resp.text)  # type: ignore[attr-defined]

"""Recording: op names from engine.OPS, deterministic names, the wire form of recorded graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import engine
from client import AsyncClient, Client, Tensor

from ._scenarios import Harness


def _graph(c: Client, *ts: Tensor) -> dict:
    return json.loads(c.to_json(return_values=list(ts)))["graph"]


def _node_of(c: Client, t: Tensor) -> dict:
    return next(n for n in _graph(c, t)["nodes"] if t.name in n["outputs"])


def test_every_engine_op_is_a_client_function() -> None:
    c = Client()
    for name, info in engine.OPS.items():
        obj = c
        for part in name.split("."):
            obj = getattr(obj, part)
        assert callable(obj), name
        assert obj.__doc__ == info.fn.__doc__
    assert set(n for n in engine.OPS if "." not in n) <= set(dir(c))


def test_engine_tensor_methods_are_client_methods() -> None:
    c = Client()
    x = c.tensor([1.0, 2.0])
    methods = [n for n in engine.OPS if "." not in n and callable(getattr(engine.Tensor, n, None))]
    assert len(methods) > 50
    for name in methods:
        assert callable(getattr(x, name)), name
    with pytest.raises(AttributeError):
        x.no_such_op  # noqa: B018
    with pytest.raises(AttributeError, match="no op"):
        c.no_such_op  # noqa: B018


def test_a_newly_registered_op_appears_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    info = engine.OPS["exp"]
    monkeypatch.setitem(engine.OPS, "brand_new_op", info)
    monkeypatch.setitem(engine.OPS, "fancy.sub.thing", info)
    c = Client()
    x = c.tensor([1.0])
    assert _node_of(c, c.brand_new_op(x))["op"] == "brand_new_op"
    assert _node_of(c, c.fancy.sub.thing(x))["op"] == "fancy.sub.thing"
    assert "fancy" in dir(c)


def test_seed_example_wire_form_matches_the_issue() -> None:
    c = Client()
    w = c.tensor(0.5, requires_grad=True, name="w")
    b = c.tensor(0.9, requires_grad=True, name="b")
    x = c.tensor(np.linspace(0, 1, 100, dtype=np.float32), name="x")
    y = 2 * x + 1
    loss = ((y - (w * x + b)) ** 2).mean()
    req = json.loads(c.to_json(loss, [w, b], return_values=[loss]))
    ins = {t["name"]: t for t in req["graph"]["inputs"]}
    assert ins["w"] == {"name": "w", "datatype": "FP32", "shape": [], "data": 0.5, "requires_grad": True}
    assert ins["b"]["data"] == 0.9 and ins["x"]["datatype"] == "FP32" and len(ins["x"]["data"]) == 100
    assert "requires_grad" not in ins["x"]
    nodes = req["graph"]["nodes"]
    assert [n["op"] for n in nodes] == ["mul", "add", "mul", "add", "sub", "pow", "mean"]
    o = [n["outputs"][0] for n in nodes]
    assert [n["inputs"] for n in nodes] == [[2, "x"], [o[0], 1], ["w", "x"], [o[2], "b"], [o[1], o[3]],
                                            [o[4], 2], [o[5]]]
    assert req["outputs"] == [loss.name] and req["inputs"] == ["w", "b"] and req["return"] == [loss.name]
    assert req["grad_outputs"] is None and req["create_graph"] is False


def test_names_are_deterministic_and_unique() -> None:
    def record(c: Client) -> str:
        x = c.tensor([1.0, 2.0], requires_grad=True)
        y = (x.exp() * x).sum() + x.max()
        parts = x.split(1)
        return c.to_json(y + parts[0].sum(), [x])

    a, b = Client(), Client()
    assert record(a) == record(b)
    names = [n for node in json.loads(record(a))["graph"]["nodes"] for n in node["outputs"]]
    assert len(names) == len(set(names))


def test_user_names_must_be_unique() -> None:
    c = Client()
    c.tensor(1.0, name="w")
    with pytest.raises(ValueError, match="already used"):
        c.tensor(2.0, name="w")
    t = c.tensor(1.0) * 2
    with pytest.raises(ValueError, match="already used"):
        c.tensor(1.0, name=t.name)
    with pytest.raises(ValueError):
        c.tensor(1.0, name="")


def test_argument_encodings() -> None:
    c = Client()
    x = c.tensor(np.ones((2, 3)))
    assert _node_of(c, x[1:, None, ...])["inputs"][1] == {
        "tuple": [{"slice": [1, None, None]}, None, {"ellipsis": True}]}
    assert _node_of(c, x[[0, 1]])["inputs"][1] == [0, 1]  # a list index, not a tuple
    mask = x > 0
    assert _node_of(c, x[mask])["inputs"][1] == mask.name
    n = _node_of(c, c.norm(x, "fro"))
    assert n["inputs"][1] == {"literal": "fro"}  # positional strings would read as names
    n = _node_of(c, x.sum(dim=(0, 1), keepdim=True, dtype=engine.float64))
    assert n["attributes"] == {"dim": [0, 1], "keepdim": True, "dtype": "float64"}
    n = _node_of(c, c.where(mask, x, other=x * 0))
    assert n["attributes"]["other"]["ref"].startswith("mul_")
    # JSON has no -inf: the scalar travels as a constant tensor
    filled = x.masked_fill(mask, float("-inf"))
    n = _node_of(c, filled)
    const = next(t for t in _graph(c, filled)["inputs"] if t["name"] == n["inputs"][2])
    assert const["data"] == "-Infinity"
    # numpy arrays become constant leaves
    n = _node_of(c, x * np.arange(3.0))
    assert n["inputs"][1].startswith("const_")


def test_bad_calls_fail_at_record_time() -> None:
    c, other = Client(), Client()
    x = c.tensor([1.0])
    with pytest.raises(TypeError):
        c.exp(x, 1, 2)
    with pytest.raises(ValueError, match="another client"):
        x + other.tensor([1.0])
    with pytest.raises(TypeError, match="truth value"):
        bool(x > 0)
    with pytest.raises(RuntimeError, match="floating point"):
        c.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="cannot be sent"):
        c.tensor(np.zeros(2, np.uint8))
    with pytest.raises(TypeError, match="can't assign a str to a torch.FloatTensor"):  # as torch
        x[0] = "a"
    with pytest.raises(RuntimeError, match="cannot be empty"):
        c.autograd_grad(x.sum(), [], create_graph=True)


def test_shapes_and_dtypes_of_computed_tensors_need_no_request() -> None:
    h = Harness(Client())
    c = h.c
    x = c.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = (x.double() @ np.ones((3, 4), np.float64)).t()  # matmul wants one dtype, as in torch
    assert y.shape == (4, 2) and y.dtype == engine.float64 and y.ndim == 2 and y.numel() == 8
    assert len(y) == 4 and len(list(y)) == 4
    assert (x > 0).dtype == engine.bool and not (x > 0).requires_grad
    assert y.requires_grad
    (g,) = c.autograd_grad(y.sum(), [x], create_graph=True)
    assert g.shape == (2, 3) and g.dtype == engine.float32
    assert h.requests == 0


def test_constructors_run_locally_so_random_values_are_drawn_once() -> None:
    h = Harness(Client())
    c = h.c
    r = c.rand(5, requires_grad=True)
    assert r.is_leaf and r.requires_grad and r.shape == (5,)
    first = r.numpy().copy()
    x = c.tensor(np.ones(5))
    (gr,) = c.autograd_grad((r * x).sum(), [r])
    np.testing.assert_array_equal(r.numpy(), first)
    np.testing.assert_array_equal(gr, np.ones(5, np.float32))
    rl = c.rand_like(x)
    assert rl.is_leaf and rl.shape == (5,) and rl.dtype == engine.float64
    assert h.requests == 1


def test_values_are_fetched_on_demand_and_cached() -> None:
    h = Harness(Client())
    c = h.c
    x = c.tensor([1.0, 2.0, 3.0])
    y = (x * x).sum()
    assert h.requests == 0
    assert y.item() == 14.0 and h.requests == 1
    assert float(y) == 14.0 and y.tolist() == 14.0 and np.asarray(y) == 14.0 and h.requests == 1
    assert x.numpy().tolist() == [1.0, 2.0, 3.0] and h.requests == 1  # leaves never ask


def test_async_values_must_be_awaited() -> None:
    c = AsyncClient()
    y = c.tensor([1.0]) * 2
    with pytest.raises(RuntimeError, match="await"):
        y.numpy()


def test_to_json_and_curl() -> None:
    c = Client("http://127.0.0.1:9", api_key="s3cret")
    x = c.tensor([1.0, 2.0], requires_grad=True, name="x")
    loss = (x * x).sum()
    body = json.loads(c.to_json(return_values=[loss]))
    assert "outputs" not in body and body["return"] == [loss.name]
    b64 = json.loads(c.to_json(loss, x, encoding="b64"))
    assert "b64" in b64["graph"]["inputs"][0] and b64["inputs"] == ["x"]
    cmd = c.curl(loss, [x])
    assert cmd.startswith("curl -sS http://127.0.0.1:9/v1/grad")
    assert "s3cret" not in cmd and "$GRADSERVE_API_KEY" in cmd
    body = cmd.split("<<'JSON'\n", 1)[1].rsplit("\nJSON", 1)[0]
    assert json.loads(body) == json.loads(c.to_json(loss, [x]))
    c.close()


@pytest.mark.parametrize("name", ["vmap", "grad", "jacrev", "grad_and_value"])
def test_torch_func_names_say_where_the_transforms_are(name: str) -> None:
    with pytest.raises(AttributeError, match=r"c\.jacobian.*c\.func\.grad"):
        getattr(Client(), name)

"""engine.nn.Module, Parameter, Buffer and the containers against torch.nn's: the same structure
built with each library gives the same names, state_dict keys, traversal order, reprs and errors.
(The layers are tested in test_nn_modules.py.)"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch

import engine

from .parity import assert_same_error


def _tensor(m: Any, a: Any) -> Any:
    return m.tensor(np.asarray(a, np.float32))


def _classes(m: Any) -> dict[str, type]:
    """The same user modules written against ``m.nn`` (engine or torch)."""
    nn = m.nn

    class Leaf(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.w = nn.Parameter(m.ones(n, n) * 0.5)
            self.b = nn.Parameter(m.zeros(n))
            self.register_buffer("count", m.zeros(()))
            self.register_buffer("scratch", m.zeros(n), persistent=False)
            self.n = n

        def forward(self, x: Any) -> Any:
            return x @ self.w + self.b

        def extra_repr(self) -> str:
            return f"n={self.n}"

    class Tree(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = Leaf(2)
            self.blocks = nn.ModuleList([Leaf(2), Leaf(2), Leaf(3)])
            self.head = nn.Sequential(OrderedDict(a=Leaf(2), b=Leaf(2)))
            self.shared = self.first  # the same module twice
            self.tied = self.first.w  # and a parameter twice
            self.none_param = None
            self.register_parameter("absent", None)
            self.register_buffer("empty", None)
            self.table = nn.ModuleDict({"x": Leaf(2)})

        def forward(self, x: Any) -> Any:
            return self.head(self.first(x))

    return {"Leaf": Leaf, "Tree": Tree}


def _names(pairs: Any) -> list[str]:
    return [n for n, _ in pairs]


@pytest.mark.parametrize("remove_duplicate", [True, False])
def test_traversal_gives_torch_s_names_in_torch_s_order(remove_duplicate: bool) -> None:
    e, t = _classes(engine)["Tree"](), _classes(torch)["Tree"]()
    for kw in ({}, {"prefix": "net"}, {"recurse": False}):
        assert _names(e.named_parameters(remove_duplicate=remove_duplicate, **kw)) == \
            _names(t.named_parameters(remove_duplicate=remove_duplicate, **kw))
        assert _names(e.named_buffers(remove_duplicate=remove_duplicate, **kw)) == \
            _names(t.named_buffers(remove_duplicate=remove_duplicate, **kw))
    assert _names(e.named_modules(remove_duplicate=remove_duplicate)) == \
        _names(t.named_modules(remove_duplicate=remove_duplicate))
    assert _names(e.named_children()) == _names(t.named_children())
    assert len(list(e.parameters())) == len(list(t.parameters()))
    assert len(list(e.modules())) == len(list(t.modules()))
    assert list(e.state_dict()) == list(t.state_dict())
    shapes = [[tuple(v.shape) for v in mod.state_dict().values()] for mod in (e, t)]
    assert shapes[0] == shapes[1]
    assert list(e.state_dict(prefix="p.")) == list(t.state_dict(prefix="p."))
    assert sorted(k for k in dir(e) if not k.startswith("_")) == \
        sorted(k for k in dir(t) if not k.startswith("_") and hasattr(e, k))


def test_repr_is_torch_s() -> None:
    e, t = _classes(engine)["Tree"](), _classes(torch)["Tree"]()
    assert repr(e) == repr(t)
    assert repr(engine.nn.Module()) == repr(torch.nn.Module())
    assert repr(engine.nn.Sequential()) == repr(torch.nn.Sequential())
    assert repr(engine.nn.ModuleList()) == repr(torch.nn.ModuleList())


def test_module_list_repr_folds_runs_of_equal_children_as_torch_s() -> None:
    def build(m: Any) -> Any:
        leaf = _classes(m)["Leaf"]
        return m.nn.ModuleList([leaf(2), leaf(2), leaf(2), leaf(3), leaf(2), leaf(2)])
    assert repr(build(engine)) == repr(build(torch))


def test_parameter_and_buffer_containers_as_torch_s() -> None:
    def build(m: Any) -> tuple:
        pl = m.nn.ParameterList([m.nn.Parameter(m.ones(2)), m.ones(3, 4)])
        pl.append(m.zeros(1))
        pd = m.nn.ParameterDict({"b": m.nn.Parameter(m.ones(2)), "a": m.ones(3)})
        pd["c"] = m.zeros(5)
        one = m.nn.ParameterDict({"a": m.ones(2)})
        return pl, pd, one
    (epl, epd, eone), (tpl, tpd, tone) = build(engine), build(torch)
    assert all(isinstance(p, engine.nn.Parameter) for p in epl)
    assert all(isinstance(p, engine.nn.Parameter) for p in epd.values())
    assert repr(epl) == repr(tpl).replace("torch.float32", "engine.float32")
    assert repr(epd) == repr(tpd) and repr(eone) == repr(tone)
    assert list(epd.keys()) == list(tpd.keys()) and len(epl) == len(tpl)
    assert _names(epl.named_parameters()) == _names(tpl.named_parameters())
    assert _names(epd.named_parameters()) == _names(tpd.named_parameters())
    assert [tuple(p.shape) for p in epl[1:]] == [tuple(p.shape) for p in tpl[1:]]


def test_a_parameter_is_a_leaf_sharing_its_source_s_values() -> None:
    for m in (engine, torch):
        src = _tensor(m, [1.0, 2.0])
        p = m.nn.Parameter(src)
        assert p.requires_grad and p.is_leaf and p.grad_fn is None
        assert isinstance(p, m.Tensor) and isinstance(p, m.nn.Parameter)
        src.add_(1.0)
        assert p.tolist() == [2.0, 3.0]  # shared
        assert type(p * 2) is m.Tensor  # ops give plain tensors
        assert not m.nn.Parameter(src, requires_grad=False).requires_grad
        assert tuple(m.nn.Parameter().shape) == (0,)
    assert repr(engine.nn.Parameter(engine.ones(2))).splitlines()[0] == "Parameter containing:"


def test_assigning_registers_and_replaces_as_torch_does() -> None:
    def scenario(m: Any) -> tuple:
        mod = m.nn.Module()
        mod.p = m.nn.Parameter(m.ones(2))
        mod.c = m.nn.Linear(2, 2) if hasattr(m.nn, "Linear") else m.nn.Sequential()
        mod.register_buffer("buf", m.zeros(1))
        mod.buf = m.ones(3)          # still a buffer
        mod.p = None                 # a parameter slot set to None
        mod.x = 5                    # a plain attribute
        mod.c = None
        mod.q = m.nn.Parameter(m.ones(1))
        del mod.q
        return (list(mod._parameters), list(mod._buffers), list(mod._modules), mod.x, tuple(mod.buf.shape))
    assert scenario(engine) == scenario(torch)


@pytest.mark.parametrize("case", [
    "param_before_init", "module_before_init", "buffer_before_init", "tensor_as_param", "int_as_module",
    "int_as_buffer", "param_dotted", "param_empty", "param_exists", "param_plain_tensor", "buffer_dotted",
    "buffer_empty", "buffer_not_tensor", "buffer_name_not_str", "module_not_module", "module_dotted",
    "module_exists", "module_empty", "missing_attribute", "train_not_bool", "no_forward",
    "init_args", "init_kwargs", "state_dict_not_mapping", "to_int_dtype",
])
def test_errors_are_torch_s(case: str) -> None:
    def scenario(m: Any) -> None:
        nn = m.nn

        class Early(nn.Module):
            def __init__(self, what: str) -> None:
                if what == "param":
                    self.p = nn.Parameter(m.ones(1))
                elif what == "module":
                    self.c = nn.Module()
                else:
                    self.register_buffer("b", m.ones(1))

        mod = nn.Module()
        mod.p = nn.Parameter(m.ones(1))
        mod.c = nn.Module()
        mod.register_buffer("b", m.ones(1))
        t = m.ones(2)
        actions = {
            "param_before_init": lambda: Early("param"),
            "module_before_init": lambda: Early("module"),
            "buffer_before_init": lambda: Early("buffer"),
            "tensor_as_param": lambda: setattr(mod, "p", t),
            "int_as_module": lambda: setattr(mod, "c", 3),
            "int_as_buffer": lambda: setattr(mod, "b", 3),
            "param_dotted": lambda: mod.register_parameter("a.b", None),
            "param_empty": lambda: mod.register_parameter("", None),
            "param_exists": lambda: mod.register_parameter("c", None),
            "param_plain_tensor": lambda: mod.register_parameter("z", t),
            "buffer_dotted": lambda: mod.register_buffer("a.b", None),
            "buffer_empty": lambda: mod.register_buffer("", None),
            "buffer_not_tensor": lambda: mod.register_buffer("z", [1.0]),
            "buffer_name_not_str": lambda: mod.register_buffer(3, None),
            "module_not_module": lambda: mod.add_module("z", 3),
            "module_dotted": lambda: mod.add_module("a.b", nn.Module()),
            "module_exists": lambda: mod.add_module("p", nn.Module()),
            "module_empty": lambda: mod.add_module("", nn.Module()),
            "missing_attribute": lambda: mod.nothing,
            "train_not_bool": lambda: mod.train(1),
            "no_forward": lambda: mod(t),
            "init_args": lambda: nn.Module(1),
            "init_kwargs": lambda: nn.Module(a=1),
            "state_dict_not_mapping": lambda: mod.load_state_dict([1]),
            "to_int_dtype": lambda: mod.to(m.int64),
        }
        actions[case]()
    key = {"to_int_dtype": "nn.Module.to only accepts floating point or complex dtypes"}.get(case)
    assert_same_error(scenario, key=key)


def _pair() -> tuple[Any, Any]:
    """The same Tree in both libraries, the engine's loaded with torch's values."""
    e, t = _classes(engine)["Tree"](), _classes(torch)["Tree"]()
    with torch.no_grad():
        for i, p in enumerate(t.parameters()):
            p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape) * (i + 1))
    e.load_state_dict({k: engine.tensor(v.numpy()) for k, v in t.state_dict().items()})
    return e, t


def test_load_state_dict_copies_values_and_forward_matches_torch() -> None:
    e, t = _pair()
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    ye, yt = e(engine.tensor(x)), t(torch.tensor(x))
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-6)
    ye.sum().backward()
    yt.sum().backward()
    for (ne, pe), (nt, pt) in zip(e.named_parameters(), t.named_parameters()):
        assert ne == nt
        if pt.grad is None:
            assert pe.grad is None, ne
        else:
            np.testing.assert_allclose(pe.grad.numpy(), pt.grad.numpy(), rtol=1e-6, err_msg=ne)


def test_state_dict_shares_values_and_keep_vars_gives_the_parameters() -> None:
    e, _ = _pair()
    sd = e.state_dict()
    assert not sd["first.w"].requires_grad
    sd["first.w"].mul_(0)  # a view of the parameter's values, as torch's
    assert float(e.first.w.abs().sum()) == 0.0
    assert e.state_dict(keep_vars=True)["first.w"] is e.first.w


@pytest.mark.parametrize("case", ["missing", "unexpected", "size", "all"])
@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_reports_keys_and_errors_as_torch(case: str, strict: bool) -> None:
    def scenario(m: Any) -> Any:
        mod = _classes(m)["Tree"]()
        sd = dict(mod.state_dict())
        if case in ("missing", "all"):
            del sd["head.a.b"], sd["count" if "count" in sd else "first.count"]
        if case in ("unexpected", "all"):
            sd["extra"] = m.ones(1)
            sd["first.w.x"] = m.ones(1)
            sd["blocks.9.w"] = m.ones(1)
        if case in ("size", "all"):
            sd["first.b"] = m.ones(7)
        r = mod.load_state_dict(sd, strict=strict)
        return r.missing_keys, r.unexpected_keys, repr(r)

    try:
        expected = scenario(torch)
    except RuntimeError:
        assert_same_error(scenario, key=str(_torch_error(scenario)))
        return
    assert scenario(engine) == expected


def _torch_error(fn: Any) -> BaseException:
    try:
        fn(torch)
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("torch did not raise")


def test_load_state_dict_casts_dtypes_and_assign_replaces() -> None:
    for m in (engine, torch):
        mod = m.nn.Module()
        mod.w = m.nn.Parameter(m.zeros(2))
        mod.load_state_dict({"w": m.tensor([1.5, 2.5], dtype=m.float64)})
        assert mod.w.dtype == m.float32 and mod.w.tolist() == [1.5, 2.5]
        new = m.tensor([7.0, 8.0], dtype=m.float64)
        mod.load_state_dict({"w": new}, assign=True)
        assert mod.w.dtype == m.float64 and isinstance(mod.w, m.nn.Parameter) and mod.w.requires_grad


def test_train_eval_requires_grad_and_zero_grad() -> None:
    for m in (engine, torch):
        tree = _classes(m)["Tree"]()
        assert tree.eval() is tree
        assert not any(mod.training for mod in tree.modules())
        tree.train()
        assert all(mod.training for mod in tree.modules())
        tree(m.ones(3, 2)).sum().backward()
        tree.zero_grad(set_to_none=False)
        assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in tree.parameters())
        assert any(p.grad is not None for p in tree.parameters())
        tree.zero_grad()
        assert all(p.grad is None for p in tree.parameters())
        tree.requires_grad_(False)
        assert not any(p.requires_grad for p in tree.parameters())


def test_forward_hooks_modify_and_are_removed() -> None:
    def scenario(m: Any) -> list:
        leaf = _classes(m)["Leaf"](2)
        seen: list = []
        h1 = leaf.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
        h2 = leaf.register_forward_hook(lambda mod, args, out: seen.append(tuple(out.shape)) or out + 1)
        x = m.ones(1, 2)
        a = leaf(x).tolist()
        h1.remove()
        b = leaf(x).tolist()
        h2.remove()
        c = leaf(x).tolist()
        return [a, b, c, seen]
    assert scenario(engine) == scenario(torch)


def test_conversions_keep_each_parameter_and_convert_grads_and_buffers() -> None:
    for m in (engine, torch):
        leaf = _classes(m)["Leaf"](2)
        leaf(m.ones(1, 2)).sum().backward()
        w = leaf.w
        assert leaf.double() is leaf
        assert leaf.w is w and w.dtype == m.float64 and w.grad.dtype == m.float64
        assert leaf.count.dtype == m.float64 and leaf.scratch.dtype == m.float64
        leaf.to(m.float32)
        assert leaf.w is w and w.dtype == m.float32
        leaf.to(dtype=m.float64)
        assert w.dtype == m.float64
        leaf.float()
        assert w.dtype == m.float32


def test_get_submodule_parameter_and_buffer() -> None:
    def scenario(m: Any, path: str, kind: str) -> Any:
        tree = _classes(m)["Tree"]()
        got = getattr(tree, "get_" + kind)(path)
        return type(got).__name__ if kind == "submodule" else tuple(got.shape)
    for path, kind in (("blocks.2", "submodule"), ("head.a.w", "parameter"), ("first.count", "buffer"),
                       ("", "submodule")):
        assert scenario(engine, path, kind) == scenario(torch, path, kind)
    for path, kind in (("blocks.7", "submodule"), ("first.n", "parameter"), ("first.w", "buffer"),
                       ("head.zz.w", "parameter")):
        assert_same_error(scenario, path, kind)


def test_apply_visits_children_first() -> None:
    def scenario(m: Any) -> list[str]:
        order: list[str] = []
        _classes(m)["Tree"]().apply(lambda mod: order.append(type(mod).__name__))
        return order
    assert scenario(engine) == scenario(torch)


def test_sequential_operations_as_torch_s() -> None:
    def scenario(m: Any) -> list:
        leaf = _classes(m)["Leaf"]
        s = m.nn.Sequential(leaf(2), leaf(2), leaf(2), leaf(2))
        out = [len(s), type(s[1:3]).__name__, list(s[1:3]._modules), list(s[::2]._modules)]
        del s[1]
        out.append(list(s._modules))
        s.append(leaf(2))
        s.insert(1, leaf(3))
        out.append([mod.n for mod in s])
        popped = s.pop(0)
        out += [popped.n, list(s._modules), [mod.n for mod in s + s]]
        s[0] = leaf(5)
        out.append(s[-1].n)
        out.append(s[0].n)
        named = m.nn.Sequential(OrderedDict(first=leaf(2), second=leaf(2)))
        out.append(list(named[1:]._modules))
        return out
    assert scenario(engine) == scenario(torch)
    assert_same_error(lambda m: m.nn.Sequential(m.nn.Module())[3])
    assert_same_error(lambda m: m.nn.Sequential() + m.nn.ModuleList(),
                      key="add operator supports only objects of Sequential class")


def test_sequential_chains_forward() -> None:
    def scenario(m: Any) -> Any:
        leaf = _classes(m)["Leaf"]
        return m.nn.Sequential(leaf(2), leaf(2))(m.ones(3, 2)).tolist()
    assert scenario(engine) == scenario(torch)


def test_module_list_and_dict_operations_as_torch_s() -> None:
    def scenario(m: Any) -> list:
        leaf = _classes(m)["Leaf"]
        ml = m.nn.ModuleList([leaf(1), leaf(2), leaf(3)])
        out = [len(ml), [x.n for x in ml[1:]], ml[-1].n]
        del ml[0]
        out.append(list(ml._modules))
        ml.insert(0, leaf(7))
        ml.append(leaf(8))
        ml += [leaf(9)]
        out.append([x.n for x in ml])
        out.append(ml.pop(1).n)
        out.append([x.n for x in ml + m.nn.ModuleList([leaf(4)])])
        md = m.nn.ModuleDict({"b": leaf(1), "a": leaf(2)})
        md["c"] = leaf(3)
        md.update([("d", leaf(4))])
        out += [list(md), list(md.keys()), "a" in md, md.pop("b").n, len(md), [v.n for v in md.values()]]
        md.clear()
        out.append(len(md))
        out.append(_names(m.nn.ModuleList([leaf(1), leaf(1)]).named_parameters()))
        return out
    assert scenario(engine) == scenario(torch)
    assert_same_error(lambda m: m.nn.ModuleList([m.nn.Module()])[4])
    assert_same_error(lambda m: m.nn.ModuleDict().update(3))
    assert_same_error(lambda m: m.nn.ModuleDict().update([(1, 2, 3)]))


def test_deepcopy_gives_independent_parameters() -> None:
    e, _ = _pair()
    e(engine.ones(1, 2)).sum().backward()
    c = copy.deepcopy(e)
    assert _names(c.named_parameters()) == _names(e.named_parameters())
    for (_, a), (_, b) in zip(c.named_parameters(), e.named_parameters()):
        assert a is not b and isinstance(a, engine.nn.Parameter) and a.requires_grad
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    assert c.shared is c.first and c.tied is c.first.w  # sharing is kept within the copy
    with engine.no_grad():
        c.first.w.add_(1.0)
    assert not np.array_equal(c.first.w.detach().numpy(), e.first.w.detach().numpy())


def test_buffer_assigned_registers_with_its_persistence() -> None:
    for m in (engine, torch):
        mod = m.nn.Module()
        mod.kept = m.nn.Buffer(m.ones(1))
        mod.dropped = m.nn.Buffer(m.ones(2), persistent=False)
        assert _names(mod.named_buffers()) == ["kept", "dropped"]
        assert list(mod.state_dict()) == ["kept"]

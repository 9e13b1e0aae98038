"""Autograd behaviours from issue 12, each run on torch and on the engine and compared:
warnings (non-leaf .grad, backward(create_graph=True), no_grad on a class), once_differentiable,
output_nr, Tensor.all in a custom backward, a closed no_grad generator's cleanup, a Function
returning one tensor twice, numpy() under no_grad, the legacy Function error and .grad
accumulating in place."""

from __future__ import annotations

import warnings

import pytest
import torch

import engine

LIBS = [torch, engine]


def _warnings(fn) -> list[tuple[type, str]]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn()
    return [(x.category, str(x.message)) for x in w]


def test_non_leaf_grad_warns_like_torch() -> None:
    def scenario(m):
        x = m.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2
        seen = _warnings(lambda: y.grad)
        y.retain_grad()
        quiet = _warnings(lambda: y.grad)
        return seen, quiet, _warnings(lambda: x.grad)

    (t_seen, t_quiet, t_leaf), (e_seen, e_quiet, e_leaf) = (scenario(m) for m in LIBS)
    assert [c for c, _ in e_seen] == [c for c, _ in t_seen] == [UserWarning]
    assert t_seen[0][1].startswith(e_seen[0][1].split(" See ")[0])
    assert e_quiet == t_quiet == [] and e_leaf == t_leaf == []


def test_backward_create_graph_warns_once_like_torch() -> None:
    # torch warns once per process: its side runs in a fresh interpreter.
    code = ("import warnings, torch\n"
            "x = torch.tensor([1.0], requires_grad=True)\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    (x * x).sum().backward(create_graph=True)\n"
            "    (x * x).sum().backward(create_graph=True)\n"
            "    x.grad = None\n"
            "    (x * x).sum().backward(create_graph=True, inputs=[x])\n"
            "print(repr([(c.category.__name__, str(c.message)) for c in w]))\n")
    import ast
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    expected = ast.literal_eval(out.strip().splitlines()[-1])
    engine._autograd._WARNED["create_graph"] = False
    x = engine.tensor([1.0], requires_grad=True)
    got = _warnings(lambda: [(x * x).sum().backward(create_graph=True) for _ in range(2)])
    x.grad = None
    got += _warnings(lambda: (x * x).sum().backward(create_graph=True, inputs=[x]))
    expected = [(c, m.split(" (Triggered internally")[0]) for c, m in expected]
    assert [(c.__name__, m) for c, m in got] == expected


def test_no_grad_decorating_a_class() -> None:
    def scenario(m):
        def define():
            @m.no_grad()
            class Holder:
                def __init__(self, x):
                    self.y = x * 2
            return Holder
        seen = []
        Holder = None
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            Holder = define()
            seen = [x.category for x in w]
        x = m.tensor([1.0], requires_grad=True)
        return seen, Holder(x).y.requires_grad

    assert scenario(engine) == scenario(torch) == ([FutureWarning], False)


def test_once_differentiable() -> None:
    def scenario(m):
        class Square(m.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            @m.autograd.function.once_differentiable
            def backward(ctx, g):
                x, = ctx.saved_tensors
                return 2 * x * g

        x = m.tensor([1.0, 2.0], requires_grad=True)
        v = m.tensor([1.0, 3.0], requires_grad=True)
        g, = m.autograd.grad(Square.apply(x), x, v, create_graph=True)
        try:
            g.sum().backward()
            err = None
        except RuntimeError as e:
            err = str(e)
        plain, = m.autograd.grad(Square.apply(x).sum(), x)
        return g.tolist(), g.requires_grad, err, plain.tolist(), plain.requires_grad

    assert scenario(engine) == scenario(torch)


def test_output_nr() -> None:
    def scenario(m):
        x = m.tensor([[3.0, 1.0], [2.0, 5.0]], requires_grad=True)
        v, i = m.max(x, 1)
        a, b = m.linalg.eigh(x @ x.mT)
        return x.output_nr, v.output_nr, i.output_nr, a.output_nr, b.output_nr, (x * 2).output_nr

    assert scenario(engine) == scenario(torch)


def test_tensor_all_inside_custom_backward() -> None:
    def scenario(m):
        class Checked(m.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 3

            @staticmethod
            def backward(ctx, g):
                assert bool((g == 1).all()) and bool(g.all()) and not bool((g == 0).any())
                return g * 3

        x = m.tensor([1.0, 2.0], requires_grad=True)
        Checked.apply(x).sum().backward()
        return x.grad.tolist()

    assert scenario(engine) == scenario(torch)


def test_closed_no_grad_generator_cleans_up_in_no_grad() -> None:
    def scenario(m):
        modes = []

        @m.no_grad()
        def gen():
            try:
                yield 1
                yield 2
            except GeneratorExit:
                modes.append(m.is_grad_enabled())
                raise

        g = gen()
        next(g)
        g.close()
        return modes, m.is_grad_enabled()

    assert scenario(engine) == scenario(torch) == ([False], True)


def test_function_returning_one_tensor_twice() -> None:
    def scenario(m):
        class Twice(m.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = x * 2
                return y, y

            @staticmethod
            def backward(ctx, g1, g2):
                return 2 * g1 + (0 if g2 is None else 2 * g2)

        x = m.tensor([1.0], requires_grad=True)
        a, b = Twice.apply(x)
        a.sum().backward()
        return a is b, x.grad.tolist()

    assert scenario(engine) == scenario(torch)


def test_numpy_of_requires_grad_tensor_under_no_grad() -> None:
    for m in LIBS:
        x = m.tensor([1.0, 2.0], requires_grad=True)
        with m.no_grad():
            assert x.numpy().tolist() == [1.0, 2.0]
        with pytest.raises(RuntimeError, match="Can't call numpy"):
            x.numpy()


def test_legacy_non_static_function_error() -> None:
    msgs = []
    for m in LIBS:
        class Legacy(m.autograd.Function):
            def forward(self, x):
                return x * 2

            def backward(self, g):
                return g * 2

        with pytest.raises(RuntimeError) as e:
            Legacy()(m.tensor([1.0], requires_grad=True))
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]
    assert msgs[0].startswith("Legacy autograd function with non-static forward method is deprecated")


def test_grad_accumulates_in_place() -> None:
    def scenario(m):
        x = m.tensor([1.0, 2.0], requires_grad=True)
        (x * x).sum().backward()
        g = x.grad
        (x * x).sum().backward()
        return g.tolist(), g is x.grad

    assert scenario(engine) == scenario(torch) == ([4.0, 8.0], True)

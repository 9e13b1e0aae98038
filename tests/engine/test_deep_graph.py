"""Graphs 100,000 nodes deep: forward, backward (also with create_graph) and freeing, without
recursion errors. Values and gradients are compared with torch on the same chain."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest
import torch

import engine

from .parity import assert_same

DEPTH = 100_000
pytestmark = pytest.mark.slow


def chain(m, x, n: int = DEPTH):
    """``n`` nodes in a line: mul and add (saving a scalar or nothing), exp and log (saving
    tensors). The values stay near 1 and the derivative is not constant."""
    y = x
    for i in range(n):
        k = i % 4
        y = y * 0.99999 if k == 0 else y + 1e-5 if k == 1 else y.exp() if k == 2 else y.log()
    return y


def _leaf(m):
    return m.tensor([1.0, 0.5], dtype=m.float64, requires_grad=True)


def _first_node(y):
    """The node next to the leaf, found iteratively (the far end of the graph from ``y``)."""
    node = y.grad_fn
    while node.next_functions[0][0] is not None:
        node = node.next_functions[0][0]
    return node


def _assert_freed_by_refcount(ref: weakref.ref) -> None:
    gc.disable()  # no reference cycles may keep the graph alive
    try:
        assert ref() is None, "the graph was not freed"
    finally:
        gc.enable()


def _run(m, create_graph: bool):
    x = _leaf(m)
    y = chain(m, x)
    ref = weakref.ref(_first_node(y)) if m is engine else None
    out = {"y": y.detach()}
    if create_graph:
        (g,) = m.autograd.grad(y.sum(), x, create_graph=True)
        gref = weakref.ref(_first_node(g)) if m is engine else None
        (out["gg"],) = m.autograd.grad(g.sum(), x)
        out["g"], out["g_rg"] = g.detach(), g.requires_grad
        del g
    else:
        y.sum().backward()
        out["grad"] = x.grad
        try:  # the saved tensors were freed: a second backward raises
            y.sum().backward()
        except RuntimeError as e:
            out["second"] = str(e).split(".")[0]
    del y
    if m is engine:
        _assert_freed_by_refcount(ref)
        if create_graph:
            _assert_freed_by_refcount(gref)
    return out


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_graph_100k_nodes_deep_matches_torch_and_is_freed(create_graph):
    limit = sys.getrecursionlimit()
    ours = _run(engine, create_graph)
    theirs = _run(torch, create_graph)
    assert set(ours) == set(theirs)
    for k in theirs:
        assert_same(ours[k], theirs[k], rtol=1e-8)
    assert sys.getrecursionlimit() == limit

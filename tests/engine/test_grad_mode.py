"""torch parity for grad mode: no_grad, enable_grad, set_grad_enabled and is_grad_enabled.

Each scenario runs on ``m`` = ``engine`` and ``m`` = ``torch`` and records what it observes.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import engine

from .parity import parity

A3 = np.array([1.0, -2.0, 3.0], np.float32)


@pytest.fixture(autouse=True)
def _grad_mode_restored():
    yield
    # A failing scenario must not leave grad mode off for the next test (in either library).
    assert engine.is_grad_enabled() and torch.is_grad_enabled()


def test_no_grad_context_manager():
    def f(m):
        x = m.tensor(A3, requires_grad=True)
        with m.no_grad() as ctx:
            inside = m.is_grad_enabled()
            y = x * 2.0
        z = x * 2.0
        return ctx, inside, m.is_grad_enabled(), y.requires_grad, y.grad_fn is None, y.is_leaf, \
            z.requires_grad

    parity(f)


def test_enable_grad_inside_no_grad_and_nesting():
    def f(m):
        x = m.tensor(A3, requires_grad=True)
        seen = []
        with m.no_grad():
            with m.enable_grad():
                seen.append(m.is_grad_enabled())
                y = x * 2.0
                with m.no_grad():
                    seen.append(m.is_grad_enabled())
                seen.append(m.is_grad_enabled())
            seen.append(m.is_grad_enabled())
        seen.append(m.is_grad_enabled())
        return seen, y.requires_grad

    parity(f)


def test_context_managers_restore_the_mode_after_an_exception():
    def f(m):
        seen = []
        for ctx in (m.no_grad, lambda: m.set_grad_enabled(False)):
            try:
                with ctx():
                    raise KeyError("boom")
            except KeyError:
                seen.append(m.is_grad_enabled())
        with m.no_grad():
            try:
                with m.enable_grad():
                    raise KeyError("boom")
            except KeyError:
                seen.append(m.is_grad_enabled())
        return seen

    parity(f)


def test_set_grad_enabled_as_a_function_and_a_context_manager():
    def f(m):
        seen = []
        m.set_grad_enabled(False)
        seen.append(m.is_grad_enabled())
        m.set_grad_enabled(True)
        seen.append(m.is_grad_enabled())
        with m.set_grad_enabled(False):
            seen.append(m.is_grad_enabled())
            with m.set_grad_enabled(True):
                seen.append(m.is_grad_enabled())
            seen.append(m.is_grad_enabled())
        seen.append(m.is_grad_enabled())
        return seen

    parity(f)


def test_decorators():
    def f(m):
        x = m.tensor(A3, requires_grad=True)

        @m.no_grad()
        def a(t):
            """doc a"""
            return m.is_grad_enabled(), (t * 2.0).requires_grad

        @m.no_grad
        def b(t):
            return m.is_grad_enabled(), (t * 2.0).requires_grad

        @m.enable_grad()
        def c(t):
            return m.is_grad_enabled(), (t * 2.0).requires_grad

        @m.set_grad_enabled(False)
        def d(t):
            return m.is_grad_enabled(), (t * 2.0).requires_grad

        after_decorating = m.is_grad_enabled()  # set_grad_enabled(False) must not leak out
        with m.no_grad():
            c_inside_no_grad = c(x)
        return (a(x), b(x), c_inside_no_grad, d(x), after_decorating, m.is_grad_enabled(),
                a.__name__, a.__doc__, d.__name__)

    parity(f)


def test_autograd_namespace_has_the_switches():
    for name in ("no_grad", "enable_grad", "set_grad_enabled"):
        assert hasattr(torch.autograd, name)
        assert getattr(engine.autograd, name) is getattr(engine, name)


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_grad_mode_is_thread_local():
    def f(m):
        with m.no_grad():
            other_while_main_off = _in_thread(m.is_grad_enabled)

        def disable_in_thread():
            m.set_grad_enabled(False)
            return m.is_grad_enabled()

        thread_off = _in_thread(disable_in_thread)
        return other_while_main_off, thread_off, m.is_grad_enabled()

    parity(f)


def test_threads_record_graphs_independently():
    """One thread under no_grad, another recording at the same time: each sees its own mode."""
    def f(m):
        x = m.tensor(A3, requires_grad=True)
        barrier = threading.Barrier(2)
        results = {}

        def worker(name, enabled):
            with m.set_grad_enabled(enabled):
                barrier.wait()
                y = x * 3.0
                barrier.wait()
                results[name] = (m.is_grad_enabled(), y.requires_grad)

        ts = [threading.Thread(target=worker, args=("on", True)),
              threading.Thread(target=worker, args=("off", False))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return results["on"], results["off"]

    parity(f)


def test_decorated_generators_run_their_body_in_the_mode():
    def f(m):
        @m.no_grad()
        def gen():
            sent = yield m.is_grad_enabled()
            yield sent, m.is_grad_enabled()

        @m.enable_grad()
        def gen2():
            try:
                yield m.is_grad_enabled()
            except KeyError:
                yield "caught", m.is_grad_enabled()
            return 7

        g = gen()
        seen = [next(g), m.is_grad_enabled(), g.send(5), m.is_grad_enabled()]
        with m.no_grad():
            g2 = gen2()
            seen += [next(g2), g2.throw(KeyError("x")), m.is_grad_enabled()]
            try:
                next(g2)
            except StopIteration as stop:
                seen.append(stop.value)
        return seen

    parity(f)

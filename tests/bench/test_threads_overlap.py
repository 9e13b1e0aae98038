"""``python -m bench.threads --overlap``: parts of the engine's parallel regions recorded and
grouped by region. Nothing here is timed against a bound: only counts, and that the threads'
parts are told apart."""

from __future__ import annotations

import threading

import numpy as np

import engine
from bench import threads
from engine import _threads


def _region(items: int) -> list[int]:
    def fn(run):
        np.sort(np.random.default_rng(len(run)).random(20_000))  # some GIL-free work
        return threading.get_ident()
    return _threads.run_parts(fn, list(range(items)), blas=False)


def test_each_region_s_parts_are_grouped_with_the_caller_s_marked() -> None:
    n = engine.get_num_threads()
    engine.set_num_threads(2)
    try:
        with threads.traced_parts() as log:
            idents = _region(4)
            _region(6)
        rs = threads.regions(log)
    finally:
        engine.set_num_threads(n)
    assert len(set(idents)) == 2  # two threads took part
    assert [r["parts"] for r in rs] == [2, 2]
    assert sum(on_caller for _, on_caller, *_ in log) == 2  # one part per region on the caller
    for r in rs:
        assert r["wall"] > 0 and r["cpu"] > 0 and r["waiting"] >= 0


def test_with_one_thread_a_region_is_one_part_on_the_caller_and_the_hook_goes() -> None:
    n = engine.get_num_threads()
    engine.set_num_threads(1)
    try:
        with threads.traced_parts() as log:
            _region(4)
    finally:
        engine.set_num_threads(n)
    assert [r["parts"] for r in threads.regions(log)] == [1]
    assert [on_caller for _, on_caller, *_ in log] == [True]
    assert _threads._part.__name__ == "_part"  # the original is back


def test_the_overlap_table_of_the_cnn_step() -> None:
    (row,) = threads.overlap(("cnn",), rounds=1)
    assert row[0] == "cnn" and len(row) == len(threads.OVERLAP_HEADER)
    if engine.get_num_threads() > 1:  # the convolutions' regions (a 1-core machine has none)
        assert int(row[1]) >= 4 and float(row[3]) > 0

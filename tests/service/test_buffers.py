"""service.buffers: a body buffer is handed out again only once nothing refers to it."""

from __future__ import annotations

import gc

import numpy as np

from service.buffers import BodyBuffers


def test_a_buffer_is_reused_only_after_every_reference_is_gone() -> None:
    pool = BodyBuffers(max_bytes=1 << 20, max_buffers=4)
    a = pool.take(1000)
    a_id = id(a)
    view = memoryview(a)[10:20]
    arr = np.frombuffer(memoryview(a).toreadonly(), np.uint8)[100:]
    del a
    held = pool.take(1000)  # the first is still seen through view and arr
    assert id(held) != a_id
    del view
    assert id(pool.take(1000)) != a_id  # arr still holds it
    del arr
    gc.collect()
    assert id(pool.take(1000)) == a_id
    assert pool.kept() == [1000, 1000, 1000]  # a, held and the one taken while arr held a


def test_sizes_and_the_budget() -> None:
    pool = BodyBuffers(max_bytes=3000, max_buffers=2)
    b = pool.take(1000)
    assert len(b) == 1000 and pool.kept() == [1000]
    del b
    c = pool.take(1500)  # the free 1000-byte buffer stays: both fit
    assert sorted(pool.kept()) == [1000, 1500]
    d = pool.take(2000)  # no room for it beside c: the free one goes, c stays (it is in use)
    assert len(d) == 2000 and pool.kept() == [1500]
    big = pool.take(5000)  # over the budget: not kept
    assert len(big) == 5000 and pool.kept() == [1500]
    assert c is not d

"""service.buffers: a body buffer is handed out again only once nothing refers to it, and the
buffers in use never pass the pool's budget."""

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
    assert held is not None and id(held) != a_id
    del view
    again = pool.take(1000)  # arr still holds it
    assert again is not None and id(again) != a_id
    del arr
    gc.collect()
    assert id(pool.take(1000)) == a_id
    assert pool.kept() == [1000, 1000, 1000]


def test_sizes_and_the_budget() -> None:
    pool = BodyBuffers(max_bytes=3000, max_buffers=2)
    b = pool.take(1000)
    assert b is not None and len(b) == 1000 and pool.kept() == [1000]
    del b
    c = pool.take(1500)  # the free 1000-byte buffer stays: both fit
    assert c is not None and sorted(pool.kept()) == [1000, 1500]
    d = pool.take(1200)  # no room beside c: the free one goes, c stays (it is in use)
    assert d is not None and len(d) == 1200 and pool.kept() == [1500, 1200]
    assert pool.take(100) is None  # two buffers in use: none more
    assert pool.take(5000) is None  # over the budget
    del d
    assert pool.take(2000) is None  # 1500 in use + 2000 > 3000, even without the free one
    assert pool.kept() == [1500, 1200]  # (which stays)
    assert len(pool.take(1500)) == 1500 and pool.kept() == [1500, 1500]  # c is still in use

"""Big tensors take the fast paths (response sent in parts, big base64 spliced into the JSON):
the bytes that arrive are still exactly right."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from service import core
from service.settings import Settings

from .helpers import binary_body, read_tensor, split_binary_response, wire_tensor

N = (1 << 20) // 4 + 3  # a little over 1 MiB of float32: over core.SPLICE_MIN_BYTES


def request(a: np.ndarray, encoding: str, **top) -> dict:
    return {"graph": {"inputs": [wire_tensor("a", a, encoding=encoding, requires_grad=True)],
                      "source": "l = sum(a * a)\nh = a * 0.5"},
            "outputs": "l", "inputs": "a", "return": ["h", "l"], **top}


@pytest.fixture
def a() -> np.ndarray:
    return np.random.default_rng(3).standard_normal(N).astype(np.float32)


def test_big_base64_answer_is_spliced_correctly(client, a) -> None:
    assert a.nbytes >= core.SPLICE_MIN_BYTES
    r = client.post("/v1/grad", json=request(a, "b64", response_encoding="b64"))
    assert r.status_code == 200, r.text
    assert int(r.headers["content-length"]) == len(r.content)
    out = orjson.loads(r.content)
    g = np.frombuffer(base64.b64decode(out["grads"][0]["b64"], validate=True), "<f4")
    np.testing.assert_array_equal(g, 2 * a)
    np.testing.assert_array_equal(read_tensor(out["values"]["h"]), a * np.float32(0.5))
    np.testing.assert_allclose(read_tensor(out["values"]["l"]), np.sum(a.astype(np.float64) ** 2), rtol=1e-5)
    assert out["values"]["l"]["b64"]  # a small one, written by orjson itself


def test_big_binary_answer_in_parts(client, a) -> None:
    body, headers = binary_body(request(a, "binary"), [a])
    r = client.post("/v1/grad", content=body, headers={**headers, "accept": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert int(r.headers["content-length"]) == len(r.content)
    head, blobs = split_binary_response(r.content, int(r.headers["inference-header-content-length"]))
    np.testing.assert_array_equal(read_tensor(head["grads"][0], blobs[0]), 2 * a)
    np.testing.assert_array_equal(read_tensor(head["values"]["h"], blobs[1]), a * np.float32(0.5))


def test_parts_join_to_the_one_body(a) -> None:
    s = Settings()
    for enc in ("b64", "data"):
        body = orjson.dumps(request(a, enc, response_encoding="b64" if enc == "b64" else "json"))
        joined, media, headers = core.Job(body, core.JSON_MEDIA_TYPE, None, False, s)()
        parts, media2, headers2 = core.Job(body, core.JSON_MEDIA_TYPE, None, False, s).parts()
        assert b"".join(parts) == joined and media == media2 and headers == headers2
        assert orjson.loads(joined)["grads"][0]["name"] == "a"

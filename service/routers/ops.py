"""``GET /v1/ops``: the op catalogue, straight from ``engine.OPS``."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response

from .. import core
from ..deps import ApiKeyDep
from ..wire import NODE_KINDS

router = APIRouter(prefix="/v1", tags=["ops"])


@router.get("/ops", summary="Every op with its signature and differentiable arguments")
async def list_ops(_: ApiKeyDep) -> Response:
    """Each op: ``name``, ``canonical`` (aliases point to it), ``signature``, ``parameters``
    (name, kind, default), ``differentiable`` argument names, ``n_outputs`` (null: variable)
    and the first paragraph of its ``doc``. ``node_kinds`` lists the node kinds of the wire format.
    ``inplace`` lists torch's in-place names (``add_``, ``zero_``, ...) and ``setitem`` (item
    assignment), which nodes run with functional semantics: the node's output is the mutated value."""
    ops = core.list_ops()
    body = {"count": len(ops), "node_kinds": list(NODE_KINDS), "ops": ops, "inplace": core.list_inplace_ops()}
    return Response(orjson.dumps(body), media_type="application/json")

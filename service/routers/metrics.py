"""``GET /metrics``: Prometheus exposition text, summed over the server's worker processes."""

from __future__ import annotations

from fastapi import APIRouter, Response

from .. import metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def prometheus_metrics() -> Response:
    """Counters and histograms of requests, engine work, errors and the plan cache.

    A plain ``def``: with several workers it reads one file per process, so it runs in the
    thread pool rather than on the event loop."""
    body, media_type = metrics.render()
    return Response(body, media_type=media_type)

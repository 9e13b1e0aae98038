"""Liveness and readiness probes (never behind authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

import engine

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Ready to take requests (503 while starting or draining)")
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    if not getattr(state, "ready", False):
        return JSONResponse({"status": "unavailable"}, status_code=503)
    gate = state.gate
    return JSONResponse({"status": "ready", "ops": len(engine.OPS), "active": gate.active,
                         "queued": gate.waiting})

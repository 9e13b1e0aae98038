"""The playground: ``GET /playground`` (and ``/``, which redirects there), a page to try the service.

A user types an expression (the ``graph.source`` form) and its inputs and presses Run; the page asks
``POST /v1/graph`` for the nodes and their shapes and ``POST /v1/grad`` for the values and gradients,
draws the computation graph as SVG and shows the equivalent curl command and Python client code.
Plain HTML, CSS and JavaScript from ``service/playground/``: no build step, nothing from a CDN. The
page itself needs no API key; it sends the key typed into it with its requests.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from ..errors import NotFound

__all__ = ["router", "PAGE_DIR", "CSP"]

PAGE_DIR = Path(__file__).resolve().parent.parent / "playground"
_ASSETS = {"playground.js": "text/javascript", "playground.css": "text/css"}
# Nothing from another origin, no inline script or style: the page works offline by construction.
CSP = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/playground", status_code=307)


@router.get("/playground")
async def page() -> FileResponse:
    return FileResponse(PAGE_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/playground/{asset}")
async def asset(asset: str) -> FileResponse:
    media = _ASSETS.get(asset)  # a fixed list: no path from the request reaches the file system
    if media is None:
        raise NotFound(f"no playground asset {asset!r}", loc=("path",))
    return FileResponse(PAGE_DIR / asset, media_type=f"{media}; charset=utf-8", headers=_HEADERS)

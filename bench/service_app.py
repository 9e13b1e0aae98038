"""The app the service benchmarks serve: Gradserve's own app plus two floor routes.

``POST /bench/floor`` answers an empty 200 without reading the body: the cost of the stack itself
(uvicorn, Starlette routing, FastAPI's request handling). ``POST /bench/echo`` sends the body back
as it came: the cost of moving the bytes through the same stack. Both exist only on this bench
app instance, never in ``service.app.create_app``'s production routes.

    python -m bench.service_app --factory bench.service_app:create_bench_app --workers 2 \
        --http service.http:Protocol

Run that way (uvicorn's command line), the server and its workers first get the malloc policy of
``gradserve serve`` (:func:`service.cli.malloc_policy`, the same function), so what the bench
measures is what production runs.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from service.app import create_app
from service.cli import malloc_policy
from service.settings import Settings

__all__ = ["create_bench_app", "main", "FLOOR_PATH", "ECHO_PATH"]

FLOOR_PATH = "/bench/floor"
ECHO_PATH = "/bench/echo"


def create_bench_app(settings: Settings | None = None) -> FastAPI:
    """``create_app(settings)`` with the floor and echo routes added."""
    app = create_app(settings)

    @app.post(FLOOR_PATH, include_in_schema=False)
    async def floor() -> Response:
        return Response(b"", media_type="application/json")

    @app.post(ECHO_PATH, include_in_schema=False)
    async def echo(request: Request) -> Response:
        body = await request.body()
        return Response(body, media_type=request.headers.get("content-type", "application/octet-stream"))

    return app


def main(argv: list[str] | None = None) -> None:
    """uvicorn's command line, after ``gradserve serve``'s malloc policy (before uvicorn starts a
    thread or a worker, as serve does)."""
    import uvicorn

    malloc_policy()
    uvicorn.main(argv)


if __name__ == "__main__":
    main()

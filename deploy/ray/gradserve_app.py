"""Gradserve on Ray Serve: the same ``create_app()`` behind ``serve.ingress``, one app per replica.

Run it on a Ray cluster whose nodes have gradserve installed (``pip install "gradserve[ray]"``),
from the repository root:

    serve run deploy.ray.gradserve_app:app                       # or, from Python:
    python -c "from ray import serve; from deploy.ray.gradserve_app import build; serve.run(build())"

Replica count and autoscaling come from :class:`RaySettings` (``GRADSERVE_RAY_*``); the server's
own settings are the usual ``GRADSERVE_*`` variables, passed on to every replica.
``GRADSERVE_API_KEYS`` is deliberately not passed on, since a runtime environment is visible in
Ray's dashboard: give the Ray nodes that variable themselves (for example from a Kubernetes
Secret in the KubeRay pod template).

Each replica adds ``X-Gradserve-Pid`` (its process id) and ``X-Gradserve-Replica`` (its Serve
replica id) to every response, so that a client can see which replica answered.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from ray import cloudpickle, serve

__all__ = ["RaySettings", "build", "deployment_options", "replica_env", "REPLICA_HEADER"]

REPLICA_HEADER = "X-Gradserve-Replica"
_NOT_FORWARDED = {"GRADSERVE_API_KEYS"}

# Replicas need not import this file (it is not part of the installed package): ship it by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class RaySettings(BaseSettings):
    """How many replicas, and how they scale (``GRADSERVE_RAY_*``)."""

    model_config = SettingsConfigDict(env_prefix="GRADSERVE_RAY_", extra="ignore")

    name: str = Field("gradserve", description="Serve application and deployment name.")
    route_prefix: str = Field("/", description="HTTP path prefix of the application.")
    num_replicas: int = Field(2, ge=1, description="Replicas when autoscaling is off.")
    autoscaling: bool = Field(False, description="Scale between min_replicas and max_replicas.")
    min_replicas: int = Field(1, ge=0, description="Fewest replicas when autoscaling.")
    max_replicas: int = Field(4, ge=1, description="Most replicas when autoscaling.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica that autoscaling aims at.")
    max_ongoing_requests: int = Field(
        16, ge=1, description="Requests a replica takes at once; Serve queues the rest.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per replica.")


def replica_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ``GRADSERVE_*`` server settings to give every replica (API keys excepted)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items()
            if k.startswith("GRADSERVE_") and not k.startswith("GRADSERVE_RAY_") and k not in _NOT_FORWARDED}


def deployment_options(rs: RaySettings, env: dict[str, str]) -> dict[str, Any]:
    """``Deployment.options(...)`` for these settings."""
    opts: dict[str, Any] = {
        "name": rs.name,
        "max_ongoing_requests": rs.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": rs.num_cpus, "runtime_env": {"env_vars": env}},
    }
    if rs.autoscaling:
        opts["autoscaling_config"] = {"min_replicas": rs.min_replicas, "max_replicas": rs.max_replicas,
                                      "target_ongoing_requests": rs.target_ongoing_requests}
    else:
        opts["num_replicas"] = rs.num_replicas
    return opts


class _ReplicaHeaders:
    """ASGI wrapper: tell the client which process and replica answered.

    Serve's proxy passes its request id to the replica as ``X-Request-ID`` (the client's, or a new
    one), which the app adopts, and adds that same header to the response itself: the app's copy
    is dropped here so that the client sees it once.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        try:
            replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # built outside a replica (tests of the builder itself)
            replica = "none"
        self.headers = [(b"x-gradserve-pid", str(os.getpid()).encode()),
                        (REPLICA_HEADER.lower().encode(), replica.encode())]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*kept, *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_asgi_app() -> Any:
    """The FastAPI app of one replica, built on the replica from its ``GRADSERVE_*`` settings."""
    from service.app import create_app
    from service.settings import Settings

    return _ReplicaHeaders(create_app(Settings()))


@serve.deployment
@serve.ingress(build_asgi_app)
class Gradserve:
    """One replica: the whole Gradserve HTTP API (v1, the Open Inference Protocol, /metrics)."""


def build(settings: RaySettings | None = None, env: dict[str, str] | None = None) -> Any:
    """The Serve application: ``serve.run(build(), name=..., route_prefix=...)``.

    ``env`` replaces the ``GRADSERVE_*`` variables passed on to the replicas (default: this
    process's, API keys excepted).
    """
    rs = settings or RaySettings()
    return Gradserve.options(**deployment_options(rs, replica_env() if env is None else env)).bind()


app = build()  # for `serve run deploy.ray.gradserve_app:app`

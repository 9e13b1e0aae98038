"""Service settings, read from ``GRADSERVE_*`` environment variables (pydantic-settings).

>>> Settings(max_nodes=100).max_nodes
100

``GRADSERVE_API_KEYS`` takes one key or several separated by commas (or a JSON list).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]

MiB = 1 << 20


def _default_concurrency() -> int:
    return max(1, os.cpu_count() or 1)


def _usable_cpus() -> int:
    """CPUs this process may use: its affinity, and a cgroup v2 CPU quota (a container's CPU
    limit; Python's cpu_count is the host's)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, n)


class Settings(BaseSettings):
    """Limits and switches of one server process. Every limit is named in the error it causes."""

    model_config = SettingsConfigDict(env_prefix="GRADSERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address `gradserve serve` binds by default.")
    port: int = Field(8000, ge=0, le=65535, description="Port `gradserve serve` binds by default.")
    workers: int = Field(1, ge=1, description="Worker processes of `gradserve serve`.")
    log_level: str = Field("info", description="uvicorn log level.")
    log_format: Literal["json", "text"] = Field(
        "json", description="Log lines of `gradserve serve`: one JSON object each, or plain text.")
    metrics: bool = Field(True, description="Serve Prometheus metrics at GET /metrics.")
    pid_header: bool = Field(False, description="Send X-Gradserve-Pid with every response (to see "
                                                "which worker process answered).")
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="OpenTelemetry span exporter (needs the `otel` extra).")

    max_body_bytes: int = Field(128 * MiB, ge=1, description="Largest request body accepted.")
    max_json_body_bytes: int = Field(24 * MiB, ge=1, description="Largest JSON text parsed from one "
                                     "request (the JSON header of a binary body; a JSON body without "
                                     "its base64 strings of 1 MiB and more, which are not parsed): "
                                     "parsing takes up to ~40 times the text's size.")
    max_nodes: int = Field(10_000, ge=1, description="Most nodes in one graph (after compiling source).")
    max_tensor_elements: int = Field(1 << 24, ge=1,
                                     description="Most elements in any input or computed tensor.")
    max_source_chars: int = Field(100_000, ge=1, description="Longest `graph.source` accepted.")
    max_onnx_bytes: int = Field(100 * MiB, ge=1, description="Largest ONNX model accepted in "
                                "`graph.onnx` (serialized bytes).")
    max_onnx_cache_bytes: int = Field(512 * MiB, ge=0, description="Total size of the ONNX models a "
                                      "process keeps in its plan cache; the least recently used are "
                                      "dropped beyond it (clients send them again on 409).")
    max_graph_depth: int = Field(4096, ge=1, description="Longest chain of nodes, input to result.")
    max_grad_nodes: int = Field(32, ge=0, description="Most grad (and functional) nodes in one graph: "
                                "bounds nested differentiation.")
    max_memory_bytes: int = Field(1 << 30, ge=1, description="Largest estimated memory of one request "
                                  "(live tensors at the peak of forward and backward, inputs, response), "
                                  "checked before it runs.")
    max_work: float = Field(3e10, gt=0, description="Largest estimated work of one request, forward "
                            "and backward, in units of about one element pass (~1 ns of one core; a "
                            "BLAS FLOP counts 0.05, a LAPACK FLOP 0.1), checked before it runs. A "
                            "fixed number: the same request gets the same answer on every machine.")
    request_timeout_s: float = Field(30.0, gt=0, description="Deadline per request, queueing included.")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="Largest request line and headers "
                                  "of one request (431 and the connection is closed beyond).")
    header_timeout_s: float = Field(10.0, gt=0, description="A connection that has not sent a "
                                    "request's headers this long after it opened (or after the last "
                                    "response) is closed; request_timeout_s if that is shorter.")
    max_connections: int = Field(1024, ge=1, description="Open connections (and requests in flight) "
                                 "per server process; beyond it uvicorn answers 503.")
    isolation: Literal["process", "fork", "thread"] = Field(
        "process", description="Where engine work runs that is not statically cheap: in one of "
        "pool_size pre-forked worker processes that keep its plans compiled (process), in a child "
        "process forked for the request (fork); either under an address-space limit of 1.25 x "
        "max_memory_bytes + 64 MiB per request and killed past its deadline; or in the engine "
        "thread itself, with the limits as estimates only (thread).")
    pool_size: int = Field(default_factory=_usable_cpus, ge=1, description="Worker processes of "
                           "isolation=process, per server process (forked at start-up, replaced when "
                           "one is killed or dies); by default the CPUs this process may use (its "
                           "affinity and its container's CPU quota).")
    pool_max_rss_bytes: int = Field(256 * MiB, ge=0, description="A worker process whose resident "
                                    "memory has grown by more than this since it started is replaced "
                                    "after its request (0: never).")
    max_concurrency: int = Field(default_factory=_default_concurrency, ge=1,
                                 description="Requests computing at once (engine threads).")
    max_queue: int = Field(64, ge=0, description="Requests waiting for an engine thread before 503.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503.")
    plan_cache_size: int = Field(256, ge=0, description="Compiled graph plans kept per process, by "
                                 "graph hash (LRU; 0 disables the cache and requests by hash).")
    inline_max_ms: float = Field(1.0, ge=0, description="A graph whose cached plan ran within this "
                                 "budget runs on the event loop, skipping the engine-thread hand-off "
                                 "(0: always use engine threads).")
    compile: Literal["on", "off", "always"] = Field(
        "on", description="Compiled plans: a cached plan that is statically cheap runs as a flat "
        "numpy program (engine.compile) from its second request with the same header (names, "
        "shapes, dtypes, top-level call) on; `off` runs every request eagerly; `always` compiles on "
        "the first run and replays it at once (tests: every request exercises a replayed program).")
    debug_ops: bool = Field(False, description="Register the `debug.sleep`/`debug.spin` ops, which "
                            "take wall-clock time on purpose (deadline and overload drills). "
                            "Never for untrusted clients.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Accepted bearer keys; empty means no authentication.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: Any) -> Any:
        if isinstance(v, str):
            s = v.strip()
            if s.startswith("["):
                return orjson.loads(s)
            return [k.strip() for k in s.split(",") if k.strip()]
        return v

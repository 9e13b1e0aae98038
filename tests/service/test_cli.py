"""The ``gradserve`` command: help, version, one-line errors, ``grad`` and ``ops`` (nothing is served)."""

from __future__ import annotations

import io
import json
import logging.config
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service import cli
from service.settings import Settings
from tests.engine.test_malloc import MAPPED

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("GRADSERVE_"):
            monkeypatch.delenv(k)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"gradserve {version('gradserve')}"


def test_no_command_prints_help_and_says_so(capsys):
    code, out, _ = run(capsys, )
    assert code == 2
    assert "usage: gradserve" in out and "serve" in out and "no command given" in out


def test_serve_help_lists_every_setting_with_its_default(capsys):
    code, out, _ = run(capsys, "serve", "--help")
    assert code == 0
    for name, f in Settings.model_fields.items():
        assert f"GRADSERVE_{name.upper()}  (default: " in out, name
        if f.default_factory is None and not isinstance(f.default, bool):
            assert f"GRADSERVE_{name.upper()}  (default: {f.default})" in out, name
    assert "GRADSERVE_MAX_BODY_BYTES  (default: 134217728)" in out


@pytest.mark.parametrize(("argv", "phrase"), [
    (["--port", "8123"], "did you mean `gradserve serve --port 8123`?"),
    (["serve", "--port", "abc"], "not a port number: 'abc'"),
    (["serve", "--port", "70000"], "between 0 and 65535"),
    (["serve", "--workers", "0"], "at least 1"),
    (["serve", "--log-level", "verbose"], "invalid choice: 'verbose'"),
    (["serve", "--log-format", "xml"], "invalid choice: 'xml'"),
    (["bogus"], "invalid choice: 'bogus'"),
])
def test_bad_options_give_one_line_errors(capsys, argv, phrase):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and phrase in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("var", "value", "phrase"), [
    ("GRADSERVE_LOG_LEVEL", "verbose", "is not a log level"),
    ("GRADSERVE_PORT", "abc", "GRADSERVE_PORT='abc'"),
])
def test_bad_settings_give_one_line_errors(capsys, monkeypatch, var, value, phrase):
    monkeypatch.setenv(var, value)
    code, out, err = run(capsys, "serve")
    assert code == 2 and err.count("\n") == 1 and phrase in err, err


def _request() -> dict:
    return {"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [0.5, 1.0, 2.0],
                                  "requires_grad": True}],
                      "source": "y = sum(tanh(x) * x)"},
            "outputs": "y", "inputs": "x", "return": ["y"]}


def test_grad_runs_a_request_file_like_the_server(capsys, tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(_request()))
    code, out, _ = run(capsys, "grad", str(path))
    assert code == 0
    body = json.loads(out)
    x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    y = (torch.tanh(x) * x).sum()
    g, = torch.autograd.grad(y, x)
    assert body["grads"][0]["data"] == pytest.approx(g.tolist(), rel=1e-12)
    assert body["values"]["y"]["data"] == pytest.approx([y.item()], rel=1e-12)


def test_grad_reads_stdin_and_prints_problems(capsys, monkeypatch):
    req = _request()
    req["graph"]["source"] = "y = sum(tanh(z))"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(req).encode())))
    code, out, err = run(capsys, "grad", "-")
    assert code == 1
    problem = json.loads(out)
    assert problem["status"] == 422 and problem["errors"][0]["line"] == 1
    assert err.startswith("gradserve grad: 422") and err.count("\n") == 1


def test_grad_on_a_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "grad", str(tmp_path / "nope.json"))
    assert code == 2 and "cannot read" in err and err.count("\n") == 1


def test_ops_lists_and_filters(capsys):
    code, out, _ = run(capsys, "ops", "tanh")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert "tanh" in names and all("tanh" in n for n in names)
    code, out, _ = run(capsys, "ops", "--json")
    body = json.loads(out)
    assert body["count"] == len(body["ops"]) > 100 and "grad" in body["node_kinds"]


def test_python_dash_m_service_is_the_same_command():
    p = subprocess.run([sys.executable, "-m", "service", "--version"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("gradserve ")


# ---------------------------------------------------------------- the malloc policy of `serve`
MALLOC_ENV = ("GRADSERVE_ENGINE_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
              "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


@pytest.fixture
def serve_run(monkeypatch):
    """``gradserve serve`` up to uvicorn.run, whose call is recorded with the environment and the
    ``mallopt`` calls made before it (the libc is faked: nothing changes in this process)."""
    import os

    import uvicorn

    from engine import _malloc

    for k in MALLOC_ENV:
        monkeypatch.delenv(k, raising=False)
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(_malloc, "_mallopt", lambda: lambda p, v: calls.append((p, v)) or 1)
    monkeypatch.setattr(_malloc, "tuned", False)
    seen: dict = {}

    def fake_run(app, **kw):
        seen.update(app=app, workers=kw["workers"], env=dict(os.environ), mallopt=list(calls))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(logging.config, "dictConfig", lambda cfg: None)  # keep pytest's logging

    def serve(*argv: str, **env: str) -> dict:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert cli.main(["serve", *argv]) == 0
        for k in MALLOC_ENV:  # what serve exported, undone for the next test
            monkeypatch.delenv(k, raising=False)
        return seen

    return serve


def test_serve_applies_the_malloc_policy_here_and_exports_it_to_its_workers(serve_run):
    from engine import _malloc

    run = serve_run("--workers", "2")
    assert run["app"] == "service.app:create_app" and run["workers"] == 2
    assert run["mallopt"] == [(-3, _malloc.MMAP_BYTES), (-1, _malloc.TRIM_BYTES), (-8, _malloc.ARENA_MAX)]
    assert {k: run["env"].get(k) for k in _malloc.policy()} == _malloc.policy()


def test_serve_leaves_the_users_malloc_variables_alone(serve_run):
    from engine import _malloc

    run = serve_run(MALLOC_MMAP_THRESHOLD_="1048576", MALLOC_ARENA_MAX="4")
    assert run["mallopt"] == []
    assert run["env"]["MALLOC_MMAP_THRESHOLD_"] == "1048576" and run["env"]["MALLOC_ARENA_MAX"] == "4"
    assert "MALLOC_TRIM_THRESHOLD_" not in run["env"]
    off = serve_run(GRADSERVE_ENGINE_MALLOC="0")
    assert off["mallopt"] == [] and not any(k in off["env"] for k in _malloc.policy())


def test_the_bench_server_runs_serves_policy_function(monkeypatch):
    import uvicorn

    from bench import service_app

    assert service_app.malloc_policy is cli.malloc_policy
    order: list[str] = []
    monkeypatch.setattr(service_app, "malloc_policy", lambda: order.append("policy"))
    monkeypatch.setattr(uvicorn, "main", lambda argv: order.append(f"uvicorn {argv}"))
    service_app.main(["--factory", "bench.service_app:create_bench_app"])
    assert order == ["policy", "uvicorn ['--factory', 'bench.service_app:create_bench_app']"]
    # (and the bench's Server runs it: `python -m bench.service_app`)
    assert '"-m", "bench.service_app"' in (ROOT / "bench" / "service_cases.py").read_text()


# A worker as uvicorn starts one (multiprocessing's spawn: a fresh interpreter with this
# environment) and as the pool does (os.fork of it), each reading glibc's settings back: under the
# policy's 32 MiB mmap threshold a 4 MiB block comes from the heap, a 48 MiB one is mapped.
_WORKERS = MAPPED + """
import json, multiprocessing as mp, os, sys
from service.cli import malloc_policy

def probe(q):
    import engine  # noqa: F401  (what a worker imports)
    seen = [mapped(4 << 20), mapped(48 << 20)]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a pool worker: forked from the uvicorn worker
        os.write(w, json.dumps([mapped(4 << 20), mapped(48 << 20)]).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    q.put({"spawned": seen, "forked": json.loads(os.read(r, 100)),
           "env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX")}})

if __name__ == "__main__":
    malloc_policy()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=probe, args=(q,))
    p.start()
    print(json.dumps({"server": [mapped(4 << 20), mapped(48 << 20)], **q.get(timeout=120)}))
    p.join()
"""


@pytest.mark.parametrize("user", [{}, {"MALLOC_MMAP_THRESHOLD_": "1048576"}])
def test_serves_workers_read_the_policy_back_from_glibc(tmp_path, user):
    from tests._require import require
    from tests.engine.test_malloc import MALLOC_ENV as ENGINE_ENV
    from tests.engine.test_malloc import glibc_with_mallinfo2

    require(glibc_with_mallinfo2(), "needs Linux with glibc 2.33+ (mallinfo2)")
    import os

    script = tmp_path / "workers.py"
    script.write_text(_WORKERS)
    env = {**{k: v for k, v in os.environ.items() if k not in ENGINE_ENV}, **user,
           "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    policy = [False, True] if not user else [True, True]  # 4 MiB mapped only under the user's 1 MiB
    assert out["server"] == out["spawned"] == out["forked"] == policy
    assert out["env"] == {"MALLOC_MMAP_THRESHOLD_": user.get("MALLOC_MMAP_THRESHOLD_", str(32 << 20)),
                          "MALLOC_ARENA_MAX": "2"}

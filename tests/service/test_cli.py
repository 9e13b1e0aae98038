"""The ``gradserve`` command: help, version, one-line errors, ``grad`` and ``ops`` (nothing is served)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service import cli
from service.settings import Settings

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

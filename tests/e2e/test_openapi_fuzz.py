"""Schemathesis against a live server: its OpenAPI document must tell the truth.

Every check (``--checks all``: no 5xx, documented statuses, media types, headers and bodies,
schema-invalid data refused, schema-valid data accepted, methods, links...), positive and
negative data, every phase (examples, coverage, fuzzing, stateful through the document's
links), a bounded number of examples per operation, derandomized (``--generation-deterministic``:
the same cases every run, so no seed is needed). Any finding fails the test. Runs with and without
API keys.

One allowance, written in the config below: a request can match the schema and still be refused
for what JSON Schema cannot say (an op name that does not exist, a name no node defines, data that
does not fill its shape, a binary body whose layout disagrees with its header, a size limit). The
server answers those 400, 413 or 422, naming the place; the positive-data check accepts them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import schemathesis  # noqa: F401  (the test extra; run below as its CLI, in a subprocess)

CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "404", "409", "413", "422", "503", "504"]
"""


# (API key, examples per operation and phase): without keys, about 600 requests; with one, fewer
# (the document then declares the bearer scheme and 401s, and ignored_auth checks them)
RUNS = [(None, 15), ("fuzz-key", 5)]


@pytest.mark.slow
@pytest.mark.parametrize(("key", "max_examples"), RUNS, ids=["open", "api-key"])
def test_schemathesis_finds_nothing(make_server, tmp_path, key, max_examples):
    server = make_server(env={"GRADSERVE_API_KEYS": key} if key else None)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    auth = ["--header", f"Authorization: Bearer {key}"] if key else []
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
           "run", f"{server.url}/openapi.json", *auth, "--checks", "all", "--mode", "all",
           "--max-examples", str(max_examples), "--generation-deterministic", "--workers", "1",
           "--request-timeout", "60", "--output-truncate", "false"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-20000:]
    assert " failed" not in out.split("SUMMARY")[-1], out[-20000:]
    assert "Traceback" not in server.output(), server.output()[-5000:]

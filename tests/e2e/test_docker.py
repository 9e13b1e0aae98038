"""The Docker image end to end, through ``deploy/docker/smoke.sh``.

The script builds the image (``../shared/tools/docker-base-image`` first, where it exists), runs it
on a free loopback port, sends the seed example from the host and checks the gradients against a
closed form computed on the host. Without a Docker daemon it skips with one line saying what to
install; ``.ci/run`` starts one and sets ``GRADSERVE_REQUIRE_ALL=1``, so CI never skips it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests._require import docker_daemon, require

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "docker" / "smoke.sh"
TIMEOUT_S = 600  # a cold build takes about a minute here; cached builds a few seconds


@pytest.mark.slow
def test_docker_smoke() -> None:
    require(docker_daemon(), "no Docker daemon answers `docker info` (apt-get install docker.io, "
                             "then start dockerd)")
    name = f"gradserve-smoke-pytest-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHON": sys.executable, "GRADSERVE_SMOKE_CONTAINER": name}
    proc = subprocess.Popen(
        ["bash", str(SCRIPT)], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # TERM the whole group so that the script's trap removes its container, then make sure.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)
        pytest.fail(f"{SCRIPT.name} did not finish within {TIMEOUT_S} s:\n{out}")
    assert proc.returncode == 0, f"{SCRIPT.name} failed (exit {proc.returncode}):\n{out}"
    assert "smoke: PASS" in out, out


def test_readme_docker_section_documents_every_setting() -> None:
    """The README's Docker configuration table names every GRADSERVE_* setting (no silent drift)."""
    from service.settings import Settings

    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Docker\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert section, "README.md has no '## Docker' section"
    documented = set(re.findall(r"GRADSERVE_[A-Z0-9_]+", section.group(1)))
    missing = {f"GRADSERVE_{n.upper()}" for n in Settings.model_fields} - documented
    assert not missing, f"README '## Docker' configuration table lacks: {sorted(missing)}"

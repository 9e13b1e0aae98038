"""The Docker image installs deploy/docker/requirements.lock: exact pins that must fit pyproject.toml.

The image build itself (tests/e2e/test_docker.py) runs ``pip check`` over what it installed; these
checks run offline and say which pin is wrong.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("lock", ROOT / "deploy" / "docker" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


def test_the_lock_pins_every_runtime_requirement_within_its_bounds() -> None:
    assert lock.problems(lock.read_lock()) == []


def test_the_check_names_a_missing_or_out_of_bounds_pin() -> None:
    pins = lock.read_lock()
    numpy_too_old = {**pins, "numpy": "1.0"}
    without_fastapi = {k: v for k, v in pins.items() if k != "fastapi"}
    assert any("numpy==1.0 in the lock does not satisfy numpy>=" in p for p in lock.problems(numpy_too_old))
    assert lock.problems(without_fastapi) == ["fastapi is required by pyproject.toml but not in the lock"]


@pytest.mark.parametrize("line", ["numpy>=1.26", "numpy==2.0; python_version < '3'", "numpy"])
def test_a_line_that_is_not_an_exact_pin_is_refused(tmp_path: Path, line: str) -> None:
    p = tmp_path / "requirements.lock"
    p.write_text(f"# header\n{line}\n")
    with pytest.raises(ValueError, match="requirements.lock:2: .* is not an exact name==version pin"):
        lock.read_lock(p)


def test_locked_packages_needs_are_locked_too() -> None:
    """What pip check does in the build, for the locked packages installed here at the same version."""
    pins = lock.read_lock()
    env = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
           "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    checked, missing = 0, []
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        checked += 1
        for r in map(Requirement, dist.requires or []):
            if r.marker is not None and not r.marker.evaluate(env):
                continue
            have = pins.get(canonicalize_name(r.name))
            if have is None or not r.specifier.contains(have, prereleases=True):
                missing.append(f"{name}=={version} needs {r}, the lock has {have}")
    assert checked >= len(pins) // 2, "too few locked versions are installed here to check"
    assert missing == []


def test_the_dockerfile_installs_the_lock_and_nothing_else() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY deploy/docker/requirements.lock" in text
    assert "--no-deps -r /tmp/requirements.lock" in text and "$PIP check" in text
    assert "!deploy/docker/requirements.lock" in (ROOT / ".dockerignore").read_text().splitlines()

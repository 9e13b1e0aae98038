"""The R client package (``client/R``): installed with ``R CMD INSTALL`` into a temporary library,
its testthat tests run by ``Rscript`` against a live ``gradserve serve`` on a free loopback port
(with an API key, which the R side takes from GRADSERVE_API_KEY). Any R failure, and any
skipped R test, fails this test: the server-side R tests must not pass by skipping. The README's
R code blocks run too, and print what their ``# ...`` comments say.

Without R this skips with one line naming the Debian packages (fails under GRADSERVE_REQUIRE_ALL=1).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._require import require
from tests.e2e.conftest import Server

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "client" / "R"
R_APT = "apt-get install -y r-base-core r-cran-jsonlite r-cran-httr2 r-cran-testthat"
R_PACKAGES = ("jsonlite", "httr2", "testthat")

# Prints "failed=<n> skipped=<n>" from testthat's results; non-zero exit on any failure or error.
RUN_TESTS = """
res <- as.data.frame(testthat::test_dir(Sys.getenv("R_TEST_DIR"), package = "gradserve",
                                        load_package = "installed", reporter = "summary",
                                        stop_on_failure = FALSE))
failed <- sum(res$failed) + sum(res$error)
cat(sprintf("\\nfailed=%d skipped=%d passed=%d\\n", failed, sum(res$skipped), sum(res$passed)))
quit(status = if (failed > 0) 1 else 0)
"""


def _rscript() -> str:
    rscript = shutil.which("Rscript")
    require(rscript is not None, f"needs R (`Rscript`): {R_APT}")
    check = "q(status = !all(sapply(c({}), requireNamespace, quietly = TRUE)))".format(
        ", ".join(f'"{p}"' for p in R_PACKAGES))
    ok = subprocess.run([rscript, "-e", check], capture_output=True, timeout=120).returncode == 0
    require(ok, f"needs the R packages {', '.join(R_PACKAGES)}: {R_APT}")
    return rscript  # type: ignore[return-value]


@pytest.fixture(scope="module")
def r_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment for Rscript: the package installed in R_LIBS, a live server with a key."""
    rscript = _rscript()
    lib = tmp_path_factory.mktemp("rlib")
    r_bin = str(Path(rscript).with_name("R"))
    install = subprocess.run([r_bin, "CMD", "INSTALL", "--no-test-load", "-l", str(lib), str(PACKAGE)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    key = secrets.token_hex(8)
    server = Server(env={"GRADSERVE_API_KEYS": key})
    try:
        yield {**os.environ, "R_LIBS": str(lib), "GRADSERVE_URL": server.url, "GRADSERVE_API_KEY": key,
               "RSCRIPT": rscript}
    finally:
        server.stop()


@pytest.mark.slow
def test_r_package_testthat_against_a_live_server(r_env: dict[str, str], tmp_path: Path) -> None:
    env = {**r_env, "R_TEST_DIR": str(PACKAGE / "tests" / "testthat")}
    run = subprocess.run([r_env["RSCRIPT"], "-e", RUN_TESTS], capture_output=True, text=True, timeout=600,
                         env=env, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "failed=0 skipped=0" in out, out


def _readme_r_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```r\n(.*?)^```", text, flags=re.S | re.M)


def _expected_outputs(block: str) -> list[list[str]]:
    """Runs of ``#`` lines right after a code line: what that code prints (a comment after a
    blank line is prose)."""
    runs: list[list[str]] = []
    after_code = in_run = False
    for line in block.splitlines():
        if line.startswith("#"):
            if after_code and not in_run:
                runs.append([])
                in_run = True
            if in_run:
                runs[-1].append(line[2:] if line.startswith("# ") else line[1:])
            after_code = False
        else:
            in_run = False
            after_code = bool(line.strip())
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_readme_r_blocks())))
def test_readme_r_blocks_run_and_print_what_they_say(r_env: dict[str, str], tmp_path: Path,
                                                     index: int) -> None:
    block = _readme_r_blocks()[index]
    key = r_env["GRADSERVE_API_KEY"]
    code = block.replace("http://localhost:8000", r_env["GRADSERVE_URL"])
    # the raw-REST snippet sends no key: add the server's, as a user of a keyed server would
    code = code.replace('req_body_raw(body, type = "application/json") |>',
                        f'req_body_raw(body, type = "application/json") |>\n    '
                        f'req_headers(Authorization = "Bearer {key}") |>')
    script = tmp_path / "block.R"
    script.write_text(code)
    run = subprocess.run([r_env["RSCRIPT"], str(script)], capture_output=True, text=True, timeout=300,
                         env=r_env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [ln.rstrip() for ln in run.stdout.splitlines()]
    for want in _expected_outputs(block):
        want = [w.rstrip() for w in want]
        found = any(lines[i:i + len(want)] == want for i in range(len(lines)))
        assert found, f"README block {index} should print:\n" + "\n".join(want) + "\ngot:\n" + run.stdout

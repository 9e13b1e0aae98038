"""The R client package (``client/R``): installed with ``R CMD INSTALL`` into a temporary library,
its testthat tests run by ``Rscript`` against a live ``gradserve serve`` on a free loopback port
(with an API key, which the R side takes from GRADSERVE_API_KEY). Any R failure, and any
skipped R test, fails this test: the server-side R tests must not pass by skipping.

Without R this skips with one line naming the Debian packages (fails under GRADSERVE_REQUIRE_ALL=1).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Server

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "client" / "R"
R_APT = "apt-get install -y r-base-core r-cran-jsonlite r-cran-httr2 r-cran-testthat"
R_PACKAGES = ("jsonlite", "httr2", "testthat")
REQUIRE_ALL = os.environ.get("GRADSERVE_REQUIRE_ALL", "") not in ("", "0", "false", "no")

# Prints "failed=<n> skipped=<n>" from testthat's results; non-zero exit on any failure or error.
RUN_TESTS = """
res <- as.data.frame(testthat::test_dir(Sys.getenv("R_TEST_DIR"), package = "gradserve",
                                        load_package = "installed", reporter = "summary",
                                        stop_on_failure = FALSE))
failed <- sum(res$failed) + sum(res$error)
cat(sprintf("\\nfailed=%d skipped=%d passed=%d\\n", failed, sum(res$skipped), sum(res$passed)))
quit(status = if (failed > 0) 1 else 0)
"""


def _require(ok: bool, reason: str) -> None:
    if ok:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required by GRADSERVE_REQUIRE_ALL=1: {reason}", pytrace=False)
    pytest.skip(reason)


def _rscript() -> str:
    rscript = shutil.which("Rscript")
    _require(rscript is not None, f"needs R (`Rscript`): {R_APT}")
    check = "q(status = !all(sapply(c({}), requireNamespace, quietly = TRUE)))".format(
        ", ".join(f'"{p}"' for p in R_PACKAGES))
    ok = subprocess.run([rscript, "-e", check], capture_output=True, timeout=120).returncode == 0
    _require(ok, f"needs the R packages {', '.join(R_PACKAGES)}: {R_APT}")
    return rscript  # type: ignore[return-value]


@pytest.mark.slow
def test_r_package_testthat_against_a_live_server(tmp_path: Path) -> None:
    rscript = _rscript()
    lib = tmp_path / "rlib"
    lib.mkdir()
    r_bin = str(Path(rscript).with_name("R"))
    install = subprocess.run([r_bin, "CMD", "INSTALL", "--no-test-load", "-l", str(lib), str(PACKAGE)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr

    key = secrets.token_hex(8)
    server = Server(env={"GRADSERVE_API_KEYS": key})
    try:
        env = {**os.environ, "R_LIBS": str(lib), "GRADSERVE_URL": server.url, "GRADSERVE_API_KEY": key,
               "R_TEST_DIR": str(PACKAGE / "tests" / "testthat")}
        run = subprocess.run([rscript, "-e", RUN_TESTS], capture_output=True, text=True, timeout=600,
                             env=env, cwd=tmp_path)
    finally:
        server.stop()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "failed=0 skipped=0" in out, out

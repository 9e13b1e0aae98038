"""The playground, /docs and /redoc in a real headless Chromium against a real server.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``)
and ``pip install selenium``; without them these tests skip (fail under GRADSERVE_REQUIRE_ALL=1).
The browser resolves no host but 127.0.0.1, so every page must work offline. Expected numbers come
from torch. The seed run's screenshot goes to the test's tmp dir, and to ``docs/playground.png``
(shown by the README) with ``GRADSERVE_UPDATE_SCREENSHOTS=1``: the page shows the server's random
port, so writing it on every run would change the tracked file each time.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from tests.e2e.conftest import ROOT

try:
    from tests._require import require
except ImportError:  # the shared helper is not on this branch yet: the same logic
    def require(ok: bool, reason: str) -> None:
        if ok:
            return
        if os.environ.get("GRADSERVE_REQUIRE_ALL", "") not in ("", "0", "false", "no"):
            pytest.fail(f"required by GRADSERVE_REQUIRE_ALL=1: {reason}", pytrace=False)
        pytest.skip(reason)

pytestmark = pytest.mark.xdist_group("browser")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 60  # generous: a busy 2-core machine; nothing here measures speed


# ---------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def browser():
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
            "needs Chromium: apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "needs selenium: pip install selenium")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not try to download a driver
    profile = tempfile.mkdtemp(prefix="gradserve-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1400,1000",
                # offline: no host resolves but the test server's
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT_S).until(condition, f"timed out waiting for {what}")


def _state(driver) -> str:
    return driver.execute_script("return document.body.dataset.state || ''")


def _fill(driver, element_id: str, text: str) -> None:
    # set the value in one go (send_keys would type the newlines one key at a time)
    driver.execute_script("document.getElementById(arguments[0]).value = arguments[1]", element_id, text)


def _run(driver) -> str:
    driver.execute_script("document.body.dataset.state = 'clicked'")
    driver.find_element("id", "run").click()
    _wait(driver, lambda d: _state(d) in ("done", "error"), "the run to finish")
    return _state(driver)


def _foreign_loads(driver, origin: str) -> list[str]:
    """URLs the page tried to load from anywhere but ``origin``, except those its
    Content-Security-Policy stopped before any request was made (the browser logs those)."""
    urls = driver.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]")
    blocked = " ".join(e["message"] for e in driver.get_log("browser")
                       if "Content Security Policy" in e["message"] and "blocked" in e["message"])
    return [u for u in urls if not u.startswith(origin) and f"'{u}'" not in blocked]


# ---------------------------------------------------------------- the seed example
def _readme_seed() -> dict:
    """The README's expression-form seed request (its curl -d body)."""
    text = (ROOT / "README.md").read_text()
    for body in re.findall(r"-d '(\{.*?\})'", text, re.S):
        req = json.loads(body)
        if "y = 2 * x + 1" in req.get("graph", {}).get("source", ""):
            return req
    raise AssertionError("the README has no expression-form seed example")


def _inputs_text(req: dict) -> str:
    lines = []
    for t in req["graph"]["inputs"]:
        flag = "  requires_grad" if t.get("requires_grad") else ""
        lines.append(f"{t['name']}: {t['datatype']} = {json.dumps(t['data'])}{flag}")
    return "\n".join(lines)


def _torch_seed(req: dict) -> dict:
    """Values and gradients of the seed, by torch (the same expression, the README's inputs)."""
    dt = {"FP32": torch.float32, "FP64": torch.float64}
    env = {t["name"]: torch.tensor(t["data"], dtype=dt[t["datatype"]],
                                   requires_grad=t.get("requires_grad", False))
           for t in req["graph"]["inputs"]}
    w, b, x = env["w"], env["b"], env["x"]
    y = 2 * x + 1
    s = (y - (w * x + b)) ** 2
    s.retain_grad()
    loss = s.mean()
    loss.backward()
    return {"loss": loss.item(), "w": w.grad.item(), "b": b.grad.item(), "s": s.grad.tolist()}


_OPS = (ast.BinOp, ast.UnaryOp, ast.Call)


def _ops_in(source: str) -> tuple[int, int]:
    """Ops an expression makes (one per arithmetic operator and per call) and the operands that are
    values rather than constants, each an edge of the graph: read with Python's own parser."""
    ops = [n for n in ast.walk(ast.parse(source)) if isinstance(n, _OPS)]
    operands = [x for n in ops for x in ([n.left, n.right] if isinstance(n, ast.BinOp) else
                                         [n.operand] if isinstance(n, ast.UnaryOp) else n.args)]
    return len(ops), sum(isinstance(x, (ast.Name, *_OPS)) for x in operands)


def _floats(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def test_the_root_redirects_to_the_playground_and_the_seed_example_runs(server_url, browser, tmp_path):
    req = _readme_seed()
    expected = _torch_seed(req)
    browser.get(f"{server_url}/")
    assert browser.current_url == f"{server_url}/playground"
    _fill(browser, "source", req["graph"]["source"])
    _fill(browser, "inputs", _inputs_text(req))
    _fill(browser, "output", "")  # the default: the last assigned name, loss
    assert _run(browser) == "done", browser.find_element("id", "error").text

    # the graph: one box per input and per op, an arrow for every operand
    nodes = browser.find_elements("css selector", "#graph svg g.node")
    n_ops, n_operands = _ops_in(req["graph"]["source"])
    assert len(nodes) == len(req["graph"]["inputs"]) + n_ops == 10
    ids = {n.get_attribute("data-id") for n in nodes}
    edges = {(e.get_attribute("data-from"), e.get_attribute("data-to"))
             for e in browser.find_elements("css selector", "#graph svg path.edge")}
    assert len(edges) == n_operands == 10 and {a for e in edges for a in e} <= ids
    assert {("w", "#2"), ("x", "#2"), ("b", "#3")} <= edges  # w * x is the third op, + b the fourth

    def node_data(names: str, cls: str) -> list[float]:
        el = browser.find_element("css selector", f'#graph svg g.node[data-names="{names}"] text.{cls}')
        return json.loads(el.get_attribute("data-values"))

    assert node_data("w", "grad") == pytest.approx([expected["w"]], rel=1e-5)
    assert node_data("b", "grad") == pytest.approx([expected["b"]], rel=1e-5)
    assert node_data("loss", "value") == pytest.approx([expected["loss"]], rel=1e-5)
    pow_node = next(n for n in nodes if n.find_element("css selector", "text.title").text == "pow")
    pow_grad = json.loads(pow_node.find_element("css selector", "text.grad").get_attribute("data-values"))
    assert pow_grad == pytest.approx(expected["s"], rel=1e-5)  # d loss / d (...)**2 = 1/n
    # what a person reads: the gradient column of the table
    for name in ("w", "b"):
        cell = browser.find_element("css selector", f'#values tr[data-name="{name}"] td.grad').text
        assert _floats(cell) == pytest.approx([expected[name]], rel=1e-4)
    assert "loss" in browser.find_element("css selector", "#graph svg g.node.out").text

    # the equivalent curl command and Python client code run, and give torch's gradients
    curl = browser.find_element("id", "curl").text
    assert curl.startswith(f"curl -s {server_url}/v1/grad")
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=WAIT_S, check=True)
    grads = {g["name"]: g["data"] for g in json.loads(out.stdout)["grads"]}
    assert grads["w"] == pytest.approx([expected["w"]], rel=1e-5)
    assert grads["b"] == pytest.approx([expected["b"]], rel=1e-5)
    python = browser.find_element("id", "python").text
    assert "from client import Client" in python and "c.mean(" in python
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, cwd=ROOT,
                         timeout=WAIT_S, check=True)
    printed = dict(re.findall(r"^dloss/d(\w+) = (\S+)$", out.stdout, re.M))
    assert float(printed["w"]) == pytest.approx(expected["w"], rel=1e-5), out.stdout
    assert float(printed["b"]) == pytest.approx(expected["b"], rel=1e-5), out.stdout

    # offline: everything the page loaded came from the server
    assert _foreign_loads(browser, server_url) == []
    # the picture for the README: no timing, and the documented address instead of this run's port
    browser.execute_script("""
        document.getElementById('status').textContent = '';
        document.documentElement.style.overflow = 'hidden';  // no scrollbar in the picture
        for (const id of ['curl', 'python'])
          document.getElementById(id).textContent = document.getElementById(id).textContent
            .replaceAll(arguments[0], 'http://127.0.0.1:8000');""", server_url)
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    png = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    shot = tmp_path / "playground.png"
    shot.write_bytes(base64.b64decode(png["data"]))
    browser.execute_script("document.documentElement.style.overflow = ''")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("GRADSERVE_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "playground.png")


def test_errors_show_on_the_page_with_their_source_location(server_url, browser):
    browser.get(f"{server_url}/playground")
    source = "y = 2 * x + 1\nloss = mean((y - (w * x + bias)) ** 2)"
    _fill(browser, "source", source)
    assert _run(browser) == "error"
    box = browser.find_element("id", "error")
    assert box.is_displayed()
    line, col = 2, source.splitlines()[1].index("bias") + 1
    assert "bias" in box.text and f"line {line}, col {col}" in box.text
    where = box.find_element("css selector", ".where")
    assert (where.get_attribute("data-line"), where.get_attribute("data-col")) == (str(line), str(col))
    snippet = box.find_element("css selector", "pre.snippet").text.splitlines()
    assert snippet[0] == source.splitlines()[1] and snippet[1].index("^") == col - 1

    # a shape error found by the static check: also placed in the source
    _fill(browser, "source", "h = x @ w\nloss = sum(h)")
    _fill(browser, "inputs", "x = [[1, 2], [3, 4]]  requires_grad\nw = [1, 2, 3]")
    assert _run(browser) == "error"
    text = browser.find_element("id", "error").text
    assert "line 1, col 5" in text and "size mismatch" in text and "RuntimeError" in text

    # and bad inputs, before anything is sent
    _fill(browser, "inputs", "x = [1, 2,")
    assert _run(browser) == "error"
    assert "inputs, line 1" in browser.find_element("id", "error").text


def test_the_page_sends_the_api_key(make_server, browser):
    server = make_server(env={"GRADSERVE_API_KEYS": "playground-key"})
    browser.get(f"{server.url}/playground")
    _fill(browser, "apikey", "")
    assert _run(browser) == "error"
    assert "401" in browser.find_element("id", "error").text
    _fill(browser, "apikey", "playground-key")
    assert _run(browser) == "done", browser.find_element("id", "error").text
    curl = browser.find_element("id", "curl").text
    assert 'Authorization: Bearer $GRADSERVE_API_KEY' in curl and "playground-key" not in curl
    env = {**os.environ, "GRADSERVE_API_KEY": "playground-key"}
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=WAIT_S, env=env,
                         check=True)
    assert [g["name"] for g in json.loads(out.stdout)["grads"]] == ["w", "b"]


@pytest.mark.parametrize("page, rendered", [
    ("/docs", ".swagger-ui .opblock"),       # Swagger UI drew the operations
    ("/redoc", "[id='operation/grad_v1_grad_post'], .api-content h2"),  # ReDoc drew its content
])
def test_docs_render_offline(server_url, browser, page, rendered):
    browser.get(f"{server_url}{page}")
    _wait(browser, lambda d: d.find_elements("css selector", rendered), f"{page} to render")
    assert "/v1/grad" in browser.find_element("tag name", "body").text
    assert _foreign_loads(browser, server_url) == []


def test_every_example_runs_and_its_code_runs_too(server_url, browser):
    from selenium.webdriver.support.ui import Select

    browser.get(f"{server_url}/playground")
    pick = Select(browser.find_element("id", "example"))
    titles = [o.text for o in pick.options if o.get_attribute("value")]
    assert len(titles) >= 3
    for title in titles:
        browser.execute_script("document.body.dataset.state = 'clicked';"
                               "document.getElementById('example').value = ''")
        pick.select_by_visible_text(title)  # picking one runs it
        _wait(browser, lambda d: _state(d) in ("done", "error"), f"example {title!r}")
        assert _state(browser) == "done", (title, browser.find_element("id", "error").text)
        n_nodes = len(browser.find_elements("css selector", "#graph svg g.node"))
        source = browser.find_element("id", "source").get_attribute("value")
        inputs = [ln for ln in browser.find_element("id", "inputs").get_attribute("value").splitlines() if ln]
        assert n_nodes > len(inputs), title
        assert browser.find_elements("css selector", "#graph svg text.grad"), title
        for kind, cmd in (("curl", ["bash", "-c"]), ("python", [sys.executable, "-c"])):
            code = browser.find_element("id", kind).text
            out = subprocess.run([*cmd, code], capture_output=True, text=True, cwd=ROOT, timeout=WAIT_S)
            assert out.returncode == 0, (title, kind, source, out.stderr)
            assert '"status"' not in out.stdout or kind == "python", (title, out.stdout)

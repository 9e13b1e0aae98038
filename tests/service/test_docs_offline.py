"""/docs and /redoc work offline: every asset they reference is served by the app, no page names an
external URL. (The browser test, tests/e2e/test_playground.py, also loads both pages in Chromium
with every other host unreachable and checks that they render.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from service.routers.docs import CSP

EXTERNAL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.I)


class _Refs(HTMLParser):
    """URLs a page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) and tag in ("script", "link", "img", "iframe", "source"):
                self.urls.append(a[key])


def _refs(html: str) -> list[str]:
    p = _Refs()
    p.feed(html)
    return p.urls


@pytest.fixture
def keyed_client(make_client):
    # with API keys set: the docs and their assets must still load without one
    return make_client(api_keys=["docs-test-key"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_app(keyed_client, page):
    r = keyed_client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP  # the browser may load nothing from elsewhere
    assert EXTERNAL.findall(r.text) == [], f"{page} names an external URL"
    urls = _refs(r.text)
    assert any(u.endswith(".js") for u in urls), urls
    for u in urls:
        full = urljoin(f"http://testserver{page}", u)
        assert urlsplit(full).netloc == "testserver", f"{page} loads {u} from another host"
        asset = keyed_client.get(full)
        assert asset.status_code == 200, f"{page}: {u} answers {asset.status_code}"
        assert len(asset.content) > 0
    # the spec the page renders is served too (without a key)
    spec = re.search(r"""(?:url:\s*'|spec-url=")([^'"]+)""", r.text).group(1)
    assert keyed_client.get(spec).json()["info"]["title"] == "Gradserve"


def test_the_swagger_page_turns_the_online_validator_off(keyed_client):
    # Swagger UI would otherwise show a badge image from validator.swagger.io
    assert '"validatorUrl": null' in keyed_client.get("/docs").text


def test_the_assets_are_real_swagger_ui_and_redoc(keyed_client):
    js = keyed_client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert "SwaggerUIBundle" in js.text
    assert "Redoc" in keyed_client.get("/docs/assets/redoc.standalone.js").text
    assert keyed_client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert keyed_client.get("/docs/oauth2-redirect").status_code == 200
    assert keyed_client.get("/docs/assets/nope.js").status_code == 404


def test_docs_are_not_in_the_openapi_schema(keyed_client):
    paths = keyed_client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc")) for p in paths)

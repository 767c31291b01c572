"""The web chat as HTTP: the page and its files, security headers, auth, `--ui/--no-ui`,
`GET /api/tools`, the vendored libraries, and the WebSocket Origin check for the page's origin.
(The page's behaviour is tested in a real browser in test_webchat_browser*.py.)"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import msgpack
import pytest
import websockets
from typer.testing import CliRunner

from nodetool.api.apps import create_chat_server_app, create_editor_app, create_worker_app
from nodetool.api.webchat.site import STATIC
from nodetool.cli.main import app as cli_app
from tests.support.servers import CliServer, ServerThread
from tests.support.settings import stub_settings

TOKEN = "webchat-site-token"
_IMPORT = re.compile(r"""(?:from|import)\s*["'](\.{1,2}/[^"']+)["']""")
VENDOR = STATIC / "vendor"


@pytest.fixture(scope="module")
def serve(openai_stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = stub_settings(openai_stub.url, tmp_path_factory.mktemp("site"), tools=["calculator"])
    with ServerThread(create_editor_app(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def serve_auth(openai_stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = stub_settings(
        openai_stub.url,
        tmp_path_factory.mktemp("site-auth"),
        auth_provider="static",
        worker_auth_token=TOKEN,
    )
    with ServerThread(create_editor_app(settings)) as server:
        yield server


class _Tags(HTMLParser):
    """Every tag of a document with its attributes, and the text inside <script>/<style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def _page_tags() -> _Tags:
    parser = _Tags()
    parser.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    return parser


# ---- the page and its headers -------------------------------------------------------------


def test_page_is_served_with_a_strict_csp(serve: ServerThread) -> None:
    response = httpx.get(serve.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>nodetool chat</title>" in response.text
    csp = dict(
        part.strip().split(" ", 1)
        for part in response.headers["content-security-policy"].split(";")
    )
    assert csp["script-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["default-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert httpx.head(serve.url + "/").status_code == 200


def test_page_has_no_inline_script_style_or_handlers() -> None:
    tags = _page_tags()
    assert tags.inline == []
    for tag, attrs in tags.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
        if tag == "script":
            assert attrs.get("src", "").startswith("/ui/") and attrs.get("type") == "module"


def test_every_file_the_page_loads_is_served(serve: ServerThread) -> None:
    """index.html's links and every ES module import, followed transitively."""
    urls = [a.get("href") or a.get("src") for _, a in _page_tags().tags]
    pending = [u for u in urls if u and u.startswith("/ui/")]
    seen: set[str] = set()
    with httpx.Client(base_url=serve.url) as client:
        while pending:
            url = pending.pop()
            if url in seen:
                continue
            seen.add(url)
            response = client.get(url)
            assert response.status_code == 200, url
            assert response.headers["content-security-policy"]
            if url.endswith((".js", ".mjs")):
                assert response.headers["content-type"].startswith("text/javascript"), url
                base = url.rsplit("/", 1)[0]
                for target in _IMPORT.findall(response.text):
                    pending.append(_normalise(f"{base}/{target}"))
            elif url.endswith(".css"):
                assert response.headers["content-type"].startswith("text/css"), url
            elif url.endswith(".svg"):
                assert response.headers["content-type"] == "image/svg+xml"
    assert "/ui/js/main.js" in seen
    assert "/ui/vendor/msgpack/index.mjs" in seen
    assert "/ui/vendor/dompurify/purify.es.mjs" in seen
    assert any(url.startswith("/ui/vendor/highlight/languages/") for url in seen)


def _normalise(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/" + "/".join(parts)


def test_missing_file_or_wrong_method_is_an_envelope(serve: ServerThread) -> None:
    response = httpx.get(serve.url + "/ui/js/nope.js")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert httpx.post(serve.url + "/").json()["error"]["code"] == "method_not_allowed"
    assert httpx.get(serve.url + "/ui/../config.py").status_code == 404


# ---- vendored libraries -------------------------------------------------------------------


def test_vendored_libraries_have_licences_and_noted_versions() -> None:
    notes = (VENDOR / "VENDORED.md").read_text(encoding="utf-8")
    for directory in ("msgpack", "marked", "dompurify", "highlight"):
        assert (VENDOR / directory / "LICENSE").is_file(), directory
        assert f"`{directory}/`" in notes
    banners = {
        "marked/marked.esm.js": ("marked v", "18.2.1"),
        "dompurify/purify.es.mjs": ("DOMPurify ", "3.5.0"),
        "highlight/core.min.js": ("Highlight.js v", "11.12.0"),
    }
    for path, (prefix, version) in banners.items():
        head = (VENDOR / path).read_text(encoding="utf-8")[:600]
        assert prefix + version in head, path
        assert version in notes


# ---- auth: the page is public, the API is not ---------------------------------------------


def test_page_is_public_but_the_api_needs_the_token(serve_auth: ServerThread) -> None:
    assert httpx.get(serve_auth.url + "/").status_code == 200
    assert httpx.get(serve_auth.url + "/ui/js/main.js").status_code == 200
    assert httpx.get(serve_auth.url + "/ui/vendor/marked/marked.esm.js").status_code == 200
    for path in ("/api/threads", "/api/tools", "/v1/models", "/ui/not-a-file.js"):
        assert httpx.get(serve_auth.url + path).status_code == 401, path
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(serve_auth.url + "/api/tools", headers=headers).status_code == 200


# ---- --ui / --no-ui -----------------------------------------------------------------------


def test_no_ui_and_the_other_servers_have_no_page(openai_stub, tmp_path: Path) -> None:
    settings = stub_settings(openai_stub.url, tmp_path, web_ui=False)
    for factory in (create_editor_app, create_worker_app, create_chat_server_app):
        with ServerThread(factory(settings)) as server:
            response = httpx.get(server.url + "/")
            assert response.status_code == 404
            assert "error" in response.json()
            assert httpx.get(server.url + "/ui/app.css").status_code == 404


def test_serve_no_ui_flag(openai_stub, tmp_path: Path) -> None:
    env = {
        "OPENAI_BASE_URL": openai_stub.url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DATA_DIR": str(tmp_path),
    }
    with CliServer("serve", "--provider", "openai", "--no-ui", env=env) as server:
        assert httpx.get(server.url + "/").status_code == 404
        assert httpx.get(server.url + "/api/tools").status_code == 200


def test_ui_flag_on_worker_or_chat_server_is_refused() -> None:
    runner = CliRunner()
    for command in ("worker", "chat-server"):
        result = runner.invoke(cli_app, [command, "--ui", "--port", "1"])
        assert result.exit_code == 2
        assert "use `nodetool serve`" in result.output
    result = runner.invoke(cli_app, ["serve", "--help"], terminal_width=200)
    assert "--ui" in result.output and "--no-ui" in result.output


# ---- GET /api/tools -----------------------------------------------------------------------


def test_tools_list_marks_the_server_default(serve: ServerThread) -> None:
    body = httpx.get(serve.url + "/api/tools").json()
    assert body["default"] == ["calculator"]
    by_name = {tool["name"]: tool for tool in body["tools"]}
    assert {"calculator", "current_time", "read_file", "http_get"} <= set(by_name)
    assert by_name["calculator"]["enabled"] is True
    assert by_name["current_time"]["enabled"] is False
    assert by_name["calculator"]["kind"] == "builtin"
    assert by_name["calculator"]["parameters"]["required"] == ["expression"]


def test_tools_list_includes_the_users_workflow_tools(serve: ServerThread) -> None:
    workflow = {
        "id": "shout",
        "name": "Shout",
        "tool_name": "shout",
        "graph": {
            "nodes": [
                {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "text"}},
                {"id": "out", "type": "nodetool.output.StringOutput", "data": {"name": "loud"}},
            ],
            "edges": [
                {"source": "in", "sourceHandle": "output", "target": "out", "targetHandle": "value"}
            ],
        },
    }
    assert httpx.post(serve.url + "/api/workflows", json=workflow).status_code == 201
    tools = {t["name"]: t for t in httpx.get(serve.url + "/api/tools").json()["tools"]}
    assert tools["workflow_shout"]["kind"] == "workflow"
    assert tools["workflow_shout"]["enabled"] is False
    assert "text" in tools["workflow_shout"]["parameters"]["properties"]


# ---- the /chat Origin check still holds ---------------------------------------------------


async def _chat_origin(url: str, origin: str) -> tuple[str, object]:
    ws_url = url.replace("http://", "ws://") + "/chat"
    async with websockets.connect(ws_url, additional_headers={"Origin": origin}) as ws:
        try:
            await ws.send(msgpack.packb({"type": "ping"}))
            frame = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
        except websockets.ConnectionClosed as exc:
            return "closed", exc.rcvd.code if exc.rcvd else None
        return "frame", frame.get("type")


def test_chat_socket_allows_the_pages_origin_only(serve: ServerThread) -> None:
    assert asyncio.run(_chat_origin(serve.url, serve.url)) == ("frame", "pong")
    assert asyncio.run(_chat_origin(serve.url, "https://evil.example")) == ("closed", 1008)


def test_api_tools_is_in_the_openapi_schema_and_the_page_is_not(serve: ServerThread) -> None:
    paths = json.loads(httpx.get(serve.url + "/openapi.json").text)["paths"]
    assert "/api/tools" in paths
    assert "/" not in paths

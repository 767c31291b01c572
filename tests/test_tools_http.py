"""http_get against a real HTTP server on loopback: content types, limits and refusals."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nodetool.config import Settings
from nodetool.errors import ToolError
from nodetool.tools.base import ToolContext
from nodetool.tools.http_get import MAX_BYTES, HttpGetArgs, HttpGetTool, html_to_text

RELEASE = threading.Event()  # lets the /slow handler finish at teardown
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
HTML = """<!doctype html><html><head><title> Test  Page </title>
<style>body { color: red }</style><script>var secret = 1;</script></head>
<body><h1>Heading</h1><p>First   paragraph &amp; more.</p><div>Second<br>line</div></body></html>"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        # the client may refuse the body and go away
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route()

    def _route(self) -> None:
        path = self.path
        if path == "/text":
            self._send(200, "héllo text".encode(), "text/plain; charset=utf-8")
        elif path == "/latin1":
            self._send(200, "café".encode("latin-1"), "text/plain; charset=iso-8859-1")
        elif path == "/json":
            self._send(200, json.dumps({"answer": 42}).encode(), "application/json")
        elif path == "/html":
            self._send(200, HTML.encode(), "text/html; charset=utf-8")
        elif path == "/binary":
            self._send(200, PNG, "image/png")
        elif path == "/untyped":
            self._send(200, b"plain words", None)
        elif path == "/big":
            self._send(200, b"a" * (MAX_BYTES + 10), "text/plain")
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"b" * 65536
            for _ in range(MAX_BYTES // len(chunk) + 2):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/redirect":
            self._send(302, b"", None, Location="/text")
        elif path.startswith("/loop"):
            self._send(302, b"", None, Location=f"/loop{len(path)}")
        elif path == "/to-ftp":
            self._send(302, b"", None, Location="ftp://example.com/file")
        elif path == "/slow":
            RELEASE.wait(10)
            self._send(200, b"late", "text/plain")
        else:
            self._send(404, b"no such page", "text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        RELEASE.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def context(tmp_path) -> ToolContext:
    return ToolContext(
        user_id="1", settings=Settings(data_dir=tmp_path, http_get_allow_private=True)
    )


async def get(context: ToolContext, url: str, **limits) -> dict:
    return await HttpGetTool(**limits).run(context, HttpGetArgs(url=url))


async def refused(context: ToolContext, url: str, reason: str, **limits) -> None:
    with pytest.raises(ToolError) as info:
        await get(context, url, **limits)
    assert reason in info.value.message, info.value.message


async def test_text(server: str, context: ToolContext) -> None:
    result = await get(context, server + "/text")
    assert result["status"] == 200 and result["text"] == "héllo text"
    assert result["content_type"] == "text/plain"
    assert (await get(context, server + "/latin1"))["text"] == "café"


async def test_json_is_returned_as_text(server: str, context: ToolContext) -> None:
    result = await get(context, server + "/json")
    assert result["content_type"] == "application/json"
    assert json.loads(result["text"]) == {"answer": 42}


async def test_html_is_reduced_to_text(server: str, context: ToolContext) -> None:
    result = await get(context, server + "/html")
    assert result["title"] == "Test Page"
    assert result["text"] == "Heading\nFirst paragraph & more.\nSecond\nline"
    assert "secret" not in result["text"] and "color" not in result["text"]


async def test_binary_is_summarized(server: str, context: ToolContext) -> None:
    result = await get(context, server + "/binary")
    assert result["content_type"] == "image/png" and result["bytes"] == len(PNG)
    assert "text" not in result and result["note"] == "binary content not shown"


async def test_untyped_text_is_shown(server: str, context: ToolContext) -> None:
    assert (await get(context, server + "/untyped"))["text"] == "plain words"


async def test_redirects_are_followed(server: str, context: ToolContext) -> None:
    result = await get(context, server + "/redirect")
    assert result["url"] == server + "/text" and result["text"] == "héllo text"


async def test_redirect_limit(server: str, context: ToolContext) -> None:
    await refused(context, server + "/loop", "too many redirects (limit 3)", max_redirects=3)


async def test_redirect_to_another_scheme_is_refused(server: str, context: ToolContext) -> None:
    await refused(context, server + "/to-ftp", "unsupported")


async def test_oversized_response_is_refused(server: str, context: ToolContext) -> None:
    await refused(context, server + "/big", "response is too large")


async def test_oversized_streamed_response_is_refused(server: str, context: ToolContext) -> None:
    await refused(context, server + "/big-chunked", "response is too large (over the limit")


async def test_smaller_limit(server: str, context: ToolContext) -> None:
    await refused(context, server + "/html", "too large", max_bytes=100)


async def test_time_limit(server: str, context: ToolContext) -> None:
    await refused(context, server + "/slow", "did not answer within 0.3 s", time_limit=0.3)


async def test_http_errors_are_failures(server: str, context: ToolContext) -> None:
    await refused(context, server + "/missing", "HTTP 404 Not Found")


async def test_connection_refused(context: ToolContext) -> None:
    from tests.support.servers import free_port

    await refused(context, f"http://127.0.0.1:{free_port()}/", "could not fetch")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x", "only http and https"),
        ("gopher://example.com", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("example.com/page", "only http and https"),
        ("http://", "no host"),
    ],
)
async def test_bad_urls_are_refused(context: ToolContext, url: str, reason: str) -> None:
    await refused(context, url, reason)


def test_html_to_text_handles_broken_markup() -> None:
    title, text = html_to_text("<p>open <b>bold<script>x</p> after")
    assert title == "" and text.startswith("open bold")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/", "http://localhost/", "http://169.254.169.254/latest/meta-data"]
)
async def test_private_addresses_are_refused_by_default(tmp_path, url) -> None:
    ctx = ToolContext(user_id="1", settings=Settings(data_dir=tmp_path))
    with pytest.raises(ToolError, match="non-public address"):
        await HttpGetTool().run(ctx, HttpGetArgs(url=url))

"""`http_get`: fetch a URL over http(s) with size, time and redirect limits.

Text, JSON and XML bodies come back as text; HTML is reduced to its readable text; anything else
is summarized (content type and size), never returned raw.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from html.parser import HTMLParser
from typing import Any

import httpcore
import httpx
from pydantic import BaseModel, Field

from nodetool.errors import ToolError
from nodetool.tools.base import Tool, ToolContext

MAX_BYTES = 1024 * 1024
TIME_LIMIT = 15.0
MAX_REDIRECTS = 5
_TEXT_TYPES = (
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-javascript",
    "application/yaml",
    "application/x-yaml",
    "application/x-ndjson",
    "application/csv",
)


def _is_text(content_type: str) -> bool:
    return (
        content_type.startswith("text/")
        or content_type in _TEXT_TYPES
        or content_type.endswith(("+json", "+xml"))
    )


class _TextExtractor(HTMLParser):
    """Readable text of an HTML page: scripts, styles and markup dropped."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, readable text) of an HTML document."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return " ".join(parser.title.split()), parser.text()


class HttpGetArgs(BaseModel):
    url: str = Field(description="An http:// or https:// URL.")


class HttpGetTool(Tool):
    name = "http_get"
    description = (
        "Fetch a web page or API response with HTTP GET and return its text "
        f"(HTML reduced to text; responses over {MAX_BYTES // 1024 // 1024} MiB are refused)."
    )
    Args = HttpGetArgs
    timeout = TIME_LIMIT + 5.0

    def __init__(
        self,
        max_bytes: int = MAX_BYTES,
        time_limit: float = TIME_LIMIT,
        max_redirects: int = MAX_REDIRECTS,
    ) -> None:
        self.max_bytes = max_bytes
        self.time_limit = time_limit
        self.max_redirects = max_redirects

    async def run(self, context: ToolContext, args: BaseModel) -> dict[str, Any]:
        assert isinstance(args, HttpGetArgs)
        url = _check_url(args.url)
        public_only = not context.settings.http_get_allow_private
        try:
            async with asyncio.timeout(self.time_limit):
                return await self._fetch(url, PublicOnlyTransport() if public_only else None)
        except TimeoutError:
            raise ToolError(f"{url} did not answer within {self.time_limit:g} s") from None
        except httpx.TooManyRedirects:
            raise ToolError(f"too many redirects (limit {self.max_redirects})") from None
        except httpx.UnsupportedProtocol as exc:
            raise ToolError(f"redirected to an unsupported URL: {exc}") from None
        except httpx.TimeoutException:
            raise ToolError(f"{url} did not answer within {self.time_limit:g} s") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"could not fetch {url}: {type(exc).__name__}: {exc}") from None

    async def _fetch(self, url: str, transport: httpx.AsyncBaseTransport | None) -> dict[str, Any]:
        async with (
            httpx.AsyncClient(
                follow_redirects=True,
                max_redirects=self.max_redirects,
                timeout=httpx.Timeout(self.time_limit),
                headers={"User-Agent": "nodetool-http-get/1.0", "Accept": "*/*"},
                trust_env=False,
                transport=transport,
            ) as client,
            client.stream("GET", url) as response,
        ):
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise ToolError(self._too_large(int(declared)))
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > self.max_bytes:
                    raise ToolError(self._too_large(None))
            content_type = response.headers.get("content-type", "")
            return self._result(response, bytes(body), content_type)

    def _too_large(self, size: int | None) -> str:
        limit = f"limit {self.max_bytes} bytes"
        if size is None:
            return f"response is too large (over the {limit})"
        return f"response is too large: {size} bytes ({limit})"

    def _result(self, response: Any, body: bytes, content_type: str) -> dict[str, Any]:
        media = content_type.split(";", 1)[0].strip().lower()
        status = response.status_code
        if status >= 400:
            snippet = body[:300].decode(response.encoding or "utf-8", errors="replace")
            reason = f"HTTP {status} {response.reason_phrase}"
            raise ToolError(f"{reason} from {response.url}: {snippet}")
        result: dict[str, Any] = {
            "url": str(response.url),
            "status": status,
            "content_type": media or "unknown",
            "bytes": len(body),
        }
        if media in ("text/html", "application/xhtml+xml"):
            title, text = html_to_text(body.decode(response.encoding or "utf-8", errors="replace"))
            result["title"] = title
            result["text"] = text
        elif _is_text(media) or (not media and _looks_like_text(body)):
            result["text"] = body.decode(response.encoding or "utf-8", errors="replace")
        else:
            result["note"] = "binary content not shown"
        return result


def _looks_like_text(body: bytes) -> bool:
    try:
        body[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in body[:4096]


def _check_url(raw: str) -> str:
    raw = raw.strip()
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ToolError(f"invalid URL {raw!r}: {exc}") from None
    if url.scheme not in ("http", "https"):
        shown = url.scheme or "none"
        raise ToolError(f"only http and https URLs are allowed (scheme {shown!r} in {raw!r})")
    if not url.host:
        raise ToolError(f"URL has no host: {raw!r}")
    return str(url)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE_HINT = "set NODETOOL_HTTP_GET_ALLOW_PRIVATE=true to allow it"


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `address` is a global unicast address, looking through IPv6 forms that embed
    an IPv4 one: mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
    (`64:ff9b::a.b.c.d`), 6to4 and Teredo."""
    if isinstance(address, ipaddress.IPv6Address):
        value = int(address)
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if value >> 32 == 0:  # ::/96, IPv4-compatible (also :: and ::1)
            return is_public(ipaddress.IPv4Address(value))
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(value & 0xFFFFFFFF))
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
        if address.teredo is not None and not is_public(address.teredo[1]):
            return False
    return address.is_global


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host once, refuses any non-public address, and connects to exactly the
    address it checked (no second lookup, so no DNS-rebinding window). Every connection
    goes through here, redirects included; TLS still verifies the original host name."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ToolError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        for address in addresses:
            if not is_public(address):
                raise ToolError(
                    f"{host} resolves to a non-public address ({address}); http_get only "
                    f"fetches public URLs ({_PRIVATE_HINT})"
                )
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"cannot connect to {host}")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PublicOnlyTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that uses `PublicOnlyBackend`."""

    def __init__(self) -> None:  # same request mapping as the parent, our own pool
        import ssl

        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context, network_backend=PublicOnlyBackend(), max_connections=4
        )

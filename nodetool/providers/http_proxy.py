"""HTTP proxies for upstream connections, from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`.

Plain `http://` upstreams go through the proxy as absolute-form requests (forwarding);
`https://` upstreams through a `CONNECT` tunnel, with TLS to the upstream inside it. Only
`http://` proxy URLs are supported (user:password in the URL is sent as Basic
`Proxy-Authorization`); any other proxy scheme is an error at the first request.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from nodetool.providers.http_connection import ConnectError, HttpError, ProtocolError

_MAX_HEAD = 16384  # bytes of a CONNECT answer's head before it is refused as invalid


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization value, if the URL has credentials

    @property
    def where(self) -> str:
        return f"http://{self.host}:{self.port}"


def proxy_for(scheme: str, host: str, port: int) -> Proxy | None:
    """The proxy the environment names for this origin (None: connect directly)."""
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass_environment(f"{host}:{port}", proxies):
        return None
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise HttpError(f"unsupported proxy URL for {scheme}:// upstreams (http:// proxies only)")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, parts.port or 80, authorization)


async def open_tunnel(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A connected socket through which bytes reach `host:port` (a CONNECT the proxy accepted)."""
    loop = asyncio.get_running_loop()
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n"
    if proxy.authorization:
        request += f"proxy-authorization: {proxy.authorization}\r\n"
    try:
        infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConnectError(f"cannot reach the proxy {proxy.where}: {exc}") from exc
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, (request + "\r\n").encode("latin-1"))
        head = b""
        while b"\r\n\r\n" not in head:  # a proxy sends nothing past the head before TLS starts
            data = await loop.sock_recv(sock, 4096)
            if not data:
                raise ConnectError(f"the proxy {proxy.where} closed the connection on CONNECT")
            head += data
            if len(head) > _MAX_HEAD:
                raise ProtocolError(f"the proxy {proxy.where} sent an invalid CONNECT answer")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise ProtocolError(f"the proxy {proxy.where} sent an invalid CONNECT answer")
        if not 200 <= int(fields[1]) < 300:
            raise ConnectError(
                f"the proxy {proxy.where} refused the tunnel to {authority}: {status_line}"
            )
    except OSError as exc:
        sock.close()
        raise ConnectError(f"cannot connect through the proxy {proxy.where}: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock

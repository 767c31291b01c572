"""`nodetool <args>` with the openai provider's transport replaced by httpx (benchmark only).

    python benchmarks/httpx_gateway.py chat-server --port 8000 --provider openai

`benchmarks/gateway.py --httpx` starts this next to the real `nodetool chat-server` to compare
the own upstream client (`nodetool.providers.http_client`) with httpx in one run: the same
gateway, only `OpenAIProvider`'s client differs (one `httpx.AsyncClient`, streamed responses,
the same connection cap and timeouts).
"""

from __future__ import annotations

import asyncio
import json
import sys


class _HttpxResponse:
    """An httpx streamed response behind the interface the openai provider reads."""

    def __init__(self, response) -> None:
        self._response = response
        self.status = response.status_code
        self.reason = response.reason_phrase
        self._pieces = response.aiter_raw()

    async def receive(self) -> bytes:
        return await anext(self._pieces, b"")

    async def read(self) -> bytes:
        return await self._response.aread()

    async def json(self):
        return json.loads(await self.read())

    def close(self) -> None:
        if not self._response.is_closed:
            asyncio.ensure_future(self._response.aclose())


class _HttpxClient:
    """`nodetool.providers.http_client.HttpClient`'s interface on one `httpx.AsyncClient`."""

    def __init__(
        self,
        base_url: str,
        *,
        headers,
        timeout: float,
        connect_timeout: float,
        max_connections: int = 256,
    ) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={**headers, "accept-encoding": "identity"},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def _send(self, request):
        from nodetool.providers import http_client

        try:
            return _HttpxResponse(await self._client.send(request, stream=True))
        except self._httpx.TimeoutException as exc:
            raise http_client.ReadTimeout(str(exc)) from None
        except self._httpx.HTTPError as exc:
            raise http_client.ConnectError(str(exc)) from None

    async def post(self, url: str, body: bytes, content_type: str = "application/json"):
        headers = {"content-type": content_type}
        return await self._send(
            self._client.build_request("POST", url, content=body, headers=headers)
        )

    async def get(self, url: str):
        return await self._send(self._client.build_request("GET", url))

    async def aclose(self) -> None:
        await self._client.aclose()


def serve_httpx_gateway(cli_args: list[str]) -> None:
    """`nodetool <cli_args>` with the openai provider's transport replaced by httpx."""
    from nodetool.cli.main import run
    from nodetool.providers import openai_provider

    openai_provider.HttpClient = _HttpxClient  # type: ignore[misc, assignment]
    sys.argv = ["nodetool", *cli_args]
    run()


def transport_checks(results) -> list[tuple[str, bool]]:
    """Print own client vs httpx (targets `nodetool` and `httpx` of gateway.py's results) and
    return the keep-or-switch checks: keep the own client only at >= 1.3x httpx's throughput
    at concurrency 32 or >= 0.2 ms less added p50 at concurrency 1."""
    print()
    print("transport: own http_client (nodetool) vs httpx, same gateway otherwise")
    checks = []
    for stream in (False, True):
        kind = "stream" if stream else "non-stream"
        own, via = results[("nodetool", stream, 32)], results[("httpx", stream, 32)]
        own1, via1 = results[("nodetool", stream, 1)], results[("httpx", stream, 1)]
        gain = via1.pct(0.5) - own1.pct(0.5)
        ratio = own.rps / via.rps
        print(
            f"  {kind}: c=32 throughput own/httpx {ratio:.2f}x (cpu ms/req own "
            f"{own.cpu_ms:.3f}, httpx {via.cpu_ms:.3f}); c=1 added p50 {gain:+.2f} ms less"
        )
        checks.append(
            (
                f"own client worth keeping, {kind}: c=32 {ratio:.2f}x httpx (keep if >= 1.3x) "
                f"or {gain:.2f} ms less added p50 (keep if >= 0.2 ms)",
                ratio >= 1.3 or gain >= 0.2,
            )
        )
    return checks


if __name__ == "__main__":
    serve_httpx_gateway(sys.argv[1:])

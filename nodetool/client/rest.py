"""The REST calls the WebSocket client needs: models, threads and a thread's messages."""

from __future__ import annotations

from typing import Any

from nodetool.client.base import ClientError, refused, server_message, unreachable

PAGE = 100
MAX_MESSAGES = 2000


class Rest:
    """A small httpx client for `GET /v1/models`, `/api/threads`, `/api/messages`."""

    def __init__(self, url: str, token: str | None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, **params: Any) -> Any:
        """GET `path` as JSON; failures become one-line ClientErrors (404 → None)."""
        import httpx

        query = {key: value for key, value in params.items() if value is not None}
        try:
            response = await self.http.get(path, params=query)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        if response.status_code == 404:
            return None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code == 401:
            raise refused(self.url, f"401: {server_message(body, 'unauthorized')}", self.token)
        if response.status_code >= 400:
            detail = server_message(body, response.reason_phrase)
            raise ClientError(f"server error {response.status_code}: {detail}")
        return body

    async def models(self) -> list[str]:
        body = await self.get("/v1/models")
        if body is None:
            raise ClientError(f"{self.url} has no /v1/models (is it a nodetool server?)")
        return [str(item.get("id")) for item in body.get("data", []) if isinstance(item, dict)]

    async def threads(self, limit: int = 20) -> list[dict[str, Any]]:
        body = await self.get("/api/threads", limit=limit)
        if body is None:
            raise ClientError(f"{self.url} has no /api/threads (threads need `nodetool serve`)")
        return list(body.get("threads", []))

    async def messages(self, thread_id: str) -> list[dict[str, Any]] | None:
        """The thread's messages, oldest first; None when the thread does not exist (yet)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(found) < MAX_MESSAGES:
            body = await self.get("/api/messages", thread_id=thread_id, cursor=cursor, limit=PAGE)
            if body is None:
                return found or None
            found.extend(body.get("messages", []))
            cursor = body.get("next")
            if not cursor:
                break
        return found

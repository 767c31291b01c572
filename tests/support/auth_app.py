"""Helpers for the auth tests: a small app behind the real auth stack, WS/HTTP outcome probes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from nodetool.api.auth.middleware import install_auth
from nodetool.api.errors import install_error_handlers
from nodetool.api.routes.health import router as health_router
from nodetool.config import Settings

TITLES = {
    "serve": "nodetool editor",
    "worker": "nodetool worker",
    "chat-server": "nodetool chat-server",
}


def auth_settings(home: Path, mode: str, **extra: Any) -> Settings:
    """Settings for `mode` with data/config dirs under `home` (never the real ones)."""
    return Settings(
        auth_provider=mode,
        data_dir=home / "data",
        config_dir=home / "config",
        **extra,
    )


def demo_app(settings: Settings, kind: str = "serve") -> FastAPI:
    """A small app with the shapes of the real route table; every handler echoes its user id."""
    app = FastAPI(title=TITLES[kind])
    install_error_handlers(app)
    app.include_router(health_router)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse("# metrics\n")

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        return {"object": "list", "data": [], "user_id": request.state.user_id}

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> dict[str, Any]:
        return {"user_id": request.state.user_id}

    async def thread(thread_id: str, request: Request) -> dict[str, Any]:
        return {"id": thread_id, "user_id": request.state.user_id}

    for method in ("GET", "PUT", "DELETE"):
        app.add_api_route(
            "/api/threads/{thread_id}", thread, methods=[method], name=f"thread_{method.lower()}"
        )

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        user_id = websocket.scope["state"]["user_id"]
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_json({"user_id": user_id, "echo": text})
        except WebSocketDisconnect:
            return

    app.add_api_websocket_route("/chat", echo)
    app.add_api_websocket_route("/predict", echo)
    install_auth(app, settings)
    return app


def ws_probe(
    url: str, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[str, Any, str]:
    """Open a WebSocket, send one ping frame and read one frame.

    Returns ("frame", decoded_frame, "") when the server answered, ("closed", code, reason)
    when it closed the socket, ("http", status, "") when the handshake was refused, and
    ("open", None, "") when the socket stayed open without answering within `timeout`.
    """
    try:
        with connect(url, additional_headers=headers or {}, open_timeout=timeout) as ws:
            try:
                ws.send(json.dumps({"type": "ping"}))
                frame = ws.recv(timeout=timeout)
            except ConnectionClosed as exc:
                rcvd = exc.rcvd
                return ("closed", rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
            except TimeoutError:
                return ("open", None, "")
            try:
                return ("frame", json.loads(frame), "")
            except (TypeError, ValueError):
                return ("frame", frame, "")
    except InvalidStatus as exc:
        return ("http", exc.response.status_code, "")

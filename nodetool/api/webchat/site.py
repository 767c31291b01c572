"""Serve the web chat: `GET /` is the page, `/ui/*` its static files (CSS, ES modules, icons).

The files live in `static/` beside this module and are served as they are (no build step, no
Node.js). Every response carries the security headers below; the page's Content-Security-Policy
allows scripts, styles and connections from the page's own origin only. The page and its files
hold no secrets, so they are public even when the server enforces auth: `public_paths()` lists
them (exact paths, nothing else) for the auth middleware; every API call the page makes still
needs the token.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/ui"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types dompurify",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cache-Control": "no-cache",  # revalidate (ETag) so an upgrade shows at once
}
_MEDIA_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".svg": "image/svg+xml"}


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


class StaticUI(StaticFiles):
    """The page's files with the security headers and a fixed JavaScript media type."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media = _MEDIA_TYPES.get(Path(str(full_path)).suffix)
        if media is not None:
            response.headers["content-type"] = media + (
                "; charset=utf-8" if media.startswith("text/") else ""
            )
        return _secure(response)


async def index(request: Request) -> Response:
    """The page (also for HEAD)."""
    return _secure(FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8"))


def public_paths() -> frozenset[str]:
    """`/` and the URL of every static file: what a browser loads before it has a token."""
    files = (p for p in STATIC.rglob("*") if p.is_file())
    urls = {f"{PREFIX}/{p.relative_to(STATIC).as_posix()}" for p in files}
    return frozenset({"/", *urls})


def install_webchat(app: FastAPI) -> None:
    """Mount the page at `/` and its files at `/ui` (left out of the OpenAPI schema)."""
    app.add_api_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(PREFIX, StaticUI(directory=STATIC), name="webchat")

"""`/health` and `/ping`: public liveness on every app."""

from __future__ import annotations

import time

from fastapi import APIRouter

from nodetool import __version__

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/ping")
async def ping() -> dict[str, float | str]:
    return {"status": "ok", "ts": time.time()}

"""`GET /metrics`: the app's Prometheus registry in the text exposition format.

Access control is the auth middleware's: public only when auth is off or `--public-metrics`.
In multiprocess mode (`--workers N`) every worker process's series are shown.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nodetool.api.metrics import metrics_of

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = metrics_of(request.app).exposition_registry()
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

"""The three app factories. Each lists the routers and middleware its surface mounts.

| factory                  | surface (docs/protocol.md §1)                                    |
|--------------------------|------------------------------------------------------------------|
| create_editor_app        | /v1, /chat, /predict, /api/threads|messages|workflows|jobs|tools |
|                          | /mcp, and the web chat at / (unless `settings.web_ui` is off)    |
| create_worker_app        | /v1, /workflows, /workflows/{id}/run[/stream], /jobs/{id}..., /mcp |
| create_chat_server_app   | /v1                                                              |

All three add /health, /ping and /metrics.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from nodetool import __version__
from nodetool.admission import Admission
from nodetool.api.errors import install_error_handlers
from nodetool.api.hot_paths import HotLaneApp, install_hot_paths
from nodetool.api.metrics import metrics_of
from nodetool.api.openapi import install_openapi
from nodetool.config import Settings, server_settings
from nodetool.runtime import new_instance_id, open_runtime

SETTINGS_ENV = "NODETOOL_SETTINGS_JSON"


def _routers(names: list[str]) -> list[APIRouter]:
    import importlib

    return [importlib.import_module(f"nodetool.api.routes.{name}").router for name in names]


def _build(
    settings: Settings,
    *,
    kind: str,
    title: str,
    routers: list[str],
    store: bool,
    jobs: bool,
    mcp: bool = False,
    web_ui: bool = False,
) -> FastAPI:
    settings = server_settings(settings, kind)
    admission = Admission(settings.max_concurrent_completions)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = metrics_of(app)
        runtime = await open_runtime(
            settings,
            store=store,
            jobs=jobs,
            instance=metrics.instance,
            observe_jobs=metrics.job_event,
            kind=kind,
            admission=admission,
            responses=True,
        )
        app.state.runtime = runtime
        try:
            if endpoint is None:
                yield
            else:
                async with endpoint.run(runtime):
                    yield
        finally:
            await runtime.aclose()

    app = HotLaneApp(title=title, version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.instance = new_instance_id()
    install_error_handlers(app)
    openai = ["openai_api", "responses", "embeddings", "completions"]
    for router in _routers(["health", "metrics", *openai, *routers]):
        app.include_router(router)
    endpoint = None
    if mcp:
        from nodetool.api.mcp_http import mount_mcp

        endpoint = mount_mcp(app)
    public: frozenset[str] = frozenset()
    if web_ui:
        from nodetool.api.webchat.site import install_webchat, public_paths

        install_webchat(app)
        public = public_paths()
    install_openapi(app)
    install_hot_paths(app)  # innermost: before `_install_middleware`
    _install_middleware(app, settings, kind, admission, public)
    return app


def _install_middleware(
    app: FastAPI, settings: Settings, kind: str, admission: Admission, public: frozenset[str]
) -> None:
    """Body limit, concurrency, auth, CORS, trusted hosts, and request ids with metrics, as
    pure ASGI middleware (outermost added last)."""
    from nodetool.api.auth.middleware import install_auth
    from nodetool.api.limits import BodyLimitMiddleware, ConcurrencyLimitMiddleware
    from nodetool.api.request_layer import install_request_layer

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ConcurrencyLimitMiddleware, admission=admission, prefix="/v1/")
    install_auth(app, settings, kind, public_paths=public)
    install_request_layer(app)


def create_editor_app(settings: Settings) -> FastAPI:
    """`nodetool serve`: the editor API for local desktop/web use."""
    return _build(
        settings,
        kind="serve",
        title="nodetool editor",
        routers=["chat_ws", "predict_ws", "threads", "workflows", "tools"],
        store=True,
        jobs=True,
        mcp=True,
        web_ui=settings.web_ui,
    )


def create_worker_app(settings: Settings) -> FastAPI:
    """`nodetool worker`: the deployable data plane."""
    return _build(
        settings,
        kind="worker",
        title="nodetool worker",
        routers=["worker_workflows", "jobs"],
        store=True,
        jobs=True,
        mcp=True,
    )


def create_chat_server_app(settings: Settings) -> FastAPI:
    """`nodetool chat-server`: chat-only /v1."""
    return _build(
        settings,
        kind="chat-server",
        title="nodetool chat-server",
        routers=[],
        store=False,
        jobs=False,
    )


FACTORIES: dict[str, Callable[[Settings], FastAPI]] = {
    "serve": create_editor_app,
    "worker": create_worker_app,
    "chat-server": create_chat_server_app,
}


def _settings_from_env() -> Settings:
    """Settings handed to `--reload`/`--workers` child processes through the environment."""
    return Settings.model_validate(json.loads(os.environ[SETTINGS_ENV]))


def _served(app: FastAPI) -> FastAPI:
    """An app built in its own server process (`--reload`/`--workers` children)."""
    from nodetool.api.gc_tuning import tune_for_serving

    tune_for_serving()
    return app


def editor_app_from_env() -> FastAPI:
    return _served(create_editor_app(_settings_from_env()))


def worker_app_from_env() -> FastAPI:
    return _served(create_worker_app(_settings_from_env()))


def chat_server_app_from_env() -> FastAPI:
    return _served(create_chat_server_app(_settings_from_env()))

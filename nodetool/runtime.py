"""The process's shared resources, built from Settings at startup and closed at shutdown.

The API lifespan, `nodetool run` and tests all build one `Runtime`; handlers reach its parts
through typed dependencies. Each part is optional: an app builds only what it mounts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from nodetool.admission import Admission
from nodetool.config import Settings

if TYPE_CHECKING:
    from nodetool.chat.engine import ChatEngine
    from nodetool.providers.registry import ProviderRegistry
    from nodetool.storage.base import Store
    from nodetool.storage.responses import ResponseStore, SqlResponseStore
    from nodetool.tools.base import ToolContext
    from nodetool.tools.registry import ToolRegistry
    from nodetool.workflows.jobs import JobManager


@dataclass
class Runtime:
    settings: Settings
    providers: ProviderRegistry | None = None
    store: Store | None = None
    tools: ToolRegistry | None = None
    engine: ChatEngine | None = None
    jobs: JobManager | None = None
    admission: Admission | None = None
    responses: ResponseStore | None = None  # stored /v1/responses: the store's, or its own
    own_responses: SqlResponseStore | None = None  # chat-server: a responses-only store

    async def aclose(self) -> None:
        """Close parts in reverse order of creation."""
        if self.jobs is not None:
            await self.jobs.aclose()
        if self.tools is not None:
            await self.tools.aclose()
        if self.providers is not None:
            await self.providers.aclose()
        if self.store is not None:
            await self.store.close()
        if self.own_responses is not None:
            await self.own_responses.close()


def new_instance_id() -> str:
    """A process's identity (metrics `instance` label, job queue consumer, job owner): random,
    never reused, so a restarted or cloned process is never mistaken for another."""
    import socket
    import uuid

    return f"{socket.gethostname()[:32]}-{uuid.uuid4().hex[:12]}"


async def open_runtime(
    settings: Settings,
    *,
    store: bool = True,
    jobs: bool = True,
    instance: str | None = None,
    observe_jobs: Callable[[str, float | None], None] | None = None,
    kind: str = "serve",
    admission: Admission | None = None,
    responses: bool = False,
) -> Runtime:
    """Build the runtime: providers, optional store, tools, chat engine, optional job manager.

    Stored `/v1/responses` use the store's table; without a store, `responses=True` opens
    that table alone on the same database (chat-server).

    `kind` (serve | worker | chat-server) picks the default tool allow-list; `admission` is
    the concurrency limit shared by `/v1` and `/chat` turns (one is made when omitted); jobs
    are bounded by their queue (NODETOOL_MAX_CONCURRENT_JOBS).
    """
    from nodetool.chat.engine import ChatEngine
    from nodetool.providers.registry import ProviderRegistry
    from nodetool.tools.registry import build_tool_registry

    admission = admission or Admission(settings.max_concurrent_completions)
    runtime = Runtime(settings=settings, admission=admission)
    try:
        runtime.providers = await ProviderRegistry.create(settings)
        workflow_tools = None
        if store:
            from nodetool.storage import open_store
            from nodetool.workflows.as_tool import WorkflowTools

            runtime.store = await open_store(settings)
            runtime.responses = runtime.store.responses
            if jobs:
                from nodetool.workflows.jobs import JobManager

                runtime.jobs = JobManager(
                    settings,
                    runtime.store,
                    runtime.providers,
                    instance=instance,
                    observe=observe_jobs,
                )
            workflow_tools = WorkflowTools(runtime.jobs)
        elif responses:
            from nodetool.storage import open_response_store

            runtime.own_responses = await open_response_store(settings)
            runtime.responses = runtime.own_responses
        runtime.tools = build_tool_registry(settings, workflow_tools, kind)
        runtime.engine = ChatEngine(
            settings,
            runtime.providers,
            runtime.tools,
            tool_context=partial(_tool_context, settings, runtime.store),
        )
        if runtime.jobs is not None:
            await runtime.jobs.start()
            await runtime.jobs.load_workflow_files(settings.workflow_files)
    except BaseException:
        await runtime.aclose()
        raise
    return runtime


def _tool_context(
    settings: Settings, store: Store | None, user_id: str, thread_id: str | None
) -> ToolContext:
    """The context a chat turn's tools run in: the user, the settings and the store."""
    from nodetool.tools.base import ToolContext

    return ToolContext(user_id=user_id, settings=settings, store=store, thread_id=thread_id)

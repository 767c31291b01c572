"""Checks before a server starts: settings that cannot work give one clear message, exit 2."""

from __future__ import annotations

from nodetool.cli.common import fail
from nodetool.config import Settings


def check_startup(settings: Settings) -> None:
    """Refuse configurations that cannot serve (e.g. supabase without its URL and key)."""
    if settings.auth_provider == "supabase" and not (
        settings.supabase_url and settings.supabase_key
    ):
        raise fail("AUTH_PROVIDER=supabase needs SUPABASE_URL and SUPABASE_KEY to be set", code=2)
    from nodetool.api.auth.tokens import AuthConfigError, ensure_static_token, uses_static_token

    if uses_static_token(settings):
        try:  # resolve (and print, once) the token before any worker process starts
            ensure_static_token(settings)
        except AuthConfigError as exc:
            raise fail(str(exc), code=2) from None
    if settings.tools:
        from nodetool.errors import InvalidRequestError
        from nodetool.tools.registry import build_tool_registry

        try:
            build_tool_registry(settings, None)
        except InvalidRequestError as exc:
            raise fail(f"--tools: {exc.message}", code=2) from None
    for path in settings.workflow_files:
        from nodetool.errors import WorkflowError
        from nodetool.workflows.jobs import read_workflow_file

        try:
            read_workflow_file(path)
        except WorkflowError as exc:
            raise fail(f"--workflow {path}: {exc.message}", code=2) from None
    from nodetool.providers.registry import describe_missing_default

    problem = describe_missing_default(settings)
    if problem:
        raise fail(problem, code=2)

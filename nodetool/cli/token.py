"""`nodetool token`: print or rotate the static auth token."""

from __future__ import annotations

import typer

from nodetool.cli.common import build_settings, fail


def _note(text: str) -> None:
    typer.echo(text, err=True)


def token(
    rotate: bool = typer.Option(False, "--rotate", help="Replace the token with a new one."),
) -> None:
    """Print the static auth token (creating it if needed)."""
    from nodetool.api.auth.tokens import AuthConfigError, load_static_token, rotate_static_token

    settings = build_settings()
    try:
        if rotate:
            if settings.worker_auth_token:
                raise fail(
                    "WORKER_AUTH_TOKEN is set and overrides the token file; "
                    "change or unset WORKER_AUTH_TOKEN instead of rotating"
                )
            current = rotate_static_token(settings)
        else:
            current = load_static_token(settings)
    except AuthConfigError as exc:
        raise fail(str(exc)) from None
    assert current is not None
    if current.source == "env":
        _note("token from WORKER_AUTH_TOKEN")
    elif current.source == "rotated":
        _note(f"new token written to {current.path}; servers use it once restarted")
    elif current.source == "created":
        _note(f"new token written to {current.path} (mode 0600)")
    if settings.auth_provider != "static" and not (
        settings.auth_provider == "supabase" and settings.supabase_allow_static_token
    ):
        _note(
            f"note: AUTH_PROVIDER={settings.auth_provider}; servers only check this token "
            "with AUTH_PROVIDER=static"
        )
    typer.echo(current.token)

"""One exception hierarchy carrying HTTP status and OpenAI error type/code.

Nothing here imports FastAPI: the API layer maps these to the OpenAI error envelope,
the WebSocket edges map them to `error` frames.
"""

from __future__ import annotations

from typing import Any


class NodetoolError(Exception):
    """Base error: `status` for HTTP, `type`/`code`/`param` for the OpenAI envelope."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        """The OpenAI error envelope for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(NodetoolError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(NodetoolError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(NodetoolError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFoundError(NodetoolError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class UnknownProviderError(InvalidRequestError):
    code = "unknown_provider"


class PayloadTooLargeError(NodetoolError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class OverloadedError(NodetoolError):
    status = 429
    type = "rate_limit_error"
    code = "overloaded"


class ConflictError(NodetoolError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class ProviderError(NodetoolError):
    """An upstream provider failed; carries the upstream's status and message."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        upstream_status: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.provider = provider
        self.upstream_status = upstream_status


class ProviderTimeoutError(ProviderError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class ProviderUnavailableError(NodetoolError):
    """A provider is not installed or not configured (e.g. the `local` extra is missing)."""

    status = 503
    type = "server_error"
    code = "provider_unavailable"


class ToolError(NodetoolError):
    """A tool refused or failed; shown to the model as an error result, never aborts a turn."""

    status = 400
    type = "invalid_request_error"
    code = "tool_error"


class WorkflowError(NodetoolError):
    """A workflow graph is invalid or a node failed."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_workflow"

    def __init__(self, message: str, *, node_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.node_id = node_id

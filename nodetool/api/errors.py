"""The one place exceptions become OpenAI error envelopes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from nodetool.api.wire.problems import invalid_request
from nodetool.errors import InvalidRequestError, NodetoolError
from nodetool.types.validation import problem_of

log = logging.getLogger("nodetool.api")

_STATUS_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "overloaded"),
}


_SOURCES = ("body", "query", "path", "header", "cookie")


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(exc: NodetoolError) -> JSONResponse:
    return JSONResponse(exc.envelope(), status_code=exc.status, headers=exc.headers or None)


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """Validation errors are 400s (as at OpenAI), naming the offending field in `param`
    (`body` when the body as a whole is wrong)."""
    errors = exc.errors()
    if not errors:
        return error_response(InvalidRequestError("Invalid request"))
    where = errors[0].get("loc", ())
    source = where[0] if where and where[0] in _SOURCES else None
    error = invalid_request(problem_of(errors, skip=1 if source else 0))
    if error.param is None and source == "body":
        error.param = "body"
    return error_response(error)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to the envelope: ours, validation, routing, and the unexpected."""

    async def on_nodetool(_: Request, exc: NodetoolError) -> JSONResponse:
        return error_response(exc)

    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_, code = _STATUS_TYPES.get(exc.status_code, ("server_error", None))
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = "Unknown route"
        elif exc.status_code == 405:
            detail = "Method not allowed on this route"
        return JSONResponse(
            error_body(detail, type_, code=code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def on_disconnect(request: Request, _: ClientDisconnect) -> Response:
        # the client left mid-body: nobody reads an answer, and it is not a server error
        log.debug("client disconnected before sending the whole body of %s", request.url.path)
        return Response(status_code=400)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("Internal server error", "server_error", code="internal_error"),
            status_code=500,
        )

    app.add_exception_handler(NodetoolError, on_nodetool)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, on_disconnect)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_unexpected)

"""OpenAPI documentation of what routes read and write by hand (docs/protocol.md §3, §7, §8).

Some handlers parse their body themselves (OpenAI-style error messages) or answer with raw
`Response`s on plain routes (hot paths), so FastAPI cannot derive their schemas. The JSON
Schemas here describe exactly what those handlers accept and return, and `install_openapi`
merges them into each app's generated schema. Every operation also gets the one error shape
nodetool uses (the OpenAI envelope) as its `default` response, in place of FastAPI's 422
validation error, which nodetool never returns. Documentation only: nothing here validates.
The reliability suite fuzzes every documented operation against these schemas.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.routing import Route


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """`{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorBody


ERROR_DESCRIPTION = (
    "An error in the OpenAI envelope: 400 invalid request (validation errors too; `param` "
    "names the field), 401 missing or invalid token, 403 forbidden, 404 not found, 405 method "
    "not allowed, 409 conflict, 413 body too large, 429 overloaded, 502 upstream failure, "
    "503 provider unavailable, 504 upstream timeout."
)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body the handler reads itself."""
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def _ok(schema: dict[str, Any], description: str = "Successful Response") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_COUNT = {"type": "integer", "minimum": 1}

# ---- /v1: chat completions ----------------------------------------------------------------

_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": _STRING},
}
_OTHER_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string", "not": {"const": "text"}}},
}
_CONTENT = {
    "anyOf": [
        _STRING,
        {"type": "array", "items": {"anyOf": [_TEXT_PART, _OTHER_PART]}},
    ]
}
_NAME = _nullable(_STRING)
_TOOL_CALL = {
    "type": "object",
    "required": ["id", "function"],
    "properties": {
        "id": _STRING,
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": _STRING, "arguments": _STRING},
        },
    },
}
_MESSAGE = {
    "anyOf": [
        {  # system, developer and user messages need content
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"enum": ["system", "developer", "user"]},
                "content": _CONTENT,
                "name": _NAME,
            },
        },
        {  # an assistant message has content, tool calls, or both
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"const": "assistant"},
                "content": _CONTENT,
                "name": _NAME,
                "tool_calls": _nullable({"type": "array", "items": _TOOL_CALL}),
            },
        },
        {
            "type": "object",
            "required": ["role", "tool_calls"],
            "properties": {
                "role": {"const": "assistant"},
                "content": _nullable(_CONTENT),
                "name": _NAME,
                "tool_calls": {"type": "array", "items": _TOOL_CALL, "minItems": 1},
            },
        },
        {  # a tool result answers one call
            "type": "object",
            "required": ["role", "content", "tool_call_id"],
            "properties": {
                "role": {"const": "tool"},
                "content": _CONTENT,
                "tool_call_id": _STRING,
                "name": _NAME,
            },
        },
    ]
}
_TOOL = {
    "type": "object",
    "required": ["function"],
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                "description": _nullable(_STRING),
                "parameters": _nullable({"type": "object"}),
            },
        },
    },
}
_TOOL_CHOICE = {
    "anyOf": [
        {"enum": ["none", "auto", "required"]},
        {
            "type": "object",
            "required": ["type", "function"],
            "properties": {
                "type": {"const": "function"},
                "function": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": _STRING},
                },
            },
        },
    ]
}
CHAT_COMPLETION_REQUEST: dict[str, Any] = {
    "title": "ChatCompletionRequest",
    "type": "object",
    "required": ["messages"],
    "properties": {
        "model": _nullable(_STRING),
        "messages": {"type": "array", "items": _MESSAGE, "minItems": 1},
        "stream": _nullable({"type": "boolean"}),
        "stream_options": _nullable(
            {"type": "object", "properties": {"include_usage": _nullable({"type": "boolean"})}}
        ),
        "temperature": _nullable({"type": "number", "minimum": 0, "maximum": 2}),
        "top_p": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
        "max_tokens": _nullable(_COUNT),
        "max_completion_tokens": _nullable(_COUNT),
        "stop": _nullable({"anyOf": [_STRING, {"type": "array", "items": _STRING, "maxItems": 4}]}),
        "seed": _nullable(_INTEGER),
        "response_format": _nullable(
            {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}},
            }
        ),
        "tools": _nullable({"type": "array", "items": _TOOL}),
        "tool_choice": _nullable(_TOOL_CHOICE),
        "parallel_tool_calls": _nullable({"type": "boolean"}),
        "user": _nullable(_STRING),
        "n": _nullable({"const": 1}),
        "provider": _nullable(
            {
                "enum": ["local", "openai", "ollama"],
                "description": "route to this provider; it must be configured on the server",
            }
        ),
    },
}
_USAGE = {
    "type": "object",
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {
        "prompt_tokens": _INTEGER,
        "completion_tokens": _INTEGER,
        "total_tokens": _INTEGER,
    },
}
CHAT_COMPLETION: dict[str, Any] = {
    "title": "ChatCompletion",
    "type": "object",
    "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": {
        "id": _STRING,
        "object": {"const": "chat.completion"},
        "created": _INTEGER,
        "model": _STRING,
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": _INTEGER,
                    "message": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"const": "assistant"},
                            "content": _nullable(_STRING),
                            "tool_calls": {"type": "array", "items": _TOOL_CALL},
                        },
                    },
                    "finish_reason": {"enum": ["stop", "length", "tool_calls", "content_filter"]},
                },
            },
        },
        "usage": _USAGE,
    },
}


def _sse_event(data: str) -> dict[str, Any]:
    """One server-sent event (OpenAPI 3.1: the media type's schema describes each event)."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"const": "message"},
            "data": {
                "description": data,
                "type": "string",
                "anyOf": [{"const": "[DONE]"}, {"pattern": "^\\{"}],
                "contentMediaType": "application/json",
            },
        },
    }


_CHAT_COMPLETIONS_OK = {
    "description": (
        "A `chat.completion` object; with `stream: true`, server-sent events of "
        "`chat.completion.chunk` objects ending with `data: [DONE]`."
    ),
    "content": {
        "application/json": {"schema": CHAT_COMPLETION},
        "text/event-stream": {
            "schema": _sse_event(
                "a `chat.completion.chunk` object, one `{error}` envelope after a failure, "
                "or `[DONE]`"
            )
        },
    },
}

# ---- /v1: models ----------------------------------------------------------------------------

MODEL: dict[str, Any] = {
    "title": "Model",
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": _STRING,
        "object": {"const": "model"},
        "created": _INTEGER,
        "owned_by": _STRING,
    },
}
MODEL_LIST: dict[str, Any] = {
    "title": "ModelList",
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": MODEL}},
}

# ---- workflows and jobs (docs/protocol.md §8) ----------------------------------------------

WORKFLOW_IN: dict[str, Any] = {
    "title": "WorkflowIn",
    "type": "object",
    "required": ["graph"],
    "properties": {
        "id": {
            "anyOf": [_STRING, _INTEGER, {"type": "null"}],
            "description": "empty or absent: the server assigns one",
        },
        "name": _nullable(_STRING),
        "description": {"description": "kept as given"},
        "graph": {
            "type": "object",
            "description": (
                "nodes `{id, type, data?, dynamic_properties?, sync_mode?}` of registered types; "
                "edges `{source, sourceHandle?, target, targetHandle}` between existing nodes "
                "and handles (checked by the server, 400 naming the part)"
            ),
            "properties": {
                "nodes": {"type": "array", "items": {"type": "object"}},
                "edges": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}
_RUN_REQUEST = {
    "title": "RunRequest",
    "type": "object",
    "properties": {"params": _nullable({"type": "object"}), "thread_id": _nullable(_STRING)},
}
_PARAMS = {"title": "Params", "type": "object", "description": "input name -> value"}
_WORKER_STREAM_OK = {
    "description": (
        "Server-sent events: `job_update`, `node_update`, `output_update`, then "
        '`{"type": "complete", "results"}` and `data: [DONE]`.'
    ),
    "content": {
        "text/event-stream": {
            "schema": _sse_event(
                "a job/node/output update, `complete` or `error` object, or `[DONE]`"
            )
        }
    },
}

# (path, method) -> what to merge into the generated operation; a route that FastAPI does not
# document (a plain Starlette route) gets the whole operation when the app serves it.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/chat/completions", "post"): {
        "tags": ["openai"],
        "summary": "Chat Completions",
        "operationId": "chat_completions_v1_chat_completions_post",
        **_json_body(CHAT_COMPLETION_REQUEST),
        "responses": {"200": _CHAT_COMPLETIONS_OK},
    },
    ("/v1/models", "get"): {"responses": {"200": _ok(MODEL_LIST)}},
    ("/v1/models/{model_id}", "get"): {"responses": {"200": _ok(MODEL)}},
    ("/api/workflows", "post"): _json_body(WORKFLOW_IN),
    ("/api/workflows/{workflow_id}", "put"): _json_body(WORKFLOW_IN),
    ("/api/workflows/{workflow_id}/run", "post"): _json_body(_RUN_REQUEST, required=False),
    ("/workflows/{workflow_id}/run", "post"): _json_body(_PARAMS, required=False),
    ("/workflows/{workflow_id}/run/stream", "post"): {
        **_json_body(_PARAMS, required=False),
        "responses": {"200": _WORKER_STREAM_OK},
    },
}


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge `extra` into `target`; a `schema` or `content` entry replaces the old one."""
    for key, value in extra.items():
        if (
            isinstance(value, dict)
            and isinstance(target.get(key), dict)
            and key
            not in (
                "schema",
                "content",
            )
        ):
            _merge(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))  # a private copy


def _plain_routes(routes: Any) -> Any:
    """Every plain Starlette route, also inside included routers (FastAPI may include lazily)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _plain_routes(nested.routes)
        elif type(route) is Route:
            yield route


def _served(app: FastAPI, path: str, method: str) -> bool:
    """True when a plain (undocumented) route of the app serves `method path`."""
    return any(
        route.path == path and method.upper() in (route.methods or ())
        for route in _plain_routes(app.routes)
    )


def document(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error envelope and the hand-written operation docs to a generated schema."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(envelope.pop("$defs", {}))
    components["ErrorEnvelope"] = envelope
    paths = schema.setdefault("paths", {})
    for (path, method), extra in OPERATIONS.items():
        if method in paths.get(path, {}):
            _merge(paths[path][method], extra)
        elif _served(app, path, method):
            paths.setdefault(path, {})[method] = json.loads(json.dumps(extra))
    default = {
        "description": ERROR_DESCRIPTION,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }
    for operations in paths.values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["default"] = default
    text = json.dumps(paths)
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}" not in text:
            components.pop(name, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` return the generated schema completed by `document`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""`/openapi.json` is generated from the wire models (`nodetool/api/wire/`) and documents every
body-reading route of each app, the `/v1` hot routes included; the published examples are
accepted and answered as documented; a bad body on any of them is a 400 envelope with `param`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from nodetool.api.openapi import HOT_DOCS, SELF_PARSED
from tests.reliability.support import ENVELOPE_KEYS, running_app
from tests.support.servers import ServerThread

KINDS = ("serve", "worker", "chat-server")
BODILESS = {"/api/jobs/{job_id}/cancel", "/jobs/{job_id}/cancel"}  # POSTs without a body
_REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def live(openai_stub, tmp_path_factory) -> Iterator[dict[str, tuple[ServerThread, dict]]]:
    """Every app on its own port, with the OpenAPI document it serves."""
    with contextlib.ExitStack() as stack:
        out = {}
        for kind in KINDS:
            data_dir = tmp_path_factory.mktemp(f"wire-{kind}")
            server = stack.enter_context(running_app(kind, openai_stub.url, data_dir))
            doc = httpx.get(server.url + "/openapi.json", timeout=10).json()
            out[kind] = (server, doc)
        yield out


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema` whose `#/components/...` references resolve in `doc`."""
    return Draft202012Validator({**schema, "components": doc["components"]})


def _body_schema(operation: dict[str, Any]) -> dict[str, Any]:
    return operation["requestBody"]["content"]["application/json"]["schema"]


def _component(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref") or next(
        (s["$ref"] for s in schema.get("anyOf", ()) if "$ref" in s), None
    )
    assert ref is not None and ref.startswith(_REF), schema
    return doc["components"]["schemas"][ref.removeprefix(_REF)]


def _posts(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if method in ("post", "put") and path not in BODILESS and not path.startswith("/mcp")
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_every_body_route_documents_request_and_response(live, kind) -> None:
    server, doc = live[kind]
    assert set(HOT_DOCS) <= set(doc["paths"]), f"{kind}: hot routes missing"
    served = _posts(doc)
    assert len(served) >= len(HOT_DOCS)
    for path, method, operation in served:
        assert operation["requestBody"]["content"]["application/json"]["schema"], path
        ok = next(
            operation["responses"][s] for s in ("200", "201", "202") if s in operation["responses"]
        )
        assert ok["content"], (path, method)
        error = operation["responses"]["default"]["content"]["application/json"]["schema"]
        assert _component(doc, error)["title"] == "ErrorEnvelope"
        assert "422" not in operation["responses"]
    if kind == "serve":
        for (path, method), model in SELF_PARSED.items():
            assert _component(doc, _body_schema(doc["paths"][path][method]))["title"] == (
                model.__name__
            )


def _without_null_defaults(schema: Any) -> Any:
    """`schema` without `"default": null` (FastAPI leaves those out of its documents)."""
    if isinstance(schema, dict):
        return {
            k: _without_null_defaults(v)
            for k, v in schema.items()
            if not (k == "default" and v is None)
        }
    if isinstance(schema, list):
        return [_without_null_defaults(v) for v in schema]
    return schema


@pytest.mark.parametrize("kind", KINDS)
def test_hot_route_schemas_are_the_models(live, kind) -> None:
    """The published request/response schemas are exactly the models' own JSON Schemas."""
    _, doc = live[kind]
    for path, hot in HOT_DOCS.items():
        operation = doc["paths"][path]["post"]
        for schema, model, mode in (
            (_body_schema(operation), hot.request, "validation"),
            (
                operation["responses"]["200"]["content"]["application/json"]["schema"],
                hot.response,
                "serialization",
            ),
        ):
            expected = model.model_json_schema(ref_template=_REF + "{model}", mode=mode)
            expected.pop("$defs", None)
            published = _without_null_defaults(_component(doc, schema))
            assert published == _without_null_defaults(expected), (path, model.__name__)
        if hot.stream is not None:
            events = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]
            assert _REF + hot.stream.__name__ in str(events), path


@pytest.mark.parametrize("kind", KINDS)
def test_examples_validate_and_are_answered_as_documented(live, kind) -> None:
    server, doc = live[kind]
    for path, hot in HOT_DOCS.items():
        operation = doc["paths"][path]["post"]
        request_schema = _component(doc, _body_schema(operation))
        examples = request_schema["examples"]
        assert examples, path
        for example in examples:
            _validator(doc, _body_schema(operation)).validate(example)
            hot.request.model_validate_json(httpx.Request("POST", "/", json=example).content)
            response = httpx.post(server.url + path, json=example, timeout=30)
            assert response.status_code == 200, (path, response.text)
            ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
            _validator(doc, ok).validate(response.json())
            hot.response.model_validate(response.json())


def _bad_body(doc: dict[str, Any], schema: dict[str, Any]) -> tuple[Any, str]:
    """A body breaking `schema` and the `param` the answer must name: a string property given
    a number, or (no named properties) an array where an object belongs."""
    component = _component(doc, schema) if ("$ref" in str(schema)) else schema
    for name, prop in component.get("properties", {}).items():
        kinds = [prop.get("type")] + [s.get("type") for s in prop.get("anyOf", ())]
        if "string" in kinds and "integer" not in kinds and "number" not in kinds:
            return {name: 12345}, name
    return [1], "body"


@pytest.mark.parametrize("kind", KINDS)
def test_bad_body_is_a_400_envelope_naming_the_param(live, kind) -> None:
    server, doc = live[kind]
    for path, method, operation in _posts(doc):
        body, param = _bad_body(doc, _body_schema(operation))
        url = server.url + path.replace("{", "").replace("}", "")  # `{thread_id}` -> `thread_id`
        response = httpx.request(method.upper(), url, json=body, timeout=30)
        assert response.status_code == 400, (kind, method, path, response.text)
        error = response.json()["error"]
        assert set(error) == ENVELOPE_KEYS and error["type"] == "invalid_request_error"
        if param == "body" and path in HOT_DOCS:
            param = None  # as OpenAI: a body that is not an object names no field
        assert error["param"] == param, (kind, method, path, error)

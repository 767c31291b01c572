"""Part 1: Schemathesis against every operation of each app's OpenAPI schema, on live servers.

For each operation, valid (positive) and invalid (negative) requests are generated from the
schema the running server publishes, sent over real HTTP, and every response must pass all of
Schemathesis's default checks (no 5xx, documented status codes and content types, bodies that
match the documented schema, invalid data rejected, valid data accepted) and every error must
be an OpenAI error envelope.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from nodetool.api.apps import FACTORIES
from tests.reliability.support import envelope_problem, running_app, stub_settings
from tests.support.servers import ServerThread

pytestmark = pytest.mark.reliability

KINDS = ("serve", "worker", "chat-server")
_NOWHERE = Path(tempfile.gettempdir()) / "nodetool-openapi-collect"  # never created


def _operations() -> list[tuple[str, str, str]]:
    """(kind, METHOD, path) of every operation, read from the apps' generated schemas."""
    found = []
    for kind in KINDS:
        app = FACTORIES[kind](stub_settings("http://127.0.0.1:9/v1", _NOWHERE))
        for path, methods in app.openapi()["paths"].items():
            for method in methods:
                found.append((kind, method.upper(), path))
    return found


OPERATIONS = _operations()


@dataclass
class Tally:
    requests: int = 0
    error_replies: int = 0
    server_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def live(openai_stub, tmp_path_factory) -> Iterator[dict[str, tuple[ServerThread, Any]]]:
    """Every app on its own port, with the schema it serves loaded by Schemathesis."""
    with contextlib.ExitStack() as stack:
        out = {}
        for kind in KINDS:
            data_dir = tmp_path_factory.mktemp(f"schema-{kind}")
            server = stack.enter_context(running_app(kind, openai_stub.url, data_dir))
            schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
            out[kind] = (server, schema)
        yield out


def _has_inputs(operation: Any) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


# Rules JSON Schema cannot state, per operation. A schema-valid request that breaks one is
# rightly a 400 whose `param` starts with the rule's key (or, for graph checks that name a node
# rather than a field, whose `code` is one of GRAPH_CODES). For exactly that answer, and only
# then, Schemathesis's "valid data must be accepted" check is waived; every other check runs.
GRAPH_CODES = {
    "invalid_workflow",
    "unknown_node_type",
    "missing_input",
    "dangling_edge",
    "unknown_handle",
    "cycle",
}
PROVIDER_RULE = "the named provider must be configured on this server"
WORKFLOW_RULES = {
    "graph": "graph semantics: known node types, edges between existing nodes and handles",
    "id": "caller-chosen ids must be printable (str.isprintable)",
}
SEMANTIC_RULES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/threads"): {"cursor": "an opaque token from the previous page"},
    ("GET", "/api/messages"): {"cursor": "an opaque token from the previous page"},
    ("GET", "/api/jobs"): {"cursor": "an opaque token from the previous page"},
    ("POST", "/api/threads"): {"id": "caller-chosen ids must be printable (str.isprintable)"},
    ("POST", "/api/workflows"): WORKFLOW_RULES,
    ("PUT", "/api/workflows/{workflow_id}"): WORKFLOW_RULES,
    ("POST", "/v1/chat/completions"): {"provider": PROVIDER_RULE},
    ("POST", "/v1/completions"): {"provider": PROVIDER_RULE},
    ("POST", "/v1/embeddings"): {"provider": PROVIDER_RULE},
    ("POST", "/v1/responses"): {
        "provider": PROVIDER_RULE,
        "input": "input items are checked one by one when mapped onto chat messages",
        "tools": "only function tools with a name",
        "text.format": "a known format; json_schema needs a schema",
        "reasoning": "no reasoning summaries; effort is a string",
        "background": "not supported by this server (only false)",
        "conversation": "not supported by this server",
        "prompt": "not supported by this server",
        "previous_response_id": "must name a stored response",
    },
}
# JSON Schema's `integer` also matches 5.0; the API wants integers written as such
INTEGER_RULE = "expected an integer, but got a decimal number"


def _sent_body_is_valid(case: Any) -> bool:
    """True when the JSON body actually sent is valid against the operation's schema (the
    negative generator may believe a mutated oneOf member invalid when another member, or the
    serialized form, is valid)."""
    definition = case.operation.definition.raw
    content = definition.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None or not isinstance(case.body, dict | list):
        return False
    components = case.operation.schema.raw_schema.get("components", {})
    sent = json.loads(json.dumps(case.body))
    return Draft202012Validator({**schema, "components": components}).is_valid(sent)


def _excluded(case: Any, response: Any) -> list[Any]:
    """The checks waived for this response (see SEMANTIC_RULES)."""
    if response.status_code < 300 and _sent_body_is_valid(case):
        return [negative_data_rejection]
    rules = SEMANTIC_RULES.get((case.operation.method.upper(), case.operation.path), {})
    if response.status_code != 400:
        return []
    try:
        error = response.json()["error"]
        param, code = error["param"], error["code"]
    except (ValueError, KeyError, TypeError):
        return []
    if INTEGER_RULE in error["message"]:
        return [positive_data_acceptance]
    if param is None:
        waived = rules is WORKFLOW_RULES and code in GRAPH_CODES
    else:
        waived = any(param.startswith(prefix) for prefix in rules)
    return [positive_data_acceptance] if waived else []


def _fuzz(server: ServerThread, operation: Any, mode: GenerationMode, n: int, tally: Tally) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    def check(case: Any) -> None:
        if isinstance(case.body, dict) and case.body.get("provider") == "local":
            case.body["provider"] = "openai"  # the embedded model is not fuzzed (seconds per call)
        response = case.call(base_url=server.url, timeout=60)
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        if response.status_code >= 500:
            tally.server_errors += 1
        if response.status_code >= 400:
            tally.error_replies += 1
            problem = envelope_problem(response.status_code, response.content)
            assert problem is None, f"{operation.label}: {problem}"
        case.validate_response(response, excluded_checks=_excluded(case, response))

    check()


@pytest.mark.parametrize(
    ("kind", "method", "path"), OPERATIONS, ids=[" ".join(op) for op in OPERATIONS]
)
def test_operation_conforms_to_its_schema(live, sizes, report, kind, method, path) -> None:
    server, schema = live[kind]
    operation = schema[path][method]
    tally = Tally()
    modes = [GenerationMode.POSITIVE]
    if _has_inputs(operation):
        modes.append(GenerationMode.NEGATIVE)
    try:
        for mode in modes:
            try:
                _fuzz(server, operation, mode, sizes.schema_examples, tally)
            except Unsatisfiable:
                # e.g. only free-form string path parameters: no request violates the schema
                assert mode is GenerationMode.NEGATIVE, "no valid request could be generated"
    finally:
        report.add(
            "schema_fuzz",
            operations=1,
            requests_sent=tally.requests,
            error_replies=tally.error_replies,
            errors_seen=tally.server_errors,
            **{f"status_{code}": n for code, n in sorted(tally.statuses.items())},
        )
    assert tally.server_errors == 0
    assert tally.requests > 0


def test_every_operation_is_covered(live) -> None:
    """The operations fuzzed above are exactly the ones each live server publishes."""
    published = set()
    for kind, (_, schema) in live.items():
        for result in schema.get_all_operations():
            operation = result.ok()
            published.add((kind, operation.method.upper(), operation.path))
    assert published == set(OPERATIONS)

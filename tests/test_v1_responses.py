"""/v1/responses with the real openai SDK on every server, against the OpenAI-compatible stub.

Objects are validated with pydantic against the SDK's own types (`Response`, the
`ResponseStreamEvent` union, `ResponseItemList`), not the SDK's lenient construct.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseItemList, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.stubs.supabase_stub import SupabaseStub
from tests.support.v1 import KINDS, MODEL, running, sse_data

EVENTS = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module", params=KINDS)
def server(request, openai_stub, tmp_path_factory):
    kind = request.param
    with running(
        kind,
        openai_stub,
        tmp_path_factory.mktemp(f"responses-{kind}"),
        default_model=MODEL,
        tools=["calculator"],
    ) as srv:
        yield srv


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def validated(raw: httpx.Response) -> Response:
    assert raw.status_code == 200, raw.text
    return Response.model_validate(raw.json())


def stream_events(server, **body) -> list:
    with httpx.Client(base_url=server.url, timeout=20) as http:
        raw = http.post("/v1/responses", json={"model": MODEL, "stream": True, **body})
    assert raw.status_code == 200, raw.text
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [EVENTS.validate_python(json.loads(data)) for data in sse_data(raw.text)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [line[7:] for line in raw.text.split("\n") if line.startswith("event: ")]
    assert kinds == [e.type for e in events]  # the `event:` line names each event
    return events


def test_plain_create_and_retrieve(client, openai_stub) -> None:
    raw = client.responses.with_raw_response.create(
        model=MODEL, input="hello there", instructions="Be brief.", metadata={"k": "v"}, user="u1"
    )
    response = validated(raw.http_response)
    assert response.status == "completed" and response.object == "response"
    assert response.output_text == "Echo: hello there"
    assert response.metadata == {"k": "v"} and response.store is True
    assert response.usage is not None and response.usage.total_tokens > 0
    sent = openai_stub.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1] == {"role": "user", "content": "hello there"}
    again = client.responses.with_raw_response.retrieve(response.id)
    assert validated(again.http_response).model_dump() == response.model_dump()
    items = client.responses.input_items.with_raw_response.list(response.id)
    listing = ResponseItemList.model_validate(items.http_response.json())
    assert [item.type for item in listing.data] == ["message"]
    assert listing.data[0].content[0].text == "hello there"  # type: ignore[union-attr]


def test_sdk_object_matches(client) -> None:
    response = client.responses.create(
        model=MODEL, input=[{"role": "user", "content": [{"type": "input_text", "text": "parts"}]}]
    )
    assert response.output_text == "Echo: parts"
    assert response.output[0].type == "message"


def test_stream_event_sequence(server) -> None:
    events = stream_events(server, input="one two three")
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Echo: one two three" and len(deltas) == 4
    final = events[-1].response
    assert final.output_text == "Echo: one two three" and final.usage is not None


def test_sdk_stream(client) -> None:
    with client.responses.stream(model=MODEL, input="streamed words") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Echo: streamed words" == final.output_text


def test_function_tool_round_trip_with_previous_response_id(client, openai_stub) -> None:
    first = client.responses.create(
        model=MODEL, input='weather? [[tool:get_weather {"city": "Paris"}]]', tools=[WEATHER]
    )
    Response.model_validate(first.model_dump(mode="json"))
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
    )
    assert second.output_text == "Tool results: sunny"
    assert second.previous_response_id == first.id
    history = openai_stub.requests[-1]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[1]["tool_calls"][0]["id"] == calls[0].call_id


def test_streamed_function_call_events(server) -> None:
    events = stream_events(
        server, input='go [[tool:get_weather {"city": "Oslo"}]]', tools=[WEATHER]
    )
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done[0].arguments) == {"city": "Oslo"}
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output[0].type == "function_call"


def test_server_tools_run_inside_the_turn(client, openai_stub) -> None:
    response = client.responses.create(
        model=MODEL, input='sum [[tool:calculator {"expression": "2+3"}]]'
    )
    assert response.output_text.startswith("Tool results: ")
    assert "5" in response.output_text
    assert [item.type for item in response.output] == ["message"]  # the tool ran server-side


def test_text_format_maps_to_response_format(client, openai_stub) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    response = client.responses.create(
        model=MODEL,
        input="json please",
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema}},
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=40,
    )
    sent = openai_stub.requests[-1]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema},
    }
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.5, 0.9, 40)
    assert response.text is not None and response.text.format.type == "json_schema"


def test_logprobs_are_passed_through(client, openai_stub) -> None:
    response = client.responses.create(
        model=MODEL, input="lp", top_logprobs=2, include=["message.output_text.logprobs"]
    )
    sent = openai_stub.requests[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    part = response.output[0].content[0]  # type: ignore[union-attr]
    assert part.logprobs and len(part.logprobs[0].top_logprobs) == 2


def test_store_false_and_delete(client) -> None:
    unstored = client.responses.create(model=MODEL, input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    stored = client.responses.create(model=MODEL, input="y")
    client.responses.delete(stored.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(stored.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(stored.id)


def test_incomplete_on_length(server) -> None:
    events = stream_events(server, input="long [[length]]")
    final = events[-1]
    assert final.type == "response.incomplete"
    assert final.response.incomplete_details.reason == "max_output_tokens"


def test_upstream_failure_mid_stream_is_response_failed(server) -> None:
    events = stream_events(server, input="a b c d e [[reset:2]]")
    final = events[-1]
    assert final.type == "response.failed"
    message = final.response.error.message
    assert "127.0.0.1" not in message and "http" not in message, message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": "x", "previous_response_id": "resp_missing"}, "previous_response_id"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "x", "temperature": "hot"}, "temperature"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, None),
    ],
)
def test_bad_requests_name_the_field(server, body, param) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        raw = http.post("/v1/responses", json={"model": MODEL, **body})
    assert raw.status_code == 400, raw.text
    error = raw.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == (param or "input[0].content[0].type")


def test_input_items_paging(server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        created = http.post(
            "/v1/responses",
            json={
                "model": MODEL,
                "input": [
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "reply"},
                    {"role": "user", "content": "second"},
                ],
            },
        ).json()
        path = f"/v1/responses/{created['id']}/input_items"
        page = http.get(path, params={"limit": 2, "order": "asc"}).json()
        ResponseItemList.model_validate(page)
        assert page["has_more"] is True and len(page["data"]) == 2
        rest = http.get(path, params={"order": "asc", "after": page["last_id"]}).json()
        assert [i["content"][0]["text"] for i in rest["data"]] == ["second"]
        newest = http.get(path).json()["data"][0]
        assert newest["content"][0]["text"] == "second"
        assert http.get(path, params={"limit": 0}).json()["error"]["param"] == "limit"


def test_stored_responses_are_per_user(openai_stub, tmp_path) -> None:
    with (
        SupabaseStub() as supa,
        running(
            "serve",
            openai_stub,
            tmp_path,
            default_model=MODEL,
            auth_provider="supabase",
            supabase_url=supa.url,
            supabase_key=supa.key,
        ) as srv,
    ):
        alice = openai.OpenAI(base_url=srv.url + "/v1", api_key=supa.issue("alice"))
        bob = openai.OpenAI(base_url=srv.url + "/v1", api_key=supa.issue("bob"))
        mine = alice.responses.create(model=MODEL, input="secret")
        assert alice.responses.retrieve(mine.id).id == mine.id
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.delete(mine.id)
        with pytest.raises(openai.BadRequestError):
            bob.responses.create(model=MODEL, input="x", previous_response_id=mine.id)
        assert alice.responses.retrieve(mine.id).output_text == "Echo: secret"

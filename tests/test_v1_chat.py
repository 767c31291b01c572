"""/v1 with the real `openai` SDK (sync and async) against each of the three servers.

Each app runs for real on loopback with the OpenAI-compatible stub as its upstream and the
`calculator` server tool enabled.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.v1 import KINDS, MODEL, running, user

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
LIMIT = 64 * 1024


@pytest.fixture(scope="module", params=KINDS)
def server(request, openai_stub, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"v1-{request.param}")
    with running(
        request.param, openai_stub, data_dir, tools=["calculator"], max_body_bytes=LIMIT
    ) as srv:
        yield srv


@pytest.fixture()
def client(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-any", max_retries=0) as c:
        yield c


def async_client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-any", max_retries=0)


# ---- completions ---------------------------------------------------------------------------


def test_non_stream_is_a_chat_completion(client) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=user("hello there"))
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    assert completion.created > 0
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: hello there"
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_async_non_stream(server) -> None:
    async with async_client(server) as aclient:
        completion = await aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "system", "content": "be brief"}, *user("async hi")]
        )
        assert completion.choices[0].message.content == "Echo: async hi"
        assert completion.choices[0].finish_reason == "stop"


def test_stream_chunks(client) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=user("stream me [[chunks:5]]"), stream=True
        )
    )
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == "Echo: stream me"
    assert len([c for c in chunks if c.choices[0].delta.content]) == 5
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].delta.content is None
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)


async def test_async_stream_include_usage(server) -> None:
    async with async_client(server) as aclient:
        stream = await aclient.chat.completions.create(
            model=MODEL,
            messages=user("count my tokens"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        usage_chunk = chunks[-1]
        assert usage_chunk.choices == []
        assert usage_chunk.usage is not None
        assert usage_chunk.usage.completion_tokens > 0
        assert usage_chunk.usage.total_tokens == (
            usage_chunk.usage.prompt_tokens + usage_chunk.usage.completion_tokens
        )
        assert chunks[-2].choices[0].finish_reason == "stop"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Echo: count my tokens"


def test_length_finish_reason(client) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=user("cut [[length]]"))
    assert completion.choices[0].finish_reason == "length"


# ---- client tools ---------------------------------------------------------------------------


def test_client_tool_round_trip(client) -> None:
    messages = user('weather? [[tool:get_weather {"city": "Paris"}]]')
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Tool results: sunny, 21C"


async def test_client_tool_stream_deltas(server) -> None:
    async with async_client(server) as aclient:
        stream = await aclient.chat.completions.create(
            model=MODEL,
            messages=user(
                '[[tool:get_weather {"city": "Oslo"}]] [[tool:get_weather {"city": "Rome"}]]'
            ),
            tools=[WEATHER],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
        assert chunks[0].choices[0].delta.role == "assistant"
        calls: dict[int, dict] = {}
        for chunk in chunks:
            for delta in chunk.choices[0].delta.tool_calls or []:
                entry = calls.get(delta.index)
                if entry is None:  # the first delta of a call carries id, type and name
                    assert delta.id and delta.type == "function" and delta.function.name
                    entry = calls[delta.index] = {"id": delta.id, "name": delta.function.name}
                    entry["args"] = delta.function.arguments or ""
                else:
                    assert delta.id is None and delta.function.name is None
                    entry["args"] += delta.function.arguments or ""
        assert sorted(calls) == [0, 1]
        assert [json.loads(calls[i]["args"])["city"] for i in (0, 1)] == ["Oslo", "Rome"]
        assert calls[0]["id"] != calls[1]["id"]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"


# ---- server tools ---------------------------------------------------------------------------


def test_server_tool_runs_inside_the_turn(client, openai_stub) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=user('what is 6*7? [[tool:calculator {"expression": "6*7"}]]')
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert "42" in choice.message.content
    upstream = openai_stub.requests[-1]
    assert upstream["messages"][-1]["role"] == "tool"


def test_server_tool_stream_shows_only_the_answer(client) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=user('[[tool:calculator {"expression": "6*7"}]]'),
            stream=True,
        )
    )
    assert all(not c.choices[0].delta.tool_calls for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "42" in text
    assert chunks[-1].choices[0].finish_reason == "stop"


# ---- request fields -------------------------------------------------------------------------


def test_options_reach_the_upstream(client, openai_stub) -> None:
    client.chat.completions.create(
        model=MODEL,
        messages=user("opts"),
        temperature=0.5,
        top_p=0.9,
        max_completion_tokens=17,
        stop="END",
        seed=7,
        user="u-1",
        response_format={"type": "json_object"},
        extra_body={"some_future_field": {"x": 1}},
    )
    sent = openai_stub.requests[-1]
    assert sent["temperature"] == 0.5
    assert sent["top_p"] == 0.9
    assert sent["max_tokens"] == 17
    assert sent["stop"] == ["END"]
    assert sent["seed"] == 7
    assert sent["user"] == "u-1"
    assert sent["response_format"] == {"type": "json_object"}
    assert "some_future_field" not in sent


def test_provider_field_and_prefix_routing(client) -> None:
    by_field = client.chat.completions.create(
        model=MODEL, messages=user("a"), extra_body={"provider": "openai"}
    )
    assert by_field.choices[0].message.content == "Echo: a"
    by_prefix = client.chat.completions.create(model="openai/stub-model-2", messages=user("b"))
    assert by_prefix.model == "openai/stub-model-2"
    assert by_prefix.choices[0].message.content == "Echo: b"


def test_content_parts(client) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "text", "text": "parts work"}]}],
    )
    assert completion.choices[0].message.content == "Echo: parts work"


# ---- models ---------------------------------------------------------------------------------


def test_models_list_and_retrieve(client) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"stub-model", "stub-model-2"} <= ids
    model = client.models.retrieve("stub-model")
    assert model.id == "stub-model" and model.object == "model"
    assert client.models.retrieve("openai/stub-model-2").id == "openai/stub-model-2"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.body["code"] == "model_not_found"


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": user("x"), "n": 2}, "n"),
        ({"messages": user("x"), "n": True}, "n"),  # pydantic's Literal[1] takes true
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": user("x"), "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ],
    ids=["empty", "n", "n-true", "role", "type", "content-type", "content-missing"],
)
def test_bad_request_names_the_param(client, kwargs, param) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, **kwargs)
    assert info.value.status_code == 400
    assert info.value.body["param"] == param
    assert info.value.body["type"] == "invalid_request_error"


def test_unknown_model_is_not_found(client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=user("x"))
    assert info.value.body["code"] == "model_not_found"
    assert info.value.body["param"] == "model"


async def test_upstream_failure_is_502_with_its_message(server) -> None:
    async with async_client(server) as aclient:
        with pytest.raises(openai.APIStatusError) as info:
            await aclient.chat.completions.create(model=MODEL, messages=user("[[error:500]]"))
        assert info.value.status_code == 502
        assert "stub upstream error" in info.value.message
        with pytest.raises(openai.APIStatusError) as info:
            await aclient.chat.completions.create(
                model=MODEL, messages=user("[[error:503]]"), stream=True
            )
        assert info.value.status_code == 502
        assert "stub upstream error" in info.value.message


def test_mid_stream_failure_raises_api_error(client) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=user("one two three four five [[reset:2]]"), stream=True
    )
    seen = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            seen.append(chunk)
    assert len([c for c in seen if c.choices and c.choices[0].delta.content]) == 2
    assert info.value.body["type"] == "upstream_error"


def test_body_over_limit_is_413(client) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=user("x" * (LIMIT + 1)))
    assert info.value.status_code == 413
    assert info.value.body["code"] == "payload_too_large"

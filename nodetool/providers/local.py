"""`local` provider: the embedded Gemma 3 270M (GGUF) run in-process with llama-cpp-python.

The model is a small *base* model, so chats are rendered as a completion-style transcript
(`User:` / `Assistant:` lines after a short preamble and one example) and generation stops at
the next turn marker or a blank line: answers stay short and on topic.

- The GGUF is assembled into the data dir and loaded lazily, once per process (shared by every
  LocalProvider of the process).
- Generation runs on the model's own thread and feeds the event loop through an asyncio queue
  (`loop.call_soon_threadsafe`); requests wait their turn in FIFO order.
- Closing the stream (or cancelling its consumer) sets a threading.Event that the generation
  loop checks before every token, so it stops within one token.
- Usage counts are the model tokenizer's (prompt tokens, sampled tokens).
- Tools are ignored: the model cannot call functions reliably. Image parts are ignored (text only).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

from nodetool.config import Settings
from nodetool.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    NodetoolError,
    ProviderError,
)
from nodetool.types.events import Finish, ProviderEvent, TextDelta, Usage
from nodetool.types.messages import ChatOptions, Message, ModelInfo, ToolSpec

MODEL_ID = "gemma-3-270m"
CREATED = 1755000000  # release of Gemma 3 270M (Aug 2025)
PREAMBLE = (
    "The following is a conversation between a User and a helpful Assistant. The Assistant "
    "answers each question correctly and briefly, in one or two sentences."
)
EXAMPLE = (
    "User: What is the largest planet in the solar system?\n"
    "Assistant: Jupiter is the largest planet in the solar system."
)
STOPS = ("\nUser:", "\nAssistant:", "\n\n")
_END = object()
_CHARS_PER_TOKEN = 3  # conservative estimate used to trim long histories before tokenizing


def build_prompt(messages: Sequence[Message], budget_chars: int | None = None) -> str:
    """The completion-style transcript for `messages`, oldest turns dropped past the budget."""
    system = [m.text().strip() for m in messages if m.role == "system" and m.text().strip()]
    header = PREAMBLE + ("\n" + "\n".join(system) if system else "") + "\n\n" + EXAMPLE
    turns = []
    for message in messages:
        text = message.text().strip()
        if message.role == "user":
            turns.append(f"User: {text}")
        elif message.role == "assistant" and text:
            turns.append(f"Assistant: {text}")
        elif message.role == "tool" and text:
            turns.append(f"Tool result: {text}")
    if budget_chars is not None:
        used = len(header) + 20
        kept = []
        for turn in reversed(turns):
            used += len(turn) + 1
            if used > budget_chars and kept:
                break
            kept.append(turn)
        turns = kept[::-1]
    return header + "\n\n" + "\n".join(turns) + "\nAssistant:"


def gen_params(options: ChatOptions | None, default_max: int):  # -> GenParams
    from nodetool.providers.local_model import GenParams

    params = GenParams(max_tokens=default_max, stop=STOPS)
    if options is None:
        return params
    if options.temperature is not None:
        params.temperature = options.temperature
    if options.top_p is not None:
        params.top_p = options.top_p
    if options.max_tokens is not None:
        if options.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
        params.max_tokens = options.max_tokens
    if options.seed is not None:
        params.seed = options.seed
    if options.stop:
        params.stop = STOPS + tuple(options.stop)
    return params


class LocalProvider:
    """The embedded model behind the ChatProvider protocol."""

    name = "local"
    default_model = MODEL_ID

    def __init__(self, settings: Settings, *, default_max_tokens: int = 256) -> None:
        self._settings = settings
        self._default_max = default_max_tokens
        self._fifo = asyncio.Lock()  # FIFO: waiters acquire in arrival order
        self._model = None  # LocalModel, once located
        self._active: set[threading.Event] = set()

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=MODEL_ID, provider=self.name, created=CREATED, owned_by="google")]

    async def model(self):  # -> LocalModel
        """The shared LocalModel (assembling the GGUF on first use, off the event loop)."""
        if self._model is None:
            from nodetool.providers.local_model import ensure_model_file, shared_model

            path = await asyncio.to_thread(ensure_model_file, self._settings)
            self._model = shared_model(
                path, self._settings.local_context_size, self._settings.local_threads
            )
        return self._model

    async def stream_chat(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        if model != MODEL_ID:
            raise ModelNotFoundError(
                f"model {model!r} not found; provider 'local' serves {MODEL_ID!r}", param="model"
            )
        params = gen_params(options, self._default_max)
        n_ctx = self._settings.local_context_size
        room = max(n_ctx - params.max_tokens, n_ctx // 2)  # leave room for the answer
        prompt = build_prompt(messages, room * _CHARS_PER_TOKEN)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        relay = _Relay(loop, cancel)

        def job():  # -> GenResult, on the model thread
            try:
                return engine.generate(prompt, params, cancel, relay.put)
            finally:
                relay.put(_END)

        async with self._fifo:
            engine = await self.model()
            self._active.add(cancel)
            try:
                future = loop.run_in_executor(engine.executor, job)
                first, done = True, False
                while not done:
                    for item in await relay.take():
                        if item is _END:
                            done = True
                            break
                        if first:
                            item = item.lstrip()  # type: ignore[union-attr]
                            if not item:
                                continue
                            first = False
                        yield TextDelta(item)  # type: ignore[arg-type]
                result = await _result(future)
            finally:
                cancel.set()
                self._active.discard(cancel)
        yield Usage(result.prompt_tokens, result.completion_tokens)
        yield Finish(result.finish)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """Stop running generations; the loaded model stays cached for the process."""
        for cancel in list(self._active):
            cancel.set()


class _Relay:
    """Hands items from the model thread to the event loop, waking the loop once per batch
    (a busy loop collects several tokens per wake-up instead of one wake-up per token)."""

    __slots__ = ("_loop", "_cancel", "_lock", "_items", "_armed", "_ready")

    def __init__(self, loop: asyncio.AbstractEventLoop, cancel: threading.Event) -> None:
        self._loop, self._cancel = loop, cancel
        self._lock = threading.Lock()
        self._items: list[object] = []
        self._armed = False
        self._ready = asyncio.Event()

    def put(self, item: object) -> None:
        """Model thread: queue one item; wake the loop unless a wake-up is already pending."""
        with self._lock:
            self._items.append(item)
            if self._armed:
                return
            self._armed = True
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            self._cancel.set()

    async def take(self) -> list[object]:
        """Event loop: wait for, and take, everything queued so far."""
        await self._ready.wait()
        self._ready.clear()
        with self._lock:
            items, self._items = self._items, []
            self._armed = False
        return items


async def _result(future: asyncio.Future):  # -> GenResult
    try:
        return await future
    except NodetoolError:
        raise
    except Exception as exc:
        raise ProviderError(f"local model failed: {exc}", provider="local") from exc

"""`local` provider: the embedded Gemma 3 270M, run by llama.cpp's own server in a child process.

- The child (`llama_process.ModelProcess`) is shared by every LocalProvider of the process and
  started on first use; this provider streams from it over its Unix socket (`/completion`).
  Embeddings come from a second child, started on the first embeddings request (embeddings
  turned on slow every generation of the child that has them).
- The model is a small *base* model: chats are rendered as a completion-style transcript
  (`local_prompt.build_prompt`) and generation stops at the next turn marker.
- Requests go to the child in arrival order: at once while a slot is free (so they share a
  batch), one at a time once every slot is busy (each waits until the one before is under
  way), so beyond the slots they wait in FIFO order. A reproducible request (temperature 0
  or a seed) waits until the child is idle and is decoded alone, and the requests after it
  wait for its end: llama.cpp's kernels are not batch-invariant, so sharing a batch could
  change its tokens (NODETOOL_LOCAL_REPRODUCIBLE_ALONE=false batches them too). Closing the stream
  closes the connection, and llama.cpp stops that generation within one token.
- If the child dies mid-answer, the stream fails at once with the cause in words (a
  ProviderError: an SSE error event on /v1, an error frame on /chat, a 502 otherwise).
- NODETOOL_UPSTREAM_TIMEOUT bounds each request, as for the other providers.
- Tools: with `tool_choice` `required` or a named function, and with `response_format`
  `json_object`/`json_schema`, decoding is constrained by a grammar built from the JSON Schema
  (`local_constraints`), so forced tool calls and structured output are valid JSON every time.
  With `tool_choice` `auto` the model answers in text (it cannot decide reliably when to call a
  tool). Image parts are ignored (text only).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from nodetool.config import Settings
from nodetool.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from nodetool.providers.base import Embeddings
from nodetool.providers.http_client import HttpClient, HttpError, Response
from nodetool.providers.local_admission import Admission
from nodetool.providers.local_constraints import Constraint, constraint_for, tool_call_of
from nodetool.providers.local_prompt import build_request, completion_request, reproducible
from nodetool.types.events import (
    Finish,
    ProviderEvent,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
    Usage,
)
from nodetool.types.messages import ChatOptions, Message, ModelInfo, ToolSpec

MODEL_ID = "gemma-3-270m"
CREATED = 1755000000  # release of Gemma 3 270M (Aug 2025)
_FINISH = {"limit": "length"}
_JSON = {"content-type": "application/json"}


class LocalProvider:
    """The embedded model behind the ChatProvider protocol."""

    name = "local"
    default_model = MODEL_ID
    cache_models = False  # its status (available or not) changes at run time
    fixed_ids = frozenset({MODEL_ID})  # its one model id does not: routing needs no listing
    honours = frozenset(
        {"seed", "stop", "response_format", "tool_choice", "logprobs", "top_logprobs", "echo"}
    )

    def __init__(self, settings: Settings, *, default_max_tokens: int = 256) -> None:
        self._settings = settings
        self._default_max = default_max_tokens
        self._process = None  # llama_process.ModelProcess for generation, once located
        self._embedder = None  # and the one for embeddings
        self._clients: dict[bool, tuple[Path, HttpClient]] = {}  # embeddings? -> socket, client
        self._admission = Admission(settings.local_parallel)
        self._models: list[ModelInfo] | None = None

    async def list_models(self) -> list[ModelInfo]:
        status = self._process.unavailable if self._process is not None else None
        if self._models is None or self._models[0].status != status:  # built once per state
            info = ModelInfo(
                id=MODEL_ID,
                provider=self.name,
                created=CREATED,
                owned_by="google",
                status=status,
                capabilities=["chat", "embeddings"],
            )
            self._models = [info]
        return self._models

    async def process(self, *, embeddings: bool = False):  # -> ModelProcess
        """A shared child supervisor (assembling the GGUF on first use, off the loop)."""
        process = self._embedder if embeddings else self._process
        if process is None:
            from nodetool.providers.local_model import model_process

            process = await asyncio.to_thread(model_process, self._settings, embeddings=embeddings)
            if embeddings:
                self._embedder = process
            else:
                self._process = process
        return process

    async def _client(self, socket: Path, *, embeddings: bool = False) -> HttpClient:
        known = self._clients.get(embeddings)
        if known is not None and known[0] == socket:
            return known[1]
        if known is not None:  # that child was replaced
            await known[1].aclose()
        # reads are bounded by NODETOOL_UPSTREAM_TIMEOUT around the whole request (`_bounded`)
        timeout = self._settings.upstream_timeout + 1.0
        client = HttpClient("http://llama", timeout=timeout, uds=str(socket))
        self._clients[embeddings] = (socket, client)
        return client

    async def stream_chat(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        _check_model(model)
        constraint = constraint_for(options, tools)
        body = build_request(
            messages, options, self._default_max, self._settings, constraint=constraint
        )
        stream = self._generate(body, options, strip=True)
        if constraint is not None and constraint.tool is not None:
            stream = _as_tool_call(stream, constraint)
        async for event in self._bounded(stream):
            yield event

    async def stream_completion(
        self, prompt: str, model: str, options: ChatOptions | None = None, echo: bool = False
    ) -> AsyncIterator[ProviderEvent]:
        """The raw continuation of `prompt` (legacy /v1/completions), OpenAI's defaults."""
        _check_model(model)
        body = completion_request(prompt, options)
        if echo:
            yield TextDelta(prompt)
        async for event in self._bounded(self._generate(body, options, strip=False)):
            yield event

    async def embed(
        self, inputs: Sequence[str], model: str, dimensions: int | None = None
    ) -> Embeddings:
        """Mean-pooled, L2-normalised embeddings from the second child."""
        _check_model(model)
        process = await self.process(embeddings=True)
        client = await self._client(await process.ensure(), embeddings=True)
        try:
            async with asyncio.timeout(self._settings.upstream_timeout):
                reply = await client.request(
                    "POST", "/v1/embeddings", json_body={"input": list(inputs)}
                )
                raw = await reply.read()
        except TimeoutError:
            raise self._timeout() from None
        except HttpError as exc:
            raise await self._lost(process, exc) from None
        if reply.status != 200:
            raise _http_error(reply.status, raw)
        data = orjson.loads(raw)
        vectors = [item["embedding"] for item in sorted(data["data"], key=lambda d: d["index"])]
        return Embeddings(vectors, int(data.get("usage", {}).get("prompt_tokens") or 0))

    async def _bounded(self, stream: AsyncIterator[ProviderEvent]) -> AsyncIterator[ProviderEvent]:
        """`stream` within NODETOOL_UPSTREAM_TIMEOUT."""
        try:
            async with asyncio.timeout(self._settings.upstream_timeout):
                async for event in stream:
                    yield event
        except TimeoutError:
            raise self._timeout() from None

    def _timeout(self) -> ProviderTimeoutError:
        return ProviderTimeoutError(
            f"the local model did not finish within {self._settings.upstream_timeout:g} s "
            "(NODETOOL_UPSTREAM_TIMEOUT)",
            provider=self.name,
        )

    async def _lost(self, process: Any, exc: Exception) -> ProviderError:
        reason = await process.death()
        detail = f"lost the connection to the local model process ({type(exc).__name__})"
        return ProviderError(reason or detail, provider=self.name)

    async def _generate(
        self, body: dict[str, Any], options: ChatOptions | None, *, strip: bool
    ) -> AsyncIterator[ProviderEvent]:
        top = _want_logprobs(body, options)
        alone = self._settings.local_reproducible_alone and reproducible(body)
        first, final = strip, None
        process = sending = None
        sent = False  # counted as at the child
        admission = self._admission
        admission.arrive()
        try:
            async with admission.line:  # requests reach the child in arrival order
                process = await self.process()
                client = await self._client(await process.ensure())
                await admission.turn(alone, lambda: _settle(client))
                sent = True
                sending = await _send(client, orjson.dumps(body), at_once=admission.slot_free)
            response = await sending
        except HttpError as exc:
            admission.leave(sent, alone)
            raise await self._lost(process, exc) from None
        except BaseException:  # given up (cancelled) before the headers: so is the request
            admission.leave(sent, alone)
            if sending is not None:
                _abandon(sending)
            raise
        try:
            if response.status != 200:
                raise _http_error(response.status, await response.read())
            async for data in _events(response):
                chunk = orjson.loads(data)
                if "error" in chunk:
                    raise _chunk_error(chunk["error"])
                text = chunk.get("content") or ""
                if first and text:
                    text = text.lstrip()
                    first = not text
                if text:
                    yield TextDelta(text)
                if top is not None and chunk.get("completion_probabilities"):
                    yield TokenLogprobs(_logprobs(chunk["completion_probabilities"], top))
                if chunk.get("stop"):
                    final = chunk
                    break
        except (HttpError, orjson.JSONDecodeError) as exc:
            raise await self._lost(process, exc) from None
        finally:
            admission.leave(True, alone, settled=final is not None)
            response.close()
        if final is None:
            reason = await process.death()
            raise ProviderError(
                reason or "the local model process ended the answer early", provider=self.name
            )
        prompt_tokens = int(final.get("tokens_evaluated") or 0)
        yield Usage(prompt_tokens, int(final.get("tokens_predicted") or 0))
        yield Finish(_FINISH.get(final.get("stop_type"), "stop"))  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """Close this provider's connections (the shared child runs on for the process)."""
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            await client.aclose()


async def _send(client: HttpClient, body: bytes, *, at_once: bool) -> asyncio.Future:
    """Send a streamed `/completion` request; its pending reply.

    `at_once` (a slot is free for it): return once the request is written, so requests that
    all get a slot start in one batch (waiting for each one's headers would put each prompt
    in a later batch than the one before). Otherwise it waits in the child's queue: return
    once it is under way (its headers arrived), which keeps the line in arrival order.
    """
    ready = asyncio.get_running_loop().create_future()

    def wake(*_: object) -> None:
        if not ready.done():
            ready.set_result(None)

    sending = asyncio.ensure_future(
        client.request(
            "POST", "/completion", body=body, headers=_JSON, on_written=wake if at_once else None
        )
    )
    sending.add_done_callback(wake)  # also when it fails before being written
    try:
        await ready
    except BaseException:
        sending.cancel()
        raise
    return sending


async def _events(response: Response) -> AsyncIterator[bytes]:
    """The data of each server-sent event line of a streamed reply."""
    rest = b""
    while piece := await response.receive():
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.startswith(b"data: "):
                yield line[6:]
    if rest.startswith(b"data: "):
        yield rest[6:]


async def _settle(client: HttpClient) -> None:
    """Wait (up to 5 s) until the child decodes nothing: a request given up stops only at its
    next token (the child notices the closed connection then)."""
    for _ in range(250):
        slots = orjson.loads(await (await client.get("/slots")).read())
        if not any(slot.get("is_processing") for slot in slots):
            return
        await asyncio.sleep(0.02)


def _abandon(sending: asyncio.Future) -> None:
    """Give up a request whose caller went away: stop it, or close the reply it got."""
    if not sending.done():
        sending.cancel()
    elif not sending.cancelled() and sending.exception() is None:
        sending.result().close()


def _check_model(model: str) -> None:
    if model != MODEL_ID:
        raise ModelNotFoundError(
            f"model {model!r} not found; provider 'local' serves {MODEL_ID!r}", param="model"
        )


async def _as_tool_call(
    stream: AsyncIterator[ProviderEvent], constraint: Constraint
) -> AsyncIterator[ProviderEvent]:
    """A forced tool call: the constrained JSON, sent as one call once complete."""
    parts: list[str] = []
    async for event in stream:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, Finish):
            name, arguments = tool_call_of(constraint, "".join(parts))
            yield ToolCallDelta(0, f"call_{uuid.uuid4().hex[:24]}", name, arguments)
            yield Finish("tool_calls" if event.reason == "stop" else event.reason)
        else:
            yield event


def _want_logprobs(body: dict[str, Any], options: ChatOptions | None) -> int | None:
    """How many alternatives per token to return (None: no log probabilities)."""
    if options is None or not options.logprobs:
        return None
    top = options.top_logprobs or 0
    body["n_probs"] = max(top, 1)
    return top


def _logprobs(entries: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """llama.cpp's `completion_probabilities` in OpenAI's chat logprobs shape."""

    def one(entry: dict[str, Any]) -> dict[str, Any]:
        return {"token": entry["token"], "logprob": entry["logprob"], "bytes": entry.get("bytes")}

    return [
        {**one(entry), "top_logprobs": [one(alt) for alt in entry.get("top_logprobs", [])[:top]]}
        for entry in entries
    ]


def _message_of(raw: bytes) -> str:
    try:
        error = orjson.loads(raw).get("error")
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:300]
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _http_error(status: int, raw: bytes) -> Exception:
    message = _message_of(raw)
    if status == 400:
        return InvalidRequestError(f"local model: {message}", param="messages")
    if status == 503:
        return ProviderUnavailableError(f"local model: {message}")
    return ProviderError(f"local model failed ({status}): {message}", provider="local")


def _chunk_error(error: Any) -> Exception:
    message = error.get("message") if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    if code == 400:
        return InvalidRequestError(f"local model: {message}", param="messages")
    return ProviderError(f"local model failed: {message}", provider="local")

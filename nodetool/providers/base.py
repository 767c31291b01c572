"""The provider protocols, field gating and tool-call assembly.

Every provider implements `ChatProvider`. Two capabilities are optional, each its own protocol
(checked with `isinstance`, so a provider simply defines the method or not):

- `EmbeddingProvider.embed` serves `/v1/embeddings`;
- `CompletionProvider.stream_completion` serves the legacy `/v1/completions` (raw prompt in,
  text out, no chat template).

Request fields that change a request's meaning but not every provider can honour (log
probabilities, `echo`, `dimensions`, ...) are declared by each provider in `honours`; a request
that sets a field its provider does not declare is a 400 naming the field in `param`
(`check_fields`), never a silent drop. docs/openai-fields.md has the matrix.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from nodetool.errors import InvalidRequestError
from nodetool.types.events import (
    ProviderEvent,
    ToolCallDelta,
)
from nodetool.types.messages import (
    ChatOptions,
    FunctionCall,
    Message,
    ModelInfo,
    ToolCall,
    ToolSpec,
)

# Optional request fields a provider honours only if it lists them in `honours`.
GATED_FIELDS = (
    "logprobs",  # chat: bool; legacy completions: int (= top_logprobs)
    "top_logprobs",
    "response_format",
    "tool_choice",
    "seed",
    "stop",
    "echo",  # legacy completions: the prompt is repeated before the completion
    "dimensions",  # embeddings: vectors shortened by the model
)
# What a provider without an `honours` attribute is assumed to honour.
DEFAULT_HONOURS = frozenset({"seed", "stop"})
# Values that ask for nothing beyond the default behaviour (so every provider honours them).
_HARMLESS: dict[str, tuple[object, ...]] = {
    "tool_choice": ("auto", "none"),
    "response_format": ({"type": "text"},),
}


def honours(provider: object) -> frozenset[str]:
    """The gated fields `provider` honours."""
    return getattr(provider, "honours", DEFAULT_HONOURS)


def check_fields(
    provider: object, fields: dict[str, object], *, params: dict[str, str] | None = None
) -> None:
    """400 for the first gated field set to a meaningful value that `provider` does not
    honour; `param` is the field (or `params[field]`, the name the request used for it).
    None, False, 0 and default-behaviour values (`tool_choice: "auto"`, a `text`
    response format) mean "not asked for"."""
    allowed = honours(provider)
    for wanted, value in fields.items():
        if value is None or value is False or (value == 0 and wanted != "dimensions"):
            continue
        if value in _HARMLESS.get(wanted, ()):
            continue
        if wanted in GATED_FIELDS and wanted not in allowed:
            name = getattr(provider, "name", "this")
            param = (params or {}).get(wanted, wanted)
            raise InvalidRequestError(
                f"The {name} provider cannot honour '{param}'; leave it out or route the "
                "request to a provider that supports it (see docs/openai-fields.md).",
                param=param,
                code="unsupported_parameter",
            )


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I)
_HOST_PORT = re.compile(
    r"(?:\b(?:\d{1,3}(?:\.\d{1,3}){3}|localhost)|\[[0-9a-f:]+\]):\d{1,5}\b", re.I
)
_KEY = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_*-]{6,}")


def scrub(text: str, *secrets: str | None) -> str:
    """`text` fit for a client: upstream URLs, host:port pairs, API keys and the given
    `secrets` (base URL, key) replaced. The full text belongs in the log only."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[upstream]")
    text = _URL.sub("[upstream]", text)
    text = _HOST_PORT.sub("[upstream]", text)
    return _KEY.sub("[key]", text)


def capabilities_for(model_id: str) -> list[str]:
    """What an upstream model serves, guessed from its id (embedding models say so)."""
    return ["embeddings"] if "embed" in model_id.lower() else ["chat"]


@runtime_checkable
class ChatProvider(Protocol):
    """A source of chat completions. Implementations: openai, ollama, local.

    Optional attributes: `honours: frozenset[str]` (see GATED_FIELDS; default
    DEFAULT_HONOURS), `default_model: str | None`, `fixed_ids: frozenset[str]` (model ids
    that never change: routing needs no listing), and `stream_chat_batches(...)`, with
    `stream_chat`'s arguments, yielding its events in non-empty lists (those of one received
    piece together; the engine prefers it, `chat.engine._batches`).
    """

    name: str

    async def list_models(self) -> list[ModelInfo]:
        """The models this provider serves."""
        ...

    def stream_chat(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        """Stream typed events; raises nodetool.errors.ProviderError subclasses on failure.

        Events: TextDelta, ToolCallDelta, TokenLogprobs (only when `options.logprobs`; the
        top `options.top_logprobs` alternatives per token), then Usage and Finish last.
        Closing the iterator (or cancelling its consumer) must close the upstream at once.
        """
        ...

    async def aclose(self) -> None:
        """Release pooled connections and loaded models."""
        ...


@dataclass(slots=True)
class Embeddings:
    """The vectors of one embeddings call, in input order, and the tokens it read."""

    vectors: list[list[float]]
    prompt_tokens: int = 0


@runtime_checkable
class EmbeddingProvider(Protocol):
    """A provider that embeds text (`/v1/embeddings`)."""

    name: str

    async def embed(
        self, inputs: Sequence[str], model: str, dimensions: int | None = None
    ) -> Embeddings:
        """One vector per input, in order (L2-normalised where the model pools itself).

        `dimensions` is passed only when the provider lists "dimensions" in `honours`.
        A model that cannot embed raises InvalidRequestError(param="model");
        upstream failures raise ProviderError subclasses.
        """
        ...


@runtime_checkable
class CompletionProvider(Protocol):
    """A provider that completes a raw prompt (legacy `/v1/completions`)."""

    name: str

    def stream_completion(
        self, prompt: str, model: str, options: ChatOptions | None = None, echo: bool = False
    ) -> AsyncIterator[ProviderEvent]:
        """Stream the continuation of `prompt` exactly as given (no chat template).

        Same events and rules as `ChatProvider.stream_chat` (TextDelta, TokenLogprobs when
        `options.logprobs`, Usage, Finish; no tool calls). With `echo` (only when "echo" is in
        `honours`) the prompt itself comes first as text. Options used: temperature, top_p,
        max_tokens, stop, seed, logprobs, top_logprobs, user.
        """
        ...


class ToolCallAccumulator:
    """Assembles complete ToolCalls from deltas keyed by index."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}

    def add(self, delta: ToolCallDelta) -> None:
        entry = self._calls.get(delta.index)
        if entry is None:
            entry = self._calls[delta.index] = ["", "", ""]
        if delta.id:
            entry[0] = delta.id
        if delta.name:
            entry[1] = delta.name
        if delta.arguments:
            entry[2] += delta.arguments

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> list[ToolCall]:
        """The complete calls, by index; a missing id gets a generated one."""
        result = []
        for index in sorted(self._calls):
            call_id, name, arguments = self._calls[index]
            result.append(
                ToolCall(
                    id=call_id or f"call_{index}",
                    function=FunctionCall(name=name, arguments=arguments or "{}"),
                )
            )
        return result

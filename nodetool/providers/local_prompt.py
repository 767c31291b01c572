"""How a chat becomes a request to the embedded base model: prompt format and sampling.

Gemma 3 270M here is a *base* model (no chat template): a chat is rendered as a completion-style
transcript (`User:` / `Assistant:` lines after a short preamble) and generation stops at the next
turn marker or a blank line, so answers stay short and on topic. The format and the sampling
defaults were chosen by `benchmarks/local_quality.py` (answered acceptably, echoes, repetition).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nodetool.config import Settings
from nodetool.errors import InvalidRequestError
from nodetool.providers.local_constraints import Constraint
from nodetool.types.messages import ChatOptions, Message


@dataclass(frozen=True, slots=True)
class PromptFormat:
    """A transcript format for the base model: preamble, example turns, stops, sampling."""

    preamble: str
    examples: tuple[tuple[str, str], ...]
    stops: tuple[str, ...] = ("\nUser:", "\nAssistant:", "\n\n")
    sampling: dict[str, Any] = field(default_factory=dict)

    def header(self, system: Sequence[str] = ()) -> str:
        head = self.preamble + ("\n" + "\n".join(system) if system else "")
        shots = "\n".join(f"User: {q}\nAssistant: {a}" for q, a in self.examples)
        return head + ("\n\n" + shots if shots else "")


FORMAT = PromptFormat(
    preamble=(
        "The following is a conversation between a User and a helpful Assistant. The Assistant "
        "answers each question correctly and briefly, in one or two sentences."
    ),
    examples=(  # several kinds of turn, so no single example gets parroted
        ("Hello there!", "Hello! How can I help you today?"),
        ("What is the capital of Spain?", "The capital of Spain is Madrid."),
        ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
        ("Who was the first person to walk on the Moon?", "Neil Armstrong, in 1969."),
    ),
    # presence and frequency penalties keep this model from looping at no cost to the first
    # token (DRY, which scored alike, costs ~170 ms per request to set up: local_quality.py)
    sampling={
        "temperature": 0.2,
        "top_p": 0.95,
        "top_k": 40,
        "min_p": 0.05,
        "repeat_penalty": 1.0,
        "presence_penalty": 0.4,
        "frequency_penalty": 0.4,
    },
)
_CHARS_PER_TOKEN = 3  # conservative estimate used to trim long histories


def build_prompt(
    messages: Sequence[Message], budget_chars: int | None = None, fmt: PromptFormat = FORMAT
) -> str:
    """The completion-style transcript for `messages`, oldest turns dropped past the budget."""
    system = [m.text().strip() for m in messages if m.role == "system" and m.text().strip()]
    header = fmt.header(system)
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


def build_request(
    messages: Sequence[Message],
    options: ChatOptions | None,
    default_max: int,
    settings: Settings,
    fmt: PromptFormat = FORMAT,
    constraint: Constraint | None = None,
) -> dict[str, Any]:
    """The body of a streamed llama-server `/completion` request for this chat."""
    body: dict[str, Any] = {
        **fmt.sampling,
        "n_predict": default_max,
        "stop": list(fmt.stops),
        "stream": True,
    }
    if options is not None:
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.top_p is not None:
            body["top_p"] = options.top_p
        if options.max_tokens is not None:
            if options.max_tokens < 1:
                raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
            body["n_predict"] = options.max_tokens
        if options.seed is not None:
            body["seed"] = options.seed
        if options.stop:
            body["stop"] = [*fmt.stops, *options.stop]
    body["cache_prompt"] = not reproducible(body)
    n_ctx = settings.local_context_size
    room = max(n_ctx - body["n_predict"], n_ctx // 2)  # leave room for the answer
    if constraint is not None:  # the grammar ends the answer; turn markers are not needed
        body["json_schema"] = constraint.schema
        # the grammar allows a key again and again; the small model loops on one without this
        body["frequency_penalty"] = 0.5
        body["stop"] = list(options.stop or []) if options is not None else []
        hint = Message(role="system", content=constraint.hint)
        messages = [hint, *messages] if constraint.hint else messages
    body["prompt"] = build_prompt(messages, room * _CHARS_PER_TOKEN, fmt)
    return body


def completion_request(prompt: str, options: ChatOptions | None) -> dict[str, Any]:
    """A raw `/completion` request (legacy completions): the prompt as given, OpenAI's
    defaults (temperature 1, top_p 1, 16 tokens), only the caller's stops."""
    options = options or ChatOptions()
    body: dict[str, Any] = {
        "prompt": prompt,
        "temperature": 1.0 if options.temperature is None else options.temperature,
        "top_p": 1.0 if options.top_p is None else options.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "n_predict": 16 if options.max_tokens is None else options.max_tokens,
        "stop": list(options.stop or []),
        "stream": True,
    }
    if body["n_predict"] < 1:
        raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
    if options.seed is not None:
        body["seed"] = options.seed
    body["cache_prompt"] = not reproducible(body)
    return body


def reproducible(body: dict[str, Any]) -> bool:
    """Whether a request asks for the same tokens every time (greedy, or a fixed seed).

    llama.cpp's kernels are not batch-invariant (a token's logits differ in the last bits
    with the batch it is computed in), so such a request is always computed afresh (no prompt
    prefix computed in another batch) and, by default, decoded alone (`LocalProvider`).
    """
    return body["temperature"] <= 0 or "seed" in body

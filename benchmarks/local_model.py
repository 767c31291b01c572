"""Tokens/s of the embedded model: through nodetool's `local` provider vs llama-cpp-python direct.

Both paths use the same loaded model, the same prompt (the provider's transcript format), the
same sampling settings (greedy, so both generate the same tokens) and the same stop sequences.
Each round runs the paths back to back in a rotating order; totals and the median of
per-round ratios are printed (the median resists load spikes on a shared machine).
Target ratio: >= 0.95.

    .venv/bin/python benchmarks/local_model.py [--rounds 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from nodetool.config import load_settings
from nodetool.providers.local import MODEL_ID, STOPS, LocalProvider, build_prompt
from nodetool.types.events import Usage
from nodetool.types.messages import ChatOptions, Message

QUESTION = "List the numbers from one to fifty."


# The sampling both paths use (greedy), so the two measurements generate the same tokens.
SAMPLING = {"temperature": 0.0, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}


def direct(llm, prompt: str, max_tokens: int) -> int:
    """llama-cpp-python's own completion call; returns completion tokens."""
    result = llm.create_completion(
        prompt,
        max_tokens=max_tokens,
        stop=list(STOPS),
        **SAMPLING,
    )
    return int(result["usage"]["completion_tokens"])


def direct_stream(llm, prompt: str, max_tokens: int) -> int:
    """The same, streamed; returns the number of streamed pieces (about one per token)."""
    pieces = 0
    for _ in llm.create_completion(
        prompt,
        max_tokens=max_tokens,
        stop=list(STOPS),
        **SAMPLING,
        stream=True,
    ):
        pieces += 1
    return pieces


async def through_provider(provider: LocalProvider, max_tokens: int) -> int:
    options = ChatOptions(temperature=0.0, max_tokens=max_tokens)
    tokens = 0
    messages = [Message(role="user", content=QUESTION)]
    async for event in provider.stream_chat(messages, MODEL_ID, options=options):
        if isinstance(event, Usage):
            tokens = event.completion_tokens
    return tokens


async def main(rounds: int, max_tokens: int) -> None:
    settings = load_settings()
    provider = LocalProvider(settings)
    engine = await provider.model()
    llm = engine.llama()
    prompt = build_prompt(
        [Message(role="user", content=QUESTION)],
        settings.local_context_size * 3,
    )
    loop = asyncio.get_running_loop()
    names = ("direct", "direct-stream", "provider")

    async def run(name: str) -> tuple[int, float]:
        start = time.perf_counter()
        if name == "provider":
            tokens = await through_provider(provider, max_tokens)
        else:
            func = direct if name == "direct" else direct_stream
            tokens = await loop.run_in_executor(engine.executor, func, llm, prompt, max_tokens)
        return tokens, time.perf_counter() - start

    for name in names:  # warm-up (kernels, caches); not counted
        await run(name)
    totals = {name: [0, 0.0] for name in names}
    pair_ratios: dict[str, list[float]] = {"direct": [], "direct-stream": []}
    for index in range(rounds):
        rate: dict[str, float] = {}
        for name in names[index % 3 :] + names[: index % 3]:  # rotate the order
            tokens, seconds = await run(name)
            totals[name][0] += tokens
            totals[name][1] += seconds
            rate[name] = tokens / seconds
        for base in pair_ratios:
            pair_ratios[base].append(rate["provider"] / rate[base])
    overall = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    print(f"model {MODEL_ID}, {rounds} rounds x {max_tokens} max tokens, greedy, same prompt")
    for name, label in (
        ("direct", "llama-cpp-python create_completion (direct)"),
        ("direct-stream", "llama-cpp-python create_completion(stream=True)"),
        ("provider", "nodetool local provider (stream_chat)"),
    ):
        tokens, seconds = totals[name]
        print(f"  {label:<50} {overall[name]:7.2f} tok/s  ({tokens} tokens in {seconds:.2f} s)")
    for base, label in (("direct", "direct"), ("direct-stream", "direct stream")):
        print(
            f"ratio provider / {label + ':':<15} "
            f"{overall['provider'] / overall[base]:.3f} overall, "
            f"{statistics.median(pair_ratios[base]):.3f} median of rounds  (target >= 0.95)"
        )
    await provider.aclose()
    engine.executor.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.max_tokens))

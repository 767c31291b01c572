"""Answer quality of the embedded model under prompt formats and sampling settings.

30 short factual and conversational prompts, each with accepted answers (regular expressions).
Every format answers every prompt (several seeds); printed per format:

- answered: the share of replies that contain an accepted answer;
- echo: the share that parrot the prompt's built-in example or repeat the question;
- repeat: the share that repeat themselves (a line twice, or a 4-word run three times) or run
  to the token limit;
- setup ms: the median time a request spends in llama-server outside prompt processing and
  decoding (its wall time less llama.cpp's own `prompt_ms` and `predicted_ms`): what the
  sampler chain costs to set up, paid before the first token (DRY, for one, scans the whole
  262k-token vocabulary for each of its sequence breakers).

`FORMAT` in nodetool/providers/local_prompt.py is the one chosen by this score; `before` is the
format of the first release, kept here for comparison.

    .venv/bin/python benchmarks/local_quality.py [--seeds 3] [--only NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodetool.config import load_settings  # noqa: E402
from nodetool.providers.local_model import model_process  # noqa: E402
from nodetool.providers.local_prompt import FORMAT, PromptFormat, build_prompt  # noqa: E402
from nodetool.types.messages import Message  # noqa: E402

PROMPTS: list[tuple[str, str]] = [
    ("What is the capital of France?", r"paris"),
    ("Hi", r"\b(hello|hi|hey|greetings)\b"),
    ("How many legs does a spider have?", r"\b(eight|8)\b"),
    ("What is 2 + 2?", r"\b(four|4)\b"),
    ("What color is the sky on a clear day?", r"blue"),
    ("Who wrote Romeo and Juliet?", r"shakespeare"),
    ("What is the capital of Japan?", r"tokyo"),
    ("At what temperature in Celsius does water boil?", r"\b100\b|one hundred"),
    ("What is the largest ocean on Earth?", r"pacific"),
    ("Thank you!", r"welcome|pleasure|glad|happy to help|no problem|anytime"),
    ("How many days are in a week?", r"\b(seven|7)\b"),
    ("What is the chemical symbol for gold?", r"\bau\b"),
    ("What planet do we live on?", r"earth"),
    ("What is the opposite of hot?", r"\bcold\b"),
    ("How are you today?", r"\b(good|well|fine|great|doing)\b"),
    ("What language is spoken in Brazil?", r"portuguese"),
    ("What is the capital of Italy?", r"\brome\b"),
    ("How many continents are there?", r"\b(seven|7)\b"),
    ("What do bees make?", r"honey"),
    ("At what temperature in Celsius does water freeze?", r"\b0\b|zero"),
    ("Which animal is known as the king of the jungle?", r"\blions?\b"),
    ("What is the tallest mountain in the world?", r"everest"),
    ("Good morning!", r"morning|hello|\bhi\b"),
    ("What gas do plants absorb from the air?", r"carbon dioxide|co2"),
    ("How many hours are in a day?", r"\b24\b|twenty-four"),
    ("What is the capital of Germany?", r"berlin"),
    ("Who painted the Mona Lisa?", r"leonardo|da vinci"),
    ("What is the square root of 9?", r"\b3\b|three"),
    ("What is your name?", r"assistant|name|\bi am\b|\bi'm\b"),
    ("What is the currency of the United Kingdom?", r"pound|sterling|gbp"),
]

BEFORE = PromptFormat(
    preamble=(
        "The following is a conversation between a User and a helpful Assistant. The Assistant "
        "answers each question correctly and briefly, in one or two sentences."
    ),
    examples=(
        (
            "What is the largest planet in the solar system?",
            "Jupiter is the largest planet in the solar system.",
        ),
    ),
    sampling={"temperature": 0.2, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0},
)
_EXAMPLE_WORDS = ("jupiter", "largest planet")
MAX_TOKENS = 96


SHOTS = FORMAT.examples


def candidates() -> dict[str, PromptFormat]:
    """The formats compared: the first release's, the chosen one, and variations."""
    penalty = {**BEFORE.sampling, "repeat_penalty": 1.15}
    shots = replace(BEFORE, examples=SHOTS)
    dry = {**BEFORE.sampling, "dry_multiplier": 0.8}
    return {
        "before": BEFORE,
        "before+penalty": replace(BEFORE, sampling=penalty),
        "4 shots": shots,
        "4 shots+penalty": replace(shots, sampling=penalty),
        "4 shots+greedy": replace(shots, sampling={**penalty, "temperature": 0.0}),
        "4 shots+dry": replace(shots, sampling=dry),
        "4 shots+dry 1 brk": replace(shots, sampling={**dry, "dry_sequence_breakers": ["\n"]}),
        "4 shots+presence": replace(shots, sampling={**BEFORE.sampling, "presence_penalty": 0.6}),
        "4 shots+frequency": replace(shots, sampling={**BEFORE.sampling, "frequency_penalty": 0.4}),
        "chosen (pres+freq)": FORMAT,
    }


def echoes(prompt: str, reply: str, fmt: PromptFormat) -> bool:
    low, question = reply.lower(), prompt.lower().strip(" ?!.")
    shots = " ".join(q + " " + a for q, a in fmt.examples).lower()
    parrot = any(w in low and w not in question for w in _EXAMPLE_WORDS if w in shots)
    copied = any(a.lower().strip(" .") in low for _, a in fmt.examples if len(a) > 12)
    return parrot or copied or (len(question) > 8 and question in low)


def repeats(reply: str, finish: str) -> bool:
    lines = [line.strip().lower() for line in reply.splitlines() if line.strip()]
    if len(lines) != len(set(lines)):
        return True
    words = re.findall(r"\w+", reply.lower())
    grams = [" ".join(words[i : i + 4]) for i in range(len(words) - 3)]
    return any(grams.count(g) >= 3 for g in set(grams)) or finish == "limit"


async def answer(client: httpx.AsyncClient, fmt: PromptFormat, prompt: str, seed: int):
    body = {
        **fmt.sampling,
        "prompt": build_prompt([Message(role="user", content=prompt)], None, fmt),
        "n_predict": MAX_TOKENS,
        "stop": list(fmt.stops),
        "seed": seed,
        "cache_prompt": True,
    }
    start = time.perf_counter()
    reply = (await client.post("/completion", json=body)).json()
    wall = (time.perf_counter() - start) * 1000
    timings = reply.get("timings", {})
    setup = wall - timings.get("prompt_ms", 0.0) - timings.get("predicted_ms", 0.0)
    return reply["content"].strip(), reply.get("stop_type", ""), setup


async def score(client: httpx.AsyncClient, fmt: PromptFormat, seeds: int, show: bool):
    counts = {"answered": 0, "echo": 0, "repeat": 0}
    total, setups = 0, []
    for prompt, accepted in PROMPTS:
        for seed in range(seeds):
            text, finish, setup = await answer(client, fmt, prompt, seed)
            setups.append(setup)
            total += 1
            ok = re.search(accepted, text, re.IGNORECASE) is not None
            counts["answered"] += ok
            counts["echo"] += echoes(prompt, text, fmt)
            counts["repeat"] += repeats(text, finish)
            if show and seed == 0:
                print(f"    {'ok ' if ok else 'BAD'} {prompt!r} -> {text[:100]!r}")
    return {**{k: v / total for k, v in counts.items()}, "setup": statistics.median(setups)}


async def main(seeds: int, only: str | None, show: bool) -> None:
    process = await asyncio.to_thread(model_process, load_settings())
    socket = await process.ensure()
    transport = httpx.AsyncHTTPTransport(uds=str(socket))
    formats = {k: v for k, v in candidates().items() if only in (None, k)}
    print(f"{len(PROMPTS)} prompts x {seeds} seeds, {MAX_TOKENS} max tokens")
    print(f"  {'format':<18} {'answered':>9} {'echo':>6} {'repeat':>7} {'setup ms':>9}")
    async with httpx.AsyncClient(transport=transport, base_url="http://llama", timeout=600) as c:
        for name, fmt in formats.items():
            result = await score(c, fmt, seeds, show)
            print(
                f"  {name:<18} {result['answered']:9.0%} {result['echo']:6.0%} "
                f"{result['repeat']:7.0%} {result['setup']:9.1f}",
                flush=True,
            )
    process.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default=None)
    parser.add_argument("--show", action="store_true", help="print each first-seed reply")
    args = parser.parse_args()
    asyncio.run(main(args.seeds, args.only, args.show))

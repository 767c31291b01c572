"""Decode speed of the embedded model: nodetool vs llama.cpp's own server vs llama_cpp.server.

Three servers on the same GGUF and the same portable llama.cpp build flags, each streaming the
same prompt (the provider's transcript) with the same sampling (greedy, with the provider's
presence and frequency penalties), so all generate the same tokens:

- `nodetool chat-server` (provider `local`: its supervised llama-server child), over
  `/v1/chat/completions`;
- `llama-server` (the binary nodetool built), started here with the child's own arguments,
  over its native `/completion`;
- `llama_cpp.server` (llama-cpp-python built with the same flags: `make bench-deps`), over
  `/v1/completions`.

Per server: time to first token (TTFT, median) and streamed decode tokens/s (prefill excluded:
tokens after the first over the time after the first), single stream; then the aggregate decode
rate of 4 concurrent streams (batched in llama.cpp's parallel slots) with the provider's default
sampling (temperature 0.2): greedy requests are reproducible, so nodetool decodes them alone
(NODETOOL_LOCAL_REPRODUCIBLE_ALONE). Rounds rotate the order. Prefill makes TTFT vary by tens
of ms from one request to the next on 2 cores, so the gateway's own share is measured apart as
well: nodetool with a stand-in child that answers at once (`stand_in_llama.py`), against the
stand-in directly, 300 requests each; and the TTFT target is judged on the median of 31
back-to-back pairs of short greedy requests (nodetool's minus llama-server's).
Targets: decode >= 0.9x llama-server's; TTFT within 5 ms of llama-server's; 4-stream aggregate
>= 0.9x `llama-server -np 4`.

    .venv/bin/python benchmarks/local_model.py [--rounds 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodetool.config import load_settings  # noqa: E402
from nodetool.providers.llama_process import ChildConfig  # noqa: E402
from nodetool.providers.local_model import ensure_model_file, llama_server_binary  # noqa: E402
from nodetool.providers.local_prompt import FORMAT, build_prompt, build_request  # noqa: E402
from nodetool.types.messages import ChatOptions, Message  # noqa: E402
from tests.support.servers import free_port, wait_http  # noqa: E402

QUESTION = "List the numbers from one to fifty."
GREEDY = {"temperature": 0.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
PENALTIES = (FORMAT.sampling["presence_penalty"], FORMAT.sampling["frequency_penalty"])


class Stream:
    """One streamed request's timings: start, first token, last token, tokens."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = self.visible = self.last = 0.0
        self.tokens = 0

    def token(self, text: str) -> None:
        """One streamed token. Time to first token counts from the first that shows text:
        nodetool strips the answer's leading space, which llama.cpp sends as a token alone."""
        now = time.perf_counter()
        self.first = self.first or now
        if not self.visible and text.strip():
            self.visible = now
        self.last, self.tokens = now, self.tokens + 1


async def sse(client: httpx.AsyncClient, url: str, body: dict, text_of) -> Stream:
    stream = Stream()
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                text = text_of(chunk)
                if text:
                    stream.token(text)
                # a chunk may carry several tokens (text held back while it might begin a stop
                # string): the servers' own final counts are the token counts
                usage = chunk.get("usage")
                if usage:
                    stream.tokens = usage["completion_tokens"]
                elif chunk.get("stop") and "tokens_predicted" in chunk:  # llama-server
                    stream.tokens = chunk["tokens_predicted"]
    return stream


def nodetool_request(max_tokens: int, temperature: float | None) -> tuple[str, dict, object]:
    body = {
        "model": "gemma-3-270m",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    if temperature is not None:
        body["temperature"] = temperature

    def text_of(chunk: dict) -> str:
        choices = chunk.get("choices") or [{}]
        return choices[0].get("delta", {}).get("content") or ""

    return "/v1/chat/completions", body, text_of


def llama_request(max_tokens: int, temperature: float | None) -> tuple[str, dict, object]:
    """The very `/completion` body nodetool's provider sends its child for this chat."""
    options = ChatOptions(temperature=temperature, max_tokens=max_tokens)
    messages = [Message(role="user", content=QUESTION)]
    body = build_request(messages, options, max_tokens, load_settings())
    return "/completion", body, lambda chunk: chunk.get("content") or ""


def llama_cpp_python_request(prompt: str, max_tokens: int) -> tuple[str, dict, object]:
    body = {"prompt": prompt, "max_tokens": max_tokens, "stream": True, "stop": list(FORMAT.stops)}
    body.update(GREEDY, presence_penalty=PENALTIES[0], frequency_penalty=PENALTIES[1])
    return "/v1/completions", body, lambda c: (c.get("choices") or [{}])[0].get("text") or ""


def start(argv: list[str], url: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_http(f"{url}/health" if "llama_cpp" not in " ".join(argv) else f"{url}/v1/models",
              timeout=120, proc=proc)  # fmt: skip
    return proc


OURS, ANCHOR, PYTHON = "nodetool chat-server", "llama-server (C++)", "llama_cpp.server"


async def measure(targets: dict, rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {n: {"ttft": [], "rate": []} for n in targets}
    agg: dict[str, list[float]] = {n: [] for n in targets}
    # a new connection per request for every server alike: llama-server at times drops a
    # reused keep-alive connection before answering ("Server disconnected")
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=300, limits=fresh) as client:
        for url, (path, body, count), _ in targets.values():  # warm-up
            await sse(client, url + path, body, count)
        names = list(targets)
        for index in range(rounds):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                url, (path, body, count), sampled = targets[name]
                s = await sse(client, url + path, body, count)
                results[name]["ttft"].append((s.visible - s.start) * 1000)
                results[name]["rate"].append((s.tokens - 1) / (s.last - s.first))
                if sampled is None:  # llama_cpp.server interrupts a running stream for a new one
                    continue
                path, body, count = sampled
                streams = await asyncio.gather(
                    *(sse(client, url + path, body, count) for _ in range(4))
                )
                wall = max(x.last for x in streams) - min(x.first for x in streams)
                agg[name].append(sum(x.tokens - 1 for x in streams) / wall)
        paired = await ttft_pairs(client, targets, TTFT_PAIRS)
    return {
        name: {
            "ttft": statistics.median(r["ttft"]),
            "rate": statistics.median(r["rate"]),
            "agg4": statistics.median(agg[name]) if agg[name] else float("nan"),
            "paired": paired,
        }
        for name, r in results.items()
    }


TTFT_PAIRS = 31


async def ttft_pairs(client: httpx.AsyncClient, targets: dict, pairs: int) -> float:
    """Median over `pairs` back-to-back pairs of the same greedy request, nodetool's time to
    first token minus llama-server's (the order alternates): prefill varies by tens of ms from
    one request to the next on 2 cores, so single medians of a few rounds drift that much."""
    differences = []
    for index in range(pairs):
        timings = {}
        for name in (OURS, ANCHOR) if index % 2 else (ANCHOR, OURS):
            url, (path, body, count), _ = targets[name]
            stream = await sse(client, url + path, {**body, **_SHORT[name]}, count)
            timings[name] = (stream.visible - stream.start) * 1000
        differences.append(timings[OURS] - timings[ANCHOR])
    return statistics.median(differences)


_SHORT = {OURS: {"max_tokens": 4}, ANCHOR: {"n_predict": 4}}


def start_servers(data: str, procs: list[subprocess.Popen], max_tokens: int) -> dict:
    """Start the three servers (llama_cpp.server only when installed); their targets."""
    settings = load_settings()
    binary, profile = llama_server_binary(settings)
    model = ensure_model_file(settings)
    prompt = build_prompt([Message(role="user", content=QUESTION)], None)
    env = {**os.environ, "NODETOOL_DATA_DIR": data, "NODETOOL_LOG_LEVEL": "warning"}
    ports = [free_port() for _ in range(3)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    ours = [sys.executable, "-m", "nodetool", "chat-server", "--port", str(ports[0])]
    procs.append(start(ours, urls[0], env))
    targets = {
        OURS: (urls[0], nodetool_request(max_tokens, 0.0), nodetool_request(max_tokens, None))
    }
    config = ChildConfig(
        binary,
        model,
        Path(data),
        settings.local_context_size,
        settings.local_parallel,
        settings.local_threads,
        profile,
    )
    argv = config.argv(Path("unused.sock"))
    argv[argv.index("--host") + 1] = "127.0.0.1"
    procs.append(start([*argv, "--port", str(ports[1])], urls[1]))
    targets[ANCHOR] = (urls[1], llama_request(max_tokens, 0.0), llama_request(max_tokens, None))
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama_cpp.server skipped: `make bench-deps` installs it")
        return targets
    python = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    python += ["--port", str(ports[2]), "--n_ctx", str(settings.local_context_size)]
    procs.append(start([*python, "--chat_format", "gemma"], urls[2]))
    targets[PYTHON] = (urls[2], llama_cpp_python_request(prompt, max_tokens), None)
    return targets


STAND_IN = Path(__file__).resolve().parent / "stand_in_llama.py"


async def first_token_ms(client: httpx.AsyncClient, url: str, body: dict) -> float:
    stream = await sse(client, url, body, lambda chunk: _text(chunk) or chunk.get("content"))
    return (stream.visible - stream.start) * 1000


def _text(chunk: dict) -> str:
    return ((chunk.get("choices") or [{}])[0].get("delta") or {}).get("content") or ""


async def _shares(ours: str, direct: str, requests: int) -> tuple[float, float]:
    path, body, _ = nodetool_request(8, 0.0)
    fresh = httpx.Limits(max_keepalive_connections=0)
    timings: tuple[list[float], list[float]] = ([], [])
    async with httpx.AsyncClient(timeout=60, limits=fresh) as client:
        for index in range(requests + 20):  # the first 20 warm up
            gateway = await first_token_ms(client, ours + path, body)
            alone = await first_token_ms(client, direct + "/completion", {"prompt": "x"})
            if index >= 20:
                timings[0].append(gateway)
                timings[1].append(alone)
    return statistics.median(timings[0]), statistics.median(timings[1])


def gateway_share(data: str, requests: int) -> tuple[float, float]:
    """Time to first token through nodetool whose child is a stand-in answering at once, and
    from the stand-in directly: the difference is the gateway's own share of TTFT."""
    env = {
        **os.environ,
        "NODETOOL_DATA_DIR": data,
        "NODETOOL_LOG_LEVEL": "warning",
        "NODETOOL_LLAMA_SERVER": str(STAND_IN),
    }
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    procs = [
        start([sys.executable, str(STAND_IN), "--host", "127.0.0.1", "--port", str(ports[1])],
              urls[1]),
        start([sys.executable, "-m", "nodetool", "chat-server", "--port", str(ports[0])],
              urls[0], env),
    ]  # fmt: skip
    try:
        return asyncio.run(_shares(urls[0], urls[1], requests))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


def main(rounds: int, max_tokens: int) -> None:
    settings = load_settings()
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as data:
        try:
            found = asyncio.run(measure(start_servers(data, procs, max_tokens), rounds))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
        ours_ms, direct_ms = gateway_share(data, 300)
    print(f"{rounds} rounds, {max_tokens} max tokens, same prompt, sampling and GGUF")
    print(f"  {'server':<24} {'TTFT ms':>8} {'decode tok/s':>13} {'4 streams tok/s':>16}")
    for name, r in found.items():
        print(f"  {name:<24} {r['ttft']:8.1f} {r['rate']:13.1f} {r['agg4']:16.1f}")
    ours, anchor = found[OURS], found[ANCHOR]
    decode = ours["rate"] / anchor["rate"]
    print(f"decode ratio nodetool / llama-server: {decode:.3f} (target >= 0.9)")
    ttft = ours["paired"]
    print(
        f"TTFT difference nodetool - llama-server: {ttft:+.1f} ms, median of {TTFT_PAIRS} "
        f"back-to-back pairs (target <= 5 ms; the medians above differ by "
        f"{ours['ttft'] - anchor['ttft']:+.1f} ms)"
    )
    print(
        f"gateway's own share of TTFT: {ours_ms - direct_ms:+.2f} ms (p50 of 300 with a "
        f"stand-in child answering at once: {ours_ms:.2f} ms through nodetool, "
        f"{direct_ms:.2f} ms from the stand-in directly)"
    )
    batch = ours["agg4"] / anchor["agg4"]
    print(
        f"4-stream aggregate nodetool / llama-server -np {settings.local_parallel}: {batch:.3f} "
        f"(target >= 0.9); nodetool 4 streams = {ours['agg4'] / ours['rate']:.2f}x one stream"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    main(args.rounds, args.max_tokens)

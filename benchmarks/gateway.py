"""Gateway overhead benchmark: direct upstream vs `nodetool chat-server` vs LiteLLM's proxy.

    .venv/bin/python benchmarks/gateway.py [--duration 4] [--rounds 1] [--no-litellm] [--httpx]
                                           [--baseline DIR] [--python PY]

Starts a lean OpenAI-compatible upstream stub (uvicorn + httptools in its own process), then
measures side by side, in one run, with an asyncio HTTP/1.1 load generator on keep-alive
connections: requests/s and p50/p99 latency (to the last byte) at concurrency 1 and 32, for a
streamed answer of 32 content chunks and for a non-stream answer, against
  (a) the stub directly, (b) `nodetool chat-server` (the real CLI, as a subprocess), on
  `/v1/chat/completions` and, as `responses`, the same answer through `/v1/responses`
  (`resp-nostore`: with `"store": false`, no durable write before the answer),
  (c) LiteLLM's proxy (`litellm[proxy]` in its own virtualenv, benchmarks/.litellm-venv,
      created on first use; if it cannot be installed the output says so).
Prints the table and the ratios against the targets: throughput >= 10x LiteLLM's; latency
added over the direct call at concurrency 1 <= 0.3 ms (stream and non-stream), and
`/v1/responses`' within 0.2 ms of chat completions'; the gateway process's own CPU time
(utime + stime from /proc) per non-stream request <= 0.25 ms (robust to other load on the
machine); non-stream throughput at concurrency 32 >= 3,000 req/s; stream throughput at
concurrency 32 >= 0.9x the bare stub's.
With `--httpx` a second gateway whose openai provider runs on httpx is measured too, and the
own HTTP client is judged against it (keep it only at >= 1.3x httpx's throughput at
concurrency 32 or >= 0.2 ms less added p50 at concurrency 1).
With `--python PY` the same checkout's gateway is measured a second time under another
interpreter (e.g. a pyenv build against the distribution's, which `make install` prefers).
With `--rounds N` every target is measured N times, the rounds interleaved (each round runs
every workload against every target), and each row pools its rounds: a drift in the machine's
speed then weighs on every target alike.
Everything listens on 127.0.0.1; every load loop is bounded by a duration and a request cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gateway_report import Result, pooled, report  # benchmarks/ sibling module

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LITELLM_VENV = HERE / ".litellm-venv"
LITELLM_SPEC = "litellm[proxy]==1.106.12"
MODEL = "stub-model"
CHUNKS = 32
MAX_REQUESTS = 200_000
API_KEY = "sk-bench-" + os.urandom(24).hex()  # both gateways enforce it

# ---- the upstream stub (runs in its own process: `gateway.py --stub PORT`) ------------------


def _stub_app(token_delay: float = 0.0):
    """A raw ASGI OpenAI-compatible stub with precomputed answers; a streamed answer waits
    `token_delay` seconds before each content chunk (a model's decode time)."""
    created = 1700000000

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    stream_parts = [chunk({"role": "assistant", "content": ""})]
    stream_parts += [chunk({"content": f"tok{i} "}) for i in range(CHUNKS)]
    stream_parts.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 5, "completion_tokens": CHUNKS, "total_tokens": CHUNKS + 5}
    usage_part = (
        b"data: "
        + json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": created,
                "model": MODEL,
                "choices": [],
                "usage": usage,
            }
        ).encode()
        + b"\n\n"
    )
    completion = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(f"tok{i} " for i in range(CHUNKS)),
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    ).encode()
    models = json.dumps(
        {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "created": created, "owned_by": "bench"}],
        }
    ).encode()
    json_headers = [(b"content-type", b"application/json")]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": json_headers})
            await send({"type": "http.response.body", "body": models})
            return
        request = json.loads(body)
        if not request.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": json_headers})
            await send({"type": "http.response.body", "body": completion})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for n, part in enumerate(stream_parts):
            if token_delay and 0 < n < len(stream_parts) - 1:
                await asyncio.sleep(token_delay)
            await send({"type": "http.response.body", "body": part, "more_body": True})
        if (request.get("stream_options") or {}).get("include_usage"):
            await send({"type": "http.response.body", "body": usage_part, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    return app


def serve_stub(port: int, token_delay: float = 0.0) -> None:
    import uvicorn

    uvicorn.run(
        _stub_app(token_delay),
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
        lifespan="off",
        loop="uvloop",
        http="httptools",
    )


# ---- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not become ready")


def start(
    cmd: list[str], env: dict[str, str], ready: str, log: Path, cwd: str | None = None
) -> subprocess.Popen:
    """Start a process; `cwd` matters for `python -m`, which imports from it first."""
    out = log.open("w")
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=cwd
    )
    try:
        wait_ready(ready, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def start_gateway(
    python: str, port: int, env: dict[str, str], cwd: str, log: Path
) -> subprocess.Popen:
    """`nodetool chat-server` on `port`, run by `python` from `cwd` (the checkout it imports)."""
    cmd = [python, "-m", "nodetool", "chat-server", "--port", str(port)]
    cmd += ["--provider", "openai", "--log-level", "warning"]
    return start(cmd, env, f"http://127.0.0.1:{port}/health", log, cwd=cwd)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def litellm_binary(install: bool) -> tuple[Path | None, str]:
    """The LiteLLM proxy executable (installing it into its own venv), or None and why."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe, "installed"
    if not install:
        return None, "not installed (run without --no-install to install it)"
    print(f"installing {LITELLM_SPEC} into {LITELLM_VENV} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", LITELLM_SPEC],
            check=True,
            timeout=1800,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not be installed: {exc}"
    return (exe, "installed") if exe.exists() else (None, "installed, but no `litellm` binary")


# ---- load generator -------------------------------------------------------------------------


def build_request(port: int, stream: bool, api: str = "chat") -> bytes:
    if api != "chat":  # "responses", or "nostore" (`"store": false`)
        body: dict = {"model": MODEL, "input": "Say something."}
        if api == "nostore":
            body["store"] = False
    else:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}]}
    if stream:
        body["stream"] = True
    payload = json.dumps(body).encode()
    path = "/v1/chat/completions" if api == "chat" else "/v1/responses"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0][9:12])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    if headers.get(b"transfer-encoding") == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        return status, b"".join(parts)
    return status, await reader.readexactly(int(headers[b"content-length"]))


def valid(body: bytes, stream: bool, api: str = "chat") -> bool:
    if api != "chat":
        if stream:
            done = body.rstrip().rsplit(b"\n", 1)[-1].startswith(b'data: {"type":"response.comp')
            return done and body.count(b'"delta":"tok') == CHUNKS
        return b'"status":"completed"' in body and b"tok0 tok1 " in body
    if stream:
        return body.endswith(b"data: [DONE]\n\n") and body.count(b'"content":"tok') == CHUNKS
    return b"tok0 tok1 " in body and body.count(b"tok") == CHUNKS + 3


async def load(
    port: int, stream: bool, concurrency: int, duration: float, api: str = "chat"
) -> Result:
    request = build_request(port, stream, api)
    latencies: list[float] = []
    errors = 0
    count = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors, count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and count < MAX_REQUESTS:
                began = time.perf_counter()
                count += 1
                try:
                    writer.write(request)
                    status, body = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                took = time.perf_counter() - began
                if status == 200 and valid(body, stream, api):
                    latencies.append(took)
                else:
                    errors += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(len(latencies), errors, time.perf_counter() - began, latencies)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    port: int,
    pid: int,
    stream: bool,
    concurrency: int,
    duration: float,
    api: str = "chat",
    stub_pid: int | None = None,
) -> Result:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(load(port, stream, min(concurrency, 4), min(1.0, duration / 2), api))  # warm up
    stub_pid = stub_pid or pid
    before, stub_before, load_before = cpu_seconds(pid), cpu_seconds(stub_pid), own_cpu_seconds()
    result = runner(load(port, stream, concurrency, duration, api))
    result.cpu = cpu_seconds(pid) - before
    result.stub_cpu = cpu_seconds(stub_pid) - stub_before
    result.load_cpu = own_cpu_seconds() - load_before
    return result


# ---- main -----------------------------------------------------------------------------------


def litellm_config(stub_url: str, path: Path) -> None:
    path.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {stub_url}\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  telemetry: false\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds per target, pooled per row"
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument("--no-install", action="store_true", help="do not install LiteLLM")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also measure, in the same run, a chat-server importing nodetool from DIR "
        "(e.g. a worktree of main): targets `base` and `base-resp`",
    )
    parser.add_argument(
        "--httpx",
        action="store_true",
        help="also measure, in the same run, a chat-server whose openai provider uses httpx "
        "instead of nodetool.providers.http_client: targets `httpx` and `httpx-resp`",
    )
    parser.add_argument(
        "--python",
        metavar="PY",
        help="also measure, in the same run, this checkout's chat-server run by another "
        "interpreter PY (a virtualenv's python with nodetool's dependencies): targets "
        "`other-py` and `other-py-resp`",
    )
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stub-token-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        serve_stub(args.stub, args.stub_token_delay)
        return

    work = Path(tempfile.mkdtemp(prefix="nodetool-bench-"))
    procs: list[subprocess.Popen] = []
    targets: dict[str, tuple[int, int, str]] = {}  # name -> (port, pid, api)
    notes: list[str] = []
    try:
        stub_port = free_port()
        stub_url = f"http://127.0.0.1:{stub_port}/v1"
        procs.append(
            start(
                [sys.executable, __file__, "--stub", str(stub_port)],
                {},
                f"{stub_url}/models",
                work / "stub.log",
            )
        )
        targets["direct"] = (stub_port, procs[-1].pid, "chat")

        port = free_port()
        env = {
            "OPENAI_BASE_URL": stub_url,
            "OPENAI_API_KEY": "sk-bench",
            "AUTH_PROVIDER": "static",
            "WORKER_AUTH_TOKEN": API_KEY,
            "NODETOOL_DATA_DIR": str(work / "data"),
            "NODETOOL_CONFIG_DIR": str(work / "config"),
        }
        # the checkout this script is in (the venv's `nodetool` may be installed from another)
        own_env = {**env, "PYTHONPATH": str(ROOT)}
        procs.append(start_gateway(sys.executable, port, own_env, str(ROOT), work / "nodetool.log"))
        targets["nodetool"] = (port, procs[-1].pid, "chat")
        targets["responses"] = (port, procs[-1].pid, "responses")  # same server
        targets["resp-nostore"] = (port, procs[-1].pid, "nostore")
        if args.baseline:
            port = free_port()
            baseline = str(Path(args.baseline).resolve())
            base_env = {**env, "PYTHONPATH": baseline}
            base_env["NODETOOL_DATA_DIR"] = str(work / "base-data")
            procs.append(start_gateway(sys.executable, port, base_env, baseline, work / "b.log"))
            targets["base"] = (port, procs[-1].pid, "chat")
            targets["base-resp"] = (port, procs[-1].pid, "responses")
            targets["base-nostore"] = (port, procs[-1].pid, "nostore")
        if args.python:
            port = free_port()
            other_env = {**own_env, "NODETOOL_DATA_DIR": str(work / "other-py-data")}
            procs.append(start_gateway(args.python, port, other_env, str(ROOT), work / "o.log"))
            targets["other-py"] = (port, procs[-1].pid, "chat")
            targets["other-py-resp"] = (port, procs[-1].pid, "responses")
        if args.httpx:
            port = free_port()
            httpx_env = {**own_env, "NODETOOL_DATA_DIR": str(work / "httpx-data")}
            cmd = [sys.executable, str(HERE / "httpx_gateway.py"), "chat-server"]
            cmd += ["--port", str(port), "--provider", "openai", "--log-level", "warning"]
            procs.append(start(cmd, httpx_env, f"http://127.0.0.1:{port}/health", work / "x.log"))
            targets["httpx"] = (port, procs[-1].pid, "chat")
            targets["httpx-resp"] = (port, procs[-1].pid, "responses")

        if not args.no_litellm:
            exe, why = litellm_binary(install=not args.no_install)
            if exe is None:
                notes.append(f"LiteLLM proxy: {why}; column (c) skipped")
            else:
                port = free_port()
                config = work / "litellm.yaml"
                litellm_config(stub_url, config)
                env = {
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "LITELLM_LOG": "ERROR",
                    "LITELLM_MASTER_KEY": API_KEY,
                }
                cmd = [str(exe), "--config", str(config), "--host", "127.0.0.1"]
                cmd += ["--port", str(port), "--num_workers", "1"]
                try:
                    ready = f"http://127.0.0.1:{port}/health/liveliness"
                    procs.append(start(cmd, env, ready, work / "litellm.log"))
                    targets["litellm"] = (port, procs[-1].pid, "chat")
                except (RuntimeError, TimeoutError) as exc:
                    log = (work / "litellm.log").read_text()[-2000:]
                    notes.append(f"LiteLLM proxy failed to start ({exc}): {log}")
        else:
            notes.append("LiteLLM proxy: skipped (--no-litellm)")

        rounds: dict[tuple[str, bool, int], list[Result]] = {}
        for number in range(1, args.rounds + 1):
            for stream in (False, True):
                for concurrency in (1, 32):
                    for name, (target_port, pid, api) in targets.items():
                        result = measure(
                            target_port, pid, stream, concurrency, args.duration, api, procs[0].pid
                        )
                        rounds.setdefault((name, stream, concurrency), []).append(result)
                        print(
                            f"  round {number} measured {name:12s} "
                            f"{'stream' if stream else 'json':6s} c={concurrency:<3d} "
                            f"{result.rps:8.1f} req/s",
                            flush=True,
                        )
        results = {key: pooled(runs) for key, runs in rounds.items()}
        report(results, list(targets), notes, args.duration * args.rounds, CHUNKS)
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

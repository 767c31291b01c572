"""Idle `/chat` socket memory: `nodetool serve` vs a bare uvicorn WebSocket app.

    .venv/bin/python benchmarks/idle_sockets.py [--sockets 2000] [--full]

For each server (in its own process, on 127.0.0.1): read its RSS, open N WebSocket
connections that then sit idle, wait for the RSS to settle, read it again, and print the
memory per connection side by side with the ratio (target: `/chat` within 1.15x of the bare
app). Afterwards one chat turn runs on the first `/chat` socket (answered by the OpenAI stub
of benchmarks/gateway.py), to show the server still serves with N sockets held.
`--full` holds 10,000 sockets (the issue's figure); the default is smaller for quick runs.
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

import msgpack

HERE = Path(__file__).resolve().parent
SETTLE = 3.0


async def _bare_app(scope, receive, send) -> None:  # noqa: ANN001 - raw ASGI
    """Accepts a WebSocket and holds it, answering nothing: the floor for a held socket."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


def start(cmd: list[str], env: dict[str, str], ready: str, log: Path) -> subprocess.Popen:
    out = log.open("w")
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    wait_ready(ready, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def hold(url: str, pid: int, count: int, turn: bool) -> dict[str, float]:
    """Open `count` sockets, measure RSS before/after; optionally run a turn on the first."""
    from websockets.asyncio.client import connect

    await asyncio.sleep(1.0)
    before = rss_kib(pid)
    sockets = []
    began = time.perf_counter()
    for start_at in range(0, count, 200):  # in batches, to stay under the accept backlog
        batch = min(200, count - start_at)
        opened = await asyncio.gather(
            *(connect(url, ping_interval=None, max_size=None) for _ in range(batch))
        )
        sockets.extend(opened)
    opened_in = time.perf_counter() - began
    await asyncio.sleep(SETTLE)
    after = rss_kib(pid)
    result = {"before": before, "after": after, "open_s": opened_in, "turn_ms": float("nan")}
    if turn:
        first = sockets[0]
        began = time.perf_counter()
        message = {"type": "message", "role": "user", "content": "hi", "model": "stub-model"}
        await first.send(json.dumps(message))
        while True:
            raw = await asyncio.wait_for(first.recv(), 30)
            # a socket idle for long gets the server's keep-alive `ping` frame, in MessagePack
            # (the default) while the client has sent nothing yet
            frame = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw)
            if frame.get("type") == "ping":
                continue
            if frame.get("type") == "error":
                raise RuntimeError(f"turn failed: {frame}")
            if frame.get("type") == "chunk" and frame.get("done"):
                break
        result["turn_ms"] = (time.perf_counter() - began) * 1000
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=2000, help="idle sockets per server")
    parser.add_argument("--full", action="store_true", help="10,000 sockets (the issue's figure)")
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        import uvicorn

        uvicorn.run(_bare_app, host="127.0.0.1", port=args.bare, log_level="warning")
        return
    count = 10_000 if args.full else args.sockets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = count + 512  # per process: the client here, each server in its own
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"open-file limit {hard} is too low for {count} sockets (need {need})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))

    work = Path(tempfile.mkdtemp(prefix="nodetool-idle-"))
    procs: list[subprocess.Popen] = []
    results: dict[str, dict[str, float]] = {}
    try:
        stub_port = free_port()
        stub = [sys.executable, str(HERE / "gateway.py"), "--stub", str(stub_port)]
        stub_url = f"http://127.0.0.1:{stub_port}/v1"
        procs.append(start(stub, {}, f"{stub_url}/models", work / "stub.log"))

        port = free_port()
        bare = [sys.executable, __file__, "--bare", str(port)]
        procs.append(start(bare, {}, f"http://127.0.0.1:{port}/", work / "bare.log"))
        results["bare"] = asyncio.run(hold(f"ws://127.0.0.1:{port}/", procs[-1].pid, count, False))
        stop(procs.pop())

        port = free_port()
        env = {
            "OPENAI_BASE_URL": stub_url,
            "OPENAI_API_KEY": "sk-bench",
            "NODETOOL_DATA_DIR": str(work / "data"),
            "NODETOOL_CONFIG_DIR": str(work / "config"),
        }
        nodetool = shutil.which("nodetool", path=str(Path(sys.executable).parent)) or "nodetool"
        cmd = [nodetool, "serve", "--port", str(port), "--log-level", "warning", "--no-ui"]
        procs.append(start(cmd, env, f"http://127.0.0.1:{port}/health", work / "serve.log"))
        url = f"ws://127.0.0.1:{port}/chat"
        results["/chat"] = asyncio.run(hold(url, procs[-1].pid, count, True))
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    report(results, count)


def report(results: dict[str, dict[str, float]], count: int) -> None:
    print(f"\nidle WebSocket memory: {count} sockets held per server, RSS settled {SETTLE:g} s")
    head = ("server", "RSS before", "RSS after", "KiB/socket", "open s", "turn ms")
    print("{:8s} {:>11s} {:>11s} {:>11s} {:>7s} {:>8s}".format(*head))
    per = {}
    for name, r in results.items():
        per[name] = (r["after"] - r["before"]) / count
        print(
            f"{name:8s} {r['before']:9.0f}Ki {r['after']:9.0f}Ki {per[name]:11.1f} "
            f"{r['open_s']:7.2f} {r['turn_ms']:8.1f}"
        )
    ratio = per["/chat"] / per["bare"] if per["bare"] > 0 else float("inf")
    verdict = "PASS" if ratio <= 1.15 else "FAIL"
    print(f"\n[{verdict}] /chat per-socket memory: {ratio:.2f}x the bare app's (target <= 1.15x)")


if __name__ == "__main__":
    main()

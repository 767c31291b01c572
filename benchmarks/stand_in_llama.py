#!/usr/bin/env python3
"""A stand-in for llama-server that answers at once, for `local_model.py --overhead`.

Takes llama-server's arguments (only `--host`, a Unix socket path or an address, and `--port`
matter) and serves `/health`, `/slots` and a streamed `/completion` of seven fixed tokens in
llama-server's event shape, with no model behind it: what remains of a request's time to first
token through nodetool is the gateway's own share.
"""

from __future__ import annotations

import asyncio
import json
import sys

TOKENS = [" The", " capital", " of", " France", " is", " Paris", "."]


def _chunk(event: dict) -> bytes:
    data = b"data: " + json.dumps(event).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _reply(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % len(body) + body


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
FINAL = {"content": "", "stop": True, "stop_type": "eos", "tokens_evaluated": 20}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":")[1]))
            if path == b"/completion":
                writer.write(STREAM_HEAD)
                for token in TOKENS:
                    writer.write(_chunk({"content": token, "stop": False}))
                    await writer.drain()
                writer.write(_chunk({**FINAL, "tokens_predicted": len(TOKENS)}) + b"0\r\n\r\n")
            else:
                writer.write(_reply(b"[]" if path == b"/slots" else b'{"status":"ok"}'))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def main(argv: list[str]) -> None:
    host = argv[argv.index("--host") + 1]
    if "--port" in argv:
        server = await asyncio.start_server(_serve, host, int(argv[argv.index("--port") + 1]))
    else:
        server = await asyncio.start_unix_server(_serve, host)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv))

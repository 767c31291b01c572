"""The OpenAI stub in its own process: `python -m tests.reliability.stub_process PORT`.

The load tests use it so the stub, the server under test and the clients each get their own
interpreter. Recording of request bodies is switched off (it would grow without bound).
"""

from __future__ import annotations

import sys

import uvicorn

from tests.stubs.openai_stub import OpenAIStub


class _NoRecord(list):
    """A list that forgets what is appended (the stub records every request otherwise)."""

    def append(self, item: object) -> None:
        return None


def main() -> None:
    port = int(sys.argv[1])
    stub = OpenAIStub()
    stub.requests = _NoRecord()
    stub.headers = _NoRecord()
    uvicorn.run(
        stub.asgi,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="off",
        interface="asgi3",
        backlog=4096,
    )


if __name__ == "__main__":
    main()

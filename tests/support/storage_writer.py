"""A writer process for the durability test: adds messages forever, printing each ack.

Usage: python -m tests.support.storage_writer <data_dir> <database_url|-> <user> <thread_id>

Several concurrent tasks add messages to one thread; after `messages.add` returns, the
message id and its content are printed (one `ack <id> <content>` line, flushed), so every line
the parent reads is a write the store acknowledged. The parent SIGKILLs this process.
"""

from __future__ import annotations

import asyncio
import sys

from nodetool.config import Settings
from nodetool.storage import open_store

WRITERS = 4


async def main(data_dir: str, url: str, user: str, thread_id: str) -> None:
    settings = Settings(data_dir=data_dir, database_url=None if url == "-" else url, _env_file=None)
    store = await open_store(settings)
    await store.threads.ensure(user, thread_id)
    print("ready", flush=True)

    async def writer(number: int) -> None:
        count = 0
        while True:
            content = f"w{number}-{count}-" + "x" * (count % 7) * 100
            message = await store.messages.add(
                user, thread_id, {"role": "user", "content": content}
            )
            sys.stdout.write(f"ack {message['id']} {content}\n")
            sys.stdout.flush()
            count += 1

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

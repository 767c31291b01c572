"""The embedded model's admission with the real model: concurrent chats share a batch, and a
reproducible request (greedy, or a seed) is decoded alone, so its tokens never depend on the
traffic around it."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from nodetool.config import Settings
from nodetool.providers.local import MODEL_ID, LocalProvider
from nodetool.types.messages import ChatOptions, Message
from tests.support.collect import collect
from tests.support.local_model import needs_model, shared_data_dir

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.local_model, needs_model]
QUESTIONS = [
    "What is the capital of France?",
    "List the numbers from one to fifty.",
    "Who wrote Hamlet?",
    "Name three colours.",
]


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


class SlotWatch:
    """Polls the child's `/slots` while requests run: what was being decoded at once."""

    def __init__(self, provider: LocalProvider) -> None:
        self.provider = provider
        self.samples: list[list[dict]] = []  # the processing slots of each poll

    async def run(self) -> None:
        process = await self.provider.process()
        client = await self.provider._client(await process.ensure())
        while True:
            slots = json.loads(await (await client.get("/slots")).read())
            self.samples.append([slot for slot in slots if slot.get("is_processing")])
            await asyncio.sleep(0.005)

    @contextlib.asynccontextmanager
    async def watching(self):
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def most_at_once(self) -> int:
        return max((len(busy) for busy in self.samples), default=0)

    def greedy_shared(self) -> int:
        """Polls where a greedy request was decoded beside another request."""
        return sum(
            1
            for busy in self.samples
            if len(busy) > 1 and any(_temperature(slot) <= 0 for slot in busy)
        )


def _temperature(slot: dict) -> float:
    return float(slot.get("params", {}).get("temperature", 1.0))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=shared_data_dir(tmp_path_factory))


@pytest.fixture
async def provider(settings: Settings):
    provider = LocalProvider(settings)
    yield provider
    await provider.aclose()


async def ask(provider: LocalProvider, question: str, **options) -> str:
    result = await collect(
        provider.stream_chat(user(question), MODEL_ID, options=ChatOptions(**options))
    )
    return result.message.content or ""


async def test_concurrent_chats_are_decoded_together(
    provider: LocalProvider, settings: Settings
) -> None:
    assert settings.local_parallel >= 4
    watch = SlotWatch(provider)
    await ask(provider, "Hi", max_tokens=1)  # the child is up before the watch starts
    async with watch.watching():
        answers = await asyncio.gather(
            *(ask(provider, q, temperature=0.7, max_tokens=32) for q in QUESTIONS)
        )
    assert all(answers)
    assert watch.most_at_once() >= 2  # sampled requests share the child's batch


async def test_reproducible_requests_keep_their_tokens_under_load(
    provider: LocalProvider,
) -> None:
    greedy = {"temperature": 0, "max_tokens": 24}
    alone = [await ask(provider, q, **greedy) for q in QUESTIONS]
    seeded = await ask(provider, QUESTIONS[0], temperature=0.9, seed=7, max_tokens=24)
    watch = SlotWatch(provider)
    async with watch.watching():
        busy = [ask(provider, q, temperature=0.8, max_tokens=32) for q in QUESTIONS]
        together = await asyncio.gather(
            *busy[:2],
            *(ask(provider, q, **greedy) for q in QUESTIONS),
            ask(provider, QUESTIONS[0], temperature=0.9, seed=7, max_tokens=24),
            *busy[2:],
        )
    assert together[2:6] == alone  # greedy: the same tokens as when it was alone
    assert together[6] == seeded  # a fixed seed too
    assert watch.samples and watch.greedy_shared() == 0
    assert watch.most_at_once() >= 2  # the sampled ones still shared a batch


async def test_reproducible_requests_may_share_the_batch_when_configured(
    settings: Settings,
) -> None:
    provider = LocalProvider(settings.model_copy(update={"local_reproducible_alone": False}))
    watch = SlotWatch(provider)
    await ask(provider, "Hi", max_tokens=1)
    async with watch.watching():
        await asyncio.gather(*(ask(provider, q, temperature=0, max_tokens=16) for q in QUESTIONS))
    assert watch.greedy_shared() > 0
    await provider.aclose()


async def test_a_given_up_request_is_settled_before_a_reproducible_one(
    provider: LocalProvider,
) -> None:
    alone = await ask(provider, QUESTIONS[2], temperature=0, max_tokens=24)
    stream = provider.stream_chat(
        user(QUESTIONS[1]), MODEL_ID, options=ChatOptions(temperature=0.8, max_tokens=400)
    )
    await anext(stream)  # under way, then given up: the child stops it at its next token
    await stream.aclose()
    watch = SlotWatch(provider)
    async with watch.watching():
        again = await ask(provider, QUESTIONS[2], temperature=0, max_tokens=24)
    assert again == alone
    assert watch.greedy_shared() == 0

"""The openai-agents SDK's default path (`Agent` + `Runner.run`, Responses API, the SDK's own
default model name) with a function tool, against every server and the OpenAI-compatible stub.

The SDK's default model is mapped with a model alias, as a user would do.
"""

from __future__ import annotations

import pytest
from agents import (
    Agent,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import get_default_model
from openai import AsyncOpenAI

from tests.support.v1 import KINDS, running

CITIES: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    CITIES.append(city)
    return f"sunny in {city}"


@pytest.fixture(scope="module", params=KINDS)
def server(request, openai_stub, tmp_path_factory):
    aliases = {get_default_model(): "openai/stub-model"}
    path = tmp_path_factory.mktemp(f"agents-{request.param}")
    with running(request.param, openai_stub, path, model_aliases=aliases) as srv:
        yield srv


async def test_agent_with_function_tool(server, openai_stub) -> None:
    set_tracing_disabled(True)
    set_default_openai_api("responses")
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    set_default_openai_client(client, use_for_tracing=False)
    agent = Agent(name="Forecaster", instructions="Use the tool.", tools=[get_weather])
    CITIES.clear()
    openai_stub.reset()
    result = await Runner.run(agent, 'Weather in Paris? [[tool:get_weather {"city": "Paris"}]]')
    assert CITIES == ["Paris"]  # the SDK ran our function tool between the two requests
    assert result.final_output == "Tool results: sunny in Paris"
    first, second = openai_stub.requests[-2:]
    assert first["model"] == second["model"] == "stub-model"
    assert "reasoning_effort" in first  # the SDK's reasoning.effort hint is passed on
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    await client.close()


async def test_agent_streamed(server, openai_stub) -> None:
    set_tracing_disabled(True)
    set_default_openai_api("responses")
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    set_default_openai_client(client, use_for_tracing=False)
    agent = Agent(name="Streamer", instructions="Answer.", tools=[get_weather])
    CITIES.clear()
    run = Runner.run_streamed(agent, 'Oslo? [[tool:get_weather {"city": "Oslo"}]]')
    kinds = [event.type async for event in run.stream_events()]
    assert "raw_response_event" in kinds and CITIES == ["Oslo"]
    assert run.final_output == "Tool results: sunny in Oslo"
    await client.close()

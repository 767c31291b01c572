"""The OpenAI surface on the embedded model, through a real `nodetool chat-server` and the SDK:
embeddings, legacy completions, log probabilities, structured output and forced tool calls."""

from __future__ import annotations

import base64
import json
import math

import pytest
from openai import OpenAI
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from tests.support.local_model import needs_model, shared_data_dir
from tests.support.servers import CliServer

pytestmark = [pytest.mark.local_model, needs_model]
MODEL = "gemma-3-270m"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    env = {"NODETOOL_DATA_DIR": str(shared_data_dir(tmp_path_factory))}
    with CliServer("chat-server", env=env) as server:
        yield OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=120, max_retries=0)


def test_embeddings(client: OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(
        model=MODEL, input=["cats", "dogs", "tax law"], encoding_format="float"
    )
    reply = CreateEmbeddingResponse.model_validate(json.loads(raw.text))
    vectors = [item.embedding for item in reply.data]
    assert [item.index for item in reply.data] == [0, 1, 2]
    assert all(math.isclose(sum(v * v for v in vec), 1.0, rel_tol=1e-3) for vec in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])  # cats ~ dogs
    assert reply.usage.prompt_tokens > 0
    b64 = client.embeddings.create(model=MODEL, input="cats", encoding_format="base64")
    packed = base64.b64decode(b64.data[0].embedding)  # type: ignore[arg-type]
    assert len(packed) == 4 * len(vectors[0])  # little-endian float32s
    with pytest.raises(Exception) as info:
        client.embeddings.create(model=MODEL, input="cats", dimensions=64)
    assert getattr(info.value, "status_code", None) == 400


def test_legacy_completion_and_echo(client: OpenAI) -> None:
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=4, temperature=0
    )
    completion = Completion.model_validate(json.loads(raw.text))
    assert completion.choices[0].text.startswith(" 6")  # the raw prompt, no chat transcript
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage and completion.usage.completion_tokens == 4
    echoed = client.completions.create(
        model=MODEL, prompt="One, two,", max_tokens=3, temperature=0, echo=True, logprobs=2
    )
    assert echoed.choices[0].text.startswith("One, two,")
    chunks = list(
        client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices)


def test_chat_logprobs(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=8,
        logprobs=True,
        top_logprobs=3,
    )
    reply = ChatCompletion.model_validate(json.loads(raw.text))
    tokens = reply.choices[0].logprobs.content
    assert tokens and all(t.logprob <= 0 for t in tokens)
    assert all(len(t.top_logprobs) == 3 for t in tokens)
    assert "Paris" in "".join(t.token for t in tokens)


def test_structured_output_and_forced_tool_call(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a city and its country."}],
        temperature=0,
        max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    place = json.loads(reply.choices[0].message.content or "")
    assert set(place) == {"city", "country"}
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],
        tool_choice="required",
        temperature=0,
        max_tokens=48,
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    [call] = reply.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_responses_on_the_local_model(client: OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model=MODEL, input="What is the capital of France?", max_output_tokens=16
    )
    response = Response.model_validate(json.loads(raw.text))
    assert response.status == "completed" and "Paris" in response.output_text

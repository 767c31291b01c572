"""/v1/embeddings and legacy /v1/completions with the real openai SDK (openai and ollama
upstreams), logprobs on chat completions, fields a provider cannot honour (400 + `param`), and
upstream addresses kept out of client-facing errors.

Objects are validated with pydantic against the SDK's `CreateEmbeddingResponse`,
`Completion` and `ChatCompletion(Chunk)` types.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.stubs.ollama_stub import OllamaStub
from tests.support.v1 import KINDS, MODEL, running, sse_data, user


@pytest.fixture(scope="module")
def ollama():
    with OllamaStub() as stub:
        yield stub


@pytest.fixture(scope="module", params=KINDS)
def server(request, openai_stub, ollama, tmp_path_factory):
    kind = request.param
    path = tmp_path_factory.mktemp(f"emb-{kind}")
    with running(kind, openai_stub, path, default_model=MODEL, ollama_host=ollama.url) as srv:
        yield srv


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def raw_json(response) -> dict:
    assert response.http_response.status_code == 200, response.http_response.text
    return response.http_response.json()


def assert_400(exc: pytest.ExceptionInfo, param: str) -> None:
    body = exc.value.body
    assert exc.value.status_code == 400
    assert body["param"] == param and body["type"] == "invalid_request_error", body


# ---- embeddings ---------------------------------------------------------------------------


def test_embeddings_float_and_base64(client, openai_stub) -> None:
    raw = client.embeddings.with_raw_response.create(
        model=MODEL, input=["alpha", "beta"], encoding_format="float"
    )
    body = CreateEmbeddingResponse.model_validate(raw_json(raw))
    assert [d.index for d in body.data] == [0, 1] and len(body.data[0].embedding) == 8
    assert body.model == MODEL and body.usage.prompt_tokens == 2
    # the SDK asks for base64 by default and decodes it: the same vectors come back
    decoded = client.embeddings.create(model=MODEL, input=["alpha", "beta"])
    for ours, theirs in zip(decoded.data, body.data, strict=True):
        assert ours.embedding == pytest.approx(theirs.embedding, rel=1e-6)
    path, sent = openai_stub.extra_requests[-1]
    assert path == "embeddings" and sent["input"] == ["alpha", "beta"]


def test_embeddings_dimensions_pass_through_on_openai(client, openai_stub) -> None:
    body = client.embeddings.create(model=MODEL, input="one", dimensions=3)
    assert len(body.data[0].embedding) == 3
    assert openai_stub.extra_requests[-1][1]["dimensions"] == 3


def test_embeddings_on_ollama(client, ollama) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="ollama/llama-stub", input="x", encoding_format="float"
    )
    body = CreateEmbeddingResponse.model_validate(raw_json(raw))
    assert body.data[0].embedding == [0.5, 0.5, 0.5, 0.5]
    assert body.model == "ollama/llama-stub"
    assert ollama.extra_requests[-1] == ("embed", {"model": "llama-stub", "input": ["x"]})
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model="ollama/llama-stub", input="x", dimensions=2)
    assert_400(exc, "dimensions")


@pytest.mark.parametrize(
    ("body", "param"),
    [({"input": ""}, "input"), ({"input": [1, 2]}, "input"), ({}, "input")],
)
def test_embeddings_bad_input(server, body, param) -> None:
    raw = httpx.post(server.url + "/v1/embeddings", json={"model": MODEL, **body}, timeout=10)
    assert raw.status_code == 400 and raw.json()["error"]["param"] == param, raw.text


# ---- legacy completions -------------------------------------------------------------------


def test_completion_plain_and_streamed(client, openai_stub) -> None:
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt="Once upon", max_tokens=20, temperature=0.2, stop=["\n"]
    )
    body = Completion.model_validate(raw_json(raw))
    assert body.choices[0].text == "Echo: Once upon" and body.choices[0].finish_reason == "stop"
    sent = openai_stub.extra_requests[-1][1]
    assert (sent["prompt"], sent["max_tokens"], sent["stop"]) == ("Once upon", 20, ["\n"])
    chunks = list(
        client.completions.create(
            model=MODEL, prompt="a b", stream=True, stream_options={"include_usage": True}
        )
    )
    for chunk in chunks:
        data = chunk.model_dump(mode="json")
        for choice in data["choices"]:  # streamed chunks carry null until the last, as OpenAI's
            choice["finish_reason"] = choice["finish_reason"] or "stop"
        Completion.model_validate(data)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Echo: a b"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_completion_echo_and_logprobs_on_openai(client) -> None:
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt="Hi", echo=True, logprobs=1
    )
    body = Completion.model_validate(raw_json(raw))
    choice = body.choices[0]
    assert choice.text == "HiEcho: Hi"
    assert choice.logprobs is not None and choice.logprobs.tokens == ["Hi", "Echo: ", "Hi"]
    assert choice.logprobs.text_offset == [0, 2, 8]


def test_completion_prompt_list_gives_one_choice_each(client) -> None:
    body = client.completions.create(model=MODEL, prompt=["x", "y"])
    assert [(c.index, c.text) for c in body.choices] == [(0, "Echo: x"), (1, "Echo: y")]


def test_completion_on_ollama_uses_generate_raw(client, ollama) -> None:
    body = client.completions.create(model="ollama/llama-stub", prompt="raw text")
    Completion.model_validate(body.model_dump(mode="json"))
    assert body.choices[0].text == "Echo: raw text"
    path, sent = ollama.extra_requests[-1]
    assert path == "generate" and sent["raw"] is True and sent["prompt"] == "raw text"
    for field, value in (("echo", True), ("logprobs", 0)):
        with pytest.raises(openai.BadRequestError) as exc:
            client.completions.create(model="ollama/llama-stub", prompt="x", **{field: value})
        assert_400(exc, field)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "n": 2}, "n"),
        ({"prompt": "x", "n": True}, "n"),
        ({"prompt": "", "best_of": True}, "best_of"),  # found by the schema fuzzing
        ({}, "prompt"),
    ],
)
def test_completion_bad_input(server, body, param) -> None:
    raw = httpx.post(server.url + "/v1/completions", json={"model": MODEL, **body}, timeout=10)
    assert raw.status_code == 400 and raw.json()["error"]["param"] == param, raw.text


# ---- logprobs and gated fields on chat completions -----------------------------------------


def test_chat_logprobs_pass_through(client, openai_stub) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=user("hi there"), logprobs=True, top_logprobs=2
    )
    body = ChatCompletion.model_validate(raw_json(raw))
    sent = openai_stub.requests[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    content = body.choices[0].logprobs.content
    assert [t.token for t in content] == ["Echo: ", "hi ", "there"]
    assert len(content[0].top_logprobs) == 2


def test_chat_logprobs_streamed(server) -> None:
    raw = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": MODEL, "messages": user("x y"), "stream": True, "logprobs": True},
        timeout=10,
    )
    chunks = [
        ChatCompletionChunk.model_validate(json.loads(d))
        for d in sse_data(raw.text)
        if d != "[DONE]"
    ]
    with_text = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(c.choices[0].delta.content for c in with_text) == "Echo: x y"
    for chunk in with_text:  # each text chunk carries its own tokens' logprobs
        tokens = [t.token for t in chunk.choices[0].logprobs.content]
        assert "".join(tokens) == chunk.choices[0].delta.content


def test_chat_logprobs_refused_where_unsupported(client) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="ollama/llama-stub", messages=user("x"), logprobs=True)
    assert_400(exc, "logprobs")
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model="ollama/llama-stub", input="x", top_logprobs=1)
    assert_400(exc, "top_logprobs")
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=user("x"), top_logprobs=2)
    assert_400(exc, "top_logprobs")
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as exc:  # Ollama cannot force a tool call
        client.chat.completions.create(
            model="ollama/llama-stub", messages=user("x"), tools=[tool], tool_choice="required"
        )
    assert_400(exc, "tool_choice")


def test_bookkeeping_fields_are_accepted(client) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=user("keep"), metadata={"a": "b"}, store=True, user="u"
    )
    assert reply.choices[0].message.content == "Echo: keep"


# ---- upstream addresses stay out of client-facing errors -----------------------------------


def test_errors_hide_the_upstream_address(tmp_path, openai_stub) -> None:
    from tests.support.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    with running("chat-server", openai_stub, tmp_path, openai_base_url=dead) as srv:
        for path, body in (
            ("/v1/chat/completions", {"model": "openai/x", "messages": user("x")}),
            ("/v1/responses", {"model": "openai/x", "input": "x"}),
            ("/v1/embeddings", {"model": "openai/x", "input": "x"}),
            ("/v1/completions", {"model": "openai/x", "prompt": "x"}),
        ):
            raw = httpx.post(srv.url + path, json=body, timeout=10)
            assert raw.status_code == 502, raw.text
            message = raw.json()["error"]["message"]
            assert "127.0.0.1" not in message and dead not in message, message
            assert "sk-test" not in raw.text
    with running("chat-server", openai_stub, tmp_path) as srv:
        raw = httpx.post(
            srv.url + "/v1/chat/completions",
            json={"model": MODEL, "messages": user("a b c d [[reset:2]]"), "stream": True},
            timeout=10,
        )
        error = [d for d in sse_data(raw.text) if '"error"' in d]
        assert error and "127.0.0.1" not in error[0] and "http://" not in error[0], raw.text


# ---- other providers and capabilities ------------------------------------------------------


def test_responses_on_ollama(client, ollama) -> None:
    from openai.types.responses import Response

    raw = client.responses.with_raw_response.create(model="ollama/llama-stub", input="hi")
    assert Response.model_validate(raw_json(raw)).output_text == "Echo: hi"
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    first = client.responses.create(
        model="ollama/llama-stub", input='q [[tool:lookup {"q": 1}]]', tools=[tool]
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    second = client.responses.create(
        model="ollama/llama-stub",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "42"}],
    )
    assert second.output_text == "Tool results: 42"
    assert ollama.requests[-1]["messages"][-1] == {
        "role": "tool",
        "content": "42",
        "tool_name": "lookup",
    }


def test_models_say_which_embed(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.stubs.openai_stub import OpenAIStub

    with OpenAIStub(models=["chatty", "text-embed-small"]) as stub:
        with running("chat-server", stub, tmp_path, default_model="chatty") as srv:
            data = httpx.get(srv.url + "/v1/models").json()["data"]
        caps = {m["id"]: m["capabilities"] for m in data}
        assert (caps["chatty"], caps["text-embed-small"]) == (["chat"], ["embeddings"])
        env = {**os.environ, "OPENAI_BASE_URL": stub.url, "OPENAI_API_KEY": "sk-test"}
        listing = subprocess.run(
            [sys.executable, "-m", "nodetool", "models", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "PYTHONPATH": os.getcwd()},
        )
    models = {m["id"]: m["capabilities"] for m in json.loads(listing.stdout)["models"]}
    assert models["text-embed-small"] == ["embeddings"], listing.stderr


def test_a_provider_without_a_capability_is_a_400_on_model(openai_stub, tmp_path) -> None:
    """A provider that implements neither `embed` nor `stream_completion` nor `honours`
    (like the scripted fake) gets 400s naming the field, not a 500 or a silent drop."""
    from nodetool.api.apps import FACTORIES
    from nodetool.providers.registry import registry_of
    from tests.fakes import FakeProvider
    from tests.support.servers import ServerThread
    from tests.support.v1 import stub_settings

    app = FACTORIES["chat-server"](stub_settings(openai_stub, tmp_path))
    with ServerThread(app) as srv:
        runtime = app.state.runtime
        runtime.providers = runtime.engine.providers = registry_of([FakeProvider("fake")])
        for path, body, param in (
            ("/v1/embeddings", {"model": "fake-model", "input": "x"}, "model"),
            ("/v1/completions", {"model": "fake-model", "prompt": "x"}, "model"),
            (
                "/v1/chat/completions",
                {"model": "fake-model", "messages": user("x"), "logprobs": True},
                "logprobs",
            ),
            (
                "/v1/responses",
                {"model": "fake-model", "input": "x", "top_logprobs": 1},
                "top_logprobs",
            ),
            (
                "/v1/responses",
                {"model": "fake-model", "input": "x", "include": ["message.output_text.logprobs"]},
                "include",
            ),
            (
                "/v1/chat/completions",
                {"model": "fake-model", "messages": user("x"), "tool_choice": "required"},
                "tool_choice",
            ),
            (
                "/v1/chat/completions",
                {
                    "model": "fake-model",
                    "messages": user("x"),
                    "response_format": {"type": "json_object"},
                },
                "response_format",
            ),
            (
                "/v1/responses",
                {"model": "fake-model", "input": "x", "text": {"format": {"type": "json_object"}}},
                "text.format",
            ),
        ):
            raw = httpx.post(srv.url + path, json=body, timeout=10)
            assert raw.status_code == 400, raw.text
            error = raw.json()["error"]
            assert error["param"] == param and "fake" in error["message"], error
        for harmless in ({"tool_choice": "auto"}, {"response_format": {"type": "text"}}):
            body = {"model": "fake-model", "messages": user("x"), **harmless}
            raw = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=10)
            assert raw.status_code == 200, raw.text

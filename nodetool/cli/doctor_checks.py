"""The checks behind `nodetool doctor`: what this machine has and whether each part works.

Each check returns a `Check`; `needed` says whether the configuration needs that part (a failed
needed check makes the command exit 1). The generation check runs the model in a throw-away
child, so a crash (an illegal instruction, say) is reported, not suffered.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nodetool.config import Settings

Status = Literal["ok", "warn", "fail", "skip"]
_SHOWN_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "amx_tile", "asimd")


@dataclass(slots=True)
class Check:
    name: str
    status: Status
    detail: str
    needed: bool = True


def python_check() -> Check:
    """The version, and the interpreter a virtualenv was made from (its build sets the speed:
    see `scripts/python.sh`)."""
    version = platform.python_version()
    ok = sys.version_info >= (3, 11)
    detail = f"{version} at {sys.executable}"
    if sys.prefix != sys.base_prefix:
        detail += f" (a virtualenv of {os.path.realpath(sys.executable)})"
    return Check("python", "ok" if ok else "fail", detail)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_check() -> Check:
    from nodetool.providers.llama_build import cpu_features, machine

    have = cpu_features()
    shown = " ".join(f for f in _SHOWN_FEATURES if f in have)
    return Check("cpu", "ok", f"{machine()}, {cpu_name()}, {os.cpu_count()} cores: {shown}")


def build_check(settings: Settings, needed: bool) -> Check:
    """The llama.cpp build's CPU baseline against the CPU's features."""
    from nodetool.errors import ProviderUnavailableError
    from nodetool.providers.llama_build import cpu_features, read_manifest
    from nodetool.providers.local_model import llama_server_binary

    try:
        binary, profile = llama_server_binary(settings)
    except ProviderUnavailableError as exc:
        return Check("llama.cpp build", "fail", exc.message, needed)
    needs = set(read_manifest(binary).get("needs", []))
    missing = sorted(needs - cpu_features())
    if missing:
        detail = f"{profile} build needs {', '.join(missing)}, which this CPU lacks: {binary}"
        return Check("llama.cpp build", "fail", detail, needed)
    detail = f"{profile} ({' '.join(sorted(needs))}): {binary}"
    return Check("llama.cpp build", "ok", detail, needed)


def model_check(settings: Settings, needed: bool) -> Check:
    from nodetool.errors import ProviderUnavailableError
    from nodetool.providers.local_model import ensure_model_file

    try:
        path = ensure_model_file(settings)
    except ProviderUnavailableError as exc:
        return Check("model file", "fail", exc.message, needed)
    size = path.stat().st_size / 1e6
    return Check("model file", "ok", f"{path} ({size:.0f} MB)", needed)


async def generation_check(settings: Settings, needed: bool) -> Check:
    """One real token from the model, in a child of its own that is stopped afterwards."""
    import httpx

    from nodetool.errors import NodetoolError
    from nodetool.providers.llama_process import ChildConfig, ModelProcess
    from nodetool.providers.local_model import ensure_model_file, llama_server_binary

    name = "one-token generation"
    try:
        binary, profile = llama_server_binary(settings)
        model = ensure_model_file(settings)
    except NodetoolError as exc:
        return Check(name, "skip" if not needed else "fail", exc.message, needed)
    with tempfile.TemporaryDirectory(prefix="nodetool-doctor-") as run_dir:
        config = ChildConfig(binary, model, Path(run_dir), 512, 1, settings.local_threads, profile)
        process = ModelProcess(config)
        started = time.perf_counter()
        try:
            socket = await process.ensure()
            loaded = time.perf_counter() - started
            transport = httpx.AsyncHTTPTransport(uds=str(socket))
            async with httpx.AsyncClient(transport=transport, base_url="http://llama") as client:
                probe = {"prompt": "The capital of France is", "n_predict": 1, "temperature": 0}
                reply = await client.post("/completion", json=probe)
                reply.raise_for_status()
            token = reply.json().get("content", "")
        except (NodetoolError, httpx.HTTPError) as exc:
            reason = await process.death() or str(getattr(exc, "message", exc))
            return Check(name, "fail", reason, needed)
        finally:
            process.stop()
    total = time.perf_counter() - started
    return Check(name, "ok", f"{token!r} (loaded in {loaded:.1f} s, {total:.1f} s in all)", needed)


async def database_check(settings: Settings) -> Check:
    from sqlalchemy import text

    from nodetool.storage.db import Database

    database = Database.from_settings(settings)
    shown = settings.database_url.split("@")[-1] if settings.database_url else "SQLite"
    try:
        async with asyncio.timeout(10):
            await database.first(text("SELECT 1"))
    except Exception as exc:  # any driver error is the answer here
        return Check("database", "fail", f"{shown}: {type(exc).__name__}: {exc}"[:300])
    finally:
        await database.dispose()
    where = settings.data_dir / "nodetool.db" if not settings.database_url else shown
    return Check("database", "ok", str(where))


async def redis_check(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check("redis", "skip", "NODETOOL_REDIS_URL is not set", needed=False)
    import redis.asyncio as redis

    client = redis.from_url(settings.redis_url, socket_connect_timeout=3)
    try:
        await client.ping()
    except Exception as exc:  # connection refused, auth, DNS: all reported the same way
        return Check("redis", "fail", f"{type(exc).__name__}: {exc}"[:300])
    finally:
        await client.aclose()
    return Check("redis", "ok", settings.redis_url.split("@")[-1])


async def provider_checks(settings: Settings) -> list[Check]:
    """Each configured remote provider answers its model listing."""
    from nodetool.providers.registry import ProviderRegistry

    registry = await ProviderRegistry.create(settings)
    checks = []
    try:
        for name in registry.names():
            if name == "local":
                continue
            provider = registry.get(name)
            try:
                async with asyncio.timeout(10):
                    models = await provider.list_models()
                checks.append(Check(f"provider {name}", "ok", f"{len(models)} models"))
            except Exception as exc:  # any failure is the finding
                checks.append(Check(f"provider {name}", "fail", str(exc)[:300]))
    finally:
        await registry.aclose()
    return checks


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order they are shown."""
    from nodetool.providers.registry import local_installed

    local = local_installed(settings)
    needs_local = local and settings.default_provider in (None, "local")
    checks = [python_check(), cpu_check()]
    if local:
        checks.append(build_check(settings, needs_local))
        checks.append(model_check(settings, needs_local))
        checks.append(await generation_check(settings, needs_local))
    else:
        checks.append(Check("local model", "skip", "the `local` extra is not installed", False))
    checks.append(await database_check(settings))
    checks.append(await redis_check(settings))
    checks.extend(await provider_checks(settings))
    return checks

"""The portable llama.cpp build: a fixed CPU baseline per architecture, builds keyed by flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodetool.providers import llama_build
from nodetool.providers.llama_build import PROFILES, build_key, choose_profile
from tests.support.local_model import needs_model

AMX_XEON = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "amx_tile", "amx_int8"}


def test_never_native_and_never_amx_or_avx512() -> None:
    for profile in PROFILES.values():
        flags = " ".join((*llama_build._COMMON_FLAGS, *profile.flags))
        assert "-DGGML_NATIVE=OFF" in flags and "march=native" not in flags
        assert "AMX_TILE=ON" not in flags and "AVX512=ON" not in flags


def test_profile_follows_the_cpu_not_the_build_machine() -> None:
    assert choose_profile("x86_64", AMX_XEON).name == "x86-64-avx2"
    assert choose_profile("x86_64", {"sse4_2", "avx"}).name == "x86-64-sse42"
    assert choose_profile("aarch64", set()).name == "arm64"


def test_builds_with_other_flags_live_in_other_folders(monkeypatch, tmp_path: Path) -> None:
    keys = {build_key(p, "x86_64") for p in PROFILES.values()}
    assert len(keys) == len(PROFILES)
    monkeypatch.setattr(llama_build, "LLAMA_CPP_PYTHON_VERSION", "0.0.0")
    assert build_key(PROFILES["arm64"], "aarch64") not in keys
    monkeypatch.setenv("NODETOOL_LLAMA_CACHE", str(tmp_path))
    folder = llama_build.build_dir(PROFILES["x86-64-avx2"])
    assert folder.parent == tmp_path
    folder.mkdir()
    (folder / "llama-server").write_text("")
    assert llama_build.installed_binary(PROFILES["x86-64-avx2"]) is None  # no manifest: partial


@needs_model
@pytest.mark.local_model
def test_installed_build_records_its_baseline() -> None:
    from nodetool.config import Settings
    from nodetool.providers.local_model import llama_server_binary

    binary, _ = llama_server_binary(Settings())
    manifest = json.loads((binary.parent / "build.json").read_text())
    profile = choose_profile()
    assert manifest["profile"] == profile.name and manifest["needs"] == list(profile.needs)
    assert set(manifest["needs"]) <= llama_build.cpu_features()

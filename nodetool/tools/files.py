"""`read_file`, `write_file`, `list_directory`: confined to the user's workspace.

Paths are relative to the workspace. Absolute paths, `..` components and symlinks that resolve
outside the workspace are refused with a ToolError (an `ok: false` result with the reason).
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field

from nodetool.errors import ToolError
from nodetool.tools.base import Tool, ToolContext

MAX_READ_BYTES = 1024 * 1024
MAX_WRITE_BYTES = 1024 * 1024
MAX_LIST_ENTRIES = 1000
MAX_PATH_CHARS = 1024


def workspace_root(context: ToolContext) -> Path:
    """The user's workspace, created on demand, fully resolved."""
    root = context.workspace
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve(strict=True)


def confine(root: Path, path: str) -> Path:
    """The resolved absolute path for `path` inside `root`, or ToolError with the reason."""
    if len(path) > MAX_PATH_CHARS:
        raise ToolError(f"path is too long (limit {MAX_PATH_CHARS} characters)")
    if "\x00" in path:
        raise ToolError("path contains a NUL character")
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or os.path.isabs(path):
        raise ToolError(f"absolute paths are not allowed: {path!r} (use a workspace-relative path)")
    if ".." in pure.parts:
        raise ToolError(f"'..' is not allowed in paths: {path!r}")
    candidate = root.joinpath(*pure.parts)
    try:
        resolved = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # symlink loops; no server path in the message
        why = getattr(exc, "strerror", None) or "symlink loop"
        raise ToolError(f"cannot resolve path {path!r}: {why}") from None
    if not resolved.is_relative_to(root):
        raise ToolError(f"path {path!r} leaves the workspace (through a symlink)")
    return resolved


def relative(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel if rel else "."


def _read(context: ToolContext, path: str) -> Any:
    root = workspace_root(context)
    target = confine(root, path)
    try:
        info = target.stat()
    except FileNotFoundError:
        raise ToolError(f"file not found: {path}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ToolError(f"{path} is a directory (use list_directory)")
    if not stat.S_ISREG(info.st_mode):
        raise ToolError(f"{path} is not a regular file")
    if info.st_size > MAX_READ_BYTES:
        raise ToolError(f"file is too large: {info.st_size} bytes (limit {MAX_READ_BYTES} bytes)")
    fd = _open_regular(target, path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_READ_BYTES + 1)
    if len(data) > MAX_READ_BYTES:
        raise ToolError(f"file is too large (limit {MAX_READ_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {
            "path": relative(root, target),
            "size": len(data),
            "binary": True,
            "note": "binary file; content not shown",
        }


def _open_regular(target: Path, shown: str, flags: int) -> int:
    """Open `target` without following a symlink and without blocking (a FIFO or device
    planted in the workspace must not wedge a thread); refuse anything but a regular file."""
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        raise ToolError(f"cannot open {shown}: {exc.strerror or 'not a regular file'}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ToolError(f"{shown} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _write(context: ToolContext, path: str, content: str) -> dict[str, Any]:
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        raise ToolError(f"content is too large: {len(data)} bytes (limit {MAX_WRITE_BYTES} bytes)")
    root = workspace_root(context)
    if not path.strip():
        raise ToolError("a file name is required")
    target = confine(root, path)
    if target == root or target.is_dir():
        raise ToolError(f"{path} is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    # the parent may not have existed when confine() ran: check again now that it does
    if not target.parent.resolve(strict=True).is_relative_to(root):
        raise ToolError(f"path {path!r} leaves the workspace (through a symlink)")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise ToolError(f"{path} is not a regular file")
    fd = _open_regular(target, path, os.O_WRONLY | os.O_CREAT)
    os.ftruncate(fd, 0)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return {"path": relative(root, target), "bytes": len(data)}


def _list(context: ToolContext, path: str) -> dict[str, Any]:
    root = workspace_root(context)
    target = confine(root, path or ".")
    if not target.exists():
        raise ToolError(f"directory not found: {path}")
    if not target.is_dir():
        raise ToolError(f"{path} is not a directory")
    entries: list[dict[str, Any]] = []
    truncated = False
    with os.scandir(target) as scan:
        for entry in sorted(scan, key=lambda e: e.name):
            if len(entries) >= MAX_LIST_ENTRIES:
                truncated = True
                break
            info = entry.stat(follow_symlinks=False)
            if entry.is_symlink():
                kind = "symlink"
            elif entry.is_dir(follow_symlinks=False):
                kind = "directory"
            else:
                kind = "file"
            item: dict[str, Any] = {"name": entry.name, "type": kind}
            if kind == "file":
                item["size"] = info.st_size
            entries.append(item)
    return {"path": relative(root, target), "entries": entries, "truncated": truncated}


class ReadFileArgs(BaseModel):
    path: str = Field(description="File path relative to the workspace, e.g. 'notes/todo.txt'.")


class WriteFileArgs(BaseModel):
    path: str = Field(description="File path relative to the workspace; parents are created.")
    content: str = Field(description="UTF-8 text to write (replaces the file).")


class ListDirectoryArgs(BaseModel):
    path: str = Field(".", description="Directory relative to the workspace; the root by default.")


class ReadFileTool(Tool):
    name = "read_file"
    description = (
        f"Read a UTF-8 text file from your workspace (up to {MAX_READ_BYTES // 1024 // 1024} MiB)."
    )
    Args = ReadFileArgs
    timeout = 10.0

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        assert isinstance(args, ReadFileArgs)
        return await asyncio.to_thread(_read, context, args.path)


class WriteFileTool(Tool):
    name = "write_file"
    description = (
        f"Write a UTF-8 text file in your workspace (up to {MAX_WRITE_BYTES // 1024 // 1024} MiB), "
        "replacing it if it exists."
    )
    Args = WriteFileArgs
    timeout = 10.0

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        assert isinstance(args, WriteFileArgs)
        return await asyncio.to_thread(_write, context, args.path, args.content)


class ListDirectoryTool(Tool):
    name = "list_directory"
    description = "List the files and directories in a workspace directory."
    Args = ListDirectoryArgs
    timeout = 10.0

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        assert isinstance(args, ListDirectoryArgs)
        return await asyncio.to_thread(_list, context, args.path)

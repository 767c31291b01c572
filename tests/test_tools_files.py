"""read_file / write_file / list_directory: confined to the user's workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodetool.config import Settings
from nodetool.tools.base import ToolContext, ToolOutcome
from nodetool.tools.builtins import builtin_tools
from nodetool.tools.files import MAX_READ_BYTES, MAX_WRITE_BYTES
from nodetool.tools.registry import ToolRegistry
from nodetool.types.messages import FunctionCall, ToolCall


@pytest.fixture()
def registry() -> ToolRegistry:
    registry = ToolRegistry(["*"])
    for tool in builtin_tools():
        registry.register(tool)
    return registry


@pytest.fixture()
def context(tmp_path: Path) -> ToolContext:
    return ToolContext(user_id="alice", settings=Settings(data_dir=tmp_path / "data"))


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    return secret


async def run(registry: ToolRegistry, context: ToolContext, name: str, **args) -> ToolOutcome:
    call = ToolCall(id="c", function=FunctionCall(name=name, arguments="{}"))
    return await registry.execute(call, args, context)


def refused(outcome: ToolOutcome, reason: str) -> bool:
    assert not outcome.ok, outcome
    assert reason in (outcome.error or ""), outcome.error
    return True


async def test_write_read_list_roundtrip(registry: ToolRegistry, context: ToolContext) -> None:
    wrote = await run(registry, context, "write_file", path="notes/todo.txt", content="héllo\n")
    assert wrote.ok and wrote.result == {"path": "notes/todo.txt", "bytes": len("héllo\n".encode())}
    assert (context.workspace / "notes" / "todo.txt").read_text() == "héllo\n"
    read = await run(registry, context, "read_file", path="notes/todo.txt")
    assert read.ok and read.result == "héllo\n" and read.content() == "héllo\n"
    await run(registry, context, "write_file", path="a.txt", content="x")
    listing = await run(registry, context, "list_directory")
    assert listing.ok
    assert listing.result == {
        "path": ".",
        "entries": [
            {"name": "a.txt", "type": "file", "size": 1},
            {"name": "notes", "type": "directory"},
        ],
        "truncated": False,
    }
    sub = await run(registry, context, "list_directory", path="notes")
    assert sub.result["entries"] == [{"name": "todo.txt", "type": "file", "size": 7}]


async def test_workspaces_are_per_user(registry: ToolRegistry, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    alice = ToolContext(user_id="alice", settings=settings)
    bob = ToolContext(user_id="bob", settings=settings)
    await run(registry, alice, "write_file", path="mine.txt", content="alice's")
    assert refused(await run(registry, bob, "read_file", path="mine.txt"), "file not found")


async def test_write_replaces_the_file(registry: ToolRegistry, context: ToolContext) -> None:
    await run(registry, context, "write_file", path="f.txt", content="long content")
    await run(registry, context, "write_file", path="f.txt", content="short")
    assert (await run(registry, context, "read_file", path="f.txt")).result == "short"


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "notes/../../secret.txt", "..", "a/../../../etc/passwd", "..\\secret.txt"],
)
@pytest.mark.parametrize("tool", ["read_file", "write_file", "list_directory"])
async def test_traversal_is_refused(
    registry: ToolRegistry, context: ToolContext, outside: Path, path: str, tool: str
) -> None:
    args = {"path": path, "content": "pwned"} if tool == "write_file" else {"path": path}
    assert refused(await run(registry, context, tool, **args), "'..' is not allowed")
    assert outside.read_text() == "top secret"


@pytest.mark.parametrize("tool", ["read_file", "write_file", "list_directory"])
async def test_absolute_paths_are_refused(
    registry: ToolRegistry, context: ToolContext, outside: Path, tool: str
) -> None:
    args = {"path": str(outside)}
    if tool == "write_file":
        args["content"] = "pwned"
    assert refused(await run(registry, context, tool, **args), "absolute paths are not allowed")
    assert outside.read_text() == "top secret"


async def test_symlink_escapes_are_refused(
    registry: ToolRegistry, context: ToolContext, outside: Path
) -> None:
    workspace = context.workspace
    workspace.mkdir(parents=True)
    os.symlink(outside, workspace / "link.txt")
    os.symlink(outside.parent, workspace / "linkdir")
    assert refused(
        await run(registry, context, "read_file", path="link.txt"), "leaves the workspace"
    )
    assert refused(
        await run(registry, context, "read_file", path="linkdir/secret.txt"), "leaves the workspace"
    )
    write = await run(registry, context, "write_file", path="link.txt", content="pwned")
    assert refused(write, "leaves the workspace")
    write = await run(registry, context, "write_file", path="linkdir/new.txt", content="pwned")
    assert refused(write, "leaves the workspace")
    assert refused(
        await run(registry, context, "list_directory", path="linkdir"), "leaves the workspace"
    )
    assert outside.read_text() == "top secret"
    assert not (outside.parent / "new.txt").exists()


async def test_symlinks_inside_the_workspace_are_fine(
    registry: ToolRegistry, context: ToolContext
) -> None:
    await run(registry, context, "write_file", path="real/data.txt", content="inside")
    os.symlink(context.workspace / "real", context.workspace / "alias")
    read = await run(registry, context, "read_file", path="alias/data.txt")
    assert read.ok and read.result == "inside"
    listing = await run(registry, context, "list_directory")
    assert {"name": "alias", "type": "symlink"} in listing.result["entries"]


async def test_size_limits(registry: ToolRegistry, context: ToolContext) -> None:
    big = "x" * (MAX_WRITE_BYTES + 1)
    assert refused(
        await run(registry, context, "write_file", path="big.txt", content=big), "too large"
    )
    assert not (context.workspace / "big.txt").exists()
    context.workspace.mkdir(parents=True, exist_ok=True)
    (context.workspace / "huge.bin").write_bytes(b"a" * (MAX_READ_BYTES + 1))
    assert refused(await run(registry, context, "read_file", path="huge.bin"), "too large")


async def test_other_failures_are_clear(registry: ToolRegistry, context: ToolContext) -> None:
    assert refused(await run(registry, context, "read_file", path="nope.txt"), "file not found")
    await run(registry, context, "write_file", path="dir/f.txt", content="x")
    assert refused(await run(registry, context, "read_file", path="dir"), "is a directory")
    assert refused(await run(registry, context, "write_file", path="dir", content="x"), "directory")
    assert refused(await run(registry, context, "write_file", path="", content="x"), "file name")
    assert refused(
        await run(registry, context, "list_directory", path="dir/f.txt"), "not a directory"
    )
    assert refused(await run(registry, context, "list_directory", path="missing"), "not found")
    assert refused(await run(registry, context, "read_file", path="a\x00b"), "NUL")
    assert refused(await run(registry, context, "read_file"), "invalid arguments: path")


async def test_binary_files_are_summarized(registry: ToolRegistry, context: ToolContext) -> None:
    context.workspace.mkdir(parents=True)
    (context.workspace / "blob.bin").write_bytes(b"\xff\xfe\x00\x01")
    read = await run(registry, context, "read_file", path="blob.bin")
    assert read.ok and read.result["binary"] is True and read.result["size"] == 4

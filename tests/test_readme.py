"""The README's snippets run as written, so the README cannot drift from the code.

Every fenced block in README.md is preceded by a `<!-- readme: KIND -->` marker:

- `loopback`: shell run here as one bash script (`set -euo pipefail`), from the repository root
  with a fresh home, data and config dir; port 8000 becomes a free port (so servers in the
  snippets name `--port 8000`, though it is the default), and after each command
  that starts a server in the background (`... &`) the script waits until the port listens.
  The OpenAI-compatible upstream is the test stub (`OPENAI_BASE_URL`, default provider
  `openai`), so no network beyond loopback is needed.
- `node`: the JavaScript example, run with Node.js against `nodetool serve`.
- `local-model`: needs the embedded model; run by the `local_model` test below, with the
  server's real defaults (provider `local`).
- `external` (needs software such as Ollama) and `manual` (`make run`, `make test`): not run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.needs import LOCAL_MODEL, missing
from tests.support.servers import CliServer, free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- readme: ([a-z-]+)\b.*-->$")
KINDS = {"loopback", "node", "local-model", "external", "manual"}
BACKGROUND = re.compile(r"&\s*(#.*)?$")
PRELUDE = """set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
wait_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}
"""


@dataclass(frozen=True)
class Block:
    kind: str
    lang: str
    text: str
    line: int

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.lang}"


def readme_blocks() -> list[Block]:
    """Every fenced block with the marker before it (kind `?` when it has none)."""
    blocks: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```") and len(line) > 3:
            start = index
            body: list[str] = []
            index += 1
            while not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            marker = MARKER.match(lines[start - 1]) if start else None
            kind = marker.group(1) if marker else "?"
            blocks.append(Block(kind, line[3:].strip(), "\n".join(body) + "\n", start + 1))
        index += 1
    return blocks


BLOCKS = readme_blocks()


def of_kind(*kinds: str) -> list[Block]:
    return [b for b in BLOCKS if b.kind in kinds]


def script_for(block: Block, port: int) -> str:
    """The block as a bash script on `port`, waiting for each server it starts."""
    out = [PRELUDE]
    pending = ""
    for raw in block.text.replace("8000", str(port)).splitlines():
        if raw.endswith("\\"):
            pending += raw + "\n"
            continue
        command, pending = pending + raw, ""
        out.append(command)
        if BACKGROUND.search(command) and not command.lstrip().startswith("#"):
            out.append(f"wait_port {port}")
    return "\n".join(out) + "\n"


def run_script(script: str, env: dict[str, str], timeout: float = 180) -> tuple[int, str, str]:
    """Run in its own process group; whatever it left running is killed afterwards."""
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode, stdout, stderr


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("NODETOOL_")}
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        NODETOOL_DATA_DIR=str(home / "data"),
        NODETOOL_CONFIG_DIR=str(home / "config"),
        NODETOOL_LOG_LEVEL="warning",
        COLUMNS="200",
    )
    env.update(extra)
    return env


@pytest.fixture
def stub_env(openai_stub, tmp_path: Path) -> dict[str, str]:
    openai_stub.reset()
    return base_env(
        tmp_path,
        OPENAI_BASE_URL=openai_stub.url,
        OPENAI_API_KEY="sk-test",
        NODETOOL_DEFAULT_PROVIDER="openai",
        NODETOOL_DEFAULT_MODEL="stub-model",
    )


# What each loopback block must print (keyed by a line of the block), beyond exiting with 0.
EXPECTED = {
    "gpt-4o-mini": ['"object":"chat.completion"', "Echo: What is 17 * 23? Use the calculator."],
    "/api/threads": ['{"messages":[],"next":null}'],
    "Shipping Quote.json": [
        "Freight: 30 kg travels on a pallet, delivery in 3-5 days.",
        '"table": "1 x 7 = 7\\n2 x 7 = 14',
        '"id":"shipping-quote"',
        '"results":{"quote":"## Shipping quote\\n\\nWeight: 30 kg',
        "Dear Sam,",
        '"type":"complete"',
        "data: [DONE]",
    ],
    "AUTH_PROVIDER=static": ['"object":"list"', '"id":"stub-model"', "Echo: Hi"],
    "mkdir -p": [],
}


def test_every_block_is_marked_and_the_readme_stays_inside_the_repository() -> None:
    unmarked = [b.id for b in BLOCKS if b.kind not in KINDS]
    assert unmarked == [], f"put a `<!-- readme: KIND -->` line before: {unmarked}"
    for block in of_kind("loopback", "local-model"):
        for line in block.text.splitlines():
            starts = re.search(r"\bnodetool (serve|worker|chat-server)\b", line)
            assert not starts or "--port 8000" in line, f"{block.id}: name --port 8000: {line}"
    assert len(of_kind("loopback")) == len(EXPECTED)
    for block in of_kind("loopback"):
        assert sum(key in block.text for key in EXPECTED) == 1, block.id
    for block in BLOCKS:  # paths the snippets use exist in a fresh clone
        for path in re.findall(r'"((?:examples|completions)/[^"]+)"', block.text):
            assert (ROOT / path).is_file(), path
        for path in re.findall(r"\bcp (completions/\S+)", block.text):
            assert (ROOT / path).is_file(), path


@pytest.mark.parametrize("block", of_kind("loopback"), ids=lambda b: b.id)
def test_loopback_snippet(block: Block, stub_env: dict[str, str], tmp_path: Path) -> None:
    code, stdout, stderr = run_script(script_for(block, free_port()), stub_env)
    assert code == 0, f"{block.id} failed ({code}):\n{stdout}\n{stderr}"
    assert '{"error"' not in stdout, stdout
    (key,) = [key for key in EXPECTED if key in block.text]
    for fragment in EXPECTED[key]:
        assert fragment in stdout, f"{fragment!r} not in the output of {block.id}:\n{stdout}"
    if key == "mkdir -p":
        copies = [line.split()[2] for line in block.text.splitlines() if line.startswith("cp ")]
        assert len(copies) == 3
        for target in copies:
            assert (tmp_path / target.removeprefix("~/")).is_file(), target


@pytest.fixture
def editor(stub_env: dict[str, str]) -> Iterator[CliServer]:
    with CliServer("serve", env=stub_env) as server:
        yield server


def test_node_snippet(editor: CliServer) -> None:
    from tests.support.node import NODE_DIR, npm_install, require_node

    require_node()
    npm_install()
    (block,) = of_kind("node")
    script = NODE_DIR / f"readme-{uuid.uuid4().hex}.mjs"  # beside node_modules
    script.write_text(block.text.replace("8000", str(editor.port)), encoding="utf-8")
    try:
        proc = subprocess.run(
            ["node", script.name], cwd=NODE_DIR, capture_output=True, text=True, timeout=60
        )
    finally:
        script.unlink()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Echo: Hello world"


@pytest.mark.local_model
def test_local_model_snippets(tmp_path: Path) -> None:
    """The snippets that need the embedded model, with the servers' real defaults."""
    from tests.support.local_model import model_ready

    if not model_ready():
        missing("the embedded model is not ready", LOCAL_MODEL)
    from nodetool.config import Settings
    from nodetool.providers.local_model import llama_server_binary

    data_dir = os.environ["NODETOOL_DATA_DIR"]  # one model copy for the whole test session
    binary, _ = llama_server_binary(Settings())  # the build in the real cache (HOME is moved)
    env = base_env(tmp_path, NODETOOL_DATA_DIR=data_dir, NODETOOL_LLAMA_SERVER=str(binary))
    for block in of_kind("local-model"):
        if block.lang == "bash":
            code, stdout, stderr = run_script(script_for(block, free_port()), env, timeout=600)
            assert code == 0, f"{block.id} failed ({code}):\n{stdout}\n{stderr}"
            assert stdout.strip() and '{"error"' not in stdout, f"{block.id}:\n{stdout}"
        else:
            assert block.lang == "python", block.id
            with CliServer("chat-server", env=env) as server:
                source = block.text.replace("8000", str(server.port))
                proc = subprocess.run(
                    [sys.executable, "-c", source],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.strip(), f"{block.id} printed nothing"

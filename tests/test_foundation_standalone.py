"""The repository stands alone: nothing tracked refers to files beside the clone (only the CI
entry point may), and every `docs/protocol.md §N` a docstring cites exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = "../" + "shared"  # spelled in two parts so this file does not match itself
ALLOWED = {".ci/run"}  # CI keeps NodeTool's examples beside the clone for `make conformance`
CITATION = re.compile(r"docs/protocol\.md §(\d+)")
SECTION = re.compile(r"^## (\d+)\. ", re.M)
STALE = ("PROTOCOL" + ".md", "DESIGN" + ".md")  # the design-time files, not in the repository


def repository_files() -> list[str]:
    """Tracked files plus new ones not ignored (so a new file is checked before its commit)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def test_no_file_refers_outside_the_repository() -> None:
    offenders = [
        name
        for name in repository_files()
        if name not in ALLOWED and OUTSIDE.encode() in (ROOT / name).read_bytes()
    ]
    assert offenders == [], f"these files refer to {OUTSIDE}: {offenders}"


def test_the_ci_entry_point_runs_the_conformance_suite() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test\n" in script
    assert f"make conformance NODETOOL_EXAMPLES_DIR={OUTSIDE}/nodetool-examples" in script


def test_cited_protocol_sections_exist() -> None:
    sections = set(SECTION.findall((ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")))
    assert sections, "docs/protocol.md has no numbered sections"
    cited: dict[str, set[str]] = {}
    stale = []
    for name in repository_files():
        if not name.endswith(".py"):
            continue
        text = (ROOT / name).read_text(encoding="utf-8")
        for number in CITATION.findall(text):
            cited.setdefault(number, set()).add(name)
        if any(old in text for old in STALE):
            stale.append(name)
    assert stale == [], f"cite docs/protocol.md or docs/architecture.md instead: {stale}"
    missing = {number: files for number, files in cited.items() if number not in sections}
    assert cited and missing == {}, missing

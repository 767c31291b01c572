"""`python -m nodetool` entry point."""

from nodetool.cli.main import run

run()

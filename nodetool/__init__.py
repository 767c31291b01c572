"""nodetool: a self-hosted, CLI-first implementation of NodeTool's Chat API."""

__version__ = "0.1.0"

"""Workflow jobs on a queue: see `manager.py` for the parts and docs/jobs.md for the design."""

from nodetool.workflows.jobs.events import terminal_of
from nodetool.workflows.jobs.manager import CANCEL_REQUESTED, JobManager, read_workflow_file

__all__ = [
    "CANCEL_REQUESTED",
    "JobManager",
    "read_workflow_file",
    "terminal_of",
]

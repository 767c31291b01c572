"""Workflows: NodeTool graph JSON, the node library, the async DAG runner and the job manager.

- `graph`: the graph model, workflow normalisation and validation before any run.
- `registry`: node types by NodeTool type name; `nodes/` holds the built-in node classes.
- `params`: workflow inputs (typed params, the chat text fed to an input) and outputs.
- `runner`: runs a validated graph; nodes whose inputs are ready run concurrently.
- `jobs`: persisted jobs in background tasks with an event log for replay.
"""

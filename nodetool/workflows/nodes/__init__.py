"""The built-in node library under NodeTool's type names.

`BUILTIN` lists its modules; `registry` imports them all on first lookup (each registers its
nodes). Importing one module alone (as the sandbox worker processes do) stays light.
"""

BUILTIN = ("boolean", "constant", "control", "io", "llm", "mathops", "text")

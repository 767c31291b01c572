"""A request's client-disconnect signal, raised by the server's HTTP protocol.

`GuardedHttpToolsProtocol` puts a `DisconnectSignal` in every request's scope (under
`SCOPE_KEY`) and fires it when the client goes away before the response is complete. A
response that must stop its work then (`nodetool.api.sse`) registers a callback instead of
running a task that waits on `receive()` for `http.disconnect`; under another server (no
signal in the scope) it falls back to that task.
"""

from __future__ import annotations

from collections.abc import Callable

SCOPE_KEY = "nodetool.disconnect"


class DisconnectSignal:
    """Fired at most once; a callback registered after that runs at once."""

    __slots__ = ("fired", "_callback")

    def __init__(self) -> None:
        self.fired = False
        self._callback: Callable[[], None] | None = None

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()

    def watch(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` on disconnect (None: stop watching)."""
        if self.fired and callback is not None:
            callback()
            return
        self._callback = callback

"""Limits that hold before any request reaches the app (so before authentication).

uvicorn's httptools protocol buffers a request's headers without a bound and never times out a
connection that is still sending them. `GuardedHttpToolsProtocol` adds, per connection:

- header size: more than `max_header_bytes` before the end of the headers is answered 431
  and the connection closed (memory per connection stays near that bound);
- header count: more than `max_headers` header lines is answered 431;
- header read timeout: headers not complete `header_timeout` seconds after the connection
  opened (or after the first byte of the next request) get 408 and a close;
- body read timeout: a request body that stalls for `body_timeout` seconds is cut off (408
  when no response has started; the app sees a disconnect);
- a cap on connections that have not completed their headers yet: past
  `max_pending_connections` the oldest such connection is closed, so idle or slow sockets
  cannot pile up while real clients, which send their headers at once, still get in.

`uvicorn_options(settings)` gives every place that starts uvicorn the same options.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nodetool.api.direct_exchange import DirectExchange
from nodetool.api.disconnect import SCOPE_KEY, DisconnectSignal
from nodetool.api.http_writes import SEND_NOW_KEY, HeldHead
from nodetool.config import Settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_pending_connections: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_pending_connections=settings.max_pending_connections,
        )


class PendingConnections:
    """The connections of one server that have not completed their request headers."""

    def __init__(self) -> None:
        self._order: OrderedDict[int, GuardedHttpToolsProtocol] = OrderedDict()

    def __len__(self) -> int:
        return len(self._order)

    def add(self, protocol: GuardedHttpToolsProtocol, cap: int) -> None:
        self._order[id(protocol)] = protocol
        self._order.move_to_end(id(protocol))
        while len(self._order) > cap:
            _, oldest = self._order.popitem(last=False)
            oldest.evict()

    def discard(self, protocol: GuardedHttpToolsProtocol) -> None:
        self._order.pop(id(protocol), None)

    def __getstate__(self) -> dict[str, Any]:  # picklable for `--workers N` (fresh per process)
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._order = OrderedDict()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header, timeout and pending-connection limits."""

    def __init__(
        self,
        *args: Any,
        limits: HttpLimits | None = None,
        pending: PendingConnections | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or HttpLimits()
        self.pending = pending if pending is not None else PendingConnections()
        self._in_headers = False
        self._header_bytes = 0
        self._header_count = 0
        self._header_size = 0
        self._refusal: str | None = None  # why the current request gets a 431
        self._in_body = False
        self._timer: Any = None  # one timer per connection, re-armed lazily (see _arm)
        self._timer_at = 0.0  # when it fires
        self._deadline: float | None = None  # when the current limit runs out
        self._idle = False  # between requests: the timer then times the keep-alive wait
        self._lane: Any = None  # the app's direct lane (False: it has none), looked up once
        self._direct: tuple[Any, str] | None = None  # (endpoint, user) of a direct request
        if self.access_log and not self.access_logger.isEnabledFor(logging.INFO):
            self.access_log = False  # no access-log arguments formatted for nothing

    # ---- state ----------------------------------------------------------------------------

    def _await_headers(self) -> None:
        if self._in_headers:
            return
        self._in_headers = True
        self._header_bytes = 0
        self._header_count = 0
        self._header_size = 0  # name and value bytes of the header lines parsed
        self._refusal = None
        self.pending.add(self, self.limits.max_pending_connections)
        self._arm(self.limits.header_timeout)

    def _headers_done(self) -> None:
        self._in_headers = False
        self.pending.discard(self)
        self._disarm()

    def _arm(self, seconds: float) -> None:
        """Set the deadline; the timer is only replaced when it would fire after it (arming
        and disarming twice per request then costs no timer)."""
        deadline = self._deadline = self.loop.time() + seconds
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # fires early, sees the later deadline and re-arms itself
            self._timer.cancel()
        self._start_timer(deadline)

    def _start_timer(self, when: float) -> None:
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._tick)

    def _disarm(self) -> None:
        self._deadline = None

    def _stop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return  # nothing to time now: the next _arm starts the timer again
        if self.loop.time() < deadline:
            self._start_timer(deadline)
        else:
            self._deadline = None
            self._timed_out()

    # ---- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.pending.discard(self)
        self._in_headers = self._in_body = False
        super().connection_lost(exc)
        self._disconnected()

    def handle_websocket_upgrade(self) -> None:
        """The socket becomes the WebSocket protocol's: stop timing it here (the timer would
        otherwise keep this protocol, its parser and its request alive until it fired)."""
        self._stop_timer()
        self.pending.discard(self)
        super().handle_websocket_upgrade()

    def _disconnected(self) -> None:
        """Fire the current request's disconnect signal if its response is unfinished."""
        cycle = self.cycle
        if cycle is not None and cycle.disconnected:
            signal = cycle.scope.get(SCOPE_KEY)
            if signal is not None:
                signal.fire()

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            return
        if self._idle:
            self._idle = False
            self._disarm()
        if self._in_body:
            self._arm(self.limits.body_timeout)
        super().data_received(data)  # on_message_begin starts the header limits of a request
        if self.transport.is_closing():
            return
        if self._refusal is not None:
            self._refuse(431, self._refusal)
        elif self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(431, self._too_large())

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive wait timed by the connection's one timer (uvicorn
        makes and cancels a timer per request)."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif not (self._in_headers or self._in_body):
            self._idle = True
            self._arm(self.timeout_keep_alive)

    # ---- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_headers()

    def _too_large(self) -> str:
        return f"request headers over {self.limits.max_header_bytes} bytes"

    def on_header(self, name: bytes, value: bytes) -> None:
        """uvicorn's (lower-cased name, `Expect: 100-continue` noted), counted and sized."""
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refusal = f"more than {self.limits.max_headers} header lines"
            return
        self._header_size += len(name) + len(value) + 4
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if len(self.url) + self._header_size > self.limits.max_header_bytes:  # in one read
            self._refusal = self._too_large()
        self._headers_done()
        if self._refusal is not None:
            return  # answered by data_received once the parser returns
        if self._take_direct():
            self._in_body = True
            self._arm(self.limits.body_timeout)
            return
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous:  # a request, not an upgrade
            cycle.transport = HeldHead(self.transport, self.loop)  # type: ignore[assignment]
            cycle.scope[SCOPE_KEY] = DisconnectSignal()  # type: ignore[literal-required]
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._in_body = True
            self._arm(self.limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        if self._refusal is not None:
            return
        if self._direct is not None:
            self.cycle.parts.append(body)  # type: ignore[attr-defined]
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is not None:
            return
        if self._in_body:
            self._in_body = False
            self._disarm()
        direct = self._direct
        if direct is None:
            super().on_message_complete()
            return
        self._direct = None
        if self.cycle.response_complete:  # refused meanwhile (a timeout)
            return
        task = self.loop.create_task(self._lane.run(self.cycle, *direct))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    # ---- the direct lane --------------------------------------------------------------------

    def _take_direct(self) -> bool:
        """Hand the request to the app's direct lane (`nodetool.api.direct_lane`) if it takes
        it; the lane's exchange then stands in for uvicorn's cycle."""
        lane = self._lane
        if lane is None:
            lane = self._lane = find_direct_lane(self.app) or False
        if lane is False:
            return False
        parser = self.parser
        if parser.get_method() != b"POST" or parser.should_upgrade():
            return False
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.root_path:
            return False  # pipelined behind an unfinished response; or under a root path
        if self.limit_concurrency is not None:
            return False
        path, _, query = self.url.partition(b"?")
        if b"%" in path or b"#" in query:
            return False
        taken = lane.take(path, self.headers, self.config.proxy_headers)
        if taken is None:
            return False
        version = parser.get_http_version()
        scope = self.scope
        scope["method"] = "POST"
        if version != "1.1":
            scope["http_version"] = version
        scope["path"] = path.decode("ascii")
        scope["raw_path"] = path
        scope["query_string"] = query
        scope[SCOPE_KEY] = DisconnectSignal()  # type: ignore[literal-required]
        keep_alive = version != "1.0" and parser.should_keep_alive()
        exchange = DirectExchange(self, scope, keep_alive)
        scope[SEND_NOW_KEY] = exchange.send_now  # type: ignore[literal-required]
        self.cycle = exchange  # type: ignore[assignment]
        self._direct = taken
        return True

    # ---- refusals ---------------------------------------------------------------------------

    def evict(self) -> None:
        """Closed to make room for a newer connection (the pending-connection cap)."""
        self._in_headers = False
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    def _timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if self._idle:  # kept alive for `timeout_keep_alive` seconds with nothing sent
            self._idle = False
            self.transport.close()
            return
        what = "request body" if self._in_body else "request headers"
        started = self.cycle is not None and self.cycle.response_started
        if self._in_body and started:
            self.transport.close()
            return
        self._refuse(408, f"{what} not received in time")

    def _refuse(self, status: int, why: str) -> None:
        """Answer `status` with a JSON error envelope and close the connection."""
        from nodetool.api.errors import error_body

        self._headers_done()
        self._in_body = False
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.response_complete = True  # the app must not write after this
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self._disconnected()
        code = "request_timeout" if status == 408 else "headers_too_large"
        body = _json(error_body(why, "invalid_request_error", code=code))
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        head += b"connection: close\r\n\r\n"
        self.transport.write(head + body)
        self.transport.close()


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def find_direct_lane(app: Any) -> Any:
    """The direct lane of the app under uvicorn's wrappers (None if it has none)."""
    for _ in range(4):
        get = getattr(app, "direct_lane", None)
        if get is not None:
            return get()
        app = getattr(app, "app", None)
    return None


def protocol_factory(limits: HttpLimits) -> Any:
    """The `http=` value for uvicorn: the guarded protocol bound to `limits`."""
    return functools.partial(GuardedHttpToolsProtocol, limits=limits, pending=PendingConnections())


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn keyword arguments for a nodetool server built from `settings`."""
    return {
        "http": protocol_factory(HttpLimits.from_settings(settings)),
        "ws_max_size": settings.max_frame_bytes + 1024,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }

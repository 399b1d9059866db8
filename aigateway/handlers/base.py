"""BaseHandler: cross-cutting concerns in one place (gateway access, headers, error rendering)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import tornado.web
from tornado.ioloop import IOLoop

from aigateway.formats import FORMATS
from aigateway.model import ErrorKind, GatewayError

log = logging.getLogger("aigateway.http")
# API answers are JSON: nothing in them may load, run or be framed. Admin pages set their own policy.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=31536000"


def security_headers(handler: tornado.web.RequestHandler) -> None:
    """The headers every response carries, whatever the handler: no MIME sniffing, no framing, no
    referrer, and HSTS when the request came over HTTPS (never on plain HTTP, where it means nothing
    and would pin a name to HTTPS it may not serve)."""
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("Referrer-Policy", "no-referrer")
    if handler.request.protocol == "https":
        handler.set_header("Strict-Transport-Security", HSTS)
    handler.clear_header("Server")


class BaseHandler(tornado.web.RequestHandler):
    """Every handler's base. ``fmt`` names the wire format errors are rendered in."""

    fmt: ModuleType = FORMATS["openai"]
    _watchdog: Any = None  # IOLoop timeout of watch_unread
    _on_stuck: Callable[[int], None] | None = None

    def initialize(self, fmt: str = "openai") -> None:
        self.fmt = FORMATS[fmt]

    @property
    def gateway(self) -> Any:
        return self.settings["gateway"]

    def set_default_headers(self) -> None:
        """Security headers on every answer, errors and 404s included (Tornado calls this again
        before rendering an error); API and admin answers are never stored by a cache."""
        security_headers(self)
        self.set_header("Content-Security-Policy", API_CSP)
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        """Once shutdown has begun, a new request on a kept-alive connection is refused (503), so
        the grace period only has to wait for requests already in flight."""
        if self.gateway.stopping:
            raise GatewayError(503, ErrorKind.OVERLOADED, "The gateway is shutting down; retry shortly.",
                               retry_after=1, headers={"Connection": "close"})

    def write_gateway_error(self, err: GatewayError) -> None:
        """Render a GatewayError in this route's wire format and finish."""
        status, headers, body = self.fmt.encode_error(err)
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (404 route, 405, uncaught exceptions) in the client's format,
        never a traceback."""
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, GatewayError):
            err = exc
        elif status_code == 404:
            err = GatewayError(404, ErrorKind.NOT_FOUND, f"No route for {self.request.method} {self.request.path}.",
                               code="not_found")
        elif status_code == 405:
            err = GatewayError(405, ErrorKind.INVALID_REQUEST, f"Method {self.request.method} is not allowed here.")
        elif status_code < 500:
            err = GatewayError(status_code, None, self._reason or "Bad request.")
        else:
            err = GatewayError(500, ErrorKind.SERVER, "Internal error in the gateway.")
        self.clear_header("Content-Type")
        self.write_gateway_error(err)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, GatewayError):  # an expected error is an answer, not a crash
            super().log_exception(typ, value, tb)

    def client_closed(self) -> bool:
        return self.request.connection.stream.closed()  # type: ignore[union-attr]

    def pending_bytes(self) -> int:
        """Bytes written to the client that its socket has not taken yet. Tornado keeps no public
        count; its IOStream's write buffer is it."""
        stream = self.request.connection.stream  # type: ignore[union-attr]
        return 0 if stream.closed() else len(stream._write_buffer)

    def close_connection(self) -> None:
        """Drop the client's connection, discarding whatever it has not read."""
        self.request.connection.close()  # type: ignore[union-attr]

    def send_promptly(self) -> None:
        """TCP_NODELAY for the rest of this response: stream events are small writes that must not
        wait, under Nagle's algorithm, for the client's delayed ACK of the previous one (up to 40 ms
        on Linux). Tornado turns Nagle back on when the response finishes."""
        stream = self.request.connection.stream  # type: ignore[union-attr]
        if not stream.closed():
            stream.set_nodelay(True)

    def watch_unread(self, timeout: float, on_stuck: Callable[[int], None] | None = None) -> None:
        """Drop the connection if bytes wait for the client and it takes none of them for ``timeout``
        seconds. Tornado has no write timeout: a client that stops reading would otherwise pin its
        buffer (and, mid-stream, the upstream) for good. ``on_stuck(unsent)`` runs first; a later
        call replaces it (None once the request is accounted)."""
        self._on_stuck = on_stuck
        stream = self.request.connection.stream  # type: ignore[union-attr]
        if self._watchdog is None and not stream.closed() and stream.writing():
            self._arm_watchdog(stream, timeout)

    def _arm_watchdog(self, stream: Any, timeout: float) -> None:
        sent = stream._total_write_done_index  # Tornado's count of bytes the socket took

        def check() -> None:
            self._watchdog = None
            if stream.closed() or not stream.writing():
                return
            if stream._total_write_done_index != sent:  # progress, however slow: keep watching
                self._arm_watchdog(stream, timeout)
                return
            unsent = len(stream._write_buffer)
            log.info("dropping a client that read nothing for %gs (%d bytes unsent): %s %s",
                     timeout, unsent, self.request.method, self.request.path)
            if self._on_stuck is not None:
                self._on_stuck(unsent)
            stream.close()

        self._watchdog = IOLoop.current().call_later(timeout, check)


class NotFoundHandler(BaseHandler):
    """Unknown paths: a JSON 404 rather than Tornado's HTML page."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)

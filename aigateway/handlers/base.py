"""BaseHandler: cross-cutting concerns in one place (gateway access, headers, error rendering)."""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import tornado.web

from aigateway.formats import FORMATS
from aigateway.model import ErrorKind, GatewayError

log = logging.getLogger("aigateway.http")


class BaseHandler(tornado.web.RequestHandler):
    """Every handler's base. ``fmt`` names the wire format errors are rendered in."""

    fmt: ModuleType = FORMATS["openai"]

    def initialize(self, fmt: str = "openai") -> None:
        self.fmt = FORMATS[fmt]

    @property
    def gateway(self) -> Any:
        return self.settings["gateway"]

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        self.clear_header("Server")

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


class NotFoundHandler(BaseHandler):
    """Unknown paths: a JSON 404 rather than Tornado's HTML page."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)

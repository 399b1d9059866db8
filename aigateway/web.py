"""What every handler shares: the typed way to the Gateway, the security headers every response
carries, and the one ladder from Tornado's own errors (no route, wrong method, a crash) to ours."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import tornado.web

from aigateway.formats import FORMATS
from aigateway.formats.contract import Codec
from aigateway.neutral import ErrorKind, GatewayError

if TYPE_CHECKING:
    from aigateway.app import Gateway, GatewayApp

# API answers are JSON: nothing in them may load, run or be framed. Admin pages set their own policy.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
API_HEADERS = (("Content-Security-Policy", API_CSP),)
HSTS = "max-age=31536000"


def gateway_of(handler: tornado.web.RequestHandler) -> Gateway:
    """The Gateway behind any handler of the app (``app.GatewayApp`` carries it)."""
    return cast("GatewayApp", handler.application).gateway


def security_headers(handler: tornado.web.RequestHandler, policy: tuple[tuple[str, str], ...] = API_HEADERS,
                     *, no_store: bool = True) -> None:
    """The headers every response carries, whatever the handler: no MIME sniffing, no framing, no
    referrer, HSTS when the request came over HTTPS (never on plain HTTP, where it means nothing
    and would pin a name to HTTPS it may not serve), no Server header; then the handler's own
    ``policy`` (its Content-Security-Policy...) and, unless the answer may be cached, no-store."""
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("Referrer-Policy", "no-referrer")
    if handler.request.protocol == "https":
        handler.set_header("Strict-Transport-Security", HSTS)
    handler.clear_header("Server")
    for name, value in policy:
        handler.set_header(name, value)
    if no_store:
        handler.set_header("Cache-Control", "no-store")


def tornado_error(handler: tornado.web.RequestHandler, status: int, exc: BaseException | None) -> tuple[int, str]:
    """(status, message) for an error Tornado raised itself; each handler family wraps it in its
    own error type, so API and admin answers say the same thing in their own shapes."""
    request = handler.request
    if status == 403 and "xsrf" in str(getattr(exc, "log_message", "")).lower():
        return 403, "Missing or wrong XSRF token: send the _xsrf cookie's value in an X-XSRFToken header."
    if status == 404:
        return 404, f"No route for {request.method} {request.path}."
    if status == 405:
        return 405, f"Method {request.method} is not allowed here."
    if status < 500:
        return status, handler._reason or "Bad request."
    return 500, "Internal error in the gateway."


class BaseHandler(tornado.web.RequestHandler):
    """Every handler's base. ``fmt`` is the wire format errors are rendered in; ``header_policy``
    the headers on top of the common ones (admin pages have their own)."""

    fmt: Codec = FORMATS["openai"]
    header_policy: tuple[tuple[str, str], ...] = API_HEADERS

    def initialize(self, fmt: str = "openai") -> None:
        self.fmt = FORMATS[fmt]

    @property
    def gateway(self) -> Gateway:
        return gateway_of(self)

    def set_default_headers(self) -> None:
        """Security headers on every answer, errors and 404s included (Tornado calls this again
        before rendering an error); API and admin answers are never stored by a cache."""
        security_headers(self, self.header_policy)

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
        else:
            status, message = tornado_error(self, status_code, exc)
            err = GatewayError(status, None, message, code="not_found" if status == 404 else None)
        self.clear_header("Content-Type")
        self.write_gateway_error(err)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, GatewayError):  # an expected error is an answer, not a crash
            super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    """Unknown paths: a JSON 404 rather than Tornado's HTML page."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)

"""What every handler shares: the typed way to the Gateway, the security headers every response
carries, and the one ladder from Tornado's own errors (no route, wrong method, a crash) to ours."""

from __future__ import annotations

import functools
from collections.abc import Callable
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
    if status == 413:
        return 413, f"The request body is larger than {body_limit(handler) // 1048576} MB."
    if status == 405:
        return 405, f"Method {request.method} is not allowed here."
    if status < 500:
        return status, handler._reason or "Bad request."
    return 500, "Internal error in the gateway."


_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def _after_check(method: Callable[..., Any]) -> Callable[..., Any]:
    """A handler method that runs ``check_request`` first (see BaseHandler)."""

    @functools.wraps(method)
    def checked(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
        self.check_request()
        if self._finished:  # it answered (a redirect to the login page)
            return None
        return method(self, *args, **kwargs)

    checked._checked = True  # type: ignore[attr-defined]
    return checked


def body_limit(handler: tornado.web.RequestHandler) -> int:
    return int(gateway_of(handler).config.get("server.max_body_mb")) * 1024 * 1024


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Every handler's base. ``fmt`` is the wire format errors are rendered in; ``header_policy``
    the headers on top of the common ones (admin pages have their own).

    Bodies are streamed in and bounded here (``server.max_body_mb``), for API and admin alike: a
    declared length over the limit is answered 413 before any of the body is read, a body that
    grows past it (chunked) as soon as it does; either way the connection is then closed. The body
    collects in ``request.body`` (a bytearray) before the method runs.

    Every other refusal (shutting down, no admin session, no XSRF token) is ``check_request``'s,
    which runs once the body is in, just before the handler's method: Tornado closes a connection
    whose body it did not read, and a client that had sent a small body would then see the
    connection reset instead of the answer."""

    fmt: Codec = FORMATS["openai"]
    header_policy: tuple[tuple[str, str], ...] = API_HEADERS
    _body: bytearray | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _METHODS:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_checked", False):
                setattr(cls, name, _after_check(method))

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
        self.receive_body()

    def check_request(self) -> None:
        """Once shutdown has begun, a new request on a kept-alive connection is refused (503), so
        the grace period only has to wait for requests already in flight."""
        if self.gateway.stopping:
            raise GatewayError(503, ErrorKind.OVERLOADED, "The gateway is shutting down; retry shortly.",
                               retry_after=1, headers={"Connection": "close"})

    def receive_body(self) -> None:
        """Start collecting the body, or refuse it at once when its declared length is over the limit."""
        length = self.request.headers.get("Content-Length", "")
        self._limit = body_limit(self)
        if length.isdigit() and int(length) > self._limit:
            self._refuse_body()
        else:
            self.request.body = self._body = bytearray()  # type: ignore[assignment]

    def data_received(self, chunk: bytes) -> None:
        if self._body is None or self._finished:
            return
        if len(self._body) + len(chunk) > self._limit:
            self._refuse_body()
        else:
            self._body.extend(chunk)

    def _refuse_body(self) -> None:
        self._body = None
        self.set_header("Connection", "close")  # the rest of the body is never read
        self.send_error(413)

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
    """Unknown paths: a JSON 404 rather than Tornado's HTML page. Refused by ``check_request``,
    once the body is in (see BaseHandler), so the connection stays usable."""

    def check_request(self) -> None:
        raise tornado.web.HTTPError(404)

    def get(self, *args: Any) -> None:  # never runs: check_request refuses first
        pass

    head = post = put = patch = delete = options = get

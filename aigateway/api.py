"""The client API over HTTP: one handler class per operation, whatever the wire format (the ``fmt``
route kwarg), so authentication, policy, limits and accounting run through one code path
(relay.py); ``ClientStream``, the relay's sink, with the backpressure Tornado lacks; and the route
table, built from what each codec declares (``ENDPOINTS``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from tornado.ioloop import IOLoop

from aigateway import embedding, listing, relay
from aigateway.formats import FORMATS
from aigateway.formats.contract import CHAT, COUNT_TOKENS, EMBED, MODELS, Codec, Counting, Embedding
from aigateway.neutral import ErrorKind, GatewayError
from aigateway.web import BaseHandler

log = logging.getLogger("aigateway.http")
# Tornado buffers writes to a client without limit. Past this many unsent bytes the relay stops
# reading from the upstream until the client has caught up (backpressure); past the hard bound,
# or when the client takes no byte for the provider's timeout, the stream is cut.
CLIENT_BUFFER_MAX = 1024 * 1024
CLIENT_BUFFER_HARD = 4 * CLIENT_BUFFER_MAX
RESUME_POLL_SECONDS = 0.05


class ClientStream:
    """The relay's sink: the client's connection behind an API handler. Tornado buffers writes
    without limit and has no write timeout, so this is where a slow reader is handled: the upstream
    is paused while more than a megabyte waits, and a client that takes nothing for the provider's
    timeout (or lets the hard bound fill) is cut off."""

    def __init__(self, handler: ApiHandler) -> None:
        self.handler = handler
        self.request = handler.request
        self.started = False  # a stream's status and headers are out
        self._upstream: relay.Upstream | None = None
        self._timeout = 60.0
        self._on_too_slow: Callable[[int], None] | None = None
        self._client = ""  # its name, for the log
        self._holding = False  # the upstream is paused until the client drains what it was sent
        self._watchdog: Any = None  # IOLoop timeout of _watch
        self._on_stuck: Callable[[int], None] | None = None

    # -- what the relay calls
    def closed(self) -> bool:
        return self._stream().closed()

    def set_header(self, name: str, value: str) -> None:
        self.handler.set_header(name, value)

    def answer(self, body: bytes) -> None:
        self.handler.set_header("Content-Type", "application/json")
        self.handler.finish(body)

    def error(self, err: GatewayError) -> None:
        self.handler.write_gateway_error(err)

    def start_stream(self, content_type: str, upstream: relay.Upstream, timeout: float,
                     on_too_slow: Callable[[int], None], client: str) -> None:
        """Send a stream's status and headers. Stream events are small writes that must not wait,
        under Nagle's algorithm, for the client's delayed ACK of the previous one (up to 40 ms on
        Linux): TCP_NODELAY for the rest of the response (Tornado turns Nagle back on at its end)."""
        self.started = True
        self._upstream, self._timeout, self._on_too_slow, self._client = upstream, timeout, on_too_slow, client
        handler = self.handler
        handler.set_status(200)
        handler.set_header("Content-Type", content_type)
        handler.set_header("Cache-Control", "no-store")
        handler.set_header("X-Accel-Buffering", "no")
        stream = self._stream()
        if not stream.closed():
            stream.set_nodelay(True)

    def send(self, data: bytes) -> None:
        self.handler.write(data)
        self.handler.flush()
        if self._upstream is not None and self.pending_bytes() > CLIENT_BUFFER_MAX:
            self._backpressure()

    def end(self) -> None:
        self.handler.finish()

    def drain(self, timeout: float) -> None:
        """The exchange is over: whatever is still unsent, a client that takes none of it for
        ``timeout`` is dropped. Forgets the upstream and the exchange's callback (no cycle left)."""
        self._holding = False
        self._upstream = self._on_too_slow = None
        self._watch(timeout, None)

    # -- the connection (Tornado keeps no public count of unsent bytes; its IOStream's buffer is it)
    def _stream(self) -> Any:
        return self.request.connection.stream  # type: ignore[union-attr]

    def pending_bytes(self) -> int:
        """Bytes written to the client that its socket has not taken yet."""
        stream = self._stream()
        return 0 if stream.closed() else len(stream._write_buffer)

    def _backpressure(self) -> None:
        pending = self.pending_bytes()
        if pending > CLIENT_BUFFER_HARD:
            self._too_slow(pending)
            self.request.connection.close()  # type: ignore[union-attr]
            return
        self._upstream.pause()  # type: ignore[union-attr]
        if not self._holding:
            self._holding = True
            log.debug("client %s reads slowly (%d bytes unsent): upstream paused", self._client, pending)
            self._watch(self._timeout, self._too_slow)
            IOLoop.current().call_later(RESUME_POLL_SECONDS, self._maybe_resume)

    def _too_slow(self, unsent: int) -> None:
        if self._on_too_slow is not None:
            self._on_too_slow(unsent)

    def _maybe_resume(self) -> None:
        # Polled while paused: Tornado's flush futures cannot say when a given write is out (a
        # later write takes over the connection's future), its IOStream's byte count can.
        if not self._holding:
            return
        if self.pending_bytes() > CLIENT_BUFFER_MAX // 4:
            IOLoop.current().call_later(RESUME_POLL_SECONDS, self._maybe_resume)
            return
        self._holding = False
        self._upstream.resume()  # type: ignore[union-attr]

    def _watch(self, timeout: float, on_stuck: Callable[[int], None] | None) -> None:
        """Drop the connection if bytes wait for the client and it takes none of them for ``timeout``
        seconds; ``on_stuck(unsent)`` runs first. A later call replaces ``on_stuck``."""
        self._on_stuck = on_stuck
        stream = self._stream()
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


class ApiHandler(BaseHandler):
    """Shared by the API routes: the upstream call to cancel on disconnect."""

    exchange: relay.Exchange | None = None

    def on_connection_close(self) -> None:
        """The client left: stop the upstream transfer at once (no paying for unread tokens)."""
        if self.exchange is not None and self.exchange.call is not None:
            self.exchange.call.cancel()


class ChatHandler(ApiHandler):
    async def post(self, *path_args: str) -> None:
        """A chat request in this route's format (OpenAI chat completions, Anthropic messages, Gemini
        generateContent / streamGenerateContent), streamed or not. Handler and exchange point at each
        other while it runs; dropping the handler's side at the end lets reference counting free the
        whole request at once rather than leave ~60 objects a request to the cyclic collector."""
        route = self.fmt.route(path_args, self.request.query_arguments)
        self.exchange = relay.Exchange(self.gateway, ClientStream(self), self.fmt, route)
        try:
            await self.exchange.run(self.request.body)
        finally:
            self.exchange = None


class CountTokensHandler(ApiHandler):
    async def post(self, *path_args: str) -> None:
        """Anthropic's count_tokens, Gemini's countTokens: the gateway's own estimate."""
        route = self.fmt.route(path_args, self.request.query_arguments)
        codec = cast(Counting, self.fmt)  # a codec with a COUNT_TOKENS endpoint (tests/test_codec_contract.py)
        await relay.count_tokens(self.gateway, ClientStream(self), codec, route, self.request.body)


class EmbedHandler(ApiHandler):
    async def post(self, *path_args: str) -> None:
        """OpenAI embeddings, Gemini embedContent / batchEmbedContents (aigateway/embedding.py)."""
        route = self.fmt.route(path_args, self.request.query_arguments)
        codec = cast(Embedding, self.fmt)  # a codec with an EMBED endpoint (tests/test_codec_contract.py)
        await embedding.answer(self.gateway, ClientStream(self), codec, self.fmt.NAME, route, self.request.body)


def _hinted(handler: BaseHandler, hint: str) -> bool:
    if hint[0] == "?":
        return hint[1:] in handler.request.query_arguments
    return hint in handler.request.headers


def listing_codec(handler: BaseHandler) -> Codec:
    """``GET /v1/models`` is shared by several kinds of client: tell them apart by what their SDKs
    send (each codec's ``LISTING_HINTS``); a client that shows none gets the default listing."""
    for codec in SHARED_LISTING:
        if any(_hinted(handler, hint) for hint in codec.LISTING_HINTS):
            return codec
    return DEFAULT_LISTING


class ModelsHandler(ApiHandler):
    def initialize(self, fmt: str = "auto") -> None:
        self.fmt = listing_codec(self) if fmt == "auto" else FORMATS[fmt]

    async def get(self, model_id: str | None = None) -> None:
        """The models the calling client may use, in the caller's own list format."""
        client = relay.authenticate(self.gateway, self.request)
        ids = await listing.for_client(self.gateway, client)
        model_id = model_id.removeprefix("models/") if model_id else None
        if model_id is None:
            self.finish(self.fmt.encode_models(ids))
        elif model_id in ids:
            self.finish(self.fmt.encode_model(model_id))
        else:
            raise GatewayError(404, ErrorKind.NOT_FOUND, f"The model '{model_id}' does not exist.")


class HealthHandler(BaseHandler):
    def get(self) -> None:
        """Liveness for load balancers and service managers."""
        self.finish({"status": "ok"})


SHARED_LISTING = tuple(codec for codec in FORMATS.values()
                       if any(e.shared and e.operation == MODELS for e in codec.ENDPOINTS))
DEFAULT_LISTING = next(codec for codec in SHARED_LISTING if not codec.LISTING_HINTS)
_HANDLERS = {CHAT: ChatHandler, COUNT_TOKENS: CountTokensHandler, EMBED: EmbedHandler, MODELS: ModelsHandler}


def _routes() -> list[tuple[str, type[ApiHandler] | type[HealthHandler], dict[str, str]]]:
    """Every codec's endpoints. Requests first: Gemini's ``:method`` paths live under /v1/models/
    too. A listing path several codecs share is one route that picks the caller's format."""
    requests, listings = [], {}
    for name, codec in FORMATS.items():
        for endpoint in codec.ENDPOINTS:
            if endpoint.operation != MODELS:
                requests.append((endpoint.pattern, _HANDLERS[endpoint.operation], {"fmt": name}))
            elif endpoint.shared:
                listings[endpoint.pattern] = (endpoint.pattern, ModelsHandler, {"fmt": "auto"})
            else:
                assert endpoint.pattern not in listings, f"{endpoint.pattern} is claimed twice"
                listings[endpoint.pattern] = (endpoint.pattern, ModelsHandler, {"fmt": name})
    return [*requests, *listings.values(), (r"/health", HealthHandler, {})]


routes = _routes()

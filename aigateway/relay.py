"""The one pipeline every inbound API goes through: authenticate, resolve provider and model,
apply the client's policy, translate (or patch, when formats match), call the upstream, relay
the answer back in the client's format, and account for it — whatever happens."""

from __future__ import annotations

import logging
import re
import secrets
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop

from aigateway.formats import FORMATS
from aigateway.limits import Headroom, LimitExceeded, Reservation, duration, effective_limits
from aigateway.model import (
    ChatRequest,
    ChatResponse,
    ErrorKind,
    Finish,
    GatewayError,
    Policy,
    ReasoningDelta,
    ReasoningPart,
    Route,
    Start,
    StreamError,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageReport,
    invalid,
)
from aigateway.providers import Provider
from aigateway.upstream import Call, ClientGone
from aigateway.usage import UsageRecord, estimate_input, estimate_tokens, tokens_for_chars

if TYPE_CHECKING:
    from aigateway.app import Gateway

log = logging.getLogger("aigateway.relay")
ERROR_BODY_MAX = 64 * 1024
# Tornado buffers writes to a client without limit. Past this many unsent bytes the relay stops
# reading from the upstream until the client has caught up (backpressure); past the hard bound,
# or when the client takes no byte for the provider's timeout, the stream is cut.
CLIENT_BUFFER_MAX = 1024 * 1024
CLIENT_BUFFER_HARD = 4 * CLIENT_BUFFER_MAX
RESUME_POLL_SECONDS = 0.05
# Client input the codecs did not anticipate (a list where a dict belongs...) is the client's error.
_SHAPE_ERRORS = (TypeError, KeyError, ValueError, AttributeError, IndexError, RecursionError)
# Model names reach upstream URLs (Gemini's /models/{model}:generateContent): no path or query tricks.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,255}", re.ASCII)
_CONTENT = (TextDelta, ToolCallStart, ToolCallDelta, ReasoningDelta)


class Sink(Protocol):
    """What the relay needs of a request handler (a Tornado RequestHandler provides it)."""

    request: HTTPServerRequest

    def set_status(self, status: int) -> None: ...
    def set_header(self, name: str, value: Any) -> None: ...
    def write(self, chunk: bytes) -> None: ...
    def flush(self) -> Any: ...
    def finish(self) -> Any: ...
    def client_closed(self) -> bool: ...
    def write_gateway_error(self, err: GatewayError) -> None: ...
    def pending_bytes(self) -> int: ...
    def close_connection(self) -> None: ...
    def send_promptly(self) -> None: ...
    def watch_unread(self, timeout: float, on_stuck: Any = None) -> None: ...


def client_key(request: HTTPServerRequest) -> str | None:
    """The gateway key from whichever header or query parameter the client's SDK uses."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    key = request.headers.get("x-api-key") or request.headers.get("x-goog-api-key")
    if key:
        return key.strip()
    values = request.query_arguments.get("key")
    return values[0].decode("utf-8", "replace") if values else None


def authenticate(gw: Gateway, request: HTTPServerRequest) -> dict:
    """The client behind the request's key: 401 when unknown, 403 when disabled."""
    key = client_key(request)
    if not key:
        raise GatewayError(401, ErrorKind.AUTHENTICATION,
                           "Missing API key: send it as 'Authorization: Bearer <key>' (or x-api-key, x-goog-api-key).")
    client = gw.keys.lookup(key)
    if client is None:
        raise GatewayError(401, ErrorKind.AUTHENTICATION, "Invalid API key.")
    if not client["enabled"]:
        raise GatewayError(403, ErrorKind.PERMISSION, "This API key's client is disabled.")
    return client


def provider_of(gw: Gateway, client: dict) -> Provider:
    provider = gw.config.providers.get(client["provider"])
    if provider is None:
        raise GatewayError(500, ErrorKind.SERVER,
                           f"client {client['name']!r} uses provider {client['provider']!r}, which is not configured")
    return provider


def resolve_model(requested: str | None, client: dict, provider: Provider) -> str:
    """Request model, else the client's default, else the provider's; checked against allowed_models."""
    model = requested or client["default_model"] or provider.default_model
    if not model:
        raise invalid("model: no model given and no default configured", "model")
    if not isinstance(model, str) or not _MODEL_NAME.fullmatch(model) or ".." in model.split("/"):
        raise invalid("model: not a valid model name (letters, digits and . _ : / @ + - only)", "model")
    if provider.allowed_models and model not in provider.allowed_models:
        raise GatewayError(404, ErrorKind.NOT_FOUND,
                           f"The model '{model}' is not available to this client. "
                           f"Available: {', '.join(provider.allowed_models)}.", param="model")
    return model


def apply_policy(req: ChatRequest, policy: Policy) -> None:
    """The translation path's equivalent of a format's ``patch_request``."""
    req.model = policy.model
    if policy.system:
        req.system.insert(0, policy.system)
    if policy.max_tokens is not None:
        asked = req.params.max_tokens
        req.params.max_tokens = min(asked, policy.max_tokens) if asked else policy.max_tokens


def parse_body(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON ({exc.args[0].split(':')[0]}).") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def decode_guarded(decode: Any, *args: Any) -> Any:
    """Run a codec's request-side function on client input: a shape it did not anticipate is a
    400 naming the problem, never a 500 (logged, so a codec gap is still visible)."""
    try:
        return decode(*args)
    except GatewayError:
        raise
    except _SHAPE_ERRORS as exc:
        log.warning("refused a request the codec could not read: %s: %s", type(exc).__name__, exc)
        raise invalid(f"The request body has an unexpected shape ({type(exc).__name__}: "
                      f"{str(exc)[:200]}).") from None


def upstream_body(out: dict) -> bytes:
    """The upstream request's JSON. orjson writes at most 254 levels of nesting (it reads 1024), so a
    client body nested deeper than that parses but cannot be forwarded: the client's error."""
    try:
        return orjson.dumps(out)
    except TypeError as exc:
        if "ecursion" not in str(exc):
            raise
        raise invalid("The request body is nested too deeply to forward (at most 254 levels).") from None


def _retry_after(call: Call) -> float | None:
    value = call.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


class Exchange:
    """One chat request from arrival to its usage record."""

    def __init__(self, gw: Gateway, sink: Sink, fmt: ModuleType, route: Route) -> None:
        self.gw = gw
        self.sink = sink
        self.fmt = fmt
        self.route = route
        self.t0 = time.monotonic()
        self.record = UsageRecord(None, "", fmt.NAME)
        self.call: Call | None = None
        self.started = False  # response headers sent: errors must now go in-band
        self.ttft: float | None = None
        self.usage: Usage | None = None
        self.start_usage: Usage | None = None
        self.finished = False
        self.failed: GatewayError | None = None
        self.out_chars = 0
        self.input_estimate = 0
        self.reservation: Reservation | None = None
        self.limits: dict[str, int] | None = None  # the client's effective limits, once authenticated
        self.encoder: Any = None  # the client's StreamEncoder, once streaming
        self._holding = False  # the upstream is paused until the client drains what it was sent

    async def run(self, raw: bytes) -> None:
        self.gw.active.add(self)
        self.gw.hub.request_started(self)
        try:
            await self._run(raw)
        except GatewayError as err:
            self._fail(err)
        except ClientGone:
            self._client_left()
        except Exception:  # a gateway bug: the client still gets a clean error, in-band if streaming
            log.exception("request failed inside the gateway")
            self._fail(GatewayError(500, ErrorKind.SERVER, "Internal error in the gateway."))
        finally:
            self._holding = False
            self.gw.active.discard(self)
            self._account()
            # Whatever is still unsent: a client that takes none of it for this long is dropped.
            self.sink.watch_unread(self.call.provider.timeout_seconds if self.call else 60.0)

    async def _run(self, raw: bytes) -> None:
        client = authenticate(self.gw, self.sink.request)
        self.record.client_id, self.record.client_name = client["id"], client["name"]
        self.limits = effective_limits(client, self.gw.limit_defaults)
        body = parse_body(raw)
        req = decode_guarded(self.fmt.decode_request, body, self.route)
        self.record.stream = req.stream
        provider = provider_of(self.gw, client)
        self.record.provider = provider.name
        kind = provider.kind
        policy = Policy(resolve_model(req.model, client, provider), client["system_prompt"] or None,
                        stream_usage=kind.stream_usage, max_tokens_field=kind.max_tokens_field)
        self.record.model = policy.model
        self.input_estimate = decode_guarded(estimate_input, req) + estimate_tokens(policy.system or "")
        policy.max_tokens = self._admit(client["id"], self.limits, req.params.max_tokens)
        upstream = FORMATS[kind.format]
        try:
            if upstream is self.fmt:
                path, out = decode_guarded(self.fmt.patch_request, body, policy, self.route)
            else:
                apply_policy(req, policy)
                path, out = decode_guarded(upstream.encode_request, req, policy)
            payload = upstream_body(out)
        except GatewayError:  # refused after all: the request never counted
            self.gw.limiter.release(self.reservation, time.time())
            self.record.admitted = False
            raise
        self._ratelimit_headers()
        self.call = Call(provider, client["base_url"] or provider.base_url, path, payload, stream=req.stream)
        if req.stream:
            await self._stream(req, upstream, policy)
        else:
            await self._plain(req, upstream, policy)

    def _admit(self, client_id: int, limits: dict[str, int], asked_output: int | None) -> int | None:
        """Check and count the client's limits; returns the output cap to send upstream."""
        gw, now = self.gw, time.time()
        try:
            self.reservation = gw.limiter.admit(client_id, limits, self.input_estimate, asked_output, now)
        except LimitExceeded as exc:
            raise limit_error(exc, gw.limiter.headroom(client_id, limits, now)) from None
        self.record.admitted = True
        return self.reservation.max_output

    # -- plain responses
    async def _plain(self, req: ChatRequest, upstream: ModuleType, policy: Policy) -> None:
        call = self.call
        body = await call.run()
        if call.status >= 400:
            raise self._upstream_error(upstream, body)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GatewayError(502, ErrorKind.UPSTREAM,
                               f"the upstream sent a response that is not JSON (HTTP {call.status})") from None
        if not isinstance(parsed, dict):
            raise GatewayError(502, ErrorKind.UPSTREAM, "the upstream sent an unexpected response")
        resp = upstream.decode_response(parsed)
        self.usage = resp.usage
        self.out_chars = _chars(resp)
        self.finished = True
        if upstream is self.fmt:
            out = body
        else:
            self._fill_ids(resp, policy)
            out = orjson.dumps(self.fmt.encode_response(resp, req))
        self.sink.set_header("Content-Type", "application/json")
        self.sink.write(out)
        self.sink.finish()

    def _fill_ids(self, resp: ChatResponse | Start, policy: Policy) -> None:
        """Ids and timestamps a codec may lack (codecs never read clocks or make randomness)."""
        resp.id = resp.id or self.fmt.ID_PREFIX + secrets.token_hex(12)
        resp.created = resp.created or int(time.time())
        resp.model = resp.model or policy.model

    # -- streams
    async def _stream(self, req: ChatRequest, upstream: ModuleType, policy: Policy) -> None:
        call = self.call
        decoder = upstream.StreamDecoder()
        encoder = self.encoder = self.fmt.StreamEncoder(req, self.route)
        same = upstream is self.fmt
        error_body = bytearray()

        def on_chunk(chunk: bytes) -> None:
            if call.status >= 400 or call.status == 0:
                if len(error_body) < ERROR_BODY_MAX:
                    error_body.extend(chunk)
                return
            items = decoder.frames(chunk) if same else decoder.feed(chunk)
            if call.cancelled:  # aborted: nothing more goes to the client, but what arrived is accounted
                self._tap([ev for _, evs in items for ev in evs] if same else items, policy)
                return
            self._relay(items, encoder, same, policy)

        await call.run(on_chunk)
        if call.status >= 400 or call.status == 0:
            raise self._upstream_error(upstream, bytes(error_body))
        closing = decoder.close()  # a last event the upstream did not terminate
        if same:
            self._tap(closing, policy)
        else:
            self._relay(closing, encoder, False, policy)
        if not self.finished and self.failed is None:
            self.failed = GatewayError(502, ErrorKind.UPSTREAM, "the upstream stream ended before it finished")
            self._emit(encoder.encode(StreamError(self.failed)), encoder)
        self._emit(encoder.close(), encoder)
        if not self.sink.client_closed():
            self.sink.finish()

    def _relay(self, items: list, encoder: Any, same: bool, policy: Policy) -> None:
        """Pass decoded upstream events (or, on the fast path, raw frames) to the client."""
        out = []
        if same:
            for frame, events in items:
                if self.failed is not None:  # the stream already ended with an error event
                    break
                self._tap(events, policy)
                # An error is re-encoded, not relayed: the frame may be the malformed data behind it.
                out.append(encoder.relay(frame, events) if self.failed is None
                           else encoder.encode(StreamError(self.failed)))
        else:
            for event in items:
                self._tap((event,), policy)
                out.append(encoder.encode(event))
        self._emit(b"".join(out), encoder)

    def _tap(self, events: Any, policy: Policy) -> None:
        for ev in events:
            if isinstance(ev, _CONTENT):
                if self.ttft is None:
                    self.ttft = time.monotonic()
                if isinstance(ev, (TextDelta, ReasoningDelta)):
                    self.out_chars += len(ev.text)
                elif isinstance(ev, ToolCallDelta):
                    self.out_chars += len(ev.args)
                else:
                    self.out_chars += len(ev.name)
            elif isinstance(ev, UsageReport):
                self.usage = ev.usage
            elif isinstance(ev, Finish):
                self.finished = True
            elif isinstance(ev, Start):
                self._fill_ids(ev, policy)
                self.start_usage = ev.usage
            elif isinstance(ev, StreamError):
                self.failed = self._scrub(ev.error)

    def _emit(self, data: bytes, encoder: Any) -> None:
        if not data:
            return
        if self.sink.client_closed():
            self.call.cancel()
            return
        if not self.started:
            self.started = True
            self.sink.set_status(200)
            self.sink.set_header("Content-Type", encoder.content_type)
            self.sink.set_header("Cache-Control", "no-store")
            self.sink.set_header("X-Accel-Buffering", "no")
            self.sink.send_promptly()
        self.sink.write(data)
        self.sink.flush()
        if self.sink.pending_bytes() > CLIENT_BUFFER_MAX:
            self._backpressure()

    # -- slow clients
    def _backpressure(self) -> None:
        """The client reads slower than the upstream writes. Pause the upstream until the client
        has taken most of what it was sent; a client that takes nothing for the provider's
        timeout, or lets the hard bound fill, is cut off."""
        pending = self.sink.pending_bytes()
        if pending > CLIENT_BUFFER_HARD:
            self._too_slow(pending)
            self.sink.close_connection()
            return
        self.call.pause()
        if not self._holding:
            self._holding = True
            log.debug("client %s reads slowly (%d bytes unsent): upstream paused", self.record.client_name, pending)
            self.sink.watch_unread(self.call.provider.timeout_seconds, self._too_slow)
            IOLoop.current().call_later(RESUME_POLL_SECONDS, self._maybe_resume)

    def _maybe_resume(self) -> None:
        # Polled while paused: Tornado's flush futures cannot say when a given write is out (a
        # later write takes over the connection's future), its IOStream's byte count can.
        if not self._holding:
            return
        if self.sink.pending_bytes() > CLIENT_BUFFER_MAX // 4:
            IOLoop.current().call_later(RESUME_POLL_SECONDS, self._maybe_resume)
            return
        self._holding = False
        self.call.resume()

    def _too_slow(self, unsent: int) -> None:
        """Record a client that stopped reading and abort the upstream (the caller drops the socket)."""
        self.record.status = 499
        self.record.error = f"client too slow: {unsent} bytes sent to it were still unread; stream cut"
        self.call.cancel()

    # -- errors and accounting
    def _upstream_error(self, upstream: ModuleType, body: bytes) -> GatewayError:
        err = self._scrub(upstream.decode_error(self.call.status or 502, body))
        if err.retry_after is None:
            err.retry_after = _retry_after(self.call)
        return err

    def _scrub(self, err: GatewayError) -> GatewayError:
        """An upstream's error message may quote the gateway's provider key back: never pass it on."""
        key = self.call.provider.api_key if self.call is not None else ""
        if len(key) >= 4 and key in err.message:
            err.message = err.message.replace(key, "[redacted]")
        return err

    def abort(self) -> None:
        """End this exchange early (shutdown grace period over): the client gets a clean error."""
        if self.call is not None:
            self.call.cancel(GatewayError(503, ErrorKind.OVERLOADED, "the gateway is shutting down"))

    def _fail(self, err: GatewayError) -> None:
        self.failed = err
        if self.sink.client_closed():
            return
        if self.started:  # headers are gone: report in-band, then end the stream cleanly
            self.sink.write(self.encoder.encode(StreamError(err)) + self.encoder.close())
            self.sink.finish()
        else:
            if self.limits is not None:  # an authenticated client's every answer says where its limits stand
                self._ratelimit_headers()
            self.sink.write_gateway_error(err)

    def _ratelimit_headers(self) -> None:
        room = self.gw.limiter.headroom(self.record.client_id, self.limits, time.time())
        for name, value in ratelimit_headers(room).items():
            self.sink.set_header(name, value)

    def _client_left(self) -> None:
        """The client closed the connection: a 499, unless the request already had its outcome. SDKs
        close as soon as they have what they need (openai-python at ``[DONE]``, which the fast path
        relays before the upstream's own end; openai-python and google-genai at an in-band error
        event), so a finished and accounted answer stays a 200 and an upstream failure keeps its status."""
        if self.record.status == 200 and self.failed is None and not (self.finished and self.usage is not None):
            self.record.status, self.record.error = 499, "client closed the connection"

    def _account(self) -> None:
        rec = self.record
        rec.latency_ms = (time.monotonic() - self.t0) * 1000
        if self.ttft is not None:
            rec.ttft_ms = (self.ttft - self.t0) * 1000
        if self.failed is not None and rec.status == 200:
            rec.status = self.failed.status
            rec.error = self.failed.message[:500]
        if self.call is not None and self.call.cancelled:
            self._client_left()
        usage = self.usage
        if usage is not None:
            rec.input_tokens, rec.output_tokens, rec.cached_tokens = (
                usage.input_tokens, usage.output_tokens, usage.cached_tokens)
        elif self.out_chars or self.finished:
            # No usage from the upstream (cut stream, or a server that reports none): estimate.
            # An answer that never became one (an HTML page, malformed data, a failure before any
            # content) costs nothing.
            start = self.start_usage
            rec.input_tokens = start.input_tokens if start and start.input_tokens else self.input_estimate
            rec.output_tokens = tokens_for_chars(self.out_chars)
            rec.estimated = True
        if self.reservation is not None:
            self.gw.limiter.settle(self.reservation, rec.input_tokens, rec.output_tokens, time.time())
        if rec.status >= 400 and rec.status != 499:
            log.info("request failed: client=%s provider=%s model=%s status=%s error=%s",
                     rec.client_name, rec.provider, rec.model, rec.status, rec.error)
        self.gw.record(rec)
        self.gw.hub.request_finished(rec)


_RATE_LIMITS = ("rpm", "rph", "rpd")


def limit_error(exc: LimitExceeded, room: Headroom) -> GatewayError:
    """A 429 naming the limit hit and when it resets. The per-request caps never reset, so
    retrying is pointless: ``x-should-retry: false`` stops the SDKs' automatic retries."""
    rate = exc.limit in _RATE_LIMITS
    headers = ratelimit_headers(room)
    if exc.retry_after:
        message = f"{'Rate limit' if rate else 'Quota'} exceeded: {exc.message}; resets in {duration(exc.retry_after)}."
    else:
        message = f"Request too large for this client: {exc.message}."
        headers["x-should-retry"] = "false"
    return GatewayError(429, ErrorKind.RATE_LIMIT if rate else ErrorKind.QUOTA, message, param=exc.limit,
                        retry_after=exc.retry_after or None, limit=exc.limit, headers=headers)


def ratelimit_headers(room: Headroom) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the tightest request window and token quota."""
    out = {}
    if room.limit_requests is not None:
        out["x-ratelimit-limit-requests"] = str(room.limit_requests)
        out["x-ratelimit-remaining-requests"] = str(room.remaining_requests)
        out["x-ratelimit-reset-requests"] = duration(room.reset_requests)
    if room.limit_tokens is not None:
        out["x-ratelimit-limit-tokens"] = str(room.limit_tokens)
        out["x-ratelimit-remaining-tokens"] = str(room.remaining_tokens)
        out["x-ratelimit-reset-tokens"] = duration(room.reset_tokens)
    return out


def _chars(resp: ChatResponse) -> int:
    return sum(len(p.text) if isinstance(p, (TextPart, ReasoningPart)) else
               len(p.arguments) + len(p.name) if isinstance(p, ToolCallPart) else 0 for p in resp.parts)


async def count_tokens(gw: Gateway, sink: Sink, fmt: ModuleType, route: Route, raw: bytes) -> None:
    """count_tokens / countTokens: the gateway's own estimate (the one its limits use), with the
    client's system prompt included; free, so it is neither limited nor logged."""
    try:
        client = authenticate(gw, sink.request)
        req = decode_guarded(fmt.decode_count, parse_body(raw), route)
        provider_of(gw, client)
        system = client["system_prompt"] or ""
        tokens = decode_guarded(estimate_input, req) + (estimate_tokens(system) if system else 0)
    except GatewayError as err:
        sink.write_gateway_error(err)
        return
    sink.set_header("Content-Type", "application/json")
    sink.write(orjson.dumps(fmt.encode_count(tokens)))
    sink.finish()

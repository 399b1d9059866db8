"""The one pipeline every inbound API goes through: authenticate, resolve provider and model,
apply the client's policy, translate (or patch, when formats match), call the upstream, relay
the answer back in the client's format, and account for it — whatever happens.

Two passages carry a request and its answer between the client's format and the upstream's:
``PassThrough`` when both are the same (the body is patched, the upstream's bytes go back as they
came, the decoder only taps them for usage) and ``Translation`` otherwise (decode to the neutral
model, encode in the other format). ``Exchange`` runs either the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from tornado.httputil import HTTPServerRequest

from aigateway import admission, neutral, routing
from aigateway.admission import Admission, ratelimit_headers
from aigateway.flights import MARK_AFTER_SECONDS, FlightMark, new_flight_id
from aigateway.formats import FORMATS
from aigateway.formats.contract import Codec, Counting, StreamDecoding, StreamEncoding
from aigateway.governance import check_key, client_address
from aigateway.limits import duration, effective_limits
from aigateway.pricing import cost_of, worst_rates
from aigateway.providers import Provider
from aigateway.routing import KeyPool, Plan, PoolKey, backoff, pool_of, resolve
from aigateway.tokens import measure_input, tokens_for_chars
from aigateway.upstream import Call, ClientGone
from aigateway.usage import UsageRecord

if TYPE_CHECKING:
    from aigateway.app import Gateway

log = logging.getLogger("aigateway.relay")
ERROR_BODY_MAX = 64 * 1024
# Client input the codecs did not anticipate (a list where a dict belongs...) is the client's error.
_SHAPE_ERRORS = (TypeError, KeyError, ValueError, AttributeError, IndexError, RecursionError)
# Model names reach upstream URLs (Gemini's /models/{model}:generateContent): no path or query tricks.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,255}", re.ASCII)
_CONTENT = (neutral.TextDelta, neutral.ToolCallStart, neutral.ToolCallDelta, neutral.ReasoningDelta)


class Upstream(Protocol):
    """What a sink may do to the upstream transfer feeding it (``upstream.Call`` provides it)."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def cancel(self, reason: neutral.GatewayError | None = None) -> None: ...


class Sink(Protocol):
    """The client's side of an exchange (``api.ClientStream`` over a Tornado handler)."""

    request: HTTPServerRequest

    @property
    def started(self) -> bool: ...  # a stream's headers are out: errors must now go in-band
    def closed(self) -> bool: ...
    def set_header(self, name: str, value: str) -> None: ...
    def answer(self, body: bytes) -> None: ...  # a whole JSON answer, status 200
    def error(self, err: neutral.GatewayError) -> None: ...  # a whole error answer in the route's format
    def start_stream(self, content_type: str, upstream: Upstream, timeout: float,
                     on_too_slow: Callable[[int], None], client: str) -> None: ...
    def send(self, data: bytes) -> None: ...  # stream bytes, with backpressure on ``upstream``
    def end(self) -> None: ...
    def drain(self, timeout: float) -> None: ...  # the exchange is over: drop a client that reads nothing


# -- authentication and policy

def _key_sources() -> tuple[str, ...]:
    """Where clients put their key, from every codec's ``CLIENT_KEYS``: the bearer header first,
    then named headers, then query parameters (a query string is the easiest to leak)."""
    sources = dict.fromkeys(source for codec in FORMATS.values() for source in codec.CLIENT_KEYS)
    return tuple(sorted(sources, key=lambda s: (s != "bearer", s.startswith("?"))))


KEY_SOURCES = _key_sources()


def client_key(request: HTTPServerRequest) -> str | None:
    """The gateway key from whichever header or query parameter the client's SDK uses."""
    for source in KEY_SOURCES:
        if source == "bearer":
            auth = request.headers.get("Authorization", "")
            if auth[:7].lower() == "bearer ":
                return auth[7:].strip() or None
        elif source[0] == "?":
            values = request.query_arguments.get(source[1:])
            if values:
                return values[0].decode("utf-8", "replace")
        elif key := request.headers.get(source):
            return key.strip()
    return None


def authenticate(gw: Gateway, request: HTTPServerRequest) -> Mapping[str, Any]:
    """The client behind the request's key: 401 when unknown, expired or rotated past its grace
    period, 403 when disabled or used from a network it may not use (governance.py)."""
    key = client_key(request)
    if not key:
        raise neutral.GatewayError(401, neutral.ErrorKind.AUTHENTICATION,
                                   "Missing API key: send it as 'Authorization: Bearer <key>' "
                                   "(or x-api-key, x-goog-api-key).")
    now = time.time()
    client, why = gw.keys.lookup(key, now)
    if client is None:
        raise neutral.GatewayError(401, neutral.ErrorKind.AUTHENTICATION, why or "Invalid API key.")
    if not client["enabled"]:
        raise neutral.GatewayError(403, neutral.ErrorKind.PERMISSION, "This API key's client is disabled.")
    if client["expires_at"] or client["allowed_networks"]:
        address = client_address(request.remote_ip or "", request.headers.get("X-Forwarded-For"),
                                 gw.config.get("server.trusted_proxies"))
        check_key(client, address, now)
    return client


def provider_of(gw: Gateway, client: Mapping[str, Any]) -> Provider:
    provider = gw.config.providers.get(client["provider"])
    if provider is None:
        raise neutral.GatewayError(500, neutral.ErrorKind.SERVER, f"client {client['name']!r} uses provider "
                                   f"{client['provider']!r}, which is not configured")
    return provider


def apply_policy(req: neutral.ChatRequest, policy: neutral.Policy) -> None:
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
        raise neutral.invalid(f"The request body is not valid JSON ({exc.args[0].split(':')[0]}).") from None
    if not isinstance(body, dict):
        raise neutral.invalid("The request body must be a JSON object.")
    return body


def decode_guarded(decode: Callable[..., Any], *args: Any) -> Any:
    """Run a codec's request-side function on client input: a shape it did not anticipate is a
    400 naming the problem, never a 500 (logged, so a codec gap is still visible)."""
    try:
        return decode(*args)
    except neutral.GatewayError:
        raise
    except _SHAPE_ERRORS as exc:
        log.warning("refused a request the codec could not read: %s: %s", type(exc).__name__, exc)
        raise neutral.invalid(f"The request body has an unexpected shape ({type(exc).__name__}: "
                              f"{str(exc)[:200]}).") from None


def upstream_body(out: dict) -> bytes:
    """The upstream request's JSON. orjson writes at most 254 levels of nesting (it reads 1024), so a
    client body nested deeper than that parses but cannot be forwarded: the client's error."""
    try:
        return orjson.dumps(out)
    except TypeError as exc:
        if "ecursion" not in str(exc):
            raise
        raise neutral.invalid("The request body is nested too deeply to forward (at most 254 levels).") from None


def upstream_json(call: Call, body: bytes) -> dict:
    """A successful upstream answer's JSON object; anything else (an HTML page, a list) is a 502."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, "the upstream sent a response that is "
                                   f"not JSON (HTTP {call.status})") from None
    if not isinstance(parsed, dict):
        raise neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, "the upstream sent an unexpected response")
    return parsed


def scrub(err: neutral.GatewayError, key: str) -> neutral.GatewayError:
    """An upstream's error message may quote the gateway's provider key back: never pass it on."""
    if len(key) >= 4 and key in err.message:
        err.message = err.message.replace(key, "[redacted]")
    return err


def fill_ids(resp: neutral.ChatResponse | neutral.Start, prefix: str, model: str) -> None:
    """Ids and timestamps a codec may lack (codecs never read clocks or make randomness)."""
    resp.id = resp.id or prefix + secrets.token_hex(12)
    resp.created = resp.created or int(time.time())
    resp.model = resp.model or model


# -- the two passages

Unit = tuple[Sequence[neutral.Event], Any]  # events decoded from the upstream, and what renders them


class PassThrough:
    """Client and upstream speak one format: the client's body is patched in place (so fields the
    gateway does not model survive), and the upstream's answer goes back as it came; the stream
    decoder runs only as a tap for usage, finish and errors."""

    def __init__(self, codec: Codec) -> None:
        self.codec = self.upstream = codec
        self.decoder: StreamDecoding | None = None
        self.encoder: StreamEncoding | None = None

    def request(self, body: dict, req: neutral.ChatRequest, policy: neutral.Policy,
                route: neutral.Route) -> tuple[str, dict]:
        return self.codec.patch_request(body, policy, route)

    def answer(self, raw: bytes, resp: neutral.ChatResponse, req: neutral.ChatRequest) -> bytes:
        return raw

    def open_stream(self, req: neutral.ChatRequest, route: neutral.Route) -> StreamEncoding:
        self.decoder = self.codec.StreamDecoder()
        self.encoder = self.codec.StreamEncoder(req, route)
        return self.encoder

    def feed(self, chunk: bytes) -> list[Unit]:
        return [(events, frame) for frame, events in self.decoder.frames(chunk)]  # type: ignore[union-attr]

    def close(self) -> list[Unit]:
        """What the decoder held back when the upstream ended: tapped, not relayed (it is no frame)."""
        return [(self.decoder.close(), None)]  # type: ignore[union-attr]

    def render(self, unit: Any, events: Sequence[neutral.Event]) -> bytes:
        return b"" if unit is None else self.encoder.relay(unit, list(events))  # type: ignore[union-attr]


class Translation:
    """Client and upstream speak different formats: through the neutral model both ways."""

    def __init__(self, client: Codec, upstream: Codec) -> None:
        self.client, self.upstream = client, upstream
        self.decoder: StreamDecoding | None = None
        self.encoder: StreamEncoding | None = None

    def request(self, body: dict, req: neutral.ChatRequest, policy: neutral.Policy,
                route: neutral.Route) -> tuple[str, dict]:
        apply_policy(req, policy)
        return self.upstream.encode_request(req, policy)

    def answer(self, raw: bytes, resp: neutral.ChatResponse, req: neutral.ChatRequest) -> bytes:
        fill_ids(resp, self.client.ID_PREFIX, req.model or "")
        return orjson.dumps(self.client.encode_response(resp, req))

    def open_stream(self, req: neutral.ChatRequest, route: neutral.Route) -> StreamEncoding:
        self.decoder = self.upstream.StreamDecoder()
        self.encoder = self.client.StreamEncoder(req, route)
        return self.encoder

    def feed(self, chunk: bytes) -> list[Unit]:
        return [((event,), event) for event in self.decoder.feed(chunk)]  # type: ignore[union-attr]

    def close(self) -> list[Unit]:
        return [((event,), event) for event in self.decoder.close()]  # type: ignore[union-attr]

    def render(self, unit: Any, events: Sequence[neutral.Event]) -> bytes:
        return self.encoder.encode(unit)  # type: ignore[union-attr]


Passage = PassThrough | Translation


def passage_for(client: Codec, upstream: Codec) -> Passage:
    return PassThrough(client) if client is upstream else Translation(client, upstream)


class Meter:
    """What an answer delivered, as it goes by: its first content (time to first token), the
    upstream's usage reports, whether it finished, how it failed, and the characters sent (for an
    estimate when the upstream reports no usage)."""

    __slots__ = ("ttft", "usage", "start_usage", "finished", "failed", "out_chars", "key", "id_prefix", "model")

    def __init__(self, id_prefix: str) -> None:
        self.ttft: float | None = None
        self.usage: neutral.Usage | None = None
        self.start_usage: neutral.Usage | None = None
        self.finished = False
        self.failed: neutral.GatewayError | None = None
        self.out_chars = 0
        self.key = ""  # the provider key, scrubbed from upstream errors
        self.id_prefix, self.model = id_prefix, ""

    def observe(self, events: Sequence[neutral.Event]) -> None:
        for ev in events:
            if isinstance(ev, _CONTENT):
                if self.ttft is None:
                    self.ttft = time.monotonic()
                if isinstance(ev, (neutral.TextDelta, neutral.ReasoningDelta)):
                    self.out_chars += len(ev.text)
                elif isinstance(ev, neutral.ToolCallDelta):
                    self.out_chars += len(ev.args)
                else:
                    self.out_chars += len(ev.name)
            elif isinstance(ev, neutral.UsageReport):
                self.usage = ev.usage
            elif isinstance(ev, neutral.Finish):
                self.finished = True
            elif isinstance(ev, neutral.Start):
                fill_ids(ev, self.id_prefix, self.model)
                self.start_usage = ev.usage
            elif isinstance(ev, neutral.StreamError):
                self.failed = scrub(ev.error, self.key)

    def observe_response(self, resp: neutral.ChatResponse) -> None:
        self.usage = resp.usage
        self.out_chars = sum(len(p.text) if isinstance(p, (neutral.TextPart, neutral.ReasoningPart)) else
                             len(p.arguments) + len(p.name) if isinstance(p, neutral.ToolCallPart) else 0
                             for p in resp.parts)
        self.finished = True


# -- one request

class Exchange:
    """One chat request from arrival to its usage record. ``connect`` makes the upstream call
    (``upstream.Call``; the pipeline tests give a stand-in that plays recorded bytes)."""

    def __init__(self, gw: Gateway, sink: Sink, fmt: Codec, route: neutral.Route,
                 connect: Callable[..., Call] = Call) -> None:
        self.gw, self.sink, self.fmt, self.route, self.connect = gw, sink, fmt, route, connect
        self.t0 = time.monotonic()
        self.record = UsageRecord(None, "", fmt.NAME)
        self.meter = Meter(fmt.ID_PREFIX)
        self.call: Call | None = None
        self.input_estimate = self.input_bound = 0  # tokens.measure_input's, once decoded
        self.admission: Admission | None = None
        self.limits: dict[str, int] | None = None  # the client's effective limits, once authenticated
        self.encoder: StreamEncoding | None = None  # the client's, once streaming
        self._held: list[bytes] = []  # stream bytes before the first content event (see _emit)
        self._streamed_marked: int | None = None  # the output tokens its last flight mark said

    async def run(self, raw: bytes) -> None:
        self.gw.track(self)
        try:
            await self._run(raw)
        except neutral.GatewayError as err:
            self._fail(err)
        except ClientGone:
            self._client_left()
        except Exception:  # a gateway bug: the client still gets a clean error, in-band if streaming
            log.exception("request failed inside the gateway")
            self._fail(neutral.GatewayError(500, neutral.ErrorKind.SERVER, "Internal error in the gateway."))
        finally:
            self.gw.untrack(self)
            self._account()
            # Whatever is still unsent: a client that takes none of it for this long is dropped.
            self.sink.drain(self.call.provider.timeout_seconds if self.call else 60.0)

    async def _run(self, raw: bytes) -> None:
        gw = self.gw
        client = authenticate(gw, self.sink.request)
        self.record.client_id, self.record.client_name = client["id"], client["name"]
        self.limits = effective_limits(client, gw.limit_defaults)
        body = parse_body(raw)
        req = decode_guarded(self.fmt.decode_request, body, self.route)
        self.record.stream = req.stream
        plan = resolve(req.model, client, gw.config.routes, gw.config.providers)
        # The request keeps these provider objects whatever a config change does meanwhile.
        targets = [(gw.config.providers[t.provider], model_name(t.model)) for t in plan.targets]
        self.record.provider, self.record.model = targets[0][0].name, targets[0][1]
        system = client["system_prompt"] or None
        self.input_estimate, self.input_bound = decode_guarded(measure_input, req, system or "")
        self.admission = admission.admit(gw, client, self.limits, self.input_estimate, req.params.max_tokens,
                                         max(1, req.params.n or 1), self.input_bound,
                                         rates=worst_rates(p.prices.find(m) for p, m in targets))
        self.record.admitted = True
        max_output = self.admission.max_output
        self._ratelimit_headers()
        await self._attempts(raw, body, req, plan, targets, client, max_output)

    async def _attempts(self, raw: bytes, body: dict, req: neutral.ChatRequest, plan: Plan,
                        targets: list[tuple[Provider, str]], client: Mapping[str, Any], max_output: int | None) -> None:
        """Try the plan's targets in order, each with its key pool and the route's retries, until one
        answers; an attempt that failed before anything reached the client moves on (routing.py).
        Limits were counted once, before the first attempt; usage is that of the attempt that answered."""
        gw, began, last = self.gw, time.monotonic(), None
        for index, (provider, model) in enumerate(targets):
            pool, retries, tried = gw.pools.get(provider.name) or pool_of(provider), 0, 0
            while True:
                key = pool.choose(model, time.time())
                if key is None and not tried and index == len(targets) - 1 and len(pool.keys) == 1:
                    key = pool.keys[0]  # one key and nowhere else to go: resting it helps no one, ask anyway
                if key is None:  # every key of this provider rests or failed: on to the next target
                    if last is None or last.provider != provider.name:
                        last = Failed(pool_exhausted(provider, pool, model), 0, provider.name)
                    break
                if self.record.attempts:  # the first attempt patched body and request in place
                    body = parse_body(raw)
                    req = decode_guarded(self.fmt.decode_request, body, self.route)
                tried += 1
                try:
                    await self._attempt(provider, model, key.key, body, req, client, max_output)
                    return
                except Failed as failed:
                    last = failed
                keys_trouble = rest_key(gw, pool, key, model, last.status, last.error)  # the key's fault
                if keys_trouble and len(pool.keys) > 1:
                    continue  # another key of this provider may answer
                moves_on = keys_trouble or routing.moves_on(last.status, plan.fallback_statuses)
                delay = backoff(retries + 1, last.error.retry_after)
                if (retries < plan.retries and moves_on
                        and time.monotonic() - began + delay <= plan.route.retry_max_seconds):  # type: ignore[union-attr]
                    retries += 1
                    await asyncio.sleep(delay)
                    continue
                if index == len(targets) - 1 or not moves_on:
                    raise last.error
                break
        assert last is not None
        raise last.error

    async def _attempt(self, provider: Provider, model: str, key: str, body: dict, req: neutral.ChatRequest,
                       client: Mapping[str, Any], max_output: int | None) -> None:
        """One upstream call. Raises Failed when it failed before anything reached the client."""
        kind = provider.kind
        policy = neutral.Policy(model, client["system_prompt"] or None, max_tokens=max_output,
                                stream_usage=kind.stream_usage, max_tokens_field=kind.max_tokens_field)
        passage = passage_for(self.fmt, provider.codec)
        try:
            path, out = decode_guarded(passage.request, body, req, policy, self.route)
            payload = upstream_body(out)
        except neutral.GatewayError:  # refused after all: the request never counted
            if not self.record.attempts:
                admission.release(self.gw, self.admission)  # type: ignore[arg-type]
                self.record.admitted = False
            raise
        self.record.attempts += 1
        self.record.provider, self.record.model = provider.name, model
        self.meter = Meter(self.fmt.ID_PREFIX)
        self.meter.key, self.meter.model = key, model
        own = provider.name == client["provider"] and client["base_url"]  # the client's override of its own
        base_url = client["base_url"] if own else provider.base_url
        call = self.call = self.connect(provider, base_url, path, payload, stream=req.stream, api_key=key)
        try:
            if req.stream:
                await self._stream(call, passage, req)
            else:
                await self._plain(call, passage, req)
        except neutral.GatewayError as err:
            if self.sink.started or self.gw.stopping:  # bytes are out (the error goes in-band), or shutting down
                raise
            raise Failed(err, err.status if call.status >= 400 else 0, provider.name) from None

    async def _plain(self, call: Call, passage: Passage, req: neutral.ChatRequest) -> None:
        body = await call.run()
        if call.status >= 400:
            raise Failed(self._upstream_error(call, passage.upstream, body), call.status, call.provider.name)
        resp = passage.upstream.decode_response(upstream_json(call, body))
        self.meter.observe_response(resp)
        self.sink.answer(passage.answer(body, resp, req))

    async def _stream(self, call: Call, passage: Passage, req: neutral.ChatRequest) -> None:
        self.encoder = passage.open_stream(req, self.route)
        error_body = bytearray()

        def on_chunk(chunk: bytes) -> None:
            if call.status >= 400 or call.status == 0:
                if len(error_body) < ERROR_BODY_MAX:
                    error_body.extend(chunk)
                return
            self._relay(passage, passage.feed(chunk))

        await call.run(on_chunk)
        if call.status >= 400 or call.status == 0:
            raise Failed(self._upstream_error(call, passage.upstream, bytes(error_body)), call.status,
                         call.provider.name)
        self._relay(passage, passage.close())  # a last event the upstream did not terminate
        meter = self.meter
        if not meter.finished and meter.failed is None:
            meter.failed = neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM,
                                                "the upstream stream ended before it finished")
            self._emit(self.encoder.encode(neutral.StreamError(meter.failed)))
        if meter.failed is not None and not self.sink.started:  # failed before its first content
            self._held.clear()
            raise Failed(meter.failed, meter.failed.status, call.provider.name)
        self._emit(self.encoder.close(), end=True)
        if not self.sink.closed():
            self.sink.end()

    def _relay(self, passage: Passage, units: list[Unit]) -> None:
        """Tap each unit of upstream events and pass it on; once the stream failed, the client gets
        the error event (never the frame that may be the malformed data behind it) and nothing more.
        A cancelled call's units are only tapped: what arrived is accounted, nothing is sent."""
        meter, out = self.meter, []
        cancelled = self.call is not None and self.call.cancelled
        for events, unit in units:
            if meter.failed is not None:
                break
            meter.observe(events)
            if cancelled:
                continue
            if meter.failed is None:
                out.append(passage.render(unit, events))
            else:
                out.append(self.encoder.encode(neutral.StreamError(meter.failed)))
        self._emit(b"".join(out))

    def _emit(self, data: bytes, end: bool = False) -> None:
        """Send stream bytes. Until the first content event (or the end), they are held: an attempt
        that fails before it has sent nothing, so the next target may still answer."""
        sink = self.sink
        if not sink.started:
            if self.meter.ttft is None and not self.meter.finished and not end:
                if data:
                    self._held.append(data)
                return
            if self._held:
                data = b"".join((*self._held, data))
                self._held.clear()
        if not data:
            return
        if sink.closed():
            self.call.cancel()  # type: ignore[union-attr]
            return
        if not sink.started:
            call = self.call
            sink.start_stream(self.encoder.content_type, call, call.provider.timeout_seconds,  # type: ignore
                              self._too_slow, self.record.client_name)
        sink.send(data)

    def _too_slow(self, unsent: int) -> None:
        """Record a client that stopped reading and abort the upstream (the sink drops the socket)."""
        self.record.status = 499
        self.record.error = f"client too slow: {unsent} bytes sent to it were still unread; stream cut"
        self.call.cancel()  # type: ignore[union-attr]

    # -- errors and accounting
    def _upstream_error(self, call: Call, upstream: Codec, body: bytes) -> neutral.GatewayError:
        err = scrub(upstream.decode_error(call.status or 502, body), call.provider.api_key)
        if err.retry_after is None:
            err.retry_after = _retry_after(call)
        return err

    def abort(self) -> None:
        """End this exchange early (shutdown grace period over): the client gets a clean error."""
        if self.call is not None:
            self.call.cancel(neutral.GatewayError(503, neutral.ErrorKind.OVERLOADED, "the gateway is shutting down"))

    def _fail(self, err: neutral.GatewayError) -> None:
        self.meter.failed = err
        sink = self.sink
        if sink.closed():
            return
        if sink.started:  # headers are gone: report in-band, then end the stream cleanly
            sink.send(self.encoder.encode(neutral.StreamError(err)) + self.encoder.close())  # type: ignore
            sink.end()
        else:
            if self.limits is not None:  # an authenticated client's every answer says where its limits stand
                self._ratelimit_headers()
            sink.error(err)

    def _ratelimit_headers(self) -> None:
        room = admission.headroom(self.gw, self.record.client_id, self.limits, self.admission)  # type: ignore
        for name, value in ratelimit_headers(room).items():
            self.sink.set_header(name, value)

    def flight_mark(self, now: float) -> FlightMark | None:
        """Where this request stands, for the in-flight table (flights.py): None before it has been
        admitted for ``MARK_AFTER_SECONDS``, and when its output has not grown since the last mark."""
        res, rec, meter = self.admission.client if self.admission else None, self.record, self.meter
        if res is None or res.settled or now - res.at < MARK_AFTER_SECONDS:
            return None
        usage = meter.usage
        streamed = usage.output_tokens if usage else tokens_for_chars(meter.out_chars) if meter.out_chars else None
        if rec.flight_id is not None and streamed == self._streamed_marked:
            return None
        if rec.flight_id is None:
            rec.flight_id = new_flight_id()
        self._streamed_marked = streamed
        start = meter.start_usage
        input_tokens = start.input_tokens if start and start.input_tokens else res.input_tokens
        return FlightMark(rec.flight_id, res.client_id, rec.client_name, rec.inbound, rec.provider, rec.model,
                          rec.stream, res.at, input_tokens, res.output_tokens, streamed, now)

    def _client_left(self) -> None:
        """The client closed the connection: a 499, unless the request already had its outcome. SDKs
        close as soon as they have what they need (openai-python at ``[DONE]``, which the fast path
        relays before the upstream's own end; openai-python and google-genai at an in-band error
        event), so a finished and accounted answer stays a 200 and an upstream failure keeps its status."""
        meter = self.meter
        if self.record.status == 200 and meter.failed is None and not (meter.finished and meter.usage is not None):
            self.record.status, self.record.error = 499, "client closed the connection"

    def _account(self) -> None:
        rec, meter = self.record, self.meter
        rec.latency_ms = (time.monotonic() - self.t0) * 1000
        if meter.ttft is not None:
            rec.ttft_ms = (meter.ttft - self.t0) * 1000
        if meter.failed is not None and rec.status == 200:
            rec.status = meter.failed.status
            rec.error = meter.failed.message[:500]
        if rec.client_id is None and rec.status in (401, 403):  # refused before authentication: aggregated
            if self.gw.refusals.count(rec.status, rec.ts):
                self.gw.record(rec)
            return
        if self.call is not None and self.call.cancelled:
            self._client_left()
        usage = meter.usage
        if usage is not None:
            rec.input_tokens, rec.output_tokens, rec.cached_tokens = (
                usage.input_tokens, usage.output_tokens, usage.cached_tokens)
        elif meter.out_chars or meter.finished:
            # No usage from the upstream (cut stream, or a server that reports none): estimate.
            # An answer that never became one (an HTML page, malformed data, a failure before any
            # content) costs nothing.
            start = meter.start_usage
            rec.input_tokens = start.input_tokens if start and start.input_tokens else self.input_estimate
            rec.output_tokens = tokens_for_chars(meter.out_chars)
            rec.estimated = True
        if (rec.input_tokens or rec.output_tokens) and self.call is not None:  # what was delivered, priced
            billed = usage if usage is not None else neutral.Usage(rec.input_tokens, rec.output_tokens)
            rec.cost_usd, rec.priced = cost_of(self.call.provider.prices, rec.model, billed)
        if self.admission is not None:
            admission.settle(self.gw, self.admission, rec.input_tokens, rec.output_tokens, rec.cost_usd)
        if rec.status >= 400 and rec.status != 499:
            log.info("request failed: client=%s provider=%s model=%s status=%s error=%s",
                     rec.client_name, rec.provider, rec.model, rec.status, rec.error)
        self.gw.record(rec)


class Failed(Exception):
    """An attempt failed before anything reached the client; ``status`` is the upstream's own HTTP
    status (0: no HTTP answer: refused, reset, TLS, timeout), for the fallback rule."""

    def __init__(self, error: neutral.GatewayError, status: int, provider: str) -> None:
        super().__init__(error.message)
        self.error, self.status, self.provider = error, status, provider


def rest_key(gw: Gateway, pool: KeyPool, key: PoolKey, model: str, status: int, error: neutral.GatewayError) -> bool:
    """Rest a key the upstream rate-limited (429), fail one it refused (401/403); True when the
    failure was the key's, so another key of the same provider may be tried."""
    now, config = time.time(), gw.config
    if status == 429:
        pool.rest(key, model, error.retry_after or float(config.get("routing.key_rest_seconds")), now, error.message)
        return True
    if status in (401, 403):
        pool.fail(key, float(config.get("routing.key_failed_seconds")), now, error.message)
        return True
    return False


def pool_exhausted(provider: Provider, pool: KeyPool, model: str) -> neutral.GatewayError:
    """Every key of the provider rests (429, with the soonest Retry-After) or was refused (502)."""
    now = time.time()
    if all(k.state(now) == "failed" for k in pool.keys):
        return neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, f"every key of provider {provider.name} was "
                                    f"refused by the upstream: {pool.keys[0].error}")
    wait = pool.soonest(model, now)
    return neutral.GatewayError(429, neutral.ErrorKind.RATE_LIMIT,
                                f"Rate limit exceeded: every key of provider {provider.name} is resting after "
                                f"the upstream's rate limit; retry in {duration(wait)}.", retry_after=wait)


def model_name(model: str) -> str:
    """A model name that may reach an upstream URL (Gemini's /models/{model}:generateContent)."""
    if not _MODEL_NAME.fullmatch(model) or ".." in model.split("/"):
        raise neutral.invalid("model: not a valid model name (letters, digits and . _ : / @ + - only)", "model")
    return model


def _retry_after(call: Call) -> float | None:
    value = call.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


async def count_tokens(gw: Gateway, sink: Sink, fmt: Counting, route: neutral.Route, raw: bytes) -> None:
    """count_tokens / countTokens: the gateway's own estimate (the one its limits use), with the
    client's system prompt included; free, so it is neither limited nor logged."""
    try:
        client = authenticate(gw, sink.request)
        req = decode_guarded(fmt.decode_count, parse_body(raw), route)
        provider_of(gw, client)
        system = client["system_prompt"] or ""
        tokens = decode_guarded(measure_input, req, system).estimate
    except neutral.GatewayError as err:
        sink.error(err)
        return
    sink.answer(orjson.dumps(fmt.encode_count(tokens)))

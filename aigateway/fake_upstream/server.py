"""The fake provider's HTTP side: request recording, knobs, streaming, model listings and the routes."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets

from aigateway.fake_upstream.anthropic import ANTHROPIC, parse_anthropic
from aigateway.fake_upstream.embeddings import gemini_embeddings, openai_embeddings
from aigateway.fake_upstream.gemini import GEMINI, parse_gemini
from aigateway.fake_upstream.openai import OPENAI, parse_openai
from aigateway.fake_upstream.plan import Ask, FakeError, Format, Frame, Reply, dumps, new_id, plan
from aigateway.fake_upstream.responses import RESPONSES, parse_responses

T = TypeVar("T")

HTML_PAGE = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"

OPENAI_MODELS = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
ANTHROPIC_MODELS = {"claude-sonnet-4-20250514": "Claude Sonnet 4",
                    "claude-3-5-haiku-20241022": "Claude Haiku 3.5"}
GEMINI_PAGE = 2
GEMINI_MODELS = {"gemini-2.0-flash": "Gemini 2.0 Flash", "gemini-2.5-flash": "Gemini 2.5 Flash",
                 "gemini-2.5-pro": "Gemini 2.5 Pro", "gemini-embedding-001": "Gemini Embedding 001"}
STATUS_MESSAGES = {401: "Incorrect API key provided.", 404: "The requested model does not exist.",
                   429: "Rate limit reached. Please try again later.", 529: "Overloaded"}


# ---------------------------------------------------------------- state and handlers

class FakeState:
    """Everything the fake remembers: recent requests, counters for /_fake/stats, and the knobs set
    on the instance (``PUT /_fake/knobs``), which apply to chat and embedding requests as if written
    in them: how a test makes one upstream of several fail, or one key of a pool."""

    def __init__(self) -> None:
        self.requests: deque[dict] = deque(maxlen=200)
        self.stats = {"connections": 0, "requests": 0, "output_tokens": 0, "input_tokens": 0}
        self.knobs: list[dict] = []  # {"knobs": {...}, "key": API key or None (any), "times": N or None (always)}

    def knobs_for(self, key: str) -> dict[str, str]:
        """The instance knobs that apply to a request made with ``key`` (counting down ``times``)."""
        found: dict[str, str] = {}
        for rule in list(self.knobs):
            if rule.get("key") not in (None, key):
                continue
            found.update(rule["knobs"])
            if rule.get("times") is not None:
                rule["times"] -= 1
                if rule["times"] <= 0:
                    self.knobs.remove(rule)
        return found

    def add_usage(self, usage: tuple[int, int]) -> None:
        self.stats["input_tokens"] += usage[0]
        self.stats["output_tokens"] += usage[1]


class CountingHTTPServer(HTTPServer):
    """HTTPServer that counts accepted TCP connections, so tests can check keep-alive reuse."""

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        self.request_callback.settings["fake_state"].stats["connections"] += 1  # type: ignore[union-attr]
        super().handle_stream(stream, address)


class FakeHandler(tornado.web.RequestHandler):
    """Records each API request and writes JSON, streams and errors with the knobs applied."""

    fmt: Format = OPENAI
    body: Any = None

    @property
    def state(self) -> FakeState:
        return self.settings["fake_state"]

    def prepare(self) -> None:
        try:
            self.body = orjson.loads(self.request.body) if self.request.body else None
        except orjson.JSONDecodeError:
            self.body = None
        headers: dict[str, str] = {}
        for name, value in self.request.headers.get_all():
            headers[name.lower()] = f"{headers[name.lower()]}, {value}" if name.lower() in headers else value
        query = {k: v[-1].decode() for k, v in self.request.query_arguments.items()}
        self.state.requests.append({"method": self.request.method, "path": self.request.path, "query": query,
                                    "headers": headers, "body": self.body})
        self.state.stats["requests"] += 1
        if self.fmt.request_id_header:
            self.set_header(self.fmt.request_id_header, new_id("req_"))

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(obj))

    def send_error_body(self, status: int, message: str, retry_after: str | None = None, **details: str) -> None:
        if retry_after:
            self.set_header("retry-after", retry_after)
        body = self.fmt.error(status, message, retry_after)
        if details and "param" in body["error"]:  # only OpenAI's shape names the parameter and a code
            body["error"].update(details)
        self.send_json(body, status)

    def reject(self, exc: FakeError) -> None:
        self.send_error_body(exc.status, exc.message, **exc.details)

    def json_body(self) -> dict:
        if not isinstance(self.body, dict):
            raise FakeError(400, "We could not parse the JSON body of your request.")
        return self.body

    def parsed(self, parse: Callable[[], T]) -> T | None:
        """``parse()``, or None once a request the real API rejects has had its error answer."""
        try:
            return parse()
        except FakeError as exc:
            self.reject(exc)
        except (TypeError, KeyError, AttributeError, ValueError, IndexError):  # a shape the real API rejects too
            self.send_error_body(400, "Invalid request: a field has the wrong type or shape.")
        return None

    def api_key(self) -> str:
        """The key the request was made with, however its format sends it."""
        headers = self.request.headers
        bearer = headers.get("Authorization", "")
        return (bearer[7:] if bearer.startswith("Bearer ") else headers.get("x-api-key")
                or headers.get("x-goog-api-key") or self.get_query_argument("key", ""))

    def refused(self, knobs: dict[str, str]) -> bool:
        """Answer the ``status`` and ``html`` knobs; True when one did."""
        if "status" in knobs:
            status = int(knobs["status"])
            message = STATUS_MESSAGES.get(status, f"Fake error {status}")
            self.send_error_body(status, message, knobs.get("retry_after"))
        elif "html" in knobs:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(HTML_PAGE)
        return "status" in knobs or "html" in knobs

    async def answer(self, parse: Callable[[], Ask]) -> None:
        """Parse, plan and send a chat reply, honouring the knobs."""
        def parse_and_plan() -> tuple[Ask, Reply]:
            ask = parse()
            ask.knobs.update(self.state.knobs_for(self.api_key()))
            return ask, plan(ask)

        planned = self.parsed(parse_and_plan)
        if planned is None or self.refused(planned[0].knobs):
            return None
        (ask, reply), rid = planned, self.fmt.id_prefix + uuid.uuid4().hex[:24]
        if "wait" in ask.knobs:  # nothing at all, not even the status line, for this long
            await asyncio.sleep(float(ask.knobs["wait"]))
        if ask.stream:
            return await self.send_stream(ask, reply, rid)
        await self.send_whole(ask.knobs, lambda: self.fmt.body(ask, reply, rid),
                              (reply.input_tokens, reply.output_tokens))

    async def embed(self, parse: Callable[[], tuple[dict, int, dict[str, str]]]) -> None:
        """Answer an embeddings request, honouring the knobs found in its texts."""
        parsed = self.parsed(parse)
        if parsed is None:
            return None
        body, used, knobs = parsed
        knobs = {**knobs, **self.state.knobs_for(self.api_key())}
        if self.refused(knobs):
            return None
        await self.send_whole(knobs, lambda: body, (used, 0))

    async def send_whole(self, knobs: dict[str, str], body: Callable[[], Any], usage: tuple[int, int]) -> None:
        """A JSON answer with stall/delay/fail_after/malformed/drop_after/utf8split; counts ``usage`` as
        delivered unless the body was broken."""
        wait = float(knobs.get("stall", 0)) + float(knobs.get("delay", 0))
        if wait:
            await asyncio.sleep(wait)
        if "fail_after" in knobs:
            return self.send_error_body(self.fmt.failed_status, "Internal server error")
        data = dumps(body())
        if "malformed" in knobs:  # cut mid-object: not JSON
            data = data[: len(data) // 2]
        self.set_header("Content-Type", "application/json")
        if "drop_after" in knobs:
            self.set_header("Content-Length", str(len(data)))
            self.write(data[: len(data) // 2])
            return await self.drop()
        if "utf8split" in knobs:
            await self.write_bytes(data, True)
            self.finish()
        else:  # one write with a Content-Length: the cheapest answer (the benchmark measures through it)
            self.finish(data)
        if "malformed" not in knobs:  # a broken body delivers no usage
            self.state.add_usage(usage)

    def framing(self, frame: Frame, first: bool) -> bytes:
        """SSE framing: an ``event:`` line when the format names events (Anthropic), then ``data:``."""
        head = f"event: {frame.event}\n".encode() if frame.event else b""
        return head + b"data: " + frame.payload + b"\n\n"

    stream_content_type = "text/event-stream; charset=utf-8"
    stream_end = b""

    async def send_stream(self, ask: Ask, reply: Reply, rid: str) -> None:
        """Write the frames one by one with delay/stall/fail_after/drop_after/utf8split/malformed."""
        knobs, count = ask.knobs, 0
        stamp = "stamp" in knobs and self.stream_content_type.startswith("text/event-stream")
        self.set_header("Content-Type", self.stream_content_type)
        self.set_header("Cache-Control", "no-cache")
        # Each event leaves at once, as from a real API (Tornado keeps Nagle on until finish()).
        self.request.connection.stream.set_nodelay(True)  # type: ignore[union-attr]
        for i, frame in enumerate(self.fmt.frames(ask, reply, rid)):
            if frame.content:
                if str(count) == knobs.get("fail_after"):
                    error = self.framing(self.fmt.stream_error(ask, reply, rid, i), i == 0) + self.stream_end
                    await self.write_bytes(error, False)
                    break
                if str(count) == knobs.get("drop_after"):
                    return await self.drop()
                if "malformed" in knobs:
                    broken = Frame(b'{"malformed": tru', frame.event)
                    await self.write_bytes(self.framing(broken, i == 0), False)
                    break
                if count and "delay" in knobs:
                    await asyncio.sleep(float(knobs["delay"]))
                count += 1
            data = self.framing(frame, i == 0)
            if stamp:  # an SSE comment clients ignore: when this event left, on the shared monotonic clock
                data = b": t=%.6f\n" % time.monotonic() + data
            await self.write_bytes(data, "utf8split" in knobs)
            self.state.add_usage(frame.usage)
            if count == 1 and frame.content and "stall" in knobs:
                await asyncio.sleep(float(knobs["stall"]))
        else:
            self.write(self.stream_end)
        if "linger" in knobs:
            await self.flush()
            await asyncio.sleep(float(knobs["linger"]))
        self.finish()

    async def write_bytes(self, data: bytes, split_utf8: bool) -> None:
        """Write and flush; with split_utf8, cut inside the first multi-byte character and flush twice."""
        lead = next((i for i, b in enumerate(data) if b >= 0xC0), -1) if split_utf8 else -1
        if lead >= 0:
            self.write(data[: lead + 1])
            await self.flush()
            await asyncio.sleep(0.05)
            data = data[lead + 1:]
        self.write(data)
        # Sent at once (one chunk, one TCP segment), not awaited: waiting for each event to drain
        # costs a loop turn per event and makes the fake, not the gateway, a benchmark's bottleneck.
        # A client that has gone still ends the handler here (its usage is not counted as delivered).
        sent = self.flush()
        if sent.done():
            sent.result()  # StreamClosedError once the connection is gone

    async def drop(self) -> None:
        """Flush what was written, then close the TCP connection without finishing the response."""
        await self.flush()
        self.request.connection.close()  # type: ignore[union-attr]


class OpenAIChatHandler(FakeHandler):
    async def post(self) -> None:
        """POST /v1/chat/completions."""
        await self.answer(lambda: parse_openai(self.json_body()))


class ResponsesHandler(FakeHandler):
    fmt = RESPONSES

    async def post(self) -> None:
        """POST /v1/responses."""
        await self.answer(lambda: parse_responses(self.json_body()))


class OpenAIEmbeddingsHandler(FakeHandler):
    async def post(self) -> None:
        """POST /v1/embeddings."""
        await self.embed(lambda: openai_embeddings(self.json_body()))


class GeminiEmbedHandler(FakeHandler):
    fmt = GEMINI

    async def post(self, version: str, model: str, action: str) -> None:
        """POST /{v1beta,v1}/models/{model}:{embedContent,batchEmbedContents}."""
        model = model.removeprefix("models/")
        await self.embed(lambda: gemini_embeddings(self.json_body(), model, action == "batchEmbedContents"))


class AnthropicMessagesHandler(FakeHandler):
    fmt = ANTHROPIC

    async def post(self) -> None:
        """POST /v1/messages."""
        await self.answer(lambda: parse_anthropic(self.json_body()))


class AnthropicCountHandler(FakeHandler):
    fmt = ANTHROPIC

    def post(self) -> None:
        """POST /v1/messages/count_tokens: the input tokens /v1/messages would report."""
        try:
            self.send_json({"input_tokens": parse_anthropic(self.json_body(), count_only=True).input_tokens})
        except FakeError as exc:
            self.send_error_body(exc.status, exc.message)


class GeminiHandler(FakeHandler):
    fmt = GEMINI

    async def post(self, version: str, model: str, action: str) -> None:
        """POST /{v1beta,v1}/models/{model}:{generateContent,streamGenerateContent,countTokens}."""
        model = model.removeprefix("models/")
        if action == "countTokens":
            try:
                tokens_ = parse_gemini(self.json_body(), model).input_tokens
            except FakeError as exc:
                return self.send_error_body(exc.status, exc.message)
            return self.send_json({"totalTokens": tokens_,
                                   "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens_}]})
        self.sse = self.get_query_argument("alt", "") == "sse"
        if action == "streamGenerateContent" and not self.sse:
            self.stream_content_type, self.stream_end = "application/json; charset=UTF-8", b"]"

        def parse() -> Ask:
            ask = parse_gemini(self.json_body(), model)
            ask.stream = action == "streamGenerateContent"
            return ask
        await self.answer(parse)

    def framing(self, frame: Frame, first: bool) -> bytes:
        """``alt=sse``: data lines ended by CRLF as Google sends them; else one JSON array, piece by piece."""
        if self.sse:
            return b"data: " + frame.payload + b"\r\n\r\n"
        return (b"[" if first else b"\r\n,") + frame.payload


class ModelsHandler(FakeHandler):
    def get(self, version: str, model_id: str | None = None) -> None:
        """GET /{v1,v1beta}/models[/{id}]; /v1/models answers in the shape the caller's headers imply."""
        headers = self.request.headers
        shape: Callable[[str, str], dict]
        if version == "v1beta" or "x-goog-api-key" in headers or self.get_query_argument("key", None):
            self.fmt, shape = GEMINI, gemini_model
            models: dict[str, str] = GEMINI_MODELS
            model_id = model_id and model_id.removeprefix("models/")
        elif "anthropic-version" in headers or "x-api-key" in headers:
            self.fmt, shape, models = ANTHROPIC, anthropic_model, ANTHROPIC_MODELS
        else:
            self.fmt, shape, models = OPENAI, openai_model, dict.fromkeys(OPENAI_MODELS, "")
        if model_id is None:
            listing = model_list(self.fmt, [shape(m, name) for m, name in models.items()])
            self.send_json(gemini_page(listing, self.get_query_argument("pageToken", "")) if self.fmt is GEMINI
                           else listing)
        elif model_id in models:
            self.send_json(shape(model_id, models[model_id]))
        else:
            message = f"models/{model_id} is not found for API version {version}" if self.fmt is GEMINI \
                else f"The model '{model_id}' does not exist"
            self.send_error_body(404, message)


def openai_model(model: str, _name: str) -> dict:
    return {"id": model, "object": "model", "created": 1715367049, "owned_by": "system"}


def anthropic_model(model: str, name: str) -> dict:
    created = f"{model[-8:-4]}-{model[-4:-2]}-{model[-2:]}T00:00:00Z"  # ids end in the release date
    return {"type": "model", "id": model, "display_name": name, "created_at": created, "lifecycle": "active",
            "max_input_tokens": 200000, "max_tokens": 64000}


def gemini_model(model: str, name: str) -> dict:
    if "embedding" in model:  # an embedding model lists its own methods and no sampling settings
        return {"name": f"models/{model}", "version": model.rsplit("-", 1)[1], "displayName": name,
                "description": "Obtain a distributed representation of a text.", "inputTokenLimit": 2048,
                "outputTokenLimit": 1, "supportedGenerationMethods": ["embedContent", "countTextTokens",
                                                                      "countTokens", "asyncBatchEmbedContent"]}
    return {"name": f"models/{model}", "version": model.split("-")[1], "displayName": name,
            "description": f"Fake {name}", "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"], "temperature": 1,
            "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": "2.5" in model}


def gemini_page(listing: dict, token: str) -> dict:
    """One page of a Gemini listing. Google may answer any pageSize with a shorter page and a
    ``nextPageToken`` (AIP-158); pages of GEMINI_PAGE make every client follow the tokens."""
    start = int(token) if token.isdigit() else 0
    models = listing["models"]
    page: dict[str, Any] = {"models": models[start:start + GEMINI_PAGE]}
    if start + GEMINI_PAGE < len(models):
        page["nextPageToken"] = str(start + GEMINI_PAGE)
    return page


def model_list(fmt: Format, models: list[dict]) -> dict:
    if fmt is GEMINI:
        return {"models": models}
    if fmt is ANTHROPIC:
        return {"data": models, "has_more": False, "first_id": models[0]["id"], "last_id": models[-1]["id"]}
    return {"object": "list", "data": models}


class RequestsHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        """GET /_fake/requests: the recent API requests, newest last."""
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(list(self.settings["fake_state"].requests)))

    def delete(self) -> None:
        """DELETE /_fake/requests: forget them."""
        self.settings["fake_state"].requests.clear()
        self.set_status(204)


class KnobsHandler(tornado.web.RequestHandler):
    def put(self) -> None:
        """PUT /_fake/knobs ``{"knobs": {"status": "503"}, "key": "sk-...", "times": 2}``: add a rule
        (``key`` and ``times`` optional: any key, every request)."""
        rule = orjson.loads(self.request.body)
        rule["knobs"] = {str(k): str(v) for k, v in rule["knobs"].items()}
        self.settings["fake_state"].knobs.append(rule)
        self.set_status(204)

    def delete(self) -> None:
        """DELETE /_fake/knobs: every rule removed."""
        self.settings["fake_state"].knobs.clear()
        self.set_status(204)


class StatsHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        """GET /_fake/stats: connections, requests and delivered usage totals."""
        self.finish(self.settings["fake_state"].stats)


def make_app(state: FakeState | None = None) -> tornado.web.Application:
    """The fake provider's routes; Gemini routes accept both the v1beta and v1 prefixes."""
    actions = r"(generateContent|streamGenerateContent|countTokens)"
    return tornado.web.Application([
        (r"/v1/chat/completions", OpenAIChatHandler),
        (r"/v1/responses", ResponsesHandler),
        (r"/v1/embeddings", OpenAIEmbeddingsHandler),
        (r"/v1/messages", AnthropicMessagesHandler),
        (r"/v1/messages/count_tokens", AnthropicCountHandler),
        (rf"/(v1beta|v1)/models/(.+?)(?::|%3A){actions}", GeminiHandler),
        (r"/(v1beta|v1)/models/(.+?)(?::|%3A)(embedContent|batchEmbedContents)", GeminiEmbedHandler),
        (r"/(v1beta|v1)/models/?", ModelsHandler),
        (r"/(v1beta|v1)/models/(.+)", ModelsHandler),
        (r"/_fake/requests", RequestsHandler),
        (r"/_fake/stats", StatsHandler),
        (r"/_fake/knobs", KnobsHandler),
    ], fake_state=state or FakeState(), log_function=lambda handler: None)  # tests read /_fake/requests


def serve(host: str, port: int) -> None:
    """Bind (port 0 picks a free port), print the URL, serve until SIGTERM or SIGINT."""
    asyncio.run(_serve(host, port))


async def _serve(host: str, port: int) -> None:
    sockets = bind_sockets(port, host)
    server = CountingHTTPServer(make_app())
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"fake-upstream listening on http://{shown}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()

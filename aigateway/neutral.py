"""The neutral model every wire format decodes into and encodes from.

A request from any client format becomes a ``ChatRequest``; an upstream answer becomes a
``ChatResponse`` or a sequence of stream events. Format modules translate only to and from these
types, so N formats need N codecs rather than N*N translators (the idea of simonw/llm's parts).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import orjson


class FinishReason(str, enum.Enum):
    """Why generation stopped; values are OpenAI's spellings, the most widely understood."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


class ErrorKind(str, enum.Enum):
    """Error categories shared by all formats; each format maps them to its own type names."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"
    SERVER = "server"
    UPSTREAM = "upstream"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"


_STATUS_KIND = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    413: ErrorKind.REQUEST_TOO_LARGE,
    429: ErrorKind.RATE_LIMIT,
    502: ErrorKind.UPSTREAM,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}


def kind_for_status(status: int) -> ErrorKind:
    """The error kind a bare HTTP status stands for (used for upstream errors)."""
    if status in _STATUS_KIND:
        return _STATUS_KIND[status]
    return ErrorKind.INVALID_REQUEST if 400 <= status < 500 else ErrorKind.SERVER


class GatewayError(Exception):
    """Any failure a client should see; each format renders it in its own error shape."""

    def __init__(
        self,
        status: int,
        kind: ErrorKind | None,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        limit: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind or kind_for_status(status)
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.limit = limit
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.kind.value}, {self.message!r})"


def upstream_error(status: int, message: str) -> GatewayError:
    """An upstream HTTP error as the client should see it. A 401/403 means the gateway's own
    provider key was refused: a configuration problem, not the client's, so the client gets 502."""
    if status in (401, 403):
        return GatewayError(502, ErrorKind.UPSTREAM, f"upstream rejected the gateway's credentials: {message}")
    return GatewayError(status, kind_for_status(status), message)


def retry_seconds(err: GatewayError) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(err.retry_after or 0)))


def error_text(status: int, body: bytes) -> tuple[str, Any]:
    """An upstream error body parsed defensively: (a fallback message, the parsed JSON or None).
    HTML error pages and plain text become a short message instead of a parse failure."""
    try:
        return f"upstream answered {status}", orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        if text.startswith("<"):
            return f"upstream answered {status} with a non-JSON (HTML) page", None
        return text[:300] or f"upstream answered {status}", None


def json_object(text: str) -> dict:
    """Tool-call argument text as an object, for formats that carry objects; invalid or empty JSON
    becomes {}."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def invalid(message: str, param: str | None = None) -> GatewayError:
    """A 400 for a request the client must fix."""
    return GatewayError(400, ErrorKind.INVALID_REQUEST, message, param=param)


# ---------------------------------------------------------------- content parts


@dataclass(slots=True)
class TextPart:
    """Answer text; ``refusal`` marks the model declining to answer, which OpenAI's formats carry
    apart (a ``refusal`` field or part) and the others as text ending with their refusal reason."""

    text: str
    refusal: bool = False


@dataclass(slots=True)
class ImagePart:
    """An image either inline (base64 ``data`` + ``media_type``) or by ``url``."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class ToolCallPart:
    """A tool call; ``arguments`` is the JSON text, as OpenAI carries it."""

    id: str
    name: str
    arguments: str = "{}"
    provider_data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolResultPart:
    """A tool's answer, linked by id; ``name`` is filled in when known (Gemini needs it)."""

    tool_call_id: str
    content: str
    name: str | None = None
    is_error: bool = False


@dataclass(slots=True)
class ReasoningPart:
    """Model thinking; ``signature``/``redacted`` are opaque and must round-trip unchanged."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ReasoningPart


@dataclass(slots=True)
class Message:
    """One turn. Roles are ``user`` and ``assistant``; tool results are parts of a user turn. A
    ``system`` message is an instruction in the middle of the conversation (Anthropic's
    mid-conversation system message): text parts only, kept in place where the upstream format has
    such a message, else made user text by ``as_user``."""

    role: str
    parts: list[Part]


def message_text(msg: Message) -> str:
    return "".join(p.text for p in msg.parts if isinstance(p, TextPart))


def as_user(msg: Message) -> Message:
    """A mid-conversation system message as a user turn, for formats without one: wrapped the way
    Claude Code marks its own injected context, so the model reads it as an instruction."""
    if msg.role != "system":
        return msg
    return Message("user", [TextPart(f"<system-reminder>\n{message_text(msg)}\n</system-reminder>")])


# ---------------------------------------------------------------- request


@dataclass(slots=True)
class Tool:
    """A function the model may call. ``namespace``: the named group it came in (a Responses API
    namespace tool), then ``name`` is flattened to ``<namespace>__<name>``."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    namespace: str | None = None


@dataclass(slots=True)
class ToolChoice:
    """``mode`` is auto, none, required or tool (then ``name`` is the forced tool)."""

    mode: str
    name: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    """``type`` is text, json_object or json_schema (then ``schema`` holds it)."""

    type: str
    schema: dict[str, Any] | None = None
    name: str | None = None


@dataclass(slots=True)
class Params:
    """Generation parameters in neutral units; None means "not set by the client"."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    reasoning_effort: str | None = None
    reasoning_budget: int | None = None
    user: str | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str | None
    messages: list[Message]
    system: list[str] = field(default_factory=list)
    params: Params = field(default_factory=Params)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    include_usage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- response


@dataclass(slots=True)
class Usage:
    """Token counts normalised the OpenAI way: ``input_tokens`` includes cached tokens and
    ``output_tokens`` includes reasoning tokens, so billing never depends on the provider."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    created: int
    parts: list[Part]
    finish: FinishReason | None
    usage: Usage | None = None


# ---------------------------------------------------------------- stream events


@dataclass(slots=True)
class Start:
    """The stream opened; ids and timestamps come in here so codecs never read a clock."""

    id: str
    model: str
    created: int
    usage: Usage | None = None


@dataclass(slots=True)
class TextDelta:
    text: str
    refusal: bool = False


@dataclass(slots=True)
class ReasoningDelta:
    text: str = ""
    signature: str | None = None
    redacted: str | None = None


@dataclass(slots=True)
class ToolCallStart:
    """A new tool call; ``index`` counts tool calls (0, 1, ...), not content blocks."""

    index: int
    id: str
    name: str
    provider_data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    args: str


@dataclass(slots=True)
class Finish:
    reason: FinishReason


@dataclass(slots=True)
class UsageReport:
    """Usage so far; later reports replace earlier ones (they are cumulative, never summed)."""

    usage: Usage


@dataclass(slots=True)
class StreamError:
    error: GatewayError


Event = (
    Start | TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | Finish | UsageReport | StreamError
)


def stream_failure(message: str) -> StreamError:
    """An upstream stream the decoder cannot read any further: it ends in a 502 error event."""
    return StreamError(GatewayError(502, ErrorKind.UPSTREAM, message))


def fold(start: Start, events: list[Event]) -> ChatResponse:
    """Fold stream events into one response, so streamed and plain answers account alike."""
    parts: list[Part] = []
    calls: dict[int, ToolCallPart] = {}
    finish: FinishReason | None = None
    usage = start.usage
    for ev in events:
        if isinstance(ev, TextDelta):
            if parts and isinstance(parts[-1], TextPart) and parts[-1].refusal == ev.refusal:
                parts[-1].text += ev.text
            else:
                parts.append(TextPart(ev.text, ev.refusal))
        elif isinstance(ev, ReasoningDelta):
            if parts and isinstance(parts[-1], ReasoningPart) and not ev.redacted:
                parts[-1].text += ev.text
                parts[-1].signature = ev.signature or parts[-1].signature
            else:
                parts.append(ReasoningPart(ev.text, ev.signature, ev.redacted))
        elif isinstance(ev, ToolCallStart):
            calls[ev.index] = ToolCallPart(ev.id, ev.name, "", dict(ev.provider_data))
            parts.append(calls[ev.index])
        elif isinstance(ev, ToolCallDelta) and ev.index in calls:
            calls[ev.index].arguments += ev.args
        elif isinstance(ev, Finish):
            finish = ev.reason
        elif isinstance(ev, UsageReport):
            usage = ev.usage
        elif isinstance(ev, StreamError):
            raise ev.error
    for call in calls.values():
        call.arguments = call.arguments or "{}"
    return ChatResponse(start.id, start.model, start.created, parts, finish, usage)


# ---------------------------------------------------------------- embeddings


@dataclass(slots=True)
class EmbedRequest:
    """Texts to embed, in order (token arrays: OpenAI's, for OpenAI-compatible upstreams only).
    ``batch`` says the client asked for a list (Gemini's batchEmbedContents; OpenAI always is)."""

    model: str | None
    inputs: list[str | list[int]]
    dimensions: int | None = None
    base64: bool = False  # the client wants the vectors base64-encoded (OpenAI ``encoding_format``)
    task_type: str | None = None  # Gemini's taskType, sent on to Gemini upstreams only
    batch: bool = True


@dataclass(slots=True)
class Embeddings:
    """One vector per input, in the inputs' order; ``input_tokens`` None when the upstream reports none."""

    model: str
    vectors: list[list[float]]
    input_tokens: int | None = None


# ---------------------------------------------------------------- relay inputs to codecs


@dataclass(slots=True)
class Route:
    """What the inbound URL says besides the body: Gemini puts the model and the streaming
    choice in the path, and picks SSE or a JSON array with ``?alt=sse``."""

    model: str | None = None
    stream: bool | None = None
    sse: bool = True


@dataclass(slots=True)
class Policy:
    """What the gateway imposes on a request before it goes upstream.

    ``model`` is the resolved upstream model; ``system`` the client's system prompt (prepended);
    ``max_tokens`` the effective output cap (None: leave as asked); ``stream_usage`` whether to ask
    the upstream for usage on streams (Mistral rejects ``stream_options``); ``max_tokens_field``
    the output-cap field an OpenAI-compatible upstream takes (OpenAI's reasoning models refuse
    ``max_tokens``, local servers only know it)."""

    model: str
    system: str | None = None
    max_tokens: int | None = None
    stream_usage: bool = True
    max_tokens_field: str = "max_tokens"

"""OpenAI chat completions: the codec contract (see ``formats/__init__``) for the OpenAI wire
format, spoken by OpenAI, Mistral, Ollama, LM Studio and most other servers (protocols.md §2, §9)."""

from __future__ import annotations

from typing import Any

import orjson

from aigateway.formats.framing import FrameDecoder, SSEFrame, sse
from aigateway.model import (
    ChatRequest,
    ChatResponse,
    ErrorKind,
    Event,
    Finish,
    FinishReason,
    GatewayError,
    ImagePart,
    Message,
    Params,
    Policy,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormat,
    Route,
    Start,
    StreamError,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageReport,
    error_text,
    invalid,
    retry_seconds,
    upstream_error,
)

NAME = "openai"
ID_PREFIX = "chatcmpl-"  # for ids the relay makes up when an upstream gives none
MODELS_PATH = "/models"
CHAT_PATH = "/chat/completions"

# Fields decode_request understands; everything else rides in ChatRequest.extra.
_KNOWN = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop", "n",
    "seed", "presence_penalty", "frequency_penalty", "reasoning_effort", "user", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "stream", "stream_options",
})
_PARAM_FIELDS = ("temperature", "top_p", "top_k", "n", "seed", "presence_penalty", "frequency_penalty",
                 "reasoning_effort", "user")
# What encode_request sends: top_k is not OpenAI's (OpenAI rejects it); from an Anthropic or Gemini
# client it is only a sampling hint, so it is dropped rather than risk a 400.
_SENT_FIELDS = tuple(f for f in _PARAM_FIELDS if f != "top_k")
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "model_length": FinishReason.LENGTH,
           "tool_calls": FinishReason.TOOL_CALLS, "function_call": FinishReason.TOOL_CALLS,
           "content_filter": FinishReason.CONTENT_FILTER}
# protocols.md §8.2: error kind -> (type, code)
_ERROR_TYPES = {
    ErrorKind.INVALID_REQUEST: ("invalid_request_error", None),
    ErrorKind.AUTHENTICATION: ("invalid_request_error", "invalid_api_key"),
    ErrorKind.PERMISSION: ("permission_error", None),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    ErrorKind.REQUEST_TOO_LARGE: ("invalid_request_error", "request_too_large"),
    ErrorKind.RATE_LIMIT: ("rate_limit_exceeded", "rate_limit_exceeded"),
    ErrorKind.QUOTA: ("insufficient_quota", "insufficient_quota"),
    ErrorKind.SERVER: ("server_error", None),
    ErrorKind.UPSTREAM: ("server_error", "upstream_error"),
    ErrorKind.OVERLOADED: ("server_error", "overloaded"),
    ErrorKind.TIMEOUT: ("server_error", "timeout"),
}


# ---------------------------------------------------------------- requests


def _text_of(content: Any, where: str) -> str:
    """Text of a string or a list of text parts (system, tool and assistant content)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    raise invalid(f"{where}: content must be a string or a list of parts", where)


def _user_parts(content: Any, where: str) -> list:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise invalid(f"{where}: content must be a string or a list of parts", where)
    parts: list = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(TextPart(str(part.get("text", ""))))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image if isinstance(image, str) else (image or {}).get("url")
            if not isinstance(url, str) or not url:
                raise invalid(f"{where}: image_url needs a url", where)
            parts.append(_image(url, None if isinstance(image, str) else image.get("detail")))
        else:
            raise invalid(f"{where}: unsupported content part type {kind!r}", where)
    return parts


def _image(url: str, detail: str | None) -> ImagePart:
    """Data URLs become inline base64 images; other URLs stay URLs (protocols.md §5.2)."""
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise invalid("image data URLs must be base64 encoded")
        return ImagePart(media_type=mime or "image/png", data=data, detail=detail)
    return ImagePart(url=url, detail=detail)


def _assistant_parts(msg: dict, where: str) -> list:
    parts: list = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(ReasoningPart(reasoning))
    text = _text_of(msg.get("content"), where)
    if text:
        parts.append(TextPart(text))
    refusal = msg.get("refusal")
    if isinstance(refusal, str) and refusal:  # the model's refusal is its answer (§6.3)
        parts.append(TextPart(refusal))
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        if not isinstance(fn.get("name"), str):
            raise invalid(f"{where}: tool_calls need function.name", where)
        args = fn.get("arguments")
        parts.append(ToolCallPart(str(call.get("id") or ""), fn["name"], args if isinstance(args, str) else "{}"))
    return parts


def _messages(raw: Any) -> tuple[list[str], list[Message]]:
    if not isinstance(raw, list) or not raw:
        raise invalid("messages: a non-empty array of messages is required", "messages")
    system: list[str] = []
    messages: list[Message] = []
    names: dict[str, str] = {}
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise invalid(f"{where}: each message must be an object", where)
        role = msg.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(msg.get("content"), where))
        elif role == "user":
            messages.append(Message("user", _user_parts(msg.get("content"), where)))
        elif role == "assistant":
            parts = _assistant_parts(msg, where)
            names.update((p.id, p.name) for p in parts if isinstance(p, ToolCallPart))
            messages.append(Message("assistant", parts))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise invalid(f"{where}: tool messages need tool_call_id", where)
            result = ToolResultPart(call_id, _text_of(msg.get("content"), where), names.get(call_id))
            if messages and messages[-1].role == "user" and all(
                isinstance(p, ToolResultPart) for p in messages[-1].parts
            ):
                messages[-1].parts.append(result)
            else:
                messages.append(Message("user", [result]))
        else:
            raise invalid(f"{where}: unknown role {role!r}", where)
    return system, messages


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(raw)
    if isinstance(raw, dict) and isinstance((raw.get("function") or {}).get("name"), str):
        return ToolChoice("tool", raw["function"]["name"])
    raise invalid("tool_choice: expected auto, none, required or a function", "tool_choice")


def _response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid("response_format: type must be text, json_object or json_schema", "response_format")
    spec = raw.get("json_schema") or {}
    return ResponseFormat(raw["type"], spec.get("schema"), spec.get("name"))


def decode_request(body: dict, route: Route) -> ChatRequest:
    """Client body to the neutral request; a malformed body raises a 400."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    try:
        system, messages = _messages(body.get("messages"))
        params = Params(**{k: body[k] for k in _PARAM_FIELDS if body.get(k) is not None})
        # max_completion_tokens wins whenever present, so a bad value in it is reported, not skipped
        cap = body.get("max_completion_tokens")
        params.max_tokens = cap if cap is not None else body.get("max_tokens")
        stop = body.get("stop")
        params.stop = [stop] if isinstance(stop, str) else stop
        tools = [
            Tool(t["function"]["name"], t["function"].get("description"), t["function"].get("parameters"))
            for t in body.get("tools") or []
            if t.get("type", "function") == "function"
        ]
        stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
        req = ChatRequest(
            model=body.get("model") if isinstance(body.get("model"), str) else None,
            messages=messages,
            system=system,
            params=params,
            tools=tools,
            tool_choice=_tool_choice(body.get("tool_choice")),
            parallel_tool_calls=body.get("parallel_tool_calls"),
            response_format=_response_format(body.get("response_format")),
            stream=stream,
            include_usage=stream and bool(options.get("include_usage")),
            extra={k: v for k, v in body.items() if k not in _KNOWN},
        )
    except GatewayError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise invalid(f"malformed request: {type(exc).__name__}: {exc}") from None
    _check_numbers(params)
    return req


def _check_numbers(params: Params) -> None:
    for name in ("max_tokens", "n", "seed", "top_k"):
        value = getattr(params, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise invalid(f"{name}: expected an integer", name)
    if params.max_tokens is not None and params.max_tokens < 1:
        raise invalid("max_tokens: must be at least 1", "max_tokens")
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(params, name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise invalid(f"{name}: expected a number", name)
    if params.stop is not None and not (
        isinstance(params.stop, list) and all(isinstance(s, str) for s in params.stop)
    ):
        raise invalid("stop: expected a string or a list of strings", "stop")


def _encode_message(msg: Message) -> list[dict]:
    if msg.role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = "".join(p.text for p in msg.parts if isinstance(p, TextPart))
        calls = [p for p in msg.parts if isinstance(p, ToolCallPart)]
        out["content"] = text if text or not calls else None
        if calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
        return [out]
    encoded = [
        {"role": "tool", "tool_call_id": p.tool_call_id, "content": p.content}
        for p in msg.parts
        if isinstance(p, ToolResultPart)
    ]
    content: list[dict] = []
    for p in msg.parts:
        if isinstance(p, TextPart):
            content.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            url = p.url or f"data:{p.media_type};base64,{p.data}"
            image = {"url": url, "detail": p.detail} if p.detail else {"url": url}
            content.append({"type": "image_url", "image_url": image})
    if len(content) == 1 and content[0]["type"] == "text":
        encoded.append({"role": "user", "content": content[0]["text"]})
    elif content:
        encoded.append({"role": "user", "content": content})
    return encoded


def encode_request(req: ChatRequest, policy: Policy) -> tuple[str, dict]:
    """Neutral request to an OpenAI-compatible upstream body."""
    messages: list[dict] = [{"role": "system", "content": s} for s in req.system]
    for msg in req.messages:
        messages.extend(_encode_message(msg))
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    p = req.params
    for name in _SENT_FIELDS:
        if getattr(p, name) is not None:
            body[name] = getattr(p, name)
    if p.max_tokens is not None:
        body[policy.max_tokens_field] = p.max_tokens
    if p.stop:
        body["stop"] = p.stop
    if req.tools:
        body["tools"] = [
            {"type": "function", "function": {k: v for k, v in
                                              (("name", t.name), ("description", t.description),
                                               ("parameters", t.parameters)) if v is not None}}
            for t in req.tools
        ]
    if req.tool_choice:
        c = req.tool_choice
        body["tool_choice"] = {"type": "function", "function": {"name": c.name}} if c.mode == "tool" else c.mode
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.response_format:
        f = req.response_format
        body["response_format"] = {"type": f.type}
        if f.type == "json_schema":
            body["response_format"]["json_schema"] = {"name": f.name or "response", "schema": f.schema or {}}
    if req.stream:
        body["stream"] = True
        if policy.stream_usage:
            body["stream_options"] = {"include_usage": True}
    return CHAT_PATH, body


def patch_request(body: dict, policy: Policy, route: Route) -> tuple[str, dict]:
    """Same-format fast path: patch model, system prompt and output cap; keep every other field."""
    body["model"] = policy.model
    if policy.system:
        body["messages"].insert(0, {"role": "system", "content": policy.system})
    if policy.max_tokens is not None:
        # clamp every cap field the client sent: an upstream may read either one
        fields = [f for f in ("max_completion_tokens", "max_tokens") if f in body] or [policy.max_tokens_field]
        for field in fields:
            asked = body.get(field)
            body[field] = min(asked, policy.max_tokens) if isinstance(asked, int) and asked > 0 else policy.max_tokens
    if body.get("stream") and policy.stream_usage:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    else:
        # OpenAI rejects stream_options without stream; Mistral (stream_usage off) rejects it always
        body.pop("stream_options", None)
    return CHAT_PATH, body


# ---------------------------------------------------------------- responses


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details") or {}
    out_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        reasoning_tokens=int(out_details.get("reasoning_tokens") or 0),
    )


def _encode_usage(u: Usage) -> dict:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _finish(raw: Any, refused: bool = False) -> FinishReason | None:
    """A finish reason; OpenAI ends a refusal with "stop" and the text in ``refusal``, which the other
    formats say with their own refusal reasons (Anthropic refusal, Gemini SAFETY: §6.1, §6.3)."""
    finish = None if raw is None else _FINISH.get(raw, FinishReason.STOP)
    return FinishReason.CONTENT_FILTER if refused and finish is FinishReason.STOP else finish


def decode_response(body: dict) -> ChatResponse:
    """An upstream chat.completion to the neutral response."""
    try:
        choice = (body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        parts = _assistant_parts(message, "response")
        return ChatResponse(
            id=str(body.get("id") or ""),
            model=str(body.get("model") or ""),
            created=int(body.get("created") or 0),
            parts=parts,
            finish=_finish(choice.get("finish_reason"), bool(message.get("refusal"))),
            usage=_usage(body.get("usage")),
        )
    except (TypeError, AttributeError, ValueError, GatewayError) as exc:
        raise GatewayError(502, ErrorKind.UPSTREAM, f"malformed upstream response: {exc}") from None


def encode_response(resp: ChatResponse, req: ChatRequest) -> dict:
    """The neutral response as an OpenAI chat.completion."""
    text = "".join(p.text for p in resp.parts if isinstance(p, TextPart))
    calls = [p for p in resp.parts if isinstance(p, ToolCallPart)]
    reasoning = "".join(p.text for p in resp.parts if isinstance(p, ReasoningPart))
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None,
                               "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    out = {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": (resp.finish or FinishReason.STOP).value}],
    }
    if resp.usage:
        out["usage"] = _encode_usage(resp.usage)
    return out


# ---------------------------------------------------------------- streams


class StreamDecoder(FrameDecoder):
    """Upstream chat.completion.chunk SSE to neutral events."""

    def __init__(self) -> None:
        super().__init__()
        self._started = self._refused = False
        self._calls: dict[int, tuple[int, str]] = {}  # upstream index -> (neutral index, id)

    def _decode(self, frame: SSEFrame) -> list[Event]:
        data = frame.data
        if not data or data == "[DONE]":
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [StreamError(GatewayError(502, ErrorKind.UPSTREAM, "upstream sent malformed stream data"))]
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error") is not None:
            return [StreamError(decode_error(500, data.encode()))]
        try:
            return self._chunk(chunk)
        except (TypeError, AttributeError, ValueError):
            # a chunk of the wrong shape must end the stream cleanly, never raise into the relay
            return [StreamError(GatewayError(502, ErrorKind.UPSTREAM, "upstream sent a malformed stream chunk"))]

    def _chunk(self, chunk: dict) -> list[Event]:
        events: list[Event] = []
        if not self._started:
            self._started = True
            events.append(Start(str(chunk.get("id") or ""), str(chunk.get("model") or ""),
                                int(chunk.get("created") or 0)))
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events.append(ReasoningDelta(reasoning))
            for text in (delta.get("content"), delta.get("refusal")):
                if isinstance(text, str) and text:
                    events.append(TextDelta(text))
            self._refused = self._refused or bool(delta.get("refusal"))
            for call in delta.get("tool_calls") or ():
                events.extend(self._tool_call(call))
            if choice.get("finish_reason") is not None:
                finish = _finish(choice["finish_reason"], self._refused)
                if finish:
                    events.append(Finish(finish))
        if chunk.get("usage") is not None:  # null on every chunk but the last when usage is asked for
            usage = _usage(chunk["usage"])
            if usage:
                events.append(UsageReport(usage))
        return events

    def _tool_call(self, call: dict) -> list[Event]:
        index = call.get("index", 0)
        fn = call.get("function") or {}
        known = self._calls.get(index)
        events: list[Event] = []
        if known is None or (call.get("id") and call["id"] != known[1]):
            known = (len(self._calls), str(call.get("id") or f"call_{len(self._calls)}"))
            self._calls[index] = known
            events.append(ToolCallStart(known[0], known[1], str(fn.get("name") or "")))
        if fn.get("arguments"):
            events.append(ToolCallDelta(known[0], fn["arguments"]))
        return events


class StreamEncoder:
    """Neutral events to the client's chat.completion.chunk SSE."""

    content_type = "text/event-stream"

    def __init__(self, req: ChatRequest, route: Route) -> None:
        self._include_usage = req.include_usage
        self._head = b""
        self._usage: Usage | None = None
        self._failed = self._relayed = False

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        choice = orjson.dumps({"index": 0, "delta": delta, "finish_reason": finish})
        tail = b',"usage":null}' if self._include_usage else b"}"
        return sse(self._head + b'"choices":[' + choice + b"]" + tail)

    def encode(self, event: Event) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, Start):
            self._head = orjson.dumps({"id": event.id, "object": "chat.completion.chunk",
                                       "created": event.created, "model": event.model})[:-1] + b","
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, ToolCallStart):
            return self._chunk({"tool_calls": [{"index": event.index, "id": event.id, "type": "function",
                                                "function": {"name": event.name, "arguments": ""}}]})
        if isinstance(event, ToolCallDelta):
            return self._chunk({"tool_calls": [{"index": event.index, "function": {"arguments": event.args}}]})
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, Finish):
            return self._chunk({}, event.reason.value)
        if isinstance(event, UsageReport):
            self._usage = event.usage
            return b""
        if isinstance(event, StreamError):
            self._failed = True
            return sse(encode_error(event.error)[2])
        return b""

    def close(self) -> bytes:
        if self._failed or self._relayed:  # after relay(): the upstream's frames ended it
            return b""
        out = b""
        if self._include_usage and self._usage:
            out = sse(self._head + b'"choices":[],"usage":' + orjson.dumps(_encode_usage(self._usage)) + b"}")
        return out + b"data: [DONE]\n\n"

    def relay(self, frame: SSEFrame, events: list[Event]) -> bytes:
        """Fast path: the upstream frame unchanged, except the usage-only chunk the gateway asked
        for on its own account when the client did not."""
        self._relayed = True
        # a usage-only chunk decodes to that one event (after the first chunk's Start)
        if not self._include_usage and len(events) == 1 and isinstance(events[0], UsageReport):
            return b""
        return frame.raw


# ---------------------------------------------------------------- errors and models


def encode_error(err: GatewayError) -> tuple[int, dict[str, str], bytes]:
    """OpenAI's error body: all four keys, always (protocols.md §2.5). Anthropic's 529 is
    Anthropic-only: OpenAI clients get the standard 503 for an overload (§8.2)."""
    kind_type, kind_code = _ERROR_TYPES.get(err.kind, ("server_error", None))
    body = {"error": {"message": err.message, "type": kind_type, "param": err.param,
                      "code": err.code or kind_code}}
    headers = dict(err.headers)
    if err.retry_after is not None:
        headers["Retry-After"] = retry_seconds(err)
    return 503 if err.status == 529 else err.status, headers, orjson.dumps(body)


def decode_error(status: int, body: bytes) -> GatewayError:
    """An upstream error: OpenAI's shape, Mistral's top-level one, 422 ``detail`` lists, LM Studio's
    bare string, or HTML/text (§8.2)."""
    message, parsed = error_text(status, body)
    err = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(err, str):
        message = err
    elif isinstance(err, dict):
        found = err.get("message") or err.get("detail")
        if isinstance(found, str):
            message = found
        elif found:
            message = orjson.dumps(found).decode()[:300]
    return upstream_error(status, message)


def decode_models(body: dict) -> list[str]:
    return [m["id"] for m in body.get("data") or () if isinstance(m, dict) and isinstance(m.get("id"), str)]


def next_models_path(body: dict) -> str | None:
    """OpenAI-compatible listings come in one page."""
    return None


def encode_models(ids: list[str]) -> dict:
    return {"object": "list", "data": [encode_model(i) for i in ids]}


def encode_model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "aigateway"}

"""OpenAI chat completions: the codec contract (``formats/contract.py``) for the OpenAI wire
format, spoken by OpenAI, Mistral, Ollama, LM Studio and most other servers.

References: https://platform.openai.com/docs/api-reference/chat (request, response, streaming
chunks), https://platform.openai.com/docs/guides/error-codes (errors),
https://platform.openai.com/docs/api-reference/models (listing)."""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Mapping
from typing import Any

import orjson

from aigateway import neutral
from aigateway.formats.contract import CHAT, EMBED, MODELS, Endpoint
from aigateway.formats.framing import FrameDecoder, SSEFrame, sse

NAME = "openai"
ID_PREFIX = "chatcmpl-"  # for ids the relay makes up when an upstream gives none
MODELS_PATH = "/models"
ENDPOINTS = (
    Endpoint(r"/(?:v1/)?chat/completions", CHAT),
    Endpoint(r"/(?:v1/)?embeddings", EMBED),
    Endpoint(r"/v1/models", MODELS, shared=True),
    Endpoint(r"/v1/models/(.+)", MODELS, shared=True),
    Endpoint(r"/models", MODELS),
    Endpoint(r"/models/(.+)", MODELS),
)
CLIENT_KEYS = ("bearer",)
LISTING_HINTS = ()  # the shared listing's default: what a plain bearer-key client gets
UPSTREAM_AUTH = "bearer"
UPSTREAM_HEADERS = ()
CHAT_PATH = "/chat/completions"
EMBEDDINGS_PATH = "/embeddings"
MAX_EMBED_INPUTS = 2048  # OpenAI's limit of inputs in one embeddings request

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
_SENT_FIELDS = tuple(f for f in _PARAM_FIELDS if f not in ("top_k", "reasoning_effort"))
# OpenAI's models without reasoning answer 400 to any effort; a translated client's thinking
# setting (Claude Code sends one on every request) is dropped for them instead.
_NO_REASONING = re.compile(r"gpt-4|gpt-3\.5|chatgpt-")
_BUDGET_EFFORTS = ((2048, "low"), (8192, "medium"))  # a thinking budget up to N tokens -> effort


def effort(p: neutral.Params, model: str | None) -> str | None:
    """The reasoning effort to send: the client's own, else its thinking budget in a bucket (Gemini's
    -1, "the model decides", is medium; 0, no thinking, sends none); None for a model without reasoning."""
    if model and _NO_REASONING.match(model.rpartition("/")[2]):
        return None
    if p.reasoning_effort or p.reasoning_budget is None or p.reasoning_budget == 0:
        return p.reasoning_effort
    if p.reasoning_budget < 0:
        return "medium"
    return next((name for top, name in _BUDGET_EFFORTS if p.reasoning_budget <= top), "high")
_FINISH = {"stop": neutral.FinishReason.STOP, "length": neutral.FinishReason.LENGTH,
           "model_length": neutral.FinishReason.LENGTH,
           "tool_calls": neutral.FinishReason.TOOL_CALLS, "function_call": neutral.FinishReason.TOOL_CALLS,
           "content_filter": neutral.FinishReason.CONTENT_FILTER}
# error kind -> (type, code) of OpenAI's error body (https://platform.openai.com/docs/guides/error-codes)
_ERROR_TYPES = {
    neutral.ErrorKind.INVALID_REQUEST: ("invalid_request_error", None),
    neutral.ErrorKind.AUTHENTICATION: ("invalid_request_error", "invalid_api_key"),
    neutral.ErrorKind.PERMISSION: ("permission_error", None),
    neutral.ErrorKind.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    neutral.ErrorKind.REQUEST_TOO_LARGE: ("invalid_request_error", "request_too_large"),
    neutral.ErrorKind.RATE_LIMIT: ("rate_limit_exceeded", "rate_limit_exceeded"),
    neutral.ErrorKind.QUOTA: ("insufficient_quota", "insufficient_quota"),
    neutral.ErrorKind.SERVER: ("server_error", None),
    neutral.ErrorKind.UPSTREAM: ("server_error", "upstream_error"),
    neutral.ErrorKind.OVERLOADED: ("server_error", "overloaded"),
    neutral.ErrorKind.TIMEOUT: ("server_error", "timeout"),
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
    raise neutral.invalid(f"{where}: content must be a string or a list of parts", where)


def _user_parts(content: Any, where: str) -> list:
    if isinstance(content, str):
        return [neutral.TextPart(content)]
    if not isinstance(content, list):
        raise neutral.invalid(f"{where}: content must be a string or a list of parts", where)
    parts: list = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(neutral.TextPart(str(part.get("text", ""))))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image if isinstance(image, str) else (image or {}).get("url")
            if not isinstance(url, str) or not url:
                raise neutral.invalid(f"{where}: image_url needs a url", where)
            parts.append(image_part(url, None if isinstance(image, str) else image.get("detail")))
        else:
            raise neutral.invalid(f"{where}: unsupported content part type {kind!r}", where)
    return parts


def image_part(url: str, detail: str | None) -> neutral.ImagePart:
    """Data URLs become inline base64 images; other URLs stay URLs (also the Responses API's)."""
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise neutral.invalid("image data URLs must be base64 encoded")
        return neutral.ImagePart(media_type=mime or "image/png", data=data, detail=detail)
    return neutral.ImagePart(url=url, detail=detail)


def _assistant_parts(msg: dict, where: str) -> list:
    parts: list = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(neutral.ReasoningPart(reasoning))
    text = _text_of(msg.get("content"), where)
    if text:
        parts.append(neutral.TextPart(text))
    refusal = msg.get("refusal")
    if isinstance(refusal, str) and refusal:  # the model's refusal is its answer
        parts.append(neutral.TextPart(refusal, refusal=True))
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        if not isinstance(fn.get("name"), str):
            raise neutral.invalid(f"{where}: tool_calls need function.name", where)
        args = fn.get("arguments")
        parts.append(neutral.ToolCallPart(str(call.get("id") or ""), fn["name"],
                                          args if isinstance(args, str) else "{}"))
    return parts


def _messages(raw: Any) -> tuple[list[str], list[neutral.Message]]:
    if not isinstance(raw, list) or not raw:
        raise neutral.invalid("messages: a non-empty array of messages is required", "messages")
    system: list[str] = []
    messages: list[neutral.Message] = []
    names: dict[str, str] = {}
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise neutral.invalid(f"{where}: each message must be an object", where)
        role = msg.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(msg.get("content"), where))
        elif role == "user":
            messages.append(neutral.Message("user", _user_parts(msg.get("content"), where)))
        elif role == "assistant":
            parts = _assistant_parts(msg, where)
            names.update((p.id, p.name) for p in parts if isinstance(p, neutral.ToolCallPart))
            messages.append(neutral.Message("assistant", parts))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise neutral.invalid(f"{where}: tool messages need tool_call_id", where)
            result = neutral.ToolResultPart(call_id, _text_of(msg.get("content"), where), names.get(call_id))
            if messages and messages[-1].role == "user" and all(
                isinstance(p, neutral.ToolResultPart) for p in messages[-1].parts
            ):
                messages[-1].parts.append(result)
            else:
                messages.append(neutral.Message("user", [result]))
        else:
            raise neutral.invalid(f"{where}: unknown role {role!r}", where)
    return system, messages


def _tool_choice(raw: Any) -> neutral.ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return neutral.ToolChoice(raw)
    if isinstance(raw, dict) and isinstance((raw.get("function") or {}).get("name"), str):
        return neutral.ToolChoice("tool", raw["function"]["name"])
    raise neutral.invalid("tool_choice: expected auto, none, required or a function", "tool_choice")


def _response_format(raw: Any) -> neutral.ResponseFormat | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in ("text", "json_object", "json_schema"):
        raise neutral.invalid("response_format: type must be text, json_object or json_schema", "response_format")
    spec = raw.get("json_schema") or {}
    return neutral.ResponseFormat(raw["type"], spec.get("schema"), spec.get("name"))


def decode_request(body: dict, route: neutral.Route) -> neutral.ChatRequest:
    """Client body to the neutral request; a malformed body raises a 400."""
    if not isinstance(body, dict):
        raise neutral.invalid("the request body must be a JSON object")
    try:
        system, messages = _messages(body.get("messages"))
        params = neutral.Params(**{k: body[k] for k in _PARAM_FIELDS if body.get(k) is not None})
        # max_completion_tokens wins whenever present, so a bad value in it is reported, not skipped
        cap = body.get("max_completion_tokens")
        params.max_tokens = cap if cap is not None else body.get("max_tokens")
        stop = body.get("stop")
        params.stop = [stop] if isinstance(stop, str) else stop
        tools = [
            neutral.Tool(t["function"]["name"], t["function"].get("description"), t["function"].get("parameters"))
            for t in body.get("tools") or []
            if t.get("type", "function") == "function"
        ]
        stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
        req = neutral.ChatRequest(
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
    except neutral.GatewayError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise neutral.invalid(f"malformed request: {type(exc).__name__}: {exc}") from None
    check_numbers(params)
    return req


def check_numbers(params: neutral.Params, cap: str = "max_tokens") -> None:
    """Types and ranges of the numeric parameters (``cap``: the output cap's name in the client's body)."""
    for name in ("max_tokens", "n", "seed", "top_k"):
        value = getattr(params, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            where = cap if name == "max_tokens" else name
            raise neutral.invalid(f"{where}: expected an integer", where)
    if params.max_tokens is not None and params.max_tokens < 1:
        raise neutral.invalid(f"{cap}: must be at least 1", cap)
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(params, name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise neutral.invalid(f"{name}: expected a number", name)
    if params.stop is not None and not (
        isinstance(params.stop, list) and all(isinstance(s, str) for s in params.stop)
    ):
        raise neutral.invalid("stop: expected a string or a list of strings", "stop")


def _encode_message(msg: neutral.Message) -> list[dict]:
    if msg.role == "system":  # mid-conversation: a system message in place
        return [{"role": "system", "content": neutral.message_text(msg)}]
    if msg.role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = neutral.message_text(msg)
        calls = [p for p in msg.parts if isinstance(p, neutral.ToolCallPart)]
        out["content"] = text if text or not calls else None
        if calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
        return [out]
    encoded: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": p.tool_call_id, "content": p.content}
        for p in msg.parts
        if isinstance(p, neutral.ToolResultPart)
    ]
    content: list[dict[str, Any]] = []
    for p in msg.parts:
        if isinstance(p, neutral.TextPart):
            content.append({"type": "text", "text": p.text})
        elif isinstance(p, neutral.ImagePart):
            url = p.url or f"data:{p.media_type};base64,{p.data}"
            image = {"url": url, "detail": p.detail} if p.detail else {"url": url}
            content.append({"type": "image_url", "image_url": image})
    if len(content) == 1 and content[0]["type"] == "text":
        encoded.append({"role": "user", "content": content[0]["text"]})
    elif content:
        encoded.append({"role": "user", "content": content})
    return encoded


def encode_request(req: neutral.ChatRequest, policy: neutral.Policy) -> tuple[str, dict]:
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
    if reasoning := effort(p, req.model):
        body["reasoning_effort"] = reasoning
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


def patch_request(body: dict, policy: neutral.Policy, route: neutral.Route) -> tuple[str, dict]:
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


def read_usage(raw: Any, input_name: str = "prompt_tokens",
               output_name: str = "completion_tokens") -> neutral.Usage | None:
    """OpenAI's usage object, in chat completions' names or the Responses API's (``input_tokens``,
    ``output_tokens``): the details objects are named after the counts they detail."""
    if not isinstance(raw, dict):
        return None
    details = raw.get(f"{input_name}_details") or {}
    out_details = raw.get(f"{output_name}_details") or {}
    return neutral.Usage(
        input_tokens=int(raw.get(input_name) or 0),
        output_tokens=int(raw.get(output_name) or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=int(details.get("cache_write_tokens") or 0),
        reasoning_tokens=int(out_details.get("reasoning_tokens") or 0),
    )



def _encode_usage(u: neutral.Usage) -> dict:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _finish(raw: Any, refused: bool = False) -> neutral.FinishReason | None:
    """A finish reason; OpenAI ends a refusal with "stop" and the text in ``refusal``, which the other
    formats say with their own refusal reasons (Anthropic refusal, Gemini SAFETY)."""
    finish = None if raw is None else _FINISH.get(raw, neutral.FinishReason.STOP)
    return neutral.FinishReason.CONTENT_FILTER if refused and finish is neutral.FinishReason.STOP else finish


def _finish_name(finish: neutral.FinishReason | None, refused: bool) -> str:
    """OpenAI's finish_reason: a refusal (given in its own field) ends with "stop"."""
    if refused and finish is neutral.FinishReason.CONTENT_FILTER:
        return "stop"
    return (finish or neutral.FinishReason.STOP).value


def decode_response(body: dict) -> neutral.ChatResponse:
    """An upstream chat.completion to the neutral response."""
    try:
        choice = (body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        parts = _assistant_parts(message, "response")
        return neutral.ChatResponse(
            id=str(body.get("id") or ""),
            model=str(body.get("model") or ""),
            created=int(body.get("created") or 0),
            parts=parts,
            finish=_finish(choice.get("finish_reason"), bool(message.get("refusal"))),
            usage=read_usage(body.get("usage")),
        )
    except (TypeError, AttributeError, ValueError, neutral.GatewayError) as exc:
        raise neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, f"malformed upstream response: {exc}") from None


def encode_response(resp: neutral.ChatResponse, req: neutral.ChatRequest) -> dict:
    """The neutral response as an OpenAI chat.completion."""
    text = "".join(p.text for p in resp.parts if isinstance(p, neutral.TextPart) and not p.refusal)
    refusal = "".join(p.text for p in resp.parts if isinstance(p, neutral.TextPart) and p.refusal)
    calls = [p for p in resp.parts if isinstance(p, neutral.ToolCallPart)]
    reasoning = "".join(p.text for p in resp.parts if isinstance(p, neutral.ReasoningPart))
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not (calls or refusal) else None,
                               "refusal": refusal or None}
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
                     "finish_reason": _finish_name(resp.finish, bool(refusal))}],
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

    def _decode(self, frame: SSEFrame) -> list[neutral.Event]:
        data = frame.data
        if not data or data == "[DONE]":
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [neutral.stream_failure("upstream sent malformed stream data")]
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error") is not None:
            return [neutral.StreamError(decode_error(500, data.encode()))]
        try:
            return self._chunk(chunk)
        except (TypeError, AttributeError, ValueError):
            # a chunk of the wrong shape must end the stream cleanly, never raise into the relay
            return [neutral.stream_failure("upstream sent a malformed stream chunk")]

    def _chunk(self, chunk: dict) -> list[neutral.Event]:
        events: list[neutral.Event] = []
        if not self._started:
            self._started = True
            events.append(neutral.Start(str(chunk.get("id") or ""), str(chunk.get("model") or ""),
                                        int(chunk.get("created") or 0)))
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events.append(neutral.ReasoningDelta(reasoning))
            for text, refused in ((delta.get("content"), False), (delta.get("refusal"), True)):
                if isinstance(text, str) and text:
                    events.append(neutral.TextDelta(text, refused))
            self._refused = self._refused or bool(delta.get("refusal"))
            for call in delta.get("tool_calls") or ():
                events.extend(self._tool_call(call))
            if choice.get("finish_reason") is not None:
                finish = _finish(choice["finish_reason"], self._refused)
                if finish:
                    events.append(neutral.Finish(finish))
        if chunk.get("usage") is not None:  # null on every chunk but the last when usage is asked for
            usage = read_usage(chunk["usage"])
            if usage:
                events.append(neutral.UsageReport(usage))
        return events

    def _tool_call(self, call: dict) -> list[neutral.Event]:
        index = call.get("index", 0)
        fn = call.get("function") or {}
        known = self._calls.get(index)
        events: list[neutral.Event] = []
        if known is None or (call.get("id") and call["id"] != known[1]):
            known = (len(self._calls), str(call.get("id") or f"call_{len(self._calls)}"))
            self._calls[index] = known
            events.append(neutral.ToolCallStart(known[0], known[1], str(fn.get("name") or "")))
        if fn.get("arguments"):
            events.append(neutral.ToolCallDelta(known[0], fn["arguments"]))
        return events


class StreamEncoder:
    """Neutral events to the client's chat.completion.chunk SSE."""

    content_type = "text/event-stream"

    def __init__(self, req: neutral.ChatRequest, route: neutral.Route) -> None:
        self._include_usage = req.include_usage
        self._head = b""
        self._usage: neutral.Usage | None = None
        self._failed = self._relayed = self._refused = False

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        choice = orjson.dumps({"index": 0, "delta": delta, "finish_reason": finish})
        tail = b',"usage":null}' if self._include_usage else b"}"
        return sse(self._head + b'"choices":[' + choice + b"]" + tail)

    def encode(self, event: neutral.Event) -> bytes:
        if isinstance(event, neutral.TextDelta):
            self._refused = self._refused or event.refusal
            return self._chunk({"refusal" if event.refusal else "content": event.text})
        if isinstance(event, neutral.Start):
            self._head = orjson.dumps({"id": event.id, "object": "chat.completion.chunk",
                                       "created": event.created, "model": event.model})[:-1] + b","
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, neutral.ToolCallStart):
            return self._chunk({"tool_calls": [{"index": event.index, "id": event.id, "type": "function",
                                                "function": {"name": event.name, "arguments": ""}}]})
        if isinstance(event, neutral.ToolCallDelta):
            return self._chunk({"tool_calls": [{"index": event.index, "function": {"arguments": event.args}}]})
        if isinstance(event, neutral.ReasoningDelta):
            return self._chunk({"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, neutral.Finish):
            return self._chunk({}, _finish_name(event.reason, self._refused))
        if isinstance(event, neutral.UsageReport):
            self._usage = event.usage
            return b""
        if isinstance(event, neutral.StreamError):
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

    def relay(self, frame: SSEFrame, events: list[neutral.Event]) -> bytes:
        """Fast path: the upstream frame unchanged, except the usage-only chunk the gateway asked
        for on its own account when the client did not."""
        self._relayed = True
        # a usage-only chunk decodes to that one event (after the first chunk's Start)
        if not self._include_usage and len(events) == 1 and isinstance(events[0], neutral.UsageReport):
            return b""
        return frame.raw


# ---------------------------------------------------------------- embeddings
# https://platform.openai.com/docs/api-reference/embeddings


def _embed_inputs(raw: Any) -> list[str | list[int]]:
    """``input``: a string, a list of strings, a token array or a list of token arrays."""
    def tokens(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    if isinstance(raw, str) or tokens(raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw or len(raw) > MAX_EMBED_INPUTS:
        raise neutral.invalid(f"input: a string, a list of up to {MAX_EMBED_INPUTS} strings, or token arrays",
                              "input")
    for i, item in enumerate(raw):
        if not (tokens(item) or isinstance(item, str) and item):
            raise neutral.invalid(f"input[{i}]: expected a non-empty string or an array of token ids", "input")
    return raw


def decode_embed_request(body: dict, route: neutral.Route) -> neutral.EmbedRequest:
    """An embeddings request body; malformed input is a 400 as on OpenAI."""
    if not isinstance(body, dict):
        raise neutral.invalid("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise neutral.invalid("you must provide a model parameter", "model")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise neutral.invalid("dimensions: expected a positive integer", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise neutral.invalid(f"Invalid value for 'encoding_format' = {encoding}. Supported values: "
                              "['float', 'base64'].", "encoding_format")
    return neutral.EmbedRequest(model, _embed_inputs(body.get("input")), dimensions, encoding == "base64")


def encode_embed_request(req: neutral.EmbedRequest, model: str) -> tuple[str, dict]:
    """Always asks for floats: one code path, whatever the upstream does with ``encoding_format``."""
    body: dict[str, Any] = {"model": model, "input": req.inputs, "encoding_format": "float"}
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    return EMBEDDINGS_PATH, body


def unpack_floats(text: str) -> list[float]:
    """A base64 embedding: little-endian float32 values (what openai-python decodes)."""
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[:len(raw) // 4 * 4]))


def pack_floats(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def decode_embed_response(body: dict) -> neutral.Embeddings:
    try:
        data = sorted((d for d in body.get("data") or () if isinstance(d, dict)), key=lambda d: d.get("index", 0))
        vectors = [unpack_floats(d["embedding"]) if isinstance(d["embedding"], str)
                   else [float(v) for v in d["embedding"]] for d in data]
        usage = body.get("usage") or {}
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return neutral.Embeddings(str(body.get("model") or ""), vectors, int(tokens) if tokens is not None else None)
    except (KeyError, TypeError, ValueError, struct.error) as exc:
        raise neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, f"malformed upstream embeddings: {exc}") from None


def encode_embed_response(resp: neutral.Embeddings, req: neutral.EmbedRequest) -> dict:
    tokens = resp.input_tokens or 0
    return {"object": "list", "model": resp.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": i, "embedding": pack_floats(v) if req.base64 else v}
                     for i, v in enumerate(resp.vectors)]}


# ---------------------------------------------------------------- errors and models


def encode_error(err: neutral.GatewayError) -> tuple[int, dict[str, str], bytes]:
    """OpenAI's error body: all four keys, always. Anthropic's 529 is
    Anthropic-only: OpenAI clients get the standard 503 for an overload."""
    kind_type, kind_code = _ERROR_TYPES.get(err.kind, ("server_error", None))
    body = {"error": {"message": err.message, "type": kind_type, "param": err.param,
                      "code": err.code or kind_code}}
    headers = dict(err.headers)
    if err.retry_after is not None:
        headers["Retry-After"] = neutral.retry_seconds(err)
    return 503 if err.status == 529 else err.status, headers, orjson.dumps(body)


def decode_error(status: int, body: bytes) -> neutral.GatewayError:
    """An upstream error: OpenAI's shape, Mistral's top-level one, 422 ``detail`` lists, LM Studio's
    bare string, or HTML/text."""
    message, parsed = neutral.error_text(status, body)
    err = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(err, str):
        message = err
    elif isinstance(err, dict):
        found = err.get("message") or err.get("detail")
        if isinstance(found, str):
            message = found
        elif found:
            message = orjson.dumps(found).decode()[:300]
    return neutral.upstream_error(status, message)


def route(path_args: tuple[str, ...], query: Mapping[str, list[bytes]]) -> neutral.Route:
    """Chat completions carry everything in the body."""
    return neutral.Route()


def decode_models(body: dict) -> list[str]:
    return [m["id"] for m in body.get("data") or () if isinstance(m, dict) and isinstance(m.get("id"), str)]


def next_models_path(body: dict) -> str | None:
    """OpenAI-compatible listings come in one page."""
    return None


def encode_models(ids: list[str]) -> dict:
    return {"object": "list", "data": [encode_model(i) for i in ids]}


def encode_model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "aigateway"}

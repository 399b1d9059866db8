"""Anthropic Messages: the codec contract (``formats/contract.py``) for ``POST /v1/messages``,
both as an upstream and as the format Anthropic SDK clients speak to the gateway.

References: https://docs.anthropic.com/en/api/messages (request and response, content blocks, turn
rules), https://docs.anthropic.com/en/docs/build-with-claude/streaming (events),
https://docs.anthropic.com/en/api/errors, https://docs.anthropic.com/en/api/models-list and
https://docs.anthropic.com/en/api/messages-count-tokens."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from aigateway import neutral
from aigateway.formats.contract import CHAT, COUNT_TOKENS, MODELS, Endpoint
from aigateway.formats.framing import FrameDecoder, SSEFrame, sse, sse_json

NAME = "anthropic"
ID_PREFIX = "msg_"
MODELS_PATH = "/v1/models?limit=1000"  # the default page is 20
# Claude Code calls /v1/messages?beta=true: the query string is not part of the route.
ENDPOINTS = (
    Endpoint(r"/v1/messages", CHAT),
    Endpoint(r"/v1/messages/count_tokens", COUNT_TOKENS),
    Endpoint(r"/v1/models", MODELS, shared=True),
    Endpoint(r"/v1/models/(.+)", MODELS, shared=True),
)
CLIENT_KEYS = ("x-api-key", "bearer")  # the SDK sends x-api-key; an auth token goes as a bearer
LISTING_HINTS = ("anthropic-version", "x-api-key")  # every Anthropic SDK request carries the version
UPSTREAM_AUTH = "x-api-key"
UPSTREAM_HEADERS = (("anthropic-version", "2023-06-01"),)
MESSAGES_PATH = "/v1/messages"
DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` is required by Anthropic: used when neither client nor policy sets one."""
CONTINUE_TEXT = "(continue)"  # the minimal user turn before a leading assistant turn
JSON_INSTRUCTION = "Respond with one valid JSON object only, with no other text and no code fences."
"""Anthropic has no JSON mode for every model, so json_object becomes this system instruction."""
# Reasoning effort -> thinking budget_tokens (a gateway policy); Anthropic's minimum budget is 1024.
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 32768}
MIN_BUDGET = 1024

_KNOWN = frozenset({"model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k",
                    "stop_sequences", "stream", "metadata", "tools", "tool_choice", "thinking",
                    "output_config"})
_FINISH = {"end_turn": neutral.FinishReason.STOP, "stop_sequence": neutral.FinishReason.STOP,
           "pause_turn": neutral.FinishReason.STOP,
           "max_tokens": neutral.FinishReason.LENGTH, "model_context_window_exceeded": neutral.FinishReason.LENGTH,
           "tool_use": neutral.FinishReason.TOOL_CALLS, "refusal": neutral.FinishReason.CONTENT_FILTER}
_STOP_REASON = {neutral.FinishReason.STOP: "end_turn", neutral.FinishReason.LENGTH: "max_tokens",
                neutral.FinishReason.TOOL_CALLS: "tool_use", neutral.FinishReason.CONTENT_FILTER: "refusal"}
_CHOICE_IN = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
_CHOICE_OUT = {v: k for k, v in _CHOICE_IN.items()}
# Anthropic's error types and their statuses (https://docs.anthropic.com/en/api/errors)
_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
                 "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                 "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529}
_ERROR_TYPE = {neutral.ErrorKind.INVALID_REQUEST: "invalid_request_error", neutral.ErrorKind.QUOTA: "billing_error",
               neutral.ErrorKind.AUTHENTICATION: "authentication_error",
               neutral.ErrorKind.PERMISSION: "permission_error",
               neutral.ErrorKind.NOT_FOUND: "not_found_error", neutral.ErrorKind.REQUEST_TOO_LARGE: "request_too_large",
               neutral.ErrorKind.RATE_LIMIT: "rate_limit_error", neutral.ErrorKind.SERVER: "api_error",
               neutral.ErrorKind.UPSTREAM: "api_error", neutral.ErrorKind.OVERLOADED: "overloaded_error",
               neutral.ErrorKind.TIMEOUT: "timeout_error"}
_CONTENT_EVENTS = frozenset({"content_block_start", "content_block_delta", "message_delta"})
_TYPE_NAMES = {str: "a string", int: "an integer", (int, float): "a number", bool: "a boolean",
               list: "a list", dict: "an object"}


# ---------------------------------------------------------------- requests in (Anthropic SDK -> gateway)


def _get(obj: dict, name: str, kind: Any, where: str = "") -> Any:
    """``obj[name]`` when present and of ``kind``; a 400 naming the field (real API style) otherwise."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise neutral.invalid(f"{where}{name}: Input should be {_TYPE_NAMES[kind]}", where + name)
    return value


def _need(obj: dict, name: str, kind: Any, where: str = "") -> Any:
    value = _get(obj, name, kind, where)
    if value is None:
        raise neutral.invalid(f"{where}{name}: Field required", where + name)
    return value


def _text(content: Any) -> str:
    """Text of a string or of a block list's text blocks (tool results, system)."""
    if isinstance(content, str):
        return content
    texts = (b.get("text") for b in content or () if isinstance(b, dict))
    return "\n".join(t for t in texts if isinstance(t, str))


def _source(block: dict, at: str) -> neutral.TextPart | neutral.ImagePart | None:
    src = _need(block, "source", dict, at)
    kind, doc, at = src.get("type"), block["type"] == "document", at + "source."
    if kind == "base64":
        return neutral.ImagePart(media_type=_get(src, "media_type", str, at), data=_need(src, "data", str, at))
    if kind == "url":
        return neutral.ImagePart(url=_need(src, "url", str, at), media_type="application/pdf" if doc else None)
    if kind == "text":
        return neutral.TextPart(_get(src, "data", str, at) or "")
    return None  # file ids and other sources have no neutral form; the fast path keeps them


def _parts(content: Any, where: str) -> list:
    if isinstance(content, str):
        return [neutral.TextPart(content)]
    if not isinstance(content, list):
        raise neutral.invalid(f"{where}content: Input should be a string or a list of blocks", where + "content")
    parts: list = []
    for j, block in enumerate(content):
        at = f"{where}content.{j}."
        if not isinstance(block, dict):
            raise neutral.invalid(f"{at[:-1]}: Input should be an object", at[:-1])
        kind = block.get("type")
        if kind == "text":
            parts.append(neutral.TextPart(_need(block, "text", str, at)))
        elif kind in ("image", "document"):
            part = _source(block, at)
            parts.extend([part] if part else [])
        elif kind == "tool_use":
            args = orjson.dumps(_get(block, "input", dict, at) or {}).decode()
            parts.append(neutral.ToolCallPart(_need(block, "id", str, at), _need(block, "name", str, at), args))
        elif kind == "tool_result":
            result = block.get("content")
            if result is not None and not isinstance(result, (str, list)):
                raise neutral.invalid(f"{at}content: Input should be a string or a list of blocks", at + "content")
            parts.append(neutral.ToolResultPart(_need(block, "tool_use_id", str, at), _text(result),
                                                is_error=bool(_get(block, "is_error", bool, at))))
        elif kind == "thinking":
            text, signature = _get(block, "thinking", str, at) or "", _get(block, "signature", str, at)
            parts.append(neutral.ReasoningPart(text, signature))
        elif kind == "redacted_thinking":
            parts.append(neutral.ReasoningPart(redacted=_need(block, "data", str, at)))
        # other blocks (server tools, search results, ...) have no neutral form; the fast path keeps them
    return parts


def _messages(raw: Any) -> list[neutral.Message]:
    if raw is None:
        raise neutral.invalid("messages: Field required", "messages")
    if not isinstance(raw, list) or not raw:
        raise neutral.invalid("messages: a non-empty list of messages is required", "messages")
    messages = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant", "system"):
            raise neutral.invalid(f"messages.{i}: each message needs role 'user', 'assistant' or 'system'",
                                  f"messages.{i}")
        content = msg.get("content")
        if msg["role"] == "system":  # mid-conversation: the other placement rules are the upstream's to check
            if i == 0:
                raise neutral.invalid("messages.0: a system message may not come first; use the top-level "
                                      "system parameter", "messages.0")
            if not isinstance(content, (str, list)):
                raise neutral.invalid(f"messages.{i}.content: Input should be a string or a list of blocks",
                                      f"messages.{i}.content")
            messages.append(neutral.Message("system", [neutral.TextPart(_text(content))]))
            continue
        messages.append(neutral.Message(msg["role"], _parts(content, f"messages.{i}.")))
        # the block form of a mid-conversation system message ends its turn
        blocks = content if isinstance(content, list) else ()
        texts = [_text(b.get("content")) for b in blocks if isinstance(b, dict) and b.get("type") == "mid_conv_system"]
        if texts:
            messages.append(neutral.Message("system", [neutral.TextPart("\n".join(texts))]))
    return messages


def _tools(raw: list) -> list[neutral.Tool]:
    tools = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise neutral.invalid(f"tools.{i}: Input should be an object", f"tools.{i}")
        if tool.get("type") in (None, "custom"):  # server tools (web search, ...) ride only the fast path
            tools.append(neutral.Tool(_need(tool, "name", str, f"tools.{i}."), _get(tool, "description", str),
                                      _get(tool, "input_schema", dict, f"tools.{i}.")))
    return tools


def decode_request(body: dict, route: neutral.Route) -> neutral.ChatRequest:
    """An Anthropic SDK request body to the neutral request; any malformed input is a 400."""
    if not isinstance(body, dict):
        raise neutral.invalid("the request body must be a JSON object")
    try:
        messages = _messages(body.get("messages"))
        max_tokens = _need(body, "max_tokens", int)
        if max_tokens < 1:
            raise neutral.invalid("max_tokens: Input should be greater than or equal to 1", "max_tokens")
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            raise neutral.invalid("system: Input should be a string or a list of text blocks", "system")
        metadata = _get(body, "metadata", dict) or {}
        thinking = _get(body, "thinking", dict) or {}
        output = _get(body, "output_config", dict) or {}
        stop = _get(body, "stop_sequences", list)
        if stop is not None and not all(isinstance(s, str) for s in stop):
            raise neutral.invalid("stop_sequences: Input should be a list of strings", "stop_sequences")
        params = neutral.Params(
            max_tokens=max_tokens, temperature=_get(body, "temperature", (int, float)),
            top_p=_get(body, "top_p", (int, float)), top_k=_get(body, "top_k", int), stop=stop,
            user=_get(metadata, "user_id", str, "metadata."), reasoning_effort=_get(output, "effort", str),
            reasoning_budget=_need(thinking, "budget_tokens", int, "thinking.")
            if thinking.get("type") == "enabled" else None)
        choice = _get(body, "tool_choice", dict)
        tool_choice = parallel = None
        if choice is not None:
            if choice.get("type") not in _CHOICE_IN:
                raise neutral.invalid("tool_choice.type: expected 'auto', 'any', 'tool' or 'none'", "tool_choice")
            name = _need(choice, "name", str, "tool_choice.") if choice["type"] == "tool" else None
            tool_choice = neutral.ToolChoice(_CHOICE_IN[choice["type"]], name)
            disable = _get(choice, "disable_parallel_tool_use", bool, "tool_choice.")
            parallel = None if disable is None else not disable
        fmt = _get(output, "format", dict, "output_config.")
        stream = bool(_get(body, "stream", bool))
        systems = [system] if isinstance(system, str) else [_text([b]) for b in system or ()]
        return neutral.ChatRequest(
            model=_get(body, "model", str), messages=messages, system=[s for s in systems if s],
            params=params, tools=_tools(_get(body, "tools", list) or []), tool_choice=tool_choice,
            parallel_tool_calls=parallel,
            response_format=neutral.ResponseFormat("json_schema", _get(fmt, "schema", dict, "output_config.format."))
            if fmt and fmt.get("type") == "json_schema" else None,
            stream=stream, include_usage=stream, extra={k: v for k, v in body.items() if k not in _KNOWN})
    except neutral.GatewayError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise neutral.invalid(f"malformed request: {exc}") from None


# ---------------------------------------------------------------- requests out (gateway -> Anthropic)


def _tool_id(call_id: str) -> str:
    """Anthropic ids must match ``[a-zA-Z0-9_-]+``; other providers' ids are mapped the same way on
    both the tool_use and its tool_result, so the pair stays linked."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", call_id) or "toolu_0"


def _encode_part(part: Any, role: str) -> dict | None:
    if isinstance(part, neutral.TextPart):
        return {"type": "text", "text": part.text} if part.text.strip() else None  # empty text blocks are a 400
    if isinstance(part, neutral.ImagePart) and (part.data or part.url):
        doc = part.media_type == "application/pdf"
        source = ({"type": "base64", "media_type": part.media_type or "image/png", "data": part.data}
                  if part.data else {"type": "url", "url": part.url})
        return {"type": "document" if doc else "image", "source": source}
    if isinstance(part, neutral.ToolCallPart) and role == "assistant":
        return {"type": "tool_use", "id": _tool_id(part.id), "name": part.name,
                "input": neutral.json_object(part.arguments)}
    if isinstance(part, neutral.ToolResultPart) and role == "user":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(part.tool_call_id)}
        if part.content:
            block["content"] = part.content
        if part.is_error:
            block["is_error"] = True
        return block
    if isinstance(part, neutral.ReasoningPart) and role == "assistant":  # unsigned thinking would be rejected
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.redacted}
        if part.signature:
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def _first(block: dict) -> bool:
    """Blocks that must lead their turn: tool results (user) and thinking (assistant)."""
    return block["type"] in ("tool_result", "thinking", "redacted_thinking")


def _encode_messages(messages: list[neutral.Message]) -> list[dict]:
    """Neutral turns to Anthropic turns: empty turns dropped, same-role turns merged, a user turn first."""
    turns: list[dict] = []
    for msg in map(neutral.as_user, messages):  # a system message is placed by rules only Anthropic clients know
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = [b for b in (_encode_part(p, role) for p in msg.parts) if b]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            blocks = turns.pop()["content"] + blocks
        blocks = [b for b in blocks if _first(b)] + [b for b in blocks if not _first(b)]
        turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": CONTINUE_TEXT}]})
    last = turns[-1]["content"][-1]
    if turns[-1]["role"] == "assistant" and last["type"] == "text":  # a prefill may not end in whitespace
        last["text"] = last["text"].rstrip()
    return turns


def _budget(p: neutral.Params) -> int:
    if p.reasoning_budget is not None:
        budget = p.reasoning_budget if p.reasoning_budget >= 0 else EFFORT_BUDGETS["medium"]  # Gemini's -1
        return max(budget, MIN_BUDGET) if budget else 0
    return EFFORT_BUDGETS.get(p.reasoning_effort or "", 0)


def encode_request(req: neutral.ChatRequest, policy: neutral.Policy) -> tuple[str, dict]:
    """The neutral request as an Anthropic Messages body; the relay already applied the policy."""
    p = req.params
    if p.n is not None and p.n > 1:
        raise neutral.invalid("n: Anthropic models return one choice per request; n > 1 is not supported", "n")
    system = [s for s in req.system if s]
    if req.response_format and req.response_format.type == "json_object":
        system.append(JSON_INSTRUCTION)
    body: dict[str, Any] = {"model": req.model, "messages": _encode_messages(req.messages)}
    if system:
        body["system"] = "\n\n".join(system)
    max_tokens, budget = p.max_tokens or DEFAULT_MAX_TOKENS, _budget(p)
    forced = req.tool_choice is not None and req.tool_choice.mode in ("required", "tool")
    if budget and not forced:  # thinking may not be combined with forced tool use
        if p.max_tokens is None:
            max_tokens = budget + DEFAULT_MAX_TOKENS
        budget = min(budget, max_tokens - 1)  # max_tokens must exceed the budget
        if budget >= MIN_BUDGET:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] = max_tokens
    if "thinking" not in body:  # thinking forbids temperature/top_k changes
        if p.temperature is not None:
            body["temperature"] = min(max(float(p.temperature), 0.0), 1.0)  # Anthropic's range is 0-1
        elif p.top_p is not None:
            body["top_p"] = p.top_p  # never both
        if p.top_k is not None:
            body["top_k"] = p.top_k
    stop = [s for s in p.stop or () if s.strip()]  # whitespace-only stop sequences are a 400
    if stop:
        body["stop_sequences"] = stop
    if req.tools:
        body["tools"] = [{"name": t.name, **({"description": t.description} if t.description else {}),
                          "input_schema": {"type": "object", **(t.parameters or {"properties": {}})}}
                         for t in req.tools]
        choice: dict[str, Any] | None = None
        if req.tool_choice:
            choice = {"type": _CHOICE_OUT[req.tool_choice.mode]}
            if req.tool_choice.mode == "tool":
                choice["name"] = req.tool_choice.name
        if req.parallel_tool_calls is False and (choice or {}).get("type") != "none":
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice:
            body["tool_choice"] = choice
    if req.response_format and req.response_format.type == "json_schema":
        schema = req.response_format.schema or {}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if p.user:
        body["metadata"] = {"user_id": p.user}
    if req.stream:
        body["stream"] = True
    return MESSAGES_PATH, body


def patch_request(body: dict, policy: neutral.Policy, route: neutral.Route) -> tuple[str, dict]:
    """Same-format fast path: set model, prepend the policy system prompt, clamp or fill max_tokens;
    every other field (cache_control, server tools, betas' fields) survives untouched."""
    body["model"] = policy.model
    if policy.system:
        system = body.get("system")
        if isinstance(system, list):
            body["system"] = [{"type": "text", "text": policy.system}, *system]
        elif isinstance(system, str) and system:
            body["system"] = f"{policy.system}\n\n{system}"
        else:
            body["system"] = policy.system
    asked = body.get("max_tokens")
    asked = asked if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0 else None
    cap = policy.max_tokens
    body["max_tokens"] = min(asked, cap) if asked and cap else (asked or cap or DEFAULT_MAX_TOKENS)
    thinking = body.get("thinking")
    if body["max_tokens"] != asked and isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and budget >= body["max_tokens"]:  # the clamp must not cause a 400
            if body["max_tokens"] - 1 >= MIN_BUDGET:
                thinking["budget_tokens"] = body["max_tokens"] - 1
            else:
                del body["thinking"]
    return MESSAGES_PATH, body


# ---------------------------------------------------------------- responses


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(raw: Any) -> neutral.Usage | None:
    """Anthropic usage, normalised: input includes cache reads and writes."""
    if not isinstance(raw, dict):
        return None
    read, write = _int(raw.get("cache_read_input_tokens")), _int(raw.get("cache_creation_input_tokens"))
    details = raw.get("output_tokens_details")
    return neutral.Usage(input_tokens=_int(raw.get("input_tokens")) + read + write,
                         output_tokens=_int(raw.get("output_tokens")), cached_tokens=read, cache_write_tokens=write,
                         reasoning_tokens=_int(details.get("thinking_tokens")) if isinstance(details, dict) else 0)


def _encode_usage(u: neutral.Usage) -> dict:
    """The reverse of ``_usage``: Anthropic's input_tokens exclude cached tokens."""
    out: dict[str, Any] = {"input_tokens": max(0, u.input_tokens - u.cached_tokens - u.cache_write_tokens),
           "cache_creation_input_tokens": u.cache_write_tokens, "cache_read_input_tokens": u.cached_tokens,
           "output_tokens": u.output_tokens}
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def _finish(raw: Any) -> neutral.FinishReason | None:
    return None if raw is None else _FINISH.get(raw, neutral.FinishReason.STOP)  # unknown reasons: stop


def decode_response(body: dict) -> neutral.ChatResponse:
    """An upstream Messages response to the neutral response."""
    try:
        parts: list = []
        for block in body.get("content") or ():
            kind = block.get("type")
            if kind == "text":
                parts.append(neutral.TextPart(str(block.get("text") or "")))
            elif kind == "thinking":
                parts.append(neutral.ReasoningPart(str(block.get("thinking") or ""), block.get("signature") or None))
            elif kind == "redacted_thinking":
                parts.append(neutral.ReasoningPart(redacted=str(block.get("data") or "")))
            elif kind == "tool_use":
                parts.append(neutral.ToolCallPart(str(block.get("id") or ""), str(block.get("name") or ""),
                                                  orjson.dumps(block.get("input") or {}).decode()))
        return neutral.ChatResponse(str(body.get("id") or ""), str(body.get("model") or ""), 0, parts,
                                    _finish(body.get("stop_reason")), _usage(body.get("usage")))
    except (TypeError, AttributeError, ValueError) as exc:
        raise neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, f"malformed upstream response: {exc}") from None


def _content(parts: list) -> list[dict]:
    blocks: list[dict] = []
    for p in parts:
        if isinstance(p, neutral.TextPart) and p.text:
            blocks.append({"type": "text", "text": p.text})
        elif isinstance(p, neutral.ReasoningPart):
            blocks.append({"type": "redacted_thinking", "data": p.redacted} if p.redacted else
                          {"type": "thinking", "thinking": p.text, "signature": p.signature or ""})
        elif isinstance(p, neutral.ToolCallPart):
            blocks.append({"type": "tool_use", "id": p.id, "name": p.name, "input": neutral.json_object(p.arguments)})
    return blocks


def encode_response(resp: neutral.ChatResponse, req: neutral.ChatRequest) -> dict:
    """The neutral response as an Anthropic ``message`` object."""
    return {"id": resp.id, "type": "message", "role": "assistant", "model": resp.model,
            "content": _content(resp.parts), "stop_reason": _STOP_REASON[resp.finish or neutral.FinishReason.STOP],
            "stop_sequence": None, "usage": _encode_usage(resp.usage or neutral.Usage())}


# ---------------------------------------------------------------- streams


class StreamDecoder(FrameDecoder):
    """Upstream Messages SSE to neutral events. Tool calls are renumbered 0, 1, ...."""

    def __init__(self) -> None:
        super().__init__()
        self._started = self._finished = False
        self._blocks: dict[int, int] = {}  # content-block index -> tool-call index
        self._usage: dict[str, Any] = {}  # Anthropic usage so far; message_delta values replace

    def _decode(self, frame: SSEFrame) -> list[neutral.Event]:
        if not frame.data:
            return []
        try:
            data = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            return [neutral.stream_failure("upstream sent malformed stream data")]
        if not isinstance(data, dict):
            return []
        try:
            return self._event(str(data.get("type") or frame.event), data)
        except (TypeError, AttributeError, ValueError):
            return [neutral.stream_failure("upstream sent a malformed event")]

    def _event(self, kind: str, data: dict) -> list[neutral.Event]:
        events: list[neutral.Event] = []
        if kind == "error":  # in-band, after a 200: the type says what the status would have been
            err = data.get("error")
            err = err if isinstance(err, dict) else {}
            etype, text = str(err.get("type")), str(err.get("message") or "upstream stream error")
            return [neutral.StreamError(_error(_ERROR_STATUS.get(etype, 500), text, etype))]
        if kind == "message_start" or (not self._started and kind in _CONTENT_EVENTS):
            if self._started:
                return []
            found = data.get("message") if kind == "message_start" else None
            message: dict[str, Any] = found if isinstance(found, dict) else {}
            self._started = True
            self._usage.update(message.get("usage") or {})
            events.append(neutral.Start(str(message.get("id") or ""), str(message.get("model") or ""), 0,
                                        _usage(self._usage) if self._usage else None))
        block, delta = data.get("content_block") or {}, data.get("delta") or {}
        index: Any = data.get("index")
        if kind == "content_block_start":
            btype = block.get("type")
            if btype == "text" and block.get("text"):
                events.append(neutral.TextDelta(block["text"]))
            elif btype == "thinking" and (block.get("thinking") or block.get("signature")):
                events.append(neutral.ReasoningDelta(block.get("thinking") or "", block.get("signature") or None))
            elif btype == "redacted_thinking":
                events.append(neutral.ReasoningDelta(redacted=str(block.get("data") or "")))
            elif btype == "tool_use":  # server_tool_use runs at Anthropic: not the client's call
                call = self._blocks[index] = len(self._blocks)
                events.append(neutral.ToolCallStart(call, str(block.get("id") or ""), str(block.get("name") or "")))
                if block.get("input"):
                    events.append(neutral.ToolCallDelta(call, orjson.dumps(block["input"]).decode()))
        elif kind == "content_block_delta":
            dtype = delta.get("type")
            if dtype == "text_delta" and delta.get("text"):
                events.append(neutral.TextDelta(delta["text"]))
            elif dtype == "thinking_delta" and delta.get("thinking"):
                events.append(neutral.ReasoningDelta(delta["thinking"]))
            elif dtype == "signature_delta" and delta.get("signature"):
                events.append(neutral.ReasoningDelta(signature=delta["signature"]))
            elif dtype == "input_json_delta" and delta.get("partial_json") and index in self._blocks:
                events.append(neutral.ToolCallDelta(self._blocks[index], delta["partial_json"]))
        elif kind == "message_delta":
            finish = _finish(delta.get("stop_reason"))
            if finish and not self._finished:
                self._finished = True
                events.append(neutral.Finish(finish))
            usage = data.get("usage")
            if isinstance(usage, dict):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
                events.append(neutral.UsageReport(_usage(self._usage) or neutral.Usage()))
        elif kind == "message_stop" and not self._finished:  # complete even without a stop_reason
            self._finished = True
            events.append(neutral.Finish(neutral.FinishReason.STOP))
        return events


class StreamEncoder:
    """Neutral events to Anthropic SSE for Anthropic SDK clients: every event with both
    ``event:`` and ``data:`` lines. message_delta waits for ``close()`` so it carries the final usage,
    which other upstreams (OpenAI) report after the finish reason."""

    content_type = "text/event-stream"

    def __init__(self, req: neutral.ChatRequest, route: neutral.Route) -> None:
        self._model = req.model or ""
        self._started = self._failed = self._signed = self._relayed = False
        self._index = -1  # index of the latest content block
        self._open: str | int | None = None  # "text", "thinking", a tool-call index, or None
        self._tools: dict[int, int] = {}  # tool-call index -> content-block index
        self._stop: neutral.FinishReason | None = None
        self._usage: neutral.Usage | None = None

    def _start(self, event: neutral.Start | None = None) -> bytes:
        if self._started:
            return b""
        self._started = True
        start = event or neutral.Start("", self._model, 0)
        usage = _encode_usage(start.usage or neutral.Usage())
        message: dict[str, Any] = {"id": start.id, "type": "message", "role": "assistant", "model": start.model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return sse_json({"type": "message_start", "message": message}, "message_start")

    def _block(self, kind: str | int, block: dict) -> bytes:
        out = self._stop_block()
        self._index += 1
        self._open = kind
        return out + sse_json({"type": "content_block_start", "index": self._index, "content_block": block},
                              "content_block_start")

    def _stop_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse_json({"type": "content_block_stop", "index": self._index}, "content_block_stop")

    def _delta(self, delta: dict, index: int | None = None) -> bytes:
        data = {"type": "content_block_delta", "index": self._index if index is None else index}
        return sse_json({**data, "delta": delta}, "content_block_delta")

    def encode(self, event: neutral.Event) -> bytes:
        if isinstance(event, neutral.StreamError):
            self._failed = True
            return sse(encode_error(event.error)[2], "error")
        if isinstance(event, neutral.UsageReport):
            self._usage = event.usage
            return b""
        if self._failed:
            return b""
        out = self._start(event if isinstance(event, neutral.Start) else None)
        if isinstance(event, neutral.TextDelta) and event.text:
            if self._open != "text":
                out += self._block("text", {"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": event.text})
        elif isinstance(event, neutral.ReasoningDelta):
            if event.redacted:
                out += self._block("redacted", {"type": "redacted_thinking", "data": event.redacted})
                return out + self._stop_block()
            if self._open != "thinking" or (self._signed and event.text):
                out += self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                self._signed = False
            if event.text:
                out += self._delta({"type": "thinking_delta", "thinking": event.text})
            if event.signature:
                self._signed = True
                out += self._delta({"type": "signature_delta", "signature": event.signature})
        elif isinstance(event, neutral.ToolCallStart):
            block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            out += self._block(event.index, block)
            self._tools[event.index] = self._index
        elif isinstance(event, neutral.ToolCallDelta) and event.args and event.index in self._tools:
            delta = {"type": "input_json_delta", "partial_json": event.args}
            out += self._delta(delta, self._tools[event.index])
        elif isinstance(event, neutral.Finish):
            self._stop = event.reason
            out += self._stop_block()
        return out

    def close(self) -> bytes:
        """message_delta (stop reason, final usage) and message_stop; nothing after an error event."""
        if self._failed or self._relayed:  # after relay(): the upstream's frames ended it
            return b""
        out = self._start() + self._stop_block()
        self._failed = True  # closed: later calls add nothing
        usage = _encode_usage(self._usage) if self._usage else {"output_tokens": 0}
        delta = {"stop_reason": _STOP_REASON[self._stop or neutral.FinishReason.STOP], "stop_sequence": None}
        out += sse_json({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
        return out + sse_json({"type": "message_stop"}, "message_stop")

    def relay(self, frame: SSEFrame, events: list[neutral.Event]) -> bytes:
        """Fast path: Anthropic upstream frames go to Anthropic clients byte for byte."""
        self._relayed = True
        return frame.raw


# ---------------------------------------------------------------- errors and models


def encode_error(err: neutral.GatewayError) -> tuple[int, dict[str, str], bytes]:
    """Anthropic's error body; status kept (529 included); retry-after in whole seconds."""
    kind = "rate_limit_error" if err.kind is neutral.ErrorKind.QUOTA and err.status == 429 else _ERROR_TYPE[err.kind]
    body = {"type": "error", "error": {"type": kind, "message": err.message}, "request_id": "req_gateway"}
    headers = dict(err.headers)
    if err.retry_after is not None:
        headers["retry-after"] = neutral.retry_seconds(err)
    return err.status, headers, orjson.dumps(body)


def _error(status: int, message: str, kind: Any = None) -> neutral.GatewayError:
    """An upstream error as a gateway error: 401/403 become 502 because the gateway's provider key
    was refused, not the client's; 529 stays 529 (kind overloaded)."""
    err = neutral.upstream_error(status, message)
    if kind == "billing_error" and err.status == 402:
        err.kind = neutral.ErrorKind.QUOTA
    return err


def decode_error(status: int, body: bytes) -> neutral.GatewayError:
    """An upstream error response, parsed defensively (JSON, HTML or text): message and status kept."""
    message, parsed = neutral.error_text(status, body)
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return _error(status, err["message"], err.get("type"))
    if parsed is not None:
        message = err if isinstance(err, str) else orjson.dumps(parsed).decode()[:300]
    return _error(status, message)


def route(path_args: tuple[str, ...], query: Mapping[str, list[bytes]]) -> neutral.Route:
    """Messages carry everything in the body."""
    return neutral.Route()


def decode_models(body: dict) -> list[str]:
    """A page of ``{"data": [{"id": ...}]}``, the model ids in order."""
    return [m["id"] for m in body.get("data") or () if isinstance(m, dict) and isinstance(m.get("id"), str)]


def next_models_path(body: dict) -> str | None:
    """Anthropic pages by id: ``has_more``, then ``after_id`` = the page's ``last_id``."""
    last = body.get("last_id")
    if body.get("has_more") is True and isinstance(last, str) and last:
        return f"{MODELS_PATH}&after_id={quote(last, safe='')}"
    return None


def encode_model(model_id: str) -> dict:
    """Anthropic's model object; the date is unknown, so the epoch."""
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "1970-01-01T00:00:00Z",
            "lifecycle": "active"}


def encode_models(ids: list[str]) -> dict:
    """Anthropic's model page: everything in one page."""
    first, last = (ids[0], ids[-1]) if ids else (None, None)
    return {"data": [encode_model(i) for i in ids], "has_more": False, "first_id": first, "last_id": last}


def decode_count(body: dict, route: neutral.Route) -> neutral.ChatRequest:
    """A count_tokens body: a Messages request without max_tokens."""
    if isinstance(body, dict):
        body = {**body, "max_tokens": body.get("max_tokens") or 1}
    return decode_request(body, route)


def encode_count(tokens: int) -> dict:
    return {"input_tokens": tokens}

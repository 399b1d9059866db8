"""OpenAI Responses API: the codec contract (``formats/contract.py``) for ``POST /v1/responses``,
which Codex CLI, the OpenAI Agents SDK and the Vercel AI SDK speak; also spoken upstream by a
provider of type ``openai`` configured with ``api: responses``.

The gateway keeps no conversation state: ``previous_response_id``, ``conversation`` and stored
items are passed through to a Responses upstream (which keeps them) and ignored elsewhere; hosted
tools (web search, file search, code interpreter...) only reach a Responses upstream. Namespace
tools are flattened to ``<namespace>__<name>`` for other backends and split again on the way back.

References: https://platform.openai.com/docs/api-reference/responses (request, response object),
https://platform.openai.com/docs/api-reference/responses-streaming (stream events),
https://platform.openai.com/docs/guides/error-codes (errors: the same body as chat completions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from aigateway import neutral
from aigateway.formats import openai
from aigateway.formats.contract import CHAT, Endpoint
from aigateway.formats.framing import FrameDecoder, SSEFrame, sse_json

NAME = "responses"
ID_PREFIX = "resp_"
MODELS_PATH = "/models"  # a Responses upstream lists its models the OpenAI way
ENDPOINTS = (Endpoint(r"/(?:v1/)?responses", CHAT),)
CLIENT_KEYS = ("bearer",)
LISTING_HINTS = ()  # its clients list models with GET /v1/models, answered the OpenAI way
UPSTREAM_AUTH = "bearer"
UPSTREAM_HEADERS = ()
RESPONSES_PATH = "/responses"
NAMESPACE_SEPARATOR = "__"

# Fields decode_request understands; everything else rides in ChatRequest.extra.
_KNOWN = frozenset({"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
                    "max_output_tokens", "temperature", "top_p", "text", "reasoning", "stream", "user",
                    "safety_identifier"})
_SYSTEM_ROLES = ("system", "developer")
_FINISH_STATUS = {neutral.FinishReason.LENGTH: ("incomplete", "max_output_tokens"),
                  neutral.FinishReason.CONTENT_FILTER: ("incomplete", "content_filter")}
_INCOMPLETE = {"max_output_tokens": neutral.FinishReason.LENGTH,
               "content_filter": neutral.FinishReason.CONTENT_FILTER}
# error kind -> response.error.code of an in-stream failure (Codex retries all but the fatal ones)
_FAILED_CODES = {neutral.ErrorKind.RATE_LIMIT: "rate_limit_exceeded", neutral.ErrorKind.QUOTA: "insufficient_quota",
                 neutral.ErrorKind.INVALID_REQUEST: "invalid_prompt"}


# ---------------------------------------------------------------- requests


def _text(content: Any, where: str) -> str:
    """Text of a string or of a list of text parts (input_text, output_text, refusal, summary_text)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or p.get("refusal") or "") for p in content if isinstance(p, dict))
    raise neutral.invalid(f"{where}: content must be a string or a list of parts", where)


def _answer_parts(content: Any, where: str) -> list[neutral.TextPart]:
    """An assistant message's content: ``output_text`` parts as text, ``refusal`` parts as refusals."""
    if not isinstance(content, list):
        text = _text(content, where)
        return [neutral.TextPart(text)] if text else []
    parts = []
    for p in content:
        if isinstance(p, dict) and (p.get("text") or p.get("refusal")):
            refused = p.get("type") == "refusal"
            parts.append(neutral.TextPart(str(p.get("refusal") if refused else p.get("text")), refused))
    return parts


def _content_part(text: str, refusal: bool) -> dict:
    if refusal:
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _user_parts(content: Any, where: str) -> list[neutral.Part]:
    """User content: text and images. Files and file ids have no neutral form: they reach only a
    Responses upstream (pass-through) and are left out elsewhere."""
    if isinstance(content, str):
        return [neutral.TextPart(content)]
    if not isinstance(content, list):
        raise neutral.invalid(f"{where}: content must be a string or a list of parts", where)
    parts: list[neutral.Part] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append(neutral.TextPart(str(part.get("text") or "")))
        elif kind == "input_image" and isinstance(part.get("image_url"), str) and part["image_url"]:
            parts.append(openai.image_part(part["image_url"], part.get("detail")))
        elif kind not in ("input_image", "input_file"):
            raise neutral.invalid(f"{where}: unsupported content part type {kind!r}", where)
    return parts


class _Conversation:
    """Input items folded into neutral messages: consecutive assistant items (text, tool calls,
    reasoning) make one assistant turn, consecutive tool outputs one user turn."""

    def __init__(self) -> None:
        self.system: list[str] = []
        self.messages: list[neutral.Message] = []
        self._names: dict[str, str] = {}  # call_id -> tool name (Gemini needs it on results)

    def _turn(self, role: str, results: bool = False) -> list[neutral.Part]:
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == role and (role == "assistant" or results and all(
                isinstance(p, neutral.ToolResultPart) for p in last.parts)):
            return last.parts
        self.messages.append(neutral.Message(role, []))
        return self.messages[-1].parts

    def add(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise neutral.invalid(f"{where}: each input item must be an object", where)
        kind = item.get("type") or "message"
        if kind == "message":
            role, content = item.get("role"), item.get("content")
            if role in _SYSTEM_ROLES:
                self.system.append(_text(content, where))
            elif role == "user":
                self.messages.append(neutral.Message("user", _user_parts(content, where)))
            elif role == "assistant":
                self._turn("assistant").extend(_answer_parts(content, where))
            else:
                raise neutral.invalid(f"{where}: unknown role {role!r}", where)
        elif kind == "function_call":
            call_id, name = item.get("call_id"), _flat_name(item.get("name"), item.get("namespace"))
            if not isinstance(call_id, str) or not name:
                raise neutral.invalid(f"{where}: function_call items need call_id and name", where)
            args = item.get("arguments")
            self._names[call_id] = name
            self._turn("assistant").append(neutral.ToolCallPart(call_id, name, args if isinstance(args, str) else "{}"))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise neutral.invalid(f"{where}: function_call_output items need call_id", where)
            self._turn("user", results=True).append(
                neutral.ToolResultPart(call_id, _text(item.get("output"), where), self._names.get(call_id)))
        elif kind == "reasoning":
            self._turn("assistant").append(_reasoning_part(item, where))
        # other items (hosted tool calls, item references, compaction) reach only a Responses upstream


def _flat_name(name: Any, namespace: Any) -> str:
    if not isinstance(name, str):
        return ""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) and namespace else name


def _tools(raw: Any) -> list[neutral.Tool]:
    """Function tools, namespaces flattened; hosted and custom tools have no neutral form."""
    tools: list[neutral.Tool] = []
    for tool in raw or ():
        if not isinstance(tool, dict):
            raise neutral.invalid("tools: each tool must be an object", "tools")
        if tool.get("type") == "function" and isinstance(tool.get("name"), str):
            tools.append(neutral.Tool(tool["name"], tool.get("description"), tool.get("parameters")))
        elif tool.get("type") == "namespace" and isinstance(tool.get("name"), str):
            for inner in tool.get("tools") or ():
                if isinstance(inner, dict) and inner.get("type") == "function" and isinstance(inner.get("name"), str):
                    tools.append(neutral.Tool(_flat_name(inner["name"], tool["name"]), inner.get("description"),
                                              inner.get("parameters"), namespace=tool["name"]))
    return tools


def _tool_choice(raw: Any) -> neutral.ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return neutral.ToolChoice(raw)
    if isinstance(raw, dict):
        if raw.get("type") == "function" and isinstance(raw.get("name"), str):
            return neutral.ToolChoice("tool", raw["name"])
        if raw.get("type") == "allowed_tools" and raw.get("mode") in ("auto", "required"):
            return neutral.ToolChoice(raw["mode"])
        return None  # a hosted tool forced: only a Responses upstream has it
    raise neutral.invalid("tool_choice: expected auto, none, required or a tool", "tool_choice")


def _text_format(raw: Any) -> neutral.ResponseFormat | None:
    spec = raw.get("format") if isinstance(raw, dict) else None
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") not in ("text", "json_object", "json_schema"):
        raise neutral.invalid("text.format: type must be text, json_object or json_schema", "text.format")
    return neutral.ResponseFormat(spec["type"], spec.get("schema"), spec.get("name"))


def decode_request(body: dict, route: neutral.Route) -> neutral.ChatRequest:
    """Client body to the neutral request; a malformed body raises a 400."""
    if not isinstance(body, dict):
        raise neutral.invalid("the request body must be a JSON object")
    try:
        conv = _Conversation()
        instructions = body.get("instructions")
        if isinstance(instructions, str) and instructions:
            conv.system.append(instructions)
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            conv.messages.append(neutral.Message("user", [neutral.TextPart(raw_input)]))
        elif isinstance(raw_input, list):
            for i, item in enumerate(raw_input):
                conv.add(item, f"input[{i}]")
        elif raw_input is not None or "previous_response_id" not in body:
            raise neutral.invalid("input: a string or an array of input items is required", "input")
        reasoning = body.get("reasoning") or {}
        params = neutral.Params(max_tokens=body.get("max_output_tokens"), temperature=body.get("temperature"),
                                top_p=body.get("top_p"), reasoning_effort=reasoning.get("effort"),
                                user=body.get("safety_identifier") or body.get("user"))
        stream = bool(body.get("stream"))
        req = neutral.ChatRequest(
            model=body.get("model") if isinstance(body.get("model"), str) else None,
            messages=conv.messages, system=conv.system, params=params, tools=_tools(body.get("tools")),
            tool_choice=_tool_choice(body.get("tool_choice")), parallel_tool_calls=body.get("parallel_tool_calls"),
            response_format=_text_format(body.get("text")), stream=stream, include_usage=stream,
            extra={k: v for k, v in body.items() if k not in _KNOWN})
    except neutral.GatewayError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise neutral.invalid(f"malformed request: {type(exc).__name__}: {exc}") from None
    openai.check_numbers(params, cap="max_output_tokens")
    return req


def _encode_item(msg: neutral.Message) -> list[dict]:
    """A neutral turn as input items. Reasoning is left out: its opaque signature is only valid
    for the vendor that made it, and a stateless Responses request does not need it."""
    if msg.role == "system":  # mid-conversation: a developer message in place
        return [{"type": "message", "role": "developer",
                 "content": [{"type": "input_text", "text": neutral.message_text(msg)}]}]
    items: list[dict] = []
    content: list[dict] = []
    for p in msg.parts:
        if isinstance(p, neutral.TextPart) and msg.role == "assistant":
            content.append(_content_part(p.text, p.refusal))
        elif isinstance(p, neutral.TextPart):
            content.append({"type": "input_text", "text": p.text})
        elif isinstance(p, neutral.ImagePart):
            url = p.url or f"data:{p.media_type};base64,{p.data}"
            content.append({"type": "input_image", "image_url": url, "detail": p.detail or "auto"})
        elif isinstance(p, neutral.ToolCallPart):
            items.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments})
        elif isinstance(p, neutral.ToolResultPart):
            items.append({"type": "function_call_output", "call_id": p.tool_call_id, "output": p.content})
    if content:
        items.insert(0, {"type": "message", "role": msg.role, "content": content})
    return items


def _encode_tools(tools: list[neutral.Tool]) -> list[dict]:
    return [{"type": "function", "name": t.name, "parameters": t.parameters or {"type": "object", "properties": {}},
             "strict": False, **({"description": t.description} if t.description else {})} for t in tools]


def encode_request(req: neutral.ChatRequest, policy: neutral.Policy) -> tuple[str, dict]:
    """Neutral request to a Responses upstream body (stateless: ``store`` false)."""
    items = [item for msg in req.messages for item in _encode_item(msg)]
    body: dict[str, Any] = {"model": req.model, "input": items, "store": False}
    if req.system:
        body["instructions"] = "\n\n".join(req.system)
    p = req.params
    for name, value in (("max_output_tokens", p.max_tokens), ("temperature", p.temperature), ("top_p", p.top_p)):
        if value is not None:
            body[name] = value
    if reasoning := openai.effort(p, req.model):  # a summary only comes when asked for
        body["reasoning"] = {"effort": reasoning} if reasoning == "none" else {"effort": reasoning, "summary": "auto"}
    if req.tools:
        body["tools"] = _encode_tools(req.tools)
    if req.tool_choice:
        c = req.tool_choice
        body["tool_choice"] = {"type": "function", "name": c.name} if c.mode == "tool" else c.mode
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.response_format and req.response_format.type != "text":
        f = req.response_format
        spec: dict[str, Any] = {"type": f.type}
        if f.type == "json_schema":
            spec.update(name=f.name or "response", schema=f.schema or {})
        body["text"] = {"format": spec}
    if req.stream:
        body["stream"] = True
    return RESPONSES_PATH, body


def patch_request(body: dict, policy: neutral.Policy, route: neutral.Route) -> tuple[str, dict]:
    """Same-format fast path: patch model, system prompt (before the client's instructions) and
    output cap; keep every other field, stored state and hosted tools included."""
    body["model"] = policy.model
    if policy.system:
        instructions = body.get("instructions")
        body["instructions"] = policy.system + (f"\n\n{instructions}" if isinstance(instructions, str)
                                                and instructions else "")
    if policy.max_tokens is not None:
        asked = body.get("max_output_tokens")
        body["max_output_tokens"] = (min(asked, policy.max_tokens) if isinstance(asked, int) and asked > 0
                                     else policy.max_tokens)
    return RESPONSES_PATH, body


# ---------------------------------------------------------------- responses


def _usage(raw: Any) -> neutral.Usage | None:
    return openai.read_usage(raw, "input_tokens", "output_tokens")


def _encode_usage(u: neutral.Usage | None) -> dict:
    u = u or neutral.Usage()
    return {"input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_write_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens}


def _finish(body: dict, called: bool, refused: bool) -> neutral.FinishReason:
    """The finish reason of a response object whose output did (``called``) or did not call tools,
    or held a refusal (a completed response, which the other formats end with their refusal reason)."""
    if body.get("status") == "incomplete":
        reason = (body.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE.get(str(reason), neutral.FinishReason.LENGTH)
    if called:
        return neutral.FinishReason.TOOL_CALLS
    return neutral.FinishReason.CONTENT_FILTER if refused else neutral.FinishReason.STOP


def _output_parts(output: Any) -> list[neutral.Part]:
    parts: list[neutral.Part] = []
    for item in output or ():
        kind = item.get("type")
        if kind == "message":
            parts.extend(_answer_parts(item.get("content"), "output"))
        elif kind == "function_call":
            args = item.get("arguments")
            parts.append(neutral.ToolCallPart(str(item.get("call_id") or item.get("id") or ""),
                                              _flat_name(item.get("name"), item.get("namespace")),
                                              args if isinstance(args, str) and args else "{}"))
        elif kind == "reasoning":
            parts.append(_reasoning_part(item, "output"))
    return parts


def _reasoning_part(item: dict, where: str) -> neutral.ReasoningPart:
    """A reasoning item: its summary (or raw) text, its ``encrypted_content`` as the signature."""
    signature = item.get("encrypted_content")
    return neutral.ReasoningPart(_text(item.get("summary"), where) or _text(item.get("content"), where),
                                 signature if isinstance(signature, str) and signature else None)


def _failure(raw: Any) -> neutral.GatewayError:
    """A failed response's ``error`` ({code, message}) as the client should see it."""
    err = raw if isinstance(raw, dict) else {}
    code = str(err.get("code") or "")
    status = {"rate_limit_exceeded": 429, "insufficient_quota": 429, "invalid_prompt": 400,
              "context_length_exceeded": 400}.get(code, 502)
    return neutral.GatewayError(status, None, str(err.get("message") or "the upstream response failed"),
                                code=code or None)


def decode_response(body: dict) -> neutral.ChatResponse:
    """An upstream response object to the neutral response; a failed one raises its error."""
    if body.get("status") == "failed":
        raise _failure(body.get("error"))
    try:
        parts = _output_parts(body.get("output"))
        called = any(isinstance(p, neutral.ToolCallPart) for p in parts)
        refused = any(isinstance(p, neutral.TextPart) and p.refusal for p in parts)
        return neutral.ChatResponse(id=str(body.get("id") or ""), model=str(body.get("model") or ""),
                                    created=int(body.get("created_at") or 0), parts=parts,
                                    finish=_finish(body, called, refused), usage=_usage(body.get("usage")))
    except (TypeError, AttributeError, ValueError, neutral.GatewayError) as exc:
        raise neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, f"malformed upstream response: {exc}") from None


def _split_name(name: str, req: neutral.ChatRequest) -> dict:
    """A function call's ``name`` (and ``namespace``) as the client declared it."""
    for tool in req.tools:
        if tool.name == name and tool.namespace:
            return {"name": name[len(tool.namespace) + len(NAMESPACE_SEPARATOR):], "namespace": tool.namespace}
    return {"name": name}


def _response_id(upstream_id: str) -> str:
    """A ``resp_`` id (another format's upstream id made into one, as clients expect the prefix)."""
    if upstream_id.startswith(ID_PREFIX):
        return upstream_id
    return ID_PREFIX + "".join(c for c in upstream_id if c.isalnum())


def _item_ids(resp_id: str) -> str:
    return resp_id.removeprefix(ID_PREFIX) or "0"


def _message_item(item_id: str, content: list[dict], status: str = "completed") -> dict:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _call_item(item_id: str, call: neutral.ToolCallPart, req: neutral.ChatRequest, status: str = "completed") -> dict:
    return {"type": "function_call", "id": item_id, "call_id": call.id, **_split_name(call.name, req),
            "arguments": call.arguments, "status": status}


def _reasoning_item(item_id: str, part: neutral.ReasoningPart) -> dict:
    item: dict[str, Any] = {"type": "reasoning", "id": item_id,
                            "summary": [{"type": "summary_text", "text": part.text}] if part.text else []}
    if part.signature:
        item["encrypted_content"] = part.signature
    return item


def _output_items(resp: neutral.ChatResponse, req: neutral.ChatRequest) -> list[dict]:
    base, items = _item_ids(_response_id(resp.id)), list[dict]()
    for i, p in enumerate(resp.parts):
        if isinstance(p, neutral.TextPart):
            if not (items and items[-1]["type"] == "message"):  # adjacent text parts: one message
                items.append(_message_item(f"msg_{base}_{i}", []))
            items[-1]["content"].append(_content_part(p.text, p.refusal))
        elif isinstance(p, neutral.ToolCallPart):
            items.append(_call_item(f"fc_{base}_{i}", p, req))
        elif isinstance(p, neutral.ReasoningPart) and not p.redacted:
            items.append(_reasoning_item(f"rs_{base}_{i}", p))
    return items


def _response_object(resp_id: str, model: str, created: int, req: neutral.ChatRequest, status: str,
                     output: list[dict], usage: neutral.Usage | None) -> dict:
    """The response object with the fields the SDKs require (a request echo, as OpenAI sends it)."""
    return {
        "id": _response_id(resp_id), "object": "response", "created_at": created, "status": status, "background": False,
        "error": None, "incomplete_details": None, "instructions": None, "max_output_tokens": req.params.max_tokens,
        "model": model, "output": output, "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": None, "reasoning": {"effort": req.params.reasoning_effort, "summary": None},
        "store": False, "temperature": req.params.temperature, "text": {"format": {"type": "text"}},
        "tool_choice": "auto", "tools": _encode_tools(req.tools), "top_p": req.params.top_p,
        "truncation": "disabled", "usage": _encode_usage(usage) if usage is not None else None, "metadata": {},
    }


def _status(finish: neutral.FinishReason | None, refused: bool) -> tuple[str, str | None]:
    """Status and incomplete reason; a refusal (given as a refusal part) completes the response."""
    if refused and finish is neutral.FinishReason.CONTENT_FILTER:
        return "completed", None
    return _FINISH_STATUS.get(finish or neutral.FinishReason.STOP, ("completed", None))


def encode_response(resp: neutral.ChatResponse, req: neutral.ChatRequest) -> dict:
    """The neutral response as a Responses API response object."""
    status, reason = _status(resp.finish, any(isinstance(p, neutral.TextPart) and p.refusal for p in resp.parts))
    obj = _response_object(resp.id, resp.model, resp.created, req, status, _output_items(resp, req), resp.usage)
    if reason:
        obj["incomplete_details"] = {"reason": reason}
    return obj


# ---------------------------------------------------------------- streams


class StreamDecoder(FrameDecoder):
    """Upstream Responses SSE events to neutral events. Tool calls are numbered in the order their
    items open; arguments sent only with ``function_call_arguments.done`` or ``output_item.done``
    (without deltas) still arrive."""

    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[str, int] = {}  # item id -> neutral tool-call index
        self._args_seen: set[str] = set()
        self._refused = False

    def _decode(self, frame: SSEFrame) -> list[neutral.Event]:
        if not frame.data or frame.data == "[DONE]":
            return []
        try:
            event = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            return [neutral.stream_failure("upstream sent malformed stream data")]
        if not isinstance(event, dict):
            return []
        try:
            return self._event(event)
        except (TypeError, AttributeError, ValueError):
            return [neutral.stream_failure("upstream sent a malformed stream event")]

    def _event(self, ev: dict) -> list[neutral.Event]:
        kind = ev.get("type")
        if kind == "response.created":
            r = ev.get("response") or {}
            return [neutral.Start(str(r.get("id") or ""), str(r.get("model") or ""), int(r.get("created_at") or 0))]
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            refused = kind == "response.refusal.delta"
            self._refused = self._refused or refused
            return [neutral.TextDelta(ev["delta"], refused)] if ev.get("delta") else []
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return [neutral.ReasoningDelta(ev["delta"])] if ev.get("delta") else []
        if kind == "response.output_item.added" and (ev.get("item") or {}).get("type") == "function_call":
            item = ev["item"]
            index = self._calls[str(item.get("id"))] = len(self._calls)
            name = _flat_name(item.get("name"), item.get("namespace"))
            return [neutral.ToolCallStart(index, str(item.get("call_id") or item.get("id")), name)]
        if kind == "response.function_call_arguments.delta" and str(ev.get("item_id")) in self._calls:
            self._args_seen.add(str(ev["item_id"]))
            return [neutral.ToolCallDelta(self._calls[str(ev["item_id"])], ev["delta"])] if ev.get("delta") else []
        if kind == "response.output_item.done":
            return self._item_done(ev.get("item") or {})
        if kind in ("response.completed", "response.incomplete"):
            r = ev.get("response") or {}
            events: list[neutral.Event] = [neutral.Finish(_finish(r, bool(self._calls), self._refused))]
            usage = _usage(r.get("usage"))
            return events + [neutral.UsageReport(usage)] if usage else events
        if kind == "response.failed":  # what it used before failing still counts
            r = ev.get("response") or {}
            usage = _usage(r.get("usage"))
            failed: list[neutral.Event] = [neutral.UsageReport(usage)] if usage else []
            return failed + [neutral.StreamError(_failure(r.get("error")))]
        if kind == "error":
            return [neutral.StreamError(_failure(ev))]
        return []

    def _item_done(self, item: dict) -> list[neutral.Event]:
        item_id = str(item.get("id"))
        if item.get("type") == "function_call" and item_id in self._calls and item_id not in self._args_seen:
            self._args_seen.add(item_id)
            return [neutral.ToolCallDelta(self._calls[item_id], item["arguments"])] if item.get("arguments") else []
        if item.get("type") == "reasoning" and isinstance(item.get("encrypted_content"), str):
            return [neutral.ReasoningDelta("", signature=item["encrypted_content"])]
        return []


class StreamEncoder:
    """Neutral events to the Responses event stream: ``response.created``, then per output item
    ``output_item.added``, its parts and deltas and ``output_item.done`` (with the whole item,
    which is what Codex records), then one terminal event: ``response.completed`` (or
    ``response.incomplete``) with usage, or ``response.failed`` when the upstream failed."""

    content_type = "text/event-stream"

    def __init__(self, req: neutral.ChatRequest, route: neutral.Route) -> None:
        self._req = req
        self._seq = 0
        self._id, self._model, self._created = "", req.model or "", 0
        self._output: list[dict] = []  # finished items, for the terminal event
        self._open: dict | None = None  # the item being streamed
        self._calls: dict[int, dict] = {}  # tool-call index -> its item
        self._finish: neutral.FinishReason | None = None
        self._usage: neutral.Usage | None = None
        self._started = self._ended = self._relayed = self._refused = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse_json(data, kind)

    def _response(self, status: str) -> dict:
        return _response_object(self._id, self._model, self._created, self._req, status, self._output,
                                self._usage if status != "in_progress" else None)

    def _start(self, event: neutral.Start | None = None) -> bytes:
        if self._started:
            return b""
        self._started = True
        if event is not None:
            self._id, self._model, self._created = _response_id(event.id), event.model or self._model, event.created
        snapshot = self._response("in_progress")
        return (self._event("response.created", response=snapshot)
                + self._event("response.in_progress", response=snapshot))

    def _where(self) -> dict:
        return {"item_id": self._open["id"], "output_index": len(self._output)} if self._open else {}

    def _close_item(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        index = len(self._output)
        where = {"item_id": item["id"], "output_index": index}
        out = b""
        if item["type"] == "message":
            out += self._close_part(item, where)
        elif item["type"] == "reasoning":
            if item["summary"]:
                part = item["summary"][0]
                out += self._event("response.reasoning_summary_text.done", **where, summary_index=0, text=part["text"])
                out += self._event("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
        elif item["type"] == "function_call":
            out += self._event("response.function_call_arguments.done", **where, name=item["name"],
                               arguments=item["arguments"])
        item["status"] = "completed"
        self._output.append(item)
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _close_part(self, item: dict, where: dict) -> bytes:
        """The ``.done`` events of a message's last content part (its text or its refusal)."""
        index, part = len(item["content"]) - 1, item["content"][-1]
        if part["type"] == "refusal":
            out = self._event("response.refusal.done", **where, content_index=index, refusal=part["refusal"])
        else:
            out = self._event("response.output_text.done", **where, content_index=index, text=part["text"],
                              logprobs=[])
        return out + self._event("response.content_part.done", **where, content_index=index, part=part)

    def _open_item(self, prefix: str, build: Callable[[str], dict]) -> bytes:
        """Close the open item, then open the one ``build`` makes from its id: the id counts the
        items before it, so it is named only once the previous one is in the output."""
        out = self._close_item()
        self._open = item = build(f"{prefix}_{_item_ids(self._id)}_{len(self._output)}")
        return out + self._event("response.output_item.added", output_index=len(self._output), item=item)

    def encode(self, event: neutral.Event) -> bytes:
        if self._ended:
            return b""
        if isinstance(event, neutral.UsageReport):
            self._usage = event.usage
            return b""
        if isinstance(event, neutral.StreamError):
            return self._fail(event.error)
        out = self._start(event if isinstance(event, neutral.Start) else None)
        if isinstance(event, neutral.TextDelta) and event.text:
            out += self._text(event.text, event.refusal)
        elif isinstance(event, neutral.ReasoningDelta):
            out += self._reasoning(event)
        elif isinstance(event, neutral.ToolCallStart):
            call = neutral.ToolCallPart(event.id, event.name, "")
            out += self._open_item("fc", lambda item_id: _call_item(item_id, call, self._req, "in_progress"))
            self._calls[event.index] = self._open  # type: ignore[assignment]
        elif isinstance(event, neutral.ToolCallDelta) and event.args and event.index in self._calls:
            item = self._calls[event.index]
            item["arguments"] += event.args
            if item is self._open:
                out += self._event("response.function_call_arguments.delta", **self._where(), delta=event.args)
        elif isinstance(event, neutral.Finish):
            self._finish = event.reason
        return out

    def _text(self, text: str, refusal: bool) -> bytes:
        """Answer text into the open message's content part of its kind (a refusal or text)."""
        out = b""
        if self._open is None or self._open["type"] != "message":
            out += self._open_item("msg", lambda item_id: _message_item(item_id, [], "in_progress"))
        item = self._open
        assert item is not None
        kind = "refusal" if refusal else "output_text"
        if not item["content"] or item["content"][-1]["type"] != kind:
            if item["content"]:
                out += self._close_part(item, self._where())
            item["content"].append(_content_part("", refusal))
            out += self._event("response.content_part.added", **self._where(), content_index=len(item["content"]) - 1,
                               part=dict(item["content"][-1]))
        self._refused = self._refused or refusal
        index, field = len(item["content"]) - 1, kind.removeprefix("output_")
        item["content"][-1][field] += text
        if refusal:
            return out + self._event("response.refusal.delta", **self._where(), content_index=index, delta=text)
        return out + self._event("response.output_text.delta", **self._where(), content_index=index, delta=text,
                                 logprobs=[])

    def _reasoning(self, event: neutral.ReasoningDelta) -> bytes:
        if event.redacted:  # Anthropic's encrypted thinking: nothing a Responses client can use
            return b""
        out = b""
        if self._open is None or self._open["type"] != "reasoning":
            out += self._open_item("rs", lambda item_id: {"type": "reasoning", "id": item_id, "summary": []})
        item = self._open
        assert item is not None
        if event.signature:
            item["encrypted_content"] = event.signature
        if event.text:
            if not item["summary"]:
                item["summary"].append({"type": "summary_text", "text": ""})
                out += self._event("response.reasoning_summary_part.added", **self._where(), summary_index=0,
                                   part={"type": "summary_text", "text": ""})
            item["summary"][0]["text"] += event.text
            out += self._event("response.reasoning_summary_text.delta", **self._where(), summary_index=0,
                               delta=event.text)
        return out

    def _fail(self, err: neutral.GatewayError) -> bytes:
        out = self._start() + self._close_item()
        self._ended = True
        response = self._response("failed")
        response["error"] = {"code": err.code or _FAILED_CODES.get(err.kind, "server_error"), "message": err.message}
        return out + self._event("response.failed", response=response)

    def close(self) -> bytes:
        """The terminal event; nothing after a failure or a relayed upstream stream."""
        if self._ended or self._relayed:
            return b""
        out = self._start() + self._close_item()
        self._ended = True
        status, reason = _status(self._finish, self._refused)
        response = self._response(status)
        if reason:
            response["incomplete_details"] = {"reason": reason}
        return out + self._event(f"response.{status}", response=response)

    def relay(self, frame: SSEFrame, events: list[neutral.Event]) -> bytes:
        """Fast path: a Responses upstream's events go to the client unchanged."""
        self._relayed = True
        return frame.raw


# ---------------------------------------------------------------- errors and models


def encode_error(err: neutral.GatewayError) -> tuple[int, dict[str, str], bytes]:
    """Errors before the stream starts have the chat completions body (OpenAI's one error shape)."""
    return openai.encode_error(err)


def decode_error(status: int, body: bytes) -> neutral.GatewayError:
    return openai.decode_error(status, body)


def route(path_args: tuple[str, ...], query: Mapping[str, list[bytes]]) -> neutral.Route:
    """Everything is in the body."""
    return neutral.Route()


def decode_models(body: dict) -> list[str]:
    return openai.decode_models(body)


def next_models_path(body: dict) -> str | None:
    return None


def encode_models(ids: list[str]) -> dict:
    return openai.encode_models(ids)


def encode_model(model_id: str) -> dict:
    return openai.encode_model(model_id)

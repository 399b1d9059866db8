"""A fake LLM provider speaking the OpenAI, Anthropic and Gemini wire formats, for tests.

It is the only stand-in our tests use, so it aims to be exact enough that the official SDKs, pointed
straight at it, accept everything. Replies are deterministic:

* Text: ``"[system: S1 | S2] "`` (only when the request has a system prompt) + ``"Echo: "`` + the text
  of the last user message, with knob directives removed; each inline image adds
  ``" [image: <mime>, <decoded bytes> bytes]"``, each URL image ``" [image url: <url>]"``.
* Tool result as the last turn: the same system prefix + ``"Tool <name or id> returned: <content>"``
  (several results joined by ``" | "``).
* Tool call: when the request has tools, tool choice is not none and the last turn is user text, the
  reply is one call to the forced tool (else the first), arguments built from its JSON schema
  (string → "test", or "Oslo" for ``city``; number/integer → 1; boolean → true; array → []; object → {};
  an ``enum`` → its first value). No text comes with it.
* Thinking (Anthropic ``thinking`` enabled/adaptive, Gemini ``includeThoughts``, OpenAI
  ``reasoning_effort``): the thought "Let me think about this." comes first and counts as output.
* JSON mode (OpenAI ``response_format``, Gemini ``responseMimeType``, Anthropic ``output_config.format``):
  the reply is ``{"echo": "<last user text>"}``.
* Tokens: the reply splits on ``\\S+\\s*``; output = text tokens + thought tokens + a tool call's
  ``ceil(len(args JSON) / 4)`` (at least 1). Input = ``ceil(chars of system, message text, tool
  arguments/results and tools JSON / 4) + 3 per message``. The max-tokens cap truncates text (finish
  length / max_tokens / MAX_TOKENS); a stop sequence cuts before itself. Tool calls are never truncated.
* Streams send one token per chunk; tool arguments come in at least two fragments (Gemini: whole).

Knobs, written ``#fake:key=value`` anywhere in the last user text (taken from the latest user message
that has text, so they also apply to the turn after a tool call):
``chunks=N`` (N text chunks), ``delay=S`` (sleep between content chunks), ``stall=S`` (sleep after the
first content chunk; non-streaming: before answering), ``status=CODE`` (that HTTP error in the format's
shape), ``retry_after=S`` (``retry-after`` header, Gemini RetryInfo), ``fail_after=N`` (in-band stream
error before content chunk N+1; non-streaming: a 500, 529 for Anthropic), ``drop_after=N`` (close the TCP
connection before content chunk N+1; non-streaming: after half the body), ``tool=NAME`` (force a call),
``utf8split=1`` (split a multi-byte character across two writes), ``html=1`` (200 text/html page),
``malformed=1`` (invalid JSON body, or one invalid SSE data line and then the end), ``stamp=1`` (SSE
streams: each event is preceded by the comment ``: t=<seconds>``, the system-wide monotonic clock
as the event is written, so a client on the same machine can measure each event's latency),
``linger=S`` (streams: keep the response open S seconds after the last event, as a real upstream may
before it ends the chunked body; SDKs that stop at ``[DONE]`` or an error event hang up first).
``fail_after``/``drop_after`` with N at or above the number of content chunks have no effect. Knobs
apply to chat requests only, not to count-tokens or model listing.

Control: ``GET/DELETE /_fake/requests`` (recent API requests, header names lowercased) and
``GET /_fake/stats`` (TCP connections, API requests, and tokens in usage actually delivered).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import signal
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets

THOUGHT = "Let me think about this."
SIGNATURE = "RmFrZVNpZ25hdHVyZUZvclRlc3Rz"
TOKEN_RE = re.compile(r"\S+\s*")
KNOB_RE = re.compile(r"#fake:(\w+)=(\S*)")
URLSAFE = str.maketrans("-_", "+/")
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"

OPENAI_MODELS = ["gpt-4o", "gpt-4o-mini"]
ANTHROPIC_MODELS = {"claude-sonnet-4-20250514": "Claude Sonnet 4",
                    "claude-3-5-haiku-20241022": "Claude Haiku 3.5"}
GEMINI_PAGE = 2
GEMINI_MODELS = {"gemini-2.0-flash": "Gemini 2.0 Flash", "gemini-2.5-flash": "Gemini 2.5 Flash",
                 "gemini-2.5-pro": "Gemini 2.5 Pro"}


def dumps(obj: Any) -> bytes:
    """Compact JSON, UTF-8 kept raw (as the real APIs send it; needed for the utf8split knob)."""
    return orjson.dumps(obj)


def tokens(text: str) -> list[str]:
    """The fake tokenizer: a word plus its trailing whitespace."""
    return TOKEN_RE.findall(text)


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


class FakeError(Exception):
    """A request the real API would reject; rendered in the format's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# ---------------------------------------------------------------- requests → Ask (format-neutral)

@dataclass(slots=True)
class Ask:
    """What the fake understood from a chat request, whatever its format."""

    model: str
    system: list[str] = field(default_factory=list)
    user_text: str = ""
    images: list[str] = field(default_factory=list)
    tool_results: list[tuple[str, str]] = field(default_factory=list)
    tools: list[tuple[str, dict]] = field(default_factory=list)
    tool_choice: str = "auto"  # "auto", "none", "required" or "=NAME" for one forced tool
    thinking: bool = False
    json_mode: bool = False
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    input_tokens: int = 0
    knobs: dict[str, str] = field(default_factory=dict)


def g(obj: Any, camel: str, default: Any = None) -> Any:
    """Gemini field lookup accepting lowerCamelCase or snake_case (the REST API takes both)."""
    if not isinstance(obj, dict):
        return default
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"([A-Z])", r"_\1", camel).lower(), default)


def _texts(node: Any, key: str = "") -> Iterator[str]:
    """Every piece of text in messages: text/thinking/content strings, tool arguments and results."""
    if isinstance(node, str):
        if key in ("text", "thinking", "content", "arguments", "system"):
            yield node
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item, key if key in ("content", "system") else "")
    elif isinstance(node, dict):
        for k, v in node.items():
            if k in ("input", "args", "response") and isinstance(v, dict):
                yield dumps(v).decode()
            else:
                yield from _texts(v, k)


def count_input(system: Any, messages: list, tools: Any) -> int:
    """ceil(characters / 4) + 3 per message; the same number count-tokens endpoints report."""
    chars = sum(len(t) for t in _texts({"system": system, "messages": messages}))
    if tools:
        chars += len(dumps(tools).decode())
    return math.ceil(chars / 4) + 3 * len(messages)


def split_knobs(text: str) -> tuple[str, dict[str, str]]:
    """Remove ``#fake:key=value`` directives from text and return them."""
    knobs = dict(KNOB_RE.findall(text))
    return re.sub(r"\s*#fake:\w+=\S*", "", text).strip(), knobs


def describe_image(url_or_data: str, mime: str | None = None) -> str:
    """The echo suffix for an image: decoded size for inline data, the URL otherwise."""
    if mime is None:
        match = re.match(r"data:([^;,]+)(?:;[^,]*)?,(.*)", url_or_data, re.S)
        if not match:
            return f" [image url: {url_or_data}]"
        mime, url_or_data = match.group(1), match.group(2)
    try:  # protobuf JSON (Gemini, and the google-genai SDK) may send URL-safe base64
        data = url_or_data.strip().translate(URLSAFE)
        size = len(base64.b64decode(data + "=" * (-len(data) % 4), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise FakeError(400, f"Invalid base64 image data: {exc}") from exc
    return f" [image: {mime}, {size} bytes]"


def block_text(content: Any) -> str:
    """Text of a string, a list of text blocks/parts, or any JSON value (tool results)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) and "text" in b for b in content):
        return " ".join(b["text"] for b in content)
    return dumps(content).decode()


def parse_openai(body: dict) -> Ask:
    """OpenAI chat completions request → Ask."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise FakeError(400, "Missing required parameter: 'messages'.")
    if not body.get("model"):
        raise FakeError(400, "Missing required parameter: 'model'.")
    ask = Ask(model=body["model"], stream=bool(body.get("stream")))
    ask.include_usage = ask.stream and bool((body.get("stream_options") or {}).get("include_usage"))
    ask.system = [block_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    calls = [c for m in messages for c in m.get("tool_calls") or []]
    names = {c.get("id"): c.get("function", {}).get("name") for c in calls}
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        call_id = m.get("tool_call_id", "")
        ask.tool_results.insert(0, (names.get(call_id) or call_id, block_text(m.get("content"))))
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            ask.user_text, ask.knobs = split_knobs(" ".join(p["text"] for p in parts if "text" in p))
            for p in parts:
                if p.get("type") == "image_url":
                    url = p["image_url"]["url"] if isinstance(p["image_url"], dict) else p["image_url"]
                    ask.images.append(describe_image(url))
            break
    ask.tools = [(t["function"]["name"], t["function"].get("parameters") or {})
                 for t in body.get("tools") or [] if "function" in t]
    choice = body.get("tool_choice", "auto")
    ask.tool_choice = "=" + choice["function"]["name"] if isinstance(choice, dict) and "function" in choice \
        else choice if isinstance(choice, str) else "auto"
    ask.thinking = body.get("reasoning_effort") not in (None, "none")
    ask.json_mode = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
    ask.max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    ask.stop = [stop] if isinstance(stop, str) else list(stop or [])
    ask.input_tokens = count_input(None, messages, body.get("tools"))
    return ask


def parse_anthropic(body: dict, count_only: bool = False) -> Ask:
    """Anthropic Messages request → Ask; max_tokens is required as on the real API."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise FakeError(400, "messages: Field required")
    if not count_only and not isinstance(body.get("max_tokens"), int):
        raise FakeError(400, "max_tokens: Field required")
    ask = Ask(model=body.get("model") or "", stream=bool(body.get("stream")))
    ask.max_tokens = body.get("max_tokens")
    system = body.get("system")
    ask.system = [system] if isinstance(system, str) and system else \
        [b["text"] for b in system or [] if b.get("type") == "text"]
    names = {b.get("id"): b.get("name") for m in messages if isinstance(m.get("content"), list)
             for b in m["content"] if b.get("type") == "tool_use"}
    last = messages[-1]
    if last.get("role") == "user" and isinstance(last.get("content"), list):
        results = [b for b in last["content"] if b.get("type") == "tool_result"]
        ask.tool_results = [(names.get(b.get("tool_use_id")) or b.get("tool_use_id", ""),
                             block_text(b.get("content"))) for b in results]
    for m in reversed(messages):
        content = m.get("content")
        blocks: list[dict] = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        texts = [b["text"] for b in blocks if b.get("type") == "text"]
        if m.get("role") == "user" and (texts or any(b.get("type") == "image" for b in blocks)):
            ask.user_text, ask.knobs = split_knobs(" ".join(texts))
            for b in blocks:
                source = b.get("source") or {}
                if b.get("type") == "image" and source.get("type") == "base64":
                    ask.images.append(describe_image(source.get("data", ""), source.get("media_type")))
                elif b.get("type") == "image":
                    ask.images.append(describe_image(source.get("url", "")))
            break
    ask.tools = [(t["name"], t.get("input_schema") or {}) for t in body.get("tools") or []
                 if "name" in t and t.get("type") in (None, "custom")]
    choice: dict = body.get("tool_choice") or {}
    ask.tool_choice = {"none": "none", "any": "required", "tool": "=" + str(choice.get("name"))}.get(
        str(choice.get("type")), "auto")
    ask.thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    ask.json_mode = bool((body.get("output_config") or {}).get("format") or body.get("output_format"))
    ask.stop = list(body.get("stop_sequences") or [])
    ask.input_tokens = count_input(system, messages, body.get("tools"))
    return ask


def parse_gemini(body: dict, model: str) -> Ask:
    """Gemini generateContent request (camelCase or snake_case) → Ask."""
    body = g(body, "generateContentRequest") or body  # countTokens may wrap the request
    contents = g(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise FakeError(400, "* GenerateContentRequest.contents: contents is not specified")
    ask = Ask(model=model)
    system = g(body, "systemInstruction")
    ask.system = [system] if isinstance(system, str) else \
        [p["text"] for p in g(system, "parts", []) if p.get("text")]
    results = [g(p, "functionResponse") for p in contents[-1].get("parts") or [] if g(p, "functionResponse")]
    ask.tool_results = [(r.get("name", ""), block_text(r.get("response"))) for r in results]
    for content in reversed(contents):
        parts = content.get("parts") or []
        texts = [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]
        if content.get("role", "user") == "user" and (texts or any(g(p, "inlineData") for p in parts)):
            ask.user_text, ask.knobs = split_knobs(" ".join(texts))
            for p in parts:
                if blob := g(p, "inlineData"):
                    ask.images.append(describe_image(blob.get("data", ""), g(blob, "mimeType")))
                elif g(p, "fileData"):
                    ask.images.append(describe_image(g(g(p, "fileData"), "fileUri", "")))
            break
    tools = g(body, "tools") or []
    for decl in (d for t in tools for d in g(t, "functionDeclarations") or []):
        ask.tools.append((decl["name"], g(decl, "parameters") or g(decl, "parametersJsonSchema") or {}))
    calling = g(g(body, "toolConfig"), "functionCallingConfig") or {}
    mode, allowed = str(calling.get("mode", "AUTO")).upper(), g(calling, "allowedFunctionNames") or []
    ask.tool_choice = "none" if mode == "NONE" else ("=" + allowed[0] if allowed else "required") \
        if mode == "ANY" else "auto"
    config = g(body, "generationConfig") or {}
    ask.thinking = bool(g(g(config, "thinkingConfig"), "includeThoughts"))
    ask.json_mode = g(config, "responseMimeType") == "application/json"
    ask.max_tokens = g(config, "maxOutputTokens")
    ask.stop = list(g(config, "stopSequences") or [])
    ask.input_tokens = count_input(system, contents, tools)
    return ask


# ---------------------------------------------------------------- Ask → Reply

@dataclass(slots=True)
class Reply:
    """The deterministic answer, before any format renders it."""

    text: str = ""
    pieces: list[str] = field(default_factory=list)  # the text as streamed
    thinking: str = ""
    tool: tuple[str, str, dict] | None = None  # (call id without prefix, name, arguments)
    finish: str = "stop"  # "stop", "stop_sequence", "length" or "tool"
    stop_sequence: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0


def sample_value(name: str, schema: dict) -> Any:
    """A plausible value for one schema property, by type (Gemini spells types in upper case)."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    kind = str(kind).lower()
    if kind == "string":
        return "Oslo" if name == "city" else "test"
    return {"number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}.get(kind, "test")


def pick_tool(ask: Ask) -> tuple[str, dict] | None:
    """The tool to call, or None when the fake should answer with text."""
    if ask.tool_results:
        return None
    schemas = dict(ask.tools)
    if "tool" in ask.knobs:
        return ask.knobs["tool"], schemas.get(ask.knobs["tool"], {})
    if not ask.tools or ask.tool_choice == "none":
        return None
    if ask.tool_choice.startswith("="):
        return ask.tool_choice[1:], schemas.get(ask.tool_choice[1:], {})
    return ask.tools[0]


def reply_text(ask: Ask) -> str:
    """The echo, tool-result or JSON-mode text (see the module docstring)."""
    if ask.json_mode and not ask.tool_results:
        return dumps({"echo": ask.user_text}).decode()
    prefix = f"[system: {' | '.join(ask.system)}] " if ask.system else ""
    if ask.tool_results:
        return prefix + " | ".join(f"Tool {name} returned: {content}" for name, content in ask.tool_results)
    return prefix + "Echo: " + ask.user_text + "".join(ask.images)


def split_pieces(text: str, count: str | None) -> list[str]:
    """One token per piece, or ``chunks=N`` near-equal pieces."""
    if not count:
        return tokens(text)
    n = max(1, int(count))
    size = math.ceil(len(text) / n) or 1
    return [text[i:i + size] for i in range(0, len(text), size)]


def plan(ask: Ask) -> Reply:
    """Decide the whole answer: thought, text or tool call, finish reason and token counts."""
    reply = Reply(input_tokens=ask.input_tokens, thinking=THOUGHT if ask.thinking else "")
    reply.thinking_tokens = len(tokens(reply.thinking))
    tool = pick_tool(ask)
    if tool:
        args = {name: sample_value(name, prop) for name, prop in (tool[1].get("properties") or {}).items()}
        reply.tool, reply.finish = (uuid.uuid4().hex[:24], tool[0], args), "tool"
        reply.output_tokens = reply.thinking_tokens + max(1, math.ceil(len(dumps(args)) / 4))
        return reply
    text = reply_text(ask)
    hits = [(text.find(s), s) for s in ask.stop if s and s in text]
    if hits:
        index, reply.stop_sequence = min(hits)
        text, reply.finish = text[:index], "stop_sequence"
    words = tokens(text)
    if ask.max_tokens is not None and reply.thinking_tokens + len(words) > ask.max_tokens:
        words = words[:max(0, ask.max_tokens - reply.thinking_tokens)]
        text, reply.finish, reply.stop_sequence = "".join(words), "length", None
    reply.text, reply.pieces = text, split_pieces(text, ask.knobs.get("chunks"))
    reply.output_tokens = reply.thinking_tokens + len(words)
    return reply


def split_args(args_json: str) -> list[str]:
    """Tool arguments as 2-4 fragments, as the streaming APIs deliver them."""
    n = max(2, min(4, len(args_json)))
    size = math.ceil(len(args_json) / n)
    return [args_json[i:i + size] for i in range(0, len(args_json), size)]


# ---------------------------------------------------------------- Reply → wire

@dataclass(slots=True)
class Frame:
    """One stream event: its JSON payload, SSE event name, whether it is content, usage it delivers."""

    payload: bytes
    event: str | None = None
    content: bool = True
    usage: tuple[int, int] = (0, 0)


def openai_usage(r: Reply) -> dict:
    return {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
            "total_tokens": r.input_tokens + r.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": r.thinking_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


OPENAI_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}


def openai_body(ask: Ask, r: Reply, rid: str) -> dict:
    """The chat.completion object."""
    message: dict[str, Any] = {"role": "assistant", "content": None if r.tool else r.text,
                               "refusal": None, "annotations": []}
    if r.thinking:
        message["reasoning_content"] = r.thinking
    if r.tool:
        message["tool_calls"] = [{"id": "call_" + r.tool[0], "type": "function",
                                  "function": {"name": r.tool[1], "arguments": dumps(r.tool[2]).decode()}}]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": ask.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": OPENAI_FINISH[r.finish]}],
            "usage": openai_usage(r), "service_tier": "default", "system_fingerprint": "fp_fake"}


def openai_frames(ask: Ask, r: Reply, rid: str) -> list[Frame]:
    """chat.completion.chunk events, the include_usage chunk, then [DONE]."""
    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": ask.model,
            "service_tier": "default", "system_fingerprint": "fp_fake"}

    def chunk(delta: dict, finish: str | None = None, content: bool = True) -> Frame:
        body = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if ask.include_usage:
            body["usage"] = None
        return Frame(dumps(body), content=content)

    frames = [chunk({"role": "assistant", "content": "", "refusal": None}, content=False)]
    frames += [chunk({"reasoning_content": t}) for t in tokens(r.thinking)]
    if r.tool:
        call = {"index": 0, "id": "call_" + r.tool[0], "type": "function",
                "function": {"name": r.tool[1], "arguments": ""}}
        frames.append(chunk({"tool_calls": [call]}))
        frames += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                   for p in split_args(dumps(r.tool[2]).decode())]
    frames += [chunk({"content": p}) for p in r.pieces]
    frames.append(chunk({}, OPENAI_FINISH[r.finish], content=False))
    if ask.include_usage:
        usage = {**base, "choices": [], "usage": openai_usage(r)}
        frames.append(Frame(dumps(usage), content=False, usage=(r.input_tokens, r.output_tokens)))
    return [*frames, Frame(b"[DONE]", content=False)]


ANTHROPIC_STOP = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens",
                  "tool": "tool_use"}


def anthropic_usage(r: Reply, output: int) -> dict:
    return {"input_tokens": r.input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": output, "service_tier": "standard"}


def anthropic_body(ask: Ask, r: Reply, rid: str) -> dict:
    """The Messages API message object."""
    content: list[dict] = []
    if r.thinking:
        content.append({"type": "thinking", "thinking": r.thinking, "signature": SIGNATURE})
    if r.tool:
        content.append({"type": "tool_use", "id": "toolu_" + r.tool[0], "name": r.tool[1],
                        "input": r.tool[2]})
    elif r.text:
        content.append({"type": "text", "text": r.text})
    return {"id": rid, "type": "message", "role": "assistant", "model": ask.model, "content": content,
            "stop_reason": ANTHROPIC_STOP[r.finish], "stop_sequence": r.stop_sequence,
            "usage": anthropic_usage(r, r.output_tokens)}


def anthropic_frames(ask: Ask, r: Reply, rid: str) -> list[Frame]:
    """message_start, ping, content blocks, message_delta (cumulative usage), message_stop."""
    def event(name: str, content: bool = False, stats: tuple[int, int] = (0, 0), **data: Any) -> Frame:
        return Frame(dumps({"type": name, **data}), name, content, stats)

    message = {**anthropic_body(ask, r, rid), "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": anthropic_usage(r, 1)}
    frames = [event("message_start", stats=(r.input_tokens, 0), message=message), event("ping")]
    blocks: list[tuple[dict, list[dict]]] = []
    if r.thinking:
        deltas = [{"type": "thinking_delta", "thinking": t} for t in tokens(r.thinking)]
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""},
                       [*deltas, {"type": "signature_delta", "signature": SIGNATURE}]))
    if r.tool:
        start = {"type": "tool_use", "id": "toolu_" + r.tool[0], "name": r.tool[1], "input": {}}
        blocks.append((start, [{"type": "input_json_delta", "partial_json": p}
                               for p in split_args(dumps(r.tool[2]).decode())]))
    elif r.pieces:
        blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in r.pieces]))
    for index, (start, deltas) in enumerate(blocks):
        frames.append(event("content_block_start", index=index, content_block=start))
        frames += [event("content_block_delta", True, index=index, delta=d) for d in deltas]
        frames.append(event("content_block_stop", index=index))
    usage = {k: v for k, v in anthropic_usage(r, r.output_tokens).items() if k != "service_tier"}
    frames.append(event("message_delta", stats=(0, r.output_tokens), usage=usage,
                        delta={"stop_reason": ANTHROPIC_STOP[r.finish], "stop_sequence": r.stop_sequence}))
    return [*frames, event("message_stop")]


GEMINI_FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}


def gemini_usage(r: Reply, output: int, thoughts: int) -> dict:
    """usageMetadata; candidatesTokenCount excludes thoughts, as on the real API."""
    usage = {"promptTokenCount": r.input_tokens, "candidatesTokenCount": output - thoughts,
             "totalTokenCount": r.input_tokens + output,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": r.input_tokens}]}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def gemini_chunk(ask: Ask, rid: str, parts: list[dict], usage: dict, finish: str | None = None) -> dict:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": ask.model, "responseId": rid}


def gemini_parts(r: Reply) -> Iterator[tuple[dict, int]]:
    """Response parts, each with the output tokens it carries: thought tokens, one call, text pieces."""
    yield from (({"text": t, "thought": True}, 1) for t in tokens(r.thinking))
    if r.tool:
        yield {"functionCall": {"name": r.tool[1], "args": r.tool[2]}}, r.output_tokens - r.thinking_tokens
    else:
        yield from (({"text": p}, len(tokens(p))) for p in r.pieces)


def gemini_body(ask: Ask, r: Reply, rid: str) -> dict:
    """One GenerateContentResponse: thought part, then the call or the whole text."""
    parts: list[dict] = [{"text": r.thinking, "thought": True}] if r.thinking else []
    parts.append({"functionCall": {"name": r.tool[1], "args": r.tool[2]}} if r.tool else {"text": r.text})
    usage = gemini_usage(r, r.output_tokens, r.thinking_tokens)
    return gemini_chunk(ask, rid, parts, usage, GEMINI_FINISH[r.finish])


def gemini_frames(ask: Ask, r: Reply, rid: str) -> list[Frame]:
    """One chunk per part with cumulative usageMetadata; the last one carries finishReason."""
    items = list(gemini_parts(r)) or [({"text": ""}, 0)]
    frames, output, thoughts = [], 0, 0
    for i, (part, cost) in enumerate(items):
        before = output
        output = min(output + cost, r.output_tokens)
        thoughts += cost if part.get("thought") else 0
        # Usage is cumulative on the wire: a frame delivers what it adds (input once, with the first).
        delivered = (r.input_tokens if i == 0 else 0, output - before)
        if i < len(items) - 1:
            frames.append(Frame(dumps(gemini_chunk(ask, rid, [part], gemini_usage(r, output, thoughts))),
                                usage=delivered))
        else:  # the last chunk carries the finish reason and the exact totals
            usage = gemini_usage(r, r.output_tokens, r.thinking_tokens)
            body = gemini_chunk(ask, rid, [part], usage, GEMINI_FINISH[r.finish])
            frames.append(Frame(dumps(body), usage=(r.input_tokens if i == 0 else 0, r.output_tokens - before)))
    return frames


# ---------------------------------------------------------------- errors, per format

OPENAI_ERRORS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                 403: ("permission_error", None), 404: ("invalid_request_error", "model_not_found"),
                 429: ("requests", "rate_limit_exceeded")}
ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                 504: "DEADLINE_EXCEEDED"}


def openai_error(status: int, message: str, retry_after: str | None = None) -> dict:
    default = ("server_error" if status >= 500 else "invalid_request_error", None)
    kind, code = OPENAI_ERRORS.get(status, default)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def anthropic_error(status: int, message: str, retry_after: str | None = None) -> dict:
    kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": new_id("req_")}


def gemini_error(status: int, message: str, retry_after: str | None = None) -> dict:
    default = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
    error: dict[str, Any] = {"code": status, "message": message, "status": GEMINI_STATUS.get(status, default)}
    if status == 429 or retry_after:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": f"{retry_after or 1}s"}]
    return {"error": error}


@dataclass(frozen=True)
class Format:
    """Everything that differs between the three wire formats on the response side."""

    name: str
    body: Callable[[Ask, Reply, str], dict]
    frames: Callable[[Ask, Reply, str], list[Frame]]
    error: Callable[[int, str, str | None], dict]
    stream_error: Frame
    id_prefix: str
    request_id_header: str | None
    failed_status: int  # what fail_after means for a non-streaming request


OPENAI = Format("openai", openai_body, openai_frames, openai_error,
                Frame(dumps(openai_error(500, "The server had an error while processing your request."))),
                "chatcmpl-", "x-request-id", 500)
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
ANTHROPIC = Format("anthropic", anthropic_body, anthropic_frames, anthropic_error,
                   Frame(dumps(OVERLOADED), "error"), "msg_", "request-id", 529)
GEMINI = Format("gemini", gemini_body, gemini_frames, gemini_error,
                Frame(dumps(gemini_error(500, "An internal error has occurred. Please retry or report."))),
                "", None, 500)
STATUS_MESSAGES = {401: "Incorrect API key provided.", 404: "The requested model does not exist.",
                   429: "Rate limit reached. Please try again later.", 529: "Overloaded"}


# ---------------------------------------------------------------- state and handlers

class FakeState:
    """Everything the fake remembers: recent requests and counters for /_fake/stats."""

    def __init__(self) -> None:
        self.requests: deque[dict] = deque(maxlen=200)
        self.stats = {"connections": 0, "requests": 0, "output_tokens": 0, "input_tokens": 0}

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

    def send_error_body(self, status: int, message: str, retry_after: str | None = None) -> None:
        if retry_after:
            self.set_header("retry-after", retry_after)
        self.send_json(self.fmt.error(status, message, retry_after), status)

    def json_body(self) -> dict:
        if not isinstance(self.body, dict):
            raise FakeError(400, "We could not parse the JSON body of your request.")
        return self.body

    async def answer(self, parse: Callable[[], Ask]) -> None:
        """Parse, plan and send a chat reply, honouring the knobs."""
        try:
            ask = parse()
            plan(ask)
        except FakeError as exc:
            return self.send_error_body(exc.status, exc.message)
        except (TypeError, KeyError, AttributeError, ValueError, IndexError):  # a shape the real API rejects too
            return self.send_error_body(400, "Invalid request: a field has the wrong type or shape.")
        knobs = ask.knobs
        if "status" in knobs:
            status = int(knobs["status"])
            message = STATUS_MESSAGES.get(status, f"Fake error {status}")
            return self.send_error_body(status, message, knobs.get("retry_after"))
        if "html" in knobs:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(HTML_PAGE)
            return None
        reply, rid = plan(ask), self.fmt.id_prefix + uuid.uuid4().hex[:24]
        if ask.stream:
            return await self.send_stream(ask, reply, rid)
        wait = float(knobs.get("stall", 0)) + float(knobs.get("delay", 0))
        if wait:
            await asyncio.sleep(wait)
        if "fail_after" in knobs:
            return self.send_error_body(self.fmt.failed_status, "Internal server error")
        data = b'{"id": "' + rid.encode() + b'", "choices": [' if "malformed" in knobs \
            else dumps(self.fmt.body(ask, reply, rid))
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
            self.state.add_usage((reply.input_tokens, reply.output_tokens))

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
                    error = self.framing(self.fmt.stream_error, i == 0) + self.stream_end
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


class StatsHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        """GET /_fake/stats: connections, requests and delivered usage totals."""
        self.finish(self.settings["fake_state"].stats)


def make_app(state: FakeState | None = None) -> tornado.web.Application:
    """The fake provider's routes; Gemini routes accept both the v1beta and v1 prefixes."""
    actions = r"(generateContent|streamGenerateContent|countTokens)"
    return tornado.web.Application([
        (r"/v1/chat/completions", OpenAIChatHandler),
        (r"/v1/messages", AnthropicMessagesHandler),
        (r"/v1/messages/count_tokens", AnthropicCountHandler),
        (rf"/(v1beta|v1)/models/(.+?)(?::|%3A){actions}", GeminiHandler),
        (r"/(v1beta|v1)/models/?", ModelsHandler),
        (r"/(v1beta|v1)/models/(.+)", ModelsHandler),
        (r"/_fake/requests", RequestsHandler),
        (r"/_fake/stats", StatsHandler),
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

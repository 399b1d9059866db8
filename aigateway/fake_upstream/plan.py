"""The format-neutral core of the fake: a request read as an ``Ask``, the deterministic ``Reply`` to it,
and the ``Format`` contract each wire format implements (the rules are in the package docstring)."""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

THOUGHT = "Let me think about this."
TOKEN_RE = re.compile(r"\S+\s*")
KNOB_RE = re.compile(r"#fake:(\w+)=(\S*)")
URLSAFE = str.maketrans("-_", "+/")


def dumps(obj: Any) -> bytes:
    """Compact JSON, UTF-8 kept raw (as the real APIs send it; needed for the utf8split knob)."""
    return orjson.dumps(obj)


def tokens(text: str) -> list[str]:
    """The fake tokenizer: a word plus its trailing whitespace."""
    return TOKEN_RE.findall(text)


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


class FakeError(Exception):
    """A request the real API would reject; rendered in the format's error shape (OpenAI's also names
    the offending ``param`` and a ``code``)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.details = {k: v for k, v in (("param", param), ("code", code)) if v}


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
    extra: dict[str, Any] = field(default_factory=dict)  # what one format's renderer alone needs


def _texts(node: Any, key: str = "") -> Iterator[str]:
    """Every piece of text in messages: text/thinking/content strings, tool arguments and results."""
    if isinstance(node, str):
        if key in ("text", "thinking", "content", "arguments", "output", "system"):
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
    if ask.knobs.get("tool") == "none":
        return None
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


def knob_args(value: str) -> dict:
    """The ``args=`` knob: a JSON object written without spaces, or the base64url of one."""
    try:
        raw = value if value.startswith("{") else base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        args = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise FakeError(400, f"#fake:args= is neither a JSON object nor base64url JSON: {exc}") from exc
    if not isinstance(args, dict):
        raise FakeError(400, "#fake:args= must be a JSON object")
    return args


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
        args = knob_args(ask.knobs["args"]) if "args" in ask.knobs else \
            {name: sample_value(name, prop) for name, prop in (tool[1].get("properties") or {}).items()}
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


@dataclass(slots=True)
class Frame:
    """One stream event: its JSON payload, SSE event name, whether it is content, usage it delivers."""

    payload: bytes
    event: str | None = None
    content: bool = True
    usage: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Format:
    """Everything that differs between the wire formats on the response side."""

    name: str
    body: Callable[[Ask, Reply, str], dict]
    frames: Callable[[Ask, Reply, str], list[Frame]]
    error: Callable[[int, str, str | None], dict]
    stream_error: Callable[[Ask, Reply, str, int], Frame]  # the in-band failure that replaces frame N
    id_prefix: str
    request_id_header: str | None
    failed_status: int  # what fail_after means for a non-streaming request


def constant(frame: Frame) -> Callable[[Ask, Reply, str, int], Frame]:
    """A stream error that is the same whatever was sent before it."""
    return lambda *_: frame

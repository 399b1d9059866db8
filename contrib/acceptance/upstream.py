"""An independent stand-in for the real OpenAI, Anthropic and Gemini APIs, for acceptance runs.

Written from the providers' public API references, not from the gateway's own fake
(aigateway/fake_upstream/), so the gateway is checked against a second reading of the wire formats.
It behaves like the real services where that matters to a gateway:

- strict request validation with each provider's real error shape and status (unknown fields are a
  400 at OpenAI and Anthropic and an "Unknown name" 400 at Gemini; Anthropic wants max_tokens,
  alternating tool_use/tool_result pairs and non-empty text; Gemini wants functionResponse turns
  that answer every functionCall of the turn before);
- streams in each provider's own framing (OpenAI ``data:`` chunks with ``obfuscation`` padding and a
  ``choices: []`` usage chunk; Anthropic ``event:`` + ``data:`` with ``ping`` events, an empty first
  ``input_json_delta`` and ``signature_delta``; Gemini ``data:`` frames separated by ``\\r\\n\\r\\n``),
  written in small pieces at odd byte offsets, multi-byte UTF-8 characters split included;
- realistic extra fields (system_fingerprint, service_tier, cache_creation, promptTokensDetails,
  safety ratings...) a client must tolerate.

Paths: ``/openai/v1/...`` (OpenAI), ``/compat/v1/...`` (an Ollama-like OpenAI-compatible server),
``/anthropic/v1/...`` and ``/gemini/{v1beta,v1}/...``. The behaviour of the next requests is set with
``POST /_ctl/scenario`` (JSON: ``{"name": ..., ...}``); ``GET /_ctl/requests`` returns what was received
and ``DELETE /_ctl/requests`` forgets it. Loopback only.

    python contrib/acceptance/upstream.py --port 0     # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import re
import secrets
from typing import Any

import tornado.ioloop
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

TEXT = "Héllo wörld 👋 — 日本語のテキスト, ok."
TOOL_ARGS = {"city": "Oslo", "unit": "celsius"}
JSON_TEXT = '{"answer": 42, "city": "Zürich"}'
THINKING = "The user greets me; ünïcödé thoughts 🤔."
SIGNATURE = "EqQBCkYIBxgCKkDsig" + "A" * 40
GEMINI_SIGNATURE = base64.b64encode(b"\x0a\x24\x01gemini-thought-signature\xfe\xff").decode()
PIECES = (1, 5, 17, 3, 64, 2, 31, 9, 4, 120)  # write sizes: SSE and UTF-8 boundaries split on purpose

# Usage each provider reports (distinct numbers, so a mix-up shows).
OPENAI_USAGE = {"prompt_tokens": 37, "completion_tokens": 11, "total_tokens": 48,
                "prompt_tokens_details": {"cached_tokens": 5, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
COMPAT_USAGE = {"prompt_tokens": 17, "completion_tokens": 6, "total_tokens": 23}
ANTHROPIC_USAGE = {"input_tokens": 23, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 7,
                   "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 0},
                   "output_tokens": 13, "service_tier": "standard"}
GEMINI_USAGE = {"promptTokenCount": 41, "candidatesTokenCount": 9, "thoughtsTokenCount": 4,
                "totalTokenCount": 54, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 41}]}

STATE: dict[str, Any] = {"scenario": {"name": "text"}, "requests": []}
CITIES = ("Oslo", "Paris")
REFUSAL = "I'm sorry, I can't help with that."


def tool_args() -> list[dict]:
    """The calls of a tool turn: one, or two parallel calls to the same function."""
    return [{**TOOL_ARGS, "city": c} for c in CITIES[:2 if scenario().get("parallel") else 1]]


def scenario() -> dict:
    return STATE["scenario"]


class Reject(Exception):
    """A request the real API would refuse: status and message, rendered in the provider's shape."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


# ---------------------------------------------------------------- base handler


class Base(tornado.web.RequestHandler):
    provider = ""

    def check_xsrf_cookie(self) -> None:
        pass

    def record(self, body: Any) -> None:
        STATE["requests"].append({"provider": self.provider, "method": self.request.method,
                                  "path": self.request.path, "query": self.request.query,
                                  "headers": dict(self.request.headers), "body": body})

    def json_body(self) -> Any:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            raise Reject(400, "We could not parse the JSON body of your request.") from None
        self.record(body)
        return body

    async def pieces(self, data: bytes) -> None:
        """Write ``data`` in small, oddly sized pieces, each flushed on its own."""
        pos = 0
        for size in itertools.cycle(PIECES):
            if pos >= len(data):
                return
            self.write(data[pos:pos + size])
            await self.flush()
            await asyncio.sleep(0.0005)
            pos += size

    def error(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        self.set_status(status)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def forced_error(self) -> dict | None:
        sc = scenario()
        return sc if sc["name"] == "error" else None


# ---------------------------------------------------------------- OpenAI

OPENAI_FIELDS = {
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "reasoning_effort", "response_format", "safety_identifier", "seed",
    "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
    "top_logprobs", "top_p", "user", "verbosity", "web_search_options"}
OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for gpt-4o in organization org-abc on requests per min (RPM): Limit 3, Used 3."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def openai_tool_results(messages: list) -> list[str]:
    """The contents of the trailing tool messages, in order."""
    results: list[str] = []
    for msg in reversed(messages):
        if msg.get("role") != "tool":
            break
        results.insert(0, msg["content"] if isinstance(msg["content"], str) else
                       "".join(p.get("text", "") for p in msg["content"]))
    return results


def validate_openai(body: Any) -> None:
    if not isinstance(body, dict):
        raise Reject(400, "Invalid body: expected an object.")
    for name in body:
        if name not in OPENAI_FIELDS:
            raise Reject(400, f"Unrecognized request argument supplied: {name}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Reject(400, "Invalid 'messages': empty array. Expected an array with minimum length 1.")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise Reject(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    if "max_tokens" in body and "max_completion_tokens" in body:
        raise Reject(400, "max_tokens and max_completion_tokens cannot both be set.")
    open_calls: set[str] = set()
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise Reject(400, f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                              "'tool', 'function' and 'developer'.")
        if open_calls and role != "tool":
            raise Reject(400, "An assistant message with 'tool_calls' must be followed by tool messages responding "
                              f"to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                              f"{', '.join(sorted(open_calls))}")
        if role == "assistant":
            for call in msg.get("tool_calls") or ():
                if not isinstance(call.get("function", {}).get("arguments"), str):
                    raise Reject(400, f"Invalid type for 'messages[{i}].tool_calls[0].function.arguments'.")
                open_calls.add(call["id"])
            if msg.get("content") is None and not msg.get("tool_calls"):
                raise Reject(400, f"Invalid value for 'messages[{i}].content': expected a string, got null.")
        if role == "tool":
            if msg.get("tool_call_id") not in open_calls:
                raise Reject(400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                                  "message with 'tool_calls'.")
            open_calls.discard(msg["tool_call_id"])
        if role == "user" and isinstance(msg.get("content"), list):
            for part in msg["content"]:
                if part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    if not re.match(r"(https?://|data:image/(png|jpeg|gif|webp);base64,)", url):
                        raise Reject(400, "Invalid image URL.")
    if open_calls:
        raise Reject(400, "An assistant message with 'tool_calls' must be followed by tool messages.")
    for tool in body.get("tools") or ():
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool.get("function", {}).get("name", "")):
            raise Reject(400, "Invalid 'tools[0].function.name': string does not match pattern.")


def openai_answer(body: dict, flavour: str) -> dict:
    """What to answer, as data: text, tool calls, finish reason and usage."""
    name = scenario()["name"]
    results = openai_tool_results(body["messages"])
    if name == "tool" and not results:
        return {"text": None, "calls": [("call_" + secrets.token_hex(12), "get_weather", json.dumps(a))
                                        for a in tool_args()], "finish": "tool_calls"}
    if name == "tool":
        return {"text": "The weather: " + " | ".join(results), "calls": [], "finish": "stop"}
    if name == "refusal":
        return {"text": None, "refusal": REFUSAL, "calls": [], "finish": "stop"}
    if name == "json":
        return {"text": JSON_TEXT, "calls": [], "finish": "stop"}
    if name == "length":
        return {"text": TEXT[:9], "calls": [], "finish": "length"}
    if name == "image":
        return {"text": image_report(body, "openai"), "calls": [], "finish": "stop"}
    return {"text": TEXT, "calls": [], "finish": "stop"}


class OpenAIChat(Base):
    provider = "openai"

    @property
    def compat(self) -> bool:
        return self.request.path.startswith("/compat/")

    def fail(self, status: int, message: str, kind: str | None = None, code: str | None = None,
             headers: dict | None = None) -> None:
        default_kind, default_code, _ = OPENAI_ERRORS.get(status, ("invalid_request_error", None, ""))
        body = {"error": {"message": message, "type": kind or default_kind, "param": None,
                          "code": code if code is not None else default_code}}
        self.error(status, body, headers)

    async def post(self) -> None:
        auth = self.request.headers.get("Authorization", "")
        if not self.compat and not auth.startswith("Bearer sk-upstream"):
            self.json_body()
            return self.fail(401, "Incorrect API key provided: sk-***. You can find your API key at "
                                  "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        try:
            body = self.json_body()
            validate_openai(body)
        except Reject as exc:
            return self.fail(exc.status, exc.message)
        forced = self.forced_error()
        if forced:
            status = forced["status"]
            headers = {"retry-after": "2", "x-ratelimit-reset-requests": "2s"} if status == 429 else {}
            return self.fail(status, OPENAI_ERRORS.get(status, ("", None, "error"))[2], headers=headers)
        answer = openai_answer(body, "compat" if self.compat else "openai")
        cid, created, model = "chatcmpl-" + secrets.token_hex(12), 1760000000, body["model"] + "-2024-08-06"
        usage = COMPAT_USAGE if self.compat else OPENAI_USAGE
        self.set_header("x-request-id", "req_" + secrets.token_hex(8))
        if body.get("stream"):
            await self.stream(body, answer, cid, created, model, usage)
        else:
            self.finish(self.plain(answer, cid, created, model, usage))

    def plain(self, answer: dict, cid: str, created: int, model: str, usage: dict) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": answer["text"],
                                   "refusal": answer.get("refusal"), "annotations": []}
        if answer["calls"]:
            message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                                     for i, n, a in answer["calls"]]
        return {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer["finish"]}],
                "usage": usage, "service_tier": "default", "system_fingerprint": "fp_acc123"}

    async def stream(self, body: dict, answer: dict, cid: str, created: int, model: str, usage: dict) -> None:
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "service_tier": "default", "system_fingerprint": "fp_acc123"}

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            data = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include:
                data["usage"] = None
            if not self.compat:
                data["obfuscation"] = secrets.token_urlsafe(6)
            return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"

        out = b""
        if answer["calls"] and not self.compat:
            # OpenAI puts the role and the first call fragment in one delta, then streams arguments.
            for k, (call_id, name, args) in enumerate(answer["calls"]):
                first = {"index": k, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                delta = {"role": "assistant", "content": None, "tool_calls": [first], "refusal": None} if k == 0 \
                    else {"tool_calls": [first]}
                out += chunk(delta)
                for piece in (args[:3], args[3:11], args[11:]):
                    out += chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
        elif answer["calls"]:  # Ollama: whole calls in one delta
            out += chunk({"role": "assistant", "content": "", "tool_calls": [
                {"id": i, "index": k, "type": "function", "function": {"name": n, "arguments": a}}
                for k, (i, n, a) in enumerate(answer["calls"])]})
        elif answer.get("refusal"):
            out += chunk({"role": "assistant", "content": None, "refusal": ""})
            for start in range(0, len(answer["refusal"]), 6):
                out += chunk({"refusal": answer["refusal"][start:start + 6]})
        else:
            out += chunk({"role": "assistant", "content": "", "refusal": None})
            text = answer["text"]
            for start in range(0, len(text), 4):
                out += chunk({"content": text[start:start + 4]})
        out += chunk({}, answer["finish"])
        if include:
            final = {**head, "choices": [], "usage": usage}
            if not self.compat:
                final["obfuscation"] = "x"
            out += b"data: " + json.dumps(final).encode() + b"\n\n"
        out += b"data: [DONE]\n\n"
        await self.pieces(out)
        self.finish()


class OpenAIModels(Base):
    provider = "openai"

    def get(self) -> None:
        self.record(None)
        ids = ["gpt-4o", "gpt-4o-mini", "o3-mini"] if not self.request.path.startswith("/compat/") else ["llama3.2"]
        self.finish({"object": "list", "data": [{"id": i, "object": "model", "created": 1715367049,
                                                 "owned_by": "system"} for i in ids]})


# ---------------------------------------------------------------- Anthropic

ANTHROPIC_FIELDS = {"model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k", "stop_sequences",
                    "stream", "metadata", "tools", "tool_choice", "thinking", "output_config", "service_tier",
                    "container", "mcp_servers", "context_management", "inference_geo"}
ANTHROPIC_ERRORS = {400: ("invalid_request_error", "messages: text content blocks must be non-empty"),
                    429: ("rate_limit_error", "This request would exceed the rate limit for your organization of "
                                              "50 requests per minute."),
                    500: ("api_error", "Internal server error"), 529: ("overloaded_error", "Overloaded")}


def validate_anthropic(body: Any) -> None:
    if not isinstance(body, dict):
        raise Reject(400, "Expected an object")
    for name in body:
        if name not in ANTHROPIC_FIELDS:
            raise Reject(400, f"{name}: Extra inputs are not permitted")
    if not isinstance(body.get("max_tokens"), int):
        raise Reject(400, "max_tokens: Field required")
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise Reject(400, "temperature: Input should be less than or equal to 1")
    if temperature is not None and body.get("top_p") is not None:
        raise Reject(400, "`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens", 0)
        if budget < 1024 or budget >= body["max_tokens"]:
            raise Reject(400, "`max_tokens` must be greater than `thinking.budget_tokens`")
    system = body.get("system")
    if system is not None and not isinstance(system, str) and \
            not all(isinstance(b, dict) and b.get("type") == "text" for b in system):
        raise Reject(400, "system: Input should be a valid list of text blocks")
    for stop in body.get("stop_sequences") or ():
        if not stop.strip():
            raise Reject(400, "stop_sequences: each stop sequence must contain non-whitespace")
    for tool in body.get("tools") or ():
        if tool.get("type") in (None, "custom") and (tool.get("input_schema") or {}).get("type") != "object":
            raise Reject(400, "tools.0.custom.input_schema.type: Input should be 'object'")
    validate_anthropic_turns(body.get("messages"))


def validate_anthropic_turns(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Reject(400, "messages: Field required")
    if messages[0].get("role") != "user":
        raise Reject(400, "messages: first message must use the \"user\" role")
    pending: set[str] = set()
    for i, msg in enumerate(messages):
        content = msg.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not blocks:
            raise Reject(400, f"messages.{i}: all messages must have non-empty content")
        results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if pending and results != pending:
            raise Reject(400, "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately "
                              "after: {}".format(i, ", ".join(sorted(pending - results))))
        if results - pending:
            raise Reject(400, f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks")
        pending = set()
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind == "text" and not block.get("text"):
                raise Reject(400, f"messages.{i}.content.{j}.text: text content blocks must be non-empty")
            if kind == "image":
                src = block.get("source") or {}
                if src.get("type") == "base64" and src.get("media_type") not in (
                        "image/jpeg", "image/png", "image/gif", "image/webp"):
                    raise Reject(400, f"messages.{i}.content.{j}.image.source.base64.media_type: Input should be "
                                      "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
                if src.get("type") == "base64":
                    base64.b64decode(src.get("data", ""), validate=True)
            if kind == "tool_use":
                if msg["role"] != "assistant" or not isinstance(block.get("input"), dict):
                    raise Reject(400, f"messages.{i}.content.{j}: tool_use needs an object input")
                pending.add(block["id"])
    if pending:
        raise Reject(400, "messages: `tool_use` ids were found without `tool_result` blocks immediately after")


def anthropic_blocks(body: dict) -> tuple[list[dict], str]:
    """The answer's content blocks and stop reason."""
    name = scenario()["name"]
    last = body["messages"][-1]
    content = last.get("content")
    results = [b for b in content if b.get("type") == "tool_result"] if isinstance(content, list) else []
    if name == "tool" and not results:
        return [{"type": "text", "text": "Let me check."}] + [
            {"type": "tool_use", "id": "toolu_01" + secrets.token_hex(10), "name": "get_weather", "input": a}
            for a in tool_args()], "tool_use"
    if name == "tool":
        values = [r.get("content") for r in results]
        values = [v if isinstance(v, str) else "".join(b.get("text", "") for b in v or ()) for v in values]
        return [{"type": "text", "text": "The weather: " + " | ".join(values)}], "end_turn"
    if name == "thinking":
        return [{"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
                {"type": "text", "text": TEXT}], "end_turn"
    if name == "json":
        return [{"type": "text", "text": JSON_TEXT}], "end_turn"
    if name == "length":
        return [{"type": "text", "text": TEXT[:9]}], "max_tokens"
    if name == "image":
        return [{"type": "text", "text": image_report(body, "anthropic")}], "end_turn"
    return [{"type": "text", "text": TEXT}], "end_turn"


def sse_event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class AnthropicMessages(Base):
    provider = "anthropic"

    def fail(self, status: int, message: str, kind: str | None = None, headers: dict | None = None) -> None:
        kind = kind or ANTHROPIC_ERRORS.get(status, ("invalid_request_error", ""))[0]
        body = {"type": "error", "error": {"type": kind, "message": message},
                "request_id": "req_011" + secrets.token_hex(8)}
        self.error(status, body, {"request-id": body["request_id"], **(headers or {})})

    async def post(self) -> None:
        if not self.request.headers.get("x-api-key", "").startswith("sk-ant-upstream"):
            self.json_body()
            return self.fail(401, "invalid x-api-key", "authentication_error")
        if not self.request.headers.get("anthropic-version"):
            self.json_body()
            return self.fail(400, "anthropic-version: header is required")
        try:
            body = self.json_body()
            validate_anthropic(body)
        except Reject as exc:
            return self.fail(exc.status, exc.message)
        except ValueError:
            return self.fail(400, "image: invalid base64 data")
        forced = self.forced_error()
        if forced and not forced.get("midstream"):
            status = forced["status"]
            headers = {"retry-after": "3", "anthropic-ratelimit-requests-remaining": "0"} if status == 429 else {}
            if status == 529:
                headers = {"x-should-retry": "true"}
            return self.fail(status, ANTHROPIC_ERRORS.get(status, ("", "error"))[1], headers=headers)
        blocks, stop = anthropic_blocks(body)
        message = {"id": "msg_01" + secrets.token_hex(11), "type": "message", "role": "assistant",
                   "model": body["model"], "content": blocks, "stop_reason": stop, "stop_sequence": None,
                   "usage": ANTHROPIC_USAGE, "container": None}
        self.set_header("request-id", "req_011" + secrets.token_hex(8))
        if body.get("stream"):
            await self.stream(message, forced)
        else:
            self.finish(message)

    async def stream(self, message: dict, forced: dict | None) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**ANTHROPIC_USAGE, "output_tokens": 1}}
        out = sse_event("message_start", {"type": "message_start", "message": start})
        out += sse_event("ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            out += self.block_events(index, block)
            if forced and forced.get("midstream"):
                out += sse_event("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"},
                                           "request_id": "req_011mid"})
                await self.pieces(out)
                return self.finish()
        usage = {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}
        if scenario()["name"] == "thinking":  # the newer API repeats the cumulative input figures here
            usage = {k: ANTHROPIC_USAGE[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                                      "cache_read_input_tokens", "output_tokens")}
        out += sse_event("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": message["stop_reason"], "stop_sequence": None}, "usage": usage})
        out += sse_event("message_stop", {"type": "message_stop"})
        await self.pieces(out)
        self.finish()

    @staticmethod
    def block_events(index: int, block: dict) -> bytes:
        kind = block["type"]
        out = b""
        if kind == "text":
            out += sse_event("content_block_start", {"type": "content_block_start", "index": index,
                                                     "content_block": {"type": "text", "text": ""}})
            text = block["text"]
            for start in range(0, len(text), 5):
                out += sse_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                         "delta": {"type": "text_delta",
                                                                   "text": text[start:start + 5]}})
                if start == 5:
                    out += sse_event("ping", {"type": "ping"})
        elif kind == "thinking":
            out += sse_event("content_block_start", {"type": "content_block_start", "index": index,
                                                     "content_block": {"type": "thinking", "thinking": "",
                                                                       "signature": ""}})
            for piece in (block["thinking"][:10], block["thinking"][10:]):
                out += sse_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                         "delta": {"type": "thinking_delta", "thinking": piece}})
            out += sse_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "signature_delta",
                                                               "signature": block["signature"]}})
        elif kind == "tool_use":
            out += sse_event("content_block_start", {"type": "content_block_start", "index": index,
                                                     "content_block": {**block, "input": {}}})
            args = json.dumps(block["input"])
            for piece in ("", args[:7], args[7:15], args[15:]):
                out += sse_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                         "delta": {"type": "input_json_delta", "partial_json": piece}})
        out += sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
        return out


class AnthropicModels(Base):
    provider = "anthropic"

    def get(self) -> None:
        self.record(None)
        models = [("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5"),
                  ("claude-haiku-4-5-20251001", "Claude Haiku 4.5")]
        data = [{"type": "model", "id": i, "display_name": d, "created_at": "2025-09-29T00:00:00Z"} for i, d in models]
        self.finish({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})


# ---------------------------------------------------------------- Gemini

GEMINI_FIELDS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
                 "cachedContent", "labels"}
GEMINI_CONFIG = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
                 "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
                 "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
                 "thinkingConfig", "mediaResolution", "imageConfig"}
GEMINI_PART = {"text", "inlineData", "functionCall", "functionResponse", "fileData", "executableCode",
               "codeExecutionResult", "thought", "thoughtSignature", "videoMetadata", "partMetadata"}
GEMINI_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
GEMINI_MESSAGES = {400: "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n",
                   429: "You exceeded your current quota, please check your plan and billing details.",
                   500: "An internal error has occurred. Please retry or report in "
                        "https://developers.generativeai.google/guide/troubleshooting",
                   503: "The model is overloaded. Please try again later."}


def camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def unknown(obj: dict, known: set[str], where: str) -> None:
    for name in obj:
        if camel(name) not in known:
            raise Reject(400, f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': '
                              "Cannot find field.")


def validate_schema(schema: Any, where: str) -> None:
    """Gemini's OpenAPI subset (``parameters``) rejects JSON-Schema-only keywords."""
    if not isinstance(schema, dict):
        return
    for bad in ("additionalProperties", "$schema", "$ref", "$defs", "const"):
        if bad in schema:
            raise Reject(400, f'Invalid JSON payload received. Unknown name "{bad}" at \'{where}\': '
                              "Cannot find field.")
    for sub in (schema.get("properties") or {}).values():
        validate_schema(sub, where + ".properties[0].value")
    validate_schema(schema.get("items"), where + ".items")


def validate_gemini(body: Any) -> None:
    if not isinstance(body, dict):
        raise Reject(400, "Invalid JSON payload received.")
    unknown(body, GEMINI_FIELDS, "")
    unknown(body.get("generationConfig") or body.get("generation_config") or {}, GEMINI_CONFIG, "generation_config")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Reject(400, "* GenerateContentRequest.contents: contents is not specified\n")
    calls = 0
    for i, content in enumerate(contents):
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise Reject(400, "Please use a valid role: user, model.")
        parts = content.get("parts")
        if not parts:
            raise Reject(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n")
        responses = 0
        for part in parts:
            unknown(part, GEMINI_PART, f"contents[{i}].parts[0]")
            call, resp = part.get("functionCall") or part.get("function_call"), \
                part.get("functionResponse") or part.get("function_response")
            if resp is not None:
                if not isinstance(resp.get("response"), dict) or not resp.get("name"):
                    raise Reject(400, f"* GenerateContentRequest.contents[{i}].parts[0].function_response.name: "
                                      "Name cannot be empty.\n")
                responses += 1
            for item, field in ((call, "function_call"), (resp, "function_response")):
                if isinstance(item, dict) and "id" in item:  # seen from the real API: koog#735, AstrBot#7357
                    raise Reject(400, f'Invalid JSON payload received. Unknown name "id" at '
                                      f"'contents[{i}].parts[0].{field}': Cannot find field.")
            if call is not None and (role != "model" or not isinstance(call.get("args", {}), dict)):
                raise Reject(400, "function_call must be in a model turn with object args")
        if responses and responses != calls:
            raise Reject(400, "Please ensure that the number of function response parts is equal to the number of "
                              "function call parts of the function call turn.")
        if responses and (i == 0 or contents[i - 1].get("role") != "model"):
            raise Reject(400, "Please ensure that function response turn comes immediately after a function call "
                              "turn.")
        calls = sum(1 for p in parts if "functionCall" in p or "function_call" in p) if role == "model" else 0
    for tool in body.get("tools") or ():
        for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or ():
            validate_schema(decl.get("parameters"), "tools[0].function_declarations[0].parameters")


def gemini_parts(body: dict) -> tuple[list[dict], str]:
    name = scenario()["name"]
    contents = body["contents"]
    last = contents[-1]["parts"]
    responses = [p.get("functionResponse") or p.get("function_response") for p in last
                 if "functionResponse" in p or "function_response" in p]
    if name == "tool" and not responses:
        parts = []
        for k, args in enumerate(tool_args()):
            part: dict[str, Any] = {"functionCall": {"name": "get_weather", "args": args}}
            if k == 0:  # the signature rides on the first call of a step only
                part["thoughtSignature"] = GEMINI_SIGNATURE
            parts.append(part)
        return parts, "STOP"
    if name == "tool":
        values = [r["response"].get("result", r["response"]) for r in responses]
        return [{"text": "The weather: " + " | ".join(v if isinstance(v, str) else json.dumps(v)
                                                       for v in values)}], "STOP"
    if name == "thinking":
        return [{"text": THINKING, "thought": True}, {"text": TEXT}], "STOP"
    if name == "json":
        return [{"text": JSON_TEXT}], "STOP"
    if name == "length":
        return [{"text": TEXT[:9]}], "MAX_TOKENS"
    if name == "image":
        return [{"text": image_report(body, "gemini")}], "STOP"
    return [{"text": TEXT}], "STOP"


class GeminiGenerate(Base):
    provider = "gemini"

    def fail(self, status: int, message: str, details: list | None = None) -> None:
        err: dict[str, Any] = {"code": status, "message": message, "status": GEMINI_STATUS.get(status, "UNKNOWN")}
        if details:
            err["details"] = details
        self.error(status, {"error": err})

    async def post(self, version: str, model: str, method: str) -> None:
        key = self.request.headers.get("x-goog-api-key") or self.get_query_argument("key", "")
        if not key.startswith("gemini-upstream"):
            self.json_body()
            return self.fail(400, "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
        try:
            body = self.json_body()
            validate_gemini(body)
        except Reject as exc:
            return self.fail(exc.status, exc.message)
        forced = self.forced_error()
        if forced and not forced.get("midstream"):
            status = forced["status"]
            details = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more",
                                                                            "url": "https://ai.google.dev/"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17.5s"}] if status == 429 else None
            return self.fail(status, GEMINI_MESSAGES.get(status, "error"), details)
        parts, finish = gemini_parts(body)
        rid = secrets.token_urlsafe(16)
        version_name = model.removeprefix("models/") + "-001"
        if method == "streamGenerateContent":
            await self.stream(parts, finish, rid, version_name, forced)
            return
        cand = {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0,
                "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}
        usage = GEMINI_USAGE if scenario()["name"] == "thinking" else \
            {k: v for k, v in GEMINI_USAGE.items() if k != "thoughtsTokenCount"} | {"totalTokenCount": 50}
        self.finish({"candidates": [cand], "usageMetadata": usage, "modelVersion": version_name, "responseId": rid})

    async def stream(self, parts: list, finish: str, rid: str, version_name: str, forced: dict | None) -> None:
        sse = self.get_query_argument("alt", "") == "sse"
        self.set_header("Content-Type", "text/event-stream" if sse else "application/json; charset=UTF-8")
        thinking = scenario()["name"] == "thinking"
        usage = GEMINI_USAGE if thinking else \
            {k: v for k, v in GEMINI_USAGE.items() if k != "thoughtsTokenCount"} | {"totalTokenCount": 50}
        running = {"promptTokenCount": usage["promptTokenCount"], "totalTokenCount": usage["promptTokenCount"],
                   "promptTokensDetails": usage["promptTokensDetails"]}
        chunks: list[dict] = []
        for part in parts:
            if "text" in part and len(part["text"]) > 8:  # text arrives in pieces, the rest whole
                text = part["text"]
                pieces = [text[:8], text[8:20], text[20:]]
                chunks += [{"parts": [{**part, "text": p}]} for p in pieces]
            else:
                chunks.append({"parts": [part]})
        frames = []
        for k, chunk in enumerate(chunks):
            cand: dict[str, Any] = {"content": {**chunk, "role": "model"}}
            if k == 0:
                cand["index"] = 0
            frames.append({"candidates": [cand], "usageMetadata": running, "modelVersion": version_name,
                           "responseId": rid})
        # the final chunk: an empty text part carrying the signature, the finish reason and final usage
        frames.append({"candidates": [{"content": {"parts": [{"text": "", "thoughtSignature": GEMINI_SIGNATURE}],
                                                   "role": "model"}, "finishReason": finish, "index": 0}],
                       "usageMetadata": usage, "modelVersion": version_name, "responseId": rid})
        if forced and forced.get("midstream"):
            err = {"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                             "status": "UNAVAILABLE"}}
            frames = frames[:1] + [err]
        if sse:
            out = b"".join(b"data: " + json.dumps(f, ensure_ascii=False).encode() + b"\r\n\r\n" for f in frames)
        else:
            out = ("[" + ",\r\n".join(json.dumps(f, indent=2, ensure_ascii=False) for f in frames) + "]").encode()
        await self.pieces(out)
        self.finish()


GEMINI_MODELS = [
    {"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash",
     "description": "Stable version of Gemini 2.5 Flash", "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
     "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"],
     "temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": True},
    {"name": "models/gemini-2.0-flash", "version": "2.0", "displayName": "Gemini 2.0 Flash",
     "inputTokenLimit": 1048576, "outputTokenLimit": 8192,
     "supportedGenerationMethods": ["generateContent", "countTokens"], "temperature": 1, "topP": 0.95, "topK": 40},
    {"name": "models/gemini-embedding-001", "version": "001", "displayName": "Gemini Embedding 001",
     "inputTokenLimit": 2048, "outputTokenLimit": 1, "supportedGenerationMethods": ["embedContent", "countTokens"]},
    {"name": "models/gemini-3-pro-preview", "version": "3-pro-preview-11-2025", "displayName": "Gemini 3 Pro Preview",
     "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
     "supportedGenerationMethods": ["generateContent", "countTokens"], "thinking": True},
]


class GeminiModels(Base):
    provider = "gemini"

    def get(self, version: str) -> None:
        """Paginated like the real API: pageSize (default 50) and nextPageToken."""
        self.record(None)
        # Google's paging (AIP-158) may return fewer than pageSize: pages of 2 make a client follow tokens.
        size = min(int(self.get_query_argument("pageSize", "50")), 2)
        start = int(self.get_query_argument("pageToken", "0") or 0)
        page: dict[str, Any] = {"models": GEMINI_MODELS[start:start + size]}
        if start + size < len(GEMINI_MODELS):
            page["nextPageToken"] = str(start + size)
        self.finish(page)


# ---------------------------------------------------------------- shared


def image_report(body: dict, provider: str) -> str:
    """Describe the images the request carried: media type and decoded size (checks base64 handling)."""
    found = []
    if provider == "openai":
        for msg in body["messages"]:
            for part in msg.get("content") if isinstance(msg.get("content"), list) else ():
                if part.get("type") == "image_url":
                    head, _, data = part["image_url"]["url"].partition(",")
                    found.append((head[5:].split(";")[0], len(base64.b64decode(data, validate=True))))
    elif provider == "anthropic":
        for msg in body["messages"]:
            for block in msg["content"] if isinstance(msg["content"], list) else ():
                if block.get("type") == "image":
                    src = block["source"]
                    found.append((src["media_type"], len(base64.b64decode(src["data"], validate=True))))
    else:
        for content in body["contents"]:
            for part in content["parts"]:
                blob = part.get("inlineData") or part.get("inline_data")
                if blob:
                    data = blob["data"]
                    found.append((blob.get("mimeType") or blob.get("mime_type"),
                                  len(base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_"
                                                       if "-" in data or "_" in data else None))))
    return "images: " + ", ".join(f"{m} {n} bytes" for m, n in found)


class Control(tornado.web.RequestHandler):
    def check_xsrf_cookie(self) -> None:
        pass

    def post(self) -> None:
        STATE["scenario"] = json.loads(self.request.body)
        self.finish({"ok": True})

    def get(self) -> None:
        self.finish({"requests": STATE["requests"]})

    def delete(self) -> None:
        STATE["requests"] = []
        self.finish({"ok": True})


class Fallback(Base):
    def prepare(self) -> None:
        self.record(None)
        self.set_status(404)
        self.finish({"error": {"message": f"no route {self.request.path}", "type": "invalid_request_error"}})


def app() -> tornado.web.Application:
    return tornado.web.Application([
        (r"/_ctl/(?:scenario|requests)", Control),
        (r"/(?:openai|compat)/v1/chat/completions", OpenAIChat),
        (r"/(?:openai|compat)/v1/models", OpenAIModels),
        (r"/anthropic/v1/messages", AnthropicMessages),
        (r"/anthropic/v1/models", AnthropicModels),
        (r"/gemini/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent)", GeminiGenerate),
        (r"/gemini/(v1beta|v1)/models", GeminiModels),
        (r".*", Fallback),
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sockets = bind_sockets(args.port, "127.0.0.1")
    HTTPServer(app()).add_sockets(sockets)
    print(f"listening on http://127.0.0.1:{sockets[0].getsockname()[1]}", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()

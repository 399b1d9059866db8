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
- the Responses API's rules: input items and content parts checked field by field (an
  assistant message takes output_text / refusal parts only, every function_call needs its
  function_call_output and back, function tools are strict by default, max_output_tokens >= 16,
  no reasoning on non-reasoning models), its events numbered with ``sequence_number``;
- realistic extra fields (system_fingerprint, service_tier, cache_creation, promptTokensDetails,
  safety ratings, obfuscation...) a client must tolerate.

Paths: ``/openai/v1/...`` (OpenAI: chat completions, the Responses API, embeddings, models),
``/compat/v1/...`` (an Ollama-like OpenAI-compatible server: chat completions, embeddings, models),
``/anthropic/v1/...`` and ``/gemini/{v1beta,v1}/...`` (generateContent, streamGenerateContent,
embedContent, batchEmbedContents, models). Embedding vectors are deterministic (``embed_vector``),
so a client can predict them; Gemini reports no token usage for embeddings, as the real API.
The behaviour of the next requests is set with
``POST /_ctl/scenario`` (JSON: ``{"name": ..., ...}``); ``GET /_ctl/requests`` returns what was received
and ``DELETE /_ctl/requests`` forgets it. Loopback only.

    python contrib/acceptance/upstream.py --port 0     # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import math
import random
import re
import secrets
import struct
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
PIECES = (1, 5, 17, 3, 64, 2, 31, 9, 4, 120, 509, 1021)  # write sizes: SSE and UTF-8 boundaries split on purpose

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

    def __init__(self, status: int, message: str, kind: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


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
             headers: dict | None = None, param: str | None = None) -> None:
        default_kind, default_code, _ = OPENAI_ERRORS.get(status, ("invalid_request_error", None, ""))
        body = {"error": {"message": message, "type": kind or default_kind, "param": param,
                          "code": code if code is not None else default_code}}
        self.error(status, body, headers)

    def refused_key(self) -> bool:
        """OpenAI checks the key first (the compat server takes none): a 401, the body still recorded."""
        if self.compat or self.request.headers.get("Authorization", "").startswith("Bearer sk-upstream"):
            return False
        self.json_body()
        self.fail(401, "Incorrect API key provided: sk-***. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        return True

    def forced_fail(self) -> bool:
        """The scenario's error (not a mid-stream one), as OpenAI sends it."""
        forced = self.forced_error()
        if not forced or forced.get("midstream"):
            return False
        status = forced["status"]
        headers = {"retry-after": "2", "x-ratelimit-reset-requests": "2s"} if status == 429 else {}
        self.fail(status, OPENAI_ERRORS.get(status, ("", None, "error"))[2], headers=headers)
        return True

    async def post(self) -> None:
        if self.refused_key():
            return
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


# ---------------------------------------------------------------- OpenAI Responses API
# https://platform.openai.com/docs/api-reference/responses/create (request, response object) and
# https://platform.openai.com/docs/api-reference/responses-streaming (events). Errors have the chat
# completions body; this upstream keeps no state (previous_response_id and item references fail).

RESPONSES_USAGE = {"input_tokens": 29, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 12,
                   "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 41}
RESPONSES_FIELDS = {
    "background", "context_management", "conversation", "include", "input", "instructions", "max_output_tokens",
    "max_tool_calls", "metadata", "model", "parallel_tool_calls", "previous_response_id", "prompt",
    "prompt_cache_key", "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store",
    "stream", "stream_options", "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p",
    "truncation", "user"}
RESPONSES_ITEMS = {  # the input items examined here and their fields
    "message": {"type", "role", "content", "id", "status", "phase"},
    "function_call": {"type", "id", "call_id", "name", "arguments", "status", "namespace"},
    "function_call_output": {"type", "id", "call_id", "output", "status"},
    "reasoning": {"type", "id", "summary", "content", "encrypted_content", "status"},
    "item_reference": {"type", "id"},
}
RESPONSES_OTHER_ITEMS = {  # hosted-tool items: accepted, not examined
    "file_search_call", "computer_call", "computer_call_output", "web_search_call", "image_generation_call",
    "code_interpreter_call", "local_shell_call", "local_shell_call_output", "mcp_list_tools",
    "mcp_approval_request", "mcp_approval_response", "mcp_call", "custom_tool_call", "custom_tool_call_output"}
RESPONSES_PARTS = {"input_text": {"type", "text"}, "input_image": {"type", "image_url", "file_id", "detail"},
                   "input_file": {"type", "file_id", "file_data", "file_url", "filename"},
                   "output_text": {"type", "text", "annotations", "logprobs"}, "refusal": {"type", "refusal"}}
RESPONSES_TOOLS = {"function", "file_search", "web_search", "web_search_preview", "computer_use_preview", "mcp",
                   "code_interpreter", "image_generation", "local_shell", "custom"}
FUNCTION_TOOL_FIELDS = {"type", "name", "description", "parameters", "strict"}
REASONING_MODEL = re.compile(r"o\d|gpt-5")


def one_of(values: Any) -> str:
    """OpenAI's way of listing the values it accepts: 'a', 'b', and 'c'."""
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + (", and " if len(quoted) > 2 else " and ") \
        + quoted[-1]


def responses_unknown(obj: dict, known: set[str], where: str) -> None:
    for name in obj:
        if name not in known:
            raise Reject(400, f"Unknown parameter: '{where}{name}'.", param=where + name)


def responses_items(body: dict) -> list:
    raw = body.get("input")
    return [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw


def validate_responses(body: Any) -> None:
    if not isinstance(body, dict):
        raise Reject(400, "Invalid body: expected an object.")
    responses_unknown(body, RESPONSES_FIELDS, "")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Reject(400, "Missing required parameter: 'model'.", param="model")
    for name, high in (("temperature", 2), ("top_p", 1)):
        value = body.get(name)
        if value is not None and not 0 <= value <= high:
            raise Reject(400, f"Invalid '{name}': decimal above maximum value. Expected a value <= {high}, but got "
                              f"{value} instead.", param=name)
    cap = body.get("max_output_tokens")
    if cap is not None and (not isinstance(cap, int) or cap < 16):
        raise Reject(400, "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got "
                          f"{cap} instead.", param="max_output_tokens")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise Reject(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    if (body.get("reasoning") or {}).get("effort") and not REASONING_MODEL.match(body["model"]):
        raise Reject(400, "Unsupported parameter: 'reasoning.effort' is not supported with this model.",
                     param="reasoning.effort")
    if body.get("previous_response_id"):  # nothing is stored here
        raise Reject(400, f"Previous response with id '{body['previous_response_id']}' not found.",
                     param="previous_response_id")
    items = responses_items(body)
    if not isinstance(items, list):
        raise Reject(400, "Invalid type for 'input': expected one of a string or array of input items, but got "
                          f"{type(items).__name__} instead.", param="input")
    calls: list[str] = []
    outputs: list[str] = []
    for i, item in enumerate(items):
        kind = validate_responses_item(item, f"input[{i}]", body.get("store"))
        if kind == "function_call":
            calls.append(item["call_id"])
        elif kind == "function_call_output":
            if item["call_id"] not in calls:
                raise Reject(400, f"No tool call found for function call output with call_id {item['call_id']}.",
                             param="input")
            outputs.append(item["call_id"])
    for call_id in calls:
        if call_id not in outputs:
            raise Reject(400, f"No tool output found for function call {call_id}.", param="input")
    names = validate_responses_tools(body.get("tools"))
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        raise Reject(400, f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
                     param="tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name") not in names:
        raise Reject(400, f"Tool choice 'function' with name '{choice.get('name')}' not found in 'tools' parameter.",
                     param="tool_choice")
    fmt = (body.get("text") or {}).get("format")
    if fmt is not None:
        if fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise Reject(400, f"Invalid value: '{fmt.get('type')}'. Supported values are: 'text', 'json_object', and "
                              "'json_schema'.", param="text.format.type")
        if fmt["type"] == "json_schema":
            for field in ("name", "schema"):
                if field not in fmt:
                    raise Reject(400, f"Missing required parameter: 'text.format.{field}'.",
                                 param=f"text.format.{field}")


def validate_responses_item(item: Any, where: str, store: Any) -> str:
    if not isinstance(item, dict):
        raise Reject(400, f"Invalid type for '{where}': expected an input item, but got {type(item).__name__} "
                          "instead.", param=where)
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind is None:
        raise Reject(400, f"Missing required parameter: '{where}.type'.", param=f"{where}.type")
    if kind in RESPONSES_OTHER_ITEMS:
        return kind
    if kind not in RESPONSES_ITEMS:
        raise Reject(400, f"Invalid value: '{kind}'. Supported values are: "
                          f"{one_of([*RESPONSES_ITEMS, *sorted(RESPONSES_OTHER_ITEMS)])}.", param=f"{where}.type")
    responses_unknown(item, RESPONSES_ITEMS[kind], where + ".")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise Reject(400, f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', 'developer', "
                              "and 'user'.", param=f"{where}.role")
        content = item.get("content")
        if isinstance(content, str):
            return kind
        if not isinstance(content, list):
            raise Reject(400, f"Invalid type for '{where}.content': expected one of a string or array of input "
                              f"content, but got {type(content).__name__} instead.", param=f"{where}.content")
        allowed = ("output_text", "refusal") if role == "assistant" else ("input_text", "input_image", "input_file")
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            ptype = part.get("type") if isinstance(part, dict) else None
            if ptype not in allowed:  # e.g. input_text in an assistant message
                raise Reject(400, f"Invalid value: '{ptype}'. Supported values are: {one_of(allowed)}.",
                             param=f"{at}.type")
            responses_unknown(part, RESPONSES_PARTS[ptype], at + ".")
            if ptype in ("input_text", "output_text") and not isinstance(part.get("text"), str):
                raise Reject(400, f"Missing required parameter: '{at}.text'.", param=f"{at}.text")
            if ptype == "input_image":
                url = part.get("image_url")
                if not url and not part.get("file_id"):
                    raise Reject(400, f"Missing required parameter: '{at}.image_url'.", param=f"{at}.image_url")
                if url and not re.match(r"(https?://|data:image/(png|jpeg|gif|webp);base64,)", url):
                    raise Reject(400, f"Invalid '{at}.image_url'. Expected a base64-encoded data URL with an image "
                                      "MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got an "
                                      "unsupported value.", param=f"{at}.image_url")
                if part.get("detail", "auto") not in ("low", "high", "auto"):
                    raise Reject(400, f"Invalid value: '{part['detail']}'. Supported values are: 'low', 'high', and "
                                      "'auto'.", param=f"{at}.detail")
    elif kind in ("function_call", "function_call_output"):
        for field in ("call_id", "name", "arguments") if kind == "function_call" else ("call_id",):
            if not isinstance(item.get(field), str):
                raise Reject(400, f"Missing required parameter: '{where}.{field}'.", param=f"{where}.{field}")
        if kind == "function_call_output" and not isinstance(item.get("output"), (str, list)):
            raise Reject(400, f"Missing required parameter: '{where}.output'.", param=f"{where}.output")
    elif kind == "reasoning":
        if not isinstance(item.get("summary"), list):
            raise Reject(400, f"Missing required parameter: '{where}.summary'.", param=f"{where}.summary")
        if store is False and item.get("id") and not item.get("encrypted_content"):
            raise Reject(404, f"Item with id '{item['id']}' not found. Items are not persisted when `store` is set "
                              "to false. Try again with `store` set to true, or remove this item from your input.",
                         param="input")
    else:  # item_reference: nothing is stored here
        raise Reject(404, f"Item with id '{item.get('id')}' not found.", param="input")
    return kind


def validate_responses_tools(tools: Any) -> set[str]:
    names: set[str] = set()
    for j, tool in enumerate(tools or ()):
        at = f"tools[{j}]"
        if not isinstance(tool, dict) or "type" not in tool:
            raise Reject(400, f"Missing required parameter: '{at}.type'.", param=f"{at}.type")
        if tool["type"] not in RESPONSES_TOOLS:
            raise Reject(400, f"Invalid value: '{tool['type']}'. Supported values are: "
                              f"{one_of(sorted(RESPONSES_TOOLS))}.", param=f"{at}.type")
        if tool["type"] != "function":
            continue
        if not isinstance(tool.get("name"), str):  # e.g. a chat completions tool ({"function": {...}})
            raise Reject(400, f"Missing required parameter: '{at}.name'.", param=f"{at}.name")
        responses_unknown(tool, FUNCTION_TOOL_FIELDS, at + ".")
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool["name"]):
            raise Reject(400, f"Invalid '{at}.name': string does not match pattern. Expected a string that matches "
                              "the pattern '^[a-zA-Z0-9_-]+$'.", param=f"{at}.name")
        if tool.get("strict") is not False:  # strict is the default in the Responses API
            strict_schema(tool["name"], tool.get("parameters"), "()", at)
        names.add(tool["name"])
    return names


def strict_schema(name: str, schema: Any, context: str, at: str) -> None:
    """Strict mode's rules: every object closes (additionalProperties false) and requires every property."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return
    prefix = f"Invalid schema for function '{name}': In context={context}, "
    if schema.get("additionalProperties") is not False:
        raise Reject(400, prefix + "'additionalProperties' is required to be supplied and to be false.",
                     param=f"{at}.parameters")
    properties = schema.get("properties") or {}
    missing = [key for key in properties if key not in (schema.get("required") or ())]
    if missing:
        raise Reject(400, prefix + "'required' is required to be supplied and to be an array including every key "
                                   f"in properties. Missing '{missing[0]}'.", param=f"{at}.parameters")
    for key, sub in properties.items():
        strict_schema(name, sub, f"('properties', '{key}')", at)


def responses_results(items: list) -> list[str]:
    """The outputs of the trailing function_call_output items, in order."""
    results: list[str] = []
    for item in reversed(items):
        if item.get("type") != "function_call_output":
            break
        out = item["output"]
        results.insert(0, out if isinstance(out, str) else "".join(p.get("text", "") for p in out))
    return results


def responses_output(body: dict) -> tuple[list[dict], str]:
    """The output items and the response status: what the scenario answers to this body."""
    name = scenario()["name"]
    output: list[dict] = []
    if REASONING_MODEL.match(body["model"]):  # reasoning models always reason; a summary only when asked
        reasoning = body.get("reasoning") or {}
        item: dict[str, Any] = {"id": "rs_" + secrets.token_hex(24), "type": "reasoning", "summary": [
            {"type": "summary_text", "text": THINKING}] if reasoning.get("summary") else []}
        if "reasoning.encrypted_content" in (body.get("include") or ()):
            item["encrypted_content"] = "gAAAAA" + base64.b64encode(secrets.token_bytes(48)).decode()
        output.append(item)
    results = responses_results(responses_items(body))
    if name == "tool" and not results:
        return output + [{"id": "fc_" + secrets.token_hex(24), "type": "function_call", "status": "completed",
                          "arguments": json.dumps(a), "call_id": "call_" + secrets.token_urlsafe(18).replace("-", "x")
                          .replace("_", "y"), "name": "get_weather"} for a in tool_args()], "completed"
    status, part = "completed", None
    if name == "tool":
        text = "The weather: " + " | ".join(results)
    elif name == "refusal":
        text, part = "", {"type": "refusal", "refusal": REFUSAL}
    elif name == "json":
        text = JSON_TEXT
    elif name == "length":
        text, status = TEXT[:9], "incomplete"
    elif name == "image":
        text = image_report(body, "responses")
    else:
        text = TEXT
    part = part or {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    output.append({"id": "msg_" + secrets.token_hex(24), "type": "message", "status": status, "content": [part],
                   "role": "assistant"})
    return output, status


def response_object(body: dict, output: list[dict], status: str) -> dict:
    reasoning = body.get("reasoning") or {}
    tools = [{"type": "function", "description": None, **t, "strict": t.get("strict") is not False}
             if t.get("type") == "function" else t for t in body.get("tools") or ()]
    return {
        "id": "resp_" + secrets.token_hex(24), "object": "response", "created_at": 1760000000, "status": status,
        "background": False, "billing": {"payer": "developer"}, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None, "model": body["model"] + "-2024-08-06", "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "prompt_cache_key": None, "prompt_cache_retention": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": None, "service_tier": "default", "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"), "tools": tools, "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"), "usage": RESPONSES_USAGE,
        "user": None, "metadata": body.get("metadata") or {}}


def responses_events(resp: dict, fail: bool) -> list[dict]:
    """The stream of ``resp``: created, in_progress, each item added / its parts and deltas / done, then
    completed (or incomplete). ``fail``: a response.failed right after the first delta instead."""
    events: list[dict] = []

    def ev(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    def deltas(kind: str, text: str, size: int, **where: Any) -> bool:
        """The deltas of ``text``; False when the stream fails after the first."""
        for start in range(0, len(text), size):
            ev(kind, **where, delta=text[start:start + size], obfuscation=secrets.token_urlsafe(4))
            if fail:
                return False
        return True

    def item_events(index: int, item: dict) -> bool:
        where = {"item_id": item["id"], "output_index": index}
        empty = {"message": {"content": []}, "function_call": {"arguments": ""}, "reasoning": {"summary": []}}
        ev("response.output_item.added", output_index=index, item={**item, "status": "in_progress",
                                                                    **empty[item["type"]]})
        if item["type"] == "message":
            for c, part in enumerate(item["content"]):
                key, kind = ("text", "output_text") if part["type"] == "output_text" else ("refusal", "refusal")
                extra = {"logprobs": []} if key == "text" else {}
                ev("response.content_part.added", **where, content_index=c, part={**part, key: ""})
                if not deltas(f"response.{kind}.delta", part[key], 4, **where, content_index=c, **extra):
                    return False
                ev(f"response.{kind}.done", **where, content_index=c, **{key: part[key]}, **extra)
                ev("response.content_part.done", **where, content_index=c, part=part)
        elif item["type"] == "function_call":
            if not deltas("response.function_call_arguments.delta", item["arguments"], 8, **where):
                return False
            ev("response.function_call_arguments.done", **where, arguments=item["arguments"])
        else:
            for s, part in enumerate(item["summary"]):
                ev("response.reasoning_summary_part.added", **where, summary_index=s, part={**part, "text": ""})
                if not deltas("response.reasoning_summary_text.delta", part["text"], 6, **where, summary_index=s):
                    return False
                ev("response.reasoning_summary_text.done", **where, summary_index=s, text=part["text"])
                ev("response.reasoning_summary_part.done", **where, summary_index=s, part=part)
        ev("response.output_item.done", output_index=index, item=item)
        return True

    head = {**resp, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    ev("response.created", response=head)
    ev("response.in_progress", response=head)
    if all(item_events(index, item) for index, item in enumerate(resp["output"])):
        ev("response.completed" if resp["status"] == "completed" else "response.incomplete", response=resp)
    else:
        ev("response.failed", response={**head, "status": "failed", "error": {
            "code": "server_error", "message": "An error occurred while processing your request. You can retry your "
                                               "request, or contact us through our help center."}})
    return events


class OpenAIResponses(OpenAIChat):
    provider = "openai"

    async def post(self) -> None:
        if self.refused_key():
            return
        try:
            body = self.json_body()
            validate_responses(body)
        except Reject as exc:
            return self.fail(exc.status, exc.message, param=exc.param)
        if self.forced_fail():
            return
        output, status = responses_output(body)
        resp = response_object(body, output, status)
        self.set_header("x-request-id", "req_" + secrets.token_hex(8))
        if not body.get("stream"):
            return self.finish(resp)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        events = responses_events(resp, bool(self.forced_error()))
        await self.pieces(b"".join(sse_event(e["type"], e) for e in events))
        self.finish()


# ---------------------------------------------------------------- embeddings
# https://platform.openai.com/docs/api-reference/embeddings, https://ai.google.dev/api/embeddings

OPENAI_EMBED = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
COMPAT_EMBED = {"nomic-embed-text": 768, "all-minilm": 384}
GEMINI_EMBED = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
GEMINI_TASKS = {"TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
                "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"}


def embed_vector(model: str, item: str | list[int], dims: int | None = None) -> list[float]:
    """The embedding answered for one input: deterministic, unit length, float32 values (exact through
    a base64 round trip). A shortened one is the full vector's head normalised again, as OpenAI
    documents for ``dimensions``."""
    full = {**OPENAI_EMBED, **COMPAT_EMBED, **GEMINI_EMBED}[model]
    rng = random.Random(hashlib.sha256(json.dumps([model, item], ensure_ascii=False).encode()).digest())
    head = [rng.uniform(-1, 1) for _ in range(full)][:dims or full]
    norm = math.sqrt(sum(v * v for v in head))
    return list(struct.unpack(f"<{len(head)}f", struct.pack(f"<{len(head)}f", *(v / norm for v in head))))


def embed_tokens(item: str | list[int]) -> int:
    """This upstream's token count of one input (words and punctuation; a token array counts itself)."""
    return len(item) if isinstance(item, list) else len(re.findall(r"\w+|[^\w\s]", item))


def embed_inputs(raw: Any, compat: bool) -> list[str | list[int]]:
    """``input``: a string, an array of strings, an array of token ids or an array of such arrays."""
    bad = Reject(400, "invalid input type" if compat else
                 "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                 param=None if compat else "input")

    def tokens(value: Any) -> bool:
        return not compat and isinstance(value, list) and bool(value) and all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 200_000 for t in value)
    if isinstance(raw, str) or tokens(raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw or len(raw) > 2048:
        raise bad
    for item in raw:
        if not (isinstance(item, str) and item or tokens(item)):
            raise bad
    return raw


class OpenAIEmbeddings(OpenAIChat):
    provider = "openai"

    async def post(self) -> None:
        if self.refused_key():
            return
        try:
            body = self.json_body()
            model, inputs, dims, base64_out = self.validate(body)
        except Reject as exc:
            return self.fail(exc.status, exc.message, kind=exc.kind, code="model_not_found" if exc.status == 404
                             and not self.compat else None, param=exc.param)
        if self.forced_fail():
            return
        vectors = [embed_vector(model, item, dims) for item in inputs]
        tokens = sum(embed_tokens(item) for item in inputs)
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if base64_out else v}
                for i, v in enumerate(vectors)]
        self.finish({"object": "list", "data": data, "model": model,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def validate(self, body: Any) -> tuple[str, list, int | None, bool]:
        """OpenAI is strict; the Ollama-like server ignores fields it does not know and answers floats."""
        if not isinstance(body, dict):
            raise Reject(400, "Invalid body: expected an object.")
        if not self.compat:
            for name in body:
                if name not in ("input", "model", "dimensions", "encoding_format", "user"):
                    raise Reject(400, f"Unrecognized request argument supplied: {name}")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise Reject(400, "you must provide a model parameter")
        models = COMPAT_EMBED if self.compat else OPENAI_EMBED
        if model not in models:
            raise Reject(404, f'model "{model}" not found, try pulling it first', "api_error") if self.compat else \
                Reject(404, f"The model `{model}` does not exist or you do not have access to it.")
        inputs = embed_inputs(body.get("input"), self.compat)
        dims = body.get("dimensions")
        if dims is not None and not self.compat and model == "text-embedding-ada-002":
            raise Reject(400, "This model does not support specifying dimensions.", param="dimensions")
        if dims is not None and (not isinstance(dims, int) or not 1 <= dims <= models[model]):
            raise Reject(400, f"Invalid value for 'dimensions' = {dims}. Must be between 1 and {models[model]}.",
                         param="dimensions")
        encoding = body.get("encoding_format", "float")
        if not self.compat and encoding not in ("float", "base64"):
            raise Reject(400, f"Invalid value for 'encoding_format' = {encoding}. Supported values: ['float', "
                              "'base64'].", param="encoding_format")
        return model, inputs, dims, encoding == "base64" and not self.compat


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


class GeminiEmbed(GeminiGenerate):
    """``:embedContent`` (one ``content``) and ``:batchEmbedContents`` (``requests``, each naming the
    model). The Gemini API reports no token usage for embeddings."""

    async def post(self, version: str, model: str, method: str) -> None:  # type: ignore[override]
        key = self.request.headers.get("x-goog-api-key") or self.get_query_argument("key", "")
        if not key.startswith("gemini-upstream"):
            self.json_body()
            return self.fail(400, "API key not valid. Please pass a valid API key.")
        try:
            body = self.json_body()
            texts, dims = self.validate(body, version, model, method)
        except Reject as exc:
            return self.fail(exc.status, exc.message)
        forced = self.forced_error()
        if forced and not forced.get("midstream"):
            return self.fail(forced["status"], GEMINI_MESSAGES.get(forced["status"], "error"))
        vectors = [{"values": embed_vector(model, text, dim)} for text, dim in zip(texts, dims, strict=True)]
        self.finish({"embedding": vectors[0]} if method == "embedContent" else {"embeddings": vectors})

    @staticmethod
    def validate(body: Any, version: str, model: str, method: str) -> tuple[list[str], list[int | None]]:
        if model not in GEMINI_EMBED:
            raise Reject(404, f"models/{model} is not found for API version {version}, or is not supported for "
                              f"{method}. Call ListModels to see the list of available models and their supported "
                              "methods.")
        if not isinstance(body, dict):
            raise Reject(400, "Invalid JSON payload received.")
        request_name = "BatchEmbedContentsRequest" if method == "batchEmbedContents" else "EmbedContentRequest"
        if method == "batchEmbedContents":
            unknown(body, {"requests"}, "")
            requests = body.get("requests")
            if not isinstance(requests, list) or not requests:
                raise Reject(400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
            if len(requests) > 100:
                raise Reject(400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n")
            wheres = [f"requests[{i}]" for i in range(len(requests))]
        else:
            requests, wheres = [body], [""]
        texts, dims = [], []
        for request, where in zip(requests, wheres, strict=True):
            unknown(request, {"model", "content", "taskType", "title", "outputDimensionality"}, where)
            named = request.get("model")
            if (named is not None or method == "batchEmbedContents") and named != f"models/{model}":
                raise Reject(400, f"* {request_name}.{where + '.' if where else ''}model: the model of each request "
                                  f"must be the batch's model, models/{model}\n")
            content = request.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            if not parts:
                raise Reject(400, f"* {request_name}.{where + '.' if where else ''}content.parts: contents.parts must "
                                  "not be empty.\n")
            unknown(content, {"parts", "role"}, f"{where}.content".lstrip("."))
            for part in parts:
                unknown(part, GEMINI_PART, f"{where}.content.parts[0]".lstrip("."))
                if not isinstance(part.get("text"), str):
                    raise Reject(400, f"{model} embeds text only.")
            task = request.get("taskType", request.get("task_type"))
            if task is not None and task not in GEMINI_TASKS:
                raise Reject(400, f"Invalid value at '{where + '.' if where else ''}task_type' "
                                  f"(type.googleapis.com/google.ai.generativelanguage.{version}.TaskType), \"{task}\"")
            dim = request.get("outputDimensionality", request.get("output_dimensionality"))
            if dim is not None and (not isinstance(dim, int) or not 1 <= dim <= GEMINI_EMBED[model]):
                raise Reject(400, f"* {request_name}.{where + '.' if where else ''}output_dimensionality: must be "
                                  f"between 1 and {GEMINI_EMBED[model]}\n")
            texts.append(" ".join(p["text"] for p in parts))
            dims.append(dim)
        return texts, dims


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
    elif provider == "responses":
        for item in responses_items(body):
            for part in item.get("content") if isinstance(item.get("content"), list) else ():
                if part.get("type") == "input_image" and part.get("image_url"):
                    head, _, data = part["image_url"].partition(",")
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
        (r"/openai/v1/responses", OpenAIResponses),
        (r"/(?:openai|compat)/v1/embeddings", OpenAIEmbeddings),
        (r"/anthropic/v1/messages", AnthropicMessages),
        (r"/anthropic/v1/models", AnthropicModels),
        (r"/gemini/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent)", GeminiGenerate),
        (r"/gemini/(v1beta|v1)/models/([^/:]+):(embedContent|batchEmbedContents)", GeminiEmbed),
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

"""Gemini ``generateContent``/``streamGenerateContent``: request → Ask, Reply → response chunks, errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from aigateway.fake_upstream.plan import (
    Ask,
    FakeError,
    Format,
    Frame,
    Reply,
    block_text,
    constant,
    count_input,
    describe_image,
    dumps,
    split_knobs,
    tokens,
)


def g(obj: Any, camel: str, default: Any = None) -> Any:
    """Gemini field lookup accepting lowerCamelCase or snake_case (the REST API takes both)."""
    if not isinstance(obj, dict):
        return default
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"([A-Z])", r"_\1", camel).lower(), default)


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


GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                 504: "DEADLINE_EXCEEDED"}


def gemini_error(status: int, message: str, retry_after: str | None = None) -> dict:
    default = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
    error: dict[str, Any] = {"code": status, "message": message, "status": GEMINI_STATUS.get(status, default)}
    if status == 429 or retry_after:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": f"{retry_after or 1}s"}]
    return {"error": error}


GEMINI = Format("gemini", gemini_body, gemini_frames, gemini_error,
                constant(Frame(dumps(gemini_error(500, "An internal error has occurred. Please retry or report.")))),
                "", None, 500)

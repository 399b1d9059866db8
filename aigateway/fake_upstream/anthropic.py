"""Anthropic Messages (``POST /v1/messages``): request → Ask, Reply → message, events, errors."""

from __future__ import annotations

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
    new_id,
    split_args,
    split_knobs,
    tokens,
)

SIGNATURE = "RmFrZVNpZ25hdHVyZUZvclRlc3Rz"


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
    # mid-conversation system messages (Claude Opus 4.8 and later) join the system prompt the fake echoes
    ask.system += [block_text(m.get("content")) for m in messages if m.get("role") == "system"]
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


ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


def anthropic_error(status: int, message: str, retry_after: str | None = None) -> dict:
    kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": new_id("req_")}


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


ANTHROPIC = Format("anthropic", anthropic_body, anthropic_frames, anthropic_error,
                   constant(Frame(dumps(OVERLOADED), "error")), "msg_", "request-id", 529)

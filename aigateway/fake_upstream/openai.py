"""OpenAI chat completions (``POST /v1/chat/completions``): request → Ask, Reply → body, chunks, errors."""

from __future__ import annotations

import time
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
    split_args,
    split_knobs,
    tokens,
)


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


OPENAI_ERRORS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                 403: ("permission_error", None), 404: ("invalid_request_error", "model_not_found"),
                 429: ("requests", "rate_limit_exceeded")}


def openai_error(status: int, message: str, retry_after: str | None = None) -> dict:
    default = ("server_error" if status >= 500 else "invalid_request_error", None)
    kind, code = OPENAI_ERRORS.get(status, default)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


OPENAI = Format("openai", openai_body, openai_frames, openai_error,
                constant(Frame(dumps(openai_error(500, "The server had an error while processing your request.")))),
                "chatcmpl-", "x-request-id", 500)

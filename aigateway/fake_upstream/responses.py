"""OpenAI Responses API (``POST /v1/responses``): request → Ask, Reply → response object, events, errors.

Shapes follow the API reference (platform.openai.com/docs/api-reference/responses) as the official
SDKs read them: flat function tools and ``namespace`` groups; hosted tools such as ``web_search``
accepted and never called; input items ``message`` (roles user/assistant/system/developer),
``function_call``, ``function_call_output`` and replayed ``reasoning`` items; a stream of named
events with a global ``sequence_number``, ended by ``response.completed``, ``response.incomplete``
or ``response.failed`` (no ``[DONE]``).
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from aigateway.fake_upstream.openai import openai_error
from aigateway.fake_upstream.plan import (
    THOUGHT,
    Ask,
    FakeError,
    Format,
    Frame,
    Reply,
    block_text,
    count_input,
    describe_image,
    dumps,
    split_args,
    split_knobs,
    tokens,
)

MIN_OUTPUT_TOKENS = 16  # the API rejects a smaller max_output_tokens
ENCRYPTED = "reasoning.encrypted_content"
# Request fields every response object repeats, with the value the API reports when they were not sent.
ECHOED: dict[str, Any] = {
    "background": False, "instructions": None, "max_output_tokens": None, "max_tool_calls": None, "metadata": {},
    "parallel_tool_calls": True, "previous_response_id": None, "prompt_cache_key": None,
    "reasoning": {"effort": None, "summary": None}, "safety_identifier": None, "store": True, "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto", "tools": [],
    "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled", "user": None,
}


def text_of(content: Any) -> str:
    """The text parts (input_text/output_text) of a message's content, or the content string."""
    if isinstance(content, str):
        return content
    return " ".join(p["text"] for p in content or [] if isinstance(p.get("text"), str))


def read_tools(ask: Ask, tools: list[dict]) -> dict[str, str]:
    """Function tools (also inside ``namespace`` groups) into ``ask.tools``; returns name → namespace."""
    namespaces = {}
    for tool in tools:
        if tool.get("type") == "function":
            ask.tools.append((tool["name"], tool.get("parameters") or {}))
        elif tool.get("type") == "namespace":
            for inner in tool.get("tools") or []:
                if inner.get("type") == "function":
                    ask.tools.append((inner["name"], inner.get("parameters") or {}))
                    namespaces[inner["name"]] = tool["name"]
    return namespaces  # hosted and custom tools are accepted but never called


def read_tool_choice(ask: Ask, choice: Any) -> str:
    """``none``/``auto``/``required``, one forced function, or ``allowed_tools`` narrowing the tools."""
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        return "=" + choice["name"]
    if choice.get("type") == "allowed_tools":
        allowed = {t.get("name") for t in choice.get("tools") or []}
        ask.tools = [t for t in ask.tools if t[0] in allowed]
        return "required" if choice.get("mode") == "required" else "auto"
    return "none"  # a forced hosted tool: the fake has none to run, so it answers with text


def parse_responses(body: dict) -> Ask:
    """Responses API request → Ask. ``input`` is a string (one user message) or a list of items."""
    if not body.get("model"):
        raise FakeError(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise FakeError(400, "Missing required parameter: 'input'.", "input", "missing_required_parameter")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS):
        raise FakeError(400, f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                             f"{MIN_OUTPUT_TOKENS}, but got {limit} instead.", "max_output_tokens",
                        "integer_below_min_value")
    ask = Ask(model=body["model"], stream=bool(body.get("stream")), max_tokens=limit)
    messages = [item for item in items if item.get("type", "message") == "message"]
    instructions = body.get("instructions")
    ask.system = ([instructions] if instructions else []) + \
        [text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    names = {i.get("call_id"): i.get("name") for i in items if i.get("type") == "function_call"}
    for item in reversed(items):
        if item.get("type") != "function_call_output":
            break
        call_id = item.get("call_id", "")
        ask.tool_results.insert(0, (names.get(call_id) or call_id, block_text(item.get("output"))))
    for m in reversed(messages):
        content = m.get("content")
        images = [p for p in content if p.get("type") == "input_image"] if isinstance(content, list) else []
        if m.get("role") == "user" and (text_of(content) or images):
            ask.user_text, ask.knobs = split_knobs(text_of(content))
            ask.images = [describe_image(p.get("image_url") or p.get("file_id", "")) for p in images]
            break
    namespaces = read_tools(ask, body.get("tools") or [])
    ask.tool_choice = read_tool_choice(ask, body.get("tool_choice", "auto"))
    reasoning = body.get("reasoning") or {}
    effort = reasoning.get("effort")
    ask.thinking = effort != "none" and (effort is not None or reasoning.get("summary") is not None)
    ask.json_mode = ((body.get("text") or {}).get("format") or {}).get("type") in ("json_object", "json_schema")
    ask.input_tokens = count_input(instructions, items, body.get("tools"))
    echo = {k: default if body.get(k) is None else body[k] for k, default in ECHOED.items()}
    ask.extra = {"echo": echo, "namespaces": namespaces, "encrypted": ENCRYPTED in (body.get("include") or []),
                 "summary": bool(reasoning.get("summary")),
                 "obfuscate": ((body.get("stream_options") or {}).get("include_obfuscation", True))}
    return ask


# ---------------------------------------------------------------- Reply → response object and items

def responses_usage(r: Reply) -> dict:
    """``input_tokens`` includes cached tokens; ``output_tokens`` includes reasoning tokens."""
    return {"input_tokens": r.input_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": r.output_tokens, "output_tokens_details": {"reasoning_tokens": r.thinking_tokens},
            "total_tokens": r.input_tokens + r.output_tokens}


def status_of(r: Reply) -> str:
    return "incomplete" if r.finish == "length" else "completed"


def output_items(ask: Ask, r: Reply, rid: str) -> list[dict]:
    """The finished output: a reasoning item (with ``encrypted_content`` when ``include`` asks for it),
    then the function call or the message. Item ids share the response id's suffix."""
    suffix, items = rid.removeprefix("resp_"), []
    if r.thinking:
        summary = [{"type": "summary_text", "text": THOUGHT}] if ask.extra["summary"] else []  # only when asked
        reasoning: dict[str, Any] = {"id": "rs_" + suffix, "type": "reasoning", "summary": summary}
        if ask.extra["encrypted"]:
            reasoning["encrypted_content"] = base64.b64encode(b"fake reasoning: " + THOUGHT.encode()).decode()
        items.append(reasoning)
    if r.tool:
        call = {"id": "fc_" + suffix, "type": "function_call", "status": "completed",
                "arguments": dumps(r.tool[2]).decode(), "call_id": "call_" + r.tool[0], "name": r.tool[1]}
        if r.tool[1] in ask.extra["namespaces"]:
            call["namespace"] = ask.extra["namespaces"][r.tool[1]]
        items.append(call)
    else:
        text = {"type": "output_text", "annotations": [], "logprobs": [], "text": r.text}
        items.append({"id": "msg_" + suffix, "type": "message", "status": status_of(r), "content": [text],
                      "role": "assistant"})
    return items


def response_object(ask: Ask, rid: str, status: str, output: list[dict], usage: dict | None,
                    created: int, **fields: Any) -> dict:
    """The response object as the API returns it, the request's settings repeated."""
    return {"id": rid, "object": "response", "created_at": created, "status": status, "error": None,
            "incomplete_details": None, **ask.extra["echo"], "model": ask.model, "output": output,
            "service_tier": "default", "usage": usage, **fields}


def finished(ask: Ask, r: Reply, rid: str, created: int) -> dict:
    """The completed (or incomplete, at max_output_tokens) response."""
    fields: dict[str, Any] = {"completed_at": int(time.time())} if r.finish != "length" else \
        {"incomplete_details": {"reason": "max_output_tokens"}}
    return response_object(ask, rid, status_of(r), output_items(ask, r, rid), responses_usage(r), created, **fields)


def responses_body(ask: Ask, r: Reply, rid: str) -> dict:
    return finished(ask, r, rid, int(time.time()))


# ---------------------------------------------------------------- Reply → stream events

Event = Callable[..., Frame]


def reasoning_events(event: Event, index: int, item: dict) -> Iterator[Frame]:
    yield event("response.output_item.added", output_index=index,
                item={"id": item["id"], "type": "reasoning", "summary": []})
    for s, part in enumerate(item["summary"]):
        ids = {"item_id": item["id"], "output_index": index, "summary_index": s}
        yield event("response.reasoning_summary_part.added", **ids, part={**part, "text": ""})
        yield from (event("response.reasoning_summary_text.delta", True, **ids, delta=t) for t in tokens(part["text"]))
        yield event("response.reasoning_summary_text.done", **ids, text=part["text"])
        yield event("response.reasoning_summary_part.done", **ids, part=part)
    yield event("response.output_item.done", output_index=index, item=item)


def message_events(event: Event, index: int, item: dict, pieces: list[str]) -> Iterator[Frame]:
    ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
    part = item["content"][0]
    yield event("response.output_item.added", output_index=index,
                item={**item, "status": "in_progress", "content": []})
    yield event("response.content_part.added", **ids, part={**part, "text": ""})
    yield from (event("response.output_text.delta", True, **ids, delta=p, logprobs=[]) for p in pieces)
    yield event("response.output_text.done", **ids, text=part["text"], logprobs=[])
    yield event("response.content_part.done", **ids, part=part)
    yield event("response.output_item.done", output_index=index, item=item)


def call_events(event: Event, index: int, item: dict) -> Iterator[Frame]:
    ids = {"item_id": item["id"], "output_index": index}
    yield event("response.output_item.added", output_index=index,
                item={**item, "status": "in_progress", "arguments": ""})
    yield from (event("response.function_call_arguments.delta", True, **ids, delta=p)
                for p in split_args(item["arguments"]))
    yield event("response.function_call_arguments.done", **ids, name=item["name"], arguments=item["arguments"])
    yield event("response.output_item.done", output_index=index, item=item)


def responses_frames(ask: Ask, r: Reply, rid: str) -> list[Frame]:
    """created, in_progress, each output item's events, then completed (or incomplete) with usage."""
    numbers, obfuscate = itertools.count(), ask.extra["obfuscate"]

    def event(kind: str, content: bool = False, usage: tuple[int, int] = (0, 0), **data: Any) -> Frame:
        if obfuscate and "delta" in data:  # random padding that hides the delta's length on the wire
            data["obfuscation"] = secrets.token_urlsafe(6)
        return Frame(dumps({"type": kind, "sequence_number": next(numbers), **data}), kind, content, usage)

    created = int(time.time())
    start = response_object(ask, rid, "in_progress", [], None, created)
    frames = [event("response.created", response=start), event("response.in_progress", response=start)]
    for index, item in enumerate(output_items(ask, r, rid)):
        if item["type"] == "reasoning":
            frames += reasoning_events(event, index, item)
        elif item["type"] == "message":
            frames += message_events(event, index, item, r.pieces)
        else:
            frames += call_events(event, index, item)
    final = finished(ask, r, rid, created)
    frames.append(event("response." + final["status"], usage=(r.input_tokens, r.output_tokens), response=final))
    return frames


def responses_failure(ask: Ask, r: Reply, rid: str, number: int) -> Frame:
    """``response.failed`` in place of stream event ``number`` (the ``fail_after`` knob)."""
    error = {"code": "server_error", "message": "An error occurred while processing your request."}
    failed = response_object(ask, rid, "failed", [], None, int(time.time()), error=error)
    return Frame(dumps({"type": "response.failed", "sequence_number": number, "response": failed}),
                 "response.failed")


RESPONSES = Format("responses", responses_body, responses_frames, openai_error, responses_failure,
                   "resp_", "x-request-id", 500)

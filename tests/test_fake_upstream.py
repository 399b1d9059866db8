"""The fake provider, checked with the official SDKs pointed straight at it (no gateway in between).

If an SDK accepts everything here, the fake speaks the real wire formats; raw-socket tests cover the
knobs the SDKs cannot see (framing, split UTF-8, dropped connections).
"""

from __future__ import annotations

import base64
import json
import math
import signal
import socket
import struct
import time
import urllib.request
from urllib.parse import urlsplit

import anthropic
import openai
import pytest
from conftest import start_process
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
    "required": ["city"],
}
THOUGHT = "Let me think about this."


def input_tokens(chars: int, messages: int) -> int:
    return math.ceil(chars / 4) + 3 * messages


# ---------------------------------------------------------------- helpers


@pytest.fixture
def oai(fake_upstream: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_upstream + "/v1", api_key="x", max_retries=0)


@pytest.fixture
def claude(fake_upstream: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake_upstream, api_key="x", max_retries=0)


@pytest.fixture(params=["default", "v1beta"])
def gem(fake_upstream: str, request: pytest.FixtureRequest) -> genai.Client:
    if request.param == "default":
        return genai.Client(api_key="x", http_options={"base_url": fake_upstream})
    return genai.Client(
        api_key="x", http_options=types.HttpOptions(base_url=fake_upstream, api_version="v1beta")
    )


def control(url: str, path: str, method: str = "GET"):
    with urllib.request.urlopen(urllib.request.Request(url + path, method=method)) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def raw(
    url: str, path: str, body: dict | None = None, headers: dict | None = None
) -> tuple[int, dict, list[bytes]]:
    """One HTTP/1.1 request over a plain socket: status, headers, and the body as the chunks that were sent.

    Tornado sends each flushed write as one chunk of the chunked encoding, so the chunk list shows
    how the fake split its writes; a body without the final 0-chunk means the connection was dropped.
    """
    host, port = urlsplit(url).hostname, urlsplit(url).port
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{'POST' if body is not None else 'GET'} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode() + data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    top, _, rest = received.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if hdrs.get("transfer-encoding") != "chunked":
        return int(lines[0].split()[1]), hdrs, [rest]
    chunks = []
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
        if size == 0:
            break
    return int(lines[0].split()[1]), hdrs, chunks


def sse_data(chunks: list[bytes]) -> list[str]:
    return [line[6:] for line in b"".join(chunks).decode().splitlines() if line.startswith("data: ")]


def user(content: object) -> list[dict]:
    return [{"role": "user", "content": content}]


def chat(text: str, **extra) -> dict:
    return {"model": "gpt-4o", "messages": user(text), **extra}


# ---------------------------------------------------------------- OpenAI


def test_openai_plain(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="any-model",
        messages=[
            {"role": "system", "content": "Be brief"},
            {"role": "developer", "content": "Be kind"},
            {"role": "user", "content": "Hello there #fake:chunks=3"},
        ],
    )
    assert r.choices[0].message.content == "[system: Be brief | Be kind] Echo: Hello there"
    assert r.choices[0].finish_reason == "stop" and r.model == "any-model" and r.id.startswith("chatcmpl-")
    assert r.usage.prompt_tokens == input_tokens(len("Be briefBe kindHello there #fake:chunks=3"), 3)
    assert r.usage.completion_tokens == 9 and r.usage.total_tokens == r.usage.prompt_tokens + 9


def test_openai_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o",
            messages=user("one two three"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert [c.choices[0].delta.content for c in middle] == ["Echo: ", "one ", "two ", "three"]
    assert finish.choices[0].finish_reason == "stop" and finish.choices[0].delta.content is None
    assert usage.choices == [] and usage.usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1]) and len({c.id for c in chunks}) == 1


def test_openai_stream_wire_without_usage(fake_upstream: str) -> None:
    status, headers, chunks = raw(fake_upstream, "/v1/chat/completions", chat("hi", stream=True))
    data = sse_data(chunks)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert data[-1] == "[DONE]" and b"event:" not in b"".join(chunks)
    payloads = [json.loads(d) for d in data[:-1]]
    assert all("usage" not in p and p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_openai_tool_call_streamed_and_whole(oai: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    msgs = user("Weather?")
    fragments, name, call_id, finish = [], None, None, None
    for c in oai.chat.completions.create(model="gpt-4o", messages=msgs, tools=tools, stream=True):
        if c.choices and c.choices[0].delta.tool_calls:
            call = c.choices[0].delta.tool_calls[0]
            name, call_id = name or call.function.name, call_id or call.id
            fragments.append(call.function.arguments)
        finish = finish or (c.choices[0].finish_reason if c.choices else None)
    assert fragments[0] == "" and len([f for f in fragments if f]) >= 2
    assert json.loads("".join(fragments)) == {"city": "Oslo", "days": 1, "metric": True}
    assert name == "get_weather" and call_id.startswith("call_") and finish == "tool_calls"
    r = oai.chat.completions.create(model="gpt-4o", messages=msgs, tools=tools)
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments)["city"] == "Oslo"


def test_openai_tool_choice_and_result(oai: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("a", "b")]
    forced = oai.chat.completions.create(
        model="m",
        messages=user("go"),
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "b"}},
    )
    assert forced.choices[0].message.tool_calls[0].function.name == "b"
    none = oai.chat.completions.create(model="m", messages=user("go"), tools=tools, tool_choice="none")
    assert none.choices[0].message.content == "Echo: go"
    result = oai.chat.completions.create(
        model="m",
        tools=tools,
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 4}'},
        ],
    )
    assert result.choices[0].message.content == 'Tool a returned: {"temp": 4}'


def test_openai_images_json_mode_reasoning(oai: openai.OpenAI) -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    r = oai.chat.completions.create(
        model="m",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What?"},
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                ],
            }
        ],
    )
    assert (
        r.choices[0].message.content == f"Echo: What? [image: image/png, {len(PNG)} bytes]"
        " [image url: https://x.test/cat.jpg]"
    )
    r = oai.chat.completions.create(model="m", messages=user("Hi"), response_format={"type": "json_object"})
    assert json.loads(r.choices[0].message.content) == {"echo": "Hi"}
    r = oai.chat.completions.create(model="m", messages=user("Hi"), reasoning_effort="low")
    assert r.choices[0].message.reasoning_content == THOUGHT
    assert r.usage.completion_tokens_details.reasoning_tokens == 5 and r.usage.completion_tokens == 7


def test_openai_max_tokens_and_stop(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="m", messages=user("a b c d"), max_tokens=2)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("Echo: a ", "length")
    assert r.usage.completion_tokens == 2
    r = oai.chat.completions.create(model="m", messages=user("a b STOP c"), stop=["STOP"])
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("Echo: a b ", "stop")


@pytest.mark.parametrize(
    "status, error",
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_openai_status_errors(oai: openai.OpenAI, status: int, error: type) -> None:
    with pytest.raises(error) as info:
        oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"x #fake:status={status} #fake:retry_after=7"}]
        )
    assert info.value.status_code == status and info.value.response.headers["retry-after"] == "7"
    assert set(info.value.body) == {"message", "type", "param", "code"}


def test_openai_fail_after_raises_mid_stream(oai: openai.OpenAI) -> None:
    seen = []
    with pytest.raises(openai.APIError, match="server had an error"):
        for c in oai.chat.completions.create(
            model="m", messages=user("a b c #fake:fail_after=2"), stream=True
        ):
            seen.append(c.choices[0].delta.content)
    assert seen == ["", "Echo: ", "a "]


def test_openai_models(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    assert oai.models.retrieve("gpt-4o").owned_by
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")


# ---------------------------------------------------------------- OpenAI Responses

FUNCTION = {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}
NAMESPACE = {"type": "namespace", "name": "agents", "description": "Helpers",
             "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}}]}


def events_of(chunks: list[bytes]) -> list[tuple[str, dict]]:
    """A Responses stream as (event name, data) pairs; every event names its type on both lines."""
    pairs = []
    for block in b"".join(chunks).decode().split("\n\n")[:-1]:
        name, data = block.split("\n")
        pairs.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    assert all(name == data["type"] for name, data in pairs)
    return pairs


def test_responses_plain(oai: openai.OpenAI) -> None:
    r = oai.responses.create(
        model="gpt-4o",
        instructions="Be brief",
        input=[{"role": "developer", "content": "Be kind"}, {"role": "user", "content": "Hello there #fake:chunks=3"}],
    )
    assert r.output_text == "[system: Be brief | Be kind] Echo: Hello there"
    assert r.status == "completed" and r.id.startswith("resp_") and r.object == "response" and r.model == "gpt-4o"
    message = r.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    assert message.content[0].annotations == [] and message.content[0].logprobs == []
    assert r.instructions == "Be brief" and r.tools == [] and r.tool_choice == "auto" and r.parallel_tool_calls
    assert r.usage.input_tokens == input_tokens(len("Be briefBe kindHello there #fake:chunks=3"), 2)
    assert r.usage.output_tokens == 9 and r.usage.total_tokens == r.usage.input_tokens + 9
    assert r.usage.input_tokens_details.cached_tokens == 0 and r.usage.output_tokens_details.reasoning_tokens == 0


def test_responses_stream_helper_with_reasoning(oai: openai.OpenAI) -> None:
    with oai.responses.stream(
        model="gpt-5", input="one two", reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.reasoning_summary_part.added"]
    assert kinds[-1] == "response.completed" and [e.sequence_number for e in events] == list(range(len(events)))
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    text = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert summary == THOUGHT and text == ["Echo: ", "one ", "two"]
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == THOUGHT and reasoning.encrypted_content
    assert final.output_text == "Echo: one two" and message.id == events[-1].response.output[1].id
    assert final.usage.output_tokens_details.reasoning_tokens == 5 and final.usage.output_tokens == 8
    plain = oai.responses.create(model="gpt-5", input="x", reasoning={"effort": "low"})
    assert plain.output[0].encrypted_content is None  # only when include asks for it
    assert plain.output[0].summary == []  # and a summary only when reasoning.summary asks for one
    assert oai.responses.create(model="gpt-5", input="x", reasoning={"effort": "none"}).output[0].type == "message"


def test_responses_raw_stream_iteration_and_wire(oai: openai.OpenAI, fake_upstream: str) -> None:
    kinds = [e.type for e in oai.responses.create(model="m", input="hi", stream=True)]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    status, headers, chunks = raw(fake_upstream, "/v1/responses", {"model": "m", "input": "hi", "stream": True})
    events = events_of(chunks)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert b"[DONE]" not in b"".join(chunks)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    created, added = events[0][1], events[2][1]
    assert created["response"]["status"] == "in_progress" and created["response"]["output"] == []
    assert created["response"]["usage"] is None and added["output_index"] == 0
    assert added["item"]["status"] == "in_progress" and added["item"]["content"] == []
    part = events[3][1]
    assert (part["item_id"], part["content_index"]) == (added["item"]["id"], 0)
    assert part["part"] == {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    delta = events[4][1]
    assert delta["logprobs"] == [] and delta["obfuscation"] and delta["delta"] == "Echo: "
    usage = events[-1][1]["response"]["usage"]
    assert set(usage) == {"input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details",
                          "total_tokens"}
    body = {"model": "m", "input": "hi", "stream": True, "stream_options": {"include_obfuscation": False}}
    assert all("obfuscation" not in d for _, d in events_of(raw(fake_upstream, "/v1/responses", body)[2]))


def test_responses_function_tool_round_trip(oai: openai.OpenAI) -> None:
    tools = [FUNCTION, NAMESPACE, {"type": "web_search", "external_web_access": False}]
    first = oai.responses.create(model="m", input="Weather?", tools=tools)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.id.startswith("fc_") and call.call_id.startswith("call_") and call.namespace is None
    assert json.loads(call.arguments) == {"city": "Oslo", "days": 1, "metric": True}
    history = [{"role": "user", "content": "Weather?"}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    second = oai.responses.create(model="m", input=history, tools=tools)
    assert second.output_text == "Tool get_weather returned: sunny"
    with oai.responses.stream(model="m", input="Weather?", tools=tools) as stream:
        events = list(stream)
    fragments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert len(fragments) >= 2 and "".join(fragments) == done.arguments == call.arguments
    nested = oai.responses.create(model="m", input="go", tools=tools, tool_choice={"type": "function", "name": "spawn"})
    assert (nested.output[0].name, nested.output[0].namespace) == ("spawn", "agents")
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "spawn"}]}
    assert oai.responses.create(model="m", input="go", tools=tools, tool_choice=allowed).output[0].name == "spawn"
    for choice in ("none", {"type": "web_search_preview"}):  # a hosted tool is never called by the fake
        assert oai.responses.create(model="m", input="go", tools=tools, tool_choice=choice).output_text == "Echo: go"


def test_responses_json_schema_and_max_output_tokens(oai: openai.OpenAI, fake_upstream: str) -> None:
    schema = {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
    r = oai.responses.create(model="m", input="Hi", text={"format": schema})
    assert json.loads(r.output_text) == {"echo": "Hi"} and r.text.format.type == "json_schema"
    words = " ".join(f"w{i}" for i in range(30))
    r = oai.responses.create(model="m", input=words, max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete" and r.output_text == "Echo: " + " ".join(words.split()[:15]) + " "
    assert r.usage.output_tokens == 16 and r.max_output_tokens == 16
    body = {"model": "m", "input": words, "max_output_tokens": 16, "stream": True}
    last = events_of(raw(fake_upstream, "/v1/responses", body)[2])[-1][1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"]["reason"] == "max_output_tokens"
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.create(model="m", input="x", max_output_tokens=10)
    assert info.value.code == "integer_below_min_value" and info.value.param == "max_output_tokens"
    assert "Expected a value >= 16, but got 10 instead" in info.value.message


def test_responses_accepts_what_codex_sends(fake_upstream: str) -> None:
    """Codex's second turn: developer messages, replayed reasoning and call, the result; store off."""

    def text(value: str) -> dict:
        return {"type": "input_text", "text": value}

    body = {
        "model": "gpt-5-codex", "stream": True, "tools": [FUNCTION], "tool_choice": "auto",
        "parallel_tool_calls": True, "reasoning": {"summary": "auto"}, "store": False,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "c0ffee",
        "client_metadata": {"session_id": "c0ffee"},
        "input": [
            {"type": "message", "id": "msg_1", "role": "developer", "content": [text("Base")]},
            {"type": "message", "role": "user", "content": [text("<environment_context/>")]},
            {"type": "message", "role": "user", "content": [text("Weather?")]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Hm."}], "content": None,
             "encrypted_content": "b3BhcXVl"},
            {"type": "function_call", "status": "completed", "id": "fc_1", "name": "get_weather",
             "arguments": '{"city":"Oslo"}', "call_id": "call_1"},
            {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "sunny"},
        ],
    }
    final = events_of(raw(fake_upstream, "/v1/responses", body)[2])[-1][1]["response"]
    reasoning, message = final["output"]
    assert message["content"][0]["text"] == "[system: Base] Tool get_weather returned: sunny"
    assert reasoning["encrypted_content"] and final["store"] is False and final["prompt_cache_key"] == "c0ffee"


def test_responses_errors_and_in_band_failure(oai: openai.OpenAI, fake_upstream: str) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        oai.responses.create(model="m", input="x #fake:status=429 #fake:retry_after=3")
    assert info.value.code == "rate_limit_exceeded" and info.value.response.headers["retry-after"] == "3"
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model="m", input="x #fake:fail_after=1")
    with pytest.raises(openai.BadRequestError, match="'input'"):
        oai.responses.create(model="m", input=[])
    events = list(oai.responses.create(model="m", input="a b c #fake:fail_after=2", stream=True))
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error.code == "server_error" and failed.sequence_number == len(events) - 1
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["Echo: ", "a "]
    chunks = raw(fake_upstream, "/v1/responses", {"model": "m", "input": "a b #fake:drop_after=1", "stream": True})[2]
    assert chunks[-1] != b"" and "response.completed" not in b"".join(chunks).decode()


# ---------------------------------------------------------------- Anthropic


def test_anthropic_plain(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(model="claude-x", max_tokens=100, system="Terse", messages=user("Hi there"))
    assert m.content[0].text == "[system: Terse] Echo: Hi there" and m.stop_reason == "end_turn"
    assert m.model == "claude-x" and m.id.startswith("msg_") and m.stop_sequence is None
    assert (m.usage.input_tokens, m.usage.output_tokens) == (input_tokens(len("TerseHi there"), 1), 5)


def test_anthropic_stream_final_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-x", max_tokens=100, messages=user("a b c")) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert pieces == ["Echo: ", "a ", "b ", "c"] and final.content[0].text == "Echo: a b c"
    assert (
        final.stop_reason == "end_turn" and final.usage.output_tokens == 4 and final.usage.input_tokens == 5
    )


def test_anthropic_stream_wire(fake_upstream: str) -> None:
    body = {"model": "c", "max_tokens": 50, "stream": True, "messages": user("hi")}
    status, headers, chunks = raw(fake_upstream, "/v1/messages", body, {"anthropic-version": "2023-06-01"})
    events = b"".join(chunks).decode().split("\n\n")[:-1]
    names = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    for event in events:
        name, data = event.split("\n")
        assert json.loads(data.removeprefix("data: "))["type"] == name.removeprefix("event: ")
    delta = json.loads(events[-2].split("\n")[1][6:])
    assert delta["usage"]["output_tokens"] == 2 and delta["delta"]["stop_reason"] == "end_turn"


def test_anthropic_tools_thinking_image(claude: anthropic.Anthropic) -> None:
    tools = [
        {"name": "noop", "input_schema": {"type": "object"}},
        {"name": "get_weather", "input_schema": WEATHER},
    ]
    with claude.messages.stream(
        model="c",
        max_tokens=2000,
        tools=tools,
        messages=user("w"),
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].type == "tool_use"
    assert final.content[0].input == {"city": "Oslo", "days": 1, "metric": True}
    assert final.content[0].id.startswith("toolu_") and final.content[0].name == "get_weather"
    with claude.messages.stream(
        model="c",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("think"),
    ) as s:
        final = s.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].thinking == THOUGHT
    assert final.content[0].signature and final.content[1].text == "Echo: think"
    assert final.usage.output_tokens == 5 + 2
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()},
    }
    m = claude.messages.create(
        model="c",
        max_tokens=100,
        messages=[{"role": "user", "content": [{"type": "text", "text": "see"}, image]}],
    )
    assert m.content[0].text == f"Echo: see [image: image/png, {len(PNG)} bytes]"


def test_anthropic_tool_result_stop_and_limits(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model="c",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "w"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "4C"}]},
        ],
    )
    assert m.content[0].text == "Tool get_weather returned: 4C"
    m = claude.messages.create(model="c", max_tokens=100, stop_sequences=["END"], messages=user("a END b"))
    assert (m.content[0].text, m.stop_reason, m.stop_sequence) == ("Echo: a ", "stop_sequence", "END")
    m = claude.messages.create(model="c", max_tokens=1, messages=user("a b"))
    assert (m.content[0].text, m.stop_reason, m.usage.output_tokens) == ("Echo: ", "max_tokens", 1)
    m = claude.messages.create(
        model="c",
        max_tokens=100,
        messages=user("Hi"),
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": {}}}},
    )
    assert json.loads(m.content[0].text) == {"echo": "Hi"}


def test_anthropic_count_tokens_matches_usage(claude: anthropic.Anthropic) -> None:
    kwargs = {"model": "c", "system": "Sys", "messages": user("count me please")}
    counted = claude.messages.count_tokens(**kwargs).input_tokens
    assert (
        counted == claude.messages.create(max_tokens=10, **kwargs).usage.input_tokens == input_tokens(18, 1)
    )


@pytest.mark.parametrize(
    "status, error",
    [(429, anthropic.RateLimitError), (529, anthropic.OverloadedError), (401, anthropic.AuthenticationError)],
)
def test_anthropic_status_errors(claude: anthropic.Anthropic, status: int, error: type) -> None:
    with pytest.raises(error) as info:
        claude.messages.create(model="c", max_tokens=10, messages=user(f"#fake:status={status}"))
    assert info.value.status_code == status and info.value.body["type"] == "error"
    assert info.value.body["request_id"] and "type" in info.value.body["error"]


def test_anthropic_requires_max_tokens_and_fails_in_band(
    claude: anthropic.Anthropic, fake_upstream: str
) -> None:
    status, _, chunks = raw(fake_upstream, "/v1/messages", {"model": "c", "messages": user("x")})
    body = json.loads(b"".join(chunks))
    assert status == 400 and body["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    stream = claude.messages.stream(model="c", max_tokens=10, messages=user("a #fake:fail_after=1"))
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"), stream as s:
        s.get_final_message()


def test_anthropic_models(claude: anthropic.Anthropic) -> None:
    models = list(claude.models.list())
    assert [m.id for m in models] == ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"]
    assert models[0].created_at.year == 2025 and models[0].display_name
    assert claude.models.retrieve("claude-3-5-haiku-20241022").type == "model"


# ---------------------------------------------------------------- Gemini


def test_gemini_generate(gem: genai.Client) -> None:
    r = gem.models.generate_content(
        model="gemini-any", contents="Hello gem", config=types.GenerateContentConfig(system_instruction="Sys")
    )
    assert (
        r.text == "[system: Sys] Echo: Hello gem" and r.candidates[0].finish_reason == types.FinishReason.STOP
    )
    assert r.model_version == "gemini-any" and r.response_id
    u = r.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count) == (input_tokens(len("SysHello gem"), 1), 5)
    assert u.total_token_count == u.prompt_token_count + 5 and u.thoughts_token_count is None


def test_gemini_stream(gem: genai.Client) -> None:
    chunks = list(gem.models.generate_content_stream(model="gemini-2.0-flash", contents="a b c"))
    assert [c.text for c in chunks] == ["Echo: ", "a ", "b ", "c"]
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].usage_metadata.candidates_token_count == 4
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="ping")])
    config = types.GenerateContentConfig(tools=[tool], automatic_function_calling={"disable": True})
    chunks = list(gem.models.generate_content_stream(model="g", contents="go", config=config))
    assert (
        len(chunks) == 1
        and chunks[0].function_calls[0].name == "ping"
        and chunks[0].function_calls[0].args == {}
    )
    assert chunks[0].candidates[0].finish_reason == types.FinishReason.STOP


def test_gemini_function_call_thinking_image_json(gem: genai.Client) -> None:
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}),
            )
        ]
    )
    r = gem.models.generate_content(
        model="g",
        contents="Weather?",
        config=types.GenerateContentConfig(
            tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
        ),
    )
    assert [(c.name, c.args) for c in r.function_calls] == [("get_weather", {"city": "Oslo"})]
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    r = gem.models.generate_content(
        model="g",
        contents="Hm",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True)),
    )
    assert r.candidates[0].content.parts[0].thought and r.candidates[0].content.parts[0].text == THOUGHT
    assert r.text == "Echo: Hm" and r.usage_metadata.thoughts_token_count == 5
    r = gem.models.generate_content(
        model="g", contents=["See", types.Part.from_bytes(data=PNG, mime_type="image/png")]
    )
    assert r.text == f"Echo: See [image: image/png, {len(PNG)} bytes]"
    r = gem.models.generate_content(
        model="g",
        contents="Hi",
        config=types.GenerateContentConfig(response_mime_type="application/json", max_output_tokens=100),
    )
    assert json.loads(r.text) == {"echo": "Hi"}


def test_gemini_tool_result_and_max_tokens(gem: genai.Client) -> None:
    contents = [
        types.Content(role="user", parts=[types.Part(text="w")]),
        types.Content(role="model", parts=[types.Part.from_function_call(name="f", args={})]),
        types.Content(role="user", parts=[types.Part.from_function_response(name="f", response={"t": 4})]),
    ]
    assert gem.models.generate_content(model="g", contents=contents).text == 'Tool f returned: {"t":4}'
    r = gem.models.generate_content(
        model="g", contents="a b c", config=types.GenerateContentConfig(max_output_tokens=2)
    )
    assert r.text == "Echo: a " and r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_gemini_count_tokens_and_models(gem: genai.Client) -> None:
    assert gem.models.count_tokens(model="g", contents="count me").total_tokens == input_tokens(8, 1)
    names = [m.name for m in gem.models.list()]
    assert names == ["models/gemini-2.0-flash", "models/gemini-2.5-flash", "models/gemini-2.5-pro",
                     "models/gemini-embedding-001"]
    model = gem.models.get(model="gemini-2.5-pro")
    assert model.display_name == "Gemini 2.5 Pro" and "generateContent" in model.supported_actions
    embedder = gem.models.get(model="gemini-embedding-001")
    assert embedder.supported_actions[0] == "embedContent" and "generateContent" not in embedder.supported_actions
    with pytest.raises(genai_errors.ClientError) as info:
        gem.models.get(model="gemini-nope")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"


@pytest.mark.parametrize("status, error", [(429, genai_errors.ClientError), (500, genai_errors.ServerError)])
def test_gemini_status_errors(gem: genai.Client, status: int, error: type) -> None:
    with pytest.raises(error) as info:
        gem.models.generate_content(model="g", contents=f"x #fake:status={status} #fake:retry_after=3")
    assert info.value.code == status
    if status == 429:
        assert info.value.status == "RESOURCE_EXHAUSTED"
        assert info.value.details["error"]["details"][0]["retryDelay"] == "3s"


def test_gemini_fail_after_raises(gem: genai.Client) -> None:
    with pytest.raises(genai_errors.APIError) as info:
        list(gem.models.generate_content_stream(model="g", contents="a b #fake:fail_after=1"))
    assert info.value.code == 500


def test_gemini_wire_snake_case_array_stream_and_key_listing(fake_upstream: str) -> None:
    body = {
        "system_instruction": {"parts": [{"text": "S"}]},
        "contents": [{"parts": [{"text": "x Q y"}]}],
        "generation_config": {"max_output_tokens": 100, "stop_sequences": ["Q"]},
    }
    status, headers, chunks = raw(fake_upstream, "/v1beta/models/g:streamGenerateContent", body)
    array = json.loads(b"".join(chunks))
    assert status == 200 and headers["content-type"].startswith("application/json") and len(chunks) > 3
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in array) == "[system: S] Echo: x "
    assert array[-1]["usageMetadata"]["candidatesTokenCount"] == 4
    _, _, chunks = raw(fake_upstream, "/v1beta/models/g:streamGenerateContent?alt=sse", body)
    assert b"[DONE]" not in b"".join(chunks) and len(sse_data(chunks)) == len(array)
    _, _, chunks = raw(fake_upstream, "/v1/models?key=k")
    assert json.loads(b"".join(chunks))["models"][0]["name"] == "models/gemini-2.0-flash"


# ---------------------------------------------------------------- embeddings


def norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def test_openai_embeddings_float_base64_and_dimensions(oai: openai.OpenAI, fake_upstream: str) -> None:
    floats = oai.embeddings.create(model="text-embedding-3-small", input=["hello", "world"], encoding_format="float")
    default = oai.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])  # base64 on the wire
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    first, second = floats.data
    assert (first.index, second.index, len(first.embedding)) == (0, 1, 1536) and first.embedding != second.embedding
    assert abs(norm(first.embedding) - 1) < 1e-6 and floats.usage.prompt_tokens == floats.usage.total_tokens == 2
    again = oai.embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="float")
    assert again.data[0].embedding == first.embedding  # deterministic
    short = oai.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=8, encoding_format="float")
    start = first.embedding[:8]
    assert len(short.data[0].embedding) == 8 and abs(norm(short.data[0].embedding) - 1) < 1e-6
    assert short.data[0].embedding == pytest.approx([v / norm(start) for v in start], rel=1e-5)
    body = {"model": "text-embedding-3-small", "input": "hello", "encoding_format": "base64"}
    _, _, chunks = raw(fake_upstream, "/v1/embeddings", body)
    packed = base64.b64decode(json.loads(b"".join(chunks))["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == first.embedding


def test_openai_embeddings_token_input_and_errors(oai: openai.OpenAI) -> None:
    r = oai.embeddings.create(model="text-embedding-3-large", input=[[1, 2, 3], [4]], encoding_format="float")
    assert len(r.data) == 2 and len(r.data[0].embedding) == 3072 and r.usage.prompt_tokens == 4
    one = oai.embeddings.create(model="text-embedding-3-large", input=[5, 6], encoding_format="float")
    assert len(one.data) == 1 and one.usage.prompt_tokens == 2
    for bad in ("", [], ["a", ""], [[]]):
        with pytest.raises(openai.BadRequestError, match=r"'\$\.input' is invalid"):
            oai.embeddings.create(model="text-embedding-3-small", input=bad)
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        oai.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
    with pytest.raises(openai.BadRequestError) as info:
        oai.embeddings.create(model="text-embedding-3-small", input="x", dimensions=5000)
    assert info.value.param == "dimensions"
    with pytest.raises(openai.RateLimitError):
        oai.embeddings.create(model="text-embedding-3-small", input=["fine", "x #fake:status=429"])


def test_gemini_embeddings_match_openai_vectors(gem: genai.Client, oai: openai.OpenAI, fake_requests) -> None:
    texts = ["hello", "world"]
    r = gem.models.embed_content(model="gemini-embedding-001", contents=texts)
    full = oai.embeddings.create(model="text-embedding-3-large", input=texts, encoding_format="float")
    assert [e.values for e in r.embeddings] == [d.embedding for d in full.data]  # the same text, the same vector
    short = gem.models.embed_content(
        model="gemini-embedding-001", contents="hello",
        config=types.EmbedContentConfig(output_dimensionality=8, task_type="RETRIEVAL_DOCUMENT", title="Doc"),
    )
    assert short.embeddings[0].values == full.data[0].embedding[:8]  # truncated, not renormalised
    path, request = fake_requests()[-1]["path"], fake_requests()[-1]["body"]["requests"][0]
    version = gem._api_client._http_options.api_version
    assert path == f"/{version}/models/gemini-embedding-001:batchEmbedContents"
    assert request["model"] == "models/gemini-embedding-001" and request["outputDimensionality"] == 8
    with pytest.raises(genai_errors.ClientError) as info:
        gem.models.embed_content(model="gemini-embedding-001", contents="x",
                                 config=types.EmbedContentConfig(task_type="NOT_A_TASK"))
    assert info.value.code == 400 and "NOT_A_TASK" in info.value.message
    with pytest.raises(genai_errors.ClientError) as info:
        gem.models.embed_content(model="gemini-embedding-001", contents="x #fake:status=429")
    assert info.value.code == 429


def test_gemini_embed_content_single(fake_upstream: str) -> None:
    for version in ("v1beta", "v1"):
        body = {"content": {"parts": [{"text": "hello"}]}, "output_dimensionality": 4}
        status, _, chunks = raw(fake_upstream, f"/{version}/models/gemini-embedding-001:embedContent", body)
        assert status == 200 and len(json.loads(b"".join(chunks))["embedding"]["values"]) == 4
    status, _, chunks = raw(fake_upstream, "/v1beta/models/gemini-embedding-001:embedContent", {"content": {}})
    assert status == 400 and json.loads(b"".join(chunks))["error"]["status"] == "INVALID_ARGUMENT"


# ---------------------------------------------------------------- the args knob, in every chat format

ARGS = {"file_path": "/tmp/a b.txt", "limit": 3}
ARG_KNOBS = ['#fake:args={"file_path":"/tmp/a\\u0020b.txt","limit":3}',
             "#fake:args=" + base64.urlsafe_b64encode(json.dumps(ARGS).encode()).decode().rstrip("=")]
READ = {"type": "object", "properties": {"file_path": {"type": "string"}}}


@pytest.mark.parametrize("knob", ARG_KNOBS, ids=["json", "base64url"])
def test_knob_args_sets_the_call_arguments(
    knob: str, oai: openai.OpenAI, claude: anthropic.Anthropic, fake_upstream: str
) -> None:
    prompt = f"read it #fake:tool=Read {knob}"
    chat_call = oai.chat.completions.create(
        model="m", messages=user(prompt), tools=[{"type": "function", "function": {"name": "Read", "parameters": READ}}]
    ).choices[0].message.tool_calls[0].function
    responses_call = oai.responses.create(
        model="m", input=prompt, tools=[{"type": "function", "name": "Read", "parameters": READ}]
    ).output[0]
    anthropic_call = claude.messages.create(
        model="c", max_tokens=50, messages=user(prompt), tools=[{"name": "Read", "input_schema": READ}]
    ).content[0]
    gemini_body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                   "tools": [{"functionDeclarations": [{"name": "Read", "parametersJsonSchema": READ}]}]}
    _, _, chunks = raw(fake_upstream, "/v1beta/models/g:generateContent", gemini_body)
    gemini_call = json.loads(b"".join(chunks))["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert json.loads(chat_call.arguments) == json.loads(responses_call.arguments) == ARGS
    assert anthropic_call.input == gemini_call["args"] == ARGS


def test_knob_args_rejects_what_is_not_an_object(oai: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "Read", "parameters": READ}}]
    for value in ("{nope", "bm90LWpzb24", "WzFd"):  # broken JSON, base64url of non-JSON, of a list
        with pytest.raises(openai.BadRequestError, match="#fake:args="):
            oai.chat.completions.create(model="m", messages=user(f"x #fake:args={value}"), tools=tools)


# ---------------------------------------------------------------- knobs on the wire


def test_knob_chunks_delay_and_stall(fake_upstream: str) -> None:
    started = time.monotonic()
    _, _, chunks = raw(
        fake_upstream, "/v1/chat/completions", chat("a b c d #fake:chunks=2 #fake:delay=0.1", stream=True)
    )
    contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in sse_data(chunks)[1:-2]]
    assert contents == ["Echo: a", " b c d"] and time.monotonic() - started >= 0.1
    started = time.monotonic()
    raw(fake_upstream, "/v1/chat/completions", chat("a b #fake:stall=0.4", stream=True))
    assert time.monotonic() - started >= 0.4


def test_knob_utf8split_splits_a_character_between_writes(fake_upstream: str) -> None:
    for extra in ({"stream": True}, {}):
        _, _, chunks = raw(
            fake_upstream, "/v1/chat/completions", chat("héllo wörld #fake:utf8split=1", **extra)
        )
        assert any(c and c[-1] >= 0xC0 for c in chunks)  # a write ends on the first byte of a character
        assert "wörld" in b"".join(chunks).decode()


def test_knob_drop_after_closes_without_terminator(fake_upstream: str, oai: openai.OpenAI) -> None:
    _, _, chunks = raw(fake_upstream, "/v1/chat/completions", chat("a b c #fake:drop_after=1", stream=True))
    assert chunks[-1] != b"" and len(sse_data(chunks)) == 2  # role chunk + one content chunk, no 0-chunk
    with pytest.raises(openai.APIConnectionError):
        list(oai.chat.completions.create(**chat("a b c #fake:drop_after=1"), stream=True))
    status, headers, chunks = raw(fake_upstream, "/v1/chat/completions", chat("a #fake:drop_after=0"))
    assert status == 200 and len(chunks[0]) < int(headers["content-length"])


def test_knob_html_and_malformed(fake_upstream: str) -> None:
    status, headers, chunks = raw(fake_upstream, "/v1/chat/completions", chat("x #fake:html=1"))
    assert status == 200 and headers["content-type"].startswith("text/html") and b"<html>" in chunks[0]
    for extra in ({}, {"stream": True}):
        status, _, chunks = raw(fake_upstream, "/v1/chat/completions", chat("x #fake:malformed=1", **extra))
        with pytest.raises(json.JSONDecodeError):
            json.loads(sse_data(chunks)[-1] if extra else b"".join(chunks))
    _, _, chunks = raw(
        fake_upstream,
        "/v1/messages",
        {"model": "c", "max_tokens": 9, "stream": True, "messages": user("x #fake:malformed=1")},
    )
    assert "message_stop" not in b"".join(chunks).decode()


# ---------------------------------------------------------------- control endpoints and process


def test_requests_are_recorded_and_cleared(
    fake_upstream: str, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    control(fake_upstream, "/_fake/requests", "DELETE")
    oai.chat.completions.create(model="m", messages=user("rec"))
    claude.messages.create(model="c", max_tokens=5, messages=user("rec"))
    first, second = control(fake_upstream, "/_fake/requests")
    assert (first["method"], first["path"], first["body"]["messages"][0]["content"]) == (
        "POST",
        "/v1/chat/completions",
        "rec",
    )
    assert first["headers"]["authorization"] == "Bearer x" and second["path"] == "/v1/messages"
    assert "anthropic-version" in second["headers"] and second["body"]["max_tokens"] == 5
    control(fake_upstream, "/_fake/requests", "DELETE")
    assert control(fake_upstream, "/_fake/requests") == []


def test_stats_count_connections_requests_and_usage(fake_upstream: str) -> None:
    before = control(fake_upstream, "/_fake/stats")  # urllib opens one connection per call
    with openai.OpenAI(base_url=fake_upstream + "/v1", api_key="x", max_retries=0) as client:
        for _ in range(3):  # one keep-alive connection
            client.chat.completions.create(model="m", messages=user("a b"))
    after = control(fake_upstream, "/_fake/stats")
    assert after["connections"] - before["connections"] == 2
    assert after["requests"] - before["requests"] == 3
    assert (
        after["output_tokens"] - before["output_tokens"],
        after["input_tokens"] - before["input_tokens"],
    ) == (9, 12)


def test_process_prints_url_and_exits_cleanly_on_sigterm() -> None:
    proc = start_process(["fake-upstream", "--port", "0"])
    assert control(proc.url, "/_fake/stats")["connections"] == 1
    assert proc.stop(signal.SIGTERM) == 0
    assert proc.text.count("fake-upstream listening on http://127.0.0.1:") == 1

"""The translation matrix (issue 3): the official openai SDK as the client, against each backend
format (OpenAI, Anthropic, Gemini upstreams, all served by the fake), plain and streamed, for every
kind of request a chat client makes. Each case asserts what the client sees (content, finish reason,
tool calls, usage), that the request log holds exactly the usage the upstream reported, and for some
cases what the upstream received."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import openai
import pytest

from aigateway.formats import anthropic as anthropic_codec

BACKENDS = ["openai", "anthropic", "gemini"]
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-20250514", "gemini": "gemini-2.0-flash"}
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
BACKEND = pytest.mark.parametrize("backend", BACKENDS)
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def tiny_png() -> bytes:
    """A valid 1x1 RGB PNG, built rather than pasted so its byte count is not a magic number."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
            + chunk(b"IEND", b""))


PNG = tiny_png()


@dataclass
class Seen:
    """What the client saw, the same shape whether the answer was streamed or not."""

    content: str | None
    finish: str | None
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    usage: Any = None
    chunks: int = 0
    model: str = ""


def collect(resp: Any, stream: bool) -> Seen:
    """A completion, or a stream reassembled by hand the way OpenAI's docs describe."""
    if not stream:
        choice = resp.choices[0]
        calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return Seen(choice.message.content, choice.finish_reason, calls, resp.usage, model=resp.model)
    content, finish, usage, chunks = None, None, None, 0
    calls: dict[int, list[str]] = {}
    ids, models = set(), set()
    for chunk in resp:
        chunks += 1
        ids.add(chunk.id)
        models.add(chunk.model)
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                content = (content or "") + delta.content
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, ["", "", ""])
                entry[0] = call.id or entry[0]
                entry[1] += call.function.name or "" if call.function else ""
                entry[2] += call.function.arguments or "" if call.function else ""
            finish = choice.finish_reason or finish
    assert len(ids) == 1 and len(models) == 1, "every chunk repeats the same id and model"
    return Seen(content, finish, [tuple(calls[i]) for i in sorted(calls)], usage, chunks, models.pop())


@dataclass
class Backend:
    """One gateway client whose provider speaks one upstream format."""

    name: str
    client_name: str
    client: openai.OpenAI
    gateway: Any
    upstream: str

    def stats(self) -> tuple[int, int]:
        stats = httpx.get(self.upstream + "/_fake/stats").json()
        return stats["input_tokens"], stats["output_tokens"]

    def create(self, stream: bool, **kwargs: Any) -> Any:
        if stream:
            kwargs.update(stream=True, stream_options={"include_usage": True})
        return self.client.chat.completions.create(model=MODELS[self.name], **kwargs)

    def chat(self, stream: bool, **kwargs: Any) -> Seen:
        """One successful request; also checks the usage the client saw is the usage the upstream
        reported (the fake's delivered-token counters) and what the request log recorded."""
        before, rows = self.stats(), len(self.gateway.log_rows(self.client_name))
        seen = collect(self.create(stream, **kwargs), stream)
        after = self.stats()
        reported = (after[0] - before[0], after[1] - before[1])
        assert seen.usage is not None, "the client saw no usage"
        assert (seen.usage.prompt_tokens, seen.usage.completion_tokens) == reported
        assert seen.usage.total_tokens == sum(reported)
        row = self.gateway.wait_log_rows(self.client_name, rows + 1)[-1]
        assert (row["status"], row["stream"], row["estimated"], row["error"]) == (200, int(stream), 0, "")
        assert (row["input_tokens"], row["output_tokens"]) == reported
        assert row["provider"] == f"fake-{self.name}" and row["model"] == MODELS[self.name]
        assert seen.model == MODELS[self.name]
        return seen


@pytest.fixture(scope="module")
def backends(gateway, fake_upstream: str) -> dict[str, Backend]:
    """One client per backend for the whole module (creating clients is the slow part)."""
    out = {}
    for name in BACKENDS:
        client_name = f"matrix-{name}"
        key = gateway.add_client(client_name, provider=f"fake-{name}")
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)
        out[name] = Backend(name, client_name, sdk, gateway, fake_upstream)
    return out


@pytest.fixture
def sent(fake_requests) -> Iterator[Any]:
    """Returns the last chat request the fake upstream received (its path, query, headers and body)."""
    def last() -> dict:
        chats = [r for r in fake_requests() if r["method"] == "POST" and "_fake" not in r["path"]]
        assert chats, "the upstream received no chat request"
        return chats[-1]
    yield last


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- the matrix


@BACKEND
@STREAM
def test_plain_text(backends, sent, backend, stream):
    seen = backends[backend].chat(stream, messages=user("Hello matrix world"))
    assert seen.content == "Echo: Hello matrix world"
    assert seen.finish == "stop" and seen.tool_calls == []
    assert seen.usage.completion_tokens == 4  # "Echo: " "Hello " "matrix " "world"
    if stream:
        assert seen.chunks >= 4 + 2  # token by token, then finish and usage chunks
    request = sent()
    if backend == "openai":
        assert request["path"] == "/v1/chat/completions"
    elif backend == "anthropic":
        assert request["path"] == "/v1/messages"
        assert request["body"]["max_tokens"] > 0  # required by Anthropic, although the client set none
        assert bool(request["body"].get("stream")) is stream
    else:
        action = "streamGenerateContent" if stream else "generateContent"
        assert request["path"] == f"/v1beta/models/gemini-2.0-flash:{action}"
        assert request["query"] == ({"alt": "sse"} if stream else {})


@BACKEND
@STREAM
def test_system_prompt(backends, sent, backend, stream):
    messages = [{"role": "system", "content": "You are terse."}, *user("hi there")]
    seen = backends[backend].chat(stream, messages=messages)
    assert seen.content == "[system: You are terse.] Echo: hi there"
    assert seen.finish == "stop"
    body = sent()["body"]
    if backend == "openai":
        assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    elif backend == "anthropic":
        assert body["system"] == "You are terse."
        assert [m["role"] for m in body["messages"]] == ["user"]  # no system role in messages
    else:
        assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
        assert [c["role"] for c in body["contents"]] == ["user"]


@BACKEND
def test_client_system_prompt_goes_first(gateway, fake_upstream, sent, backend):
    """The client's configured system prompt is prepended to the request's own, in every format."""
    name = f"matrix-policy-{backend}"
    key = gateway.add_client(name, provider=f"fake-{backend}", system_prompt="Answer in French.")
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30)
    b = Backend(backend, name, sdk, gateway, fake_upstream)
    seen = b.chat(False, messages=[{"role": "system", "content": "You are terse."}, *user("hi")])
    assert seen.content.startswith("[system: Answer in French.") and seen.content.endswith("You are terse.] Echo: hi")
    body = sent()["body"]
    if backend == "openai":
        assert [m["content"] for m in body["messages"][:2]] == ["Answer in French.", "You are terse."]
    elif backend == "anthropic":
        assert body["system"] == "Answer in French.\n\nYou are terse."
    else:
        assert body["systemInstruction"]["parts"] == [{"text": "Answer in French."}, {"text": "You are terse."}]


@BACKEND
@STREAM
def test_multi_turn(backends, sent, backend, stream):
    messages = [*user("What is two plus two?"), {"role": "assistant", "content": "Four."},
                *user("And three plus three?")]
    seen = backends[backend].chat(stream, messages=messages)
    assert seen.content == "Echo: And three plus three?"
    assert seen.finish == "stop"
    body = sent()["body"]
    if backend == "gemini":
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert body["contents"][1]["parts"] == [{"text": "Four."}]
    else:
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    single = backends[backend].chat(False, messages=user("And three plus three?"))
    assert seen.usage.prompt_tokens > single.usage.prompt_tokens  # the history was sent and counted


@BACKEND
@STREAM
def test_image_input(backends, sent, backend, stream):
    data = base64.b64encode(PNG).decode()
    content = [{"type": "text", "text": "What is this?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}]
    seen = backends[backend].chat(stream, messages=[{"role": "user", "content": content}])
    assert seen.content == f"Echo: What is this? [image: image/png, {len(PNG)} bytes]"
    assert seen.finish == "stop"
    parts = sent()["body"]
    if backend == "anthropic":
        block = parts["messages"][0]["content"][1]
        assert block == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    elif backend == "gemini":
        assert parts["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": data}}


@BACKEND
@STREAM
def test_tool_call_round_trip(backends, sent, backend, stream):
    b = backends[backend]
    messages = user("What is the weather in Oslo?")
    first = b.chat(stream, messages=messages, tools=WEATHER)
    assert first.finish == "tool_calls"
    assert not first.content
    assert len(first.tool_calls) == 1
    call_id, name, arguments = first.tool_calls[0]
    assert name == "get_weather" and json.loads(arguments) == {"city": "Oslo"}
    assert call_id
    body = sent()["body"]
    if backend == "anthropic":
        assert body["tools"] == [{"name": "get_weather", "description": "Current weather in a city",
                                  "input_schema": WEATHER[0]["function"]["parameters"]}]
    elif backend == "gemini":
        declaration = body["tools"][0]["functionDeclarations"][0]
        assert declaration["name"] == "get_weather"
        assert declaration["parameters"]["properties"]["city"]["type"].upper() == "STRING"

    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
                 {"role": "tool", "tool_call_id": call_id, "content": "4C and cloudy"}]
    second = b.chat(stream, messages=messages, tools=WEATHER)
    assert second.finish == "stop" and second.tool_calls == []
    assert second.content.startswith("Tool get_weather returned: ") and "4C and cloudy" in second.content
    body = sent()["body"]
    if backend == "anthropic":
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        use, result = body["messages"][1]["content"][0], body["messages"][2]["content"][0]
        assert use["type"] == "tool_use" and use["input"] == {"city": "Oslo"}
        assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
    elif backend == "gemini":
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert body["contents"][1]["parts"][0]["functionCall"] == {"name": "get_weather", "args": {"city": "Oslo"}}
        assert body["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"


@BACKEND
@STREAM
def test_forced_tool_choice(backends, sent, backend, stream):
    tools = [*WEATHER, {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}}}}]
    choice = {"type": "function", "function": {"name": "get_time"}}
    seen = backends[backend].chat(stream, messages=user("Weather?"), tools=tools, tool_choice=choice)
    assert seen.finish == "tool_calls"
    assert [(name, json.loads(args)) for _, name, args in seen.tool_calls] == [("get_time", {"zone": "UTC"})]
    body = sent()["body"]
    if backend == "anthropic":
        assert body["tool_choice"] == {"type": "tool", "name": "get_time"}
    elif backend == "gemini":
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}


@BACKEND
@STREAM
def test_json_mode(backends, sent, backend, stream):
    seen = backends[backend].chat(stream, messages=user("give me json"), response_format={"type": "json_object"})
    assert seen.finish == "stop"
    body = sent()["body"]
    if backend != "anthropic":
        assert json.loads(seen.content) == {"echo": "give me json"}
        if backend == "gemini":
            assert body["generationConfig"]["responseMimeType"] == "application/json"
        return
    # Anthropic has no schema-less JSON mode: output_config.format needs a strict schema (every object
    # additionalProperties: false) and a 4.5+ model, so the gateway instructs the model instead. A real
    # model answers that with JSON; the fake only echoes, so what is checked here is that the
    # instruction went up and the model's answer came back untouched.
    assert body["system"] == anthropic_codec.JSON_INSTRUCTION and "output_config" not in body
    assert seen.content == f"[system: {anthropic_codec.JSON_INSTRUCTION}] Echo: give me json"


@BACKEND
@STREAM
def test_json_schema(backends, sent, backend, stream):
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"],
              "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "echo", "schema": schema, "strict": True}}
    seen = backends[backend].chat(stream, messages=user("structured please"), response_format=response_format)
    assert json.loads(seen.content) == {"echo": "structured please"}
    assert seen.finish == "stop"
    body = sent()["body"]
    if backend == "anthropic":
        assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    elif backend == "gemini":
        config = body["generationConfig"]
        assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == schema


@BACKEND
@STREAM
def test_max_tokens_stop(backends, sent, backend, stream):
    seen = backends[backend].chat(stream, messages=user("one two three four five six"), max_tokens=3)
    assert seen.finish == "length"
    assert seen.usage.completion_tokens == 3
    assert seen.content == "Echo: one two "
    body = sent()["body"]
    if backend == "anthropic":
        assert body["max_tokens"] == 3
    elif backend == "gemini":
        assert body["generationConfig"]["maxOutputTokens"] == 3


@BACKEND
@STREAM
def test_upstream_error(backends, backend, stream):
    b = backends[backend]
    rows = len(b.gateway.log_rows(b.client_name))
    with pytest.raises(openai.RateLimitError) as info:
        collect(b.create(stream, messages=user("hi #fake:status=429")), stream)
    assert info.value.status_code == 429
    assert info.value.body["message"] == "Rate limit reached. Please try again later."
    row = b.gateway.wait_log_rows(b.client_name, rows + 1)[-1]
    assert row["status"] == 429 and row["input_tokens"] == row["output_tokens"] == 0


# ---------------------------------------------------------------- errors in detail


ERRORS = [(backend, status) for backend in BACKENDS for status in (429, 500, 503)] + [("anthropic", 529)]
MESSAGES = {429: "Rate limit reached. Please try again later.", 500: "Fake error 500", 503: "Fake error 503",
            529: "Overloaded"}


@pytest.mark.parametrize(("backend", "status"), ERRORS)
def test_upstream_status_becomes_sdk_exception(backends, backend, status):
    """Upstream error statuses reach the openai SDK as the matching exception with the upstream's
    message. Anthropic's 529 is Anthropic-only: OpenAI clients get the standard 503."""
    with pytest.raises(openai.APIStatusError) as info:
        backends[backend].create(False, messages=user(f"hi #fake:status={status}"))
    expected = {429: openai.RateLimitError}.get(status, openai.InternalServerError)
    assert type(info.value) is expected
    assert info.value.status_code == (503 if status == 529 else status)
    assert info.value.body["message"] == MESSAGES[status]
    assert info.value.body["type"] in ("rate_limit_exceeded", "server_error")


@BACKEND
def test_upstream_retry_delay_reaches_the_client(backends, backend):
    """The upstream's delay (a header, or Gemini's RetryInfo in the body) becomes ``retry-after``."""
    with pytest.raises(openai.RateLimitError) as info:
        backends[backend].create(False, messages=user("hi #fake:status=429 #fake:retry_after=7"))
    assert info.value.response.headers["retry-after"] == "7"


STREAM_ERRORS = {"openai": "The server had an error while processing your request.", "anthropic": "Overloaded",
                 "gemini": "An internal error has occurred. Please retry or report."}


@BACKEND
def test_stream_failure_after_content_raises_api_error(backends, backend):
    b = backends[backend]
    rows = len(b.gateway.log_rows(b.client_name))
    stream = b.create(True, messages=user("one two three four five #fake:fail_after=2"))
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received += [c.delta.content for c in chunk.choices if c.delta.content]
    assert "".join(received) == "Echo: one "  # two content chunks arrived before the failure
    assert info.value.message == STREAM_ERRORS[backend]
    row = b.gateway.wait_log_rows(b.client_name, rows + 1)[-1]
    assert row["status"] >= 500 and row["error"] == STREAM_ERRORS[backend]


@BACKEND
def test_stream_the_sdk_leaves_at_done_is_logged_as_a_success(backends, backend):
    """openai-python hangs up at ``[DONE]``; on the same-format fast path that frame is relayed while
    the upstream's response is still open. A complete, accounted answer is a 200, not a 499."""
    b = backends[backend]
    seen = b.chat(True, messages=user("done early #fake:linger=1"))
    assert seen.content == "Echo: done early" and seen.finish == "stop"


@BACKEND
def test_stream_failure_the_sdk_leaves_at_is_logged_with_its_cause(backends, backend):
    """openai-python raises, and hangs up, at the in-band error event: the log keeps the upstream's
    failure, not "client closed the connection"."""
    b = backends[backend]
    rows = len(b.gateway.log_rows(b.client_name))
    with pytest.raises(openai.APIError):
        list(b.create(True, messages=user("one two three #fake:fail_after=1 #fake:linger=1")))
    row = b.gateway.wait_log_rows(b.client_name, rows + 1)[-1]
    assert row["status"] >= 500 and row["error"] == STREAM_ERRORS[backend]


@BACKEND
def test_stream_without_include_usage_is_still_accounted_exactly(backends, backend):
    """No usage chunk for a client that did not ask, yet the log holds the upstream's own numbers."""
    b = backends[backend]
    before, rows = b.stats(), len(b.gateway.log_rows(b.client_name))
    chunks = list(b.client.chat.completions.create(model=MODELS[backend], messages=user("count me in"),
                                                   stream=True))
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    after = b.stats()
    row = b.gateway.wait_log_rows(b.client_name, rows + 1)[-1]
    assert (row["input_tokens"], row["output_tokens"]) == (after[0] - before[0], after[1] - before[1])
    assert row["output_tokens"] == 4 and row["estimated"] == 0


# ---------------------------------------------------------------- streaming details


@BACKEND
def test_streamed_tool_arguments_reassemble_as_json(backends, backend):
    """The SDK's own stream helper reassembles the argument fragments into valid JSON."""
    tools = [{"type": "function", "function": {"name": "book_trip", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "nights": {"type": "integer"},
                                         "window_seat": {"type": "boolean"}, "note": {"type": "string"}},
        "required": ["city", "nights"]}}}]
    with backends[backend].client.chat.completions.stream(
            model=MODELS[backend], messages=user("Book a trip"), tools=tools) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    expected = {"city": "Oslo", "nights": 1, "window_seat": True, "note": "test"}
    assert [(e.name, json.loads(e.arguments)) for e in done] == [("book_trip", expected)]
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "book_trip" and json.loads(call.function.arguments) == expected


@BACKEND
def test_multibyte_utf8_split_across_upstream_chunks(backends, backend):
    text = "héllo wörld 🌍 日本語"
    seen = backends[backend].chat(True, messages=user(f"{text} #fake:utf8split=1"))
    assert seen.content == f"Echo: {text}"
    assert "\ufffd" not in seen.content
    assert seen.finish == "stop"


@BACKEND
def test_utf8_intact_without_streaming(backends, backend):
    text = "héllo wörld 🌍 日本語"
    seen = backends[backend].chat(False, messages=user(f"{text} #fake:utf8split=1"))
    assert seen.content == f"Echo: {text}"

"""The Responses API inbound (``POST /v1/responses``) with the official openai SDK, unmodified,
against every backend type: chat completions (translated), a Responses upstream (passed through),
Anthropic and Gemini (translated). Plain, streamed, and function-tool round trips; errors in
OpenAI's shape; the request log and limits as for every other route."""

from __future__ import annotations

import re

import httpx2 as httpx
import openai
import pytest
from conftest import GatewayServer

BACKENDS = ("openai", "responses", "anthropic", "gemini")
MODELS = {"openai": "gpt-4o", "responses": "gpt-4o", "anthropic": "claude-sonnet-4-20250514",
          "gemini": "gemini-2.0-flash"}
SYSTEM = "Be brief."
PREFIX = f"[system: {SYSTEM}] "
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": False}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather", "parameters": WEATHER,
          "strict": False}]


def tokens(text: str) -> int:
    """The fake's tokenizer: a word plus its trailing whitespace."""
    return len(re.findall(r"\S+\s*", text))


@pytest.fixture(scope="module")
def server(gateway: GatewayServer) -> GatewayServer:
    return gateway  # its fake-responses provider speaks the Responses API upstream


@pytest.fixture(scope="module")
def keys(server: GatewayServer) -> dict[str, str]:
    return {b: server.add_client(f"responses-{b}", provider=f"fake-{b}", system_prompt=SYSTEM) for b in BACKENDS}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def oai(server: GatewayServer, keys: dict[str, str], backend: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=keys[backend], max_retries=0)


def last_row(server: GatewayServer, backend: str, count: int) -> dict:
    return server.wait_log_rows(f"responses-{backend}", count)[-1]


def test_plain(server, oai, backend):
    before = len(server.log_rows(f"responses-{backend}"))
    resp = oai.responses.create(model=MODELS[backend], input="hello there")
    expected = PREFIX + "Echo: hello there"
    assert resp.output_text == expected and resp.status == "completed" and resp.object == "response"
    assert resp.id.startswith("resp") and [item.type for item in resp.output] == ["message"]
    assert resp.usage.output_tokens == tokens(expected) and resp.usage.input_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    row = last_row(server, backend, before + 1)
    assert (row["status"], row["inbound"], row["provider"]) == (200, "responses", f"fake-{backend}")
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (
        resp.usage.input_tokens, resp.usage.output_tokens, 0)


def test_stream_with_the_sdk_helper(server, oai, backend):
    before = len(server.log_rows(f"responses-{backend}"))
    with oai.responses.stream(model=MODELS[backend], input="one two three") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    expected = PREFIX + "Echo: one two three"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == tokens(expected)  # token by token
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
                 "response.content_part.done", "response.output_item.done"):
        assert kind in kinds, kinds
    assert final.output_text == expected and final.usage.output_tokens == tokens(expected)
    row = last_row(server, backend, before + 1)
    assert (row["status"], row["stream"], row["output_tokens"]) == (200, 1, tokens(expected))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_function_tool_round_trip(oai, backend, stream):
    history: list = [{"role": "user", "content": "What is the weather in Oslo?"}]

    def create(items: list) -> openai.types.responses.Response:
        if not stream:
            return oai.responses.create(model=MODELS[backend], input=items, tools=TOOLS)
        with oai.responses.stream(model=MODELS[backend], input=items, tools=TOOLS) as s:
            return s.get_final_response()

    first = create(history)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    assert calls[0].arguments.replace(" ", "") == '{"city":"Oslo"}'
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"})
    second = create(history)
    # Gemini takes a tool result as an object: the gateway wraps text as {"result": ...}
    result = '{"result":"sunny, 21 C"}' if backend == "gemini" else "sunny, 21 C"
    assert second.output_text == PREFIX + "Tool get_weather returned: " + result


def test_namespaced_tools_come_back_with_their_namespace(oai, backend):
    tools = [{"type": "namespace", "name": "files", "description": "file tools",
              "tools": [{"type": "function", "name": "read", "parameters": {
                  "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]},
             {"type": "web_search", "external_web_access": False}]
    resp = oai.responses.create(model=MODELS[backend], input="read it", tools=tools)
    call = next(item for item in resp.output if item.type == "function_call")
    assert (call.name, getattr(call, "namespace", None)) == ("read", "files"), call


def test_instructions_and_developer_messages_are_system_text(oai, backend):
    resp = oai.responses.create(model=MODELS[backend], instructions="Answer in English.", input=[
        {"role": "developer", "content": "You are a coding agent."},
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}])
    assert resp.output_text.endswith("Echo: hi")
    for text in (SYSTEM, "Answer in English.", "You are a coding agent."):
        assert text in resp.output_text, resp.output_text


def test_max_output_tokens_ends_incomplete(oai, backend):
    resp = oai.responses.create(model=MODELS[backend], input="a b c d e f g h i j k l m n o p q r s t u v w x y z",
                                max_output_tokens=16)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.usage.output_tokens == 16


def test_an_upstream_failure_mid_stream_ends_in_response_failed(server, keys, backend):
    body = {"model": MODELS[backend], "input": "one two three four five #fake:fail_after=2", "stream": True}
    r = httpx.post(server.url + "/v1/responses", json=body, headers={"Authorization": f"Bearer {keys[backend]}"},
                   timeout=30)
    events = re.findall(r"^event: (\S+)", r.text, re.M)
    assert r.status_code == 200 and events[0] == "response.created", r.text[:500]
    assert events[-1] == "response.failed" and "response.completed" not in events, events


def test_bad_input_is_a_400_in_openai_shape_and_charges_nothing(server, oai, backend):
    before = server.log_rows(f"responses-{backend}")
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model=MODELS[backend], input=[{"role": "wizard", "content": "hi"}])
    assert caught.value.status_code == 400 and "role" in caught.value.message
    rows = server.wait_log_rows(f"responses-{backend}", len(before) + 1)[len(before):]
    assert [(r["status"], r["admitted"], r["input_tokens"], r["output_tokens"]) for r in rows] == [(400, 0, 0, 0)]


def test_limits_apply_as_on_every_route(gateway):
    key = gateway.add_client("responses-limited", provider="fake-openai", rpm=1)
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    assert oai.responses.create(model="gpt-4o", input="hi").status == "completed"
    with pytest.raises(openai.RateLimitError) as limited:
        oai.responses.create(model="gpt-4o", input="again")
    assert "requests-per-minute" in limited.value.message and "resets in" in limited.value.message
    assert limited.value.response.headers["retry-after"]


def test_consecutive_streamed_calls_are_items_of_their_own():
    """Two tool calls in a row (OpenAI parallel calls, Gemini's functionCall parts): each is its own
    output item with its own id, as the SDK's stream helper and Codex expect."""
    import json

    from aigateway import neutral
    from aigateway.formats import responses

    req = neutral.ChatRequest(model="m", messages=[], stream=True)
    enc = responses.StreamEncoder(req, neutral.Route())
    events = [neutral.Start("chatcmpl-abc", "m", 0), neutral.ToolCallStart(0, "call_a", "f"),
              neutral.ToolCallDelta(0, "{}"), neutral.ToolCallStart(1, "call_b", "g"), neutral.ToolCallDelta(1, "{}"),
              neutral.Finish(neutral.FinishReason.TOOL_CALLS)]
    body = b"".join(enc.encode(e) for e in events) + enc.close()
    data = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    added = [d["item"]["id"] for d in data if d["type"] == "response.output_item.added"]
    final = next(d for d in data if d["type"] == "response.completed")["response"]["output"]
    assert len(set(added)) == 2 and [i["id"] for i in final] == added and [i["call_id"] for i in final] == [
        "call_a", "call_b"]


def test_a_refusal_is_a_refusal_part_of_a_completed_response():
    """A refusal from any upstream (neutral refusal text ending content_filter) reaches a Responses
    client as OpenAI sends one: a ``refusal`` content part, ``response.refusal.*`` events, status
    completed; decoding it back gives the refusal again (a Responses upstream's refusal)."""
    import json

    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    from aigateway import neutral
    from aigateway.formats import responses

    req = neutral.ChatRequest(model="m", messages=[], stream=True)
    enc = responses.StreamEncoder(req, neutral.Route())
    events = [neutral.Start("resp_1", "m", 0), neutral.TextDelta("I can't ", True), neutral.TextDelta("help.", True),
              neutral.Finish(neutral.FinishReason.CONTENT_FILTER)]
    body = b"".join(enc.encode(e) for e in events) + enc.close()
    data = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    for d in data:
        TypeAdapter(ResponseStreamEvent).validate_python(d)
    kinds = [d["type"] for d in data]
    assert kinds.count("response.refusal.delta") == 2 and "response.output_text.delta" not in kinds
    assert next(d for d in data if d["type"] == "response.refusal.done")["refusal"] == "I can't help."
    final = Response.model_validate(data[-1]["response"])
    assert data[-1]["type"] == "response.completed" and final.status == "completed"
    assert [(p.type, getattr(p, "refusal", None)) for p in final.output[0].content] == [("refusal", "I can't help.")]

    decoder = responses.StreamDecoder()
    decoded = [e for e in decoder.feed(body) if not isinstance(e, neutral.Start)]
    assert decoded == [neutral.TextDelta("I can't ", True), neutral.TextDelta("help.", True),
                       neutral.Finish(neutral.FinishReason.CONTENT_FILTER)]

    resp = neutral.ChatResponse("resp_1", "m", 0, [neutral.TextPart("I can't help.", True)],
                                neutral.FinishReason.CONTENT_FILTER)
    plain = responses.encode_response(resp, req)
    assert Response.model_validate(plain).status == "completed"
    assert plain["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help."}]
    again = responses.decode_response(plain)
    assert again.parts == resp.parts and again.finish is neutral.FinishReason.CONTENT_FILTER

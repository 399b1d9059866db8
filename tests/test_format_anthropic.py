"""The Anthropic Messages codec: pure tests, no network. Where the official ``anthropic`` SDK can be
the judge (its request bodies, its stream accumulator, its response and error types) it is: the SDK
talks to the codec through an in-memory ``MockTransport``."""

from __future__ import annotations

import copy
import random

import anthropic
import httpx2
import orjson
import pytest
from pydantic import TypeAdapter

from aigateway.formats import anthropic as fmt
from aigateway.formats.framing import SSEDecoder, SSEFrame
from aigateway.neutral import (
    ChatRequest,
    ChatResponse,
    ErrorKind,
    Finish,
    FinishReason,
    GatewayError,
    ImagePart,
    Message,
    Params,
    Policy,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormat,
    Route,
    Start,
    StreamError,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageReport,
    fold,
)

ROUTE = Route()
POLICY = Policy("claude-x")
STREAM_EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)


def encode(req: ChatRequest) -> dict:
    path, body = fmt.encode_request(req, POLICY)
    assert path == "/v1/messages"
    return body


def user(*parts) -> Message:
    return Message("user", list(parts))


def assistant(*parts) -> Message:
    return Message("assistant", list(parts))


def sdk_client(handler) -> anthropic.Anthropic:
    """An Anthropic SDK client whose HTTP goes to ``handler`` (request -> response), in memory."""
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(api_key="k", base_url="http://gw", max_retries=0,
                               http_client=httpx2.Client(transport=transport))


def sse_response(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)


# ---------------------------------------------------------------- encode_request (gateway -> Anthropic)


def test_encode_minimal_request_fills_max_tokens_and_joins_system():
    body = encode(ChatRequest("claude-x", [user(TextPart("hi"))], system=["A", "", "B"]))
    assert body == {"model": "claude-x", "system": "A\n\nB", "max_tokens": fmt.DEFAULT_MAX_TOKENS,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def test_encode_merges_turns_puts_tool_results_first_and_prepends_user_turn():
    req = ChatRequest("m", [
        assistant(TextPart("Earlier answer")),
        assistant(ToolCallPart("call_1", "f", '{"a": 1}'), ToolCallPart("call_2", "g", "")),
        user(TextPart("and also")),
        user(ToolResultPart("call_1", "one"), ToolResultPart("call_2", "", is_error=True)),
        user(TextPart("   ")),
    ])
    messages = encode(req)["messages"]
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": fmt.CONTINUE_TEXT}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Earlier answer"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "call_2", "name": "g", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
            {"type": "tool_result", "tool_use_id": "call_2", "is_error": True},
            {"type": "text", "text": "and also"}]},
    ]


@pytest.mark.parametrize("arguments", ["", "not json", "[1, 2]", '"text"', "{"])
def test_encode_tool_arguments_that_are_not_an_object_become_empty_input(arguments):
    req = ChatRequest("m", [user(TextPart("q")), assistant(ToolCallPart("toolu_1", "f", arguments))])
    assert encode(req)["messages"][1]["content"][0]["input"] == {}


def test_encode_maps_foreign_tool_ids_consistently():
    req = ChatRequest("m", [user(TextPart("q")), assistant(ToolCallPart("call/a+b=", "f", "{}")),
                            user(ToolResultPart("call/a+b=", "ok"))])
    messages = encode(req)["messages"]
    assert messages[1]["content"][0]["id"] == messages[2]["content"][0]["tool_use_id"] == "call_a_b_"


def test_encode_images_and_pdf():
    req = ChatRequest("m", [user(ImagePart(media_type="image/jpeg", data="AAA"), ImagePart(url="https://x/c.png"),
                                 ImagePart(media_type="image/png"),
                                 ImagePart(media_type="application/pdf", data="JVB"), TextPart("what?"))])
    assert encode(req)["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/c.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVB"}},
        {"type": "text", "text": "what?"},
    ]


def test_encode_reasoning_signed_first_unsigned_dropped():
    req = ChatRequest("m", [
        user(ReasoningPart("user side", "sig"), TextPart("q")),
        assistant(TextPart("Let me look."), ReasoningPart("plain, unsigned"), ReasoningPart("deep", "sig1"),
                  ToolResultPart("misplaced", "x"),
                  ReasoningPart(redacted="opaque"), ToolCallPart("toolu_1", "f", "{}")),
        user(ToolResultPart("toolu_1", "done")),
    ])
    messages = encode(req)["messages"]
    assert messages[0]["content"] == [{"type": "text", "text": "q"}]
    assert messages[1]["content"] == [
        {"type": "thinking", "thinking": "deep", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    ]


def test_encode_prefill_loses_trailing_whitespace():
    req = ChatRequest("m", [user(TextPart("q")), assistant(TextPart("The answer is "))])
    assert encode(req)["messages"][-1]["content"] == [{"type": "text", "text": "The answer is"}]


def test_encode_without_messages_still_sends_a_user_turn():
    assert encode(ChatRequest("m", [], system=["s"]))["messages"][0]["role"] == "user"


def test_encode_sampling_parameters():
    params = Params(max_tokens=100, temperature=1.5, top_p=0.5, top_k=20, stop=["\n", "END", " "], seed=3,
                    presence_penalty=1.0, frequency_penalty=1.0, user="u-1", n=1)
    body = encode(ChatRequest("m", [user(TextPart("q"))], params=params, stream=True))
    assert body["temperature"] == 1.0 and "top_p" not in body  # clamped; never both
    assert body["top_k"] == 20 and body["max_tokens"] == 100
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"} and body["stream"] is True
    assert not {"seed", "presence_penalty", "frequency_penalty", "n", "user"} & body.keys()
    body = encode(ChatRequest("m", [user(TextPart("q"))], params=Params(top_p=0.3, stop=["  "])))
    assert body["top_p"] == 0.3 and "temperature" not in body and "stop_sequences" not in body


def test_encode_rejects_several_choices():
    with pytest.raises(GatewayError) as info:
        encode(ChatRequest("m", [user(TextPart("q"))], params=Params(n=2)))
    assert info.value.status == 400 and "n > 1" in info.value.message


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    (None, None, None),
    (ToolChoice("auto"), None, {"type": "auto"}),
    (ToolChoice("none"), None, {"type": "none"}),
    (ToolChoice("required"), None, {"type": "any"}),
    (ToolChoice("tool", "f"), None, {"type": "tool", "name": "f"}),
    (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (ToolChoice("none"), False, {"type": "none"}),
    (None, True, None),
])
def test_encode_tools_and_tool_choice(choice, parallel, expected):
    tools = [Tool("f", "Does f", {"type": "object", "properties": {"a": {"type": "string"}}}), Tool("g")]
    body = encode(ChatRequest("m", [user(TextPart("q"))], tools=tools, tool_choice=choice,
                              parallel_tool_calls=parallel))
    assert body["tools"] == [
        {"name": "f", "description": "Does f",
         "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        {"name": "g", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body.get("tool_choice") == expected


def test_encode_tool_choice_without_tools_is_dropped():
    req = ChatRequest("m", [user(TextPart("q"))], tool_choice=ToolChoice("auto"))
    assert "tool_choice" not in encode(req)


def test_encode_response_formats():
    q = [user(TextPart("q"))]
    body = encode(ChatRequest("m", q, system=["S"], response_format=ResponseFormat("json_object")))
    assert body["system"] == "S\n\n" + fmt.JSON_INSTRUCTION and "output_config" not in body
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    body = encode(ChatRequest("m", q, response_format=ResponseFormat("json_schema", schema)))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in body
    assert "output_config" not in encode(ChatRequest("m", q, response_format=ResponseFormat("text")))


@pytest.mark.parametrize(("params", "thinking", "max_tokens"), [
    (Params(reasoning_effort="low"), 1024, 1024 + fmt.DEFAULT_MAX_TOKENS),
    (Params(reasoning_effort="medium"), 4096, 4096 + fmt.DEFAULT_MAX_TOKENS),
    (Params(reasoning_effort="high"), 16384, 16384 + fmt.DEFAULT_MAX_TOKENS),
    (Params(reasoning_effort="none"), None, fmt.DEFAULT_MAX_TOKENS),
    (Params(reasoning_budget=2000, max_tokens=8000), 2000, 8000),
    (Params(reasoning_budget=300, max_tokens=8000), 1024, 8000),  # Anthropic's minimum budget
    (Params(reasoning_budget=0), None, fmt.DEFAULT_MAX_TOKENS),  # Gemini's "off"
    (Params(reasoning_effort="high", max_tokens=5000), 4999, 5000),  # the client's cap wins
    (Params(reasoning_effort="high", max_tokens=1000), None, 1000),  # no room for the minimum budget
])
def test_encode_thinking_budget_stays_below_max_tokens(params, thinking, max_tokens):
    params.temperature, params.top_k = 0.2, 5
    body = encode(ChatRequest("m", [user(TextPart("q"))], params=params))
    assert body["max_tokens"] == max_tokens
    assert body.get("thinking") == (thinking and {"type": "enabled", "budget_tokens": thinking})
    if thinking:  # thinking rejects temperature / top_k changes
        assert "temperature" not in body and "top_k" not in body
    else:
        assert body["temperature"] == 0.2 and body["top_k"] == 5


def test_encode_forced_tool_use_wins_over_thinking():
    req = ChatRequest("m", [user(TextPart("q"))], params=Params(reasoning_effort="high"), tools=[Tool("f")],
                      tool_choice=ToolChoice("tool", "f"))
    body = encode(req)
    assert "thinking" not in body and body["tool_choice"] == {"type": "tool", "name": "f"}


def test_encoded_request_is_accepted_by_sdk_types():
    """Every block we emit is a valid ``MessageParam`` according to the SDK's own types."""
    req = ChatRequest("m", [
        user(ImagePart(media_type="image/png", data="AA"), TextPart("q")),
        assistant(ReasoningPart("t", "s"), TextPart("a"), ToolCallPart("toolu_1", "f", '{"x": 1}')),
        user(ToolResultPart("toolu_1", "r", is_error=True)),
    ], tools=[Tool("f")], tool_choice=ToolChoice("auto"), parallel_tool_calls=False,
        params=Params(reasoning_effort="low", user="u"), response_format=ResponseFormat("json_schema", {}))
    body = encode(req)
    types = anthropic.types
    TypeAdapter(types.message_create_params.MessageCreateParamsNonStreaming).validate_python(body)
    for message in body["messages"]:
        for block in message["content"]:
            TypeAdapter(types.ContentBlockParam).validate_python(block)
    for name, param in [("tool_choice", types.ToolChoiceParam), ("thinking", types.ThinkingConfigParam),
                        ("output_config", types.OutputConfigParam), ("metadata", types.MetadataParam)]:
        TypeAdapter(param).validate_python(body[name])
    for tool in body["tools"]:
        TypeAdapter(types.ToolParam).validate_python(tool)


# ---------------------------------------------------------------- patch_request (same-format fast path)


@pytest.mark.parametrize(("system", "expected"), [
    (None, "POLICY"),
    ("", "POLICY"),
    ("client", "POLICY\n\nclient"),
    ([{"type": "text", "text": "client", "cache_control": {"type": "ephemeral"}}],
     [{"type": "text", "text": "POLICY"},
      {"type": "text", "text": "client", "cache_control": {"type": "ephemeral"}}]),
])
def test_patch_prepends_policy_system(system, expected):
    body = {"model": "alias", "max_tokens": 10, "messages": [], "future_field": {"x": 1}}
    if system is not None:
        body["system"] = system
    path, out = fmt.patch_request(body, Policy("claude-real", system="POLICY"), ROUTE)
    assert path == "/v1/messages" and out is body
    assert out["system"] == expected and out["model"] == "claude-real" and out["future_field"] == {"x": 1}


@pytest.mark.parametrize(("asked", "cap", "expected"), [
    (100, None, 100), (100, 50, 50), (10, 50, 10), (None, 50, 50), (None, None, fmt.DEFAULT_MAX_TOKENS),
])
def test_patch_clamps_and_fills_max_tokens(asked, cap, expected):
    body = {"messages": []} if asked is None else {"messages": [], "max_tokens": asked}
    assert fmt.patch_request(body, Policy("m", max_tokens=cap), ROUTE)[1]["max_tokens"] == expected
    assert "system" not in body


def test_patch_keeps_thinking_budget_below_the_clamped_cap():
    body = {"max_tokens": 20000, "thinking": {"type": "enabled", "budget_tokens": 16000}, "messages": []}
    fmt.patch_request(body, Policy("m", max_tokens=8000), ROUTE)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 7999}
    body = {"max_tokens": 20000, "thinking": {"type": "enabled", "budget_tokens": 16000}, "messages": []}
    fmt.patch_request(body, Policy("m", max_tokens=500), ROUTE)
    assert "thinking" not in body and body["max_tokens"] == 500


# ---------------------------------------------------------------- decode_request (Anthropic SDK -> gateway)


FULL_BODY = {
    "model": "claude-x",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}},
               {"type": "text", "text": "B"}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/cat.jpg"}},
            {"type": "document",
             "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "EqQB"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "is_error": True,
             "content": [{"type": "text", "text": "4C"}, {"type": "text", "text": "cloudy"}]},
            {"type": "text", "text": "thanks"},
        ]},
        {"role": "assistant", "content": "Prefill"},
    ],
    "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END"], "stream": True,
    "metadata": {"user_id": "u-9"},
    "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
              {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"},
    "service_tier": "auto", "container": "c-1",
}


def test_decode_full_request():
    req = fmt.decode_request(copy.deepcopy(FULL_BODY), ROUTE)
    assert req.model == "claude-x" and req.system == ["Be terse.", "B"] and req.stream and req.include_usage
    assert req.messages == [
        user(TextPart("Weather?"), ImagePart(media_type="image/png", data="iVBOR"), ImagePart(url="https://x/cat.jpg"),
             ImagePart(media_type="application/pdf", data="JVBE")),
        assistant(ReasoningPart("hmm", "EqQB"), ReasoningPart(redacted="xyz"), TextPart("Checking."),
                  ToolCallPart("toolu_01", "get_weather", '{"city":"Oslo"}')),
        user(ToolResultPart("toolu_01", "4C\ncloudy", is_error=True), TextPart("thanks")),
        assistant(TextPart("Prefill")),
    ]
    assert req.params == Params(max_tokens=1024, temperature=0.5, top_p=0.9, top_k=40, stop=["END"],
                                reasoning_effort="high", reasoning_budget=2048, user="u-9")
    assert req.tools == [Tool("get_weather", "Weather", {"type": "object"})]
    assert req.tool_choice == ToolChoice("required") and req.parallel_tool_calls is False
    assert req.response_format == ResponseFormat("json_schema", {"type": "object"})
    assert req.extra == {"service_tier": "auto", "container": "c-1"}


@pytest.mark.parametrize(("choice", "expected", "parallel"), [
    ({"type": "auto"}, ToolChoice("auto"), None),
    ({"type": "none"}, ToolChoice("none"), None),
    ({"type": "any", "disable_parallel_tool_use": False}, ToolChoice("required"), True),
    ({"type": "tool", "name": "f"}, ToolChoice("tool", "f"), None),
])
def test_decode_tool_choice(choice, expected, parallel):
    req = fmt.decode_request(with_message(tool_choice=choice), ROUTE)
    assert req.tool_choice == expected and req.parallel_tool_calls is parallel


def test_decode_simple_request():
    req = fmt.decode_request({"model": "m", "max_tokens": 5, "system": "S",
                              "messages": [{"role": "user", "content": "hello"}],
                              "thinking": {"type": "adaptive"}}, ROUTE)
    assert req.system == ["S"] and req.messages == [user(TextPart("hello"))] and not req.stream
    assert req.params.reasoning_budget is None and req.tools == [] and req.extra == {}


def with_message(**fields) -> dict:
    return {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **fields}


def with_blocks(*blocks, role: str = "user") -> dict:
    return {"max_tokens": 5, "messages": [{"role": role, "content": list(blocks)}]}


@pytest.mark.parametrize(("body", "message"), [
    ({"max_tokens": 5}, "messages: Field required"),
    ({"max_tokens": 5, "messages": []}, "messages"),
    ({"max_tokens": 5, "messages": "hi"}, "messages"),
    ({"max_tokens": 5, "messages": ["hi"]}, "messages.0"),
    ({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages.0"),
    ({"messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field required"),
    ({"max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"max_tokens": True, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [5]}]}, "messages.0.content.0"),
    (with_blocks({"type": "text"}), "text: Field required"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}, "text"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]}, "source"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]}]}, "data"),
    (with_blocks({"type": "tool_use", "name": "f"}, role="assistant"), "id"),
    ({"max_tokens": 5, "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]}, "input"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}, "tool_use_id"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": 3}]}]}, "content"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "system": 5}, "system"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    (with_message(stop_sequences=[1]), "stop_sequences"),
    (with_message(stop_sequences="END"), "stop_sequences"),
    (with_message(tool_choice={"type": "x"}), "tool_choice"),
    (with_message(tool_choice={"type": "tool"}), "name"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}, "tool_choice"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [1]}, "tools.0"),
    (with_message(tools=[{"input_schema": {}}]), "name"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "metadata": "u"}, "metadata"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled"}},
     "budget_tokens"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
])
def test_decode_rejects_malformed_requests(body, message):
    with pytest.raises(GatewayError) as info:
        fmt.decode_request(body, ROUTE)
    assert info.value.status == 400 and info.value.kind is ErrorKind.INVALID_REQUEST
    assert message in info.value.message


def test_decode_never_lets_a_python_exception_escape():
    """Replace every value in a full body, one at a time, with junk: a 400 or a request, nothing else."""
    junk = [None, 0, -1, 1.5, True, "", "x", [], [None], [1], {}, {"type": None}, {"type": "text"}]

    def paths(node, prefix=()):
        yield prefix
        if isinstance(node, dict | list):
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in children:
                yield from paths(child, (*prefix, key))

    count = 0
    for path in list(paths(FULL_BODY))[1:]:
        for value in junk:
            body = copy.deepcopy(FULL_BODY)
            node = body
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            try:
                fmt.decode_request(body, ROUTE)
            except GatewayError as err:
                assert err.status == 400
            count += 1
    assert count > 1000
    with pytest.raises(GatewayError):
        fmt.decode_request(["not", "a", "dict"], ROUTE)  # type: ignore[arg-type]


def test_decode_request_sent_by_the_official_sdk():
    """The SDK's own request body (its serialisation of typed params) decodes as intended."""
    bodies = []

    def handler(request):
        bodies.append(orjson.loads(request.content))
        return httpx2.Response(200, json=fmt.encode_response(
            ChatResponse("msg_1", "claude-x", 0, [TextPart("ok")], FinishReason.STOP, Usage(3, 1)), None))

    client = sdk_client(handler)
    message = client.messages.create(
        model="claude-x", max_tokens=300, system="S", stop_sequences=["##"], extra_body={"temperature": 0.3},
        tools=[{"name": "f", "input_schema": {"type": "object", "properties": {}}}],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True}, metadata={"user_id": "u"},
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant",
             "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}]}])
    assert message.content[0].text == "ok" and message.usage.input_tokens == 3
    req = fmt.decode_request(bodies[0], ROUTE)
    assert req.params.max_tokens == 300 and req.params.stop == ["##"] and req.params.user == "u"
    assert req.params.temperature == 0.3
    assert req.parallel_tool_calls is False and req.messages[2].parts == [ToolResultPart("toolu_1", "r")]


def test_request_round_trip_through_the_neutral_model():
    body = {
        "model": "claude-x", "max_tokens": 512, "system": "S",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1]}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"},
                                         {"type": "text", "text": "more"}]},
        ],
        "temperature": 0.5, "top_k": 3, "stop_sequences": ["X"], "metadata": {"user_id": "u"},
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "stream": True,
    }
    assert encode(fmt.decode_request(copy.deepcopy(body), ROUTE)) == body


# ---------------------------------------------------------------- decode_response / encode_response


RESPONSE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [
        {"type": "thinking", "thinking": "plan", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Let me check.", "citations": None},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"q": "x"}},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"},
         "caller": None},
    ],
    "stop_reason": "tool_use", "stop_sequence": None, "container": None, "future": 1,
    "usage": {"input_tokens": 120, "output_tokens": 40, "cache_creation_input_tokens": 30,
              "cache_read_input_tokens": 50, "output_tokens_details": {"thinking_tokens": 25},
              "cache_creation": {"ephemeral_5m_input_tokens": 30}, "service_tier": "standard"},
}


def test_decode_response():
    resp = fmt.decode_response(RESPONSE)
    assert (resp.id, resp.model, resp.created) == ("msg_01", "claude-x", 0)
    assert resp.finish is FinishReason.TOOL_CALLS
    assert resp.parts == [ReasoningPart("plan", "sig"), ReasoningPart(redacted="opaque"),
                          TextPart("Let me check."),
                          ToolCallPart("toolu_01", "get_weather", '{"city":"Oslo"}')]
    assert resp.usage == Usage(input_tokens=200, output_tokens=40, cached_tokens=50, cache_write_tokens=30,
                               reasoning_tokens=25)


@pytest.mark.parametrize(("reason", "finish"), [
    ("end_turn", FinishReason.STOP), ("stop_sequence", FinishReason.STOP), ("pause_turn", FinishReason.STOP),
    ("max_tokens", FinishReason.LENGTH), ("model_context_window_exceeded", FinishReason.LENGTH),
    ("tool_use", FinishReason.TOOL_CALLS), ("refusal", FinishReason.CONTENT_FILTER),
    ("something_new", FinishReason.STOP), (None, None),
])
def test_decode_stop_reasons(reason, finish):
    assert fmt.decode_response({"content": [], "stop_reason": reason}).finish is finish


@pytest.mark.parametrize("body", [{"content": "text"}, {"content": [1]},
                                  {"content": [{"type": "text"}], "usage": 3}])
def test_decode_malformed_response_is_a_502(body):
    try:
        resp = fmt.decode_response(body)
    except GatewayError as err:
        assert err.status == 502 and err.kind is ErrorKind.UPSTREAM
    else:
        assert resp.usage is None


def test_encode_response_is_a_valid_sdk_message_and_round_trips():
    parts = [ReasoningPart("plan", "sig"), ReasoningPart(redacted="opaque"), TextPart("Hi"), TextPart(""),
             ToolCallPart("call_9", "f", '{"a": 1}'), ToolCallPart("toolu_2", "g", "broken")]
    resp = ChatResponse("msg_1", "claude-x", 17, parts, FinishReason.TOOL_CALLS,
                        Usage(input_tokens=200, output_tokens=40, cached_tokens=50, cache_write_tokens=30,
                              reasoning_tokens=25))
    out = fmt.encode_response(resp, ChatRequest("claude-x", []))
    message = anthropic.types.Message.model_validate(out)
    assert message.stop_reason == "tool_use" and message.stop_sequence is None
    assert [b.type for b in message.content] == [
        "thinking", "redacted_thinking", "text", "tool_use", "tool_use"]
    assert message.content[3].input == {"a": 1} and message.content[3].id == "call_9"
    assert message.content[4].input == {}
    assert out["usage"] == {"input_tokens": 120, "cache_creation_input_tokens": 30,
                            "cache_read_input_tokens": 50, "output_tokens": 40,
                            "output_tokens_details": {"thinking_tokens": 25}}
    back = fmt.decode_response(out)
    assert back.usage == resp.usage and back.finish is resp.finish and back.parts[:3] == parts[:3]


@pytest.mark.parametrize(("finish", "reason"), [
    (FinishReason.STOP, "end_turn"), (FinishReason.LENGTH, "max_tokens"),
    (FinishReason.TOOL_CALLS, "tool_use"), (FinishReason.CONTENT_FILTER, "refusal"), (None, "end_turn"),
])
def test_encode_response_stop_reasons(finish, reason):
    out = fmt.encode_response(ChatResponse("msg_1", "m", 0, [], finish), ChatRequest("m", []))
    assert out["stop_reason"] == reason and out["usage"]["output_tokens"] == 0
    anthropic.types.Message.model_validate(out)


# ---------------------------------------------------------------- StreamDecoder (upstream SSE -> events)


def frame(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


TOOL_USE_DELTA = {"stop_reason": "tool_use", "stop_sequence": None}
RECORDED = b"".join([
    frame("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "stop_reason": None, "stop_sequence": None, "container": None,
        "usage": {"input_tokens": 120, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 20,
                  "output_tokens": 1, "service_tier": "standard",
                  "cache_creation": {"ephemeral_5m_input_tokens": 10}}}}),
    b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
    frame("content_block_start", {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    frame("content_block_delta", {"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "thinking_delta", "thinking": "Ünïcode “thoughts” 🤔"}}),
    frame("content_block_delta", {"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "signature_delta", "signature": "EqQBsig"}}),
    frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
    frame("content_block_start", {"type": "content_block_start", "index": 1,
                                  "content_block": {"type": "redacted_thinking", "data": "opaque"}}),
    frame("content_block_stop", {"type": "content_block_stop", "index": 1}),
    frame("content_block_start", {"type": "content_block_start", "index": 2,
                                  "content_block": {"type": "text", "text": "", "citations": None}}),
    frame("content_block_delta", {"type": "content_block_delta", "index": 2,
                                  "delta": {"type": "text_delta", "text": "Let me check — 東京"}}),
    b": a comment line\n",
    frame("content_block_delta", {"type": "content_block_delta", "index": 2,
                                  "delta": {"type": "citations_delta",
                                            "citation": {"type": "char_location"}}}),
    frame("content_block_stop", {"type": "content_block_stop", "index": 2}),
    frame("content_block_start", {"type": "content_block_start", "index": 3, "content_block": {
        "type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
    frame("content_block_delta", {"type": "content_block_delta", "index": 3,
                                  "delta": {"type": "input_json_delta", "partial_json": "{\"q\": 1}"}}),
    frame("content_block_stop", {"type": "content_block_stop", "index": 3}),
    frame("content_block_start", {"type": "content_block_start", "index": 4, "content_block": {
        "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}}),
    frame("content_block_delta", {"type": "content_block_delta", "index": 4,
                                  "delta": {"type": "input_json_delta", "partial_json": ""}}),
    frame("content_block_delta", {"type": "content_block_delta", "index": 4,
                                  "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Os"}}),
    frame("content_block_delta", {"type": "content_block_delta", "index": 4,
                                  "delta": {"type": "input_json_delta", "partial_json": "lo\"}"}}),
    frame("content_block_stop", {"type": "content_block_stop", "index": 4}),
    frame("content_block_start", {"type": "content_block_start", "index": 5, "content_block": {
        "type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}}),
    frame("content_block_stop", {"type": "content_block_stop", "index": 5}),
    frame("some_future_event", {"type": "some_future_event", "payload": [1, 2]}),
    frame("message_delta", {"type": "message_delta", "delta": TOOL_USE_DELTA,
                            "usage": {"output_tokens": 30}}),
    frame("message_delta", {"type": "message_delta", "delta": TOOL_USE_DELTA,
                            "usage": {"output_tokens": 40, "input_tokens": 125,
                                      "output_tokens_details": {"thinking_tokens": 12}}}),
    frame("message_stop", {"type": "message_stop"}),
])

EXPECTED = [
    Start("msg_01", "claude-x", 0,
          Usage(input_tokens=150, output_tokens=1, cached_tokens=20, cache_write_tokens=10)),
    ReasoningDelta("Ünïcode “thoughts” 🤔"),
    ReasoningDelta(signature="EqQBsig"),
    ReasoningDelta(redacted="opaque"),
    TextDelta("Let me check — 東京"),
    ToolCallStart(0, "toolu_01", "get_weather"),
    ToolCallDelta(0, '{"city": "Os'),
    ToolCallDelta(0, 'lo"}'),
    ToolCallStart(1, "toolu_02", "get_time"),
    Finish(FinishReason.TOOL_CALLS),
    UsageReport(Usage(input_tokens=150, output_tokens=30, cached_tokens=20, cache_write_tokens=10)),
    UsageReport(Usage(input_tokens=155, output_tokens=40, cached_tokens=20, cache_write_tokens=10,
                      reasoning_tokens=12)),
]


def decode_in_chunks(data: bytes, cuts: list[int]) -> list:
    decoder = fmt.StreamDecoder()
    events, last = [], 0
    for cut in [*cuts, len(data)]:
        events.extend(decoder.feed(data[last:cut]))
        last = cut
    return events + decoder.close()


def test_stream_decoder_recorded_stream():
    assert decode_in_chunks(RECORDED, []) == EXPECTED


def test_stream_decoder_every_split_point_and_byte_by_byte():
    for cut in range(1, len(RECORDED)):
        assert decode_in_chunks(RECORDED, [cut]) == EXPECTED, cut
    assert decode_in_chunks(RECORDED, list(range(1, len(RECORDED)))) == EXPECTED


def test_stream_decoder_random_splits_and_crlf():
    crlf = RECORDED.replace(b"\n", b"\r\n")
    rng = random.Random(1234)
    for data in (RECORDED, crlf):
        for _ in range(100):
            cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 40)))
            assert decode_in_chunks(data, cuts) == EXPECTED


def test_stream_decoder_folds_to_the_same_answer_as_a_plain_response():
    events = decode_in_chunks(RECORDED, [])
    resp = fold(events[0], events[1:])
    assert resp.finish is FinishReason.TOOL_CALLS and resp.usage.output_tokens == 40
    assert resp.parts == [ReasoningPart("Ünïcode “thoughts” 🤔", "EqQBsig"), ReasoningPart(redacted="opaque"),
                          TextPart("Let me check — 東京"),
                          ToolCallPart("toolu_01", "get_weather", '{"city": "Oslo"}'),
                          ToolCallPart("toolu_02", "get_time", "{}")]


def test_stream_decoder_frames_tap_returns_raw_bytes_unchanged():
    decoder = fmt.StreamDecoder()
    pairs = []
    for i in range(0, len(RECORDED), 7):
        pairs.extend(decoder.frames(RECORDED[i:i + 7]))
    assert all(isinstance(f, SSEFrame) for f, _ in pairs)
    assert b"".join(f.raw for f, _ in pairs) == RECORDED
    assert [ev for _, events in pairs for ev in events] == EXPECTED


@pytest.mark.parametrize(("error_type", "status", "kind"), [
    ("overloaded_error", 529, ErrorKind.OVERLOADED),
    ("api_error", 500, ErrorKind.SERVER),
    ("rate_limit_error", 429, ErrorKind.RATE_LIMIT),
    ("invalid_request_error", 400, ErrorKind.INVALID_REQUEST),
    ("timeout_error", 504, ErrorKind.TIMEOUT),
    ("authentication_error", 502, ErrorKind.UPSTREAM),
    ("brand_new_error", 500, ErrorKind.SERVER),
])
def test_stream_decoder_error_event(error_type, status, kind):
    data = RECORDED[:RECORDED.index(b"event: content_block_start")] + frame(
        "error", {"type": "error", "error": {"type": error_type, "message": "Overloaded"}})
    events = decode_in_chunks(data, [])
    assert isinstance(events[-1], StreamError)
    err = events[-1].error
    assert (err.status, err.kind) == (status, kind) and "Overloaded" in err.message


def test_stream_decoder_tolerates_odd_streams():
    data = (b"event: ping\ndata: {\"type\":\"ping\"}\n\n"  # a ping before message_start
            b'data: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"a"}}\n\n'
            b"data: [1, 2]\n\n"
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}")  # no stop_reason, no final blank line
    assert decode_in_chunks(data, []) == [Start("", "", 0), TextDelta("a"), Finish(FinishReason.STOP)]
    events = decode_in_chunks(b"event: message_start\ndata: {not json\n\n", [])
    assert isinstance(events[0], StreamError) and events[0].error.status == 502
    events = decode_in_chunks(b'data: {"type":"message_start","message":{"usage":"x"}}\n\n', [])
    assert isinstance(events[0], StreamError)


# ---------------------------------------------------------------- StreamEncoder (events -> Anthropic SSE)


def parse_sse(data: bytes) -> list[tuple[str, dict]]:
    decoder = SSEDecoder()
    frames = decoder.feed(data) + decoder.close()
    return [(f.event, orjson.loads(f.data)) for f in frames]


def encode_events(events: list, req: ChatRequest | None = None) -> bytes:
    encoder = fmt.StreamEncoder(req or ChatRequest("claude-x", []), ROUTE)
    assert encoder.content_type == "text/event-stream"
    return b"".join(encoder.encode(ev) for ev in events) + encoder.close()


def sdk_final_message(stream_bytes: bytes) -> anthropic.types.Message:
    """Let the official SDK's stream accumulator read our bytes."""
    client = sdk_client(lambda request: sse_response(stream_bytes))
    messages = [{"role": "user", "content": "q"}]
    with client.messages.stream(model="claude-x", max_tokens=10, messages=messages) as stream:
        return stream.get_final_message()


OPENAI_LIKE = [  # what an OpenAI upstream produces: usage arrives after the finish reason
    Start("chatcmpl-1", "gpt-x", 1760000000),
    ReasoningDelta("thinking "), ReasoningDelta("more"),
    TextDelta("Hel"), TextDelta("lo 🌍"),
    ToolCallStart(0, "call_a1", "get_weather"), ToolCallDelta(0, '{"city":'), ToolCallDelta(0, '"Oslo"}'),
    ToolCallStart(1, "call_b2", "get_time"), ToolCallDelta(1, "{}"),
    Finish(FinishReason.TOOL_CALLS),
    UsageReport(Usage(input_tokens=90, output_tokens=33, cached_tokens=40, reasoning_tokens=5)),
]


def test_stream_encoder_events_are_valid_sdk_events_with_event_lines():
    data = encode_events(OPENAI_LIKE)
    assert data.count(b"event: ") == data.count(b"data: ")
    events = parse_sse(data)
    for name, payload in events:
        assert name == payload["type"]
        STREAM_EVENT.validate_python(payload)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_delta") == 1
    assert names.count("content_block_start") == names.count("content_block_stop") == 4
    starts = [p["index"] for n, p in events if n == "content_block_start"]
    assert starts == [0, 1, 2, 3]
    message_delta = events[-2][1]
    assert message_delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert message_delta["usage"] == {"input_tokens": 50, "cache_creation_input_tokens": 0,
                                      "cache_read_input_tokens": 40, "output_tokens": 33,
                                      "output_tokens_details": {"thinking_tokens": 5}}


def test_stream_encoder_output_accumulated_by_the_official_sdk():
    message = sdk_final_message(encode_events(OPENAI_LIKE))
    assert message.id == "chatcmpl-1" and message.model == "gpt-x" and message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].thinking == "thinking more" and message.content[1].text == "Hello 🌍"
    assert (message.content[2].id, message.content[2].input) == ("call_a1", {"city": "Oslo"})
    assert message.content[3].input == {}
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (50, 40, 33)


def test_anthropic_stream_decoded_and_re_encoded_matches_the_original_for_the_sdk():
    original = sdk_final_message(RECORDED)
    again = sdk_final_message(encode_events(decode_in_chunks(RECORDED, [5, 99, 1000])))
    # server_tool_use runs at Anthropic and citations have no neutral form: neither survives translation
    expected = [b for b in original.content if b.type != "server_tool_use"]
    for block in expected:
        if block.type == "text":
            block.citations = None
    assert again.content == expected
    assert again.stop_reason == original.stop_reason and again.id == original.id
    for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        assert getattr(again.usage, name) == getattr(original.usage, name), name


def test_stream_encoder_new_thinking_block_after_a_signature():
    data = encode_events([Start("m1", "x", 0), ReasoningDelta("a", "s1"), ReasoningDelta("b"),
                          ReasoningDelta(signature="s2"), Finish(FinishReason.STOP)])
    blocks = [p["content_block"]["type"] for n, p in parse_sse(data) if n == "content_block_start"]
    assert blocks == ["thinking", "thinking"]
    message = sdk_final_message(data)
    assert [(b.thinking, b.signature) for b in message.content] == [("a", "s1"), ("b", "s2")]


def test_stream_encoder_without_usage_or_finish_still_closes_properly():
    events = parse_sse(encode_events([Start("m1", "x", 0, Usage(input_tokens=7)), TextDelta("hi")]))
    assert events[0][1]["message"]["usage"]["input_tokens"] == 7
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"] == {"output_tokens": 0}
    assert [n for n, _ in parse_sse(encode_events([]))] == ["message_start", "message_delta", "message_stop"]


def test_stream_encoder_error_event_ends_the_stream():
    err = GatewayError(529, ErrorKind.OVERLOADED, "Overloaded")
    encoder = fmt.StreamEncoder(ChatRequest("m", []), ROUTE)
    data = encoder.encode(Start("m1", "x", 0)) + encoder.encode(TextDelta("partial"))
    data += encoder.encode(StreamError(err))
    assert encoder.encode(TextDelta("late")) == b"" and encoder.close() == b""
    name, payload = parse_sse(data)[-1]
    assert name == "error"
    assert payload == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                       "request_id": "req_gateway"}
    anthropic.types.ErrorResponse.model_validate(payload)
    client = sdk_client(lambda request: sse_response(data))
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"), client.messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "q"}]) as stream:
        stream.get_final_message()


def test_stream_encoder_error_before_anything_else():
    """The relay's mid-stream failure path: a fresh encoder, one StreamError, close()."""
    encoder = fmt.StreamEncoder(ChatRequest(None, []), ROUTE)
    data = encoder.encode(StreamError(GatewayError(502, ErrorKind.UPSTREAM, "boom"))) + encoder.close()
    assert parse_sse(data) == [("error", {"type": "error", "error": {"type": "api_error", "message": "boom"},
                                          "request_id": "req_gateway"})]


def test_stream_encoder_relay_passes_frames_unchanged():
    encoder = fmt.StreamEncoder(ChatRequest("m", []), ROUTE)
    decoder = fmt.StreamDecoder()
    out = b"".join(encoder.relay(f, evs) for f, evs in decoder.frames(RECORDED))
    assert out == RECORDED


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("err", "status", "error_type"), [
    (GatewayError(400, ErrorKind.INVALID_REQUEST, "bad"), 400, "invalid_request_error"),
    (GatewayError(401, ErrorKind.AUTHENTICATION, "who"), 401, "authentication_error"),
    (GatewayError(402, ErrorKind.QUOTA, "pay"), 402, "billing_error"),
    (GatewayError(429, ErrorKind.QUOTA, "quota"), 429, "rate_limit_error"),
    (GatewayError(403, ErrorKind.PERMISSION, "no"), 403, "permission_error"),
    (GatewayError(404, ErrorKind.NOT_FOUND, "gone"), 404, "not_found_error"),
    (GatewayError(413, ErrorKind.REQUEST_TOO_LARGE, "big"), 413, "request_too_large"),
    (GatewayError(429, ErrorKind.RATE_LIMIT, "slow"), 429, "rate_limit_error"),
    (GatewayError(500, ErrorKind.SERVER, "oops"), 500, "api_error"),
    (GatewayError(502, ErrorKind.UPSTREAM, "up"), 502, "api_error"),
    (GatewayError(503, ErrorKind.OVERLOADED, "busy"), 503, "overloaded_error"),
    (GatewayError(529, ErrorKind.OVERLOADED, "busy"), 529, "overloaded_error"),
    (GatewayError(504, ErrorKind.TIMEOUT, "late"), 504, "timeout_error"),
])
def test_encode_error_shape(err, status, error_type):
    got_status, headers, body = fmt.encode_error(err)
    assert got_status == status and headers == {}
    assert orjson.loads(body) == {"type": "error", "error": {"type": error_type, "message": err.message},
                                  "request_id": "req_gateway"}


@pytest.mark.parametrize(("retry_after", "header"), [(0.2, "1"), (1.0, "1"), (1.2, "2"), (30, "30")])
def test_encode_error_retry_after_in_whole_seconds(retry_after, header):
    _, headers, _ = fmt.encode_error(GatewayError(429, ErrorKind.RATE_LIMIT, "slow", retry_after=retry_after))
    assert headers == {"retry-after": header}


@pytest.mark.parametrize(("status", "exception"), [
    (400, anthropic.BadRequestError), (401, anthropic.AuthenticationError),
    (403, anthropic.PermissionDeniedError), (404, anthropic.NotFoundError), (429, anthropic.RateLimitError),
    (500, anthropic.InternalServerError), (529, anthropic.OverloadedError),
])
def test_sdk_raises_its_own_exception_for_our_errors(status, exception):
    status, headers, body = fmt.encode_error(GatewayError(status, None, "nope", retry_after=1))
    client = sdk_client(lambda request: httpx2.Response(status, headers=headers, content=body))
    with pytest.raises(exception) as info:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "q"}])
    assert info.value.status_code == status and info.value.body["error"]["message"] == "nope"


@pytest.mark.parametrize(("status", "body", "expected_status", "kind", "message"), [
    (400, b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"},'
          b'"request_id":"req_011"}', 400, ErrorKind.INVALID_REQUEST, "max_tokens: Field required"),
    (529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', 529,
     ErrorKind.OVERLOADED, "Overloaded"),
    (429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}', 429,
     ErrorKind.RATE_LIMIT, "slow down"),
    (401, b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}', 502,
     ErrorKind.UPSTREAM, "credentials"),
    (403, b'{"type":"error","error":{"type":"permission_error","message":"no"}}', 502, ErrorKind.UPSTREAM,
     "credentials"),
    (402, b'{"type":"error","error":{"type":"billing_error","message":"credit"}}', 402, ErrorKind.QUOTA,
     "credit"),
    (502, b"<html><body>Bad gateway</body></html>", 502, ErrorKind.UPSTREAM, "HTML"),
    (500, b"plain text failure " * 100, 500, ErrorKind.SERVER, "plain text failure"),
    (503, b"", 503, ErrorKind.OVERLOADED, "503"),
    (400, b'{"error":"just a string"}', 400, ErrorKind.INVALID_REQUEST, "just a string"),
    (404, b'{"detail":"Not Found"}', 404, ErrorKind.NOT_FOUND, "Not Found"),
    (400, b"[1, 2]", 400, ErrorKind.INVALID_REQUEST, "[1,2]"),
    (500, b"\xff\xfe broken bytes", 500, ErrorKind.SERVER, "broken bytes"),
])
def test_decode_error(status, body, expected_status, kind, message):
    err = fmt.decode_error(status, body)
    assert (err.status, err.kind) == (expected_status, kind)
    assert message in err.message and len(err.message) < 400


# ---------------------------------------------------------------- models


def test_models():
    assert fmt.MODELS_PATH == "/v1/models?limit=1000"
    body = {"data": [{"type": "model", "id": "claude-a", "display_name": "A",
                      "created_at": "2025-01-01T00:00:00Z"},
                     {"id": 5}, "junk", {"type": "model", "id": "claude-b"}], "has_more": False}
    assert fmt.decode_models(body) == ["claude-a", "claude-b"]
    assert fmt.next_models_path(body) is None


def test_models_next_page_after_the_last_id():
    """Anthropic pages by id: with has_more the next page starts after the page's last_id."""
    assert fmt.next_models_path({"data": [], "has_more": True, "last_id": "claude-b"}) == \
        "/v1/models?limit=1000&after_id=claude-b"
    assert fmt.next_models_path({"data": [], "has_more": True, "last_id": None}) is None
    assert fmt.decode_models({}) == []
    page = fmt.encode_models(["claude-a", "gpt-x"])
    assert page["has_more"] is False and (page["first_id"], page["last_id"]) == ("claude-a", "gpt-x")
    for item in page["data"]:
        anthropic.types.ModelInfo.model_validate(item)
    assert fmt.encode_models([]) == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    client = sdk_client(lambda request: httpx2.Response(200, json=page))
    assert [m.id for m in client.models.list()] == ["claude-a", "gpt-x"]

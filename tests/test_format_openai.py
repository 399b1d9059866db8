"""The OpenAI chat-completions codec, called directly: dicts and bytes in, neutral types out and back.

Stream output is checked with the official openai SDK's own models and parsers, run offline
(``httpx2.MockTransport``), so "valid OpenAI SSE" means "what the SDK accepts", not our reading of it.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from aigateway.formats import openai as codec
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
USER = {"role": "user", "content": "hi"}


def decode(**body: Any) -> ChatRequest:
    body.setdefault("messages", [USER])
    return codec.decode_request(body, ROUTE)


def request(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages), **kw)


# ================================================================ decode_request


def test_string_content():
    req = decode(model="gpt-x", messages=[{"role": "user", "content": "hello"}])
    assert req.model == "gpt-x"
    assert req.messages == [Message("user", [TextPart("hello")])]
    assert req.system == [] and req.stream is False and req.include_usage is False and req.extra == {}


def test_part_content_with_images():
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": "https://example.com/dog.png"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": "data:image/webp;base64,UklGRg=="},
    ]
    req = decode(messages=[{"role": "user", "content": content}])
    assert req.messages[0].parts == [
        TextPart("what is this?"),
        ImagePart(url="https://example.com/cat.jpg", detail="low"),
        ImagePart(url="https://example.com/dog.png"),
        ImagePart(media_type="image/jpeg", data="/9j/4AAQ"),
        ImagePart(media_type="image/webp", data="UklGRg=="),
    ]


def test_system_and_developer_become_the_system_list_in_order():
    req = decode(messages=[
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": [{"type": "text", "text": "in "}, {"type": "text", "text": "French"}]},
        USER,
        {"role": "system", "content": "late"},
    ])
    assert req.system == ["be brief", "in French", "late"]
    assert req.messages == [Message("user", [TextPart("hi")])]


def test_tool_calls_and_results_grouped_into_one_user_message_with_names():
    req = decode(messages=[
        {"role": "user", "content": "weather in Oslo and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "forecast", "arguments": '{"city":"Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp_c":4}'},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "sunny"}]},
        {"role": "user", "content": "thanks"},
        {"role": "tool", "tool_call_id": "call_unknown", "content": "stray"},
    ])
    assert req.messages == [
        Message("user", [TextPart("weather in Oslo and Rome?")]),
        Message("assistant", [ToolCallPart("call_a", "weather", '{"city":"Oslo"}'),
                              ToolCallPart("call_b", "forecast", '{"city":"Rome"}')]),
        Message("user", [ToolResultPart("call_a", '{"temp_c":4}', "weather"),
                         ToolResultPart("call_b", "sunny", "forecast")]),
        Message("user", [TextPart("thanks")]),
        Message("user", [ToolResultPart("call_unknown", "stray", None)]),
    ]


def test_assistant_history_with_text_and_reasoning():
    req = decode(messages=[USER, {"role": "assistant", "content": "Hello!", "reasoning_content": "greet back"},
                           {"role": "assistant", "content": [{"type": "text", "text": "more"}], "reasoning": "ollama"}])
    assert req.messages[1] == Message("assistant", [ReasoningPart("greet back"), TextPart("Hello!")])
    assert req.messages[2] == Message("assistant", [ReasoningPart("ollama"), TextPart("more")])


def test_tool_call_arguments_that_are_not_a_string_become_empty_object():
    req = decode(messages=[USER, {"role": "assistant", "tool_calls": [
        {"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}]}])
    assert req.messages[1].parts == [ToolCallPart("c1", "f", "{}")]


def test_params():
    req = decode(temperature=0.5, top_p=0.9, top_k=40, n=1, seed=7, presence_penalty=-1, frequency_penalty=1.5,
                 reasoning_effort="low", user="u1", max_tokens=100, stop=["END", "\n\n"])
    assert req.params == Params(max_tokens=100, temperature=0.5, top_p=0.9, top_k=40, stop=["END", "\n\n"], n=1,
                                seed=7, presence_penalty=-1, frequency_penalty=1.5, reasoning_effort="low",
                                user="u1")


@pytest.mark.parametrize("fields, expected", [
    ({"max_tokens": 100}, 100),
    ({"max_completion_tokens": 200}, 200),
    ({"max_completion_tokens": 200, "max_tokens": 100}, 200),
    ({"max_completion_tokens": None, "max_tokens": 100}, 100),
    ({}, None),
])
def test_max_completion_tokens_preferred_over_max_tokens(fields, expected):
    assert decode(**fields).params.max_tokens == expected


def test_stop_string_becomes_a_list():
    assert decode(stop="END").params.stop == ["END"]


def test_tools_tool_choice_and_response_format():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    req = decode(
        tools=[{"type": "function", "function": {"name": "weather", "description": "now", "parameters": schema}},
               {"type": "function", "function": {"name": "bare"}},
               {"type": "custom", "custom": {"name": "grammar"}}],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )
    assert req.tools == [Tool("weather", "now", schema), Tool("bare")]
    assert req.tool_choice == ToolChoice("tool", "weather")
    assert req.parallel_tool_calls is False
    assert req.response_format == ResponseFormat("json_schema", schema, "city")


@pytest.mark.parametrize("mode", ["auto", "none", "required"])
def test_tool_choice_modes(mode):
    assert decode(tool_choice=mode).tool_choice == ToolChoice(mode)


@pytest.mark.parametrize("kind", ["text", "json_object"])
def test_simple_response_formats(kind):
    assert decode(response_format={"type": kind}).response_format == ResponseFormat(kind)


@pytest.mark.parametrize("stream, options, expected", [
    (True, {"include_usage": True}, True),
    (True, {"include_usage": False}, False),
    (True, None, False),
    (False, {"include_usage": True}, False),
    (None, {"include_usage": True}, False),
])
def test_include_usage_only_counts_when_streaming(stream, options, expected):
    body = {k: v for k, v in (("stream", stream), ("stream_options", options)) if v is not None}
    req = decode(**body)
    assert req.stream is bool(stream)
    assert req.include_usage is expected


def test_unknown_fields_go_to_extra():
    req = decode(model="m", metadata={"a": "b"}, store=True, logprobs=True, service_tier="flex", temperature=1)
    assert req.extra == {"metadata": {"a": "b"}, "store": True, "logprobs": True, "service_tier": "flex"}


def _message(content: Any = "hi", **kw: Any) -> dict:
    return {"messages": [{"role": "user", "content": content, **kw}]}


MALFORMED = [
    ("body is a list", [USER], "JSON object"),
    ("body is a string", "hello", "JSON object"),
    ("messages missing", {}, "messages"),
    ("messages empty", {"messages": []}, "messages"),
    ("messages an object", {"messages": USER}, "messages"),
    ("messages a string", {"messages": "hi"}, "messages"),
    ("message not an object", {"messages": ["hi"]}, "messages[0]"),
    ("message null", {"messages": [USER, None]}, "messages[1]"),
    ("unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}, "wizard"),
    ("role missing", {"messages": [{"content": "hi"}]}, "role"),
    ("user content a number", _message(5), "messages[0]"),
    ("user content null", _message(None), "messages[0]"),
    ("user content an object", _message({"text": "hi"}), "messages[0]"),
    ("system content a number", {"messages": [{"role": "system", "content": 5}, USER]}, "messages[0]"),
    ("text part text not a string", {"messages": [{"role": "system", "content": [{"type": "text", "text": 5}]}]},
     "malformed"),
    ("part not an object", _message(["hi"]), "messages[0]"),
    ("unsupported part type", _message([{"type": "video", "video": {}}]), "video"),
    ("image_url without url", _message([{"type": "image_url", "image_url": {}}]), "url"),
    ("image_url a list", _message([{"type": "image_url", "image_url": ["x"]}]), "malformed"),
    ("data URL not base64", _message([{"type": "image_url", "image_url": "data:image/png,abc"}]), "base64"),
    ("data URL without data", _message([{"type": "image_url", "image_url": "data:image/png;base64,"}]), "base64"),
    ("tool message without tool_call_id", {"messages": [USER, {"role": "tool", "content": "x"}]}, "tool_call_id"),
    ("tool_call_id a number", {"messages": [USER, {"role": "tool", "tool_call_id": 1, "content": "x"}]},
     "tool_call_id"),
    ("tool message content a number",
     {"messages": [USER, {"role": "tool", "tool_call_id": "c", "content": 3}]}, "messages[1]"),
    ("tool call without name", {"messages": [USER, {"role": "assistant", "tool_calls": [{"id": "c"}]}]},
     "function.name"),
    ("tool call not an object", {"messages": [USER, {"role": "assistant", "tool_calls": ["c"]}]}, "malformed"),
    ("tool_calls a string", {"messages": [USER, {"role": "assistant", "tool_calls": "c"}]}, "malformed"),
    ("tool_choice unknown string", {**_message(), "tool_choice": "any"}, "tool_choice"),
    ("tool_choice object without function", {**_message(), "tool_choice": {"type": "function"}}, "tool_choice"),
    ("tool_choice a number", {**_message(), "tool_choice": 1}, "tool_choice"),
    ("tools a string", {**_message(), "tools": "weather"}, "malformed"),
    ("tool without function", {**_message(), "tools": [{"type": "function"}]}, "malformed"),
    ("tool not an object", {**_message(), "tools": [5]}, "malformed"),
    ("response_format unknown type", {**_message(), "response_format": {"type": "xml"}}, "response_format"),
    ("response_format a string", {**_message(), "response_format": "json"}, "response_format"),
    ("max_tokens a string", {**_message(), "max_tokens": "100"}, "max_tokens"),
    ("max_tokens negative", {**_message(), "max_tokens": -1}, "max_tokens"),
    ("max_tokens zero", {**_message(), "max_tokens": 0}, "max_tokens"),
    ("max_tokens a bool", {**_message(), "max_tokens": True}, "max_tokens"),
    ("max_tokens a float", {**_message(), "max_tokens": 1.5}, "max_tokens"),
    ("max_completion_tokens false", {**_message(), "max_completion_tokens": False}, "max_tokens"),
    ("max_completion_tokens zero", {**_message(), "max_completion_tokens": 0, "max_tokens": 10}, "max_tokens"),
    ("temperature a string", {**_message(), "temperature": "hot"}, "temperature"),
    ("temperature a bool", {**_message(), "temperature": True}, "temperature"),
    ("top_p a list", {**_message(), "top_p": [1]}, "top_p"),
    ("n a string", {**_message(), "n": "2"}, "n"),
    ("seed a float", {**_message(), "seed": 1.5}, "seed"),
    ("stop a number", {**_message(), "stop": 5}, "stop"),
    ("stop a list of numbers", {**_message(), "stop": ["a", 1]}, "stop"),
    ("stop an object", {**_message(), "stop": {"a": 1}}, "stop"),
    ("stream_options a string", {**_message(), "stream": True, "stream_options": "usage"}, "malformed"),
]


@pytest.mark.parametrize("body, fragment", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_request_is_a_helpful_400(body, fragment):
    with pytest.raises(GatewayError) as info:
        codec.decode_request(body, ROUTE)
    assert info.value.status == 400
    assert info.value.kind is ErrorKind.INVALID_REQUEST
    assert fragment in info.value.message


FULL_BODY = {
    "model": "gpt-x",
    "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
    "max_tokens": 10, "temperature": 1, "stop": ["x"], "stream": True, "stream_options": {"include_usage": True},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
}
ODD_VALUES = [None, 0, -1, 1.5, True, "x", "", [], [None], {}, {"x": None}]


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a nested JSON value, so each position can be swapped for garbage."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def test_any_value_anywhere_gives_a_request_or_a_400_never_another_exception():
    codec.decode_request(copy.deepcopy(FULL_BODY), ROUTE)
    failures = []
    for path in _paths(FULL_BODY):
        for odd in ODD_VALUES:
            body = copy.deepcopy(FULL_BODY)
            target = body
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = odd
            try:
                codec.decode_request(body, ROUTE)
            except GatewayError as err:
                if err.status != 400:
                    failures.append((path, odd, repr(err)))
            except Exception as exc:  # anything but a GatewayError is the bug this test hunts
                failures.append((path, odd, repr(exc)))
    assert failures == []


# ================================================================ encode_request


def test_encode_request_message_order_and_shapes():
    req = request(
        Message("user", [TextPart("look"), ImagePart(media_type="image/png", data="AAAA", detail="high"),
                         ImagePart(url="https://example.com/a.jpg")]),
        Message("assistant", [ReasoningPart("hmm"), ToolCallPart("c1", "f", '{"a":1}'), ToolCallPart("c2", "g")]),
        Message("user", [TextPart("and now?"), ToolResultPart("c1", "one", "f"), ToolResultPart("c2", "two", "g")]),
        Message("assistant", [TextPart("calling"), ToolCallPart("c3", "f", "{}")]),
        Message("assistant", []),
        system=["first", "second"],
    )
    path, body = codec.encode_request(req, Policy("m"))
    assert path == "/chat/completions"
    assert body["model"] == "m"
    assert body["messages"] == [
        {"role": "system", "content": "first"},
        {"role": "system", "content": "second"},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": "calling", "tool_calls": [
            {"id": "c3", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "assistant", "content": ""},
    ]
    assert "stream" not in body and "stream_options" not in body


def test_encode_request_params_tools_and_formats():
    schema = {"type": "object"}
    req = request(Message("user", [TextPart("hi")]),
                  params=Params(max_tokens=50, temperature=0.2, stop=["END"], seed=3, user="u"),
                  tools=[Tool("f", "does f", schema), Tool("g")], tool_choice=ToolChoice("tool", "f"),
                  parallel_tool_calls=True, response_format=ResponseFormat("json_schema", schema, "out"))
    _, body = codec.encode_request(req, Policy("m"))
    assert body["max_tokens"] == 50 and body["temperature"] == 0.2 and body["seed"] == 3 and body["user"] == "u"
    assert body["stop"] == ["END"]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "f", "description": "does f", "parameters": schema}},
        {"type": "function", "function": {"name": "g"}},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["parallel_tool_calls"] is True
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    assert "top_p" not in body and "n" not in body


@pytest.mark.parametrize("mode", ["auto", "none", "required"])
def test_encode_request_tool_choice_modes(mode):
    _, body = codec.encode_request(request(Message("user", [TextPart("hi")]), tool_choice=ToolChoice(mode)),
                                   Policy("m"))
    assert body["tool_choice"] == mode


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_encode_request_honours_max_tokens_field(field):
    req = request(Message("user", [TextPart("hi")]), params=Params(max_tokens=64))
    _, body = codec.encode_request(req, Policy("m", max_tokens_field=field))
    assert {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body} == {field: 64}


@pytest.mark.parametrize("stream, stream_usage, options", [
    (True, True, {"include_usage": True}),
    (True, False, None),
    (False, True, None),
])
def test_encode_request_stream_options_only_for_streams_when_policy_allows(stream, stream_usage, options):
    req = request(Message("user", [TextPart("hi")]), stream=stream)
    _, body = codec.encode_request(req, Policy("m", stream_usage=stream_usage))
    assert body.get("stream") is (True if stream else None)
    assert body.get("stream_options") == options


def test_decode_encode_decode_is_stable():
    first = codec.decode_request(copy.deepcopy(FULL_BODY), ROUTE)
    _, body = codec.encode_request(first, Policy("gpt-x"))
    again = codec.decode_request(body, ROUTE)
    assert again == first


# ================================================================ patch_request


def test_patch_replaces_model_inserts_system_and_keeps_unknown_fields():
    meta = {"trace": ["a", {"b": 1}]}
    body = {"model": "alias", "messages": [{"role": "system", "content": "client"}, USER],
            "metadata": meta, "store": False, "logit_bias": {"50256": -100}, "temperature": 0.3}
    path, out = codec.patch_request(body, Policy("gpt-real", system="gateway says"), ROUTE)
    assert path == "/chat/completions"
    assert out["model"] == "gpt-real"
    assert out["messages"] == [{"role": "system", "content": "gateway says"},
                               {"role": "system", "content": "client"}, USER]
    assert out["metadata"] is meta and meta == {"trace": ["a", {"b": 1}]}
    assert out["store"] is False and out["logit_bias"] == {"50256": -100} and out["temperature"] == 0.3
    assert "max_tokens" not in out and "max_completion_tokens" not in out and "stream_options" not in out


def test_patch_without_system_prompt_leaves_messages_alone():
    _, out = codec.patch_request({"model": "a", "messages": [USER]}, Policy("b"), ROUTE)
    assert out["messages"] == [USER]


@pytest.mark.parametrize("fields, cap, field, expected", [
    ({"max_tokens": 5000}, 1000, "max_tokens", {"max_tokens": 1000}),
    ({"max_tokens": 500}, 1000, "max_tokens", {"max_tokens": 500}),
    ({"max_tokens": 500}, 1000, "max_completion_tokens", {"max_tokens": 500}),
    ({"max_completion_tokens": 5000}, 1000, "max_tokens", {"max_completion_tokens": 1000}),
    ({"max_completion_tokens": 50}, 1000, "max_tokens", {"max_completion_tokens": 50}),
    ({"max_completion_tokens": 100, "max_tokens": 100000}, 1000, "max_tokens",
     {"max_completion_tokens": 100, "max_tokens": 1000}),
    ({}, 1000, "max_tokens", {"max_tokens": 1000}),
    ({}, 1000, "max_completion_tokens", {"max_completion_tokens": 1000}),
    ({"max_tokens": None}, 1000, "max_completion_tokens", {"max_tokens": 1000}),
    ({"max_tokens": 5000}, None, "max_tokens", {"max_tokens": 5000}),
    ({}, None, "max_tokens", {}),
])
def test_patch_clamps_max_tokens_in_the_field_the_client_used(fields, cap, field, expected):
    body = {"model": "a", "messages": [USER], **fields}
    _, out = codec.patch_request(body, Policy("b", max_tokens=cap, max_tokens_field=field), ROUTE)
    assert {k: out[k] for k in ("max_tokens", "max_completion_tokens") if k in out} == expected


@pytest.mark.parametrize("stream, options, stream_usage, expected", [
    (True, None, True, {"include_usage": True}),
    (True, {"include_usage": False}, True, {"include_usage": True}),
    (True, {"include_obfuscation": False}, True, {"include_obfuscation": False, "include_usage": True}),
    (True, {"include_usage": True}, False, None),  # Mistral rejects stream_options
    (True, None, False, None),
    (False, {"include_usage": True}, True, None),  # OpenAI rejects stream_options without stream
    (False, None, True, None),
])
def test_patch_stream_options(stream, options, stream_usage, expected):
    body = {"model": "a", "messages": [USER], "stream": stream}
    if options is not None:
        body["stream_options"] = options
    _, out = codec.patch_request(body, Policy("b", stream_usage=stream_usage), ROUTE)
    assert out.get("stream_options") == expected
    assert out["stream"] is stream


# ================================================================ responses

RESPONSE = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1760000000, "model": "gpt-x",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": "Checking.", "refusal": None, "reasoning_content": "need weather",
        "tool_calls": [{"id": "call_a", "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32,
              "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 5}},
}


def test_decode_response():
    resp = codec.decode_response(RESPONSE)
    assert resp == ChatResponse(
        "chatcmpl-1", "gpt-x", 1760000000,
        [ReasoningPart("need weather"), TextPart("Checking."), ToolCallPart("call_a", "weather", '{"city":"Oslo"}')],
        FinishReason.TOOL_CALLS, Usage(20, 12, cached_tokens=8, reasoning_tokens=5),
    )


def test_encode_response_round_trip_is_exact_and_sdk_valid():
    out = codec.encode_response(codec.decode_response(RESPONSE), decode())
    assert out == RESPONSE
    parsed = ChatCompletion.model_validate(out)
    assert parsed.choices[0].message.tool_calls[0].function.arguments == '{"city":"Oslo"}'
    assert parsed.usage.prompt_tokens_details.cached_tokens == 8


@pytest.mark.parametrize("resp", [
    ChatResponse("r1", "m", 1, [TextPart("plain")], FinishReason.STOP),
    ChatResponse("r2", "m", 2, [ToolCallPart("c1", "f", "{}"), ToolCallPart("c2", "g", '{"x":[1]}')],
                 FinishReason.TOOL_CALLS, Usage(1, 2)),
    ChatResponse("r3", "m", 3, [ReasoningPart("think"), TextPart("cut")], FinishReason.LENGTH,
                 Usage(10, 20, cached_tokens=3, reasoning_tokens=7)),
    ChatResponse("r4", "m", 4, [], FinishReason.CONTENT_FILTER),
], ids=["text", "tool-calls", "reasoning-usage", "empty"])
def test_response_round_trip(resp):
    out = codec.encode_response(resp, decode())
    ChatCompletion.model_validate(out)
    assert codec.decode_response(out) == resp


def test_encode_response_content_null_only_with_tool_calls():
    calls = codec.encode_response(ChatResponse("r", "m", 1, [ToolCallPart("c", "f")], None), decode())
    assert calls["choices"][0]["message"]["content"] is None
    assert calls["choices"][0]["finish_reason"] == "stop"  # no finish known: OpenAI requires one
    empty = codec.encode_response(ChatResponse("r", "m", 1, [], None), decode())
    assert empty["choices"][0]["message"]["content"] == ""
    assert "usage" not in empty and "reasoning_content" not in empty["choices"][0]["message"]


def test_decode_response_ollama_reasoning():
    body = {"id": "x", "model": "llama", "created": 1, "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi", "reasoning": "r"}}]}
    assert codec.decode_response(body).parts == [ReasoningPart("r"), TextPart("hi")]


REFUSAL = "I'm sorry, I can't help with that."


def test_decode_response_refusal_is_the_answer_and_a_content_filter_finish():
    """OpenAI puts a refusal in ``message.refusal`` (content null, finish "stop"): other formats must
    still see the text, and their own refusal reason (Anthropic refusal, Gemini SAFETY)."""
    body = {"id": "x", "model": "m", "created": 1, "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "refusal": REFUSAL}}]}
    resp = codec.decode_response(body)
    assert resp.parts == [TextPart(REFUSAL, refusal=True)] and resp.finish is FinishReason.CONTENT_FILTER


def test_encode_response_refusal_in_its_own_field_ending_stop():
    """A refusal (from any upstream) reaches a chat client the way OpenAI sends one."""
    resp = ChatResponse("x", "m", 1, [TextPart(REFUSAL, refusal=True)], FinishReason.CONTENT_FILTER)
    choice = codec.encode_response(resp, ChatRequest("m", []))["choices"][0]
    assert choice["message"]["refusal"] == REFUSAL and choice["message"]["content"] is None
    assert choice["finish_reason"] == "stop"
    filtered = ChatResponse("x", "m", 1, [TextPart("partial")], FinishReason.CONTENT_FILTER)
    assert codec.encode_response(filtered, ChatRequest("m", []))["choices"][0]["finish_reason"] == "content_filter"


def test_stream_encoder_refusal_deltas_end_stop():
    enc = codec.StreamEncoder(ChatRequest("m", []), ROUTE)
    out = b"".join(enc.encode(e) for e in [Start("x", "m", 1), TextDelta("I'm sorry", refusal=True),
                                           Finish(FinishReason.CONTENT_FILTER)])
    chunks = [orjson.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")]
    assert chunks[1]["choices"][0]["delta"] == {"refusal": "I'm sorry"}
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"


def test_stream_decoder_refusal_deltas():
    data = b"".join([chunk({"role": "assistant", "content": None, "refusal": ""}), chunk({"refusal": "I'm sorry"}),
                     chunk({"refusal": ", no."}), chunk({}, "stop")])
    assert stream_events(data)[1:] == [TextDelta("I'm sorry", True), TextDelta(", no.", True),
                                       Finish(FinishReason.CONTENT_FILTER)]


@pytest.mark.parametrize("raw, expected", [
    ("stop", FinishReason.STOP),
    ("length", FinishReason.LENGTH),
    ("model_length", FinishReason.LENGTH),  # Mistral
    ("tool_calls", FinishReason.TOOL_CALLS),
    ("function_call", FinishReason.TOOL_CALLS),
    ("content_filter", FinishReason.CONTENT_FILTER),
    ("error", FinishReason.STOP),
    ("something_new", FinishReason.STOP),
    (None, None),
])
def test_finish_reasons(raw, expected):
    body = {"id": "x", "model": "m", "created": 1,
            "choices": [{"index": 0, "finish_reason": raw, "message": {"role": "assistant", "content": "a"}}]}
    assert codec.decode_response(body).finish == expected


@pytest.mark.parametrize("body", [
    {"choices": "x"},
    {"choices": [{"message": {"content": 5}}]},
    {"choices": [{"message": {"tool_calls": [{"function": {}}]}}]},
    {"created": "yesterday"},
    {"usage": {"prompt_tokens": "many"}},
    [],
], ids=["choices-string", "content-number", "tool-call-no-name", "created-string", "usage-string", "list"])
def test_malformed_upstream_response_is_502(body):
    with pytest.raises(GatewayError) as info:
        codec.decode_response(body)
    assert info.value.status == 502 and info.value.kind is ErrorKind.UPSTREAM


# ================================================================ StreamDecoder


def chunk(delta: dict | None = None, finish: str | None = None, **top: Any) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1760000000,
                            "model": "gpt-x"}
    body["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body.update(top)
    return b"data: " + orjson.dumps(body) + b"\n\n"


USAGE = {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16,
         "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}

# An OpenAI stream with text, two streamed tool calls and the include_usage chunk.
OPENAI_STREAM = b"".join([
    chunk({"role": "assistant", "content": ""}, usage=None),
    chunk({"content": "Let me "}, usage=None),
    chunk({"content": "check."}, usage=None),
    chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                           "function": {"name": "weather", "arguments": ""}}]}, usage=None),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, usage=None),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}, usage=None),
    chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                           "function": {"name": "time", "arguments": '{"tz"'}}]}, usage=None),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": ':"CET"}'}}]}, usage=None),
    chunk({}, "tool_calls", usage=None),
    chunk(None, usage=USAGE),
    b"data: [DONE]\n\n",
])
OPENAI_EVENTS = [
    Start("chatcmpl-s", "gpt-x", 1760000000),
    TextDelta("Let me "),
    TextDelta("check."),
    ToolCallStart(0, "call_a", "weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Oslo"}'),
    ToolCallStart(1, "call_b", "time"),
    ToolCallDelta(1, '{"tz"'),
    ToolCallDelta(1, ':"CET"}'),
    Finish(FinishReason.TOOL_CALLS),
    UsageReport(Usage(9, 7, cached_tokens=4, reasoning_tokens=2)),
]


def stream_events(*chunks: bytes) -> list:
    decoder = codec.StreamDecoder()
    return [ev for c in chunks for ev in decoder.feed(c)] + decoder.close()


def test_stream_decoder_recorded_openai_stream():
    events = stream_events(OPENAI_STREAM)
    assert events == OPENAI_EVENTS
    resp = fold(events[0], events[1:])
    assert [orjson.loads(p.arguments) for p in resp.parts if isinstance(p, ToolCallPart)] == [
        {"city": "Oslo"}, {"tz": "CET"}]
    assert resp.parts[0] == TextPart("Let me check.")


def test_stream_decoder_at_every_split_point():
    for i in range(len(OPENAI_STREAM) + 1):
        assert stream_events(OPENAI_STREAM[:i], OPENAI_STREAM[i:]) == OPENAI_EVENTS, f"split at {i}"


def test_stream_decoder_crlf():
    assert stream_events(OPENAI_STREAM.replace(b"\n", b"\r\n")) == OPENAI_EVENTS


def test_stream_decoder_ollama_whole_tool_calls():
    data = b"".join([
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [{"index": 0, "id": "call_x1", "type": "function",
                               "function": {"name": "a", "arguments": '{"q":1}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_x2", "type": "function",
                               "function": {"name": "b", "arguments": '{"q":2}'}}]}),
        chunk({}, "tool_calls"),
        chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
        b"data: [DONE]\n\n",
    ])
    assert stream_events(data)[1:] == [
        ToolCallStart(0, "call_x1", "a"), ToolCallDelta(0, '{"q":1}'),
        ToolCallStart(1, "call_x2", "b"), ToolCallDelta(1, '{"q":2}'),
        Finish(FinishReason.TOOL_CALLS), UsageReport(Usage(3, 4)),
    ]


def test_stream_decoder_new_id_at_the_same_index_is_a_new_call():
    data = b"".join([
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "a", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "b", "arguments": "{}"}}]}),
    ])
    assert stream_events(data)[1:] == [ToolCallStart(0, "c1", "a"), ToolCallDelta(0, "{}"),
                                       ToolCallStart(1, "c2", "b"), ToolCallDelta(1, "{}")]


def test_stream_decoder_usage_only_chunk():
    decoder = codec.StreamDecoder()
    decoder.feed(chunk({"content": "x"}))
    assert decoder.feed(chunk(None, usage=USAGE)) == [UsageReport(Usage(9, 7, cached_tokens=4, reasoning_tokens=2))]


def test_stream_decoder_mistral_usage_on_the_finish_chunk():
    decoder = codec.StreamDecoder()
    decoder.feed(chunk({"content": "x"}))
    assert decoder.feed(chunk({}, "model_length", usage={"prompt_tokens": 1, "completion_tokens": 2})) == [
        Finish(FinishReason.LENGTH), UsageReport(Usage(1, 2))]


def test_stream_decoder_reasoning_deltas_and_other_choices():
    data = chunk({"reasoning_content": "a"}) + chunk({"reasoning": "b"}) + chunk(
        None, choices=[{"index": 1, "delta": {"content": "other choice"}, "finish_reason": None}])
    assert stream_events(data)[1:] == [ReasoningDelta("a"), ReasoningDelta("b")]


def test_stream_decoder_ignores_done_comments_and_empty_data():
    assert stream_events(b"data: [DONE]\n\n: ping\n\ndata:\n\n") == []


def test_stream_decoder_error_payload_is_a_stream_error():
    events = stream_events(chunk({"content": "x"}) + b'data: {"error":{"message":"overloaded, try later",'
                                                      b'"type":"server_error","param":null,"code":null}}\n\n')
    assert isinstance(events[-1], StreamError)
    assert events[-1].error.message == "overloaded, try later"
    assert events[-1].error.status >= 500


def test_stream_decoder_malformed_json_is_stream_error_502():
    [event] = stream_events(b"data: {not json\n\n")
    assert isinstance(event, StreamError)
    assert event.error.status == 502 and event.error.kind is ErrorKind.UPSTREAM


@pytest.mark.parametrize("body", [
    {"choices": [None]},
    {"choices": "x"},
    {"choices": [{"index": 0, "delta": "x"}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [None]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": [0]}]}}]},
    {"id": "a", "created": "yesterday"},
    {"usage": {"prompt_tokens": "many"}},
], ids=["choice-null", "choices-string", "delta-string", "tool-call-null", "index-list", "created-string",
        "usage-string"])
def test_stream_decoder_wrongly_shaped_chunk_is_stream_error_502_not_an_exception(body):
    events = stream_events(b"data: " + orjson.dumps(body) + b"\n\n")
    assert isinstance(events[-1], StreamError)
    assert events[-1].error.status == 502


def test_stream_decoder_close_delivers_an_unterminated_last_chunk():
    decoder = codec.StreamDecoder()
    assert decoder.feed(chunk({"content": "a"}).rstrip(b"\n")) == []
    assert decoder.close() == [Start("chatcmpl-s", "gpt-x", 1760000000), TextDelta("a")]


def test_stream_decoder_frames_pair_raw_bytes_with_events():
    decoder = codec.StreamDecoder()
    pairs = decoder.frames(OPENAI_STREAM)
    assert b"".join(frame.raw for frame, _ in pairs) == OPENAI_STREAM
    assert [ev for _, events in pairs for ev in events] == OPENAI_EVENTS
    assert pairs[-1][1] == [] and pairs[-1][0].data == "[DONE]"


# ================================================================ StreamEncoder

TOOL_EVENTS = [
    Start("chatcmpl-gw", "gpt-x", 1760000000),
    TextDelta("Hé 🌍 "),
    TextDelta("checking."),
    ReasoningDelta("thinking"),
    ToolCallStart(0, "call_a", "weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Oslo"}'),
    ToolCallStart(1, "call_b", "time"),
    ToolCallDelta(1, "{}"),
    Finish(FinishReason.TOOL_CALLS),
    UsageReport(Usage(9, 7, cached_tokens=4, reasoning_tokens=2)),
]


def encode(events: list, include_usage: bool) -> bytes:
    encoder = codec.StreamEncoder(request(Message("user", [TextPart("hi")]), stream=True,
                                          include_usage=include_usage), ROUTE)
    return b"".join(encoder.encode(ev) for ev in events) + encoder.close()


def data_lines(out: bytes) -> list[str]:
    """The data of every event, checked to be strict OpenAI framing: one data line, then a blank line."""
    text = out.decode()
    assert text.endswith("\n\n")
    blocks = text[:-2].split("\n\n")
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), blocks
    return [b[len("data: "):] for b in blocks]


def sdk_client(out: bytes, status: int = 200) -> openai.OpenAI:
    """An SDK client whose HTTP layer answers every call with ``out`` (offline)."""
    content_type = "text/event-stream" if status == 200 else "application/json"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=out, headers={"content-type": content_type})

    return openai.OpenAI(api_key="sk-test", base_url="http://gateway.invalid/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(answer)))


def test_stream_encoder_with_usage_is_valid_openai_sse():
    out = encode(TOOL_EVENTS, include_usage=True)
    lines = data_lines(out)
    assert lines[-1] == "[DONE]"
    chunks = [orjson.loads(line) for line in lines[:-1]]
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
        assert c["id"] == "chatcmpl-gw" and c["created"] == 1760000000 and c["model"] == "gpt-x"
        assert c["object"] == "chat.completion.chunk"
        assert "usage" in c
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == USAGE
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"]
             and "tool_calls" in c["choices"][0]["delta"]]
    assert [("id" in call, "type" in call) for call in calls] == [(True, True), (False, False), (False, False),
                                                                  (True, True), (False, False)]


def test_stream_encoder_without_usage_has_no_usage_chunk():
    lines = data_lines(encode(TOOL_EVENTS, include_usage=False))
    assert lines[-1] == "[DONE]"
    chunks = [orjson.loads(line) for line in lines[:-1]]
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
        assert "usage" not in c and c["choices"]
    assert len(chunks) == len(TOOL_EVENTS) - 1  # every event but the usage report is one chunk


def test_stream_encoder_usage_on_but_none_reported():
    lines = data_lines(encode(TOOL_EVENTS[:-1], include_usage=True))
    assert lines[-1] == "[DONE]"
    assert all(orjson.loads(line)["choices"] for line in lines[:-1])


def test_stream_encoder_output_decodes_back_to_the_same_events():
    assert stream_events(encode(TOOL_EVENTS, include_usage=True)) == TOOL_EVENTS


def test_sdk_reads_the_encoded_stream():
    out = encode(TOOL_EVENTS, include_usage=True)
    stream = sdk_client(out).chat.completions.create(model="gpt-x", messages=[USER], stream=True,
                                                     stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hé 🌍 checking."
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 16
    assert [c.choices[0].delta.model_extra.get("reasoning_content") for c in chunks if c.choices
            and c.choices[0].delta.model_extra.get("reasoning_content")] == ["thinking"]


def test_sdk_stream_state_reassembles_message_and_tool_calls():
    state = ChatCompletionStreamState()
    for line in data_lines(encode(TOOL_EVENTS, include_usage=True))[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate(orjson.loads(line)))
    final = state.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Hé 🌍 checking."
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("call_a", "weather", {"city": "Oslo"}), ("call_b", "time", {})]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.prompt_tokens == 9 and final.usage.completion_tokens == 7


def test_sdk_stream_helper_reassembles_over_the_encoded_bytes():
    out = encode(TOOL_EVENTS, include_usage=False)
    with sdk_client(out).chat.completions.stream(model="gpt-x", messages=[USER]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hé 🌍 checking."
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"city":"Oslo"}'


def test_stream_error_is_an_error_data_line_and_no_done():
    err = GatewayError(502, ErrorKind.UPSTREAM, "upstream went away")
    out = encode([Start("c", "m", 1), TextDelta("par"), StreamError(err)], include_usage=True)
    lines = data_lines(out)
    assert "[DONE]" not in lines
    payload = orjson.loads(lines[-1])
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert payload["error"]["message"] == "upstream went away"
    stream = sdk_client(out).chat.completions.create(model="m", messages=[USER], stream=True)
    with pytest.raises(openai.APIError, match="upstream went away"):
        list(stream)


def test_stream_error_before_start_is_still_valid():
    out = encode([StreamError(GatewayError(504, ErrorKind.TIMEOUT, "slow"))], include_usage=False)
    assert orjson.loads(data_lines(out)[0])["error"]["code"] == "timeout"


@pytest.mark.parametrize("include_usage", [True, False])
def test_relay_drops_the_usage_only_frame_only_when_the_client_did_not_ask(include_usage):
    encoder = codec.StreamEncoder(request(Message("user", [TextPart("hi")]), stream=True,
                                          include_usage=include_usage), ROUTE)
    decoder = codec.StreamDecoder()
    out = b"".join(encoder.relay(frame, events) for frame, events in decoder.frames(OPENAI_STREAM))
    usage_frame = chunk(None, usage=USAGE)
    if include_usage:
        assert out == OPENAI_STREAM
    else:
        assert out == OPENAI_STREAM.replace(usage_frame, b"")
        assert out.endswith(b"data: [DONE]\n\n")


def test_relay_keeps_a_finish_chunk_that_carries_usage():
    encoder = codec.StreamEncoder(request(Message("user", [TextPart("hi")]), stream=True), ROUTE)
    decoder = codec.StreamDecoder()
    decoder.feed(chunk({"content": "x"}))
    data = chunk({}, "stop", usage={"prompt_tokens": 1, "completion_tokens": 1})
    [(frame, events)] = decoder.frames(data)
    assert encoder.relay(frame, events) == data


# ================================================================ errors


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_encode_error_every_kind_has_the_four_keys(kind):
    status, headers, body = codec.encode_error(GatewayError(418, kind, f"bad {kind.value}"))
    parsed = orjson.loads(body)
    assert status == 418
    assert set(parsed) == {"error"}
    assert set(parsed["error"]) == {"message", "type", "param", "code"}
    assert parsed["error"]["message"] == f"bad {kind.value}"
    assert isinstance(parsed["error"]["type"], str) and parsed["error"]["type"]
    assert headers == {}


@pytest.mark.parametrize("kind, type_, code", [
    (ErrorKind.INVALID_REQUEST, "invalid_request_error", None),
    (ErrorKind.AUTHENTICATION, "invalid_request_error", "invalid_api_key"),
    (ErrorKind.NOT_FOUND, "invalid_request_error", "model_not_found"),
    (ErrorKind.RATE_LIMIT, "rate_limit_exceeded", "rate_limit_exceeded"),
    (ErrorKind.QUOTA, "insufficient_quota", "insufficient_quota"),
    (ErrorKind.UPSTREAM, "server_error", "upstream_error"),
])
def test_encode_error_types_follow_the_table(kind, type_, code):
    parsed = orjson.loads(codec.encode_error(GatewayError(400, kind, "x"))[2])["error"]
    assert (parsed["type"], parsed["code"]) == (type_, code)


def test_encode_error_keeps_param_code_and_headers():
    err = GatewayError(400, ErrorKind.INVALID_REQUEST, "bad", param="messages", code="context_length_exceeded",
                       headers={"X-Test": "1"})
    status, headers, body = codec.encode_error(err)
    assert orjson.loads(body)["error"] == {"message": "bad", "type": "invalid_request_error",
                                           "param": "messages", "code": "context_length_exceeded"}
    assert headers == {"X-Test": "1"}


@pytest.mark.parametrize("retry_after, header", [(0.2, "1"), (1, "1"), (1.0, "1"), (1.01, "2"), (30.5, "31"),
                                                 (120, "120")])
def test_encode_error_retry_after_rounded_up_to_whole_seconds(retry_after, header):
    _, headers, _ = codec.encode_error(GatewayError(429, ErrorKind.RATE_LIMIT, "slow down", retry_after=retry_after))
    assert headers == {"Retry-After": header}


def test_sdk_reads_the_encoded_error():
    status, _, body = codec.encode_error(GatewayError(429, ErrorKind.RATE_LIMIT, "slow down"))
    with pytest.raises(openai.RateLimitError) as info:
        sdk_client(body, status).chat.completions.create(model="m", messages=[USER])
    assert info.value.status_code == 429
    assert info.value.body["message"] == "slow down"


DETAIL = [{"type": "extra_forbidden", "loc": ["body", "stream_options"], "msg": "Extra inputs are not permitted",
           "input": {"include_usage": True}}]


@pytest.mark.parametrize("status, body, message, out_status", [
    (400, {"error": {"message": "Bad thing.", "type": "invalid_request_error", "param": None, "code": None}},
     "Bad thing.", 400),
    (429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
     "Rate limit reached", 429),
    (400, {"object": "error", "message": "Invalid model: x", "type": "invalid_model", "param": None,
           "code": "1500"}, "Invalid model: x", 400),
    (422, {"detail": DETAIL}, "Extra inputs are not permitted", 422),
    (422, {"object": "error", "message": {"detail": DETAIL}, "type": "invalid_request_error"},
     "Extra inputs are not permitted", 422),
    (404, {"error": "No models loaded. Please load a model."}, "No models loaded. Please load a model.", 404),
    (500, {"error": {"code": 500}}, "upstream answered 500", 500),
    (500, None, "upstream answered 500", 500),
    (500, [1, 2], "upstream answered 500", 500),
    (401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}},
     "Incorrect API key provided.", 502),
    (403, {"error": {"message": "Country not supported"}}, "Country not supported", 502),
], ids=["openai", "openai-429", "mistral", "422-detail", "mistral-422", "lmstudio-text", "no-message", "null",
        "array", "401", "403"])
def test_decode_error_json_bodies(status, body, message, out_status):
    err = codec.decode_error(status, orjson.dumps(body))
    assert message in err.message
    assert err.status == out_status
    if status in (401, 403):
        assert err.kind is ErrorKind.UPSTREAM and "credentials" in err.message


@pytest.mark.parametrize("status, body, message", [
    (502, b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "HTML"),
    (503, b"  \n<!DOCTYPE html><html></html>", "HTML"),
    (500, b"", "upstream answered 500"),
    (503, b"   ", "upstream answered 503"),
    (500, b"Internal Server Error", "Internal Server Error"),
    (500, b"\xff\xfe not utf-8", "not utf-8"),
], ids=["html", "html-doctype", "empty", "blank", "text", "bad-utf8"])
def test_decode_error_non_json_bodies(status, body, message):
    err = codec.decode_error(status, body)
    assert message in err.message
    assert err.status == status
    assert len(err.message) < 400


def test_decode_error_kinds_follow_status():
    assert codec.decode_error(429, b"{}").kind is ErrorKind.RATE_LIMIT
    assert codec.decode_error(404, b"{}").kind is ErrorKind.NOT_FOUND
    assert codec.decode_error(503, b"{}").kind is ErrorKind.OVERLOADED
    assert codec.decode_error(500, b"{}").kind is ErrorKind.SERVER


# ================================================================ models


def test_models_round_trip():
    body = codec.encode_models(["a", "b"])
    assert body == {"object": "list", "data": [
        {"id": "a", "object": "model", "created": 0, "owned_by": "aigateway"},
        {"id": "b", "object": "model", "created": 0, "owned_by": "aigateway"}]}
    assert codec.decode_models({"data": [*body["data"], {"id": 5}, "junk", {}]}) == ["a", "b"]

"""The Gemini codec: pure functions, recorded bytes in, bytes and events out. Everything the gateway
writes for google-genai clients is parsed back with the SDK's own REST converters and types."""

from __future__ import annotations

import copy

import orjson
import pytest
from google.genai import errors as genai_errors
from google.genai import models as genai_models
from google.genai import types

from aigateway.formats import gemini
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

ROUTE = Route(model="gemini-2.5-flash", stream=False)


def sdk_response(chunk: dict) -> types.GenerateContentResponse:
    """Parse a GenerateContentResponse the way google-genai does for the Developer API."""
    mapped = genai_models._GenerateContentResponse_from_mldev(copy.deepcopy(chunk))
    return types.GenerateContentResponse._from_response(response=mapped, kwargs={})


def sse_payloads(data: bytes) -> list[dict]:
    """Split SSE the way google-genai does: only lines starting with ``data: `` count."""
    assert data.endswith(b"\n\n")
    out = []
    for event in data.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: ") and b"\n" not in event, event
        out.append(orjson.loads(event[6:]))
    return out


def request(messages: list[Message], model: str = "gemini-2.5-flash", **kw) -> ChatRequest:
    return ChatRequest(model=model, messages=messages, **kw)


def encode(req: ChatRequest) -> dict:
    return gemini.encode_request(req, Policy(req.model or "gemini-2.5-flash"))[1]


# ---------------------------------------------------------------- encode_request (upstream)


def test_encode_paths_system_and_params() -> None:
    params = Params(max_tokens=100, temperature=0.5, top_p=0.9, top_k=40, stop=["END"], n=2, seed=7,
                    presence_penalty=0.1, frequency_penalty=0.2, user="u1")
    req = request([Message("user", [TextPart("hi")])], system=["be terse", "be kind"], params=params)
    path, body = gemini.encode_request(req, Policy("gemini-2.5-flash"))
    assert path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert body["systemInstruction"] == {"parts": [{"text": "be terse"}, {"text": "be kind"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert body["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9, "topK": 40,
                                        "stopSequences": ["END"], "candidateCount": 2, "seed": 7,
                                        "presencePenalty": 0.1, "frequencyPenalty": 0.2}
    req.stream, req.model = True, "models/gemini-x"
    assert gemini.encode_request(req, Policy("gemini-x"))[0] == (
        "/v1beta/models/gemini-x:streamGenerateContent?alt=sse")


def test_encode_merges_roles_and_prepends_user() -> None:
    body = encode(request([Message("assistant", [TextPart("earlier answer")]),
                           Message("user", [TextPart("a")]), Message("user", [TextPart("b"), TextPart("")])]))
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": gemini.CONTINUE_TEXT}]},
        {"role": "model", "parts": [{"text": "earlier answer"}]},
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
    ]


def test_encode_images() -> None:
    body = encode(request([Message("user", [
        ImagePart(media_type="image/png", data="iVBOR"),
        ImagePart(url="data:image/webp;base64,UklGR"),
        ImagePart(url="https://example.com/cat.PNG?x=1"),
        ImagePart(url="https://example.com/photo"),
        ImagePart(url="gs://bucket/doc.pdf", media_type="application/pdf"),
    ])]))
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
        {"inlineData": {"mimeType": "image/webp", "data": "UklGR"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.PNG?x=1"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
    ]


def tool_history() -> list[Message]:
    """An OpenAI-style tool conversation: two parallel calls, their results, then a new user text."""
    return [
        Message("user", [TextPart("weather in Oslo and Bergen?")]),
        Message("assistant", [
            ReasoningPart("thinking...", "anthropic-sig"), TextPart("Checking."),
            ToolCallPart("call_a", "get_weather", '{"city": "Oslo"}', {"thought_signature": "c2ln"}),
            ToolCallPart("call_b", "get_weather", "not json"), ToolCallPart("call_c", "get_time", "")]),
        Message("user", [ToolResultPart("call_a", '{"temp_c": 4}'), ToolResultPart("call_b", "rain"),
                         ToolResultPart("call_c", "boom", is_error=True)]),
        Message("user", [TextPart("and tomorrow?")]),
    ]


def test_encode_tool_history() -> None:
    contents = encode(request(tool_history()))["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert contents[1]["parts"] == [  # reasoning dropped; the signature rides beside its functionCall
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "get_weather", "args": {}}},
        {"functionCall": {"name": "get_time", "args": {}}},
    ]
    assert contents[2]["parts"] == [  # all results of the turn in ONE content, names looked up by id
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 4}}},
        {"functionResponse": {"name": "get_weather", "response": {"result": "rain"}}},
        {"functionResponse": {"name": "get_time", "response": {"error": "boom"}}},
    ]
    assert contents[3] == {"role": "model", "parts": [{"text": gemini.BRIDGE_TEXT}]}  # text kept apart
    assert contents[4] == {"role": "user", "parts": [{"text": "and tomorrow?"}]}


def test_encode_results_and_text_in_one_message_are_split() -> None:
    contents = encode(request([
        Message("user", [TextPart("q")]),
        Message("assistant", [ToolCallPart("t1", "f", "{}")]),
        Message("user", [ToolResultPart("t1", "[1, 2]", name="f"), TextPart("now summarise")]),
    ]))["contents"]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "f", "response": {"result": "[1, 2]"}}}]
    assert contents[3]["role"] == "model" and contents[4]["parts"] == [{"text": "now summarise"}]


def test_encode_signature_stand_in_for_gemini_3_only() -> None:
    history = [Message("user", [TextPart("q")]),
               Message("assistant", [ToolCallPart("a", "f", "{}"), ToolCallPart("b", "f", "{}")]),
               Message("user", [ToolResultPart("a", "1"), ToolResultPart("b", "2")])]
    model3 = encode(request(history, model="gemini-3-pro-preview"))["contents"][1]["parts"]
    assert model3[0]["thoughtSignature"] == gemini.SKIP_SIGNATURE and "thoughtSignature" not in model3[1]
    model25 = encode(request(history, model="gemini-2.5-flash"))["contents"][1]["parts"]
    assert all("thoughtSignature" not in p for p in model25)
    signed = [Message("assistant", [ToolCallPart("a", "f", "{}", {"thought_signature": "real"})])]
    part = encode(request(signed, model="gemini-3-flash"))["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == "real"


def test_encode_response_format_and_reasoning() -> None:
    msgs = [Message("user", [TextPart("q")])]
    cfg = encode(request(msgs, response_format=ResponseFormat("json_object")))["generationConfig"]
    assert cfg == {"responseMimeType": "application/json"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    fmt = ResponseFormat("json_schema", schema, "x")
    cfg = encode(request(msgs, response_format=fmt))["generationConfig"]
    assert cfg == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert "generationConfig" not in encode(request(msgs, response_format=ResponseFormat("text")))
    for effort, budget in (("low", 1024), ("medium", 8192), ("high", 24576)):
        cfg = encode(request(msgs, params=Params(reasoning_effort=effort)))["generationConfig"]
        assert cfg == {"thinkingConfig": {"thinkingBudget": budget, "includeThoughts": True}}
    params = Params(reasoning_budget=2000, reasoning_effort="high")
    cfg = encode(request(msgs, params=params))["generationConfig"]
    assert cfg["thinkingConfig"] == {"thinkingBudget": 2000, "includeThoughts": True}
    assert encode(request(msgs, params=Params(reasoning_effort="none")))["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 0}}


def test_encode_tools_sanitizes_schema() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"], "description": "unit"}},
        "properties": {
            "city": {"type": "string", "format": "uri", "title": "City"},
            "when": {"type": ["string", "null"], "format": "date-time"},
            "unit": {"anyOf": [{"$ref": "#/$defs/Unit"}, {"type": "null"}], "description": "the unit"},
            "days": {"type": "array", "items": {"type": "integer", "format": "int32"}, "maxItems": 7},
            "mode": {"const": "fast"},
            "either": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "nested": {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x", "ghost"],
                       "additionalProperties": {"type": "string"}},
        },
        "required": ["city"],
    }
    tools = [Tool("get_weather", "Current weather", schema),
             Tool("ping", None, {"type": "object", "properties": {}}), Tool("noargs", "", None)]
    req = request([Message("user", [TextPart("q")])], tools=tools, tool_choice=ToolChoice("auto"))
    body = encode(req)
    decls = body["tools"][0]["functionDeclarations"]
    assert len(body["tools"]) == 1 and [d["name"] for d in decls] == ["get_weather", "ping", "noargs"]
    assert decls[1] == {"name": "ping"} and decls[2] == {"name": "noargs"}  # empty OBJECTs are rejected
    assert decls[0]["description"] == "Current weather"
    assert decls[0]["parameters"] == {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "title": "City"},
            "when": {"type": "STRING", "format": "date-time", "nullable": True},
            "unit": {"type": "STRING", "enum": ["c", "f"], "description": "the unit", "nullable": True},
            "days": {"type": "ARRAY", "items": {"type": "INTEGER", "format": "int32"}, "maxItems": 7},
            "mode": {"type": "STRING", "enum": ["fast"]},
            "either": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]},
            "nested": {"type": "OBJECT", "properties": {"x": {"type": "BOOLEAN"}}, "required": ["x"]},
        },
        "required": ["city"],
    }
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    types.Tool.model_validate(body["tools"][0])  # the SDK's own Schema model accepts it


def test_encode_tool_choice_and_recursive_ref() -> None:
    tree = {"$defs": {"Node": {"type": "object", "properties": {"kids": {"type": "array",
                                                                        "items": {"$ref": "#/$defs/Node"}}}}},
            "type": "object", "properties": {"root": {"$ref": "#/$defs/Node"}}}
    msgs = [Message("user", [TextPart("q")])]
    for choice, expected in ((ToolChoice("none"), {"mode": "NONE"}),
                             (ToolChoice("required"), {"mode": "ANY"}),
                             (ToolChoice("tool", "f"), {"mode": "ANY", "allowedFunctionNames": ["f"]})):
        body = encode(request(msgs, tools=[Tool("f", None, tree)], tool_choice=choice))
        assert body["toolConfig"] == {"functionCallingConfig": expected}
        params = body["tools"][0]["functionDeclarations"][0]["parameters"]
        assert params["properties"]["root"]["type"] == "OBJECT"
    assert "toolConfig" not in encode(request(msgs, tool_choice=ToolChoice("auto")))


# ---------------------------------------------------------------- patch_request (same-format fast path)


def test_patch_request_camel_case() -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}], "systemInstruction": {"parts": [{"text": "mine"}]},
            "generationConfig": {"maxOutputTokens": 5000, "temperature": 1}, "safetySettings": [{"x": 1}],
            "cachedContent": "cachedContents/1"}
    path, out = gemini.patch_request(body, Policy("models/gemini-x", system="policy", max_tokens=1000),
                                     Route("gemini-y", stream=True, sse=False))
    assert path == "/v1beta/models/gemini-x:streamGenerateContent?alt=sse"  # always SSE upstream
    assert out["systemInstruction"]["parts"] == [{"text": "policy"}, {"text": "mine"}]
    assert out["generationConfig"] == {"maxOutputTokens": 1000, "temperature": 1}
    assert out["safetySettings"] == [{"x": 1}] and out["cachedContent"] == "cachedContents/1"


def test_patch_request_snake_case_and_missing() -> None:
    body = {"contents": [], "system_instruction": {"parts": [{"text": "mine"}]},
            "generation_config": {"max_output_tokens": 10}}
    path, out = gemini.patch_request(body, Policy("gemini-x", system="policy", max_tokens=1000), Route("m"))
    assert path == "/v1beta/models/gemini-x:generateContent"
    assert "systemInstruction" not in out and out["system_instruction"]["parts"][0] == {"text": "policy"}
    assert out["generation_config"] == {"max_output_tokens": 10}
    _, out = gemini.patch_request({"contents": []}, Policy("g", system="s", max_tokens=50), Route("g"))
    assert out == {"contents": [], "systemInstruction": {"parts": [{"text": "s"}]},
                   "generationConfig": {"maxOutputTokens": 50}}
    body = {"contents": [], "generationConfig": {"maxOutputTokens": 9}}
    _, out = gemini.patch_request(body, Policy("g"), Route())
    assert out == {"contents": [], "generationConfig": {"maxOutputTokens": 9}}


# ---------------------------------------------------------------- decode_request (inbound)

# What google-genai 3.6 sent to a loopback server: camelCase with snake_case inside (mime_type,
# parameters_json_schema, thinking_config fields), plus a function turn.
SDK_BODY = {
    "contents": [
        {"parts": [{"text": "hi"}, {"inlineData": {"data": "iVBORw==", "mime_type": "image/png"}}],
         "role": "user"},
        {"parts": [{"functionCall": {"args": {"x": "1"}, "name": "g"}, "thoughtSignature": "c2ln"}],
         "role": "model"},
        {"parts": [{"functionResponse": {"name": "g", "response": {"r": 1}}}], "role": "user"},
    ],
    "systemInstruction": {"parts": [{"text": "be terse"}], "role": "user"},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
    "tools": [{"functionDeclarations": [
        {"description": "d", "name": "g",
         "parameters_json_schema": {"type": "object", "properties": {"x": {"type": ["string", "null"]}}}},
        {"name": "h", "parameters": {
            "type": "OBJECT", "required": ["q"], "propertyOrdering": ["q", "n"],
            "properties": {"q": {"type": "STRING", "nullable": True},
                           "n": {"type": "ARRAY", "items": {"type": "INTEGER"}}}}}]},
        {"googleSearch": {}}],
    "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": ["g"], "mode": "ANY"}},
    "generationConfig": {
        "temperature": 0.5, "maxOutputTokens": 100, "stopSequences": ["x"], "topK": 40.0,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
        "thinkingConfig": {"include_thoughts": True, "thinking_budget": 1024, "thinking_level": "LOW"},
    },
}


def test_decode_sdk_body() -> None:
    req = gemini.decode_request(copy.deepcopy(SDK_BODY), Route("models/gemini-2.5-flash", stream=True))
    assert req.model == "gemini-2.5-flash" and req.stream and req.system == ["be terse"]
    user, model, result = req.messages
    assert user == Message("user", [TextPart("hi"), ImagePart(media_type="image/png", data="iVBORw==")])
    call = model.parts[0]
    assert isinstance(call, ToolCallPart) and call.name == "g" and orjson.loads(call.arguments) == {"x": "1"}
    assert call.id.startswith("call_") and call.provider_data == {"thought_signature": "c2ln"}
    assert result.parts == [ToolResultPart(call.id, '{"r":1}', "g")]
    p = req.params
    assert (p.temperature, p.max_tokens, p.stop, p.top_k, p.reasoning_budget, p.reasoning_effort) == (
        0.5, 100, ["x"], 40, 1024, "low")
    assert req.response_format == ResponseFormat("json_schema", {"type": "object",
                                                                 "properties": {"a": {"type": "string"}}})
    assert req.tools == [
        Tool("g", "d", {"type": "object", "properties": {"x": {"type": ["string", "null"]}}}),
        Tool("h", None, {"type": "object", "required": ["q"],
                         "properties": {"q": {"type": ["string", "null"]},
                                        "n": {"type": "array", "items": {"type": "integer"}}}}),
    ]
    assert req.tool_choice == ToolChoice("tool", "g")
    assert req.extra == {"safetySettings": SDK_BODY["safetySettings"]}


def test_decode_snake_case_everywhere() -> None:
    body = {
        "system_instruction": {"parts": [{"text": "s1"}, {"text": "s2"}]},
        "contents": [
            {"parts": [{"text": "look"}, {"inline_data": {"mime_type": "image/jpeg", "data": "AAA"}},
                       {"file_data": {"mime_type": "application/pdf", "file_uri": "https://x/f.pdf"}}]},
            {"role": "model", "parts": [{"text": "hmm", "thought": True, "thought_signature": "ts"},
                                        {"function_call": {"name": "f", "args": {"a": 1}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"result": "ok"}}}]},
        ],
        "generation_config": {"max_output_tokens": 7, "stop_sequences": "END", "top_p": 0.5,
                              "candidate_count": 1,
                              "response_mime_type": "application/json",
                              "response_schema": {"type": "OBJECT", "properties": {"k": {"type": "STRING"}}},
                              "presence_penalty": 0.5, "frequency_penalty": 0.25, "seed": 3,
                              "thinking_config": {"thinking_budget": -1}},
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
        "tools": [{"function_declarations": [{"name": "f", "description": "F"}]}],
    }
    req = gemini.decode_request(body, ROUTE)
    assert req.system == ["s1", "s2"] and not req.stream
    assert req.messages[0].parts[1:] == [ImagePart(media_type="image/jpeg", data="AAA="),
                                         ImagePart(media_type="application/pdf", url="https://x/f.pdf")]
    assert req.messages[1].parts[0] == ReasoningPart("hmm")  # a thought's signature stays with Gemini
    assert req.messages[2].parts == [ToolResultPart(req.messages[1].parts[1].id, "ok", "f")]
    p = req.params
    assert (p.max_tokens, p.stop, p.top_p, p.n, p.seed, p.presence_penalty, p.frequency_penalty) == (
        7, ["END"], 0.5, 1, 3, 0.5, 0.25)
    assert p.reasoning_budget is None  # -1 = dynamic
    assert req.response_format == ResponseFormat("json_schema", {"type": "object",
                                                                 "properties": {"k": {"type": "string"}}})
    assert req.tool_choice == ToolChoice("none") and req.tools == [Tool("f", "F", None)]
    assert req.extra == {}


def test_decode_json_mode_and_error_wrapper() -> None:
    body = {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                         {"role": "user", "parts": [{"functionResponse": {"name": "f",
                                                                          "response": {"error": "bad"}}}]}],
            "generationConfig": {"responseMimeType": "application/json"}}
    req = gemini.decode_request(body, ROUTE)
    assert req.response_format == ResponseFormat("json_object")
    assert req.messages[1].parts[0].is_error and req.messages[1].parts[0].content == "bad"
    assert req.messages[0].parts[0].arguments == "{}"


CONVERSATION = [
    {"role": "user", "parts": [{"text": "weather in Oslo and Bergen, and the time?"}]},
    {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
                                {"functionCall": {"name": "weather", "args": {"city": "Bergen"}}},
                                {"functionCall": {"name": "time", "args": {}}}]},
    {"role": "user", "parts": [{"functionResponse": {"name": "time", "response": {"result": "noon"}}},
                               {"functionResponse": {"name": "weather", "response": {"result": "4C"}}},
                               {"functionResponse": {"name": "weather", "response": {"result": "9C"}}}]},
    {"role": "model", "parts": [{"text": "Oslo 4C, Bergen 9C at noon."}]},
    {"role": "user", "parts": [{"text": "and Paris?"}]},
    {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"},
                                                  "id": "given-1"}}]},
    {"role": "user", "parts": [{"functionResponse": {"name": "weather", "id": "given-1",
                                                     "response": {"temp": 12}}}]},
]


def test_decode_ids_stable_and_linked_across_turns() -> None:
    first = gemini.decode_request({"contents": CONVERSATION[:3]}, ROUTE).messages
    full = gemini.decode_request({"contents": CONVERSATION}, ROUTE).messages
    ids = [p.id for p in first[1].parts]
    assert len(set(ids)) == 3 and [p.id for p in full[1].parts] == ids  # same ids as the history grows
    # responses link by name to the earliest unanswered call of that name
    links = [(r.tool_call_id, r.content) for r in full[2].parts]
    assert links == [(ids[2], "noon"), (ids[0], "4C"), (ids[1], "9C")]
    assert full[5].parts[0].id == "given-1" and full[6].parts[0].tool_call_id == "given-1"
    assert full[6].parts[0].content == '{"temp":12}'
    # and the OpenAI-shaped round trip back to Gemini keeps every name
    contents = encode(ChatRequest("gemini-2.5-flash", full))["contents"]
    names = [p["functionResponse"]["name"] for p in contents[2]["parts"]]
    assert names == ["time", "weather", "weather"]


TEXT = [{"parts": [{"text": "x"}]}]


@pytest.mark.parametrize("body, fragment", [
    ({}, "contents"),
    ({"contents": []}, "contents"),
    ({"contents": "hi"}, "contents"),
    ({"contents": [{"role": "user"}]}, "parts"),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "role"),
    ({"contents": ["hi"]}, "contents[0]"),
    ({"contents": [{"parts": ["hi"]}]}, "parts[0]"),
    ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png"}}]}]}, "inlineData"),
    ({"contents": [{"parts": [{"fileData": {}}]}]}, "fileUri"),
    ({"contents": [{"parts": [{"functionCall": {"args": {}}}]}]}, "function part"),
    ({"contents": [{"parts": [{"functionCall": {"name": "f", "args": "x"}}]}]}, "function part"),
    ({"contents": TEXT, "generationConfig": "hot"}, "generationConfig"),
    ({"contents": TEXT, "generationConfig": {"maxOutputTokens": "9"}}, "maxOutputTokens"),
    ({"contents": TEXT, "generationConfig": {"maxOutputTokens": 0}}, "maxOutputTokens"),
    ({"contents": TEXT, "generationConfig": {"temperature": True}}, "temperature"),
    ({"contents": TEXT, "generationConfig": {"stopSequences": [1]}}, "stopSequences"),
    ({"contents": TEXT, "generationConfig": {"thinkingConfig": {"thinkingBudget": "a"}}}, "thinkingBudget"),
    ({"contents": TEXT, "tools": {"a": 1}}, "tools"),
    ({"contents": TEXT, "tools": [{"functionDeclarations": [{"description": "x"}]}]}, "name"),
    ({"contents": TEXT, "systemInstruction": 5}, "systemInstruction"),
    ({"contents": TEXT, "generationConfig": {"thinkingConfig": 3, "topK": "x"}}, "topK"),
    ({"contents": TEXT, "toolConfig": {"functionCallingConfig": 5}}, "toolConfig"),
])
def test_decode_malformed_is_400(body: dict, fragment: str) -> None:
    with pytest.raises(GatewayError) as info:
        gemini.decode_request(body, ROUTE)
    assert info.value.status == 400 and info.value.kind is ErrorKind.INVALID_REQUEST
    assert fragment in info.value.message
    assert orjson.loads(gemini.encode_error(info.value)[2])["error"]["status"] == "INVALID_ARGUMENT"


def test_decode_not_a_dict_and_odd_parts() -> None:
    with pytest.raises(GatewayError):
        gemini.decode_request([], ROUTE)  # type: ignore[arg-type]
    req = gemini.decode_request({"contents": [{"parts": [{"text": "x"}, {"executableCode": {"code": "1"}}]},
                                              {"role": "model", "parts": [{"videoMetadata": {}}]}]}, Route())
    assert req.model is None and req.messages == [Message("user", [TextPart("x")])]


# ---------------------------------------------------------------- decode_response (upstream)


def test_decode_response_text_thoughts_calls_usage() -> None:
    body = {"candidates": [{"index": 0, "finishReason": "STOP", "safetyRatings": [], "avgLogprobs": -0.1,
                            "content": {"role": "model", "parts": [
                                {"text": "plan", "thought": True}, {"text": "Hi "}, {"text": "there"},
                                {"functionCall": {"name": "f", "args": {"a": [1]}},
                                 "thoughtSignature": "sig"},
                                {"executableCode": {}}, {"newKind": 1}]}}],
            "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 7, "thoughtsTokenCount": 120,
                              "cachedContentTokenCount": 10, "toolUsePromptTokenCount": 5,
                              "totalTokenCount": 172,
                              "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 40}]},
            "modelVersion": "gemini-2.5-flash", "responseId": "abc", "somethingNew": {"x": 1}}
    resp = gemini.decode_response(body)
    assert (resp.id, resp.model, resp.created) == ("abc", "gemini-2.5-flash", 0)
    assert resp.finish is FinishReason.TOOL_CALLS
    assert resp.parts[:2] == [ReasoningPart("plan"), TextPart("Hi there")]
    call = resp.parts[2]
    assert isinstance(call, ToolCallPart) and call.id.startswith("call_") and call.name == "f"
    assert orjson.loads(call.arguments) == {"a": [1]} and call.provider_data == {"thought_signature": "sig"}
    assert resp.usage == Usage(input_tokens=45, output_tokens=127, cached_tokens=10, reasoning_tokens=120)


@pytest.mark.parametrize("reason, expected", [
    ("STOP", FinishReason.STOP), ("MAX_TOKENS", FinishReason.LENGTH), ("SAFETY", FinishReason.CONTENT_FILTER),
    ("RECITATION", FinishReason.CONTENT_FILTER), ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
    ("MALFORMED_FUNCTION_CALL", FinishReason.STOP), ("OTHER", FinishReason.STOP),
    ("SOME_FUTURE_REASON", FinishReason.STOP),
])
def test_decode_response_finish_reasons(reason: str, expected: FinishReason) -> None:
    body = {"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert gemini.decode_response(body).finish is expected


def test_decode_response_blocked_prompt_and_errors() -> None:
    blocked = gemini.decode_response({"promptFeedback": {"blockReason": "SAFETY"},
                                      "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}})
    assert blocked.finish is FinishReason.CONTENT_FILTER and blocked.parts == []
    assert blocked.usage.input_tokens == 3
    with pytest.raises(GatewayError) as info:
        gemini.decode_response({"error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED"}})
    assert info.value.status == 429
    with pytest.raises(GatewayError) as info:
        gemini.decode_response({"candidates": [{"content": {"parts": 5}}], "usageMetadata": {"x": "y"}})
    assert info.value.status == 502


# ---------------------------------------------------------------- StreamDecoder (upstream)

RECORDED = (
    'data: {"candidates":[{"content":{"parts":[{"text":"**Plan** it","thought":true}],"role":"model"},'
    '"index":0}],"usageMetadata":{"promptTokenCount":40,"totalTokenCount":40},"modelVersion":"gemini-2.5-flash",'
    '"responseId":"resp-1"}\r\n\r\n'
    'data: {"candidates":[{"content":{"parts":[{"text":"Smørbrød é 🍞 "}],"role":"model"},"index":0}],'
    '"usageMetadata":{"promptTokenCount":40,"candidatesTokenCount":3,"totalTokenCount":43},'
    '"modelVersion":"gemini-2.5-flash","responseId":"resp-1"}\n\n'
    ': a comment line\n\n'
    'data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"weather","args":{"city":"Oslo"}},'
    '"thoughtSignature":"c2lnMQ=="},{"functionCall":{"name":"weather","args":{"city":"Bergen"}}}],'
    '"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":40,'
    '"candidatesTokenCount":20,"thoughtsTokenCount":100,"cachedContentTokenCount":8,"totalTokenCount":160},'
    '"modelVersion":"gemini-2.5-flash","responseId":"resp-1"}\n\n'
    'data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP",'
    '"index":0}],'
    '"usageMetadata":{"promptTokenCount":40,"candidatesTokenCount":21,"thoughtsTokenCount":100,'
    '"cachedContentTokenCount":8,"totalTokenCount":161},"modelVersion":"gemini-2.5-flash",'
    '"responseId":"resp-1"}\n\n'
).encode()


def decode_all(data: bytes, step: int | None = None) -> list:
    dec = gemini.StreamDecoder()
    if step is None:
        return dec.feed(data) + dec.close()
    events = []
    for i in range(0, len(data), step):
        events += dec.feed(data[i:i + step])
    return events + dec.close()


def test_stream_decoder_events() -> None:
    events = decode_all(RECORDED)
    # the first chunk's prompt count rides on Start, so an Anthropic message_start can report it
    assert events[0] == Start("resp-1", "gemini-2.5-flash", 0, Usage(input_tokens=40))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Start", "ReasoningDelta", "UsageReport", "TextDelta", "UsageReport",
                     "ToolCallStart", "ToolCallDelta", "ToolCallStart", "ToolCallDelta", "Finish",
                     "UsageReport", "UsageReport"]
    assert events[3] == TextDelta("Smørbrød é 🍞 ")
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.name, s.provider_data) for s in starts] == [
        (0, "weather", {"thought_signature": "c2lnMQ=="}), (1, "weather", {})]
    assert starts[0].id != starts[1].id and starts[0].id == decode_all(RECORDED)[5].id  # deterministic
    args = [e.args for e in events if isinstance(e, ToolCallDelta)]
    assert args == ['{"city":"Oslo"}', '{"city":"Bergen"}']
    assert [e for e in events if isinstance(e, Finish)] == [Finish(FinishReason.TOOL_CALLS)]
    resp = fold(events[0], events[1:])  # the last usage wins, never a sum
    assert resp.usage == Usage(input_tokens=40, output_tokens=121, cached_tokens=8, reasoning_tokens=100)


def test_stream_decoder_every_split_point() -> None:
    whole = decode_all(RECORDED)
    assert decode_all(RECORDED, step=1) == whole
    for cut in range(1, len(RECORDED)):
        dec = gemini.StreamDecoder()
        assert dec.feed(RECORDED[:cut]) + dec.feed(RECORDED[cut:]) + dec.close() == whole, cut


def test_stream_decoder_frames_tap_and_unterminated_last_event() -> None:
    dec = gemini.StreamDecoder()
    pairs = dec.frames(RECORDED)
    assert b"".join(f.raw for f, _ in pairs) == RECORDED.replace(b": a comment line\n\n", b"")
    assert [ev for _, evs in pairs for ev in evs] == decode_all(RECORDED)
    cut = RECORDED.rstrip(b"\n")
    assert decode_all(cut) == decode_all(RECORDED)


def test_stream_decoder_error_frames() -> None:
    err = (b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]}}],"responseId":"r"}\n\n'
           b'data: {"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED",'
           b'"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"31.5s"}]}}\n\n')
    events = decode_all(err)
    assert isinstance(events[-1], StreamError)
    assert events[-1].error.status == 429 and events[-1].error.retry_after == 31.5
    assert events[-1].error.message == "Resource exhausted"
    # errors may also arrive as bare, pretty-printed JSON lines (google-genai brace-balances them)
    bare = (b'data: {"responseId":"r"}\n\n{\n  "error": {\n    "code": 503,\n'
            b'    "message": "overloaded {x}",\n    "status": "UNAVAILABLE"\n  }\n}\n')
    for step in (None, 1, 7):
        events = decode_all(bare, step)
        assert isinstance(events[-1], StreamError) and events[-1].error.status == 503, step
        assert events[-1].error.message == "overloaded {x}"
    events = decode_all(b"data: {not json\n\n")
    assert isinstance(events[0], StreamError) and events[0].error.status == 502
    assert decode_all(b'data: []\n\ndata: \n\n') == []


def test_stream_decoder_reads_candidate_zero_only() -> None:
    data = (b'data: {"candidates":[{"index":1,"content":{"parts":[{"text":"other"}]}}],"responseId":"r"}\n\n'
            b'data: {"candidates":[{"index":1,"finishReason":"MAX_TOKENS"},'
            b'{"content":{"parts":[{"text":"mine"}]},"finishReason":"STOP"}]}\n\n')
    events = decode_all(data)
    assert events[1:] == [TextDelta("mine"), Finish(FinishReason.STOP)]


def test_stream_decoder_blocked_prompt_and_single_finish() -> None:
    data = b'data: {"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"responseId":"r"}\n\n' \
           b'data: {"candidates":[{"finishReason":"SAFETY"}]}\n\n'
    assert [e for e in decode_all(data) if isinstance(e, Finish)] == [Finish(FinishReason.CONTENT_FILTER)]


# ---------------------------------------------------------------- StreamEncoder and encode_response (inbound)


def stream_events() -> list:
    return [Start("resp-9", "gemini-x", 0), ReasoningDelta("think", "sig-from-elsewhere"), TextDelta("Hel"),
            TextDelta("lo ✓"), TextDelta(""),
            ToolCallStart(0, "call_1", "weather", {"thought_signature": "czE="}),
            ToolCallDelta(0, '{"city":'), ToolCallDelta(0, ' "Oslo"}'), ToolCallStart(1, "call_2", "time"),
            Finish(FinishReason.TOOL_CALLS),
            UsageReport(Usage(input_tokens=10, output_tokens=30, cached_tokens=4, reasoning_tokens=12))]


def run_encoder(route: Route, events: list) -> tuple[gemini.StreamEncoder, bytes]:
    enc = gemini.StreamEncoder(ChatRequest("gemini-x", [], stream=True), route)
    return enc, b"".join(enc.encode(e) for e in events) + enc.close()


def check_chunks(chunks: list[dict]) -> None:
    parsed = [sdk_response(c) for c in chunks]
    assert all(c["responseId"] == "resp-9" and c["modelVersion"] == "gemini-x" for c in chunks)
    assert parsed[0].candidates[0].content.parts[0].thought is True
    assert "".join(p.text or "" for p in parsed[1:] if p.text) == "Hello ✓"
    last = parsed[-1]
    assert [(f.name, f.args) for f in last.function_calls] == [("weather", {"city": "Oslo"}), ("time", {})]
    assert last.candidates[0].content.parts[0].thought_signature == b"s1"  # base64 text, bytes to the SDK
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    usage = last.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count,
            usage.cached_content_token_count, usage.total_token_count) == (10, 18, 12, 4, 40)
    assert all(p.usage_metadata is None for p in parsed[:-1])


def test_stream_encoder_sse_validated_by_sdk() -> None:
    enc, data = run_encoder(Route("gemini-x", True, sse=True), stream_events())
    assert enc.content_type == "text/event-stream"
    chunks = sse_payloads(data)
    assert len(chunks) == 4
    check_chunks(chunks)


def test_stream_encoder_json_array_validated_by_sdk() -> None:
    enc, data = run_encoder(Route("gemini-x", True, sse=False), stream_events())
    assert enc.content_type == "application/json"
    check_chunks(orjson.loads(data))


def test_stream_encoder_usage_after_close_order_and_text_after_calls() -> None:
    events = [Start("r", "m", 0), ToolCallStart(0, "c", "f"), ToolCallDelta(0, "bad json"),
              TextDelta("after"), Finish(FinishReason.LENGTH)]
    _, data = run_encoder(Route(sse=True), events)
    chunks = sse_payloads(data)
    assert chunks[0]["candidates"][0]["content"]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]
    assert chunks[1]["candidates"][0]["content"]["parts"] == [{"text": "after"}]
    assert chunks[2]["candidates"][0]["finishReason"] == "MAX_TOKENS" and "usageMetadata" not in chunks[2]
    assert sdk_response(chunks[2]).text == ""


def test_stream_encoder_errors() -> None:
    err = GatewayError(429, ErrorKind.RATE_LIMIT, "slow down", retry_after=2.5)
    events = [Start("r", "m", 0), TextDelta("a"), StreamError(err), TextDelta("b")]
    enc, data = run_encoder(Route(sse=True), events)
    chunks = sse_payloads(data)
    assert len(chunks) == 2 and chunks[0]["candidates"][0]["content"]["parts"] == [{"text": "a"}]
    error = chunks[1]
    assert error["error"]["code"] == 429 and error["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert list(error) == ["error"]  # google-genai raises on a chunk that starts with {"error":
    with pytest.raises(genai_errors.ClientError) as info:
        genai_errors.APIError.raise_error(error["error"]["code"], error, None)
    assert info.value.status == "RESOURCE_EXHAUSTED" and info.value.message == "slow down"
    _, data = run_encoder(Route(sse=False), [StreamError(GatewayError(502, ErrorKind.UPSTREAM, "gone"))])
    assert orjson.loads(data) == [{"error": {"code": 502, "message": "gone", "status": "UNAVAILABLE"}}]


def test_stream_round_trip_through_own_decoder() -> None:
    _, data = run_encoder(Route(sse=True), stream_events())
    events = decode_all(data)
    resp = fold(events[0], events[1:])
    assert resp.finish is FinishReason.TOOL_CALLS
    kinds = [type(p).__name__ for p in resp.parts]
    assert kinds == ["ReasoningPart", "TextPart", "ToolCallPart", "ToolCallPart"]
    assert resp.parts[2].provider_data == {"thought_signature": "czE="}
    assert resp.usage == Usage(input_tokens=10, output_tokens=30, cached_tokens=4, reasoning_tokens=12)


def test_relay_fast_path() -> None:
    dec = gemini.StreamDecoder()
    pairs = dec.frames(RECORDED)
    enc = gemini.StreamEncoder(ChatRequest("m", []), Route(sse=True))
    assert b"".join(enc.relay(f, evs) for f, evs in pairs) + enc.close() == b"".join(f.raw for f, _ in pairs)
    enc = gemini.StreamEncoder(ChatRequest("m", []), Route(sse=False))
    out = b"".join(enc.relay(f, evs) for f, evs in pairs) + enc.close()
    chunks = orjson.loads(out)
    assert len(chunks) == 4 and [sdk_response(c).response_id for c in chunks] == ["resp-1"] * 4
    enc = gemini.StreamEncoder(ChatRequest("m", []), Route(sse=False))  # failure after relayed frames
    failure = StreamError(GatewayError(504, ErrorKind.TIMEOUT, "t"))
    out = enc.relay(*pairs[0]) + enc.encode(failure) + enc.close()
    assert orjson.loads(out)[1]["error"]["status"] == "DEADLINE_EXCEEDED"


def test_encode_response_validated_by_sdk() -> None:
    resp = ChatResponse("id-1", "claude-x", 123, [
        ReasoningPart("because", "anthropic-signature"), ReasoningPart("", None, "redacted"),
        TextPart("It is "), TextPart("4C."), ToolCallPart("toolu_1", "weather", '{"city":"Oslo"}'),
        ToolCallPart("toolu_2", "f", "")],
        FinishReason.TOOL_CALLS, Usage(input_tokens=50, output_tokens=20, reasoning_tokens=5))
    body = gemini.encode_response(resp, ChatRequest("m", []))
    parsed = sdk_response(body)
    assert parsed.text == "It is 4C." and parsed.response_id == "id-1" and parsed.model_version == "claude-x"
    assert [(f.name, f.args) for f in parsed.function_calls] == [("weather", {"city": "Oslo"}), ("f", {})]
    assert parsed.candidates[0].content.parts[0].thought is True
    assert parsed.candidates[0].finish_reason == types.FinishReason.STOP
    assert (parsed.usage_metadata.candidates_token_count, parsed.usage_metadata.thoughts_token_count,
            parsed.usage_metadata.total_token_count) == (15, 5, 70)
    plain = gemini.encode_response(ChatResponse("i", "m", 0, [], None), ChatRequest("m", []))
    assert plain["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" not in plain
    blocked = ChatResponse("i", "m", 0, [], FinishReason.CONTENT_FILTER)
    filtered = gemini.encode_response(blocked, ChatRequest("m", []))
    assert sdk_response(filtered).candidates[0].finish_reason == types.FinishReason.SAFETY


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("err, status, name", [
    (GatewayError(400, None, "bad"), 400, "INVALID_ARGUMENT"),
    (GatewayError(401, None, "who"), 401, "UNAUTHENTICATED"),
    (GatewayError(402, ErrorKind.QUOTA, "pay"), 402, "FAILED_PRECONDITION"),
    (GatewayError(403, None, "no"), 403, "PERMISSION_DENIED"),
    (GatewayError(404, None, "none"), 404, "NOT_FOUND"),
    (GatewayError(413, None, "big"), 413, "INVALID_ARGUMENT"),
    (GatewayError(429, ErrorKind.QUOTA, "quota"), 429, "RESOURCE_EXHAUSTED"),
    (GatewayError(500, None, "oops"), 500, "INTERNAL"),
    (GatewayError(502, None, "upstream"), 502, "UNAVAILABLE"),
    (GatewayError(529, None, "overloaded"), 503, "UNAVAILABLE"),
    (GatewayError(504, None, "slow"), 504, "DEADLINE_EXCEEDED"),
    (GatewayError(422, None, "odd"), 422, "INVALID_ARGUMENT"),
])
def test_encode_error_shape(err: GatewayError, status: int, name: str) -> None:
    code, headers, body = gemini.encode_error(err)
    assert code == status and headers == {}
    assert orjson.loads(body) == {"error": {"code": status, "message": err.message, "status": name}}


def test_encode_error_retry_info() -> None:
    err = GatewayError(429, None, "slow", retry_after=1.2, headers={"X-A": "1"})
    code, headers, body = gemini.encode_error(err)
    assert headers == {"X-A": "1", "Retry-After": "2"}
    detail = orjson.loads(body)["error"]["details"]
    assert detail == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]
    assert gemini.decode_error(code, body).retry_after == 2.0


def test_decode_error_variants() -> None:
    key = orjson.dumps({"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
                                  "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                               "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})
    err = gemini.decode_error(400, key)
    assert err.status == 502 and err.kind is ErrorKind.UPSTREAM
    assert err.message == "upstream rejected the gateway's credentials: API key not valid."
    assert gemini.decode_error(403, b'{"error":{"code":403,"message":"denied"}}').status == 502
    plain = gemini.decode_error(400, b'[{"error":{"code":400,"message":"Bad field"}}]')
    assert (plain.status, plain.kind, plain.message) == (400, ErrorKind.INVALID_REQUEST, "Bad field")
    assert gemini.decode_error(503, b"<html><body>oops</body></html>").message.endswith("(HTML) page")
    assert gemini.decode_error(500, b"plain failure").message == "plain failure"
    assert gemini.decode_error(500, b"").message == "upstream answered 500"
    odd = gemini.decode_error(429, b'{"error":{"message":"x","details":[{"@type":"x.RetryInfo",'
                                   b'"retryDelay":"z"}]}}')
    assert odd.status == 429 and odd.kind is ErrorKind.RATE_LIMIT and odd.retry_after is None
    assert gemini.decode_error(500, b'{"unexpected": true}').message == '{"unexpected":true}'


# ---------------------------------------------------------------- models


def test_models() -> None:
    page = {"models": [
        {"name": "models/gemini-2.5-flash", "supportedGenerationMethods": ["generateContent", "countTokens"]},
        {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]},
        {"name": "models/bare"}, {"displayName": "no name"}], "nextPageToken": "t"}
    assert gemini.decode_models(page) == ["gemini-2.5-flash", "bare"]
    listing = gemini.encode_models(["gemini-2.5-flash", "gpt-4o"])
    assert gemini.decode_models(listing) == ["gemini-2.5-flash", "gpt-4o"]
    mapped = genai_models._ListModelsResponse_from_mldev(copy.deepcopy(listing))
    sdk = types.ListModelsResponse._from_response(response=mapped, kwargs={})
    assert [m.name for m in sdk.models] == ["models/gemini-2.5-flash", "models/gpt-4o"]
    assert "generateContent" in sdk.models[0].supported_actions
    mapped = genai_models._Model_from_mldev(gemini.encode_model("x"))
    single = types.Model._from_response(response=mapped, kwargs={})
    assert single.name == "models/x" and single.display_name == "x"
    assert gemini.MODELS_PATH == "/v1beta/models?pageSize=1000" and gemini.NAME == "gemini"


def test_models_next_page_follows_the_token():
    """Google may return a short page with a nextPageToken (AIP-158): the next request carries it."""
    assert gemini.next_models_path({"models": [], "nextPageToken": "a b/c"}) == \
        "/v1beta/models?pageSize=1000&pageToken=a%20b%2Fc"
    assert gemini.next_models_path({"models": []}) is None
    assert gemini.next_models_path({"nextPageToken": ""}) is None

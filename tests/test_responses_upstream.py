"""A provider of type ``openai`` with ``api: responses`` speaks the Responses API upstream: chat
completions, Anthropic and Gemini clients (their official SDKs) reach it translated, plain and
streamed, with the system prompt, a tool round trip and usage; the upstream request is the
Responses API's own shape (``input`` items, ``instructions``, flat function tools, ``store: false``)."""

from __future__ import annotations

import re

import anthropic
import openai
import pytest
from conftest import GatewayServer
from google import genai
from google.genai import types

MODEL = "gpt-4o"
SYSTEM = "Be brief."
PREFIX = f"[system: {SYSTEM}] "
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def tokens(text: str) -> int:
    """The fake's tokenizer: a word plus its trailing whitespace."""
    return len(re.findall(r"\S+\s*", text))


STREAM = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])


@pytest.fixture(scope="module")
def key(gateway: GatewayServer) -> str:
    return gateway.add_client("to-responses", provider="fake-responses", system_prompt=SYSTEM)


def responses_bodies(fake_requests) -> list[dict]:
    return [r["body"] for r in fake_requests() if r["method"] == "POST" and r["path"] == "/v1/responses"]


@STREAM
def test_chat_completions_client(gateway, key, fake_requests, stream):
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "hello there"}]
    if stream:
        chunks = list(oai.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                                  stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
    else:
        resp = oai.chat.completions.create(model=MODEL, messages=messages)
        text, usage = resp.choices[0].message.content, resp.usage
    assert text == PREFIX + "Echo: hello there" and usage.completion_tokens == tokens(text) and usage.prompt_tokens > 0
    [body] = responses_bodies(fake_requests)
    assert body["instructions"] == SYSTEM and body["store"] is False and bool(body.get("stream")) is stream
    assert body["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text",
                                                                             "text": "hello there"}]}]


@STREAM
def test_chat_completions_tool_round_trip(gateway, key, fake_requests, stream):
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    messages: list = [{"role": "user", "content": "weather in Oslo?"}]
    first = oai.chat.completions.create(model=MODEL, messages=messages, tools=tools)
    [call] = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(
            model=MODEL, messages=messages, tools=tools, stream=True) if c.choices)
    else:
        text = oai.chat.completions.create(model=MODEL, messages=messages, tools=tools).choices[0].message.content
    assert text == PREFIX + "Tool get_weather returned: sunny"
    second = responses_bodies(fake_requests)[-1]
    assert second["tools"][0]["type"] == "function" and second["tools"][0]["name"] == "get_weather"  # flat
    kinds = [item.get("type") for item in second["input"]]
    assert kinds == ["message", "function_call", "function_call_output"], second["input"]


@STREAM
def test_anthropic_client(gateway, key, stream):
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    if stream:
        with client.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == PREFIX + "Echo: hi" and msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == tokens(msg.content[0].text)


@STREAM
def test_gemini_client(gateway, key, stream):
    client = genai.Client(api_key=key, http_options={"base_url": gateway.url})
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", parameters_json_schema=WEATHER)])])
    if stream:
        chunks = list(client.models.generate_content_stream(model=MODEL, contents="weather?", config=config))
        calls = [p.function_call for c in chunks for p in c.candidates[0].content.parts if p.function_call]
    else:
        resp = client.models.generate_content(model=MODEL, contents="weather?", config=config)
        calls = [p.function_call for p in resp.candidates[0].content.parts if p.function_call]
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"city": "Oslo"})]
    answer = client.models.generate_content(model=MODEL, contents="hello gemini")
    assert answer.text == PREFIX + "Echo: hello gemini"
    assert answer.usage_metadata.candidates_token_count == tokens(answer.text)

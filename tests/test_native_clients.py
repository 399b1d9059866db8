"""Issue 4's Must-show: the official anthropic and google-genai SDKs, unmodified, complete plain,
streamed, multi-turn, image and tool-call round trips through a real gateway against every backend
type (openai, anthropic, gemini), and see errors, keys and listings the way their own APIs give them."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2 as httpx
import orjson
import pytest
from conftest import GatewayServer
from google import genai
from google.genai import errors, types

BACKENDS = ("openai", "anthropic", "gemini")
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-20250514", "gemini": "gemini-2.0-flash"}
# What the fake upstream lists for each backend (aigateway/fake_upstream/server.py), as the gateway relays it.
LISTED = {"openai": ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"],
          "anthropic": ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"],
          "gemini": ["gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro"]}  # the default allowed_models
SYSTEM = "Be brief."
PREFIX = f"[system: {SYSTEM}] "  # the fake echoes the system prompt it received
# A PNG signature plus bytes whose base64 has '+' and '/': google-genai sends them URL-safe ('-', '_').
PNG = b"\x89PNG\r\n\x1a\n" + b"\xfb\xff\xfe" * 4
IMAGE_ECHO = f" [image: image/png, {len(PNG)} bytes]"
THOUGHT = "Let me think about this."
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA}]
GENAI_TOOL = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="Current weather",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]))])
VERSIONS = {"default-v1": None, "v1beta": "v1beta"}  # genai's default api version is v1


@dataclass(frozen=True)
class Native:
    """A gateway client bound to one backend, with the system prompt every test expects echoed."""

    name: str
    key: str
    backend: str

    @property
    def model(self) -> str:
        return MODELS[self.backend]


def tokens(text: str) -> int:
    """The fake's tokenizer: a word plus its trailing whitespace."""
    return len(re.findall(r"\S+\s*", text))


@contextmanager
def new_rows(gateway: GatewayServer, client: Native, count: int = 1) -> Iterator[list[dict]]:
    """Collects the request-log rows of the ``count`` requests the block sends. Rows land off the
    request path, so wait for them, also when the block raises: the next test must start clean."""
    before = len(gateway.log_rows(client.name))
    rows: list[dict] = []
    try:
        yield rows
    finally:
        rows.extend(gateway.wait_log_rows(client.name, before + count)[before:])
    assert len(rows) == count


def logged(gateway: GatewayServer, client: Native, call: Callable[[], Any]) -> tuple[Any, dict]:
    """Run one logged request; returns its result and the request-log row it wrote."""
    with new_rows(gateway, client) as rows:
        result = call()
    return result, rows[0]


def chat_requests(fake_requests: Callable[[], list[dict]], backend: str) -> list[dict]:
    """Chat request bodies the fake upstream received for ``backend`` since the test began."""
    def is_chat(r: dict) -> bool:
        if backend == "openai":
            return r["path"] == "/v1/chat/completions"
        if backend == "anthropic":
            return r["path"] == "/v1/messages"
        return r["path"].endswith(("generateContent", "streamGenerateContent"))
    return [r["body"] for r in fake_requests() if r["method"] == "POST" and is_chat(r)]


def turns(backend: str, body: dict) -> list[str]:
    """The conversation roles of an upstream request body, system messages left out."""
    if backend == "gemini":
        return [c.get("role", "user") for c in body["contents"]]
    return [m["role"] for m in body["messages"] if m["role"] != "system"]


def upstream_image_data(backend: str, body: dict) -> str:
    """The base64 of the one image in an upstream request body."""
    if backend == "openai":
        part = next(p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]
                    if p["type"] == "image_url")
        return part["image_url"]["url"].split(",", 1)[1]
    if backend == "anthropic":
        return next(b for m in body["messages"] for b in m["content"] if b["type"] == "image")["source"]["data"]
    part = next(p for c in body["contents"] for p in c["parts"] if "inlineData" in p or "inline_data" in p)
    return (part.get("inlineData") or part["inline_data"])["data"]


def assert_row(row: dict, client: Native, inbound: str, input_tokens: int, output_tokens: int,
               stream: bool = False) -> None:
    """The request-log row agrees with what the SDK saw."""
    assert row["status"] == 200 and row["error"] == ""
    assert row["provider"] == f"fake-{client.backend}" and row["inbound"] == inbound
    assert row["stream"] == int(stream) and row["estimated"] == 0
    assert (row["input_tokens"], row["output_tokens"]) == (input_tokens, output_tokens)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clients(gateway: GatewayServer) -> dict[str, Native]:
    """One client per backend for the whole module, each with a system prompt of its own."""
    out = {}
    for backend in BACKENDS:
        name = f"native-{backend}"
        out[backend] = Native(name, gateway.add_client(name, provider=f"fake-{backend}", system_prompt=SYSTEM),
                              backend)
    return out


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, clients: dict[str, Native]) -> Native:
    return clients[request.param]


@pytest.fixture(scope="module")
def restricted(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gateway whose providers have allowed_models, so an unknown model is the gateway's own 404."""
    overrides = {f"providers.fake-{b}.allowed_models": [MODELS[b]] for b in BACKENDS}
    server = GatewayServer(tmp_path_factory.mktemp("restricted"), fake_upstream, **overrides)
    yield server
    server.stop()


def anthropic_sdk(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


def genai_sdk(url: str, key: str, version: str | None = None) -> genai.Client:
    """google-genai as users configure it: a plain dict (default api version), or HttpOptions."""
    options = {"base_url": url} if version is None else types.HttpOptions(base_url=url, api_version=version)
    return genai.Client(api_key=key, http_options=options)


@pytest.fixture(scope="module")
def genai_clients() -> dict[tuple[str, str], genai.Client]:
    return {}  # made once per backend and api version: building a genai.Client is slow


@pytest.fixture(params=list(VERSIONS))
def gsdk(request: pytest.FixtureRequest, gateway: GatewayServer, client: Native,
         genai_clients: dict[tuple[str, str], genai.Client]) -> genai.Client:
    """google-genai for the test's backend, configured each way users do (default v1, and v1beta)."""
    made = (client.backend, request.param)
    if made not in genai_clients:
        genai_clients[made] = genai_sdk(gateway.url, client.key, VERSIONS[request.param])
    return genai_clients[made]


# ---------------------------------------------------------------- anthropic SDK round trips


def test_anthropic_sdk_plain(gateway, client):
    msg, row = logged(gateway, client, lambda: anthropic_sdk(gateway.url, client.key).messages.create(
        model=client.model, max_tokens=256, messages=[{"role": "user", "content": "hello there"}]))
    expected = PREFIX + "Echo: hello there"
    assert [(b.type, b.text) for b in msg.content] == [("text", expected)]
    assert msg.type == "message" and msg.role == "assistant" and msg.id and msg.model
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == tokens(expected)
    assert_row(row, client, "anthropic", msg.usage.input_tokens + msg.usage.cache_read_input_tokens
               + msg.usage.cache_creation_input_tokens, msg.usage.output_tokens)


def test_anthropic_sdk_stream_get_final_message(gateway, client):
    def run():
        with anthropic_sdk(gateway.url, client.key).messages.stream(
                model=client.model, max_tokens=256, messages=[{"role": "user", "content": "one two three"}]) as s:
            return [e.type for e in s], s.get_final_message()

    (kinds, msg), row = logged(gateway, client, run)
    expected = PREFIX + "Echo: one two three"
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("text") == tokens(expected)  # token by token, not one lump
    assert [(b.type, b.text) for b in msg.content] == [("text", expected)]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == tokens(expected)
    assert_row(row, client, "anthropic", msg.usage.input_tokens, msg.usage.output_tokens, stream=True)


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool"])
def test_anthropic_sse_events_are_well_formed(gateway, client, tools):
    """Every frame carries an ``event:`` line matching its data ``type``; blocks open, grow and close
    in order; message_delta then message_stop end it; pings may come anywhere."""
    body = {"model": client.model, "max_tokens": 256, "stream": True,
            "messages": [{"role": "user", "content": "weather in Oslo?"}],
            **({"tools": ANTHROPIC_TOOLS} if tools else {})}
    with new_rows(gateway, client), httpx.stream(
            "POST", gateway.url + "/v1/messages", json=body, timeout=30,
            headers={"x-api-key": client.key, "anthropic-version": "2023-06-01"}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = []
    for frame in filter(None, raw.replace("\r\n", "\n").split("\n\n")):
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = orjson.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append(data)
    names = [e["type"] for e in events if e["type"] != "ping"]
    if client.backend == "anthropic":
        assert "ping" in [e["type"] for e in events]  # relayed as-is on the fast path; the SDK test skips it
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    blocks, open_index = [], None
    for e in events[1:-2]:
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == len(blocks)
            open_index = e["index"]
            blocks.append(e["content_block"]["type"])
        elif e["type"] in ("content_block_delta", "content_block_stop"):
            assert e["index"] == open_index
            open_index = None if e["type"] == "content_block_stop" else open_index
        else:
            assert e["type"] == "ping"
    assert open_index is None
    assert blocks == (["tool_use"] if tools else ["text"])
    assert events[-2]["delta"]["stop_reason"] == ("tool_use" if tools else "end_turn")
    assert events[-2]["usage"]["output_tokens"] > 0
    if client.backend != "openai":  # OpenAI reports usage only at the end; the others from the start
        start = events[0]["message"]["usage"]["input_tokens"]
        assert start > 0 and start == events[-2]["usage"].get("input_tokens", start)


def test_anthropic_sdk_multi_turn(gateway, client, fake_requests):
    messages = [{"role": "user", "content": "first question"}, {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"}]
    msg, row = logged(gateway, client, lambda: anthropic_sdk(gateway.url, client.key).messages.create(
        model=client.model, max_tokens=256, messages=messages))
    assert msg.content[0].text == PREFIX + "Echo: second question"
    assert_row(row, client, "anthropic", msg.usage.input_tokens, msg.usage.output_tokens)
    sent = chat_requests(fake_requests, client.backend)[-1]
    assistant = "model" if client.backend == "gemini" else "assistant"
    assert turns(client.backend, sent) == ["user", assistant, "user"]


def test_anthropic_sdk_image(gateway, client, fake_requests):
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                            "data": base64.b64encode(PNG).decode()}}]
    msg, row = logged(gateway, client, lambda: anthropic_sdk(gateway.url, client.key).messages.create(
        model=client.model, max_tokens=256, messages=[{"role": "user", "content": content}]))
    assert msg.content[0].text == PREFIX + "Echo: what is this?" + IMAGE_ECHO
    assert_row(row, client, "anthropic", msg.usage.input_tokens, msg.usage.output_tokens)
    sent = chat_requests(fake_requests, client.backend)[-1]
    assert upstream_image_data(client.backend, sent) == base64.b64encode(PNG).decode()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_sdk_tool_round_trip(gateway, client, stream):
    sdk = anthropic_sdk(gateway.url, client.key)

    def ask(messages: list) -> anthropic.types.Message:
        kwargs = {"model": client.model, "max_tokens": 256, "tools": ANTHROPIC_TOOLS, "messages": messages}
        if not stream:
            return sdk.messages.create(**kwargs)
        with sdk.messages.stream(**kwargs) as s:
            return s.get_final_message()

    history = [{"role": "user", "content": "What is the weather in Oslo?"}]
    call, row = logged(gateway, client, lambda: ask(history))
    assert call.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in call.content] == [("tool_use", "get_weather", {"city": "Oslo"})]
    assert isinstance(call.content[0].input, dict) and call.content[0].id
    assert_row(row, client, "anthropic", call.usage.input_tokens, call.usage.output_tokens, stream)

    history += [{"role": "assistant", "content": call.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.content[0].id,
                                              "content": "4C and cloudy"}]}]
    answer, row = logged(gateway, client, lambda: ask(history))
    text = answer.content[0].text
    assert text.startswith(PREFIX + "Tool get_weather returned: ") and "4C and cloudy" in text
    assert answer.stop_reason == "end_turn"
    assert_row(row, client, "anthropic", answer.usage.input_tokens, answer.usage.output_tokens, stream)


def test_anthropic_sdk_count_tokens(gateway, client):
    sdk = anthropic_sdk(gateway.url, client.key)
    short = sdk.messages.count_tokens(model=client.model, messages=[{"role": "user", "content": "hi"}])
    long = sdk.messages.count_tokens(model=client.model, messages=[{"role": "user", "content": "hi " * 100}])
    assert 0 < short.input_tokens < long.input_tokens


def test_anthropic_sdk_models(gateway, client):
    sdk = anthropic_sdk(gateway.url, client.key)
    page = sdk.models.list()
    assert [m.id for m in page.data] == LISTED[client.backend]
    assert all(m.type == "model" and m.display_name and m.created_at for m in page.data)
    assert page.has_more is False and page.first_id == LISTED[client.backend][0]
    assert sdk.models.retrieve(client.model).id == client.model


def test_anthropic_sdk_in_band_stream_error_raises(gateway, client):
    def run():
        with anthropic_sdk(gateway.url, client.key).messages.stream(
                model=client.model, max_tokens=256,
                messages=[{"role": "user", "content": "a b c d e #fake:fail_after=2"}]) as s:
            for _ in s:
                pass

    with pytest.raises(anthropic.APIStatusError) as info:
        logged(gateway, client, run)
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] in ("api_error", "overloaded_error")
    row = gateway.log_rows(client.name)[-1]
    assert row["status"] >= 500 and row["error"]


def test_anthropic_sdk_upstream_429_is_rate_limit_error(gateway, client):
    with pytest.raises(anthropic.RateLimitError) as info:
        logged(gateway, client, lambda: anthropic_sdk(gateway.url, client.key).messages.create(
            model=client.model, max_tokens=256,
            messages=[{"role": "user", "content": "hi #fake:status=429 #fake:retry_after=7"}]))
    assert info.value.status_code == 429 and info.value.response.headers["retry-after"] == "7"
    assert info.value.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_sdk_thinking_block(gateway, clients, stream):
    client = clients["anthropic"]
    sdk = anthropic_sdk(gateway.url, client.key)
    kwargs = {"model": client.model, "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
              "messages": [{"role": "user", "content": "think first"}]}

    def run():
        if not stream:
            return sdk.messages.create(**kwargs)
        with sdk.messages.stream(**kwargs) as s:
            return s.get_final_message()

    msg, row = logged(gateway, client, run)
    thinking, text = msg.content
    assert thinking.type == "thinking" and thinking.thinking == THOUGHT and thinking.signature
    assert text.text == PREFIX + "Echo: think first"
    assert msg.usage.output_tokens == tokens(THOUGHT) + tokens(text.text)
    assert_row(row, client, "anthropic", msg.usage.input_tokens, msg.usage.output_tokens, stream)


# ---------------------------------------------------------------- google-genai SDK round trips


def test_genai_sdk_plain(gateway, client, gsdk):
    resp, row = logged(gateway, client, lambda: gsdk.models.generate_content(
        model=client.model, contents="hello there"))
    expected = PREFIX + "Echo: hello there"
    assert resp.text == expected
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    usage = resp.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count == tokens(expected)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert_row(row, client, "gemini", usage.prompt_token_count, usage.candidates_token_count)


def test_genai_sdk_stream(gateway, client, gsdk):
    chunks, row = logged(gateway, client, lambda: list(gsdk.models.generate_content_stream(
        model=client.model, contents="one two three")))
    expected = PREFIX + "Echo: one two three"
    assert "".join(c.text or "" for c in chunks) == expected
    assert len([c for c in chunks if c.text]) == tokens(expected)  # token by token
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    usage = last.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count == tokens(expected)
    assert_row(row, client, "gemini", usage.prompt_token_count, usage.candidates_token_count, stream=True)


def test_genai_sdk_multi_turn(gateway, client, gsdk, fake_requests):
    contents = [types.Content(role="user", parts=[types.Part.from_text(text="first question")]),
                types.Content(role="model", parts=[types.Part.from_text(text="first answer")]),
                types.Content(role="user", parts=[types.Part.from_text(text="second question")])]
    resp, row = logged(gateway, client, lambda: gsdk.models.generate_content(model=client.model, contents=contents))
    assert resp.text == PREFIX + "Echo: second question"
    usage = resp.usage_metadata
    assert_row(row, client, "gemini", usage.prompt_token_count, usage.candidates_token_count)
    sent = chat_requests(fake_requests, client.backend)[-1]
    assistant = "model" if client.backend == "gemini" else "assistant"
    assert turns(client.backend, sent) == ["user", assistant, "user"]


def test_genai_sdk_image(gateway, client, gsdk, fake_requests):
    contents = [types.Part.from_text(text="what is this?"), types.Part.from_bytes(data=PNG, mime_type="image/png")]
    resp, row = logged(gateway, client, lambda: gsdk.models.generate_content(model=client.model, contents=contents))
    assert resp.text == PREFIX + "Echo: what is this?" + IMAGE_ECHO
    usage = resp.usage_metadata
    assert_row(row, client, "gemini", usage.prompt_token_count, usage.candidates_token_count)
    data = upstream_image_data(client.backend, chat_requests(fake_requests, client.backend)[-1])
    if client.backend == "gemini":  # same format: relayed as the SDK sent it (URL-safe base64 is valid there)
        assert base64.urlsafe_b64decode(data) == PNG
    else:  # OpenAI data URLs and Anthropic base64 sources take the standard alphabet only
        assert data == base64.b64encode(PNG).decode()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_genai_sdk_tool_round_trip(gateway, client, gsdk, stream):
    config = types.GenerateContentConfig(tools=[GENAI_TOOL])

    def ask(contents: list) -> list[types.GenerateContentResponse]:
        if stream:
            return list(gsdk.models.generate_content_stream(model=client.model, contents=contents, config=config))
        return [gsdk.models.generate_content(model=client.model, contents=contents, config=config)]

    history = [types.Content(role="user", parts=[types.Part.from_text(text="What is the weather in Oslo?")])]
    chunks, row = logged(gateway, client, lambda: ask(history))
    calls = [fc for c in chunks for fc in c.function_calls or ()]
    assert [(fc.name, fc.args) for fc in calls] == [("get_weather", {"city": "Oslo"})]
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    usage = chunks[-1].usage_metadata
    assert_row(row, client, "gemini", usage.prompt_token_count, usage.candidates_token_count, stream)

    history += [types.Content(role="model", parts=[types.Part(function_call=fc) for fc in calls]),
                types.Content(role="user", parts=[types.Part.from_function_response(
                    name="get_weather", response={"result": "4C and cloudy"})])]
    chunks, row = logged(gateway, client, lambda: ask(history))
    text = "".join(c.text or "" for c in chunks)
    assert text.startswith(PREFIX + "Tool get_weather returned: ") and "4C and cloudy" in text
    assert not any(c.function_calls for c in chunks)
    usage = chunks[-1].usage_metadata
    assert_row(row, client, "gemini", usage.prompt_token_count, usage.candidates_token_count, stream)


def test_genai_sdk_count_tokens(client, gsdk):
    short = gsdk.models.count_tokens(model=client.model, contents="hi")
    long = gsdk.models.count_tokens(model=client.model, contents="hi " * 100)
    assert 0 < short.total_tokens < long.total_tokens


def test_genai_sdk_models_list_and_get(client, gsdk):
    listed = list(gsdk.models.list())
    assert [m.name for m in listed] == [f"models/{m}" for m in LISTED[client.backend]]
    assert all("generateContent" in m.supported_actions for m in listed)
    model = gsdk.models.get(model=client.model)
    assert model.name == f"models/{client.model}" and model.input_token_limit > 0


def test_genai_sdk_in_band_stream_error_raises(gateway, client):
    gsdk = genai_sdk(gateway.url, client.key)

    def run():
        for _ in gsdk.models.generate_content_stream(model=client.model, contents="a b c d e #fake:fail_after=2"):
            pass

    with pytest.raises(errors.APIError) as info:
        logged(gateway, client, run)
    assert info.value.code >= 500
    assert gateway.log_rows(client.name)[-1]["status"] >= 500


@pytest.mark.parametrize("status, name", [(400, "INVALID_ARGUMENT"), (404, "NOT_FOUND"), (429, "RESOURCE_EXHAUSTED")])
def test_genai_sdk_upstream_errors(gateway, client, status, name):
    gsdk = genai_sdk(gateway.url, client.key)
    with pytest.raises(errors.ClientError) as info:
        logged(gateway, client, lambda: gsdk.models.generate_content(
            model=client.model, contents=f"hi #fake:status={status}"))
    assert (info.value.code, info.value.status) == (status, name)


def test_genai_sdk_gateway_errors(gateway, restricted):
    """401 (unknown key), 400 (a request the gateway refuses), 404 (model not allowed), 429 (rpm)."""
    sdk = genai_sdk(gateway.url, "sk-not-a-key")  # keep a reference: a collected Client closes its connection
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert (info.value.code, info.value.status) == (401, "UNAUTHENTICATED")

    key = gateway.add_client("native-genai-rpm", provider="fake-gemini", rpm=1)
    sdk = genai_sdk(gateway.url, key)
    bad = types.GenerateContentConfig(max_output_tokens=0)
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="gemini-2.0-flash", contents="hi", config=bad)
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    sdk.models.generate_content(model="gemini-2.0-flash", contents="hi")
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")

    sdk = genai_sdk(restricted.url, restricted.add_client("native-genai-404", provider="fake-gemini"))
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="no-such-model", contents="hi")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
    with pytest.raises(errors.ClientError) as info:
        sdk.models.get(model="no-such-model")
    assert info.value.code == 404


# ---------------------------------------------------------------- Gemini REST, without the SDK


def gemini_url(gateway: GatewayServer, model: str, method: str, version: str = "v1beta") -> str:
    return f"{gateway.url}/{version}/models/{model}:{method}"


def test_gemini_stream_without_alt_sse_is_one_json_array(gateway, client):
    body = {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]}
    resp, row = logged(gateway, client, lambda: httpx.post(
        gemini_url(gateway, client.model, "streamGenerateContent"), json=body,
        headers={"x-goog-api-key": client.key}, timeout=30))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    chunks = orjson.loads(resp.content)
    assert isinstance(chunks, list) and len(chunks) > 1
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == PREFIX + "Echo: one two three"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    usage = chunks[-1]["usageMetadata"]
    assert usage["candidatesTokenCount"] == tokens(text)
    assert (row["input_tokens"], row["output_tokens"]) == (usage["promptTokenCount"], usage["candidatesTokenCount"])


def snake(value: Any) -> Any:
    """A camelCase request body spelled in snake_case, as Google's curl examples write it."""
    if isinstance(value, dict):
        return {re.sub(r"([A-Z])", r"_\1", k).lower(): snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake(v) for v in value]
    return value


@pytest.mark.parametrize("spelling", ["camelCase", "snake_case"])
def test_gemini_bodies_in_either_spelling(gateway, client, spelling):
    spell = snake if spelling == "snake_case" else (lambda body: body)
    url, headers = gemini_url(gateway, client.model, "generateContent"), {"x-goog-api-key": client.key}
    limited = spell({"systemInstruction": {"parts": [{"text": "Client rule."}]},
                     "contents": [{"role": "user", "parts": [{"text": "one two three four five six"}]}],
                     "generationConfig": {"maxOutputTokens": 5}})
    image = spell({"contents": [{"role": "user", "parts": [
        {"text": "look"}, {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}]}]})
    tool = spell({"contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
                  "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {
                      "type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
                  "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}})
    with new_rows(gateway, client, 3):
        limited, image, tool = (httpx.post(url, json=body, headers=headers, timeout=30).json()
                                for body in (limited, image, tool))

    candidate = limited["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS" and limited["usageMetadata"]["candidatesTokenCount"] == 5
    assert "Client" in candidate["content"]["parts"][0]["text"]  # the client's own system text arrived
    assert image["candidates"][0]["content"]["parts"][0]["text"] == PREFIX + "Echo: look" + IMAGE_ECHO
    call = tool["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Oslo"})


# ---------------------------------------------------------------- keys and error shapes by route


@pytest.mark.parametrize("style", ["x-goog-api-key", "query", "bearer"])
def test_gemini_routes_accept_every_key_style(gateway, clients, style):
    client = clients["gemini"]
    headers = {"x-goog-api-key": client.key} if style == "x-goog-api-key" else \
        {"Authorization": f"Bearer {client.key}"} if style == "bearer" else {}
    params = {"key": client.key} if style == "query" else {}
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    for version in ("v1", "v1beta"):
        with new_rows(gateway, client):
            resp = httpx.post(gemini_url(gateway, client.model, "generateContent", version), json=body,
                              headers=headers, params=params, timeout=30)
        assert resp.status_code == 200
        assert resp.json()["candidates"][0]["content"]["parts"][0]["text"] == PREFIX + "Echo: hi"
        resp = httpx.post(gemini_url(gateway, client.model, "countTokens", version), json=body,
                          headers=headers, params=params, timeout=30)
        assert resp.status_code == 200 and resp.json()["totalTokens"] > 0
    # /v1beta/models is Gemini's alone; /v1/models is shared and dispatched on the key style
    listing = httpx.get(gateway.url + "/v1beta/models", headers=headers, params=params).json()
    assert [m["name"] for m in listing["models"]] == [f"models/{m}" for m in LISTED["gemini"]]
    if style != "bearer":
        assert httpx.get(gateway.url + "/v1/models", headers=headers, params=params).json() == listing


@pytest.mark.parametrize("style", ["x-api-key", "bearer"])
def test_anthropic_routes_accept_every_key_style(gateway, clients, style):
    client = clients["anthropic"]
    auth = {"x-api-key": client.key} if style == "x-api-key" else {"Authorization": f"Bearer {client.key}"}
    headers = {**auth, "anthropic-version": "2023-06-01"}
    body = {"model": client.model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    with new_rows(gateway, client):
        resp = httpx.post(gateway.url + "/v1/messages", json=body, headers=headers, timeout=30)
    assert resp.status_code == 200 and resp.json()["content"][0]["text"] == PREFIX + "Echo: hi"
    resp = httpx.post(gateway.url + "/v1/messages/count_tokens", json=body, headers=headers, timeout=30)
    assert resp.status_code == 200 and resp.json()["input_tokens"] > 0
    listing = httpx.get(gateway.url + "/v1/models", headers=headers).json()
    assert [m["id"] for m in listing["data"]] == LISTED["anthropic"] and listing["has_more"] is False
    assert all(m["type"] == "model" for m in listing["data"])


def anthropic_post(url: str, key: str, body: bytes | dict, model: str = "claude-sonnet-4-20250514"
                   ) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(
        {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **body})
    return httpx.post(url + "/v1/messages", content=content, timeout=30,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                               "Content-Type": "application/json"})


def gemini_post(url: str, key: str, body: bytes | dict, model: str = "gemini-2.0-flash") -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps({"contents": [{"parts": [{"text": "hi"}]}], **body})
    return httpx.post(f"{url}/v1beta/models/{model}:generateContent", content=content, timeout=30,
                      headers={"x-goog-api-key": key, "Content-Type": "application/json"})


ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                   429: "rate_limit_error"}
GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}


def assert_error_shape(route: str, resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status and resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    if route == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        assert body["error"]["type"] == ANTHROPIC_TYPES[status] and body["error"]["message"]
    else:
        assert set(body) == {"error"} and {"code", "message", "status"} <= set(body["error"])
        assert (body["error"]["code"], body["error"]["status"]) == (status, GEMINI_STATUS[status])
        assert body["error"]["message"]
    return body


@pytest.mark.parametrize("route", ["anthropic", "gemini"])
def test_errors_in_each_routes_own_shape(gateway, restricted, route):
    post = anthropic_post if route == "anthropic" else gemini_post
    provider = f"fake-{route}"

    assert_error_shape(route, post(gateway.url, "sk-not-a-key", {}), 401)

    key = gateway.add_client(f"native-errors-{route}", provider=provider, rpm=1)
    refused = post(gateway.url, key, b"{not json")
    assert_error_shape(route, refused, 400)
    assert refused.headers["x-ratelimit-remaining-requests"] == "1"  # every answer says it; this one cost nothing
    ok = post(gateway.url, key, {})
    assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining-requests"] == "0"
    limited = post(gateway.url, key, {})
    body = assert_error_shape(route, limited, 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["x-ratelimit-limit-requests"] == "1"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    if route == "gemini":
        assert body["error"]["details"][0]["@type"].endswith("RetryInfo")

    key = restricted.add_client(f"native-errors-{route}", provider=provider)
    body = assert_error_shape(route, post(restricted.url, key, {}, model="no-such-model"), 404)
    assert MODELS[route] in (body["error"]["message"])  # names what is available
    assert post(restricted.url, key, {}, model=MODELS[route]).status_code == 200


def test_anthropic_sdk_gateway_errors(gateway, restricted):
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_sdk(gateway.url, "sk-not-a-key").messages.create(
            model="claude-sonnet-4-20250514", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    sdk = anthropic_sdk(restricted.url, restricted.add_client("native-anthropic-404", provider="fake-anthropic"))
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="no-such-model", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    sdk = anthropic_sdk(gateway.url, gateway.add_client("native-anthropic-rpm", provider="fake-anthropic", rpm=1))
    sdk.messages.create(model="claude-sonnet-4-20250514", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError) as info:
        sdk.messages.create(model="claude-sonnet-4-20250514", max_tokens=64,
                            messages=[{"role": "user", "content": "hi"}])
    assert int(info.value.response.headers["retry-after"]) >= 1


# ---------------------------------------------------------------- what each SDK sends


def sent(fake_requests: Callable[[], list[dict]]) -> list[tuple[str, str, dict]]:
    return [(r["method"], r["path"], r["query"]) for r in fake_requests()]


def test_anthropic_sdk_paths_and_headers(fake_upstream, fake_requests):
    """Pinned to anthropic 2.14: if a release changes its paths or auth headers, this fails first."""
    assert anthropic.__version__ == "2.14.0"
    sdk = anthropic_sdk(fake_upstream, "client-key")
    messages = [{"role": "user", "content": "hi"}]
    sdk.messages.create(model="claude-sonnet-4-20250514", max_tokens=16, messages=messages)
    with sdk.messages.stream(model="claude-sonnet-4-20250514", max_tokens=16, messages=messages) as s:
        s.get_final_message()
    sdk.messages.count_tokens(model="claude-sonnet-4-20250514", messages=messages)
    sdk.models.list()
    sdk.models.retrieve("claude-sonnet-4-20250514")
    assert sent(fake_requests) == [("POST", "/v1/messages", {}), ("POST", "/v1/messages", {}),
                                   ("POST", "/v1/messages/count_tokens", {}), ("GET", "/v1/models", {}),
                                   ("GET", "/v1/models/claude-sonnet-4-20250514", {})]
    requests = fake_requests()
    assert [r["body"].get("stream") for r in requests[:2]] == [None, True]
    for r in requests:
        headers = r["headers"]
        assert headers["authorization"] == "Bearer client-key" and "x-api-key" not in headers
        assert headers["anthropic-version"] == "2026-10-21"  # any value is accepted by the gateway
        assert headers["user-agent"] == "Anthropic/Python 2.14.0"
        assert "x-goog-api-key" not in headers


@pytest.mark.parametrize("version", list(VERSIONS))
def test_genai_sdk_paths_and_headers(fake_upstream, fake_requests, version):
    """Pinned to google-genai 3.6.1: its default api version is v1, and the key goes in x-goog-api-key."""
    assert genai.__version__ == "3.6.1"
    sdk = genai_sdk(fake_upstream, "client-key", VERSIONS[version])
    sdk.models.generate_content(model="gemini-2.0-flash", contents="hi")
    list(sdk.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"))
    sdk.models.count_tokens(model="gemini-2.0-flash", contents="hi")
    list(sdk.models.list())
    sdk.models.get(model="gemini-2.0-flash")
    prefix = "/v1beta" if version == "v1beta" else "/v1"
    assert sent(fake_requests) == [
        ("POST", f"{prefix}/models/gemini-2.0-flash:generateContent", {}),
        ("POST", f"{prefix}/models/gemini-2.0-flash:streamGenerateContent", {"alt": "sse"}),
        ("POST", f"{prefix}/models/gemini-2.0-flash:countTokens", {}),
        ("GET", f"{prefix}/models", {}),
        ("GET", f"{prefix}/models", {"pageToken": "2"}),  # the fake's listing pages by 2: the SDK follows
        ("GET", f"{prefix}/models/gemini-2.0-flash", {})]
    for r in fake_requests():
        headers = r["headers"]
        assert headers["x-goog-api-key"] == "client-key"
        assert "authorization" not in headers and "x-api-key" not in headers and "anthropic-version" not in headers
        assert headers["x-goog-api-client"].startswith("google-genai-sdk/3.6.1 ")
        assert headers["user-agent"].startswith("google-genai-sdk/3.6.1 ")

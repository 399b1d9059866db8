"""End to end: the official openai SDK through a real gateway to the fake OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest


def sdk(gateway, key: str, v1: bool = True) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + ("/v1" if v1 else ""), api_key=key, max_retries=0)


def test_plain_completion_with_system_prompt(gateway, fake_requests):
    key = gateway.add_client("plain", system_prompt="Answer in French.")
    resp = sdk(gateway, key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello there"}])
    assert resp.choices[0].message.content == "[system: Answer in French.] Echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0
    sent = [r for r in fake_requests() if r["path"] == "/v1/chat/completions"][-1]
    assert sent["body"]["messages"][0] == {"role": "system", "content": "Answer in French."}
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["authorization"] == "Bearer sk-upstream-openai-secret"  # ours, not the client's


def test_stream_relays_chunks_and_usage(gateway):
    key = gateway.add_client("streamer")
    stream = sdk(gateway, key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "one two three four"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 5  # token by token
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    rows = gateway.wait_log_rows("streamer", 1)
    assert rows[0]["stream"] == 1 and rows[0]["output_tokens"] == 5 and rows[0]["estimated"] == 0
    assert rows[0]["input_tokens"] == chunks[-1].usage.prompt_tokens
    assert rows[0]["ttft_ms"] is not None and rows[0]["ttft_ms"] <= rows[0]["latency_ms"]


def test_stream_without_include_usage_has_no_usage_chunk_but_is_accounted(gateway, fake_requests):
    key = gateway.add_client("quiet-streamer")
    chunks = list(sdk(gateway, key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a b c"}], stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    sent = [r for r in fake_requests() if r["path"] == "/v1/chat/completions"][-1]
    assert sent["body"]["stream_options"] == {"include_usage": True}  # the gateway asked for itself
    row = gateway.wait_log_rows("quiet-streamer", 1)[0]
    assert row["output_tokens"] == 4 and row["estimated"] == 0


def test_async_client_streams(gateway):
    key = gateway.add_client("async-client")

    async def go() -> str:
        client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "async works"}], stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(go()) == "Echo: async works"


def test_async_many_concurrent_streams(gateway):
    key = gateway.add_client("concurrent")

    async def one(i: int) -> str:
        client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"n{i} #fake:delay=0.01"}], stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def go() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(20)))

    assert asyncio.run(go()) == [f"Echo: n{i}" for i in range(20)]


def test_path_without_v1(gateway):
    key = gateway.add_client("no-v1")
    resp = sdk(gateway, key, v1=False).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "Echo: hi"


def test_unknown_fields_pass_through(gateway, fake_requests):
    key = gateway.add_client("passthrough")
    sdk(gateway, key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=2,
        seed=7, extra_body={"custom_vendor_field": {"a": [1, 2]}})
    body = [r for r in fake_requests() if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 2 and body["seed"] == 7
    assert body["custom_vendor_field"] == {"a": [1, 2]}


def test_tools_round_trip_through_openai_upstream(gateway):
    key = gateway.add_client("tools")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    client = sdk(gateway, key)
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "4C"}]
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    assert "4C" in second.choices[0].message.content


def test_client_default_model_and_base_url_override(gateway, fake_upstream, fake_requests):
    key = gateway.add_client("overrides", default_model="my-local-model", base_url=fake_upstream + "/v1")
    raw = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key).chat.completions.with_raw_response
    resp = raw.create(model="", messages=[{"role": "user", "content": "hi"}]).parse()
    assert resp.model == "my-local-model"
    assert fake_requests()[-1]["body"]["model"] == "my-local-model"


def test_models_from_upstream_list(gateway):
    key = gateway.add_client("lister")
    models = sdk(gateway, key).models.list()
    ids = [m.id for m in models]
    assert "gpt-4o" in ids
    assert sdk(gateway, key).models.retrieve("gpt-4o").id == "gpt-4o"


def test_models_from_allowed_models(fresh_gateway):
    fresh_gateway.stop()
    import yaml

    data = yaml.safe_load(fresh_gateway.config.read_text())
    data["providers"]["fake-openai"]["allowed_models"] = ["gpt-4o-mini", "gpt-4o"]
    fresh_gateway.config.write_text(yaml.safe_dump(data))
    fresh_gateway.start()
    key = fresh_gateway.add_client("allowed")
    client = sdk(fresh_gateway, key)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o"]
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
    assert "not available" in info.value.message
    assert client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "ok"}]).choices[0].message.content == "Echo: ok"


def test_plaintext_key_never_stored_or_logged(fresh_gateway):
    key = fresh_gateway.add_client("secretive")
    sdk(fresh_gateway, key).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    fresh_gateway.wait_log_rows("secretive", 1)
    fresh_gateway.stop()
    blobs = [p.read_bytes() for p in (fresh_gateway.folder / "data").iterdir()]
    blobs += [p.read_bytes() for p in (fresh_gateway.folder / "logs").iterdir()]
    blobs.append(fresh_gateway.proc.text.encode())
    for blob in blobs:
        assert key.encode() not in blob
        assert b"sk-upstream-openai-secret" not in blob

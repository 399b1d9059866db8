"""The relay's pipeline in process, in milliseconds: a real Gateway on temp files, a fake sink in
place of the client's connection and a fake upstream call that plays recorded bytes (no sockets).
End-to-end tests cover the same paths over HTTP; these pin down what the pipeline itself does."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import write_config
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from aigateway import clients, relay
from aigateway.app import Gateway
from aigateway.config import load
from aigateway.db import connect
from aigateway.formats import FORMATS
from aigateway.neutral import GatewayError, Route


class FakeSink:
    """What the client would have received: status, headers, body chunks, and how it ended."""

    def __init__(self, headers: dict[str, str], fmt: str) -> None:
        self.request = HTTPServerRequest(start_line=RequestStartLine("POST", "/", "HTTP/1.1"),
                                         headers=HTTPHeaders(headers))
        self.fmt = FORMATS[fmt]
        self.started = False
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.ended = self.drained = self.gone = False
        self.upstream: Any = None

    def closed(self) -> bool:
        return self.gone

    def set_header(self, name: str, value: str) -> None:
        self.headers[name] = value

    def answer(self, body: bytes) -> None:
        self.status, self.ended = 200, True
        self.chunks.append(body)

    def error(self, err: GatewayError) -> None:
        status, headers, body = self.fmt.encode_error(err)
        self.status, self.ended = status, True
        self.headers.update(headers)
        self.chunks.append(body)

    def start_stream(self, content_type: str, upstream: Any, timeout: float, on_too_slow: Any, client: str) -> None:
        self.started, self.status, self.upstream = True, 200, upstream
        self.headers["Content-Type"] = content_type

    def send(self, data: bytes) -> None:
        self.chunks.append(data)

    def end(self) -> None:
        self.ended = True

    def drain(self, timeout: float) -> None:
        self.drained = True
        self.upstream = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class FakeCall:
    """An upstream call that answers ``status`` and plays ``chunks``; ``leave_after`` makes the
    client hang up after that many chunks (the handler's on_connection_close cancels the call)."""

    script: dict[str, Any] = {}

    def __init__(self, provider: Any, base_url: str, path: str, body: bytes | None, *, stream: bool,
                 api_key: str | None = None) -> None:
        self.provider, self.path, self.body, self.stream = provider, path, body, stream
        self.status, self.headers, self.cancelled = 0, HTTPHeaders(), False
        FakeCall.made.append(self)

    made: list[FakeCall] = []

    def cancel(self, reason: GatewayError | None = None) -> None:
        self.cancelled = True

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def check_silence(self, now: float) -> None: ...

    async def run(self, on_chunk: Callable[[bytes], None] | None = None) -> bytes:
        script = FakeCall.script
        self.status = script.get("status", 200)
        chunks = script["chunks"]
        if script.get("delay"):
            await asyncio.sleep(script["delay"])
        if on_chunk is None:
            return b"".join(chunks)
        for i, chunk in enumerate(chunks):
            if i == script.get("leave_after"):  # libcurl stops the transfer: nothing more arrives
                script["sink"].gone = True
                self.cancel()
                break
            on_chunk(chunk)
        if self.cancelled:
            raise relay.ClientGone()
        return b""


def openai_stream(*texts: str, usage: tuple[int, int] | None = (11, 2)) -> list[bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    out = [b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                         "finish_reason": None}]}) + b"\n\n"]
    out += [b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"content": t},
                                                          "finish_reason": None}]}) + b"\n\n" for t in texts]
    out.append(b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
               + b"\n\n")
    if usage:
        out.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": {
            "prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}) + b"\n\n")
    return [*out, b"data: [DONE]\n\n"]


def anthropic_stream(text: str) -> list[bytes]:
    def event(name: str, data: dict) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"

    return [
        event("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                                            "content": [], "stop_reason": None, "stop_sequence": None,
                                            "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}),
        event("content_block_stop", {"index": 0}),
        event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": 4}}),
        event("message_stop", {}),
    ]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Callable[..., Awaitable[tuple[FakeSink, Any]]]]:
    """``await run(fmt, body, provider=..., chunks=..., status=...)`` -> (sink, usage record)."""
    config = load(write_config(tmp_path, "http://127.0.0.1:9"), announce=False)
    conn = connect(config.resolve("database.path"))
    keys = {p: clients.create(conn, f"c-{p}", p)[1] for p in config.providers}
    keys["input-quota"] = clients.create(conn, "input-quota", "fake-openai", daily_input_tokens=3000)[1]
    conn.close()
    loop = asyncio.new_event_loop()
    gw = Gateway(config)
    loop.run_until_complete(gw.start())
    records: list[Any] = []
    gw.record = records.append  # type: ignore[method-assign]  # the writer thread is not under test here

    async def run(fmt: str, body: dict, provider: str = "fake-openai", route: Route | None = None,
                  client: str | None = None, **script: Any) -> tuple[FakeSink, Any]:
        headers = {"Host": "gateway.test", "Authorization": f"Bearer {keys[client or provider]}"}
        sink = FakeSink(headers, fmt)
        FakeCall.script, FakeCall.made = {**script, "sink": sink}, []
        exchange = relay.Exchange(gw, sink, FORMATS[fmt], route or Route(), connect=FakeCall)
        await exchange.run(orjson.dumps(body))
        return sink, records[-1]

    def run_many(calls: list[tuple[tuple, dict]]) -> list[tuple[FakeSink, Any]]:
        async def together() -> list[tuple[FakeSink, Any]]:
            return list(await asyncio.gather(*(run(*a, **k) for a, k in calls)))
        return loop.run_until_complete(together())

    runner = lambda *a, **k: loop.run_until_complete(run(*a, **k))  # noqa: E731
    runner.many = run_many  # type: ignore[attr-defined]
    yield runner
    gw.close()
    loop.close()


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def test_same_format_stream_goes_back_byte_for_byte(pipeline) -> None:
    chunks = openai_stream("Hel", "lo")
    sink, rec = pipeline("openai", {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
                         chunks=chunks)
    assert sink.body == b"".join(chunks) and sink.ended
    assert (rec.status, rec.input_tokens, rec.output_tokens, rec.estimated) == (200, 11, 2, False)
    assert rec.ttft_ms is not None and sink.drained and sink.upstream is None
    sent = orjson.loads(FakeCall.made[0].body)
    assert sent["stream_options"] == {"include_usage": True} and sent["model"] == "gpt-4o"


def test_same_format_drops_the_usage_chunk_the_client_did_not_ask_for(pipeline) -> None:
    chunks = openai_stream("Hello")
    sink, rec = pipeline("openai", {**CHAT, "stream": True}, chunks=chunks)
    assert sink.body == b"".join(c for c in chunks if b'"usage"' not in c)
    assert (rec.input_tokens, rec.output_tokens) == (11, 2)  # still accounted


def test_translated_stream_is_reencoded_and_accounted(pipeline) -> None:
    sink, rec = pipeline("openai", {**CHAT, "stream": True}, provider="fake-anthropic",
                         chunks=anthropic_stream("Bonjour"))
    assert FakeCall.made[0].path == "/v1/messages"
    events = [orjson.loads(line[6:]) for line in sink.body.split(b"\n\n") if line.startswith(b"data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == "Bonjour"
    assert sink.body.endswith(b"data: [DONE]\n\n")
    assert (rec.status, rec.input_tokens, rec.output_tokens) == (200, 9, 4)


def test_plain_translation_fills_the_ids_the_upstream_format_lacks(pipeline) -> None:
    answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi!"}]}, "finishReason": "STOP",
                              "index": 0}],
              "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}}
    sink, rec = pipeline("openai", CHAT, provider="fake-gemini", chunks=[orjson.dumps(answer)])
    body = orjson.loads(sink.body)
    assert body["choices"][0]["message"]["content"] == "Hi!" and body["id"].startswith("chatcmpl-")
    assert body["created"] > 0 and body["model"] == "gpt-4o"
    assert (rec.input_tokens, rec.output_tokens) == (3, 2)


def test_upstream_error_before_the_stream_is_an_error_answer_in_the_client_format(pipeline) -> None:
    error = orjson.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    sink, rec = pipeline("openai", {**CHAT, "stream": True}, provider="fake-anthropic", status=429, chunks=[error])
    assert not sink.started and sink.status == 429
    assert orjson.loads(sink.body)["error"]["message"] == "slow down"
    assert (rec.status, rec.input_tokens, rec.output_tokens) == (429, 0, 0)


def test_stream_cut_before_its_end_gets_an_error_event_and_an_estimate(pipeline) -> None:
    chunks = openai_stream("Hello there friend", usage=None)[:2]  # role chunk and one text chunk, then the end
    sink, rec = pipeline("anthropic", {**CHAT, "max_tokens": 50, "stream": True}, chunks=chunks)
    assert sink.started and sink.ended
    assert b"event: error" in sink.body and b"ended before it finished" in sink.body
    assert rec.status == 502 and rec.estimated and rec.output_tokens == 5  # 18 characters, 4 a token


def test_client_that_leaves_is_a_499_charged_for_what_arrived(pipeline) -> None:
    chunks = openai_stream("a" * 40, "b" * 40)
    sink, rec = pipeline("openai", {**CHAT, "stream": True}, chunks=chunks, leave_after=2)
    assert FakeCall.made[0].cancelled
    assert rec.status == 499 and rec.estimated and rec.output_tokens == 10  # what the tap saw: 40 characters
    assert b"b" * 40 not in sink.body


def test_refused_request_costs_nothing_and_never_calls_upstream(pipeline) -> None:
    sink, rec = pipeline("openai", {"model": "gpt-4o", "messages": "not a list"}, chunks=[])
    assert sink.status == 400 and not FakeCall.made
    assert (rec.admitted, rec.input_tokens, rec.output_tokens) == (False, 0, 0)


def test_an_exchange_leaves_no_reference_cycle(pipeline) -> None:
    """The relay relies on reference counting (the server freezes the start-up heap and runs the
    cyclic collector rarely): a finished exchange, streamed or not, leaves nothing for it."""
    pipeline("openai", CHAT, chunks=[b'{"id":"x","choices":[],"usage":null}'])  # warm imports and caches
    for body, chunks in ((CHAT, [orjson.dumps({"id": "c", "object": "chat.completion", "created": 1,
                                               "model": "gpt-4o", "choices": []})]),
                         ({**CHAT, "stream": True}, openai_stream("hi"))):
        gc.collect()
        gc.disable()
        try:
            pipeline("openai", body, chunks=chunks)
            assert gc.collect() == 0
        finally:
            gc.enable()


def test_concurrent_cjk_requests_cannot_overshoot_the_daily_input_quota(pipeline) -> None:
    """A character of CJK text is about one token, not a quarter of one: the daily input quota
    reserves an upper bound of the real count (the UTF-8 bytes), so however many requests run at
    once, what they really use stays within the quota (3,000 here; each really uses 400)."""
    text = "日本語のテキストです。" * 40  # 440 characters, 400 tokens as the upstream counts them
    answer = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 400, "completion_tokens": 1, "total_tokens": 401}})
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
    results = pipeline.many([(("openai", body), {"client": "input-quota", "chunks": [answer], "delay": 0.05})] * 20)
    used = sum(rec.input_tokens for _, rec in results)
    assert used <= 3000
    assert any(sink.status == 200 for sink, _ in results) and any(sink.status == 429 for sink, _ in results)

"""Every error path of the OpenAI-format API, in OpenAI's exact error shape, and none of them
charging usage or disturbing the server."""

from __future__ import annotations

import socket

import httpx2 as httpx
import openai
import pytest
from conftest import eventually

CHAT = "/v1/chat/completions"


def assert_openai_error(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def post(gateway, key: str | None, body: object = None, content: bytes | None = None, **headers: str):
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if content is None:
        return httpx.post(gateway.url + CHAT, json=body, headers=headers, timeout=30)
    return httpx.post(gateway.url + CHAT, content=content, headers=headers, timeout=30)


HELLO = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def test_missing_key_is_401(gateway):
    err = assert_openai_error(post(gateway, None, HELLO), 401, "invalid_api_key")
    assert "Missing API key" in err["message"]


def test_unknown_key_is_401_without_echoing_it(gateway):
    resp = post(gateway, "sk-not-a-real-key-1234567890", HELLO)
    assert_openai_error(resp, 401, "invalid_api_key")
    assert "sk-not-a-real" not in resp.text


def test_other_key_headers_accepted(gateway):
    key = gateway.add_client("header-styles")
    for headers in ({"x-api-key": key}, {"x-goog-api-key": key}):
        assert httpx.post(gateway.url + CHAT, json=HELLO, headers=headers).status_code == 200


def test_disabled_client_is_403_and_enabled_again(gateway):
    from aigateway import clients

    key = gateway.add_client("to-disable")
    conn = gateway.db()
    clients.update(conn, "to-disable", enabled=0)
    resp = eventually(lambda: post(gateway, key, HELLO), lambda r: r.status_code == 403)
    err = assert_openai_error(resp, 403)
    assert "disabled" in err["message"]
    clients.update(conn, "to-disable", enabled=1)
    conn.close()
    eventually(lambda: post(gateway, key, HELLO), lambda r: r.status_code == 200)


@pytest.mark.parametrize("content,fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"model": "gpt-4o"}', "messages"),
    (b'{"model": "gpt-4o", "messages": []}', "messages"),
    (b'{"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}', "role"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}', "content"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"}', "max_tokens"),
])
def test_bad_requests_are_400_and_not_charged(gateway, content, fragment):
    key = gateway.add_client(f"bad-{abs(hash(content))}")
    err = assert_openai_error(post(gateway, key, content=content), 400)
    assert fragment in err["message"]
    assert err["type"] == "invalid_request_error"
    rows = gateway.wait_log_rows(f"bad-{abs(hash(content))}", 1)
    assert rows[0]["status"] == 400 and rows[0]["input_tokens"] == 0 and rows[0]["output_tokens"] == 0


def test_body_over_10_mb_is_413(gateway):
    key = gateway.add_client("big-body")
    big = b'{"model":"gpt-4o","messages":[{"role":"user","content":"' + b"x" * (10 * 1024 * 1024 + 10) + b'"}]}'
    assert_openai_error(post(gateway, key, content=big), 413, "request_too_large")
    assert post(gateway, key, HELLO).status_code == 200  # and the server keeps serving


def test_unknown_route_is_json_404(gateway):
    resp = httpx.get(gateway.url + "/v1/nothing-here")
    assert_openai_error(resp, 404)


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_upstream_status_is_passed_on_with_its_message(gateway, status):
    key = gateway.add_client(f"upstream-{status}")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"#fake:status={status}"}])
    assert info.value.status_code == status
    assert info.value.body["message"]  # the upstream's message survives


def test_upstream_429_keeps_retry_after(gateway):
    key = gateway.add_client("upstream-retry")
    resp = post(gateway, key, {"model": "gpt-4o",
                               "messages": [{"role": "user", "content": "#fake:status=429 #fake:retry_after=7"}]})
    assert_openai_error(resp, 429)
    assert resp.headers["retry-after"] == "7"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_upstream_unreachable_is_502(gateway):
    key = gateway.add_client("unreachable", base_url=f"http://127.0.0.1:{_closed_port()}/v1")
    err = assert_openai_error(post(gateway, key, HELLO), 502)
    assert "connect" in err["message"]
    assert gateway.wait_log_rows("unreachable", 1)[0]["status"] == 502


def test_upstream_timeout_is_504(fresh_gateway):
    import yaml

    fresh_gateway.stop()
    data = yaml.safe_load(fresh_gateway.config.read_text())
    data["providers"]["fake-openai"]["timeout_seconds"] = 1
    fresh_gateway.config.write_text(yaml.safe_dump(data))
    fresh_gateway.start()
    key = fresh_gateway.add_client("slow")
    resp = post(fresh_gateway, key, {"model": "gpt-4o",
                                     "messages": [{"role": "user", "content": "#fake:delay=3 #fake:chunks=2"}]})
    err = assert_openai_error(resp, 504, "timeout")
    assert "timed out" in err["message"]


def test_error_in_the_middle_of_a_stream_ends_it_with_an_error_event(gateway):
    key = gateway.add_client("midstream")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "one two three four #fake:fail_after=2"}], stream=True)
    got = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            got.append(chunk)
    assert got  # some content arrived before the error
    row = gateway.wait_log_rows("midstream", 1)[0]
    assert row["status"] >= 500 and row["output_tokens"] > 0  # what was streamed is still charged


def test_upstream_dropping_the_connection_mid_stream_ends_cleanly(gateway):
    key = gateway.add_client("dropped")
    resp = httpx.post(gateway.url + CHAT, headers={"Authorization": f"Bearer {key}"}, timeout=30, json={
        "model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "a b c d e #fake:drop_after=2"}]})
    assert resp.status_code == 200
    lines = [line for line in resp.text.splitlines() if line.startswith("data: ")]
    assert '"error"' in lines[-1]  # an error event, never a hang
    assert post(gateway, key, HELLO).status_code == 200

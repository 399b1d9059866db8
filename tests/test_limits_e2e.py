"""Limits and quotas through a running gateway: exact under concurrency, charged for cut streams,
persistent across restarts and SIGKILL, and visible in headers."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import httpx2 as httpx
import openai
from conftest import eventually

CHAT = "/v1/chat/completions"


def body(text: str = "hi", **extra) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


async def burst(url: str, key: str, n: int, payload: dict) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post(url + CHAT, json=payload, headers={"Authorization": f"Bearer {key}"})
                                      for _ in range(n)))


def test_100_simultaneous_requests_against_rpm_10_admit_exactly_10(gateway):
    key = gateway.add_client("rpm-10", rpm=10)
    responses = asyncio.run(burst(gateway.url, key, 100, body("#fake:delay=0.05 #fake:chunks=2")))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(429) == 90
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert "requests-per-minute" in error["message"] and "resets in" in error["message"]
    assert error["param"] == "rpm" and error["type"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    rows = gateway.wait_log_rows("rpm-10", 100)
    assert sum(r["admitted"] for r in rows) == 10
    assert all(r["input_tokens"] == 0 and r["output_tokens"] == 0 for r in rows if not r["admitted"])


def test_output_quota_admits_exactly_what_fits_with_concurrent_streams(gateway):
    key = gateway.add_client("quota-100", daily_output_tokens=100)
    payload = body("w " * 40 + "#fake:delay=0.01", stream=True, max_tokens=10)
    responses = asyncio.run(burst(gateway.url, key, 20, payload))
    assert [r.status_code for r in responses].count(200) == 10
    rows = [r for r in gateway.wait_log_rows("quota-100", 20) if r["admitted"]]
    assert len(rows) == 10 and sum(r["output_tokens"] for r in rows) == 100
    refused = next(r for r in responses if r.status_code == 429).json()["error"]
    assert refused["type"] == "insufficient_quota" and "daily output token quota" in refused["message"]


def test_max_tokens_is_clamped_upstream(gateway, fake_requests):
    key = gateway.add_client("clamped", max_output_tokens=50, daily_output_tokens=1000)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(**body(), max_tokens=1000)
    client.chat.completions.create(**body())
    client.chat.completions.create(**body(), max_completion_tokens=20)
    sent = [r["body"] for r in fake_requests() if r["path"] == CHAT]
    assert sent[0]["max_tokens"] == 50
    assert sent[1]["max_completion_tokens"] == 50  # none given: the gateway sets it (OpenAI's field)
    assert sent[2]["max_completion_tokens"] == 20


def test_ratelimit_headers_on_a_refused_request(gateway):
    """An authenticated client's 400 still says where its limits stand, and costs nothing."""
    key = gateway.add_client("headers-on-400", rpm=3)
    resp = httpx.post(gateway.url + CHAT, json={"model": "gpt-4o"}, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 400
    assert (resp.headers["x-ratelimit-limit-requests"], resp.headers["x-ratelimit-remaining-requests"]) == ("3", "3")


def test_input_cap_is_refused_without_retry(gateway):
    key = gateway.add_client("small-input", max_input_tokens=5)
    resp = httpx.post(gateway.url + CHAT, json=body("word " * 50), headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 429 and resp.headers["x-should-retry"] == "false"
    assert resp.json()["error"]["param"] == "max_input_tokens"


def test_stream_cut_by_the_client_is_still_charged(gateway):
    key = gateway.add_client("cutter")
    with httpx.stream("POST", gateway.url + CHAT, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json=body("a b c d e f g h i j k l m n o p #fake:delay=0.1", stream=True)) as resp:
        lines = resp.iter_lines()
        got = [next(lines) for _ in range(6)]
    assert any("Echo" in line for line in got)
    row = gateway.wait_log_rows("cutter", 1)[0]
    assert row["status"] == 499 and row["admitted"] == 1
    assert 0 < row["output_tokens"] < 18 and row["estimated"] == 1


def test_a_request_refused_after_admission_does_not_count(gateway):
    """Nested deeper than the upstream body can be written: refused after the limits counted it,
    so the count is given back and the client's next requests still fit."""
    key = gateway.add_client("given-back", rpm=2)
    deep = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"metadata":' + b"[" * 300 + b"]" * 300 + b"}"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for _ in range(3):
        resp = httpx.post(gateway.url + CHAT, content=deep, headers=headers)
        assert resp.status_code == 400 and "nested too deeply" in resp.json()["error"]["message"]
        assert resp.headers["x-ratelimit-remaining-requests"] == "2"  # given back
    assert [chat_status(gateway.url, key) for _ in range(3)] == [200, 200, 429]
    rows = gateway.wait_log_rows("given-back", 6)
    assert sum(r["admitted"] for r in rows) == 2


def chat_status(url: str, key: str) -> int:
    return httpx.post(url + CHAT, json=body(), headers={"Authorization": f"Bearer {key}"}).status_code


def test_counters_survive_restart_and_sigkill(fresh_gateway):
    key = fresh_gateway.add_client("persistent", rpd=4, daily_output_tokens=1000)
    assert [chat_status(fresh_gateway.url, key) for _ in range(2)] == [200, 200]
    fresh_gateway.wait_log_rows("persistent", 2)
    fresh_gateway.restart()  # SIGTERM
    assert chat_status(fresh_gateway.url, key) == 200
    fresh_gateway.wait_log_rows("persistent", 3)
    fresh_gateway.restart(signal.SIGKILL)
    assert chat_status(fresh_gateway.url, key) == 200
    assert chat_status(fresh_gateway.url, key) == 429  # 4 per day, whatever happened in between


def test_ratelimit_headers_on_success(gateway):
    key = gateway.add_client("headers", rpm=5, rph=100, daily_input_tokens=10000, daily_output_tokens=500)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**body())
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "5" and h["x-ratelimit-remaining-requests"] == "4"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert h["x-ratelimit-limit-tokens"] == "500"  # output quota is the tighter of the two
    assert int(h["x-ratelimit-remaining-tokens"]) <= 500
    with client.chat.completions.with_streaming_response.create(**body(), stream=True) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "3"


def cli(config, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "aigateway", "client", *args, "--config", str(config), "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_cli_usage_and_reset(fresh_gateway):
    key = fresh_gateway.add_client("resettable", rpd=2)
    assert [chat_status(fresh_gateway.url, key) for _ in range(3)] == [200, 200, 429]
    fresh_gateway.wait_log_rows("resettable", 3)
    report = cli(fresh_gateway.config, "usage", "resettable")
    assert report["limits"]["rpd"] == {"limit": 2, "used": 2, "remaining": 0}
    assert report["days"][0]["requests"] == 2 and report["days"][0]["rejected"] == 1
    assert report["limits"]["daily_output_tokens"]["used"] > 0
    cli(fresh_gateway.config, "reset-usage", "resettable")
    assert eventually(lambda: chat_status(fresh_gateway.url, key), lambda s: s == 200) == 200
    assert cli(fresh_gateway.config, "usage", "resettable")["limits"]["rpd"]["used"] <= 1
    updated = cli(fresh_gateway.config, "update", "resettable", "--rpd", "default")
    assert updated["rpd"] is None


def test_a_new_client_never_inherits_a_deleted_clients_usage(fresh_gateway):
    """Client ids are never reused, so a client made after the newest one was deleted starts with
    nothing of it: not its rate-limit window, not its place in the usage pages."""
    from aigateway import clients

    old_key = fresh_gateway.add_client("short-lived", rpm=1)
    assert httpx.post(fresh_gateway.url + CHAT, json=body(), headers={"Authorization": f"Bearer {old_key}"}
                      ).status_code == 200
    conn = fresh_gateway.db()
    old = clients.find(conn, "short-lived")
    clients.delete(conn, old["id"])
    conn.close()
    fresh_gateway.wait_for_key(old_key, accepted=False)
    new_key = fresh_gateway.add_client("newcomer", rpm=1)
    conn = fresh_gateway.db()
    new = clients.find(conn, "newcomer")
    conn.close()
    assert new["id"] != old["id"]
    answer = httpx.post(fresh_gateway.url + CHAT, json=body(), headers={"Authorization": f"Bearer {new_key}"})
    assert answer.status_code == 200, answer.text
    rows = fresh_gateway.wait_log_rows("newcomer", 1)
    assert [r["client_id"] for r in rows] == [new["id"]]


def test_several_choices_are_reserved_each_under_an_output_quota(gateway, fake_requests):
    """OpenAI ``n`` and Gemini ``candidateCount`` ask for several answers, each up to the output cap:
    under a daily output quota of 500, eight choices get 62 tokens each (4 choices: 125), so all
    of them together still fit the quota."""
    key = gateway.add_client("choices", daily_output_tokens=500)
    r = httpx.post(gateway.url + CHAT, json=body(n=8), headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    r = httpx.post(gateway.url + "/v1beta/models/gemini-2.0-flash:generateContent", headers={"x-goog-api-key": key},
                   json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                         "generationConfig": {"candidateCount": 4}})
    assert r.status_code == 200, r.text
    sent = [q["body"] for q in fake_requests() if q["path"].endswith("/chat/completions")]
    assert sent[0]["max_completion_tokens"] == 62 and sent[0]["n"] == 8
    first = gateway.wait_log_rows("choices", 1)[0]["output_tokens"]
    assert sent[1]["n"] == 4 and sent[1]["max_completion_tokens"] == (500 - first) // 4

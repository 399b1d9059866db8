"""Budgets, teams and key governance through a running gateway: budgets never overshot by
concurrent requests and streams, spend equal to the hand-computed sum of what was delivered, a 429
naming the budget and its reset, the remaining budget in a header, restored at restart; teams
shared across their clients; keys that expire, rotate with a grace period, stay on their models
and networks, and are held to tokens per minute and requests at once."""

from __future__ import annotations

import asyncio
import time

import anthropic
import httpx2 as httpx
import openai
import pytest
from conftest import GatewayServer

from aigateway import clients, teams
from aigateway.price_table import TABLES

CHAT = "/v1/chat/completions"
GPT4O = TABLES["openai"]["gpt-4o"]


def body(text: str = "hi", **extra) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


def hand_cost(row: dict) -> float:
    """What a row costs at gpt-4o's shipped prices (the fake reports no cached tokens)."""
    return (row["input_tokens"] * GPT4O.input + row["output_tokens"] * GPT4O.output) / 1_000_000


async def burst(url: str, keys: list[str], payloads: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(payloads))) as client:
        return await asyncio.gather(*(client.post(url + CHAT, json=p, headers={"Authorization": f"Bearer {k}"})
                                      for k, p in zip(keys, payloads, strict=True)))


def test_100_concurrent_requests_and_streams_never_exceed_the_budget(gateway, fake_requests):
    """Half plain, half streamed, all in flight together: the budget is never overshot, each row's
    cost is its delivered tokens at the model's price, the refusals name the budget and its reset,
    and requests admitted on what was left were sent with a smaller output cap."""
    budget = 0.01
    key = gateway.add_client("budget-100", daily_budget_usd=budget)
    text = "w " * 40 + "#fake:delay=0.02"
    payloads = [body(text, max_tokens=60, stream=i % 2 == 1) for i in range(100)]
    responses = asyncio.run(burst(gateway.url, [key] * 100, payloads))
    statuses = [r.status_code for r in responses]
    assert 0 < statuses.count(200) < 100 and statuses.count(200) + statuses.count(429) == 100
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["param"] == "daily_budget_usd" and error["type"] == "insufficient_quota"
    assert "daily budget of $0.01 reached" in error["message"] and "resets in" in error["message"]
    assert refused.headers["retry-after"] and float(refused.headers["x-gateway-budget-remaining-usd"]) < 0.001
    rows = gateway.wait_log_rows("budget-100", 100)
    admitted = [r for r in rows if r["admitted"]]
    assert len(admitted) == statuses.count(200)
    assert all(r["priced"] and r["cost_usd"] == pytest.approx(hand_cost(r), abs=1e-12) for r in admitted)
    spent = sum(r["cost_usd"] for r in admitted)
    assert spent == pytest.approx(sum(hand_cost(r) for r in admitted)) and spent <= budget
    assert all(r["cost_usd"] == 0 and r["output_tokens"] == 0 for r in rows if not r["admitted"])
    caps = [r["body"].get("max_tokens") for r in fake_requests() if r["path"] == CHAT
            and "w w w" in str(r["body"]["messages"])]
    assert len(caps) == len(admitted) and max(caps) == 60


def test_the_output_cap_shrinks_to_what_is_left_and_the_header_says_it(gateway, fake_requests):
    """$0.001 at gpt-4o's $10 per million output tokens is 100 output tokens less the input."""
    key = gateway.add_client("budget-shrink", daily_budget_usd=0.001)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**body("hello", max_tokens=4000))
    sent = [r["body"] for r in fake_requests() if r["path"] == CHAT][-1]
    assert 50 < sent["max_tokens"] < 100
    left = float(raw.headers["x-gateway-budget-remaining-usd"])
    assert 0 <= left < 0.001 and raw.headers["x-gateway-budget-reset"].endswith("s")


def test_budgets_survive_a_restart(fresh_gateway):
    key = fresh_gateway.add_client("budget-restart", daily_budget_usd=0.0005)
    headers = {"Authorization": f"Bearer {key}"}
    text = "w " * 30
    statuses = [httpx.post(fresh_gateway.url + CHAT, json=body(text, max_tokens=10), headers=headers).status_code
                for _ in range(6)]
    assert statuses[0] == 200 and statuses[-1] == 429
    fresh_gateway.wait_log_rows("budget-restart", 6)
    fresh_gateway.restart()
    resp = httpx.post(fresh_gateway.url + CHAT, json=body(text, max_tokens=10), headers=headers)
    assert resp.status_code == 429 and "daily budget" in resp.json()["error"]["message"]


def test_a_monthly_budget_refuses_in_anthropic_shape(gateway):
    key = gateway.add_client("budget-monthly", provider="fake-anthropic", monthly_budget_usd=0.000001)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="claude-sonnet-4-20250514", max_tokens=100,
                               messages=[{"role": "user", "content": "hi"}])
    assert "monthly budget" in refused.value.message and "resets in" in refused.value.message


def make_team(server: GatewayServer, name: str, **limits) -> int:
    conn = server.db()
    team_id = teams.create(conn, name, **limits)["id"]
    conn.close()
    return team_id


def test_a_team_limit_holds_across_its_clients(gateway):
    team = make_team(gateway, "team-rpm", rpm=6)
    keys = [gateway.add_client(f"team-rpm-{i}", team_id=team) for i in range(3)]
    payloads = [body("#fake:delay=0.05")] * 30
    responses = asyncio.run(burst(gateway.url, [keys[i % 3] for i in range(30)], payloads))
    assert [r.status_code for r in responses].count(200) == 6
    refused = next(r for r in responses if r.status_code == 429).json()["error"]
    assert "team 'team-rpm'" in refused["message"] and refused["param"] == "rpm"


def test_a_team_budget_is_shared_and_the_client_budget_still_applies(gateway):
    team = make_team(gateway, "team-budget", daily_budget_usd=0.002)
    small = gateway.add_client("team-budget-small", team_id=team, daily_budget_usd=0.0005)
    big = gateway.add_client("team-budget-big", team_id=team)
    text = "w " * 30
    spent = {}
    for key, name in ((small, "team-budget-small"), (big, "team-budget-big")):
        for _ in range(20):
            if httpx.post(gateway.url + CHAT, json=body(text, max_tokens=10),
                          headers={"Authorization": f"Bearer {key}"}).status_code == 429:
                break
        rows = gateway.wait_log_rows(name, 1)
        spent[name] = sum(r["cost_usd"] for r in rows)
    assert 0 < spent["team-budget-small"] <= 0.0005
    assert spent["team-budget-small"] + spent["team-budget-big"] <= 0.002
    assert spent["team-budget-big"] > 0.0005  # held by the team's budget, not the small client's


def status(server: GatewayServer, key: str, **headers: str) -> httpx.Response:
    return httpx.post(server.url + CHAT, json=body(), headers={"Authorization": f"Bearer {key}", **headers})


def test_an_expired_key_is_a_401_saying_so(gateway):
    key = gateway.add_client("expiring", expires_at=time.time() + 1.5)
    assert status(gateway, key).status_code == 200
    time.sleep(1.6)
    resp = status(gateway, key)
    assert resp.status_code == 401 and "expired" in resp.json()["error"]["message"]
    assert status(gateway, key).status_code == 401  # refused before any limit or cost: nothing charged
    time.sleep(1.2)  # past the writer's flush
    assert [r["status"] for r in gateway.log_rows("expiring")] == [200]


def test_a_rotated_key_keeps_working_for_its_grace_period(gateway):
    old = gateway.add_client("rotating")
    conn = gateway.db()
    _, new = clients.rotate_key(conn, "rotating", grace_seconds=2)
    conn.close()
    gateway.wait_for_key(new)
    assert status(gateway, old).status_code == 200 and status(gateway, new).status_code == 200
    time.sleep(2.1)
    resp = status(gateway, old)
    assert resp.status_code == 401 and "grace period" in resp.json()["error"]["message"]
    assert status(gateway, new).status_code == 200


def test_allowed_models_are_checked_after_routing(gateway):
    key = gateway.add_client("models-only", allowed_models=["gpt-4o*"], allowed_providers=["fake-anthropic"])
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    assert client.chat.completions.create(**body()).choices[0].message.content
    assert client.chat.completions.create(**{**body(), "model": "gpt-4o-mini"}).choices
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(**{**body(), "model": "fake-anthropic/claude-sonnet-4-20250514"})
    assert "may not use the model 'claude-sonnet-4-20250514'" in refused.value.message
    assert [m.id for m in client.models.list()] == [m for m in (m.id for m in client.models.list())
                                                    if m.startswith("gpt-4o")]


def test_tokens_per_minute_and_requests_at_once(gateway):
    tpm = gateway.add_client("tpm-small", tpm=120)
    assert status(gateway, tpm).status_code == 200  # "hi" reserves its input bound and the output left
    resp = httpx.post(gateway.url + CHAT, json=body("w " * 100), headers={"Authorization": f"Bearer {tpm}"})
    assert resp.status_code == 429 and resp.json()["error"]["param"] == "tpm"
    assert "tokens-per-minute limit of 120" in resp.json()["error"]["message"]
    two = gateway.add_client("two-at-once", max_concurrent=2)
    responses = asyncio.run(burst(gateway.url, [two] * 6, [body("#fake:delay=0.1", stream=True)] * 6))
    assert [r.status_code for r in responses].count(200) == 2
    refused = next(r for r in responses if r.status_code == 429).json()["error"]
    assert refused["param"] == "max_concurrent" and "in flight" in refused["message"]
    assert status(gateway, two).status_code == 200  # the streams ended: the key may send again


def test_allowed_networks_through_a_trusted_proxy(fake_upstream, tmp_path):
    server = GatewayServer(tmp_path, fake_upstream, **{"server.trusted_proxies": ["127.0.0.1"]})
    try:
        key = server.add_client("office-only", allowed_networks=["10.0.0.0/8"])
        refused = status(server, key)
        assert refused.status_code == 403 and "127.0.0.1" in refused.json()["error"]["message"]
        assert status(server, key, **{"X-Forwarded-For": "10.1.2.3"}).status_code == 200
        # what the client itself put before the proxy's entry is not believed
        assert status(server, key, **{"X-Forwarded-For": "10.1.2.3, 192.0.2.7"}).status_code == 403
    finally:
        server.stop()

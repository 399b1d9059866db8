"""The upstream client pool: keep-alive connections are reused, and streams run side by side
rather than queueing behind a small client pool (Tornado's default is 10)."""

from __future__ import annotations

import asyncio
import time

import httpx2 as httpx

CHAT = "/v1/chat/completions"


def fake_connections(fake_upstream: str) -> int:
    return httpx.get(fake_upstream + "/_fake/stats").json()["connections"]


def test_sequential_requests_reuse_upstream_connections(gateway, fake_upstream):
    key = gateway.add_client("pool-sequential")
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    before = fake_connections(fake_upstream)
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        statuses = [client.post(CHAT, json=body).status_code for _ in range(1000)]
    assert statuses == [200] * 1000
    assert fake_connections(fake_upstream) - before <= 5  # a handful of TCP connections, not 1,000


async def _stream(client: httpx.AsyncClient, body: dict) -> tuple[int, float, float, bytes]:
    """(status, when the first body bytes arrived, when the stream ended, the body)."""
    first = 0.0
    data = b""
    async with client.stream("POST", CHAT, json=body) as resp:
        async for chunk in resp.aiter_bytes():
            first = first or time.monotonic()
            data += chunk
    return resp.status_code, first, time.monotonic(), data


def test_200_slow_streams_run_at_once(gateway):
    key = gateway.add_client("pool-streams")
    body = {"model": "gpt-4o", "stream": True,
            "messages": [{"role": "user", "content": "one two three four #fake:chunks=10 #fake:delay=0.2"}]}

    async def run() -> list[tuple[int, float, float, bytes]]:
        async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"},
                                     timeout=60, limits=httpx.Limits(max_connections=250)) as client:
            return await asyncio.gather(*(_stream(client, body) for _ in range(200)))

    results = asyncio.run(run())
    assert [status for status, *_ in results] == [200] * 200
    assert all(data.count(b'"content":"') >= 8 and data.endswith(b"data: [DONE]\n\n") for *_, data in results)
    # Each stream takes about 1.8 s upstream. Had they queued behind a pool of N upstream slots,
    # stream N+1 would start only after the first N ended; instead every stream has begun before
    # any of them finished.
    assert max(first for _, first, _, _ in results) < min(end for _, _, end, _ in results)

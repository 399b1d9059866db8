"""The dashboard hub on its own (real Gateway, real SQLite, fake sockets), and the /admin/ws
upgrade against a real server: who may connect, and from where."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest
from conftest import GatewayServer, write_config
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from aigateway import hub as hub_module
from aigateway.admin import sessions
from aigateway.app import Gateway
from aigateway.config import load
from aigateway.usage import UsageRecord


class FakeSocket:
    """Records the frames the hub sends. A stuck socket takes its first frame, then never
    finishes another write until ``unstick()``, like a browser that stopped reading."""

    def __init__(self, stuck: bool = False) -> None:
        self.frames: list[list[dict]] = []
        self.stuck = stuck
        self.pending: list[asyncio.Future] = []

    def write_message(self, frame: bytes) -> asyncio.Future:
        self.frames.append(orjson.loads(frame))
        fut = asyncio.get_running_loop().create_future()
        if self.stuck and len(self.frames) > 1:
            self.pending.append(fut)
        else:
            fut.set_result(None)
        return fut

    def unstick(self) -> None:
        self.stuck = False
        for fut in self.pending:
            fut.set_result(None)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        pass

    def messages(self, kind: str) -> list[dict]:
        return [m for frame in self.frames for m in frame if m["type"] == kind]


def record(n: int = 0, **fields) -> UsageRecord:
    values = dict(client_id=1, client_name="bot", inbound="openai", provider="p", model="m", status=200,
                  latency_ms=10.0 + n * 1e-3, input_tokens=5, output_tokens=7, admitted=True)
    values.update(fields)
    return UsageRecord(**values)


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def run_with_gateway(tmp_path: Path) -> Iterator[Callable[[Callable[[Gateway], Awaitable[None]]], None]]:
    """Runs ``async fn(gateway)`` on a fresh event loop with a real Gateway on temp files."""
    config = load(write_config(tmp_path, "http://127.0.0.1:9"), announce=False)
    gateways = []

    def run(fn: Callable[[Gateway], Awaitable[None]]) -> None:
        async def main() -> None:
            gw = Gateway(config)
            gateways.append(gw)
            try:
                await fn(gw)
            finally:
                gw.close()

        asyncio.run(main())

    yield run


def test_no_socket_no_work(run_with_gateway) -> None:
    async def scenario(gw: Gateway) -> None:
        hub, rec = gw.hub, record()
        hub.request_finished(rec)  # warm the call path before measuring
        before = sys.getallocatedblocks()
        for _ in range(10000):
            hub.request_started(rec)  # any object: the hook must not look at it
            hub.request_finished(rec)
        assert sys.getallocatedblocks() - before < 50  # no per-call allocation
        assert hub._ticker is None and not hub._finished and not hub._started and not hub.recent

        socket = FakeSocket()
        hub.add(socket)
        assert hub._ticker is not None and hub._ticker.is_running()
        await until(lambda: socket.frames)
        hub.remove(socket)
        assert hub._ticker is None and not hub.recent and not hub.series  # state goes with the last socket
        sent = hub.frames_sent
        for i in range(100):
            hub.request_finished(record(i))
        await asyncio.sleep(hub_module.TICK_SECONDS * 3)
        assert hub.frames_sent == sent and not hub._finished

    run_with_gateway(scenario)


def test_many_records_few_pushes(run_with_gateway) -> None:
    async def scenario(gw: Gateway) -> None:
        hub, socket = gw.hub, FakeSocket()
        hub.add(socket)
        await until(lambda: socket.frames)
        assert socket.frames[0][0]["type"] == "snapshot"
        t0 = time.monotonic()
        for burst in range(20):  # 2,000 requests in about a second
            for i in range(100):
                hub.request_finished(record(burst * 100 + i))
            await asyncio.sleep(0.05)
        await until(lambda: socket.messages("stats/update")[-1]["payload"]["requests_today"] == 2000)
        elapsed = time.monotonic() - t0
        deltas = len(socket.frames) - 1
        assert deltas <= elapsed / hub_module.TICK_SECONDS + 2, (deltas, elapsed)
        added = socket.messages("requests/add")
        assert all(len(m["payload"]) <= hub_module.RECENT_MAX for m in added)  # a frame stays small
        assert added[-1]["payload"][-1]["latency_ms"] == round(10 + 1999e-3, 1)  # the newest row came
        stats = socket.messages("stats/update")[-1]["payload"]
        assert stats["requests_today"] == 2000 and stats["requests_per_minute"] == 2000
        assert stats["input_tokens_today"] == 10000 and stats["output_tokens_today"] == 14000
        assert stats["latency_p50_ms"] == pytest.approx(11.0, abs=0.1)
        assert len(hub.recent) == hub_module.RECENT_MAX
        series = hub.snapshot()["series"]
        assert sum(b["requests"] for b in series) == 2000

    run_with_gateway(scenario)


def test_slow_socket_resynced_not_waited_for(run_with_gateway) -> None:
    async def scenario(gw: Gateway) -> None:
        hub, slow, fast = gw.hub, FakeSocket(stuck=True), FakeSocket()
        hub.add(slow)
        hub.add(fast)
        await until(lambda: slow.frames and fast.frames)
        hub._ticker.stop()  # drive the ticks by hand
        for i in range(hub_module.QUEUE_MAX + 10):
            hub.request_finished(record(i))
            t = time.perf_counter()
            hub._tick()
            assert time.perf_counter() - t < 0.05  # the stuck socket costs the tick nothing
            await asyncio.sleep(0)
        assert hub.resyncs >= 1
        assert len(fast.messages("requests/add")) == hub_module.QUEUE_MAX + 10  # the fast one got them all
        assert len(slow.frames) == 2  # its snapshot, and the one delta it is stuck on
        slow.unstick()
        await until(lambda: len(slow.frames) >= 3)
        await asyncio.sleep(0.05)
        assert [m["type"] for m in slow.frames[2]] == ["snapshot"]  # a fresh one, not the stale backlog
        assert len(slow.frames) == 3
        assert slow.frames[2][0]["payload"]["stats"]["requests_today"] == hub_module.QUEUE_MAX + 10

    run_with_gateway(scenario)


@pytest.mark.parametrize("during", [0, 20])
def test_snapshot_warms_from_sqlite_counting_each_record_once(run_with_gateway, during: int) -> None:
    """Records finished before the first dashboard are still queued for the writer (the hub must
    wait for them); with ``during``, more finish while it warms up, half of them committed before
    its read (the hub must not count those twice)."""

    async def scenario(gw: Gateway) -> None:
        hub, real_read, gate = gw.hub, gw.db.read, threading.Event()

        def finish(rec: UsageRecord) -> None:  # what the relay does at the end of _account
            gw.record(rec)  # to the writer and, through its hook, to the hub

        async def read_later(fn):
            for i in range(during // 2):
                finish(record(100 + i, output_tokens=1))
            await gw.db.write(lambda conn: None, transaction=False)
            await gw.db.write(lambda conn: None, transaction=False)
            for i in range(during // 2):
                finish(record(200 + i, output_tokens=1))
            return await real_read(fn)

        if during:
            gw.db.read = read_later
        stalled = asyncio.ensure_future(gw.db.write(lambda conn: gate.wait(5), transaction=False))
        await asyncio.sleep(0.05)
        for i in range(30):
            finish(record(i))
        socket = FakeSocket()
        hub.add(socket)
        asyncio.get_running_loop().call_later(0.2, gate.set)
        await until(lambda: socket.frames)
        await stalled
        snapshot = socket.frames[0][0]["payload"]
        assert snapshot["stats"]["requests_today"] == 30 + during
        assert snapshot["stats"]["output_tokens_today"] == 30 * 7 + during
        assert snapshot["stats"]["requests_per_minute"] == 30 + during
        assert sum(b["requests"] for b in snapshot["series"]) == 30 + during
        assert len(snapshot["requests"]) == min(hub_module.RECENT_MAX, 30 + during)

    run_with_gateway(scenario)


def test_last_minute_figures_error_rate_and_percentiles(run_with_gateway) -> None:
    """The counters a dashboard shows for the last minute, computed from known records: 20 requests
    of which 5 failed (error rate 0.25); the percentiles are nearest-rank over the 15 successful
    ones only (latencies 10..150 ms: p50 80, p95 150; TTFTs 1..15 ms: p50 8, p95 15): the slow
    failures are left out."""

    async def scenario(gw: Gateway) -> None:
        hub, socket = gw.hub, FakeSocket()
        hub.add(socket)
        await until(lambda: socket.frames)
        now = time.time()
        for i in range(15):
            hub.request_finished(record(ts=now - 1, latency_ms=10.0 * (15 - i), ttft_ms=float(15 - i)))
        for _ in range(5):
            hub.request_finished(record(ts=now - 1, status=502, latency_ms=5000.0, ttft_ms=4000.0))
        await until(lambda: socket.messages("stats/update"))
        stats = socket.messages("stats/update")[-1]["payload"]
        assert stats["requests_per_minute"] == 20
        assert stats["error_rate"] == 0.25
        assert (stats["latency_p50_ms"], stats["latency_p95_ms"]) == (80.0, 150.0)
        assert (stats["ttft_p50_ms"], stats["ttft_p95_ms"]) == (8.0, 15.0)

    run_with_gateway(scenario)


def test_requests_in_flight_come_and_go(run_with_gateway) -> None:
    class Ex:  # what the hub reads of a relay.Exchange
        def __init__(self, rec: UsageRecord) -> None:
            self.record = rec

    async def scenario(gw: Gateway) -> None:
        hub, socket = gw.hub, FakeSocket()
        early = Ex(record(1, stream=True, client_name="early"))
        gw.track(early)  # in flight before the dashboard opened
        hub.add(socket)
        await until(lambda: socket.frames)
        assert [a["client"] for a in socket.frames[0][0]["payload"]["active"]] == ["early"]
        late = Ex(record(2, stream=True, client_name="late"))
        gw.track(late)  # the relay's hook: the hub hears of it
        await until(lambda: socket.messages("active/add"))
        assert socket.messages("active/add")[0]["payload"][0]["client"] == "late"
        assert socket.messages("stats/update")[-1]["payload"]["active_streams"] == 2
        for ex in (early, late):
            gw.untrack(ex)
            hub.request_finished(ex.record)
        await until(lambda: socket.messages("active/remove"))
        assert len(socket.messages("active/remove")[0]["payload"]) == 2
        blink = Ex(record(3))  # starts and ends within one tick: only its log row shows
        hub.request_started(blink)
        hub.request_finished(blink.record)
        await until(lambda: len(socket.messages("requests/add")) == 2)
        assert len(socket.messages("active/add")) == 1

    run_with_gateway(scenario)


# -- the upgrade, against a real server

def session_cookie(server: GatewayServer) -> str:
    value = sessions.make_session(load(server.config, announce=False)).decode()
    return f"{sessions.COOKIE}={value}"


def connect(server: GatewayServer, **headers: str):
    url = server.url.replace("http://", "ws://") + "/admin/ws"
    return websocket_connect(HTTPRequest(url, headers=headers, request_timeout=5))


def refusal(server: GatewayServer, **headers: str) -> int:
    async def attempt() -> int:
        with pytest.raises(HTTPClientError) as exc:
            await connect(server, **headers)
        return exc.value.code

    return asyncio.run(attempt())


def test_upgrade_without_session_refused(gateway: GatewayServer) -> None:
    assert refusal(gateway) == 401
    assert refusal(gateway, Cookie=f"{sessions.COOKIE}=forged|value") == 401


def test_cross_origin_upgrade_refused(gateway: GatewayServer) -> None:
    cookie = session_cookie(gateway)
    assert refusal(gateway, Cookie=cookie, Origin="http://evil.example") == 403
    assert refusal(gateway, Cookie=cookie, Origin="http://evil.example", **{"Sec-Fetch-Site": "cross-site"}) == 403


def test_same_origin_upgrade_gets_snapshot_then_live_rows(gateway: GatewayServer) -> None:
    key = gateway.add_client("hub-live")
    host = gateway.url.removeprefix("http://")

    async def scenario() -> None:
        ws = await connect(gateway, Cookie=session_cookie(gateway), Origin=f"http://{host}")
        first = orjson.loads(await ws.read_message())
        assert first[0]["type"] == "snapshot"
        async with httpx.AsyncClient() as client:
            r = await client.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                  json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
        t0 = time.monotonic()
        rows: list[dict] = []
        while not any(row["client"] == "hub-live" for row in rows):
            frame = orjson.loads(await asyncio.wait_for(ws.read_message(), 2))
            rows += [row for m in frame if m["type"] == "requests/add" for row in m["payload"]]
        assert time.monotonic() - t0 < 1
        ws.close()

    asyncio.run(scenario())


def test_dashboard_page_needs_login(gateway: GatewayServer) -> None:
    r = httpx.get(gateway.url + "/admin/dashboard", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].startswith("/admin")
    r = httpx.get(gateway.url + "/admin/dashboard", headers={"Cookie": session_cookie(gateway)})
    assert r.status_code == 200 and "dashboard.js" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]

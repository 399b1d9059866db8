"""Graceful shutdown on SIGTERM/SIGINT: stop accepting, let requests and streams in flight finish
within ``server.shutdown_grace_seconds``, end the rest with an in-band error, flush usage, exit 0.
A restart loses nothing that finished."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time

import httpx2 as httpx
import pytest
from conftest import GatewayServer
from faults import chat_request, clean_error, sse_data

from aigateway.price_table import TABLES

WORDS = " ".join(f"w{i}" for i in range(12))
STREAMS = 40


class StreamInFlight:
    """A streaming chat request read on a thread; ``first`` is set once its first event arrived."""

    def __init__(self, server: GatewayServer, key: str, text: str, fmt: str = "openai") -> None:
        self.fmt = fmt
        self.first = threading.Event()
        self.status = 0
        self.body = b""
        self.error: Exception | None = None
        path, headers, body = chat_request(fmt, key, text, True)
        self.thread = threading.Thread(target=self._run, args=(server.url + path, headers, body), daemon=True)
        self.thread.start()
        assert self.first.wait(10), "the stream did not start"

    def _run(self, url: str, headers: dict, body: dict) -> None:
        try:
            with httpx.stream("POST", url, headers=headers, json=body, timeout=60) as r:
                self.status = r.status_code
                for chunk in r.iter_bytes():
                    self.body += chunk
                    self.first.set()
        except Exception as exc:  # noqa: BLE001 -- reported by the test
            self.error = exc
        finally:
            self.first.set()

    def result(self, timeout: float = 30) -> StreamInFlight:
        self.thread.join(timeout)
        assert not self.thread.is_alive() and self.error is None, self.error
        return self


def text_of(body: bytes) -> str:
    return "".join(d["choices"][0]["delta"].get("content") or "" for _, d in sse_data(body)
                   if isinstance(d, dict) and d.get("choices"))


def wait_exit(server: GatewayServer, timeout: float = 30) -> int:
    return server.proc.popen.wait(timeout)


def connection_refused(server: GatewayServer) -> bool:
    host, port = server.url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_streams_in_flight_finish_within_the_grace_period_then_exit_0(fresh_gateway, sig):
    key = fresh_gateway.add_client("finisher")
    done = [StreamInFlight(fresh_gateway, key, f"{WORDS} #fake:delay=0.1") for _ in range(10)]
    started = time.monotonic()
    fresh_gateway.proc.popen.send_signal(sig)
    time.sleep(0.3)
    assert connection_refused(fresh_gateway)  # stopped accepting at once
    assert wait_exit(fresh_gateway) == 0
    assert time.monotonic() - started < 10  # it did not wait out the 30 s grace: nothing was left
    for stream in done:
        stream.result()
        assert stream.status == 200 and text_of(stream.body) == f"Echo: {WORDS}" and b"[DONE]" in stream.body
    output = fresh_gateway.proc.text
    assert "Traceback" not in output and "stopped (0 requests ended" in output
    rows = fresh_gateway.log_rows("finisher")  # flushed before exit: no waiting needed
    assert len(rows) == 10 and all(r["status"] == 200 and not r["estimated"] for r in rows)


def test_streams_past_the_grace_period_end_with_an_error_event_and_are_accounted(fake_upstream, tmp_path):
    server = GatewayServer(tmp_path, fake_upstream, **{"server.shutdown_grace_seconds": 1})
    try:
        key = server.add_client("overstayer")
        gemini_key = server.add_client("overstayer-gemini", "fake-gemini")
        # Cut together, their records reach the writer thread together, just before exit: all are kept.
        streams = [StreamInFlight(server, key, f"{WORDS} #fake:delay=0.5") for _ in range(STREAMS // 2)]
        streams += [StreamInFlight(server, gemini_key, f"{WORDS} #fake:delay=0.5", "gemini")
                    for _ in range(STREAMS // 2)]
        started = time.monotonic()
        server.proc.popen.send_signal(signal.SIGTERM)
        assert wait_exit(server) == 0
        assert time.monotonic() - started < 5  # the 1 s grace, then a prompt, clean end
        for stream in streams:
            stream.result()
            message = clean_error(stream.fmt, stream)
            assert stream.status == 200 and message and "shutting down" in message, stream.body
        rows = server.log_rows("overstayer") + server.log_rows("overstayer-gemini")
        assert [r["status"] for r in rows] == [503] * STREAMS
        assert all(r["output_tokens"] >= 1 and r["input_tokens"] >= 1 for r in rows)  # what was streamed
        assert f"stopped ({STREAMS} requests ended at the end of the grace period)" in server.proc.text
        assert "Traceback" not in server.proc.text
    finally:
        server.stop()


def test_a_plain_request_in_flight_finishes(fresh_gateway):
    key = fresh_gateway.add_client("plain-finisher")
    result: dict = {}

    def call() -> None:
        path, headers, body = chat_request("openai", key, "slow one #fake:stall=1.5", False)
        result["r"] = httpx.post(fresh_gateway.url + path, headers=headers, json=body, timeout=30)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)
    fresh_gateway.proc.popen.send_signal(signal.SIGTERM)
    assert wait_exit(fresh_gateway) == 0
    thread.join(10)
    assert result["r"].status_code == 200 and "Echo: slow one" in result["r"].text
    assert [r["status"] for r in fresh_gateway.log_rows("plain-finisher")] == [200]


def test_new_requests_on_open_connections_are_refused_during_the_drain(fresh_gateway):
    key = fresh_gateway.add_client("latecomer")
    stream = StreamInFlight(fresh_gateway, key, f"{WORDS} #fake:delay=0.2")
    with httpx.Client(base_url=fresh_gateway.url, timeout=10) as client:
        assert client.get("/health").status_code == 200  # a kept-alive connection
        fresh_gateway.proc.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        path, headers, body = chat_request("openai", key, "too late", False)
        late = client.post(path, headers=headers, json=body)
    assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]
    assert late.headers["connection"] == "close" and late.headers["retry-after"] == "1"
    assert wait_exit(fresh_gateway) == 0
    assert stream.result().status == 200 and b"[DONE]" in stream.body


def test_a_second_signal_ends_the_grace_period_at_once(fresh_gateway):
    key = fresh_gateway.add_client("impatient")
    stream = StreamInFlight(fresh_gateway, key, f"{WORDS} #fake:delay=1")  # ~12 s of a 30 s grace
    fresh_gateway.proc.popen.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    started = time.monotonic()
    fresh_gateway.proc.popen.send_signal(signal.SIGTERM)
    assert wait_exit(fresh_gateway) == 0
    assert time.monotonic() - started < 3
    assert "shutting down" in clean_error("openai", stream.result())


def test_restart_loses_nothing_that_finished(fresh_gateway):
    key = fresh_gateway.add_client("survivor")
    for i in range(20):
        path, headers, body = chat_request("openai", key, f"request {i}", i % 2 == 0)
        assert httpx.post(fresh_gateway.url + path, headers=headers, json=body).status_code == 200
    port = int(fresh_gateway.url.rsplit(":", 1)[1])
    assert fresh_gateway.stop(signal.SIGTERM) == 0  # at once, no wait for the writer: shutdown flushes it
    fresh_gateway.start(port)
    rows = fresh_gateway.log_rows("survivor")
    assert len(rows) == 20 and all(r["status"] == 200 and r["output_tokens"] > 0 for r in rows)
    path, headers, body = chat_request("openai", key, "after the restart", False)
    assert httpx.post(fresh_gateway.url + path, headers=headers, json=body).status_code == 200


def test_shutdown_flushes_every_queued_usage_record(tmp_path):
    """In process: records still queued for the writer thread when shutdown runs are all stored
    by the time it returns (a SIGTERM right after a burst of requests loses none)."""
    import asyncio

    from tornado.httpserver import HTTPServer

    from aigateway import server
    from aigateway.app import Gateway, make_app
    from aigateway.config import load
    from aigateway.usage import UsageRecord

    async def main() -> None:
        gateway = Gateway(load(tmp_path / "config.yaml", announce=False))
        await gateway.start()
        for i in range(5000):
            gateway.record(UsageRecord(None, f"burst-{i}", "openai", status=200, output_tokens=1))
        await server.shut_down(gateway, HTTPServer(make_app(gateway)), 0, asyncio.Event())

    asyncio.run(main())
    conn = sqlite3.connect(tmp_path / "data" / "gateway.db")
    assert conn.execute("SELECT COUNT(*) FROM request_log WHERE client_name LIKE 'burst-%'").fetchone()[0] == 5000


def test_a_sigkill_loses_no_usage_of_requests_in_flight(fresh_gateway):
    """Five streams are in flight when the gateway is killed: after the restart each is in the
    request log, counted at what it had streamed by its last mark, and the limits count them."""
    key = fresh_gateway.add_client("killed", rpd=6)
    streams = [StreamInFlight(fresh_gateway, key, f"{WORDS} #fake:delay=0.4") for _ in range(5)]
    time.sleep(2.5)  # a few words each, and a flight mark (written once a second) after them
    received = [len(text_of(s.body).split()) for s in streams]
    fresh_gateway.restart(signal.SIGKILL)
    rows = fresh_gateway.log_rows("killed")
    assert len(rows) == 5 and all(r["status"] == 500 and r["admitted"] == 1 for r in rows), rows
    assert all(r["output_tokens"] > 0 for r in rows) and min(received) > 0, (rows, received)
    price = TABLES["openai"]["gpt-4o"]  # fake-openai is of type openai
    assert [r["cost_usd"] for r in rows] == pytest.approx(
        [(r["input_tokens"] * price.input + r["output_tokens"] * price.output) / 1e6 for r in rows])
    conn = fresh_gateway.db()
    assert conn.execute("SELECT COUNT(*) FROM in_flight").fetchone()[0] == 0
    assert tuple(conn.execute("SELECT SUM(requests), SUM(output_tokens) FROM daily_usage d JOIN clients c"
                              " ON c.id = d.client_id WHERE c.name = 'killed'").fetchone()) == (
        5, sum(r["output_tokens"] for r in rows))
    conn.close()
    path, headers, body = chat_request("openai", key, "the sixth of the day", False)
    assert httpx.post(fresh_gateway.url + path, headers=headers, json=body).status_code == 200
    refused = httpx.post(fresh_gateway.url + path, headers=headers, json=body)
    assert refused.status_code == 429 and "requests-per-day" in refused.json()["error"]["message"], refused.text


def test_a_flight_mark_never_outlives_the_record_that_ends_it(tmp_path):
    """In process: a mark and the usage record ending its flight in one writer batch, behind
    another record: the mark is written first, so no stale mark is left to count twice."""
    from aigateway.db import Database
    from aigateway.flights import FlightMark
    from aigateway.migrations import migrate
    from aigateway.usage import UsageRecord

    db = Database(tmp_path / "gateway.db")
    migrate(db._writer_conn)
    now = time.time()
    db.put(UsageRecord(None, "someone else", "openai"))
    db.put(FlightMark(7, 1, "c", "openai", "p", "m", True, now, 10, 20, 3, now))
    db.put(UsageRecord(1, "c", "openai", output_tokens=5, admitted=True, flight_id=7))
    db.close()
    conn = sqlite3.connect(tmp_path / "gateway.db")
    assert conn.execute("SELECT COUNT(*) FROM in_flight").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM request_log").fetchone()[0] == 2

"""``/healthz`` and ``/readyz``: what they answer while serving, when the database writer is held
up or the database file is gone, and during a real SIGTERM drain with a stream in flight."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import httpx2 as httpx
import pytest
from conftest import eventually
from faults import chat_request
from test_shutdown import WORDS, StreamInFlight, text_of, wait_exit

from aigateway.db import Database
from aigateway.health import WRITER_LAG_LIMIT
from aigateway.usage import UsageRecord


def probe(url: str, path: str, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).get(url + path, timeout=10)


def chat(server, key: str, text: str) -> int:
    path, headers, body = chat_request("openai", key, text, False)
    return httpx.post(server.url + path, headers=headers, json=body, timeout=30).status_code


def test_both_answer_json_without_a_key_while_serving(gateway):
    live, ready = probe(gateway.url, "/healthz"), probe(gateway.url, "/readyz")
    assert live.status_code == 200 and live.json() == {"status": "ok", "stopping": False}
    assert ready.status_code == 200 and ready.headers["content-type"].startswith("application/json")
    body = ready.json()
    assert body["status"] == "ready" and "reason" not in body
    assert body["checks"] == {"serving": "ok", "config": "ok", "database": "ok", "writer": "ok"}
    assert body["writer"]["queued"] >= 0 and body["writer"]["oldest_seconds"] < WRITER_LAG_LIMIT


def test_the_writer_reports_its_backlog_while_a_lock_holds_it_up(tmp_path):
    """In process, on a real file: another connection's write lock stops the writer; its health
    shows the wait growing, then nothing waiting once the lock is gone and the batch committed."""
    db = Database(tmp_path / "gateway.db")
    try:
        assert db.writer_health().oldest_seconds == 0 and db.writer_health().error is None
        blocker = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        db.put(UsageRecord(None, "held-up", "openai"))
        time.sleep(1)
        held = db.writer_health()
        assert held.alive and held.oldest_seconds >= 0.9 and held.error is None
        for i in range(3):  # queued behind the batch the writer holds
            db.put(UsageRecord(None, f"behind-{i}", "openai"))
        assert db.writer_health().queued == 3
        blocker.execute("ROLLBACK")
        health = eventually(db.writer_health, lambda h: h.oldest_seconds == 0 and h.queued == 0)
        assert health.oldest_seconds == 0 and health.queued == 0 and health.error is None
        count = blocker.execute("SELECT COUNT(*) FROM request_log").fetchone()[0]
        assert count == 4
        blocker.close()
    finally:
        db.close()
    assert not db.writer_health().alive


def test_a_failed_write_is_reported_then_expires(tmp_path):
    """A batch that fails (here: its table is gone) is the writer's error until a later batch
    succeeds; readiness counts it for WRITER_LAG_LIMIT seconds (health.py)."""
    db = Database(tmp_path / "gateway.db")
    try:
        asyncio.run(db.write(lambda conn: conn.execute("ALTER TABLE request_log RENAME TO request_log_away")))
        db.put(UsageRecord(None, "lost", "openai"))
        failed = eventually(db.writer_health, lambda h: h.error is not None)
        assert "no such table: request_log" in failed.error and failed.error_seconds < WRITER_LAG_LIMIT
        asyncio.run(db.write(lambda conn: conn.execute("ALTER TABLE request_log_away RENAME TO request_log")))
        db.put(UsageRecord(None, "stored", "openai"))
        assert eventually(db.writer_health, lambda h: h.error is None).error is None
    finally:
        db.close()


def test_readyz_is_503_while_the_writer_is_held_up_and_ready_again_after(fresh_gateway):
    key = fresh_gateway.add_client("held-up")
    blocker = sqlite3.connect(fresh_gateway.folder / "data" / "gateway.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assert chat(fresh_gateway, key, "recorded while the database is locked") == 200  # serving goes on
        ready = eventually(lambda: probe(fresh_gateway.url, "/readyz"), lambda r: r.status_code == 503,
                           timeout=WRITER_LAG_LIMIT + 10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable" and body["checks"]["writer"] == body["reason"]
        # Past the lag limit, or SQLite's 10 s busy timeout ran out first: either way, the writer.
        assert "behind" in body["reason"] or "database is locked" in body["reason"], body
        assert probe(fresh_gateway.url, "/healthz").status_code == 200  # alive all the same
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert chat(fresh_gateway, key, "stored once the lock is gone") == 200
    ready = eventually(lambda: probe(fresh_gateway.url, "/readyz"), lambda r: r.status_code == 200)
    assert ready.status_code == 200 and ready.json()["checks"]["writer"] == "ok"


def test_readyz_is_503_when_the_database_file_is_gone(fresh_gateway):
    (fresh_gateway.folder / "data" / "gateway.db").unlink()
    ready = probe(fresh_gateway.url, "/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == ready.json()["reason"]
    assert "missing or not writable" in ready.json()["reason"]
    assert probe(fresh_gateway.url, "/healthz").status_code == 200


def test_during_the_drain_readyz_is_503_and_healthz_200_on_open_connections(fresh_gateway):
    """SIGTERM with a long stream in flight: the listening socket closes at once, so probes reach
    the gateway only on connections opened before; there /readyz says "shutting down" (503) and
    /healthz 200 with ``stopping``, both with ``Connection: close``; the old /health, like every
    other route, is refused (503). The stream still finishes, and the process exits 0."""
    key = fresh_gateway.add_client("drain-probe")
    clients = [httpx.Client(base_url=fresh_gateway.url, timeout=10) for _ in range(3)]
    try:
        for client in clients:  # kept-alive connections, opened while serving
            assert client.get("/healthz").status_code == 200
        stream = StreamInFlight(fresh_gateway, key, f"{WORDS} #fake:delay=0.3")  # ~4 s
        fresh_gateway.proc.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready, live, old = clients[0].get("/readyz"), clients[1].get("/healthz"), clients[2].get("/health")
    finally:
        for client in clients:
            client.close()
    assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
    assert ready.json()["checks"]["serving"] == "shutting down" and ready.headers["connection"] == "close"
    assert ready.headers["x-content-type-options"] == "nosniff"
    assert live.status_code == 200 and live.json() == {"status": "ok", "stopping": True}
    assert live.headers["connection"] == "close"
    assert old.status_code == 503
    with pytest.raises(httpx.ConnectError):  # a new connection: nothing listens any more
        httpx.get(fresh_gateway.url + "/healthz", timeout=5)
    assert stream.thread.is_alive()  # the probes above came while the stream was still running
    assert wait_exit(fresh_gateway) == 0
    assert stream.result().status == 200 and text_of(stream.body) == f"Echo: {WORDS}"
    output = fresh_gateway.proc.text
    assert "Traceback" not in output and "ERROR tornado.access: 503 GET /readyz" not in output  # an answer


"""Client faults: a client that leaves mid-stream, one that reads slowly or not at all, oversized
headers and bodies, and connections that trickle or idle (slowloris)."""

from __future__ import annotations

import http.client
import re
import socket
import time
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from conftest import GatewayServer
from faults import FORMATS, chat_request, sse_data

TIMEOUT = 2
LIMIT_MB = 8


@pytest.fixture(scope="module")
def strict(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> GatewayServer:
    """A gateway with short connection timeouts, an 8 MB body limit and providers whose longest
    allowed silence is 2 s."""
    overrides = {"server.idle_timeout_seconds": TIMEOUT, "server.body_timeout_seconds": TIMEOUT,
                 "server.max_body_mb": LIMIT_MB}
    for type_, suffix in {"openai": "/v1", "anthropic": "", "gemini": ""}.items():
        overrides[f"providers.{type_}"] = {"type": type_, "api_key": "sk-client-fault-provider",
                                           "timeout_seconds": TIMEOUT, "base_url": fake_upstream + suffix}
    server = GatewayServer(tmp_path_factory.mktemp("client-faults"), fake_upstream, **overrides)
    yield server
    server.stop()


def log_text(server: GatewayServer) -> str:
    return (server.folder / "logs" / "gateway.log").read_text()


def healthy(server: GatewayServer) -> bool:
    return httpx.get(server.url + "/health", timeout=5).status_code == 200


# -- a client that leaves


def test_disconnect_mid_stream_aborts_the_upstream_at_once_and_charges_what_was_streamed(gateway, fake_upstream):
    """For each upstream format: the client reads three events and hangs up. The gateway records
    499 within a fraction of the stream's length; the fake, which would have needed ~3 s more,
    never gets to write its usage (its transfer was cut); the request log holds what was streamed."""
    words = " ".join(f"w{i}" for i in range(20))
    before = httpx.get(fake_upstream + "/_fake/stats").json()
    closed_after = {}
    for fmt in FORMATS:
        key = gateway.add_client(f"leaver-{fmt}", f"fake-{fmt}")
        path, headers, body = chat_request(fmt, key, f"{words} #fake:delay=0.15", True)
        started = time.monotonic()
        with httpx.stream("POST", gateway.url + path, headers=headers, json=body, timeout=30) as r:
            assert r.status_code == 200
            events = 0
            for line in r.iter_lines():
                events += line.startswith("data:")
                if events >= 4:
                    break
        closed_after[fmt] = time.monotonic() - started  # leaving the block closed the connection
    rows = {fmt: gateway.wait_log_rows(f"leaver-{fmt}", 1)[0] for fmt in FORMATS}
    for fmt, row in rows.items():
        assert row["status"] == 499 and row["error"] == "client closed the connection"
        assert row["latency_ms"] / 1000 < closed_after[fmt] + 1.2, (fmt, row["latency_ms"], closed_after[fmt])
        assert row["output_tokens"] >= 1 and row["input_tokens"] >= 1  # what was streamed is charged
    time.sleep(3.5)  # longer than any of the three streams would have taken
    after = httpx.get(fake_upstream + "/_fake/stats").json()
    # The fake delivered no final usage: only Gemini's running usage, which the log holds as reported
    # (give or take the frame that was on the wire when the gateway hung up). Finished streams would
    # have delivered 20+ output tokens each.
    reported = sum(r["output_tokens"] for r in rows.values() if not r["estimated"])
    assert 0 <= after["output_tokens"] - before["output_tokens"] - reported <= 2
    assert healthy(gateway)


def test_leaving_while_the_upstream_is_silent_aborts_it_at_once(gateway, fake_upstream):
    """The client hangs up while the upstream says nothing (after the first word, a 10 s stall):
    libcurl only checks a transfer when bytes move, so the gateway must make it run to abort it.
    The 499 is recorded right after the hang-up, not at the end of the silence."""
    key = gateway.add_client("leaver-silent", "fake-openai")
    path, headers, body = chat_request("openai", key, "one two three #fake:stall=10", True)
    started = time.monotonic()
    with httpx.stream("POST", gateway.url + path, headers=headers, json=body, timeout=30) as r:
        for line in r.iter_lines():
            if '"content":"Echo' in line:  # the first word is here; silence follows
                break
    closed_after = time.monotonic() - started
    [row] = gateway.wait_log_rows("leaver-silent", 1)
    assert row["status"] == 499 and row["output_tokens"] >= 1
    assert row["latency_ms"] / 1000 < closed_after + 0.5, (row["latency_ms"], closed_after)
    assert healthy(gateway)


# -- slow readers


def raw_connection(url: str, rcvbuf: int = 4096) -> http.client.HTTPConnection:
    """An HTTP connection whose socket has a tiny receive buffer, so a client that does not read
    pushes back on the gateway at once."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.sock = sock
    return conn


BIG = " ".join(f"word{i:06d}" for i in range(300_000))  # 3.3 MB of text; the fake echoes it back


def big_stream(conn: http.client.HTTPConnection, key: str, chunks: int = 3000) -> None:
    """Ask for BIG echoed back in ``chunks`` stream events (3000: ~4 MB of SSE; 30000: ~11 MB)."""
    path, headers, body = chat_request("openai", key, f"{BIG} #fake:chunks={chunks}", True)
    conn.request("POST", path, body=orjson.dumps(body), headers={**headers, "Content-Type": "application/json"})


def test_a_reader_that_stops_reading_is_cut_off_with_a_bounded_buffer(strict):
    """Without backpressure the gateway would read the whole ~11 MB answer into memory and record
    a success. With it: at most ~1 MB waits for the client, the upstream is paused, and once the
    client has not drained it for the provider's timeout the stream is cut and recorded. (The
    answer is larger than the kernel's socket buffers, up to 4 MB here, plus that 1 MB.)"""
    key = strict.add_client("stopped-reader", "openai")
    conn = raw_connection(strict.url)
    big_stream(conn, key, chunks=30_000)
    [row] = strict.wait_log_rows("stopped-reader", 1, timeout=TIMEOUT + 15)
    assert row["status"] == 499 and row["error"].startswith("client too slow"), row
    unread = int(row["error"].split(": ")[1].split()[0])
    assert unread < 2 * 1024 * 1024  # bounded: the whole answer is ~11 MB
    assert "upstream paused" in log_text(strict)
    conn.close()
    assert healthy(strict)


def test_a_slow_steady_reader_gets_the_whole_answer_intact(strict):
    """Backpressure pauses and resumes the upstream without losing or reordering a byte."""
    key = strict.add_client("slow-reader", "openai")
    log_before = len(log_text(strict))
    conn = raw_connection(strict.url)
    big_stream(conn, key)
    resp = conn.getresponse()
    assert resp.status == 200
    time.sleep(1)  # not reading for a while (less than the 2 s timeout): the gateway must pause
    body = bytearray()
    while chunk := resp.read(16384):  # then ~1.5 MB/s: still slower than the upstream writes
        body += chunk
        time.sleep(0.01)
    conn.close()
    text = "".join(d["choices"][0]["delta"].get("content") or ""
                   for _, d in sse_data(bytes(body)) if isinstance(d, dict) and d.get("choices"))
    assert text == "Echo: " + BIG
    [row] = strict.wait_log_rows("slow-reader", 1)
    assert row["status"] == 200 and not row["estimated"] and row["output_tokens"] == 300_001
    assert "slow-reader reads slowly" in log_text(strict)[log_before:]  # the upstream really was paused


def test_an_answer_nobody_reads_is_dropped_not_kept(strict):
    """A whole (non-streamed) answer written to a client that never reads: accounted, then the
    connection is dropped once the client has taken nothing for the timeout, freeing the buffer.
    (6.6 MB: more than the kernel's socket buffer takes, up to 4 MB here, so Tornado holds the rest.)"""
    key = strict.add_client("never-reads", "openai")
    conn = raw_connection(strict.url)
    path, headers, body = chat_request("openai", key, BIG + " " + BIG, False)
    conn.request("POST", path, body=orjson.dumps(body), headers={**headers, "Content-Type": "application/json"})
    [row] = strict.wait_log_rows("never-reads", 1, timeout=10)
    assert row["status"] == 200 and row["output_tokens"] > 0
    deadline = time.monotonic() + TIMEOUT + 5
    while "dropping a client that read nothing" not in log_text(strict) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "dropping a client that read nothing for 2s" in log_text(strict)
    conn.close()


# -- oversized requests


def test_headers_over_the_limit_close_the_connection_and_the_gateway_goes_on(strict):
    ok = httpx.get(strict.url + "/health", headers={"X-Big": "a" * 30_000})
    assert ok.status_code == 200
    with pytest.raises(httpx.HTTPError):  # Tornado closes a connection whose headers exceed 64 KB
        httpx.get(strict.url + "/health", headers={"X-Big": "a" * 100_000})
    assert healthy(strict)


def test_body_over_the_limit_is_a_413_in_the_clients_format(strict):
    key = strict.add_client("big-body", "openai")
    for fmt in FORMATS:
        path, headers, body = chat_request(fmt, key, "x" * (LIMIT_MB * 1024 * 1024 + 10), False)
        r = httpx.post(strict.url + path, headers=headers, json=body)
        assert r.status_code == 413 and f"larger than {LIMIT_MB} MB" in r.text, r.text
    rows = strict.wait_log_rows("big-body", 0)
    assert all(row["input_tokens"] == 0 for row in rows)
    assert healthy(strict)


def test_chunked_body_over_the_limit_is_a_413_too(strict):
    key = strict.add_client("chunked-body", "openai")

    def chunks():
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(12):  # 9.6 MB, sent without a Content-Length
            yield b"y" * 800_000
        yield b'"}]}'

    r = httpx.post(strict.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, content=chunks())
    assert r.status_code == 413 and r.json()["error"]["message"].startswith("The request body is larger")
    assert healthy(strict)


def raw_exchange(server: GatewayServer, head: bytes, body_chunks: Any = ()) -> bytes:
    """Send a request head, then body chunks until the server answers or closes; return what it said."""
    sock = socket.create_connection(server.url.removeprefix("http://").split(":"))
    sock.sendall(head)
    sock.settimeout(0.05)
    reply = b""
    try:
        for chunk in body_chunks:
            try:
                reply += sock.recv(65536)
                if reply:
                    break
            except TimeoutError:
                pass
            sock.sendall(chunk)
    except OSError:  # the server closed the connection while we were still sending
        pass
    sock.settimeout(5)
    try:
        while b"\r\n\r\n" not in reply or len(reply) < reply.index(b"\r\n\r\n") + 40:
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    except OSError:
        pass
    sock.close()
    return reply


@pytest.mark.parametrize("fmt", FORMATS)
def test_any_body_over_the_limit_is_a_413_in_the_clients_format_without_being_read(strict, fmt):
    """Declared far over the limit (30 MB, and an absurd length) or sent chunked without end: a 413
    in the client's own error shape, with the security headers, answered without reading the rest."""
    key = strict.add_client(f"huge-body-{fmt}", "openai")
    path, headers, _ = chat_request(fmt, key, "x", False)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    for declared in (30 * 1024 * 1024, 999_999_999_999):
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{lines}"
                f"Content-Length: {declared}\r\n\r\n").encode()
        reply = raw_exchange(strict, head, [b"{" + b" " * 65535] * 4)
        status, _, rest = reply.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 413"), reply[:300]
        assert b"X-Content-Type-Options: nosniff" in rest and b"larger than 8 MB" in rest
        if fmt == "anthropic":
            assert b'"type":"error"' in rest
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{lines}"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    piece = b"100000\r\n" + b"y" * 0x100000 + b"\r\n"  # 1 MB chunks, 30 of them
    reply = raw_exchange(strict, head, [piece] * 30)
    assert reply.startswith(b"HTTP/1.1 413") and b"larger than 8 MB" in reply, reply[:300]
    assert healthy(strict)


# -- slowloris


def seconds_until_closed(sock: socket.socket, trickle: bytes = b"", every: float = 0.3, limit: float = 15) -> float:
    """Send ``trickle`` a byte at a time every ``every`` seconds until the gateway closes."""
    started = time.monotonic()
    sock.setblocking(False)
    sent = 0
    while time.monotonic() - started < limit:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except BlockingIOError:
            pass
        except OSError:
            return time.monotonic() - started
        if sent < len(trickle):
            try:
                sock.send(trickle[sent:sent + 1])
                sent += 1
            except OSError:
                return time.monotonic() - started
        time.sleep(every)
    return limit


def connect(server: GatewayServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


def test_an_idle_connection_is_closed(strict):
    assert seconds_until_closed(connect(strict)) < TIMEOUT + 1.5


def test_headers_trickled_in_are_cut_at_the_idle_timeout(strict):
    trickle = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    assert seconds_until_closed(connect(strict), trickle) < TIMEOUT + 1.5


def test_a_body_trickled_in_is_cut_at_the_body_timeout(strict):
    sock = connect(strict)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
    assert seconds_until_closed(sock, b"{" + b" " * 400) < TIMEOUT + 1.5
    assert healthy(strict)


def test_a_refused_request_leaves_its_kept_alive_connection_usable(gateway):
    """Pipelined on one connection: an unknown path (404), a chat request without a key (401),
    then a health check. Each is answered: a refusal must not close the connection under a
    client that will reuse it (it would see a reset)."""
    sock = socket.create_connection(gateway.url.removeprefix("http://").split(":"))
    body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    sock.sendall(b"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                 + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    reply = b""
    try:
        while reply.count(b"HTTP/1.1 ") < 3 or not reply.rstrip().endswith(b"}"):
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    except OSError:
        pass
    sock.close()
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)
    assert statuses == [b"404", b"401", b"200"], reply[:600]

"""Upstream faults: refused, unresolvable, TLS-broken, silent, stalled, reset, malformed and HTML
upstreams. Each ends in a well-formed client error (or a stream that ends with an error event),
is logged with its reason, charges only what was really used, and leaves the gateway serving."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import SUMMARY, GatewayServer, start_process
from faults import FORMATS, Silent, clean_error, free_port, send, upstream_provider

TIMEOUT = 2  # timeout_seconds of the fault providers: the longest silence a stream may have



@pytest.fixture(scope="module")
def servers():
    silent, plain = Silent(), Silent(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    yield silent, plain
    silent.close()
    plain.close()


@pytest.fixture(scope="module")
def faulty(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory, servers) -> GatewayServer:
    """A gateway whose providers fail in every way an upstream can, plus one fake provider per
    upstream format with a short timeout."""
    silent, plain = servers
    https_fake = fake_upstream.replace("http://", "https://")

    def provider(base_url: str, type_: str = "openai") -> dict:
        return {"type": type_, "api_key": "sk-fault-provider-key", "base_url": base_url, "timeout_seconds": TIMEOUT}

    overrides = {
        "providers.refused": provider(f"http://127.0.0.1:{free_port()}/v1"),
        "providers.dns": provider("http://upstream.invalid/v1"),
        "providers.tls-to-plain-fake": provider(https_fake + "/v1"),
        "providers.tls-to-plain-server": provider(f"https://127.0.0.1:{plain.port}/v1"),
        "providers.silent": provider(f"http://127.0.0.1:{silent.port}/v1"),
    }
    for fmt in FORMATS:
        overrides[f"providers.up-{fmt}"] = upstream_provider(fmt, fake_upstream, api_key="sk-fault-provider-key",
                                                             timeout_seconds=TIMEOUT)
    server = GatewayServer(tmp_path_factory.mktemp("faults"), fake_upstream, **overrides)
    yield server
    server.stop()


def log_text(server: GatewayServer) -> str:
    return (server.folder / "logs" / "gateway.log").read_text()


def still_serving(server: GatewayServer, key: str) -> None:
    assert httpx.get(server.url + "/health").status_code == 200
    answer = send(server.url, "openai", key, "are you there", False)
    assert answer.status == 200 and b"Echo: are you there" in answer.body


@pytest.fixture(scope="module")
def keys(faulty: GatewayServer) -> dict[str, str]:
    """Every client the tests below use, created at once (the server picks them up in one reload)."""
    from aigateway import clients

    wanted = {"healthy": "up-openai", "stall-plain": "up-openai", "slow-but-steady": "up-openai"}
    wanted |= {f"net-{p}-{s}": p for p, *_ in NETWORK_FAULTS for s in (False, True)}
    wanted |= {f"knob-{k.split('=')[0]}-{up}": f"up-{up}" for k in KNOB_FAULTS for up in FORMATS}
    wanted |= {f"stall-{fmt}": f"up-{fmt}" for fmt in FORMATS}
    conn = faulty.db()
    made = {name: clients.create(conn, name, provider)[1] for name, provider in wanted.items()}
    conn.close()
    faulty.wait_for_key(made["slow-but-steady"])
    return made


@pytest.fixture(scope="module")
def healthy_key(keys: dict[str, str]) -> str:
    return keys["healthy"]


NETWORK_FAULTS = [
    ("refused", 502, "could not connect to the upstream"),
    ("dns", 502, "could not resolve the upstream host"),
    # The plain server waits for the end of a request head: usually a handshake timeout (504), but a
    # ClientHello's random bytes (over a kilobyte with a post-quantum key share) sometimes hold a
    # "\n\n", and the server's plain-HTTP 400 then fails the handshake at once (502).
    ("tls-to-plain-fake", (502, 504), "TLS handshake"),
    ("tls-to-plain-server", 502, "TLS handshake with the upstream failed"),  # it answers in plain HTTP
    ("silent", 504, "timed out"),  # connected, never a header
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("provider", "status", "reason"), NETWORK_FAULTS, ids=[f[0] for f in NETWORK_FAULTS])
def test_network_fault_is_a_clean_error_logged_with_its_reason(faulty, keys, healthy_key, provider, status, reason,
                                                               stream):
    name = f"net-{provider}-{stream}"
    key = keys[name]
    started = time.monotonic()
    answer = send(faulty.url, "openai", key, "hello", stream)
    took = time.monotonic() - started
    message = clean_error("openai", answer)
    if provider == "silent" and stream:  # no header within the longest silence a stream may have
        reason = f"sent nothing for {TIMEOUT}s"
    statuses = status if isinstance(status, tuple) else (status,)
    assert answer.status in statuses and message and reason in message, (answer.status, answer.body)
    assert took < TIMEOUT + 2.5
    assert "sk-fault-provider-key" not in message
    [row] = faulty.wait_log_rows(name, 1)
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == (answer.status, 0, 0)
    assert reason in row["error"]
    assert f"client={name} " in log_text(faulty) and reason in log_text(faulty)
    still_serving(faulty, healthy_key)


KNOB_FAULTS = {
    # knob: (plain status, stream: in-band error after content?, reason in the log)
    "drop_after=2": (502, True, "closed the connection before the response was complete"),
    "malformed=1": (502, False, "malformed"),
    "html=1": (502, False, "not JSON"),
}


@pytest.mark.parametrize("upstream", FORMATS)
@pytest.mark.parametrize("knob", list(KNOB_FAULTS))
def test_broken_answers_end_cleanly_and_charge_only_what_was_streamed(faulty, keys, healthy_key, upstream, knob):
    status, partial, _reason = KNOB_FAULTS[knob]
    name = f"knob-{knob.split('=')[0]}-{upstream}"
    key = keys[name]
    text = f"one two three four five six #fake:{knob}"
    plain = send(faulty.url, "openai", key, text, False)
    assert plain.status == status and clean_error("openai", plain), plain.body
    streamed = send(faulty.url, "openai", key, text, True)
    assert clean_error("openai", streamed), streamed.body
    rows = faulty.wait_log_rows(name, 2)
    assert [r["status"] for r in rows] == [status, status] and all(r["error"] for r in rows)
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (0, 0)  # nothing reached the client
    if partial:  # the client got some text: what it got is charged (estimated, or the upstream's running count)
        assert streamed.status == 200 and b"one" in streamed.body
        assert rows[1]["output_tokens"] > 0 and rows[1]["input_tokens"] > 0
    else:
        assert (rows[1]["input_tokens"], rows[1]["output_tokens"]) == (0, 0)
    still_serving(faulty, healthy_key)


def test_timeout_before_headers_is_a_504(faulty, keys, healthy_key):
    key = keys["stall-plain"]
    started = time.monotonic()
    answer = send(faulty.url, "openai", key, "hello #fake:stall=8", False)
    assert answer.status == 504 and "timed out" in clean_error("openai", answer)
    assert time.monotonic() - started < TIMEOUT + 2
    [row] = faulty.wait_log_rows("stall-plain", 1)
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == (504, 0, 0)
    still_serving(faulty, healthy_key)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stall_mid_stream_ends_with_an_error_event_after_the_longest_silence(faulty, keys, healthy_key, fmt):
    name = f"stall-{fmt}"
    key = keys[name]
    started = time.monotonic()
    answer = send(faulty.url, fmt, key, "one two three four #fake:stall=10", True)
    took = time.monotonic() - started
    message = clean_error(fmt, answer)
    assert answer.status == 200 and message and f"stalled for {TIMEOUT}s" in message, answer.body
    assert TIMEOUT <= took < TIMEOUT + 2.5
    [row] = faulty.wait_log_rows(name, 1)
    assert row["status"] == 504 and "stalled" in row["error"]
    assert row["output_tokens"] >= 1  # the first chunk reached the client
    still_serving(faulty, healthy_key)


def test_a_slow_stream_is_not_a_stalled_one(faulty, keys):
    """timeout_seconds bounds silence, not length: a stream longer than it, never silent as long, completes."""
    key = keys["slow-but-steady"]
    started = time.monotonic()
    answer = send(faulty.url, "openai", key, "a b c d e f #fake:delay=0.6", True)
    assert time.monotonic() - started > TIMEOUT + 1
    assert answer.status == 200 and b"[DONE]" in answer.body and clean_error("openai", answer) is None
    [row] = faulty.wait_log_rows("slow-but-steady", 1)
    assert row["status"] == 200 and not row["estimated"]


# -- the fault-injection run

# The stall outlasts the run: a stalled plain answer the fake would write after the gateway gave up
# (a 504 at TIMEOUT) must not land in the fake's delivered count before the run reads it.
RUN_KNOBS = ["status=500", "status=429 #fake:retry_after=7", "fail_after=2", "drop_after=2", "malformed=1",
             "html=1", "stall=120"]


@pytest.fixture
def own_fake(tmp_path: Path):
    """A fake upstream of the run's own: its usage counters see only the run's requests (the
    session's fake may still be finishing other tests' streams)."""
    fake = start_process(["fake-upstream", "--port", "0", "--host", "127.0.0.1"])
    overrides = {f"providers.up-{fmt}": upstream_provider(fmt, fake.url, api_key="sk-fault-provider-key",
                                                          timeout_seconds=TIMEOUT) for fmt in FORMATS}
    server = GatewayServer(tmp_path, fake.url, **overrides)
    yield server, fake.url
    server.stop()
    fake.stop()


def test_fault_injection_run(own_fake):
    """Every knob fault, through every inbound format to every upstream format, streamed and not,
    concurrently: every answer is a clean error, the gateway logs no exception, and the output
    tokens the request log holds as reported equal what the fake says it delivered."""
    faulty, fake_upstream = own_fake
    cases = [(knob, fmt, up, stream) for knob in RUN_KNOBS for fmt in FORMATS for up in FORMATS
             for stream in (False, True)]
    keys = {up: faulty.add_client(f"run-{up}", f"up-{up}") for up in FORMATS}
    before = httpx.get(fake_upstream + "/_fake/stats").json()
    log_before = len(log_text(faulty))

    def one(case: tuple) -> tuple:
        knob, fmt, up, stream = case
        answer = send(faulty.url, fmt, keys[up], f"alpha beta gamma delta #fake:{knob}", stream)
        return case, answer, clean_error(fmt, answer)

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, cases))
    rows = []
    for up in FORMATS:
        rows += faulty.wait_log_rows(f"run-{up}", len(cases) // len(FORMATS))
    after = httpx.get(fake_upstream + "/_fake/stats").json()
    new_log = log_text(faulty)[log_before:]

    injected = Counter(case[0].split(" ")[0] for case, _, _ in results)
    clean = [r for r in results if r[2] is not None]
    broken = [(case, a.status, a.body[-300:]) for case, a, msg in results if msg is None]
    gateway_errors = [r for r in clean if "Internal error in the gateway" in r[2]]
    gateway_errors += ["log: " + line for line in new_log.splitlines() if "Traceback" in line or "Uncaught" in line]
    delivered = after["output_tokens"] - before["output_tokens"]
    reported = sum(r["output_tokens"] for r in rows if not r["estimated"])
    estimated = [r for r in rows if r["estimated"]]
    assert len(rows) == len(cases)
    SUMMARY.append(
        f"fault-injection run: {len(cases)} requests ({len(FORMATS)} inbound x {len(FORMATS)} upstream formats"
        " x plain/stream), injected "
        + ", ".join(f"{n} {k}" for k, n in sorted(injected.items()))
        + f"; {len(clean)} clean client errors, {len(broken) + len(gateway_errors)} server errors; "
        f"output tokens: fake delivered {delivered}, request log {reported} as reported"
        f" (+{sum(r['output_tokens'] for r in estimated)} estimated for {len(estimated)} streams cut"
        " after content, which the fake never sent usage for)")
    assert not broken, broken[:5]
    assert not gateway_errors, gateway_errors[:5]
    assert all(r["status"] >= 400 and r["error"] for r in rows)
    assert reported == delivered
    retry = [a for (knob, *_), a, _ in results if knob.startswith("status=429")]
    assert all(a.status == 429 and a.headers.get("retry-after") == "7" for a in retry)


def test_faults_leave_no_secret_in_the_log(faulty):
    text = log_text(faulty)
    assert "sk-fault-provider-key" not in text and "upstream-openai-secret" not in text
    assert Path(faulty.folder / "logs" / "gateway.log").stat().st_mode & 0o077 == 0

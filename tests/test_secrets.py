"""Secrets: files that hold them are private (0600), no key, password, cookie or Authorization
value reaches a log line or an error message, admin sessions end with a password change, and
secrets are compared in constant time. conftest.py's ``no_secret_in_any_log`` repeats the log
check over every log file and gateway output of the whole test run."""

from __future__ import annotations

import hmac
import logging
import os
import stat
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest
from conftest import ADMIN_PASSWORD, GatewayServer, admin_overrides, configured_secrets, secret_leaks, session_texts
from faults import FORMATS, chat_request, clean_error, send

from aigateway import keys, logs
from aigateway.admin import sessions
from aigateway.config import load

PROVIDER_KEY = "sk-provider-secret-that-upstream-echoes-0123456789"


class EchoingUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream whose errors quote the credentials it was sent back (as
    some real APIs partly do). ``stream`` in the body: a 200 stream with an in-band error."""

    def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
        body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        quoted = f"Incorrect API key provided: {self.headers.get('Authorization')}"
        error = orjson.dumps({"error": {"message": quoted, "type": "invalid_request_error", "code": None}})
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}]}
            self.wfile.write(b"data: " + orjson.dumps(chunk) + b"\n\ndata: " + error + b"\n\n")
        else:
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def echoing_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingUpstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture(scope="module")
def guarded(fake_upstream, echoing_upstream, tmp_path_factory) -> GatewayServer:
    server = GatewayServer(tmp_path_factory.mktemp("secrets"), fake_upstream, **{
        "providers.echoing": {"type": "openai", "api_key": PROVIDER_KEY, "base_url": echoing_upstream}})
    yield server
    server.stop()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_wal_shm_and_log_files_are_private(guarded):
    key = guarded.add_client("files")
    assert send(guarded.url, "openai", key, "write something", False).status == 200
    guarded.wait_log_rows("files", 1)
    data = guarded.folder / "data"
    files = [data / "gateway.db", data / "gateway.db-wal", data / "gateway.db-shm",
             guarded.folder / "logs" / "gateway.log"]
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_rotated_log_files_are_private_too(tmp_path):
    old = os.umask(0o022)
    try:
        handler = logs.PrivateRotatingFileHandler(tmp_path / "g.log", maxBytes=100, backupCount=3)
        logger = logging.getLogger("rotation-test")
        logger.addHandler(handler)
        for i in range(20):
            logger.warning("line %d %s", i, "x" * 40)
        handler.close()
    finally:
        os.umask(old)
    rotated = sorted(tmp_path.iterdir())
    assert len(rotated) == 4 and all(mode(p) == 0o600 for p in rotated)


def test_a_config_readable_by_others_is_reported(fake_upstream, tmp_path):
    server = GatewayServer(tmp_path, fake_upstream, **admin_overrides())  # nothing to generate: not rewritten
    try:
        assert mode(server.config) == 0o644
        assert "readable by others (mode 644): chmod 600 it" in server.proc.text
    finally:
        server.stop()


def test_keys_never_reach_logs_or_error_messages(guarded):
    """Every way a client key can arrive, valid or not, and a provider key an upstream quotes
    back in plain errors and in-band stream errors: none of it in an answer or any log line."""
    key = guarded.add_client("leaky")
    echo_key = guarded.add_client("echo", "echoing")
    wrong = "sk-" + "W" * 43  # key-shaped, unknown
    answers = []
    with httpx.Client(base_url=guarded.url, timeout=30) as http:
        for secret in (key, wrong):
            for fmt in FORMATS:
                for stream in (False, True):
                    path, headers, body = chat_request(fmt, secret, f"my key is {secret}", stream)
                    answers.append(http.post(path, headers=headers, json=body))
            answers.append(http.get(f"/v1beta/models?key={secret}"))
            answers.append(http.get("/v1/models", headers={"Authorization": f"Bearer {secret}",
                                                           "Cookie": f"aigw_session={secret}"}))
            answers.append(http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                                     content=b'{"model": "' + secret.encode() + b'", bad json'))
        for stream in (False, True):
            path, headers, body = chat_request("openai", echo_key, "hi", stream)
            answers.append(http.post(path, headers=headers, json=body))
        admin = http.post("/admin/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        answers.append(admin)
    quoted = answers[-3:-1]
    assert quoted[0].status_code == 400 and "[redacted]" in clean_error("openai", _answer(quoted[0]))
    assert quoted[1].status_code == 200 and "[redacted]" in clean_error("openai", _answer(quoted[1]))
    for r in answers:
        assert PROVIDER_KEY not in r.text
        if r.status_code != 200:  # a 200 echoes the user's own text back, key included
            assert key not in r.text and wrong not in r.text, r.text
    guarded.wait_log_rows("echo", 2)
    texts = {"log": (guarded.folder / "logs" / "gateway.log").read_text(), "output": guarded.proc.text}
    secrets = {key, wrong, echo_key, PROVIDER_KEY, ADMIN_PASSWORD}
    assert secret_leaks(texts, secrets) == []
    assert "Authorization: Bearer sk-" not in texts["log"]


def _answer(r: httpx.Response):
    from faults import Answer

    return Answer(r.status_code, r.headers, r.content)


def test_the_leak_scan_finds_what_it_looks_for():
    """The session-wide scan (conftest) is only as good as its matching: prove it catches leaks."""
    key = keys.generate_key()
    texts = {"a.log": f"2026 INFO request from {key}", "b.log": "Cookie: aigw_session=2|1:0|10:1795000000|12:x",
             "c.log": "Admin password: shown-once-on-purpose", "d.log": "provider key sk-upstream-openai-secret"}
    leaks = secret_leaks(texts, {"sk-upstream-openai-secret"})
    assert [leak.split(":")[0] for leak in leaks] == ["a.log", "b.log", "d.log"]
    assert logs.redact(texts["a.log"]) == "2026 INFO request from sk-[redacted]"
    assert secret_leaks({k: logs.redact(v) for k, v in texts.items()}, set()) == []
    with tempfile.TemporaryDirectory() as folder:  # outside the session's folders: this leak is on purpose
        root = Path(folder)
        (root / "x").mkdir()
        (root / "x" / "config.yaml").write_text("providers:\n  p:\n    api_key: abcdefgh12345\n")
        assert "abcdefgh12345" in configured_secrets(root)
        (root / "x" / "gateway.log.1").write_text("leaked abcdefgh12345\n")
        found = session_texts(root)
        assert secret_leaks(found, configured_secrets(root)) == [f"{root}/x/gateway.log.1: abcdef…"]


def test_exception_text_in_logs_is_redacted_too(caplog):
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
    try:
        raise KeyError("Bearer sk-" + "Q" * 43)
    except KeyError:
        import sys

        record.exc_info = sys.exc_info()
    logs.RedactingFilter().filter(record)
    assert "Q" * 43 not in record.exc_text and "[redacted]" in record.exc_text


# -- admin sessions and constant-time comparisons


def test_a_password_change_ends_every_session(tmp_path):
    config = load(tmp_path / "config.yaml", announce=False)
    cookie = sessions.make_session(config).decode()
    assert sessions.check_session(config, cookie) == "admin"
    changed = config.data | {"admin": {**config.data["admin"], "password_hash": "$2b$04$" + "x" * 53}}
    after = type(config)(config.path, changed, config.providers)
    assert sessions.check_session(after, cookie) is None
    assert sessions.check_session(after, sessions.make_session(after).decode()) == "admin"
    rotated = config.data | {"admin": {**config.data["admin"], "session_secret": "another-secret-0123456789abcdef"}}
    assert sessions.check_session(type(config)(config.path, rotated, config.providers), cookie) is None
    assert sessions.check_session(config, cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None


def test_secrets_are_compared_in_constant_time(tmp_path, monkeypatch):
    """Sessions compare with hmac.compare_digest; client keys are looked up by their SHA-256, so
    no comparison ever touches a plaintext key (the index holds none); the admin password is
    checked with bcrypt, whose comparison is constant-time."""
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append(1) or real(a, b))
    config = load(tmp_path / "config.yaml", announce=False)
    assert sessions.check_session(config, sessions.make_session(config).decode()) == "admin"
    assert compared
    key = keys.generate_key()
    index = keys.KeyIndex([{"key_hash": keys.hash_key(key), "name": "c"}])
    assert index.lookup(key, 0)[0]["name"] == "c" and key not in repr(index._by_hash)
    from aigateway.admin import login

    assert "bcrypt.checkpw" in Path(login.__file__).read_text()

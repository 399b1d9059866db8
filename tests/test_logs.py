"""``logging.format: json``: one JSON object per line in the log file and on the console, with
secrets masked exactly as in text lines."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import LISTEN_RE, admin_overrides, write_config
from faults import chat_request

from aigateway import clients, logs
from aigateway.config import load
from aigateway.db import connect

KEY = "sk-" + "Zq3" * 14  # shaped like a gateway key
FIELDS = {"ts", "level", "logger", "message"}


@pytest.fixture
def root_logging() -> Iterator[None]:
    """logs.configure replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        handler.close()
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def json_lines(text: str) -> list[dict]:
    """Every line as a JSON object (fails on the first line that is not one)."""
    out = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict) and set(entry) >= FIELDS, line
        datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))  # ISO-8601
        out.append(entry)
    return out


def test_json_lines_mask_keys_in_messages_and_tracebacks(tmp_path, capsys, root_logging):
    config_path = tmp_path / "config.yaml"
    config_path.write_text("logging:\n  format: json\n")
    logs.configure(load(config_path, announce=False))
    log = logging.getLogger("aigateway.test")
    log.info("a client sent Authorization: Bearer %s\nand a second line", KEY)
    try:
        raise ValueError(f"upstream said: invalid key {KEY}")
    except ValueError:
        log.exception("it failed")
    log.warning("x-goog-api-key: %s and unicode \u00e9\u4e2d and a lone surrogate \udc80", "AIzaSecretValue123")

    file_text = (tmp_path / "logs" / "gateway.log").read_text()
    console = capsys.readouterr().err
    for text in (file_text, console):
        first, failed, odd = json_lines(text)
        assert KEY not in text and "AIzaSecretValue123" not in text and "[redacted]" in first["message"]
        assert first["message"] == "a client sent Authorization: Bearer [redacted]\nand a second line"
        assert (first["level"], first["logger"]) == ("INFO", "aigateway.test") and "exc" not in first
        assert failed["message"] == "it failed" and failed["level"] == "ERROR"
        assert "Traceback" in failed["exc"] and "ValueError: upstream said: invalid key sk-[redacted]" in failed["exc"]
        assert odd["message"].startswith("x-goog-api-key: [redacted] and unicode \u00e9\u4e2d")


def test_the_default_stays_text(tmp_path, capsys, root_logging):
    config_path = tmp_path / "config.yaml"
    logs.configure(load(config_path, announce=False))
    logging.getLogger("aigateway.test").warning("plain %s", "line")
    assert capsys.readouterr().err.rstrip().endswith("WARNING aigateway.test: plain line")
    assert "format: text" in config_path.read_text()  # written with the other defaults


def test_a_bad_format_is_a_config_error_naming_the_key(tmp_path):
    config_path = tmp_path / "config.yaml"
    config_path.write_text("logging:\n  format: xml\n")
    run = subprocess.run([sys.executable, "-m", "aigateway", "run", "--config", str(config_path)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "logging.format: expected one of text, json" in run.stderr


def test_a_running_gateway_writes_only_json_lines(fake_upstream, tmp_path):
    """A real gateway with ``logging.format: json``: start-up, access lines (debug level), a failed
    request and the shutdown, in the file and on stderr; stdout keeps its one "listening" line."""
    config = write_config(tmp_path, fake_upstream, **admin_overrides(), **{"logging.format": "json"})
    conn = connect(tmp_path / "data" / "gateway.db")  # the client exists before the server starts
    _, key = clients.create(conn, "json-logger", "fake-openai")
    conn.close()
    gateway = subprocess.Popen([sys.executable, "-m", "aigateway", "run", "--config", str(config), "--port", "0",
                                "--host", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        url = LISTEN_RE.search(gateway.stdout.readline()).group(1)
        for text in ("hello", "broken #fake:status=500"):
            path, headers, body = chat_request("openai", key, text, False)
            httpx.post(url + path, headers=headers, json=body, timeout=30)
        httpx.get(url + "/v1/models", params={"key": KEY})
    finally:
        gateway.send_signal(signal.SIGTERM)
        stdout, stderr = gateway.communicate(timeout=30)
    assert gateway.returncode == 0 and stdout == ""
    for text in (stderr, Path(tmp_path / "logs" / "gateway.log").read_text()):
        entries = json_lines(text)
        messages = [e["message"] for e in entries]
        assert any(m.startswith("aigateway listening on http://127.0.0.1:") for m in messages)
        assert any(e["logger"] == "tornado.access" and "POST /v1/chat/completions" in e["message"] for e in entries)
        assert any(e["level"] == "INFO" and "request failed" in e["message"] and "status=500" in e["message"]
                   for e in entries)
        assert messages[-1].startswith("stopped (0 requests") and KEY not in text

"""Shared fixtures: real processes on free loopback ports, real files in temp folders."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

LISTEN_RE = re.compile(r"listening on (https?://\S+)")
# Lines for the end of the terminal report (CI shows it without -s): fault-run counts, the secret scan.
SUMMARY: list[str] = []
# Every gateway process started this session: its output is scanned for secrets at the end.
GATEWAY_PROCS: list[Proc] = []


@dataclass
class Proc:
    """A running ``python -m aigateway ...`` subprocess and the URL it printed."""

    popen: subprocess.Popen
    url: str
    output: list[str] = field(default_factory=list)

    def stop(self, sig: int | None = None, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            if sig is None:
                self.popen.terminate()
            else:
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    @property
    def text(self) -> str:
        return "".join(self.output)


def start_process(args: list[str], cwd: str | None = None, timeout: float = 20) -> Proc:
    """Start ``python -m aigateway ARGS`` and wait for its "listening on URL" line."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    popen = subprocess.Popen(
        [sys.executable, "-m", "aigateway", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        for line in popen.stdout:  # keeps draining so the child never blocks on a full pipe
            output.append(line)
            m = LISTEN_RE.search(line)
            if m and not url:
                url.append(m.group(1))
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    found.wait(timeout)
    if not url:
        popen.kill()
        raise RuntimeError(f"{args[0]} did not start:\n{''.join(output)}")
    proc = Proc(popen, url[0], output)
    if args[0] == "run":
        GATEWAY_PROCS.append(proc)
    return proc


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[str]:
    """The shipped fake provider, speaking OpenAI, Anthropic and Gemini; yields its base URL."""
    proc = start_process(["fake-upstream", "--port", "0", "--host", "127.0.0.1"])
    yield proc.url
    proc.stop()


def write_config(folder: Path, upstream: str, **overrides: Any) -> Path:
    """A config.yaml in ``folder`` whose providers all point at the fake upstream. Limits are off
    (0) unless a test turns them on; ``overrides`` are dotted settings."""
    from aigateway.config import _set, default_data

    data = default_data()
    data["providers"] = {
        "fake-openai": {"type": "openai", "api_key": "sk-upstream-openai-secret", "base_url": upstream + "/v1",
                        "default_model": "gpt-4o", "timeout_seconds": 30},
        "fake-anthropic": {"type": "anthropic", "api_key": "sk-ant-upstream-secret", "base_url": upstream,
                           "default_model": "claude-sonnet-4-20250514", "timeout_seconds": 30},
        "fake-gemini": {"type": "gemini", "api_key": "gemini-upstream-secret", "base_url": upstream,
                        "default_model": "gemini-2.0-flash", "timeout_seconds": 30},
        "fake-responses": {"type": "openai", "api": "responses", "api_key": "sk-upstream-responses-secret",
                           "base_url": upstream + "/v1", "default_model": "gpt-4o", "timeout_seconds": 30},
    }
    for section in ("rate_limit", "quota"):
        for key in data["defaults"][section]:
            data["defaults"][section][key] = 0
    data["logging"]["level"] = "debug"
    for dotted, value in overrides.items():
        _set(data, dotted, value)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class GatewayServer:
    """A real gateway process on a free port, with its own config, database and logs."""

    def __init__(self, folder: Path, upstream: str, **overrides: Any) -> None:
        self.folder = folder
        self.upstream = upstream
        self.config = write_config(folder, upstream, **overrides)
        self.proc: Proc | None = None
        self.start()

    def start(self, port: int = 0) -> None:
        self.proc = start_process(["run", "--config", str(self.config), "--port", str(port), "--host", "127.0.0.1"])
        self.url = self.proc.url

    def stop(self, sig: int | None = None) -> int:
        return self.proc.stop(sig)

    def restart(self, sig: int | None = None) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        self.stop(sig)
        self.start(port)

    def db(self) -> sqlite3.Connection:
        from aigateway.db import connect

        return connect(self.folder / "data" / "gateway.db")

    def add_client(self, name: str, provider: str = "fake-openai", **fields: Any) -> str:
        """Create a client straight in the database (as the CLI does) and wait until the running
        server accepts its key. Returns the plaintext key."""
        from aigateway import clients

        conn = self.db()
        _, key = clients.create(conn, name, provider, **fields)
        conn.close()
        self.wait_for_key(key)
        return key

    def wait_for_key(self, key: str, accepted: bool = True, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = httpx.get(self.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
            if (status != 401) == accepted:
                return
            time.sleep(0.1)
        raise AssertionError(f"server did not {'accept' if accepted else 'refuse'} the key in {timeout}s")

    def log_rows(self, client: str | None = None) -> list[dict]:
        conn = self.db()
        query = "SELECT * FROM request_log" + (" WHERE client_name = ?" if client else "") + " ORDER BY id"
        rows = [dict(r) for r in conn.execute(query, (client,) if client else ())]
        conn.close()
        return rows

    def wait_log_rows(self, client: str, count: int, timeout: float = 5) -> list[dict]:
        """Request-log rows are written off the request path: wait until ``count`` have landed."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.log_rows(client)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


@pytest.fixture(scope="session")
def gateway(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """One gateway for the session; tests make their own uniquely named clients."""
    server = GatewayServer(tmp_path_factory.mktemp("gateway"), fake_upstream)
    yield server
    server.stop()


@pytest.fixture
def fresh_gateway(fake_upstream: str, tmp_path: Path) -> Iterator[GatewayServer]:
    """A gateway of the test's own, for tests that restart or reconfigure it."""
    server = GatewayServer(tmp_path, fake_upstream)
    yield server
    server.stop()


@pytest.fixture
def fake_requests(fake_upstream: str) -> Callable[[], list[dict]]:
    """Returns a function listing what the fake upstream received since the test began."""
    httpx.delete(fake_upstream + "/_fake/requests")
    return lambda: httpx.get(fake_upstream + "/_fake/requests").json()


def eventually(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 5) -> Any:
    """Call ``fn`` until ``ok(result)``: for changes the server picks up within a second."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if ok(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


# -- admin UI and API

ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct horse battery"
# bcrypt at the lowest cost, so logins in tests are fast; the server checks whatever cost the hash names.
ADMIN_HASH = "$2b$04$x77p.NkSH6W/F/LCY/oR9OH0AKUPFFMnQG1eNHc7RnxBhpMbvdMFi"


def admin_overrides() -> dict[str, Any]:
    """Config overrides giving the admin a known password (tests log in with ADMIN_PASSWORD)."""
    return {"admin.username": ADMIN_USER, "admin.password_hash": ADMIN_HASH,
            "admin.session_secret": "test-session-secret-0123456789abcdef"}


class AdminClient:
    """A scripted admin (flaskr's AuthActions): fetches the login page for the ``_xsrf`` cookie,
    logs in, and sends the token header on every call, as the UI's api.js does."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.http.get("/admin")

    @property
    def xsrf(self) -> str:
        return self.http.cookies.get("_xsrf", "")

    def login(self, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> httpx.Response:
        return self.call("POST", "/admin/api/login", {"username": username, "password": password})

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {"X-XSRFToken": self.xsrf, **kwargs.pop("headers", {})}
        return self.http.request(method, path, json=body, headers=headers, **kwargs)

    def close(self) -> None:
        self.http.close()


# -- secrets: scanned for in every log file and gateway output of the session (see test_secrets.py)

# A gateway key (prefix + 32 random bytes, URL-safe) or a Tornado-signed cookie value, unmasked.
SECRET_SHAPES = re.compile(r"\b(?:sk-ant-|sk-|gm_)[A-Za-z0-9_\-]{40,}|\b2\|1:0\|10:\d{10}\|")


def configured_secrets(root: Path) -> set[str]:
    """Every provider key and session secret in any config.yaml under ``root``, plus the admin
    password the admin tests log in with."""
    found = {ADMIN_PASSWORD}
    for path in root.rglob("config.yaml"):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        providers = data.get("providers") if isinstance(data, dict) else None
        for provider in (providers or {}).values():
            if isinstance(provider, dict) and len(str(provider.get("api_key") or "")) >= 8:
                found.add(str(provider["api_key"]))
        admin = data.get("admin") if isinstance(data, dict) else None
        if isinstance(admin, dict) and len(str(admin.get("session_secret") or "")) >= 8:
            found.add(str(admin["session_secret"]))
    return found


def secret_leaks(texts: dict[str, str], secrets: set[str]) -> list[str]:
    """``where: what`` for each known secret or secret-shaped value found in ``texts``. The one
    line a gateway prints on purpose, the first-run admin password, is not a leak."""
    leaks = []
    for where, text in texts.items():
        text = "\n".join(line for line in text.splitlines() if not line.startswith("Admin password:"))
        leaks += [f"{where}: {s[:6]}…" for s in secrets if s in text]
        leaks += [f"{where}: {m.group(0)[:10]}…" for m in SECRET_SHAPES.finditer(text)]
    return leaks


def session_texts(root: Path) -> dict[str, str]:
    """Every log file under ``root`` (rotations included) and every gateway process's output."""
    texts = {str(p): p.read_text(errors="replace") for p in root.rglob("*.log*") if p.is_file()}
    for i, proc in enumerate(GATEWAY_PROCS):
        texts[f"gateway process #{i} output"] = proc.text
    return texts


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole run: no key, password, session secret or cookie in any log line or gateway
    output. Set up first, so it is torn down last, once every gateway has stopped."""
    yield
    root = tmp_path_factory.getbasetemp()
    texts = session_texts(root)
    secrets = configured_secrets(root)
    leaks = secret_leaks(texts, secrets)
    SUMMARY.append(f"secret scan: {len(texts)} logs and gateway outputs, {len(secrets)} configured secrets "
                   f"and every key shape checked: {len(leaks)} leaks")
    assert not leaks, "secrets in logs:\n" + "\n".join(leaks[:20])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fault-run counts, the secret scan and where the screenshots went at the end of the
    run, -s or not."""
    if SUMMARY:
        terminalreporter.section("summary")
        for line in SUMMARY:
            terminalreporter.write_line(line)


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (never a browser download), once per module.
    Without it the browser tests are skipped with the reason, except under CI=true, where they fail:
    a green CI always means they ran."""
    reason = _browser_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()

"""The deployment files in contrib/deploy/: the Dockerfile (checked statically, no Docker engine
needed: its routes, subcommand and flags exist, its health check command works), the systemd unit
(``systemd-analyze verify`` and ``security``) and the nginx example (``nginx -t``, then a private
nginx in front of a real gateway: a stream arrives event by event, the dashboard's WebSocket
upgrades). A missing tool skips its tests with the reason, except under CI=true, where it fails."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USER, GatewayServer, admin_overrides
from test_https import make_pki, trusting
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from aigateway.cli import build_parser
from aigateway.config import SETTINGS
from aigateway.server import CLOSE_SECONDS

DEPLOY = Path(__file__).parent.parent / "contrib" / "deploy"
WORDS = " ".join(f"w{i}" for i in range(8))
DELAY = 0.25  # seconds between the fake upstream's content chunks


def need(tool: str) -> str:
    """The tool's path; skip without it (fail under CI=true: .ci/run installs it)."""
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)),
                                      None)
    if path is None:
        reason = f"{tool} is not installed (apt-get install {'systemd' if 'systemd' in tool else tool})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"deployment tests must run in CI: {reason}")
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parses_as_cli(argv: list[str]) -> None:
    """``aigateway ARGS`` is a valid command line of ours (argparse exits on an unknown flag)."""
    assert Path(argv[0]).name == "aigateway", argv
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config


# -- Dockerfile

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(line for line in (DEPLOY / "Dockerfile").read_text().splitlines()
                                             if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def instruction(name: str) -> list[str]:
    return [args for instr, args in dockerfile() if instr == name]


def test_dockerfile_runs_the_gateway_unprivileged_with_its_data_on_a_volume():
    assert all(re.fullmatch(r"python:3\.1\d-slim( AS \w+)?", image) for image in instruction("FROM"))
    steps = [instr for instr, _ in dockerfile()]
    last_stage = len(steps) - steps[::-1].index("FROM")
    assert instruction("USER") == ["aigateway"] and "USER" in steps[last_stage:]
    assert any("useradd" in run and " aigateway" in run for run in instruction("RUN"))
    assert instruction("VOLUME") == ["/data"] and instruction("STOPSIGNAL") == ["SIGTERM"]
    cmd = json.loads(instruction("CMD")[0])
    parses_as_cli(cmd)
    args = build_parser().parse_args(cmd[1:])
    assert args.config.startswith("/data/") and args.host == "0.0.0.0"
    assert instruction("EXPOSE") == [str(args.port)]


def test_dockerfile_copies_only_what_exists_and_its_dockerignore_lets_through():
    allowed = {line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else (config.yaml with its keys, data/, logs/, .venv, .git) stays out
    root = DEPLOY.parent.parent
    for copy in instruction("COPY"):
        if copy.startswith("--from="):
            continue
        for source in copy.split()[:-1]:
            assert (root / source).exists() and source.rstrip("/") in allowed, source


def test_the_dockerfile_health_check_works_against_a_real_gateway(gateway):
    """The HEALTHCHECK's own command, pointed at a test gateway's port: exit 0; at a closed port: not 0."""
    healthcheck = instruction("HEALTHCHECK")[0]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", command[2])
    assert url.group(2) == "/healthz" and url.group(1) == instruction("EXPOSE")[0]
    port = gateway.url.rsplit(":", 1)[1]
    ok = subprocess.run([sys.executable, "-c", command[2].replace(":" + url.group(1), ":" + port)], timeout=30)
    closed = subprocess.run([sys.executable, "-c", command[2].replace(":" + url.group(1), f":{free_port()}")],
                            capture_output=True, timeout=30)
    assert ok.returncode == 0 and closed.returncode != 0


# -- systemd

@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit, its ExecStart pointed at this venv's aigateway (verify checks the binary exists)."""
    text = (DEPLOY / "aigateway.service").read_text()
    path = tmp_path / "aigateway.service"
    path.write_text(text.replace("/opt/aigateway/bin/aigateway", str(Path(sys.executable).parent / "aigateway")))
    return path


def unit_values(name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in (DEPLOY / "aigateway.service").read_text().splitlines()
            if line.startswith(name + "=")]


def test_systemd_unit_passes_systemd_analyze_verify(unit):
    tool = need("systemd-analyze")
    run = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for a directive it ignores: any message is a finding.
    assert run.returncode == 0 and run.stderr.strip() == "" and run.stdout.strip() == "", run.stderr


def test_systemd_unit_is_hardened(unit):
    tool = need("systemd-analyze")
    run = subprocess.run([tool, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60)
    exposure = re.search(r"Overall exposure level for aigateway\.service: ([\d.]+) (\w+)", run.stdout)
    assert exposure, run.stdout + run.stderr
    assert float(exposure.group(1)) <= 2.0, run.stdout  # systemd's scale: 0 (locked down) to 10 (exposed)


def test_systemd_unit_stops_gracefully_and_runs_a_real_command():
    grace = next(s.default for s in SETTINGS if s.name == "server.shutdown_grace_seconds")
    assert unit_values("KillSignal") == ["SIGTERM"]
    assert int(unit_values("TimeoutStopSec")[0].rstrip("s")) > grace + 2 * CLOSE_SECONDS
    command = shlex.split(unit_values("ExecStart")[0])
    parses_as_cli(command)
    config = build_parser().parse_args(command[1:]).config
    state = "/var/lib/" + unit_values("StateDirectory")[0]
    assert config.startswith(state + "/") and unit_values("ReadWritePaths") == [state]
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                   "SystemCallFilter=@system-service", "DynamicUser=yes"):
        assert option in (DEPLOY / "aigateway.service").read_text().splitlines(), option


# -- nginx

@pytest.fixture(scope="module")
def proxied(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gateway of this module's own, with a known admin password (the WebSocket test logs in)."""
    server = GatewayServer(tmp_path_factory.mktemp("proxied"), fake_upstream, **admin_overrides())
    yield server
    server.stop()


class Nginx:
    """The example config under a private nginx: its own prefix folder, free loopback ports, the
    test's certificate; no system service, no root-only path."""

    def __init__(self, tool: str, folder: Path, upstream: str, pki: dict[str, Path]) -> None:
        self.tool, self.folder = tool, folder
        self.https_port, self.http_port = free_port(), free_port()
        site = (DEPLOY / "nginx-aigateway.conf").read_text()
        for old, new in (("127.0.0.1:8090", upstream.removeprefix("http://")),
                         ("listen 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;"),
                         ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
                         ("/etc/ssl/aigateway/fullchain.pem", str(pki["cert"])),
                         ("/etc/ssl/aigateway/privkey.pem", str(pki["key"]))):
            assert site.count(old) == 1, old  # the example keeps each substitution trivial
            site = site.replace(old, new)
        (folder / "aigateway.conf").write_text(site)
        temps = "\n".join(f"    {kind}_temp_path {folder}/{kind};" for kind in
                          ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
        self.conf = folder / "nginx.conf"
        self.conf.write_text(f"{user}worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
                             f"daemon off;\nevents {{ worker_connections 256; }}\n"
                             f"http {{\n    access_log {folder}/access.log;\n{temps}\n"
                             f"    include {folder}/aigateway.conf;\n}}\n")
        self.proc: subprocess.Popen | None = None
        self.url = f"https://127.0.0.1:{self.https_port}"

    def args(self, *extra: str) -> list[str]:
        return [self.tool, "-p", str(self.folder), "-c", str(self.conf), "-e", str(self.folder / "error.log"), *extra]

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not start: {(self.folder / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # nginx's graceful shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("nginx-pki"))


@pytest.fixture(scope="module")
def nginx(proxied: GatewayServer, pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    server = Nginx(need("nginx"), tmp_path_factory.mktemp("nginx"), proxied.url, pki)
    server.start()
    yield server
    server.stop()


def test_the_nginx_example_passes_nginx_t(proxied, pki, tmp_path):
    server = Nginx(need("nginx"), tmp_path, proxied.url, pki)
    run = subprocess.run(server.args("-t"), capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and "test is successful" in run.stderr, run.stderr


def test_a_stream_through_nginx_arrives_event_by_event(nginx, proxied, pki):
    key = proxied.add_client("behind-nginx")
    arrivals, text = [], ""
    with httpx.Client(verify=trusting(pki)) as http:
        client = openai.OpenAI(base_url=nginx.url + "/v1", api_key=key, http_client=http, max_retries=0)
        for chunk in client.chat.completions.create(
                model="gpt-4o", stream=True, messages=[{"role": "user", "content": f"{WORDS} #fake:delay={DELAY}"}]):
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic())
                text += chunk.choices[0].delta.content
    assert text == f"Echo: {WORDS}"
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # Buffered, the chunks would land together at the end; passed through, they keep the upstream's
    # spacing: most gaps are close to DELAY, and the first chunk came long before the last.
    assert arrivals[-1] - arrivals[0] > 0.5 * DELAY * (len(arrivals) - 1), gaps
    assert sorted(gaps)[len(gaps) // 2] > DELAY / 2, gaps


def test_plain_http_redirects_to_https(nginx):
    r = httpx.get(f"http://127.0.0.1:{nginx.http_port}/v1/models")
    assert r.status_code == 301 and r.headers["location"].startswith("https://127.0.0.1/v1/models")


def test_the_dashboard_websocket_upgrades_through_nginx(nginx, pki):
    with httpx.Client(base_url=nginx.url, verify=trusting(pki)) as http:  # a real login, through nginx
        http.get("/admin")
        login = http.post("/admin/api/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
                          headers={"X-XSRFToken": http.cookies["_xsrf"]})
        assert login.status_code == 200, login.text
        cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
        assert login.headers["strict-transport-security"] == "max-age=31536000"  # added by nginx

    async def first_message() -> list:
        request = HTTPRequest(nginx.url.replace("https://", "wss://") + "/admin/ws", ca_certs=str(pki["ca"]),
                              headers={"Cookie": cookie, "Origin": nginx.url}, request_timeout=10)
        ws = await websocket_connect(request)
        try:
            return json.loads(await asyncio.wait_for(ws.read_message(), 10))
        finally:
            ws.close()

    messages = asyncio.run(first_message())
    assert messages[0]["type"] == "snapshot"

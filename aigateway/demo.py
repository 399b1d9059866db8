"""``python -m aigateway demo``: the gateway and the fake upstream (``fake-upstream``) on loopback,
in a folder of the demo's own, with a client ready to call, and (``--traffic``) a gentle stream of
varied requests so that the dashboard and the usage pages have something to show.

Both servers run as children, each in a session of its own: a Ctrl-C reaches the demo alone,
which stops them in order (its traffic, then the gateway with its graceful drain, then the fake)
so that nothing is cut by an upstream that left first.

The folder is kept from run to run (config, database, history). Only hashes of the admin password
and of client keys are stored, so every run makes a new admin password and new client keys and
prints them; the previous run's key stops working."""

from __future__ import annotations

import asyncio
import ctypes
import random
import re
import signal
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from aigateway import clients
from aigateway.config import ConfigError, default_data, generate_admin, load, parse, write_file
from aigateway.db import connect

DEFAULT_PORT = 8090  # when taken, the demo takes a free port instead
MARKER = ".aigateway-demo"  # the demo only ever rewrites a config.yaml in a folder holding this file
LISTEN = re.compile(r"listening on (https?://\S+)")
START_SECONDS = 30
CLIENT = "demo"  # the client whose key is printed

# Providers of all three wire formats, all pointing at the fake upstream (whose URL changes each run).
PROVIDERS: dict[str, dict[str, Any]] = {
    "demo-openai": {"type": "openai", "path": "/v1", "default_model": "gpt-4o"},
    "demo-anthropic": {"type": "anthropic", "path": "", "default_model": "claude-sonnet-4-20250514"},
    "demo-gemini": {"type": "gemini", "path": "", "default_model": "gemini-2.0-flash",
                    "allowed_models": ["gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro"]},
}
# (name, provider, its own limits): the printed client, then the ones the traffic uses.
CLIENTS: tuple[tuple[str, str, dict[str, int]], ...] = (
    (CLIENT, "demo-openai", {}),
    ("support-bot", "demo-openai", {"daily_requests": 0, "rpm": 0}),
    ("docs-search", "demo-anthropic", {"daily_requests": 0, "rpm": 0}),
    ("code-agent", "demo-gemini", {"daily_requests": 0, "rpm": 0}),
    ("batch-job", "demo-openai", {"daily_requests": 0, "rpm": 3}),  # past 3 a minute: rejected (429)
)


class DemoError(Exception):
    """The demo cannot start: one line for the console, exit 2."""


@dataclass(frozen=True)
class Setup:
    config: Path
    password: str
    keys: dict[str, str]  # client name -> its key for this run


def prepare(folder: Path, upstream: str) -> Setup:
    """Write the demo's config.yaml (providers at ``upstream``, loopback only, a short shutdown
    grace, a new admin password) and give each demo client a new key, creating it if needed."""
    folder.mkdir(parents=True, exist_ok=True)
    path, marker = folder / "config.yaml", folder / MARKER
    if path.exists() and not marker.exists():
        raise DemoError(f"{folder} holds a config.yaml the demo did not write; give the demo a folder "
                        "of its own (--dir)")
    marker.write_text("Made by `python -m aigateway demo`, which may rewrite config.yaml here.\n")
    data = parse(path, path.read_text())[0] if path.exists() else default_data()
    data.setdefault("server", {}).update({"host": "127.0.0.1", "shutdown_grace_seconds": 5})
    data["providers"] = {
        name: {"type": p["type"], "api_key": "demo-key-the-fake-ignores", "base_url": upstream + p["path"],
               "default_model": p["default_model"], "allowed_models": p.get("allowed_models", []),
               "timeout_seconds": 30}
        for name, p in PROVIDERS.items()}
    data.setdefault("admin", {})["password_hash"] = ""
    password = generate_admin(data)
    assert password is not None  # the hash was just emptied, so a new password was made
    write_file(path, data)
    config = load(path, announce=False)  # validates, fills anything missing, makes data/ and logs/
    conn = connect(config.resolve("database.path"))
    keys = {}
    known = clients.Known(config.providers, config.routes)
    try:
        for name, provider, limits in CLIENTS:
            try:
                clients.update(conn, name, known, provider=provider, enabled=1, **limits)
                keys[name] = clients.rotate_key(conn, name)[1]
            except clients.ClientError:  # first run, or deleted since
                keys[name] = clients.create(conn, name, provider, "sk-", known, **limits)[1]
    finally:
        conn.close()
    return Setup(path, password, keys)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the demo dies, even by SIGKILL (Linux prctl)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A ``python -m aigateway ...`` child in a session of its own; its output is read as it comes
    (so it never blocks on a full pipe), keeping the tail for when it fails."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name, self.proc, self.url = name, proc, ""
        self.tail: deque[str] = deque(maxlen=40)
        self.listening = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, name: str, args: list[str]) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aigateway", *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        child = cls(name, proc)
        try:
            await asyncio.wait_for(asyncio.wait([asyncio.ensure_future(child.listening.wait()), child.reader],
                                                return_when=asyncio.FIRST_COMPLETED), START_SECONDS)
        except asyncio.TimeoutError:
            pass
        if not child.url:
            await child.stop()
            raise DemoError(f"the {name} did not start:\n" + "".join(child.tail))
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self.tail.append(line)
            found = LISTEN.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self.listening.set()

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.signal(signal.SIGKILL)
            await self.proc.wait()
        await self.reader


async def start_gateway(config: Path, port: int | None) -> Child:
    """The gateway on ``port``, or on DEFAULT_PORT, falling back to a free port when that is taken."""
    args = ["run", "--config", str(config), "--host", "127.0.0.1", "--port"]
    try:
        return await Child.start("gateway", [*args, str(DEFAULT_PORT if port is None else port)])
    except DemoError as exc:
        if port is not None or "Address already in use" not in str(exc):
            raise
    print(f"(port {DEFAULT_PORT} is taken: using a free port)", flush=True)
    return await Child.start("gateway", [*args, "0"])


def banner(folder: Path, url: str, setup: Setup, traffic: bool) -> str:
    """What the demo prints once both servers listen: every line works as printed."""
    key = setup.keys[CLIENT]
    body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello from curl"}]}).decode()
    return "\n".join([
        f"aigateway demo: the gateway is listening on {url}",
        "Its provider is a fake upstream speaking OpenAI, Anthropic and Gemini. Everything lives in",
        f"{folder} (config, database, logs); ./config.yaml is never touched.",
        "",
        f"Admin UI:   {url}/admin   user: admin   password: {setup.password}",
        f"Dashboard:  {url}/admin/dashboard",
        f"Client key: {key}   (client \"{CLIENT}\")",
        "A new password and key each run: only their hashes are stored, and last run's stop working.",
        "",
        "Try it with curl:",
        f"curl -s {url}/v1/chat/completions -H \"Authorization: Bearer {key}\" "
        f"-H \"Content-Type: application/json\" -d '{body}'",
        "",
        "Or with the openai SDK (pip install openai):",
        "from openai import OpenAI",
        f"client = OpenAI(base_url=\"{url}/v1\", api_key=\"{key}\")",
        "reply = client.chat.completions.create(model=\"gpt-4o\", "
        "messages=[{\"role\": \"user\", \"content\": \"Hello from Python\"}])",
        "print(reply.choices[0].message.content)",
        "",
        f"The same key works with the anthropic SDK (base_url=\"{url}\") and google-genai",
        f"(http_options={{\"base_url\": \"{url}\"}}), with any model name.",
        f"Logs: {folder / 'logs' / 'gateway.log'}",
        "",
        ("Sending demo traffic: streams, errors and several models from four clients. " if traffic else "")
        + "Ctrl-C stops everything.",
    ])


# -- traffic

PROMPTS = ("Summarise this week's support tickets in three bullet points",
           "Draft a polite reminder about an invoice that is two weeks late",
           "Explain retries with exponential backoff to a new engineer",
           "Suggest three names for an internal billing assistant",
           "Translate 'the deployment finished without errors' into French and German",
           "What are the trade-offs of fixed-window rate limits?",
           "Write a haiku about a queue that never drains")


@dataclass(frozen=True)
class Call:
    """One kind of demo request: which client, in which inbound format, for which model; a
    ``knob`` (the fake upstream's ``#fake:`` directives) makes it slow, failing or erroring."""

    weight: int
    client: str
    fmt: str
    model: str
    stream: bool = False
    knob: str = ""


CALLS = (
    Call(6, "support-bot", "openai", "gpt-4o"),
    Call(4, "support-bot", "openai", "gpt-4o-mini", stream=True, knob="#fake:delay=0.15"),
    Call(4, "docs-search", "anthropic", "claude-sonnet-4-20250514", stream=True, knob="#fake:delay=0.2"),
    Call(3, "docs-search", "anthropic", "claude-3-5-haiku-20241022"),
    Call(3, "code-agent", "gemini", "gemini-2.5-flash", stream=True, knob="#fake:delay=0.1"),
    Call(3, "code-agent", "openai", "gemini-2.0-flash"),  # an OpenAI client on a Gemini backend
    Call(2, "code-agent", "gemini", "gemini-2.5-pro"),
    Call(1, "code-agent", "gemini", "gemini-1.0-ultra"),  # not in allowed_models: 404
    Call(1, "support-bot", "openai", "gpt-4o", knob="#fake:status=503"),  # upstream error
    Call(1, "docs-search", "anthropic", "claude-sonnet-4-20250514", knob="#fake:status=429"),
    Call(1, "support-bot", "openai", "gpt-4o", stream=True, knob="#fake:delay=0.1 #fake:fail_after=3"),
    Call(3, "batch-job", "openai", "gpt-4o-mini"),  # about 5 a minute, past its 3: rejected (429)
)


def request(url: str, key: str, call: Call, text: str) -> HTTPRequest:
    """The HTTP request an official SDK of ``call.fmt`` would send."""
    content = f"{text} {call.knob}".strip()
    if call.fmt == "gemini":
        action = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
        path, headers = f"/v1beta/models/{call.model}:{action}", {"x-goog-api-key": key}
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": content}]}]}
    else:
        body = {"model": call.model, "messages": [{"role": "user", "content": content}], "stream": call.stream}
        if call.fmt == "anthropic":
            path, headers = "/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}
            body["max_tokens"] = 512
        else:
            path, headers = "/v1/chat/completions", {"Authorization": f"Bearer {key}"}
            if call.stream:
                body["stream_options"] = {"include_usage": True}
    return HTTPRequest(url + path, method="POST", headers={**headers, "Content-Type": "application/json"},
                       body=orjson.dumps(body), request_timeout=60,
                       streaming_callback=(lambda chunk: None) if call.stream else None)


def picks(seed: int | None = None) -> Iterator[tuple[Call, str, float]]:
    """Endless (call, prompt, pause before the next) picks, weighted, every kind early on."""
    rng = random.Random(seed)
    for call in CALLS:  # one of each first, so a short run already shows every kind
        yield call, rng.choice(PROMPTS), rng.uniform(0.2, 0.6)
    while True:
        yield rng.choices(CALLS, [c.weight for c in CALLS])[0], rng.choice(PROMPTS), rng.uniform(0.3, 1.5)


async def send_traffic(url: str, keys: dict[str, str], sent: list[int], in_flight: int = 6) -> None:
    """Until cancelled: about a request a second, at most ``in_flight`` at once; answers are read
    and dropped. ``sent[0]`` counts the requests sent."""
    http = AsyncHTTPClient(force_instance=True, max_clients=in_flight)
    slots = asyncio.Semaphore(in_flight)
    tasks: set[asyncio.Task] = set()

    async def one(req: HTTPRequest) -> None:
        try:
            await http.fetch(req, raise_error=False)
        finally:
            slots.release()

    try:
        for call, prompt, pause in picks():
            await slots.acquire()
            task = asyncio.ensure_future(one(request(url, keys[call.client], call, prompt)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent[0] += 1
            await asyncio.sleep(pause)
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        http.close()


# -- the whole demo

async def run_demo(folder: Path, port: int | None, traffic: bool) -> int:
    """Start the fake upstream and the gateway, print the banner, send traffic if asked, and stop
    everything in order on SIGINT, SIGTERM or SIGHUP (a second one ends the gateway's grace period).
    Returns the exit code: 0 after a signal, 1 when a server died by itself."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    children: list[Child] = []

    def on_signal() -> None:
        if stop.is_set() and children:
            children[-1].signal(signal.SIGTERM)  # the gateway: the second signal ends its drain
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal)
    sent = [0]
    traffic_task: asyncio.Task | None = None
    code = 0
    try:
        children.append(await Child.start("fake upstream", ["fake-upstream", "--port", "0", "--host", "127.0.0.1"]))
        setup = prepare(folder, children[0].url)
        children.append(await start_gateway(setup.config, port))
        url = children[1].url
        print(banner(folder, url, setup, traffic), flush=True)
        if traffic:
            traffic_task = asyncio.ensure_future(send_traffic(url, setup.keys, sent))
        waits = [asyncio.ensure_future(stop.wait()), *(c.reader for c in children)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        waits[0].cancel()
        for child in children:
            if child.proc.returncode is not None or child.reader.done():
                print(f"\nthe {child.name} stopped by itself:\n" + "".join(child.tail), file=sys.stderr)
                code = 1
    finally:
        if traffic_task is not None:
            traffic_task.cancel()
            await asyncio.gather(traffic_task, return_exceptions=True)
        for child in reversed(children):  # the gateway drains first, while its upstream still answers
            await child.stop()
    if stop.is_set():
        print(f"\nstopped{f' (sent {sent[0]} demo requests)' if traffic else ''}", flush=True)
    return code


def main(folder: str, port: int | None, traffic: bool) -> int:
    try:
        return asyncio.run(run_demo(Path(folder).resolve(), port, traffic))
    except (DemoError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

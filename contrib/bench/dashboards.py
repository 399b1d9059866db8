"""What open dashboards cost the gateway: throughput under load with 0 and with N live
dashboards (WebSocket clients with a valid admin session, reading every frame).

    python contrib/bench/dashboards.py [--dashboards 5] [--seconds 10] [--connections 32] [--rounds 2] [--stream]

First, in process, the hub's own cost: the relay's two hooks with no dashboard open, and the
CPU one second of traffic at a given rate costs it with N sockets (fold, encode once, queue N
times). Then, end to end, it starts the fake upstream and a gateway (logging at warning) on free
loopback ports in a temp folder and for each round measures 0 and N dashboards in turn. Load
comes from ``wrk`` with post.lua when it is installed, else from a bounded asyncio client;
every loop is bounded in count and time. Each run also reports the gateway process's CPU time
per request (from /proc), which moves far less than req/s when the box is shared: on a busy
2-core machine req/s can move by 10% or more between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from aigateway import clients
from aigateway import hub as hub_module
from aigateway.admin import sessions
from aigateway.app import Gateway
from aigateway.config import default_data, load
from aigateway.db import connect
from aigateway.usage import UsageRecord

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # contrib/procs.py

from procs import start  # noqa: E402


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Dashboards:
    """N WebSocket clients on a thread of their own, counting frames until stopped."""

    def __init__(self, url: str, cookie: str, count: int) -> None:
        self.url, self.cookie, self.count = url.replace("http://", "ws://") + "/admin/ws", cookie, count
        self.frames = self.bytes = 0
        self.opened = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Dashboards:
        if self.count:
            self.thread.start()
            if not self.opened.wait(10):
                raise SystemExit("dashboards did not connect")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.count and self.loop is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(10)

    async def _main(self) -> None:
        self.loop, self.stop_event = asyncio.get_running_loop(), asyncio.Event()
        request = HTTPRequest(self.url, headers={"Cookie": self.cookie})
        sockets = [await websocket_connect(request) for _ in range(self.count)]
        for ws in sockets:  # each gets its snapshot first
            await asyncio.wait_for(ws.read_message(), 10)
        self.opened.set()
        readers = [asyncio.ensure_future(self._read(ws)) for ws in sockets]
        await self.stop_event.wait()
        for ws in sockets:
            ws.close()
        for task in readers:
            task.cancel()

    async def _read(self, ws) -> None:
        while True:
            message = await ws.read_message()
            if message is None:
                return
            self.frames += 1
            self.bytes += len(message)


def run_wrk(url: str, key: str, body: str, seconds: float, connections: int) -> dict:
    env = dict(os.environ, BENCH_BODY=body, BENCH_KEY=key)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                          "-s", str(HERE / "post.lua"), url + "/v1/chat/completions"],
                         env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return {"requests": data["requests"], "errors": data["non_2xx"] + data["socket_errors"],
            "seconds": data["duration_us"] / 1e6, "p50_ms": data["p50_us"] / 1000, "p99_ms": data["p99_us"] / 1000}


def run_asyncio(url: str, key: str, body: str, seconds: float, connections: int) -> dict:
    """The fallback load: ``connections`` workers posting back to back until the time is up."""

    async def main() -> dict:
        client = AsyncHTTPClient(force_instance=True, max_clients=connections)
        latencies: list[float] = []
        errors = 0
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                t = time.monotonic()
                try:
                    await client.fetch(url + "/v1/chat/completions", method="POST", body=body, request_timeout=10,
                                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
                    latencies.append(time.monotonic() - t)
                except (HTTPClientError, OSError):
                    errors += 1

        start_t = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        client.close()
        latencies.sort()
        pick = (lambda q: latencies[int(q * (len(latencies) - 1))] * 1000) if latencies else (lambda q: 0.0)
        return {"requests": len(latencies), "errors": errors, "seconds": time.monotonic() - start_t,
                "p50_ms": pick(0.5), "p99_ms": pick(0.99)}

    return asyncio.run(main())


class _NullSocket:
    def write_message(self, frame: bytes) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        pass


def hub_cost(config_path: Path, sockets: int, rate: int) -> None:
    """Time the hooks with no socket, and one second's worth of ticks at ``rate`` req/s with N."""

    async def main() -> None:
        gw = Gateway(load(config_path, announce=False))
        try:
            hub = gw.hub
            rec = UsageRecord(1, "bench", "openai", provider="fake", model="gpt-4o", latency_ms=12.5,
                              input_tokens=12, output_tokens=30, admitted=True)
            calls = 200_000
            t = time.perf_counter()
            for _ in range(calls):
                hub.request_started(rec)
                hub.request_finished(rec)
            per_request = (time.perf_counter() - t) / calls * 1e9
            print(f"hub, 0 dashboards: {per_request:.0f} ns per request for both hooks", flush=True)
            for _ in range(sockets):
                hub.add(_NullSocket())
            await hub.ready()
            hub._ticker.stop()  # ticks driven by hand below
            ticks = round(1 / hub_module.TICK_SECONDS)
            per_tick = rate // ticks
            spent = 0.0
            for _ in range(5):
                for _tick in range(ticks):
                    batch = [UsageRecord(1, "bench", "openai", provider="fake", model="gpt-4o", latency_ms=12.5,
                                         input_tokens=12, output_tokens=30, admitted=True) for _ in range(per_tick)]
                    t = time.perf_counter()
                    for r in batch:
                        hub.request_finished(r)
                    hub._tick()
                    spent += time.perf_counter() - t
                    await asyncio.sleep(0)  # let the send tasks take their frames
            print(f"hub, {sockets} dashboards at {rate} req/s: {spent / 5 * 1000:.1f} ms of CPU per second"
                  f" ({spent / 5 * 100:.2f}% of one core)", flush=True)
        finally:
            gw.close()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboards", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stream", action="store_true", help="streamed requests (one token per chunk)")
    parser.add_argument("--load", choices=("auto", "wrk", "asyncio"), default="auto")
    args = parser.parse_args()
    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    load_fn = run_wrk if use_wrk else run_asyncio

    folder = Path(tempfile.mkdtemp(prefix="aigw-bench-"))
    upstream = start("fake upstream", [sys.executable, "-m", "aigateway", "fake-upstream", "--port", "0",
                                       "--host", "127.0.0.1"], cwd=folder, timeout=20)
    upstream_url = upstream.url
    gateway = None
    try:
        data = default_data()
        data["providers"] = {"fake": {"type": "openai", "api_key": "sk-bench-upstream",
                                      "base_url": upstream_url + "/v1", "default_model": "gpt-4o",
                                      "timeout_seconds": 30}}
        for section in ("rate_limit", "quota"):
            for name in data["defaults"][section]:
                data["defaults"][section][name] = 0
        data["logging"]["level"] = "warning"
        config_path = folder / "config.yaml"
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        config = load(config_path, announce=False)  # fills the admin password hash and session secret
        conn = connect(config.resolve("database.path"))
        _, key = clients.create(conn, "bench", "fake")
        conn.close()
        cookie = f"{sessions.COOKIE}={sessions.make_session(config).decode()}"
        hub_cost(config_path, args.dashboards, 1000)
        gateway = start("gateway", [sys.executable, "-m", "aigateway", "run", "--config", str(config_path), "--port",
                                    "0", "--host", "127.0.0.1"], cwd=folder, timeout=20)
        url = gateway.url
        body = json.dumps({"model": "gpt-4o", "stream": args.stream,
                           "messages": [{"role": "user", "content": "Say hello to the benchmark, please."}]})
        load_fn(url, key, body, 2, args.connections)  # warm up: connections, caches, the key index
        print(f"load: {'wrk' if use_wrk else 'asyncio client'}, {args.connections} connections, "
              f"{args.seconds:g}s per run, {'streamed' if args.stream else 'plain'} requests", flush=True)
        results: dict[int, list[float]] = {0: [], args.dashboards: []}
        cpu: dict[int, list[float | None]] = {0: [], args.dashboards: []}
        for round_ in range(args.rounds):
            for count in (0, args.dashboards):
                with Dashboards(url, cookie, count) as dashboards:
                    cpu0 = cpu_seconds(gateway.pid)
                    r = load_fn(url, key, body, args.seconds, args.connections)
                    cpu1 = cpu_seconds(gateway.pid)
                rps = r["requests"] / r["seconds"]
                results[count].append(rps)
                per_request = (cpu1 - cpu0) / max(1, r["requests"]) * 1e6 if cpu0 is not None else None
                cpu[count].append(per_request)
                print(f"round {round_ + 1}, {count} dashboards: {rps:8.1f} req/s  p50 {r['p50_ms']:.1f} ms"
                      f"  p99 {r['p99_ms']:.1f} ms  errors {r['errors']}"
                      + (f"  gateway CPU {per_request:.0f} µs/request" if per_request is not None else "")
                      + (f"  ({dashboards.frames} frames, {dashboards.bytes / 1024:.0f} KiB to the dashboards)"
                         if count else ""), flush=True)
        base = statistics.median(results[0])
        for count, values in results.items():
            rps = statistics.median(values)
            used = [c for c in cpu[count] if c is not None]
            print(f"median, {count} dashboards: {rps:8.1f} req/s ({(rps / base - 1) * 100:+.1f}%)"
                  + (f", gateway CPU {statistics.median(used):.0f} µs/request" if used else ""))
    finally:
        for proc in (gateway, upstream):
            if proc is not None:
                proc.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

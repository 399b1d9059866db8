"""Side-by-side benchmark: the fake upstream direct, a bare Tornado + pycurl relay (the ceiling of
our stack), the gateway with every feature on, and optionally the LiteLLM proxy, all on loopback.

    python contrib/bench/run.py [--quick] [--peer litellm] [--rounds N] [--soak-seconds N] [--out FILE]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). With two cores or more, the server under test
runs on core 0 and the fake upstream and the load generators on core 1. Every load loop is
bounded in count and time, and everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # contrib/procs.py

import streams  # noqa: E402
import yaml  # noqa: E402
from limiter import measure as measure_limiter  # noqa: E402
from procs import Proc, pinned, start  # noqa: E402

from aigateway.config import default_data  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROMPT = "Hello there, how are you today?"
SYSTEM_PROMPT = "You are a concise assistant for the benchmark."


def chat_body(text: str, stream: bool = False, model: str = "gpt-4o") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


# ---------------------------------------------------------------- processes


def cores() -> tuple[int | None, int | None]:
    """(core for the server under test, core for upstream and load) when there are two."""
    available = sorted(os.sched_getaffinity(0))
    return (available[0], available[1]) if len(available) >= 2 else (None, None)


SERVER_CORE, LOAD_CORE = cores()


def family(pid: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its descendants (all threads)."""
    total = 0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    total = 0
    for p in family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


# ---------------------------------------------------------------- load


def wrk(url: str, body: bytes, key: str, connections: int, seconds: float) -> dict:
    """One bounded wrk run (one thread, on the load core) with post.lua; its JSON summary."""
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / "post.lua"),
            url]
    env = {**os.environ, "BENCH_BODY": body.decode(), "BENCH_KEY": key}
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=pinned(LOAD_CORE))
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            return data
    raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")


def measured(target: Target, body: bytes, connections: int, seconds: float) -> dict:
    """A wrk run plus the server's CPU per request over it."""
    before = cpu_seconds(target.pid)
    data = wrk(target.chat_url, body, target.key, connections, seconds)
    data["cpu_ms"] = (cpu_seconds(target.pid) - before) * 1000 / max(1, data["requests"])
    return data


def stream_timings(target: Target, request_text: str, count: int, *, concurrency: int | None = None,
                   ramp: float = 0.0, sample_rss: bool = False) -> dict:
    """Run streams with the asyncio client (on the load core); TTFT and per-event latency stats."""
    host, port = target.host_port
    request = streams.http_request(host, port, target.chat_path, chat_body(request_text, True, target.model),
                                   target.key)
    peak_rss = [0.0]
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(0.05):
            peak_rss[0] = max(peak_rss[0], rss_mb(target.pid))

    if sample_rss:
        threading.Thread(target=sampler, daemon=True).start()
    mask = os.sched_getaffinity(0)
    if LOAD_CORE is not None:
        os.sched_setaffinity(0, {LOAD_CORE})
    try:
        results, peak = asyncio.run(streams.run_streams(host, port, request, count, concurrency=concurrency,
                                                        ramp=ramp, timeout=60))
    finally:
        os.sched_setaffinity(0, mask)
        stop.set()
    ok = [s for s in results if s.ok()]
    ttfts = sorted(t for s in ok if (t := s.ttft()) is not None)
    events = sorted(x for s in ok for x in s.event_latencies())
    return {"streams": count, "errors": count - len(ok), "peak_open": peak,
            "ttft_p50": pct(ttfts, 50), "ttft_p99": pct(ttfts, 99),
            "event_p50": pct(events, 50), "event_p99": pct(events, 99),
            "peak_rss_mb": peak_rss[0] if sample_rss else None,
            "first_error": next((s.error or bytes(s.data[:200]).decode("latin1") for s in results if not s.ok()), "")}


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000


# ---------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    proc: Proc
    chat_path: str
    key: str = "none"
    model: str = "gpt-4o"  # what the requests ask for: a route name for the routed client
    stamps: bool = True  # relays the fake's SSE comments (per-event latency measurable)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def host_port(self) -> tuple[str, int]:
        hostport = self.proc.url.split("://", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        return host, int(port)

    @property
    def chat_url(self) -> str:
        host, port = self.host_port
        return f"http://{host}:{port}{self.chat_path}"


def start_gateway(folder: Path, upstream: str) -> list[Target]:
    """The gateway with every feature on: a client with limits (high enough never to refuse, all
    checked), a system prompt, request logging to SQLite and the log file at info level; and a
    routed client of the same process, asking for a route of two targets whose first provider
    holds a pool of two keys (the first target answers: what routing costs on the hot path)."""
    data = default_data()
    data["server"]["host"] = "127.0.0.1"
    fake = {"type": "openai", "base_url": upstream + "/v1", "default_model": "gpt-4o", "timeout_seconds": 60}
    data["providers"] = {
        "fake": {**fake, "api_key": "sk-bench-upstream"},
        "fake-pool": {**fake, "api_keys": [{"key": "sk-bench-pool-a", "weight": 2}, {"key": "sk-bench-pool-b"}]},
    }
    data["routes"] = {"bench-route": {"targets": [{"provider": "fake-pool", "model": "gpt-4o"},
                                                  {"provider": "fake", "model": "gpt-4o"}]}}
    data["logging"]["level"] = "info"
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    limits = ["--rpm", "100000000", "--rph", "100000000", "--rpd", "100000000", "--daily-requests", "100000000",
              "--daily-input-tokens", "100000000000", "--daily-output-tokens", "100000000000",
              "--max-input-tokens", "100000", "--max-output-tokens", "4096"]

    def add(name: str, *extra: str) -> str:
        out = subprocess.run([sys.executable, "-m", "aigateway", "client", "add", "--config", str(config), "--name",
                              name, "--provider", "fake", "--system-prompt", SYSTEM_PROMPT, *limits, *extra,
                              "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
        return re.search(r'"api_key": "([^"]+)"', out.stdout).group(1)

    key, routed_key = add("bench"), add("bench-routed", "--allowed-routes", "bench-route")
    proc = start("gateway", [sys.executable, "-m", "aigateway", "run", "--config", str(config), "--port", "0"],
                 SERVER_CORE, cwd=str(ROOT))
    return [Target("gateway", proc, "/v1/chat/completions", key),
            Target("gateway routed", proc, "/v1/chat/completions", routed_key, model="bench-route")]


def start_litellm(folder: Path, upstream: str, binary: str) -> Target:
    """LiteLLM's proxy, one worker, the same upstream, no database, no callbacks, no network fetches."""
    config = folder / "litellm.yaml"
    config.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "gpt-4o", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": upstream + "/v1", "api_key": "sk-bench-upstream"}}],
        "general_settings": {"master_key": "sk-bench-litellm"},
        "litellm_settings": {"telemetry": False},
    }))
    port = free_port()
    proc = start("litellm", [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", "1"], SERVER_CORE, url=f"http://127.0.0.1:{port}",
                 env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}, timeout=180)
    return Target("litellm", proc, "/v1/chat/completions", "sk-bench-litellm", stamps=False)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_stats(upstream: str) -> dict:
    return json.loads(urllib.request.urlopen(upstream + "/_fake/stats", timeout=5).read())


# ---------------------------------------------------------------- the run


POINTS = ("c1", "c16", "c64", "stream", "timing", "paced")


def measure_point(t: Target, point: str, cfg: argparse.Namespace) -> dict:
    """One measurement of one point on one target."""
    d = cfg.duration
    plain, streamed = chat_body(PROMPT, False, t.model), chat_body(PROMPT + " #fake:chunks=20", True, t.model)
    if point == "c1":
        return measured(t, plain, 1, d)
    if point in ("c16", "c64"):
        return measured(t, plain, int(point[1:]), d)
    if point == "stream":
        return measured(t, streamed, 64, d)
    if point == "timing":
        return stream_timings(t, PROMPT + " #fake:chunks=20 #fake:delay=0.005 #fake:stamp=1",
                              cfg.timing_streams, concurrency=4)
    return stream_timings(t, PROMPT + " #fake:chunks=20 #fake:delay=0.05 #fake:stamp=1", cfg.paced,
                          ramp=cfg.ramp, sample_rss=True)


def combine(samples: list[dict]) -> dict:
    """One figure per key from a point's rounds: the median, except counts (summed), the peak
    number of streams open (the lowest round's) and peak RSS (the highest)."""
    out: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples if s.get(key) is not None]
        if key in ("errors", "streams", "requests"):
            out[key] = sum(values)
        elif key == "peak_open":
            out[key] = min(values)
        elif key == "peak_rss_mb":
            out[key] = max(values) if values else None
        elif values and all(isinstance(v, (int, float)) for v in values):
            out[key] = statistics.median(values)
        else:
            out[key] = next((v for v in values if v), values[0] if values else None)
    return out


def bench(targets: list[Target], cfg: argparse.Namespace, upstream: str) -> dict:
    """Every point on every target, in rounds. Within a round each point runs on every target in
    turn (the order rotating from round to round), so a minute in which a shared machine runs
    slower weighs on all targets alike rather than on whichever ran then; each figure is the
    median of its rounds, and the raw rounds are kept (``rounds``) to show the spread."""
    results: dict = {}
    for t in targets:
        print(f"[{t.name}] warm-up", flush=True)
        plain, streamed = chat_body(PROMPT, False, t.model), chat_body(PROMPT + " #fake:chunks=20", True, t.model)
        results[t.name] = {"rss_idle_mb": rss_mb(t.pid), "upstream_connections": 0,
                           "rounds": {p: [] for p in POINTS}}
        wrk(t.chat_url, plain, t.key, 16, 2)
        wrk(t.chat_url, streamed, t.key, 16, 2)
    for r in range(cfg.rounds):
        for point in POINTS:
            for t in targets[r % len(targets):] + targets[:r % len(targets)]:
                print(f"[round {r + 1}/{cfg.rounds}] [{t.name}] {point}", flush=True)
                before = fake_stats(upstream)["connections"]
                results[t.name]["rounds"][point].append(measure_point(t, point, cfg))
                results[t.name]["upstream_connections"] += fake_stats(upstream)["connections"] - before
    for t in targets:
        out = results[t.name]
        out.update({p: combine(out["rounds"][p]) for p in POINTS})
        out["rss_peak_mb"] = rss_mb(t.pid, "VmHWM")
    return results


def soak(t: Target, seconds: float) -> dict:
    """Alternate non-streaming and streaming load for ``seconds``, sampling RSS after each round;
    growth is measured from the end of the warm-up (the first third, at most 2 minutes)."""
    plain, streamed = chat_body(PROMPT), chat_body(PROMPT + " #fake:chunks=20", stream=True)
    warm = min(120.0, seconds / 3)
    start_t = time.monotonic()
    samples: list[tuple[float, float]] = []
    requests = 0
    round_s = min(10.0, max(2.0, seconds / 12))
    while time.monotonic() - start_t < seconds:
        left = seconds - (time.monotonic() - start_t)
        span = max(1.0, min(round_s, left) / 2)
        requests += wrk(t.chat_url, plain, t.key, 16, span)["requests"]
        requests += wrk(t.chat_url, streamed, t.key, 16, span)["requests"]
        samples.append((time.monotonic() - start_t, rss_mb(t.pid)))
    after_warm = [rss for when, rss in samples if when >= warm] or [samples[-1][1]]
    base = after_warm[0]
    return {"seconds": seconds, "requests": requests, "rss_after_warmup_mb": base, "rss_end_mb": samples[-1][1],
            "rss_max_mb": max(after_warm), "growth_pct": (samples[-1][1] - base) / base * 100}


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def our_seconds() -> float:
    """CPU seconds of this process and its finished children (servers, wrk)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def busy_fraction(seconds: float = 1.0) -> float:
    """How busy the machine is before we start (other processes skew every figure)."""
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def machine() -> dict:
    import pycurl
    import tornado

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "tornado": tornado.version, "pycurl": pycurl.version.split()[0].split("/")[1],
            "libcurl": pycurl.version.split()[1].split("/")[1],
            "pinning": f"server on core {SERVER_CORE}, upstream and load on core {LOAD_CORE}"
            if SERVER_CORE is not None else "none (one core)"}


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def table(results: dict, cfg: argparse.Namespace) -> str:
    names = [n for n in ("direct", "bare relay", "gateway", "gateway routed", "litellm") if n in results]
    direct = results["direct"]

    def row(label: str, fn) -> str:  # noqa: ANN001
        cells = []
        for n in names:
            try:
                cells.append(fn(results[n], n))
            except (KeyError, TypeError):
                cells.append("–")
        return f"| {label} | " + " | ".join(cells) + " |"

    def added(r: dict, key: str, sub: str) -> str:
        value = r[key][sub] / 1000
        base = direct[key][sub] / 1000
        return f"{fmt(value)} ({'+' if value >= base else ''}{fmt(value - base)})"

    def added_ms(r: dict, part: str, key: str, n: str) -> str:
        value, base = r[part][key], direct[part][key]
        if value is None:
            return "–"
        return fmt(value) if n == "direct" else f"{fmt(value)} ({'+' if value >= base else ''}{fmt(value - base)})"

    lines = [
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        row("c=1 latency p50, ms (added)", lambda r, n: added(r, "c1", "p50_us")),
        row("c=1 latency p99, ms (added)", lambda r, n: added(r, "c1", "p99_us")),
        row("c=16 req/s", lambda r, n: fmt(r["c16"]["rps"], 0)),
        row("c=16 CPU ms/request", lambda r, n: fmt(r["c16"]["cpu_ms"], 3)),
        row("c=64 req/s", lambda r, n: fmt(r["c64"]["rps"], 0)),
        row("c=64 CPU ms/request", lambda r, n: fmt(r["c64"]["cpu_ms"], 3)),
        row("c=64 latency p99, ms", lambda r, n: fmt(r["c64"]["p99_us"] / 1000, 1)),
        row("streams/s (20 chunks, c=64)", lambda r, n: fmt(r["stream"]["rps"], 0)),
        row("CPU ms/stream", lambda r, n: fmt(r["stream"]["cpu_ms"], 3)),
        row("stream TTFT p50, ms (added)", lambda r, n: added_ms(r, "timing", "ttft_p50", n)),
        row("stream TTFT p99, ms (added)", lambda r, n: added_ms(r, "timing", "ttft_p99", n)),
        row("per-chunk latency p50, ms (added)", lambda r, n: added_ms(r, "timing", "event_p50", n)),
        row("per-chunk latency p99, ms (added)", lambda r, n: added_ms(r, "timing", "event_p99", n)),
        row(f"{cfg.paced} paced streams: errors", lambda r, n: f"{r['paced']['errors']} / {r['paced']['streams']}"),
        row(f"{cfg.paced} paced streams: peak open at once", lambda r, n: str(r["paced"]["peak_open"])),
        row(f"{cfg.paced} paced streams: TTFT p50, ms (added)", lambda r, n: added_ms(r, "paced", "ttft_p50", n)),
        row(f"{cfg.paced} paced streams: TTFT p99, ms (added)", lambda r, n: added_ms(r, "paced", "ttft_p99", n)),
        row(f"{cfg.paced} paced streams: per-chunk p99, ms (added)",
            lambda r, n: added_ms(r, "paced", "event_p99", n)),
        row(f"{cfg.paced} paced streams: peak RSS, MB", lambda r, n: fmt(r["paced"]["peak_rss_mb"], 0)),
        row("RSS idle / lifetime peak, MB",
            lambda r, n: f"{fmt(r['rss_idle_mb'], 0)} / {fmt(r['rss_peak_mb'], 0)}"),
        row("upstream TCP connections opened", lambda r, n: "–" if n == "direct" else str(r["upstream_connections"])),
    ]
    return "\n".join(lines)


def summary(results: dict, cfg: argparse.Namespace) -> str:
    gw, bare = results.get("gateway"), results.get("bare relay")
    out = []
    if gw and bare:
        def rounds(point: str) -> str:
            pairs = zip(gw["rounds"][point], bare["rounds"][point], strict=True)
            return ", ".join(f"{g['rps'] / b['rps'] * 100:.0f}%" for g, b in pairs)

        out.append(f"- gateway / bare relay at c=64: {gw['c64']['rps'] / bare['c64']['rps'] * 100:.0f}% of the "
                   f"requests/s (rounds: {rounds('c64')}), {gw['c64']['cpu_ms'] / bare['c64']['cpu_ms']:.2f}x "
                   f"the CPU per request; streams/s {gw['stream']['rps'] / bare['stream']['rps'] * 100:.0f}% "
                   f"(rounds: {rounds('stream')})")
    if gw and "gateway routed" in results:
        rt = results["gateway routed"]
        out.append(f"- routed client (a route of two targets, a pool of two keys) / plain client at c=64: "
                   f"{rt['c64']['rps'] / gw['c64']['rps'] * 100:.0f}% of the requests/s, "
                   f"{rt['c64']['cpu_ms'] / gw['c64']['cpu_ms']:.2f}x the CPU per request")
    if gw and "litellm" in results:
        ll = results["litellm"]
        out.append(f"- gateway / LiteLLM at c=64: {gw['c64']['rps'] / ll['c64']['rps']:.1f}x the requests/s, "
                   f"{ll['c64']['cpu_ms'] / gw['c64']['cpu_ms']:.1f}x less CPU per request; streams/s "
                   f"{gw['stream']['rps'] / ll['stream']['rps']:.1f}x")
    elif "litellm_note" in results:
        out.append(f"- LiteLLM: {results['litellm_note']}")
    if "soak" in results:
        s = results["soak"]
        out.append(f"- soak ({s['seconds'] / 60:g} min, {s['requests']:,} requests, mixed plain/streamed, c=16): "
                   f"RSS {s['rss_after_warmup_mb']:.0f} MB after warm-up, {s['rss_end_mb']:.0f} MB at the end "
                   f"({s['growth_pct']:+.1f}%)")
    if "limiter" in results:
        lim = results["limiter"]
        out.append(f"- limiter, {lim['clients']:,} clients: admit+settle {lim['admit_settle_us']} µs per request "
                   f"({lim['relay_limits_us']} µs with headroom and effective limits, as the relay calls them)")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description="aigateway side-by-side benchmark")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmark itself)")
    parser.add_argument("--peer", choices=["litellm"], action="append", default=[], help="also measure a peer")
    parser.add_argument("--litellm", default=shutil.which("litellm"), help="the litellm executable")
    parser.add_argument("--soak-seconds", type=float, help="gateway soak length (default 600; --quick: 30)")
    parser.add_argument("--duration", type=float, help="seconds per wrk point (default 6; --quick: 3)")
    parser.add_argument("--rounds", type=int,
                        help="rounds over all targets; figures are their medians (default 3; --quick: 1)")
    parser.add_argument("--out", help="also write the markdown table and raw JSON next to it")
    cfg = parser.parse_args()
    cfg.duration = cfg.duration or (3 if cfg.quick else 6)
    cfg.rounds = cfg.rounds or (1 if cfg.quick else 3)
    cfg.soak_seconds = cfg.soak_seconds if cfg.soak_seconds is not None else (30 if cfg.quick else 600)
    cfg.timing_streams = 100 if cfg.quick else 400
    cfg.paced = 500
    cfg.ramp = 0.9  # 500 starts spread over 0.9 s: each stream lasts about 1 s, so all are open at once
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")

    results: dict = {"machine": machine(), "busy_before": busy_fraction()}
    if results["busy_before"] > 0.1:
        print(f"warning: the machine is {results['busy_before']:.0%} busy before the benchmark starts", flush=True)
    procs: list[Proc] = []
    folder = Path(tempfile.mkdtemp(prefix="aigateway-bench-"))
    started, machine0, ours0 = time.monotonic(), machine_busy_seconds(), our_seconds()
    try:
        fake = start("fake upstream", [sys.executable, "-m", "aigateway", "fake-upstream", "--port", "0",
                                       "--host", "127.0.0.1"], LOAD_CORE, cwd=str(ROOT))
        procs.append(fake)
        upstream = fake.url
        bare = start("bare relay", [sys.executable, str(HERE / "bare_relay.py"), upstream, "0"], SERVER_CORE)
        procs.append(bare)
        gateway, routed = start_gateway(folder, upstream)
        procs.append(gateway.proc)
        targets = [Target("direct", fake, "/v1/chat/completions"), Target("bare relay", bare, "/v1/chat/completions"),
                   gateway, routed]
        if "litellm" in cfg.peer:
            if cfg.litellm and Path(cfg.litellm).exists():
                litellm = start_litellm(folder, upstream, cfg.litellm)
                procs.append(litellm.proc)
                targets.append(litellm)
            else:
                results["litellm_note"] = "not installed (pip install 'litellm[proxy]'), skipped"
        results["limiter"] = measure_limiter(requests=50_000 if cfg.quick else 200_000)
        results.update(bench(targets, cfg, upstream))
        if cfg.soak_seconds > 0:
            print(f"[gateway] soak for {cfg.soak_seconds:g} s", flush=True)
            results["soak"] = soak(gateway, cfg.soak_seconds)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(folder, ignore_errors=True)
    # Other work on the machine during the run skews every figure: say how much there was.
    other = (machine_busy_seconds() - machine0) - (our_seconds() - ours0)
    results["other_load"] = max(0.0, other / (time.monotonic() - started))

    m = results["machine"]
    header = (f"{m['nproc']} cores, {m['cpu']}; Python {m['python']}, tornado {m['tornado']}, pycurl {m['pycurl']} "
              f"(libcurl {m['libcurl']}); {m['pinning']}; {cfg.duration:g} s per wrk point, "
              f"medians of {cfg.rounds} interleaved round{'s' if cfg.rounds > 1 else ''}"
              + (" (--quick)" if cfg.quick else "")
              + f"; other processes used {results['other_load']:.0%} of a core on average during the run")
    report = f"{header}\n\n{table(results, cfg)}\n\n{summary(results, cfg)}\n"
    print("\n" + report)
    if cfg.out:
        Path(cfg.out).write_text(report)
        Path(cfg.out).with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()

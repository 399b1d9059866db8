"""A small, bounded streaming client for the benchmark: raw asyncio sockets, one connection per
stream, timings taken as bytes arrive (no HTTP library between the socket and the clock).

For each stream it records when the request was sent, when the first content event arrived
(time to first token) and, when the upstream stamps its events (the fake upstream's
``#fake:stamp=1`` knob: an SSE comment ``: t=<monotonic seconds>`` before each event), how long each
event took from the upstream's write to this client's read. All processes share one machine, so
``time.monotonic()`` (CLOCK_MONOTONIC) is one clock for all of them.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

STAMP = re.compile(rb": t=(\d+\.\d+)\n")
CONTENT = re.compile(rb'"content":"[^"]')  # an OpenAI chunk carrying text (the role chunk has "")
END = b"0\r\n\r\n"  # the last chunk of a chunked response


@dataclass
class Stream:
    sent: float = 0.0
    reads: list[tuple[float, int]] = field(default_factory=list)  # (arrival, end offset in data)
    data: bytearray = field(default_factory=bytearray)
    done: float = 0.0
    error: str = ""

    def arrival(self, offset: int) -> float:
        """When the byte at ``offset`` had arrived."""
        for when, end in self.reads:
            if end > offset:
                return when
        return self.reads[-1][0] if self.reads else 0.0

    def ok(self) -> bool:
        return not self.error and self.data.startswith(b"HTTP/1.1 200") and self.data.endswith(END)

    def ttft(self) -> float | None:
        m = CONTENT.search(self.data)
        return self.arrival(m.start()) - self.sent if m else None

    def event_latencies(self) -> list[float]:
        """Per stamped event: its read time minus the upstream's stamp (seconds)."""
        return [self.arrival(m.end()) - float(m.group(1)) for m in STAMP.finditer(self.data)]


class _Protocol(asyncio.Protocol):
    def __init__(self, stream: Stream, request: bytes, closed: asyncio.Future) -> None:
        self.stream, self.request, self.closed = stream, request, closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream.sent = time.monotonic()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        s = self.stream
        s.data += data
        s.reads.append((time.monotonic(), len(s.data)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream.done = time.monotonic()
        if exc is not None:
            self.stream.error = str(exc)
        if not self.closed.done():
            self.closed.set_result(None)


def http_request(host: str, port: int, path: str, body: bytes, key: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body


async def one(host: str, port: int, request: bytes, timeout: float) -> Stream:
    stream = Stream()
    closed = asyncio.get_running_loop().create_future()
    try:
        transport, _ = await asyncio.wait_for(asyncio.get_running_loop().create_connection(
            lambda: _Protocol(stream, request, closed), host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        stream.error = f"connect: {exc!r}"
        return stream
    try:
        await asyncio.wait_for(closed, timeout)
    except asyncio.TimeoutError:
        stream.error = "timeout"
        transport.close()
    return stream


async def run_streams(host: str, port: int, request: bytes, count: int, *, concurrency: int | None = None,
                      ramp: float = 0.0, timeout: float = 60.0) -> tuple[list[Stream], int]:
    """``count`` streams; either at most ``concurrency`` at once (a closed loop), or all of them
    started evenly over ``ramp`` seconds. Returns the streams and the peak number open at once."""
    open_now = peak = 0

    async def tracked() -> Stream:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            return await one(host, port, request, timeout)
        finally:
            open_now -= 1

    if concurrency:
        sem = asyncio.Semaphore(concurrency)

        async def limited() -> Stream:
            async with sem:
                return await tracked()
        results = await asyncio.gather(*(limited() for _ in range(count)))
    else:
        tasks = []
        start = time.monotonic()
        for i in range(count):
            delay = start + ramp * i / count - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(tracked()))
        results = await asyncio.gather(*tasks)
    return list(results), peak

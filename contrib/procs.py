"""Start a server for a contrib script and wait for its ``listening on URL`` line; stop it after.
Shared by the benchmark (``bench/``) and the acceptance run (``acceptance/``)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field

LISTEN = re.compile(r"listening on (https?://\S+)")


def pinned(core: int | None):  # noqa: ANN201 -- a preexec_fn
    return (lambda: os.sched_setaffinity(0, {core})) if core is not None else None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    url: str
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start(name: str, args: list[str], core: int | None = None, *, url: str | None = None, env: dict | None = None,
          cwd: str | os.PathLike | None = None, timeout: float = 90) -> Proc:
    """Start a server (pinned to ``core`` if given) and wait for its 'listening on URL' line (or,
    given ``url``, for it to answer there). Its output is kept draining so it never blocks."""
    popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                             env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                             preexec_fn=pinned(core))
    proc = Proc(name, popen, url or "")
    found = threading.Event()

    def pump() -> None:
        for line in popen.stdout:
            if len(proc.lines) < 2000:
                proc.lines.append(line)
            m = LISTEN.search(line)
            if m and not proc.url:
                proc.url = m.group(1)
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    if url is None:
        found.wait(timeout)
    else:
        while time.monotonic() < deadline and popen.poll() is None:
            try:
                urllib.request.urlopen(url + "/health/liveliness", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
    if popen.poll() is not None or not proc.url or time.monotonic() > deadline:
        proc.stop()
        raise RuntimeError(f"{name} did not start:\n{''.join(proc.lines[-30:])}")
    return proc

"""Instructions per request, counted by valgrind's callgrind: a figure that, unlike CPU time on a
shared or virtual machine, moves by a few percent at most between runs of the same code, so a
change worth several percent can be measured before and after.

    python contrib/bench/instructions.py [gateway|bare] [--stream | --paced] [--requests N]

Starts the fake upstream and the server under callgrind with instrumentation off, sends a warm-up,
switches counting on for ``--requests`` sequential requests on one kept-alive connection (c=1, so
figures include per-request loop wake-ups that batching hides under load), and prints the count
per request, all threads included (the gateway's usage writer too). Needs ``valgrind``
(``apt-get install -y valgrind``); the server runs ~50x slower under it, so keep N in the hundreds.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402

WARM_UP = 30


def count(target: str, stream: bool, requests: int, paced: bool = False) -> float:
    """Instructions per request of ``target`` ("gateway" or "bare")."""
    folder = Path(tempfile.mkdtemp(prefix="aigateway-instructions-"))
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={folder}/cg.out"]
    procs: list[run.Proc] = []
    start = run.start
    try:
        fake = start("fake upstream", [sys.executable, "-m", "aigateway", "fake-upstream", "--port", "0",
                                       "--host", "127.0.0.1"], run.LOAD_CORE, cwd=str(run.ROOT))
        procs.append(fake)
        # the server under test starts through valgrind, unpinned, with time for its slow start-up
        run.start = lambda name, args, core, **kw: start(name, [*valgrind, *args], None, **{**kw, "timeout": 300})
        if target == "bare":
            server = run.Target("bare relay", run.start("bare relay", [sys.executable, str(HERE / "bare_relay.py"),
                                                                        fake.url, "0"], None),
                                "/v1/chat/completions")
        else:
            server = run.start_gateway(folder, fake.url)
        run.start = start
        procs.append(server.proc)
        host, port = server.host_port
        knobs = " #fake:chunks=20" + (" #fake:delay=0.02" if paced else "") if stream else ""
        body = run.chat_body(run.PROMPT + knobs, stream=stream)
        conn = http.client.HTTPConnection(host, port, timeout=120)

        def one() -> None:
            conn.request("POST", server.chat_path, body,
                         {"Content-Type": "application/json", "Authorization": f"Bearer {server.key}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")

        for _ in range(WARM_UP):
            one()
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(server.pid)], check=True, capture_output=True, timeout=60)
        for _ in range(requests):
            one()
        time.sleep(0.5)  # the usage writer's last batch
        subprocess.run([*control, "off", str(server.pid)], check=True, capture_output=True, timeout=60)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True, timeout=60)
        time.sleep(1)
        total = sum(int(line.split()[1]) for dump in folder.glob("cg.out*") for line in dump.open()
                    if line.startswith("totals:"))
        return total / requests
    finally:
        run.start = start
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="instructions per request under callgrind")
    parser.add_argument("target", nargs="?", choices=["gateway", "bare"], default="gateway")
    parser.add_argument("--stream", action="store_true", help="20-chunk streams instead of plain requests")
    parser.add_argument("--paced", action="store_true",
                        help="20-chunk streams with the chunks 20 ms apart (each relayed alone, as paced streams are)")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed: apt-get install -y valgrind")
    per = count(args.target, args.stream or args.paced, args.requests, args.paced)
    kind = "paced 20-chunk stream" if args.paced else "20-chunk stream" if args.stream else "plain request"
    print(f"{args.target}: {per / 1e6:.3f} M instructions per {kind} ({args.requests} requests, c=1)")


if __name__ == "__main__":
    main()

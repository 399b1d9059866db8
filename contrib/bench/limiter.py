"""Limiter micro-benchmark: the cost of ``Limiter.admit`` + ``settle`` per request, with 10,000
clients configured and every limit on, in µs (and the same with ``headroom`` and
``effective_limits``, as the relay calls them).

    python contrib/bench/limiter.py [--clients N] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aigateway.limits import LIMIT_FIELDS, Limiter, effective_limits  # noqa: E402

DEFAULTS = {"rpm": 10**9, "rph": 10**9, "rpd": 10**9, "daily_input_tokens": 10**12,
            "daily_output_tokens": 10**12, "daily_requests": 10**9, "max_input_tokens": 10**6,
            "max_output_tokens": 8192, "tpm": 10**12, "max_concurrent": 10**6,
            "daily_budget_usd": 10**15, "monthly_budget_usd": 10**15}  # budgets in micro-dollars
RATES = (2.5, 10.0)  # a priced model (gpt-4o), so the budgets do their work


def measure(clients: int = 10_000, requests: int = 200_000) -> dict:
    """µs per request for admit+settle, and for the relay's whole limits work."""
    limiter = Limiter()
    rows = [{"id": i, **dict.fromkeys(LIMIT_FIELDS)} for i in range(clients)]
    for row in rows[::2]:  # half the clients have their own values
        row["rpm"], row["daily_output_tokens"] = 10**8, 10**11
    now = time.time()
    for row in rows:  # every client has counters, as after a day of traffic
        limiter.restore(row["id"], now, 1, 10, 100, 1000, 1000)
    limits = [effective_limits(r, DEFAULTS) for r in rows]
    order = [random.randrange(clients) for _ in range(requests)]

    start = time.perf_counter()
    for i in order:
        now = time.time()
        res = limiter.admit(i, limits[i], 120, 256, now, rates=RATES)
        limiter.settle(res, 100, 50, now, 0.00075)
    core = (time.perf_counter() - start) / requests * 1e6

    start = time.perf_counter()
    for i in order:
        now = time.time()
        lim = effective_limits(rows[i], DEFAULTS)
        res = limiter.admit(i, lim, 120, 256, now, rates=RATES)
        limiter.headroom(i, lim, now)
        limiter.settle(res, 100, 50, time.time(), 0.00075)
    relay = (time.perf_counter() - start) / requests * 1e6
    return {"clients": clients, "requests": requests, "admit_settle_us": round(core, 2),
            "relay_limits_us": round(relay, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.clients, args.requests)))


if __name__ == "__main__":
    main()

"""Requests refused before authentication (no key, an unknown key, a disabled client), in aggregate.

A flood of bad keys must cost neither disk nor log: such a request gets no request-log row and no
log line of its own. It is counted; the first ``SAMPLE_PER_MINUTE`` of each minute still become
request-log rows (so the admin sees what is being tried and from which inbound API), and one
summary line per ``SUMMARY_SECONDS`` (and one at shutdown) says how many there were.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("aigateway.relay")

SAMPLE_PER_MINUTE = 10  # refused requests per minute that still get a request-log row
SUMMARY_SECONDS = 60  # how often a summary line is logged while there were refusals


class Refusals:
    """Counts refused-before-authentication requests; decides which are sampled into the log."""

    def __init__(self) -> None:
        self.total = 0  # since the process started
        self._minute = -1
        self._sampled = 0  # rows sampled in the current minute
        self._pending: Counter[int] = Counter()  # by status, since the last summary line

    def count(self, status: int, now: float) -> bool:
        """Count one refusal; True when it is one of this minute's samples (to be recorded)."""
        self.total += 1
        self._pending[status] += 1
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._sampled = minute, 0
        if self._sampled >= SAMPLE_PER_MINUTE:
            return False
        self._sampled += 1
        return True

    def summarize(self) -> None:
        """Log how many refusals happened since the last summary (nothing when there were none)."""
        if not self._pending:
            return
        by_status = ", ".join(f"{n} x {status}" for status, n in sorted(self._pending.items()))
        log.info("refused %d requests before authentication (%s); at most %d a minute are kept in the "
                 "request log", sum(self._pending.values()), by_status, SAMPLE_PER_MINUTE)
        self._pending.clear()

"""SQLite access: one writer thread owning the only write connection, fed by a queue, and a
small reader pool (datasette's database.py). The request path only ever calls ``put()``."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aigateway.migrations import migrate

log = logging.getLogger("aigateway.db")
T = TypeVar("T")
_STOP = object()
BATCH_MAX = 2000
# A batch waits for company before it is written, so the writer thread wakes a few times a second,
# not once per request: each wake takes the GIL (and, with one core, the CPU) from the event loop.
# Under load (records already queued behind the one that woke it) it waits longer and commits
# hundreds of records per transaction; a lone record waits briefly (at concurrency 1 that cut the
# writer's CPU per request from 0.13 to 0.03 ms and the added latency by about 0.2 ms). An awaited
# write() and close() cut the wait short.
LINGER_SECONDS = 0.2
LONE_LINGER_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class WriterHealth:
    """How the writer thread is doing, for the readiness probe (health.py)."""

    alive: bool  # the thread runs (it stops only when the database is closed)
    queued: int  # items waiting in the queue, not counting the batch being written
    oldest_seconds: float  # at most how long the oldest item not yet committed has waited (0: none)
    error: str | None  # why the last batch of records failed, until a batch succeeds again
    error_seconds: float  # how long ago that failure was (0 when there is none)


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """Open the database file (created 0600, migrated) with our pragmas; for the CLI and threads."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            os.chmod(side, 0o600)
    return conn


class Database:
    """Owns the writer thread and reader pool. ``put(batch_item)`` queues a record whose
    ``write(conn, items)`` classmethod stores a whole batch in one transaction."""

    def __init__(self, path: str | os.PathLike, readers: int = 2) -> None:
        self.path = Path(path)
        self._writer_conn = connect(self.path)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # put() is C: no lock or Condition in Python
        self._urgent = threading.Event()  # set by write() and close(): someone awaits the writer
        # For writer_health(), written by the writer thread only: while it holds work (``_busy``),
        # nothing it has not committed was queued before ``_since``.
        self._busy = False
        self._since = time.monotonic()
        self._error: tuple[str, float] | None = None  # (why, when) the last batch of records failed
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="db-read")
        self._local = threading.local()
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()
        self._closed = False

    # -- writes
    def put(self, item: Any) -> None:
        """Queue a record for the next batch; never blocks."""
        self._queue.put_nowait(item)

    async def write(self, fn: Callable[[sqlite3.Connection], T], transaction: bool = True) -> T:
        """Run ``fn(conn)`` on the writer thread (in its own transaction) and await its result."""
        fut: Future = Future()
        self._queue.put_nowait((fn, fut, transaction))
        self._urgent.set()
        return await asyncio.wrap_future(fut)

    def _run(self) -> None:
        conn = self._writer_conn
        while True:
            idle = self._queue.empty()
            item = self._queue.get()
            if idle:  # it has just arrived: nothing older waits
                self._since = time.monotonic()
            self._busy = True
            if not isinstance(item, tuple) and item is not _STOP:
                self._urgent.wait(LINGER_SECONDS if not self._queue.empty() else LONE_LINGER_SECONDS)
            self._urgent.clear()
            batch = [item]
            drained = False
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    drained = True
                    break
            drained_at = time.monotonic()
            stop = any(i is _STOP for i in batch)
            self._write_batch(conn, [i for i in batch if i is not _STOP])
            if drained:  # what waits now was queued after the drain; with a backlog, _since stays
                self._since = drained_at
                self._busy = False
            if stop:
                conn.close()
                return

    def _write_batch(self, conn: sqlite3.Connection, batch: list) -> None:
        records: dict[type, list] = {}
        for item in batch:
            if isinstance(item, tuple):
                fn, fut, transaction = item
                try:
                    if transaction:
                        conn.execute("BEGIN IMMEDIATE")
                    result = fn(conn)
                    if transaction:
                        conn.execute("COMMIT")
                    fut.set_result(result)
                except BaseException as exc:  # the caller gets the error, the writer keeps going
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    fut.set_exception(exc)
            else:
                records.setdefault(type(item), []).append(item)
        # A record class may write before the others of its batch (flights.FlightMark: the usage
        # record that ends a flight deletes its mark, so the mark must not come after it).
        for kind, items in sorted(records.items(), key=lambda kv: getattr(kv[0], "BATCH_ORDER", 0)):
            try:
                conn.execute("BEGIN IMMEDIATE")
                kind.write(conn, items)  # type: ignore[attr-defined]  # a record class (put's contract)
                conn.execute("COMMIT")
                self._error = None
            except sqlite3.Error as exc:
                log.exception("could not store %d %s records", len(items), kind.__name__)
                self._error = (f"could not store {len(items)} records: {exc}", time.monotonic())
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def writer_health(self) -> WriterHealth:
        """The writer's state without touching the database: cheap enough for every probe. Read
        from another thread without a lock: each field is one attribute, at worst a moment old."""
        busy, error, now = self._busy, self._error, time.monotonic()
        return WriterHealth(alive=self._thread.is_alive(), queued=self._queue.qsize(),
                            oldest_seconds=now - self._since if busy else 0.0,
                            error=error[0] if error else None, error_seconds=now - error[1] if error else 0.0)

    # -- reads
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on a reader thread and await its result."""
        return await asyncio.wrap_future(self._readers.submit(lambda: fn(self._reader())))

    async def data_version(self) -> int:
        """PRAGMA data_version on the writer connection: it changes only when another connection
        (the CLI) commits, so our own usage writes do not trigger reloads."""
        return await self.write(lambda conn: conn.execute("PRAGMA data_version").fetchone()[0], False)

    def close(self) -> None:
        """Drain every queued write, then stop the threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._urgent.set()
        self._thread.join()
        self._readers.shutdown(wait=True)


def by_id_or_name(conn: sqlite3.Connection, table: str, ref: str | int) -> sqlite3.Row | None:
    """A row of ``table`` (clients, teams) by its id, else by its name, as the CLI names them."""
    row = None
    if isinstance(ref, int) or str(ref).isdigit():
        row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (int(ref),)).fetchone()
    if row is None:
        row = conn.execute(f"SELECT * FROM {table} WHERE name = ?", (str(ref),)).fetchone()
    return row

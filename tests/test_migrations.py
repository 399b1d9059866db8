"""Migrations on real sqlite files: an older database is upgraded in place, keeping its rows."""

from __future__ import annotations

import sqlite3

from aigateway import clients, migrations
from aigateway.db import connect


def old_database(path, upto: str) -> sqlite3.Connection:
    """A database as a version that knew the migrations up to ``upto`` left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for fn in migrations.MIGRATIONS:
        fn(conn)
        conn.execute("INSERT INTO migrations VALUES (?, 0)", (fn.__name__,))
        if fn.__name__ == upto:
            break
    return conn


def test_client_ids_are_never_reused_after_the_upgrade(tmp_path) -> None:
    path = tmp_path / "old.db"
    conn = old_database(path, "m003_routing")
    for name in ("a", "b", "c"):
        clients.create(conn, name, "p")
    conn.execute("INSERT INTO request_log (ts, client_id, status) VALUES (1, 3, 200)")
    conn.execute("INSERT INTO daily_usage (day, client_id, model) VALUES ('2026-01-01', 7, 'm')")  # deleted long ago
    clients.delete(conn, 3)
    conn.close()

    upgraded = connect(path)  # runs the remaining migrations
    assert [(r["id"], r["name"]) for r in clients.all_clients(upgraded)] == [(1, "a"), (2, "b")]
    row, _ = clients.create(upgraded, "d", "p")
    assert row["id"] == 8  # above every id the usage tables have seen
    clients.delete(upgraded, row["id"])
    assert clients.create(upgraded, "e", "p")[0]["id"] == 9  # and never the deleted newest again
    assert clients.find(upgraded, "a")["key_hash"]  # every column survived the rebuild
    upgraded.close()

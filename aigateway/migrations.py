"""Schema migrations: an ordered list of named functions, each applied once and recorded
(simonw/llm's migrations.py). Append new ones; never edit an applied one."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE clients (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            provider TEXT NOT NULL,
            base_url TEXT NOT NULL DEFAULT '',
            system_prompt TEXT NOT NULL DEFAULT '',
            default_model TEXT NOT NULL DEFAULT '',
            enabled INTEGER NOT NULL DEFAULT 1,
            key_hash TEXT NOT NULL UNIQUE,
            key_prefix TEXT NOT NULL,
            key_type TEXT NOT NULL DEFAULT 'sk-',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            last_used_at REAL,
            usage_reset_at REAL NOT NULL DEFAULT 0,
            rpm INTEGER, rph INTEGER, rpd INTEGER,
            daily_input_tokens INTEGER, daily_output_tokens INTEGER, daily_requests INTEGER,
            max_input_tokens INTEGER, max_output_tokens INTEGER
        );
        CREATE TABLE request_log (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            client_id INTEGER,
            client_name TEXT NOT NULL DEFAULT '',
            provider TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            inbound TEXT NOT NULL DEFAULT '',
            status INTEGER NOT NULL,
            latency_ms REAL NOT NULL DEFAULT 0,
            ttft_ms REAL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            stream INTEGER NOT NULL DEFAULT 0,
            admitted INTEGER NOT NULL DEFAULT 0,
            estimated INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX request_log_ts ON request_log (ts);
        CREATE INDEX request_log_client_ts ON request_log (client_id, ts);
        CREATE TABLE daily_usage (
            day TEXT NOT NULL,
            client_id INTEGER NOT NULL,
            model TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, client_id, model)
        );
        """
    )


@migration
def m002_request_log_filters(db: sqlite3.Connection) -> None:
    # The admin request log pages newest-first by id with optional client or model filters.
    # (client_id, ts) orders a client's rows by time, so "newest 100 of one client" sorted the
    # client's whole history; these two give the id order directly (each entry ends in the rowid).
    db.executescript(
        """
        CREATE INDEX request_log_client_id ON request_log (client_id);
        CREATE INDEX request_log_model_id ON request_log (model);
        """
    )


@migration
def m003_routing(db: sqlite3.Connection) -> None:
    # Clients may reach providers and routes besides their default provider (JSON lists of names);
    # the request log says how many attempts (fallbacks, retries) a request took.
    db.executescript(
        """
        ALTER TABLE clients ADD COLUMN allowed_providers TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE clients ADD COLUMN allowed_routes TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE request_log ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
        """
    )


@migration
def m004_client_ids_never_reused(db: sqlite3.Connection) -> None:
    # INTEGER PRIMARY KEY reuses the highest id after a delete, and usage is kept by client id: a
    # new client could inherit a deleted one's counters. AUTOINCREMENT never reuses an id; sqlite
    # adds it only by rebuilding the table (https://www.sqlite.org/lang_altertable.html). The
    # sequence starts above every id the request log and daily totals have ever seen.
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'clients'").fetchone()[0]
    new_sql = sql.replace("CREATE TABLE clients", "CREATE TABLE clients_new", 1).replace(
        "id INTEGER PRIMARY KEY", "id INTEGER PRIMARY KEY AUTOINCREMENT", 1)
    db.execute(new_sql)
    db.execute("INSERT INTO clients_new SELECT * FROM clients")
    db.execute("DROP TABLE clients")
    db.execute("ALTER TABLE clients_new RENAME TO clients")
    highest = db.execute("SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM clients UNION ALL"
                         " SELECT MAX(client_id) FROM request_log UNION ALL SELECT MAX(client_id) FROM daily_usage)"
                         ).fetchone()[0]
    if highest:  # the copy above left a row for the table (renamed with it), or none when it was empty
        db.execute("DELETE FROM sqlite_sequence WHERE name = 'clients'")
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('clients', ?)", (highest,))


@migration
def m005_revoked_sessions(db: sqlite3.Connection) -> None:
    # Admin sessions ended by logging out, until they would have expired (admin/sessions.py).
    db.execute("CREATE TABLE revoked_sessions (session_id TEXT PRIMARY KEY, expires_at REAL NOT NULL)")


@migration
def m006_in_flight(db: sqlite3.Connection) -> None:
    # Admitted requests in flight for over a second, counted at restart if a crash left them (flights.py).
    db.execute("""CREATE TABLE in_flight (
        id INTEGER PRIMARY KEY, client_id INTEGER NOT NULL, client_name TEXT NOT NULL, inbound TEXT NOT NULL,
        provider TEXT NOT NULL, model TEXT NOT NULL, stream INTEGER NOT NULL, started_at REAL NOT NULL,
        input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, streamed INTEGER, marked_at REAL NOT NULL)""")


@migration
def m007_request_endpoint(db: sqlite3.Connection) -> None:
    # What each logged request asked for: chat or embeddings.
    db.execute("ALTER TABLE request_log ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat'")


@migration
def m008_cost(db: sqlite3.Connection) -> None:
    # What each request cost in USD (pricing.py), and whether its model had a price; daily sums.
    db.executescript("""
        ALTER TABLE request_log ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
        ALTER TABLE request_log ADD COLUMN priced INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE daily_usage ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
    """)



_LIMIT_COLUMNS = "tpm INTEGER, max_concurrent INTEGER, daily_budget_usd REAL, monthly_budget_usd REAL"


@migration
def m009_governance(db: sqlite3.Connection) -> None:
    # Budgets, tokens per minute and concurrency per client; key expiry, allowed models and
    # networks, the previous key of a rotation with its grace deadline; teams with limits of their own.
    db.executescript(f"""
        {"".join(f"ALTER TABLE clients ADD COLUMN {c};" for c in _LIMIT_COLUMNS.split(", "))}
        ALTER TABLE clients ADD COLUMN expires_at REAL;
        ALTER TABLE clients ADD COLUMN allowed_models TEXT;
        ALTER TABLE clients ADD COLUMN allowed_networks TEXT;
        ALTER TABLE clients ADD COLUMN previous_key_hash TEXT;
        ALTER TABLE clients ADD COLUMN previous_key_until REAL;
        ALTER TABLE clients ADD COLUMN team_id INTEGER REFERENCES teams(id) ON DELETE SET NULL;
        CREATE TABLE teams (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            rpm INTEGER, rph INTEGER, rpd INTEGER,
            daily_input_tokens INTEGER, daily_output_tokens INTEGER, daily_requests INTEGER,
            max_input_tokens INTEGER, max_output_tokens INTEGER, {_LIMIT_COLUMNS}
        );
        CREATE INDEX clients_previous_key ON clients(previous_key_hash);
    """)

def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet recorded; return the names applied."""
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM migrations")}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with db:
            fn(db)
            db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (fn.__name__, time.time()))
        applied.append(fn.__name__)
    return applied

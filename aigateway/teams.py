"""Teams in sqlite: a named group of clients with limits of their own (rate limits, quotas,
tokens per minute, concurrency, budgets) that hold across all its clients at once. A team sets
only what it limits: a limit it leaves empty does not apply (no defaults, unlike a client's).
Used by the CLI (its own connection) and the server (through the writer thread)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from aigateway.admission import Team
from aigateway.db import by_id_or_name
from aigateway.limits import LIMIT_FIELDS, USD_FIELDS, own_limits

EDITABLE = ("name", *LIMIT_FIELDS)


class TeamError(ValueError):
    """A bad team operation (unknown team, duplicate name, bad value)."""


def problems(fields: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    if "name" in fields and not str(fields["name"] or "").strip():
        out["name"] = "must not be empty"
    for name in LIMIT_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        number = (int, float) if name in USD_FIELDS else int
        if isinstance(value, bool) or not isinstance(value, number) or value < 0:
            out[name] = ("an amount in USD" if name in USD_FIELDS else "a whole number") + " >= 0, or empty for none"
    return out


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in fields.items() if k in EDITABLE}
    for name, message in problems(values).items():
        raise TeamError(f"{name}: {message}")
    return values


def find(conn: sqlite3.Connection, ref: str | int) -> sqlite3.Row:
    row = by_id_or_name(conn, "teams", ref)
    if row is None:
        raise TeamError(f"no team named or numbered {ref!r}")
    return row


def all_teams(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM teams ORDER BY id").fetchall()


def public(row: sqlite3.Row, members: int = 0) -> dict[str, Any]:
    return {**{k: row[k] for k in ("id", "name", "created_at", "updated_at", *LIMIT_FIELDS)}, "members": members}


def member_counts(conn: sqlite3.Connection) -> dict[int, int]:
    return dict(conn.execute("SELECT team_id, COUNT(*) FROM clients WHERE team_id IS NOT NULL GROUP BY team_id"))


def create(conn: sqlite3.Connection, name: str, **fields: Any) -> sqlite3.Row:
    values = _checked({"name": name, **fields})
    now = time.time()
    values.update(created_at=now, updated_at=now)
    try:
        cur = conn.execute(f"INSERT INTO teams ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                           tuple(values.values()))
    except sqlite3.IntegrityError:
        raise TeamError(f"name: a team named {name!r} already exists") from None
    return find(conn, cur.lastrowid or 0)


def update(conn: sqlite3.Connection, ref: str | int, **fields: Any) -> sqlite3.Row:
    """Change a team's name or limits; a limit given as None is cleared (no longer applies)."""
    row = find(conn, ref)
    values = _checked(fields)
    if values:
        try:
            conn.execute(f"UPDATE teams SET {', '.join(f'{k} = ?' for k in values)}, updated_at = ? WHERE id = ?",
                         (*values.values(), time.time(), row["id"]))
        except sqlite3.IntegrityError:
            raise TeamError(f"name: a team named {values.get('name')!r} already exists") from None
    return find(conn, row["id"])


def delete(conn: sqlite3.Connection, ref: str | int) -> sqlite3.Row:
    """Remove a team; its clients stay, in no team."""
    row = find(conn, ref)
    conn.execute("UPDATE clients SET team_id = NULL WHERE team_id = ?", (row["id"],))
    conn.execute("DELETE FROM teams WHERE id = ?", (row["id"],))
    return row


def as_teams(rows: list[sqlite3.Row]) -> dict[int, Team]:
    """Rows as the limiter's teams, by id."""
    return {r["id"]: Team(r["id"], r["name"], own_limits(dict(r))) for r in rows}

"""Client records in sqlite: the one place their SQL lives, used by the CLI (its own
connection) and by the server (through the writer thread)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from aigateway.keys import KEY_TYPES, display_prefix, generate_key, hash_key
from aigateway.limits import LIMIT_FIELDS

EDITABLE = ("name", "provider", "base_url", "system_prompt", "default_model", "enabled", *LIMIT_FIELDS)
PUBLIC = ("id", "name", "provider", "base_url", "system_prompt", "default_model", "enabled", "key_prefix",
          "key_type", "created_at", "updated_at", "last_used_at", "usage_reset_at", *LIMIT_FIELDS)


DEFAULT = "default"  # as a limit's value: clear the client's own value, use the config's default


class ClientError(ValueError):
    """A bad client operation (unknown client, duplicate name, bad value): a 400/404 message."""


def public(row: sqlite3.Row | dict) -> dict[str, Any]:
    """A client as shown to people and scripts: never the key hash."""
    out = {k: row[k] for k in PUBLIC}
    out["enabled"] = bool(out["enabled"])
    return out


def find(conn: sqlite3.Connection, ref: str | int) -> sqlite3.Row:
    """A client by id or by name."""
    row = None
    if isinstance(ref, int) or str(ref).isdigit():
        row = conn.execute("SELECT * FROM clients WHERE id = ?", (int(ref),)).fetchone()
    if row is None:
        row = conn.execute("SELECT * FROM clients WHERE name = ?", (str(ref),)).fetchone()
    if row is None:
        raise ClientError(f"no client named or numbered {ref!r}")
    return row


def all_clients(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM clients ORDER BY id").fetchall()


def problems(fields: dict[str, Any], providers: list[str] | None) -> dict[str, str]:
    """Every bad value in ``fields``, as ``{field: message}`` (empty when all are fine)."""
    out: dict[str, str] = {}
    if "name" in fields and not str(fields["name"] or "").strip():
        out["name"] = "must not be empty"
    if providers is not None and "provider" in fields and fields["provider"] not in providers:
        out["provider"] = f"unknown provider {fields['provider']!r} (known: {', '.join(providers)})"
    for name in LIMIT_FIELDS:
        value = fields.get(name)
        bad = not isinstance(value, int) or isinstance(value, bool) or value < 0
        if value is not None and value != DEFAULT and bad:
            out[name] = "must be a whole number >= 0 (0: unlimited)"
    base_url = fields.get("base_url")
    if base_url and not str(base_url).startswith(("http://", "https://")):
        out["base_url"] = "must start with http:// or https://"
    return out


def _check(fields: dict[str, Any], providers: list[str] | None) -> None:
    for name, message in problems(fields, providers).items():
        raise ClientError(f"{name}: {message}")


def create(conn: sqlite3.Connection, name: str, provider: str, key_type: str = "sk-",
           providers: list[str] | None = None, **fields: Any) -> tuple[sqlite3.Row, str]:
    """Add a client; returns it and its plaintext key, which is never stored."""
    if key_type not in KEY_TYPES:
        raise ClientError(f"key_type: must be one of {', '.join(KEY_TYPES)}")
    values = {"name": name, "provider": provider, **{k: v for k, v in fields.items() if v is not None}}
    _check(values, providers)
    key = generate_key(key_type)
    now = time.time()
    values.update(key_hash=hash_key(key), key_prefix=display_prefix(key), key_type=key_type,
                  created_at=now, updated_at=now)
    columns = ", ".join(values)
    try:
        cur = conn.execute(f"INSERT INTO clients ({columns}) VALUES ({', '.join('?' * len(values))})",
                           tuple(values.values()))
    except sqlite3.IntegrityError:
        raise ClientError(f"name: a client named {name!r} already exists") from None
    return find(conn, cur.lastrowid or 0), key


def update(conn: sqlite3.Connection, ref: str | int, providers: list[str] | None = None,
           **fields: Any) -> sqlite3.Row:
    row = find(conn, ref)
    values = {k: v for k, v in fields.items() if k in EDITABLE and v is not None}
    _check(values, providers)
    if values:
        sets = ", ".join(f"{k} = ?" for k in values)
        try:
            conn.execute(f"UPDATE clients SET {sets}, updated_at = ? WHERE id = ?",
                         (*(None if v == DEFAULT else v for v in values.values()), time.time(), row["id"]))
        except sqlite3.IntegrityError:
            raise ClientError(f"name: a client named {values.get('name')!r} already exists") from None
    return find(conn, row["id"])


def rotate_key(conn: sqlite3.Connection, ref: str | int, key_type: str | None = None) -> tuple[sqlite3.Row, str]:
    """Give a client a new key; the old one stops working at once."""
    row = find(conn, ref)
    key_type = key_type or row["key_type"]
    if key_type not in KEY_TYPES:
        raise ClientError(f"key_type: must be one of {', '.join(KEY_TYPES)}")
    key = generate_key(key_type)
    conn.execute("UPDATE clients SET key_hash = ?, key_prefix = ?, key_type = ?, updated_at = ? WHERE id = ?",
                 (hash_key(key), display_prefix(key), key_type, time.time(), row["id"]))
    return find(conn, row["id"]), key


def delete(conn: sqlite3.Connection, ref: str | int) -> sqlite3.Row:
    row = find(conn, ref)
    conn.execute("DELETE FROM clients WHERE id = ?", (row["id"],))
    return row


def reset_usage(conn: sqlite3.Connection, ref: str | int) -> sqlite3.Row:
    """Start the client's limits afresh from now; the request log keeps its history."""
    row = find(conn, ref)
    conn.execute("UPDATE clients SET usage_reset_at = ?, updated_at = ? WHERE id = ?",
                 (time.time(), time.time(), row["id"]))
    return find(conn, row["id"])

"""Client records in sqlite: the one place their SQL lives, used by the CLI (its own
connection) and by the server (through the writer thread)."""

from __future__ import annotations

import ipaddress
import sqlite3
import time
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

import orjson

from aigateway.db import by_id_or_name
from aigateway.keys import KEY_TYPES, display_prefix, generate_key, hash_key
from aigateway.limits import LIMIT_FIELDS, USD_FIELDS

# Stored as JSON lists: provider and route names, model names and wildcards (``gpt-4o*``), and the
# networks (CIDR) requests may come from.
LISTS = ("allowed_providers", "allowed_routes", "allowed_models", "allowed_networks")
EDITABLE = ("name", "provider", "base_url", "system_prompt", "default_model", "enabled", "expires_at", "team_id",
            *LISTS, *LIMIT_FIELDS)
PUBLIC = ("id", "name", "provider", "base_url", "system_prompt", "default_model", "enabled", "key_prefix",
          "key_type", "created_at", "updated_at", "last_used_at", "usage_reset_at", "expires_at", "team_id",
          "previous_key_until", *LISTS, *LIMIT_FIELDS)


DEFAULT = "default"  # as a limit's value: clear the client's own value, use the config's default


class ClientError(ValueError):
    """A bad client operation (unknown client, duplicate name, bad value): a 400/404 message."""


class Known(NamedTuple):
    """What a client's fields may name: the configured providers and routes."""

    providers: Collection[str]
    routes: Collection[str]


def loaded(row: sqlite3.Row | Mapping[str, Any]) -> dict[str, Any]:
    """A client row as the server and the admin API use it: its name lists decoded (a tuple each)."""
    out = dict(row)
    for name in LISTS:
        out[name] = tuple(orjson.loads(out[name] or "[]"))
    return out


def public(row: sqlite3.Row | Mapping[str, Any]) -> dict[str, Any]:
    """A client as shown to people and scripts: never the key hash."""
    client = loaded(row)
    out = {k: client[k] for k in PUBLIC}
    out["enabled"] = bool(out["enabled"])
    for name in LISTS:
        out[name] = list(out[name])
    return out


def find(conn: sqlite3.Connection, ref: str | int) -> sqlite3.Row:
    """A client by id or by name."""
    row = by_id_or_name(conn, "clients", ref)
    if row is None:
        raise ClientError(f"no client named or numbered {ref!r}")
    return row


def all_clients(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM clients ORDER BY id").fetchall()


def problems(fields: dict[str, Any], known: Known | None) -> dict[str, str]:
    """Every bad value in ``fields``, as ``{field: message}`` (empty when all are fine)."""
    out: dict[str, str] = {}
    if "name" in fields and not str(fields["name"] or "").strip():
        out["name"] = "must not be empty"
    if known is not None and "provider" in fields and fields["provider"] not in known.providers:
        out["provider"] = f"unknown provider {fields['provider']!r} (known: {', '.join(known.providers)})"
    for name, choices, what in (("allowed_providers", known and known.providers, "provider"),
                                ("allowed_routes", known and known.routes, "route")):
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            out[name] = f"must be a list of {what} names"
        elif choices is not None and (unknown := [v for v in value if v not in choices]):
            out[name] = f"unknown {what} {unknown[0]!r} (known: {', '.join(choices) or 'none'})"
    for name in ("allowed_models", "allowed_networks"):
        value = fields.get(name)
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
            out[name] = "must be a list of " + ("model names or wildcards" if name == "allowed_models" else "networks")
    networks = () if "allowed_networks" in out else fields.get("allowed_networks") or ()
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            out["allowed_networks"] = f"{network!r} is not an address or a CIDR network (10.0.0.0/8, 2001:db8::/32)"
    for name in LIMIT_FIELDS:
        value = fields.get(name)
        if value is None or value == DEFAULT:
            continue
        if name in USD_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                out[name] = "must be an amount in USD >= 0 (0: unlimited)"
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            out[name] = "must be a whole number >= 0 (0: unlimited)"
    expires = fields.get("expires_at")
    if expires not in (None, DEFAULT) and (isinstance(expires, bool) or not isinstance(expires, (int, float))):
        out["expires_at"] = "must be a time (seconds since the epoch), or empty for never"
    team = fields.get("team_id")
    if team is not None and team != DEFAULT and (isinstance(team, bool) or not isinstance(team, int)):
        out["team_id"] = "must be a team's id, or empty for none"
    base_url = fields.get("base_url")
    if base_url and not str(base_url).startswith(("http://", "https://")):
        out["base_url"] = "must start with http:// or https://"
    return out


def _check(fields: dict[str, Any], known: Known | None, conn: sqlite3.Connection) -> None:
    for name, message in problems(fields, known).items():
        raise ClientError(f"{name}: {message}")
    team = fields.get("team_id")
    if isinstance(team, int) and conn.execute("SELECT 1 FROM teams WHERE id = ?", (team,)).fetchone() is None:
        raise ClientError(f"team_id: no team numbered {team}")


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """Values as the table stores them: name lists as JSON (without repeats), DEFAULT as NULL."""
    return {k: orjson.dumps(list(dict.fromkeys(v))).decode() if k in LISTS else None if v == DEFAULT else v
            for k, v in values.items()}


def create(conn: sqlite3.Connection, name: str, provider: str, key_type: str = "sk-",
           known: Known | None = None, **fields: Any) -> tuple[sqlite3.Row, str]:
    """Add a client; returns it and its plaintext key, which is never stored."""
    if key_type not in KEY_TYPES:
        raise ClientError(f"key_type: must be one of {', '.join(KEY_TYPES)}")
    values = {"name": name, "provider": provider, **{k: v for k, v in fields.items() if v is not None}}
    _check(values, known, conn)
    values = _stored(values)
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


def update(conn: sqlite3.Connection, ref: str | int, known: Known | None = None, **fields: Any) -> sqlite3.Row:
    row = find(conn, ref)
    values = {k: v for k, v in fields.items() if k in EDITABLE and v is not None}
    _check(values, known, conn)
    if values:
        sets = ", ".join(f"{k} = ?" for k in values)
        try:
            conn.execute(f"UPDATE clients SET {sets}, updated_at = ? WHERE id = ?",
                         (*_stored(values).values(), time.time(), row["id"]))
        except sqlite3.IntegrityError:
            raise ClientError(f"name: a client named {values.get('name')!r} already exists") from None
    return find(conn, row["id"])


def rotate_key(conn: sqlite3.Connection, ref: str | int, key_type: str | None = None,
               grace_seconds: float = 0) -> tuple[sqlite3.Row, str]:
    """Give a client a new key. The old one stops working at once, or after ``grace_seconds``, so
    a deployment can roll over to the new key without a failed request."""
    row = find(conn, ref)
    key_type = key_type or row["key_type"]
    if key_type not in KEY_TYPES:
        raise ClientError(f"key_type: must be one of {', '.join(KEY_TYPES)}")
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, (int, float)) or grace_seconds < 0:
        raise ClientError("grace_seconds: must be a number of seconds >= 0")
    key, now = generate_key(key_type), time.time()
    previous = (row["key_hash"], now + grace_seconds) if grace_seconds else (None, None)
    conn.execute("UPDATE clients SET key_hash = ?, key_prefix = ?, key_type = ?, previous_key_hash = ?,"
                 " previous_key_until = ?, updated_at = ? WHERE id = ?",
                 (hash_key(key), display_prefix(key), key_type, *previous, now, row["id"]))
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

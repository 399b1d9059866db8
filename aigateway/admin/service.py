"""What the admin UI and API do, as plain functions on the Gateway: log in (throttled), change
the password, edit clients, providers and settings, read usage. Handlers parse a request, call one
of these and write the result; every failure is an AdminError naming the fields at fault.

Config edits copy the live config's data, change the copy, validate it with config.py's own
validation, write config.yaml (0600) and swap the new immutable Config in (Gateway.apply_config),
all between two awaits, so concurrent edits cannot interleave and in-flight requests keep the
provider objects they started with.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import logging
import re
import sqlite3
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import bcrypt

from aigateway import __version__, clients, config, listing, teams, usage
from aigateway.admin import login
from aigateway.admin.errors import AdminError, bad_fields
from aigateway.config import PROVIDER_FIELDS, SETTINGS, ConfigInvalid, api_problem, prices_problem
from aigateway.keys import KEY_TYPES
from aigateway.limits import LIMIT_FIELDS, LIMITS, USD_FIELDS, shown
from aigateway.neutral import GatewayError
from aigateway.providers import PROVIDER_TYPES

if TYPE_CHECKING:
    from aigateway.app import Gateway

PASSWORD_MIN = 8
PASSWORD_MAX_BYTES = 72  # bcrypt's limit: longer passwords are refused rather than silently cut
PROVIDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PROVIDER_TEST_TIMEOUT = 15.0
EDITABLE_SETTINGS = (*(s.config for s in LIMITS), "defaults.timezone", "logging.level")
LOG_PAGE_MAX = 500
log = logging.getLogger("aigateway.admin")


async def change_password(gw: Gateway, body: dict, ip: str) -> None:
    """Verify the current password, store the new one's bcrypt hash in config.yaml. Sessions carry
    a fingerprint of the hash, so every existing session ends."""
    current, new = body.get("current_password"), body.get("new_password")
    errors = {}
    if not isinstance(current, str) or not current:
        errors["current_password"] = "required"
    if not isinstance(new, str) or len(new) < PASSWORD_MIN:
        errors["new_password"] = f"must be at least {PASSWORD_MIN} characters"
    elif len(new.encode()) > PASSWORD_MAX_BYTES:
        errors["new_password"] = f"must be at most {PASSWORD_MAX_BYTES} bytes (bcrypt's limit)"
    if errors or not isinstance(current, str) or not isinstance(new, str):
        raise bad_fields(errors)
    login.check_sizes("", current, "current_password")
    username = str(gw.config.get("admin.username"))
    if not await login.throttled_check(gw, username, current, ip, "Too many wrong passwords."):
        raise bad_fields({"current_password": "this is not the current password"})
    hashed = await asyncio.to_thread(lambda: bcrypt.hashpw(new.encode(), bcrypt.gensalt()).decode())
    data = copy.deepcopy(gw.config.data)  # read after the awaits: the latest config
    data["admin"]["password_hash"] = hashed
    await save_config(gw, data)
    log.info("admin password changed from %s; every other session has ended", ip)


async def save_config(gw: Gateway, data: dict, field_for: Any = None, errors: dict[str, str] | None = None) -> None:
    """Validate, write config.yaml and apply: all or nothing. ``field_for`` maps a dotted config
    key to the form field it came from; ``errors`` are problems already found in the input."""
    errors = dict(errors or {})
    try:
        new = config.validated(gw.config.path, data)
    except ConfigInvalid as exc:
        for key, message in exc.errors.items():
            errors.setdefault(field_for(key) if field_for else key, message)
    if errors:
        raise bad_fields(errors)
    config.write_file(gw.config.path, data)
    await gw.apply_config(new)


def meta(gw: Gateway, username: str) -> dict:
    """What every page needs to build its forms: who is logged in, the key types, the limits with
    their current defaults, the provider types and the configured provider names."""
    return {
        "username": username,
        "version": __version__,
        "key_types": list(KEY_TYPES),
        "limits": [{"field": s.field, "label": s.help, "setting": s.config, "usd": s.usd,
                    "default": shown(s.field, gw.limit_defaults[s.field])} for s in LIMITS],
        "teams": [{"id": t.id, "name": t.name} for t in gw.teams.values()],
        "provider_types": {name: {"format": t.format, "base_url": t.base_url, "needs_base_url": not t.base_url}
                           for name, t in PROVIDER_TYPES.items()},
        "providers": list(gw.config.providers),
        "routes": list(gw.config.routes),
    }


# -- clients

_CLIENT_TEXT = ("name", "provider", "base_url", "system_prompt", "default_model")


def _read_text(body: dict, names: Iterable[str], into: dict, errors: dict[str, str],
               keep: tuple[str, ...] = ()) -> None:
    """Copy the text fields present in ``body`` into ``into`` (stripped, unless named in ``keep``);
    a field that is not text is an error, and is not copied."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            errors[name] = "must be text"
        else:
            into[name] = value if name in keep else value.strip()


def client_fields(body: dict, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """JSON from the admin API to clients.py fields. Limits: a whole number, or null / "" for the
    configured default. Raises AdminError naming every bad field."""
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {}
    allowed = {*_CLIENT_TEXT, "enabled", "expires_at", "team_id", *clients.LISTS, *LIMIT_FIELDS,
               *(("key_type",) if creating else ())}
    for name in body.keys() - allowed:
        errors[name] = "unknown field" + ("" if creating or name != "key_type" else " (rotate the key to change it)")
    _read_text(body, _CLIENT_TEXT, fields, errors, keep=("system_prompt",))
    for name in clients.LISTS:  # checked against the config by clients.problems
        if body.get(name) is not None:
            fields[name] = body[name]
    if creating:
        for name in ("name", "provider"):
            if not fields.get(name):
                errors.setdefault(name, "required")
        key_type = body.get("key_type", "sk-")
        if key_type not in KEY_TYPES:
            errors["key_type"] = f"must be one of {', '.join(KEY_TYPES)}"
        fields["key_type"] = key_type
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            errors["enabled"] = "must be true or false"
        else:
            fields["enabled"] = int(body["enabled"])
    for name in (*LIMIT_FIELDS, "expires_at", "team_id"):
        if name not in body:
            continue
        value = body[name]
        if value is None or value == "":
            if not creating:
                fields[name] = clients.DEFAULT  # the configured default; no expiry; no team
            continue
        number = (int, float) if name in USD_FIELDS or name == "expires_at" else int
        if isinstance(value, bool) or not isinstance(value, number) or value < 0:
            errors[name] = {"expires_at": "must be a time in seconds since the epoch, or empty for never",
                            "team_id": "must be a team's id, or empty for none"}.get(
                name, "must be " + ("an amount in USD" if name in USD_FIELDS else "a whole number")
                + " >= 0 (0: unlimited), or empty for the default")
        else:
            fields[name] = value
    return fields, errors


def _client_error(exc: clients.ClientError) -> AdminError:
    field, _, message = str(exc).partition(": ")
    if field in clients.EDITABLE or field == "key_type":
        return bad_fields({field: message})
    return AdminError(404, str(exc))


def _client_out(row: sqlite3.Row, today: dict | None = None, key: str | None = None) -> dict:
    out = clients.public(row)
    out["today"] = today or {"requests": 0, "rejected": 0, "input_tokens": 0, "output_tokens": 0}
    if key:
        out["api_key"] = key  # shown once: only its hash is stored
    return out


async def _client_write(gw: Gateway, fn: Any) -> Any:
    """Run a clients.py change on the writer thread, then reload the key index so it applies now."""
    try:
        result = await gw.db.write(fn)
    except clients.ClientError as exc:
        raise _client_error(exc) from None
    await gw.reload_clients()
    return result


async def list_clients(gw: Gateway) -> list[dict]:
    """Every client with today's requests and tokens."""
    def read(conn: sqlite3.Connection) -> list[dict]:
        today = usage.today_by_client(conn)
        return [_client_out(r, today.get(r["id"])) for r in clients.all_clients(conn)]

    return await gw.db.read(read)


async def get_client(gw: Gateway, client_id: int) -> dict:
    """One client with today's usage; 404 when unknown."""
    def read(conn: sqlite3.Connection) -> dict:
        try:
            row = clients.find(conn, client_id)
        except clients.ClientError as exc:
            raise _client_error(exc) from None
        return _client_out(row, usage.today_by_client(conn).get(row["id"]))

    return await gw.db.read(read)


async def create_client(gw: Gateway, body: dict) -> dict:
    """A new client; the answer carries its key, the only time it is ever shown."""
    fields, errors = client_fields(body, creating=True)
    known = clients.Known(gw.config.providers, gw.config.routes)
    errors = {**clients.problems(fields, known), **errors}
    if errors:
        raise bad_fields(errors)
    name, provider, key_type = fields.pop("name"), fields.pop("provider"), fields.pop("key_type")
    row, key = await _client_write(
        gw, lambda conn: clients.create(conn, name, provider, key_type, known, **fields))
    log.info("admin: created client %r (id %d) on provider %r", name, row["id"], provider)
    return _client_out(row, key=key)


async def update_client(gw: Gateway, client_id: int, body: dict) -> dict:
    """Change some settings; a limit of null or "" goes back to the configured default."""
    fields, errors = client_fields(body, creating=False)
    known = clients.Known(gw.config.providers, gw.config.routes)
    errors = {**clients.problems(fields, known), **errors}
    if errors:
        raise bad_fields(errors)
    row = await _client_write(gw, lambda conn: clients.update(conn, client_id, known, **fields))
    log.info("admin: updated client %r (%s)", row["name"], ", ".join(sorted(fields)))
    return await get_client(gw, row["id"])


async def rotate_key(gw: Gateway, client_id: int, body: dict) -> dict:
    """A new key (optionally of another type); the old one is refused from now on, or after
    ``grace_seconds`` (a deployment rolls over without a failed request)."""
    key_type = body.get("key_type")
    if key_type is not None and key_type not in KEY_TYPES:
        raise bad_fields({"key_type": f"must be one of {', '.join(KEY_TYPES)}"})
    grace = body.get("grace_seconds") or 0
    row, key = await _client_write(gw, lambda conn: clients.rotate_key(conn, client_id, key_type, grace))
    log.info("admin: rotated the key of client %r", row["name"])
    return _client_out(row, key=key)


async def reset_usage(gw: Gateway, client_id: int) -> dict:
    """Start the client's limits and quotas afresh (the request log keeps its history)."""
    await _client_write(gw, lambda conn: clients.reset_usage(conn, client_id))
    return await get_client(gw, client_id)


async def delete_client(gw: Gateway, client_id: int) -> dict:
    """Delete a client; its key is refused from the next request on."""
    row = await _client_write(gw, lambda conn: clients.delete(conn, client_id))
    log.info("admin: deleted client %r", row["name"])
    return {"id": row["id"], "name": row["name"], "deleted": True}


# -- teams


async def list_teams(gw: Gateway) -> list[dict]:
    def read(conn: sqlite3.Connection) -> list[dict]:
        counts = teams.member_counts(conn)
        return [teams.public(r, counts.get(r["id"], 0)) for r in teams.all_teams(conn)]

    return await gw.db.read(read)


def _team_fields(body: dict) -> dict[str, Any]:
    """JSON to teams.py fields; a limit of null or "" means the team does not limit it."""
    unknown = body.keys() - set(teams.EDITABLE)
    values = {k: None if v == "" else v for k, v in body.items() if k in teams.EDITABLE}
    errors = {**{k: "unknown field" for k in unknown}, **teams.problems(values)}
    if errors:
        raise bad_fields(errors)
    return values


async def save_team(gw: Gateway, team_id: int | None, body: dict) -> dict:
    """Create (``team_id`` None) or change a team; live for every member's next request."""
    fields = _team_fields(body)
    if team_id is None and not fields.get("name"):
        raise bad_fields({"name": "required"})
    try:
        row = await gw.db.write(lambda conn: teams.create(conn, **fields) if team_id is None
                                else teams.update(conn, team_id, **fields))
    except teams.TeamError as exc:
        field, _, message = str(exc).partition(": ")
        raise (bad_fields({field: message}) if field in teams.EDITABLE else AdminError(404, str(exc))) from None
    await gw.reload_clients()
    log.info("admin: saved team %r", row["name"])
    return next(t for t in await list_teams(gw) if t["id"] == row["id"])


async def delete_team(gw: Gateway, team_id: int) -> dict:
    """Delete a team; its clients stay, in no team."""
    try:
        row = await gw.db.write(lambda conn: teams.delete(conn, team_id))
    except teams.TeamError as exc:
        raise AdminError(404, str(exc)) from None
    await gw.reload_clients()
    log.info("admin: deleted team %r", row["name"])
    return {"id": row["id"], "name": row["name"], "deleted": True}


# -- providers

_PROVIDER_BODY = ("name", "type", "api_key", "base_url", "default_model", "allowed_models", "timeout_seconds", "api",
                  "prices")


def key_states(gw: Gateway, name: str) -> list[dict]:
    """The provider's key pool as an admin sees it: each key's label, last four characters (of a
    key of 12 or more), weight and state; never the key."""
    pool, now = gw.pools.get(name), time.time()
    out = []
    for k in pool.keys if pool else ():
        state = k.state(now)
        until = k.failed_until if state == "failed" else max([t for t in k.resting.values() if t > now], default=0)
        out.append({"label": k.label, "tail": k.tail, "weight": k.weight, "state": state,
                    "until": until or None, "error": k.error if state != "ok" else ""})
    return out


def provider_out(gw: Gateway, name: str) -> dict:
    """A provider as the admin API shows it: every setting except the key, of which only whether
    one is set (the key is write-only: no admin response ever carries it), and its pool's state."""
    raw = gw.config.data["providers"][name]
    provider = gw.config.providers[name]
    return {
        "name": name,
        "type": provider.type,
        "base_url": raw.get("base_url") or "",
        "endpoint": provider.base_url,
        "default_model": provider.default_model,
        "allowed_models": list(provider.allowed_models),
        "timeout_seconds": raw.get("timeout_seconds") or int(provider.timeout_seconds),
        "api": provider.api,
        "prices": raw.get("prices") or {},  # the provider's own, over the shipped table
        "api_key_set": bool(provider.api_key),
        "keys": key_states(gw, name),
        "clients": sum(1 for c in gw.keys.clients() if c["provider"] == name),
    }


def list_providers(gw: Gateway) -> list[dict]:
    """Every configured provider, in config order, without keys."""
    return [provider_out(gw, name) for name in gw.config.providers]


def _provider_raw(body: dict, old: dict | None) -> tuple[dict, dict[str, str]]:
    """The provider's config mapping after applying ``body`` to ``old`` (None: a new provider),
    and the fields that could not be applied. ``api_key``: text sets it, absent or "" keeps it,
    null removes it."""
    errors: dict[str, str] = {}
    for name in body.keys() - set(_PROVIDER_BODY):
        errors[name] = "unknown field"
    raw = dict(old or {"type": "openai", "api_key": "", "timeout_seconds": 120})
    _read_text(body, ("type", "base_url", "default_model", "api"), raw, errors)
    if raw.get("type") not in PROVIDER_TYPES:
        errors["type"] = f"must be one of {', '.join(PROVIDER_TYPES)}"
    elif (problem := api_problem(raw)) is not None:
        errors["api"] = problem
    if "api_key" in body:
        key = body["api_key"]
        if key is None:
            raw["api_key"] = ""
        elif not isinstance(key, str):
            errors["api_key"] = "must be text"
        elif key.strip():
            raw["api_key"] = key.strip()
    models_ = body.get("allowed_models")
    if models_ is not None:
        if isinstance(models_, str):
            models_ = re.split(r"[\s,]+", models_)
        if not isinstance(models_, list) or not all(isinstance(m, str) for m in models_):
            errors["allowed_models"] = "must be a list of model names"
        else:
            raw["allowed_models"] = list(dict.fromkeys(m.strip() for m in models_ if m.strip()))
    if "prices" in body:  # the whole mapping: {} or null removes the provider's own prices
        prices = body["prices"] or {}
        if (problem := prices_problem(prices)) is not None:
            errors["prices"] = problem
        else:
            raw["prices"] = prices
    timeout = body.get("timeout_seconds")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 3600:
            errors["timeout_seconds"] = "must be a whole number of seconds from 1 to 3600"
        else:
            raw["timeout_seconds"] = timeout
    if not raw.get("base_url"):
        raw.pop("base_url", None)
    if not raw.get("allowed_models"):
        raw.pop("allowed_models", None)
    if raw.get("api") in ("", "chat"):  # the default: a config file without it reads the same
        raw.pop("api", None)
    if not raw.get("prices"):
        raw.pop("prices", None)
    return {f.name: raw[f.name] for f in PROVIDER_FIELDS if f.name in raw}, errors


def field_of(section: str, name: str) -> Any:
    """Maps a dotted config key under ``section.name`` to the form field it came from."""
    prefix = f"{section}.{name}."
    return lambda key: key[len(prefix):] if key.startswith(prefix) else key


async def save_provider(gw: Gateway, name: str | None, body: dict) -> dict:
    """Create (``name`` None: it comes in the body) or edit a provider; saved to config.yaml and
    used by the next request. Requests in flight finish with the provider they started with."""
    creating = name is None
    if creating:
        name = body.get("name")
        if not isinstance(name, str) or not PROVIDER_NAME.fullmatch(name.strip()):
            raise bad_fields({"name": "required: letters, digits, '.', '_' or '-' (at most 64)"})
        name = name.strip()
        if name in gw.config.providers:
            raise bad_fields({"name": f"a provider named {name!r} already exists"})
    elif name not in gw.config.providers:
        raise AdminError(404, f"no provider named {name!r}")
    elif "name" in body and body["name"] != name:
        raise bad_fields({"name": "a provider cannot be renamed (clients refer to it by name)"})
    raw, errors = _provider_raw({k: v for k, v in body.items() if k != "name"},
                                None if creating else gw.config.data["providers"][name])
    data = copy.deepcopy(gw.config.data)
    data["providers"][name] = raw
    await save_config(gw, data, field_of("providers", name), errors)
    log.info("admin: %s provider %r", "added" if creating else "updated", name)
    return provider_out(gw, name)


async def delete_provider(gw: Gateway, name: str) -> dict:
    """Remove a provider no client uses (a client's requests would fail without it)."""
    if name not in gw.config.providers:
        raise AdminError(404, f"no provider named {name!r}")
    users = sorted(c["name"] for c in gw.keys.clients() if c["provider"] == name)
    if users:
        raise AdminError(409, f"provider {name!r} is used by {len(users)} client(s): {', '.join(users[:10])}."
                              " Move them to another provider first.")
    data = copy.deepcopy(gw.config.data)
    del data["providers"][name]
    await save_config(gw, data)
    log.info("admin: deleted provider %r", name)
    return {"name": name, "deleted": True}


async def test_provider(gw: Gateway, name: str, body: dict) -> dict:
    """List the upstream's models with the saved provider, or with the form's unsaved values laid
    over it (the stored key is used unless the form gives one). Answers the upstream's error as
    ``ok: false`` rather than failing: the test itself worked."""
    old = gw.config.data["providers"].get(name)
    if old is None and not body:
        raise AdminError(404, f"no provider named {name!r}")
    raw, errors = _provider_raw({k: v for k, v in body.items() if k != "name"}, old)
    providers, _, problems = config.check({**copy.deepcopy(gw.config.data), "providers": {name: raw}, "routes": {}})
    for key, message in problems.items():
        errors.setdefault(field_of("providers", name)(key), message)
    if errors:
        raise bad_fields(errors)
    provider = providers[name]
    provider = replace(provider, timeout_seconds=min(provider.timeout_seconds, PROVIDER_TEST_TIMEOUT))
    started = time.monotonic()
    try:
        ids = await listing.fetch(provider)
    except GatewayError as exc:
        return {"ok": False, "status": exc.status, "error": exc.message, "endpoint": provider.base_url,
                "latency_ms": round((time.monotonic() - started) * 1000)}
    return {"ok": True, "models": ids, "endpoint": provider.base_url,
            "latency_ms": round((time.monotonic() - started) * 1000)}


# -- settings


def settings_out(gw: Gateway) -> dict:
    """The editable settings (dotted names, as in config.yaml), their help, and server facts."""
    helps = {s.name: s.help for s in SETTINGS}
    db_path = gw.db.path
    size = sum(p.stat().st_size for p in (db_path, db_path.with_name(db_path.name + "-wal")) if p.exists())
    return {
        "settings": {name: gw.config.get(name) for name in EDITABLE_SETTINGS},
        "help": {name: helps[name] for name in EDITABLE_SETTINGS},
        "server": {
            "version": __version__,
            "python": sys.version.split()[0],
            "started_at": gw.started_at,
            "uptime_seconds": round(time.time() - gw.started_at),
            "config_path": str(gw.config.path),
            "database_path": str(db_path),
            "database_bytes": size,
            "clients": len(gw.keys),
            "providers": len(gw.config.providers),
        },
    }


async def save_settings(gw: Gateway, body: dict) -> dict:
    """Change client defaults, time zone and logging level; applied at once."""
    errors = {name: "not an editable setting" for name in body.keys() - set(EDITABLE_SETTINGS)}
    if errors:
        raise bad_fields(errors)
    data = copy.deepcopy(gw.config.data)
    for name, value in body.items():
        config._set(data, name, value)
    await save_config(gw, data)
    log.info("admin: changed settings %s", ", ".join(sorted(body)))
    return settings_out(gw)


# -- usage


def _day(args: dict[str, str], name: str, default: date, errors: dict[str, str]) -> date:
    text = args.get(name) or ""
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[name] = "expected a date as YYYY-MM-DD"
        return default


def _day_range(args: dict[str, str]) -> tuple[str, str]:
    errors: dict[str, str] = {}
    today = datetime.now(timezone.utc).date()
    last = _day(args, "to", today, errors)
    first = _day(args, "from", last - timedelta(days=6), errors)
    if not errors and first > last:
        errors["from"] = "must not be after 'to'"
    if errors:
        raise bad_fields(errors)
    return first.isoformat(), last.isoformat()


async def usage_report(gw: Gateway, args: dict[str, str]) -> dict:
    """Daily usage between ``from`` and ``to`` (UTC days, default: the last 7): totals per day,
    per client and per model."""
    first, last = _day_range(args)
    report = await gw.db.read(lambda conn: usage.daily_report(conn, first, last))
    report.pop("rows")
    since = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
    report["unpriced"] = await gw.db.read(lambda conn: usage.unpriced_models(conn, since))
    return {"from": first, "to": last, **report}


def _cell(value: Any) -> Any:
    """Spreadsheets run a cell starting with = + - @ as a formula: neutralise names and models."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def usage_csv(gw: Gateway, args: dict[str, str]) -> tuple[str, str]:
    """The same range as CSV rows per (day, client, model); returns (file name, text)."""
    first, last = _day_range(args)
    report = await gw.db.read(lambda conn: usage.daily_report(conn, first, last))
    out = io.StringIO()
    columns = ("day", "client_id", "client_name", "model", "requests", "errors", "rejected", "input_tokens",
               "output_tokens", "cost_usd")
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in report["rows"]:
        writer.writerow([_cell(row[c]) for c in columns])
    return f"usage-{first}-{last}.csv", out.getvalue()


def _status_range(text: str) -> tuple[int, int] | None:
    text = text.strip().lower()
    if text in ("error", "errors"):
        return 400, 599
    if re.fullmatch(r"[1-5]xx", text):
        return int(text[0]) * 100, int(text[0]) * 100 + 99
    if re.fullmatch(r"[1-5]\d\d", text):
        return int(text), int(text)
    return None


async def request_log(gw: Gateway, args: dict[str, str]) -> dict:
    """One page of the request log, newest first: filters ``client`` (id), ``model``, ``status``
    (a code, ``4xx`` or ``error``), ``since``/``until`` (epoch seconds), ``before`` (the previous
    page's ``next_before_id``) and ``limit`` (at most 500)."""
    errors: dict[str, str] = {}
    query: dict[str, Any] = {}
    for name, target, kind in (("client", "client_id", int), ("before", "before_id", int),
                               ("since", "since", float), ("until", "until", float)):
        if args.get(name):
            try:
                query[target] = kind(args[name])
            except ValueError:
                errors[name] = "expected a number"
    if args.get("model"):
        query["model"] = args["model"]
    if args.get("status"):
        query["status"] = _status_range(args["status"])
        if query["status"] is None:
            errors["status"] = "expected a status code (429), a class (4xx) or 'error'"
    limit = args.get("limit") or "100"
    if not limit.isdigit() or not 1 <= int(limit) <= LOG_PAGE_MAX:
        errors["limit"] = f"expected a whole number from 1 to {LOG_PAGE_MAX}"
    if errors:
        raise bad_fields(errors)
    return await gw.db.read(lambda conn: usage.log_page(conn, limit=int(limit), **query))


def scrub(text: str, cfg: config.Config) -> str:
    """Remove every provider key from an admin response: keys are write-only, and an upstream's
    error message might quote one back."""
    for provider in cfg.providers.values():
        if len(provider.api_key) >= 4:
            text = text.replace(provider.api_key, "••••")
    return text

"""Admin sessions: a signed cookie value that names the admin, the password it logged in with and a
random session id. Changing the password (or the session secret) ends every session; logging out
ends that one session everywhere: its id is recorded as revoked (in sqlite, so a restart and every
other instance honour it) until it would have expired anyway."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Container

from tornado.web import create_signed_value, decode_signed_value

from aigateway.config import Config

COOKIE = "aigw_session"
MAX_AGE_DAYS = 0.5  # twelve hours
MAX_AGE_SECONDS = MAX_AGE_DAYS * 86400


def _fingerprint(config: Config) -> str:
    """A short digest of the current password hash: part of the session, never the hash itself."""
    return hashlib.sha256(config.get("admin.password_hash").encode()).hexdigest()[:16]


def make_session(config: Config) -> bytes:
    """A new signed session value for the configured admin."""
    value = f"{config.get('admin.username')}|{_fingerprint(config)}|{secrets.token_urlsafe(16)}"
    return create_signed_value(config.get("admin.session_secret"), COOKIE, value)


def _fields(config: Config, cookie: str | None) -> tuple[str, str, str] | None:
    if not cookie:
        return None
    raw = decode_signed_value(config.get("admin.session_secret"), COOKIE, cookie, max_age_days=MAX_AGE_DAYS)
    if raw is None:
        return None
    username, _, rest = raw.decode("utf-8", "replace").partition("|")
    fingerprint, _, session_id = rest.partition("|")
    return username, fingerprint, session_id


def check_session(config: Config, cookie: str | None, revoked: Container[str] = ()) -> str | None:
    """The admin's name if ``cookie`` is a valid, unexpired, not logged-out session for the
    current password."""
    fields = _fields(config, cookie)
    if fields is None:
        return None
    username, fingerprint, session_id = fields
    if not hmac.compare_digest(fingerprint, _fingerprint(config)) or username != config.get("admin.username"):
        return None
    if not session_id or session_id in revoked:
        return None
    return username


def session_id(config: Config, cookie: str | None) -> str | None:
    fields = _fields(config, cookie)
    return fields[2] if fields else None


def revoke(conn: sqlite3.Connection, sid: str) -> None:
    """Record a logged-out session until it would have expired anyway (and forget expired ones)."""
    now = time.time()
    conn.execute("DELETE FROM revoked_sessions WHERE expires_at < ?", (now,))
    conn.execute("INSERT OR IGNORE INTO revoked_sessions (session_id, expires_at) VALUES (?, ?)",
                 (sid, now + MAX_AGE_SECONDS))


def load_revoked(conn: sqlite3.Connection) -> set[str]:
    """The logged-out sessions that have not expired yet."""
    return {row[0] for row in conn.execute("SELECT session_id FROM revoked_sessions WHERE expires_at >= ?",
                                           (time.time(),))}

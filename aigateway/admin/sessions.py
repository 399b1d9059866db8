"""Admin sessions: a signed cookie value that names the admin and the password it logged in with,
so changing the password (or the session secret) ends every existing session."""

from __future__ import annotations

import hashlib
import hmac

from tornado.web import create_signed_value, decode_signed_value

from aigateway.config import Config

COOKIE = "aigw_session"
MAX_AGE_DAYS = 0.5  # twelve hours


def _fingerprint(config: Config) -> str:
    """A short digest of the current password hash: part of the session, never the hash itself."""
    return hashlib.sha256(config.get("admin.password_hash").encode()).hexdigest()[:16]


def make_session(config: Config) -> bytes:
    """A new signed session value for the configured admin."""
    value = f"{config.get('admin.username')}|{_fingerprint(config)}"
    return create_signed_value(config.get("admin.session_secret"), COOKIE, value)


def check_session(config: Config, cookie: str | None) -> str | None:
    """The admin's name if ``cookie`` is a valid, unexpired session for the current password."""
    if not cookie:
        return None
    raw = decode_signed_value(config.get("admin.session_secret"), COOKIE, cookie, max_age_days=MAX_AGE_DAYS)
    if raw is None:
        return None
    username, _, fingerprint = raw.decode("utf-8", "replace").partition("|")
    if not hmac.compare_digest(fingerprint, _fingerprint(config)) or username != config.get("admin.username"):
        return None
    return username

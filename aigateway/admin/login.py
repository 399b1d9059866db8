"""Admin login: the bcrypt password check, off the event loop, behind a throttle of failed attempts
per IP and per user name."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import bcrypt

from aigateway import config
from aigateway.admin.errors import AdminError, bad_fields

if TYPE_CHECKING:
    from aigateway.app import Gateway

log = logging.getLogger("aigateway.admin")


class LoginThrottle:
    """Failed logins per key ("ip:..." and "user:..."): five within a minute block that key for
    the rest of the minute. In memory, so a restart forgets, which costs an attacker a restart."""

    MAX_FAILURES = 5
    WINDOW = 60.0

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.WINDOW:
            times.popleft()
        return times

    def retry_after(self, keys: Iterable[str], now: float) -> float | None:
        """Seconds until every key may try again, or None when none is blocked."""
        waits = [times[0] + self.WINDOW - now for key in keys
                 if len(times := self._recent(key, now)) >= self.MAX_FAILURES]
        return max(waits) if waits else None

    def failed(self, keys: Iterable[str], now: float) -> None:
        """Count one failed attempt against each key."""
        if len(self._failures) > 10000:  # forget keys whose failures have all aged out
            self._failures = {k: t for k, t in self._failures.items() if self._recent(k, now)}
        for key in keys:
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times


def password_ok(cfg: config.Config, username: str, password: str) -> bool:
    """bcrypt check (slow on purpose: run it in a thread). The hash is checked even for a wrong
    user name, so timing does not tell which of the two was wrong."""
    try:
        good = bcrypt.checkpw(password.encode(), cfg.get("admin.password_hash").encode())
    except ValueError:  # longer than bcrypt accepts, or a malformed hash
        good = False
    return hmac.compare_digest(username.encode(), str(cfg.get("admin.username")).encode()) and good


async def throttled_check(gw: Gateway, username: str, password: str, ip: str, refusal: str) -> bool:
    """Check a password (bcrypt, off the event loop) unless this IP or user name failed too often
    lately (429, the password unchecked); a wrong one counts against both."""
    keys = (f"ip:{ip}", f"user:{username.lower()}")
    wait = gw.login_throttle.retry_after(keys, time.time())
    if wait is not None:
        raise AdminError(429, f"{refusal} Try again in {int(wait) + 1} seconds.", retry_after=int(wait) + 1)
    if await asyncio.to_thread(password_ok, gw.config, username, password):
        return True
    gw.login_throttle.failed(keys, time.time())
    return False


async def log_in(gw: Gateway, body: dict, ip: str) -> str:
    """Check a login; returns the admin's name. Five failures a minute per IP or per user name
    make further attempts 429 (without checking the password) until the minute has passed."""
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise bad_fields({k: "required" for k in ("username", "password")
                          if not isinstance(body.get(k), str) or not body.get(k)})
    if not await throttled_check(gw, username, password, ip, "Too many failed logins."):
        log.warning("admin login failed for user %r from %s", username[:64], ip)
        raise AdminError(401, "Wrong user name or password.")
    log.info("admin %r logged in from %s", username, ip)
    return username



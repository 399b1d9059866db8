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


USERNAME_MAX = 256  # characters; longer names are refused before any work
PASSWORD_MAX = 1024  # bytes (bcrypt reads 72; this bounds what a request makes the server hash)


class LoginThrottle:
    """Login attempts per key ("ip:..." and "user:..."): five within a minute block that key for
    the rest of the minute. An attempt is counted before its password is checked and forgiven if
    it was right, so concurrent attempts cannot all slip past the check. Entries expire with their
    window and at most MAX_KEYS are kept (the oldest go first). In memory, so a restart forgets,
    which costs an attacker a restart."""

    MAX_FAILURES = 5
    WINDOW = 60.0
    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def __len__(self) -> int:
        return len(self._failures)

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
        """Count one attempt against each key (it is forgiven if it turns out right)."""
        for key in keys:
            times = self._recent(key, now)
            times.append(now)
            self._failures.pop(key, None)  # re-insert: the dict's order is the order of last use
            self._failures[key] = times
        if len(self._failures) > self.MAX_KEYS:
            self._failures = {k: t for k, t in self._failures.items() if self._recent(k, now)}
            for key in list(self._failures)[:len(self._failures) - self.MAX_KEYS]:
                del self._failures[key]

    def forgive(self, keys: Iterable[str], at: float) -> None:
        """Take back the attempt counted at ``at``: the password was right."""
        for key in keys:
            times = self._failures.get(key)
            if times is not None and at in times:
                times.remove(at)


def password_ok(cfg: config.Config, username: str, password: str) -> bool:
    """bcrypt check (slow on purpose: run it in a thread). The hash is checked even for a wrong
    user name, so timing does not tell which of the two was wrong."""
    try:
        good = bcrypt.checkpw(password.encode(), cfg.get("admin.password_hash").encode())
    except ValueError:  # longer than bcrypt accepts, or a malformed hash
        good = False
    return hmac.compare_digest(username.encode(), str(cfg.get("admin.username")).encode()) and good


def check_sizes(username: str, password: str, field: str = "password") -> None:
    """Refuse (400) a user name or password too large to be real, before any throttle or hash work."""
    errors = {}
    if len(username) > USERNAME_MAX:
        errors["username"] = f"at most {USERNAME_MAX} characters"
    if len(password.encode("utf-8", "surrogatepass")) > PASSWORD_MAX:
        errors[field] = f"at most {PASSWORD_MAX} bytes"
    if errors:
        raise bad_fields(errors)


async def throttled_check(gw: Gateway, username: str, password: str, ip: str, refusal: str) -> bool:
    """Check a password (bcrypt, off the event loop) unless this IP or user name failed too often
    lately (429, the password unchecked); a wrong one counts against both."""
    keys, throttle, now = (f"ip:{ip}", f"user:{username.lower()}"), gw.login_throttle, time.time()
    wait = throttle.retry_after(keys, now)
    if wait is not None:
        raise AdminError(429, f"{refusal} Try again in {int(wait) + 1} seconds.", retry_after=int(wait) + 1)
    throttle.failed(keys, now)  # before the check: attempts arriving meanwhile see this one
    if await asyncio.to_thread(password_ok, gw.config, username, password):
        throttle.forgive(keys, now)
        return True
    return False


async def log_in(gw: Gateway, body: dict, ip: str) -> str:
    """Check a login; returns the admin's name. Five failures a minute per IP or per user name
    make further attempts 429 (without checking the password) until the minute has passed."""
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise bad_fields({k: "required" for k in ("username", "password")
                          if not isinstance(body.get(k), str) or not body.get(k)})
    check_sizes(username, password)
    if not await throttled_check(gw, username, password, ip, "Too many failed logins."):
        log.warning("admin login failed for user %r from %s", username[:64], ip)
        raise AdminError(401, "Wrong user name or password.")
    log.info("admin %r logged in from %s", username, ip)
    return username



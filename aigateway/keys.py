"""Client API keys: generation, SHA-256 hashing and the in-memory index requests are
authenticated against (never a database query per request)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping

KEY_TYPES = ("sk-", "gm_", "sk-ant-")


def generate_key(key_type: str = "sk-") -> str:
    """A new key: the chosen prefix and 32 random bytes, URL-safe."""
    if key_type not in KEY_TYPES:
        raise ValueError(f"key type must be one of {', '.join(KEY_TYPES)}")
    return key_type + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    """What may be shown of a key later: its first characters, enough to tell keys apart."""
    return key[:12] + "…"


class KeyIndex:
    """hash -> client, swapped whole on reload so a lookup never sees a half-built index. A client
    rotated with a grace period is found by its previous key too, until ``previous_key_until``."""

    def __init__(self, clients: Iterable[Mapping] = ()) -> None:
        self._clients = list(clients)
        self._by_hash: dict[str, Mapping] = {c["key_hash"]: c for c in self._clients}
        self._previous: dict[str, Mapping] = {c["previous_key_hash"]: c for c in self._clients
                                              if c.get("previous_key_hash")}

    def lookup(self, key: str, now: float) -> tuple[Mapping | None, str | None]:
        """(the client, None), or (None, why the key no longer works) for a rotated key after its
        grace period; (None, None) for a key never issued."""
        # The dict lookup is on a SHA-256 of the key, so its timing reveals nothing usable.
        digest = hash_key(key)
        client = self._by_hash.get(digest)
        if client is not None:
            return client, None
        client = self._previous.get(digest)
        if client is None:
            return None, None
        if now < (client["previous_key_until"] or 0):
            return client, None
        return None, "This API key was replaced by a new one and its grace period has ended."

    def clients(self) -> Iterable[Mapping]:
        return self._clients

    def __len__(self) -> int:
        return len(self._clients)

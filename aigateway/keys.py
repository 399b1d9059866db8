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
    """hash -> client, swapped whole on reload so a lookup never sees a half-built index."""

    def __init__(self, clients: Iterable[Mapping] = ()) -> None:
        self._by_hash: dict[str, Mapping] = {c["key_hash"]: c for c in clients}

    def lookup(self, key: str) -> Mapping | None:
        # The dict lookup is on a SHA-256 of the key, so its timing reveals nothing usable.
        return self._by_hash.get(hash_key(key))

    def clients(self) -> Iterable[Mapping]:
        return self._by_hash.values()

    def __len__(self) -> int:
        return len(self._by_hash)

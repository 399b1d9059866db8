"""Key governance: what a client's key may do beyond its limits. It may expire, be replaced by a
rotation (the old key working on for a grace period), be restricted to source networks and to
models. Pure functions of the client row and the request; the parsed networks are cached, so a
request costs a dict look-up, not a parse.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from aigateway import neutral

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1024)
def networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    """CIDR strings (already validated where they were set) as networks."""
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is 10.0.0.1
    return mapped or address


def _within(address: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in nets)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: the socket's peer, unless the peer is a trusted proxy; then the last
    address in X-Forwarded-For that is not itself a trusted proxy (the one the proxies saw; what
    comes before it can be forged by the client)."""
    peer_address, proxies = _address(peer), networks(tuple(trusted))
    if not forwarded_for or peer_address is None or not _within(peer_address, proxies):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:
            return peer  # a malformed header: trust the socket
        if not _within(address, proxies):
            return str(address)
    return peer


def check_key(client: Mapping[str, Any], address: str, now: float) -> None:
    """401 when the key has expired; 403 when the request comes from a network the key may not use."""
    expires = client.get("expires_at")
    if expires and now >= expires:
        when = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        raise neutral.GatewayError(401, neutral.ErrorKind.AUTHENTICATION, f"This API key expired on {when}.",
                                   code="key_expired")
    allowed = client.get("allowed_networks")
    if allowed:
        parsed = _address(address)
        if parsed is None or not _within(parsed, networks(tuple(allowed))):
            raise neutral.GatewayError(403, neutral.ErrorKind.PERMISSION,
                                       f"This API key may not be used from {address}.", code="network_not_allowed")


def model_allowed(model: str, patterns: Sequence[str]) -> bool:
    """Whether a model name matches the key's allowed models (names and ``*``/``?`` wildcards;
    none listed: every model)."""
    if not patterns:
        return True
    name = model.lower()
    return any(fnmatch.fnmatchcase(name, p.lower()) for p in patterns)


def not_allowed(model: str) -> neutral.GatewayError:
    return neutral.GatewayError(403, neutral.ErrorKind.PERMISSION,
                                f"This API key may not use the model {model!r}.", code="model_not_allowed",
                                param="model")

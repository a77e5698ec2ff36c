"""Who the visitor is on the network: the client address, through trusted proxies only.

A publishable key is shared by every visitor of a site, so limits also apply per visitor
(core.ratelimit). The address a limit keys on must be one the client cannot choose:
`X-Forwarded-For` (HTTP) and the shim's `x-switchboard-client` metadata (gRPC) are
honoured only when the peer that sent them is a configured trusted proxy; otherwise the
peer's own address is the visitor. Loopback is always trusted by the core (the shim of
`switchboard serve` reaches it there); the shim trusts only what `--trusted-proxy` names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLIENT_METADATA = "x-switchboard-client"
LOOPBACK = ("127.0.0.0/8", "::1/128")
# The peer an in-process call reports: a shim in the core's own process is as trusted as
# one on loopback, so the visitor address it forwards is used (per-visitor limits).
IN_PROCESS_PEER = "ipv4:127.0.0.1:0"
MAX_FORWARDED_HOPS = 20  # an X-Forwarded-For longer than this is read from the right only


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse addresses or CIDRs; raises ValueError naming the bad one."""
    found = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {value!r}") from None
    return tuple(found)


def trusted(address: str, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def forwarded_client(peer: str, forwarded_for: str, nets: Sequence[Network]) -> str:
    """The client address: `peer`, unless it is trusted, in which case the right-most
    X-Forwarded-For entry that is not itself a trusted proxy (entries further left were
    written by whoever the client is, and prove nothing)."""
    if not forwarded_for or not trusted(peer, nets):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",")][-MAX_FORWARDED_HOPS:]
    for hop in reversed(hops):
        if not hop:
            continue
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # garbage from the client side of the chain: fall back to the peer
        if not trusted(hop, nets):
            return hop
    return peer


def grpc_peer_address(peer: str) -> str:
    """`ipv4:1.2.3.4:5678` / `ipv6:[::1]:5678` -> the address ("" for unix sockets)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""

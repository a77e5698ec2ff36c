"""Browser origins a publishable key may be used from (`OrgSettings.allowed_origins`).

An entry is `*` (any origin), an exact origin (`https://www.example.com`,
`http://localhost:3000`), or an origin whose port is `*` (`http://localhost:*`: that scheme
and host on any port, or none). Only the port may be a wildcard: a host pattern such as
`https://*.example.com` would let anyone who can register a sub-domain in.
Scheme and host compare case-insensitively (browsers send them lower-case); a trailing
`/` is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

ANY_ORIGIN = "*"
ANY_PORT = ":*"


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _without_port(origin: str) -> str:
    """`scheme://host` of `scheme://host[:port]` (IPv6 hosts keep their brackets)."""
    scheme, sep, authority = origin.partition("://")
    if not sep:
        return origin
    host, colon, port = authority.rpartition(":")
    if colon and port.isdigit() and not host.endswith(":"):
        return f"{scheme}://{host}"
    return origin


def origin_matches(pattern: str, origin: str) -> bool:
    """True when `origin` (a browser's `Origin` header) is allowed by one entry."""
    pattern, origin = _normal(pattern), _normal(origin)
    if pattern == ANY_ORIGIN:
        return True
    if pattern.endswith(ANY_PORT):
        return _without_port(origin) == pattern[: -len(ANY_PORT)]
    return origin == pattern


def origin_allowed(allowed: Iterable[str], origin: str) -> bool:
    """True when any entry of the allow-list matches `origin`."""
    return any(origin_matches(pattern, origin) for pattern in allowed)


__all__ = ["ANY_ORIGIN", "ANY_PORT", "origin_allowed", "origin_matches"]

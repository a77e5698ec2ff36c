"""Origin allow-list entries: exact origins, `*`, and a port wildcard (`http://localhost:*`)."""

from __future__ import annotations

import pytest

from core.origins import origin_allowed, origin_matches


@pytest.mark.parametrize(("pattern", "origin"), [
    ("*", "https://anything.example"),
    ("https://www.example.com", "https://www.example.com"),
    ("https://www.example.com/", "https://WWW.example.com"),
    ("http://localhost:*", "http://localhost:8080"),
    ("http://localhost:*", "http://localhost:1"),
    ("http://localhost:*", "http://localhost"),
    ("http://127.0.0.1:*", "http://127.0.0.1:65535"),
    ("http://[::1]:*", "http://[::1]:3000"),
])
def test_matches(pattern: str, origin: str) -> None:
    assert origin_matches(pattern, origin)


@pytest.mark.parametrize(("pattern", "origin"), [
    ("https://www.example.com", "https://www.example.com:8443"),
    ("https://www.example.com", "http://www.example.com"),
    ("http://localhost:*", "https://localhost:8080"),  # another scheme
    ("http://localhost:*", "http://localhost.evil.example:8080"),
    ("http://localhost:*", "http://evil-localhost:8080"),
    ("http://localhost:*", "http://127.0.0.1:8080"),
    ("http://localhost:3000", "http://localhost:3001"),
    ("http://localhost:*", "null"),
])
def test_does_not_match(pattern: str, origin: str) -> None:
    assert not origin_matches(pattern, origin)


def test_allowed_is_any_entry() -> None:
    allowed = ("https://a.example", "http://localhost:*")
    assert origin_allowed(allowed, "http://localhost:5173")
    assert origin_allowed(allowed, "https://a.example")
    assert not origin_allowed(allowed, "https://b.example")

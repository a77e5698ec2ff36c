"""Injectable time, ids and randomness, so tests can fix them."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (rate limits, durations)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


class IdSource(Protocol):
    def uuid(self) -> str: ...

    def token(self, nbytes: int = 24) -> str: ...


class RandomIds:
    def uuid(self) -> str:
        return str(uuid.uuid4())

    def token(self, nbytes: int = 24) -> str:
        return secrets.token_urlsafe(nbytes)


class SequentialIds:
    """Deterministic ids for tests."""

    def __init__(self) -> None:
        self._n = 0

    def uuid(self) -> str:
        self._n += 1
        return str(uuid.UUID(int=self._n))

    def token(self, nbytes: int = 24) -> str:
        self._n += 1
        return f"tok{self._n:0{nbytes}d}"


def to_iso(dt: datetime) -> str:
    """RFC 3339 with a Z suffix and whole seconds, as the public dialects show times."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)

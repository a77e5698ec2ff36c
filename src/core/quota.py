"""Stored data per organisation has a quota (`OrgSettings.extra["storage"]["max_bytes"]`,
default `DEFAULT_ORG_STORAGE_BYTES`; 0 means unlimited).

What counts is what visitors make the store keep: message text and attached images
(data: URLs are stored as given). A send whose message and images would take the
organisation past its quota is refused before anything is written, with
RESOURCE_EXHAUSTED `storage_quota_exceeded` (HTTP 429 in every dialect, no
Retry-After: it does not pass by itself; an operator raises the quota or deletes data).

The organisation's usage is summed from the store at most every `USAGE_REFRESH_S` per
process and counted up locally in between, so a check costs no query on most sends.
Replicas each count their own sends between refreshes: the quota can be overrun by at
most what the replicas accept in one refresh interval.
"""

from __future__ import annotations

from core.clock import Clock
from core.domain import Organisation, TurnRequest
from core.errors import Code, Reason, SwitchboardError
from core.store.base import Store

DEFAULT_ORG_STORAGE_BYTES = 1024 * 1024 * 1024  # 1 GiB
USAGE_REFRESH_S = 5.0


def quota_of(org: Organisation) -> int:
    raw = org.settings.extra.get("storage") or {}
    return int(raw.get("max_bytes", DEFAULT_ORG_STORAGE_BYTES))


def request_bytes(request: TurnRequest) -> int:
    return len(request.message.encode("utf-8")) + sum(
        len(image.encode("utf-8")) for image in request.images)


class StorageQuota:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._used: dict[str, tuple[float, int]] = {}  # org id -> (summed at, bytes)

    async def used(self, org_id: str) -> int:
        now = self._clock.monotonic()
        cached = self._used.get(org_id)
        if cached is not None and now - cached[0] < USAGE_REFRESH_S:
            return cached[1]
        used = await self._store.stored_bytes(org_id)
        self._used[org_id] = (now, used)
        return used

    async def reserve(self, org: Organisation, request: TurnRequest) -> None:
        """Refuse a send that would pass the quota; otherwise count it."""
        limit = quota_of(org)
        if limit <= 0:
            return
        adding = request_bytes(request)
        used = await self.used(org.id)
        if used + adding > limit:
            raise SwitchboardError(
                Code.RESOURCE_EXHAUSTED, Reason.STORAGE_QUOTA_EXCEEDED,
                f"This organisation's stored data is at its quota ({limit:,} bytes); "
                "the message was not stored.",
                {"limit_bytes": str(limit), "used_bytes": str(used)},
            )
        at, _ = self._used.get(org.id, (self._clock.monotonic(), used))
        self._used[org.id] = (at, used + adding)

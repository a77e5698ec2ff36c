"""Event times reach clients exactly as protobuf's own conversion would give them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2

from core.grpcapi.convert import _ts

TIMES = [
    datetime(2026, 12, 1, 20, 5, 31, 123456, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the epoch
    datetime(2026, 3, 4, 15, 0, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2026, 3, 4, 15, 0, 0, 1),  # naive: UTC, as FromDatetime reads it
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


@pytest.mark.parametrize("when", TIMES)
def test_same_timestamp_as_from_datetime(when: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(when)
    assert _ts(when) == expected

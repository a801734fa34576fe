"""Time windows of the time-based streams: how a window becomes requests, and what the API still keeps.

Partition start dates are configuration with fixed defaults, never derived from the clock:
a code server and a run worker that load the definitions on either side of midnight must
agree on the partition set. Partitions older than what the API keeps are clamped by each
stream (`clamp_to_retention`): they make no request and keep the rows already loaded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from segment_assets.api.streams import Partitioning, TimeWindowing
from segment_assets.api.tables import WINDOW_END, WINDOW_START

# The first partitions offered when nothing is configured (`segment-assets init` writes a
# workspace's own start dates into its connections file).
DEFAULT_DAILY_START = "2026-09-01"
DEFAULT_MONTHLY_START = "2025-12-01"


def validate_start(value: str, what: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} must be a date written YYYY-MM-DD, got {value!r}") from None
    return value


def window_queries(windowing: TimeWindowing, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Request parameters covering [start, end): months for `period`, else time chunks no longer
    than the API accepts in one request (or exactly one chunk per day for per-window snapshots)."""
    if windowing.period_param:
        out, month = [], date(start.year, start.month, 1)
        while datetime(month.year, month.month, 1, tzinfo=UTC) < end:
            out.append({windowing.period_param: month.isoformat()})
            month = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        return out
    if windowing.start_param is None or windowing.end_param is None:
        raise ValueError("a time window without period_param needs start_param and end_param")
    step = timedelta(days=windowing.chunk_days or windowing.max_range_days or 10_000)
    out, a = [], start
    while a < end:
        b = min(a + step, end)
        q: dict[str, Any] = {windowing.start_param: iso(a), windowing.end_param: iso(b)}
        if windowing.granularity:
            q["granularity"] = windowing.granularity
        if windowing.window_columns:
            q[WINDOW_START], q[WINDOW_END] = a, b
        out.append(q)
        a = b
    return out


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clamp_to_retention(
    windowing: TimeWindowing, start: datetime, end: datetime, now: datetime | None = None
) -> tuple[datetime, datetime] | None:
    """The part of [start, end) the API still serves; None when all of it is older than retention."""
    if not windowing.retention_days:
        return start, end
    oldest = (now or datetime.now(UTC)) - timedelta(days=windowing.retention_days)
    if windowing.partitioning is Partitioning.MONTHLY:
        oldest = oldest.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if end <= oldest:
        return None
    return max(start, oldest), end

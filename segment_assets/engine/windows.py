"""Time windows of the time-based streams: how a window becomes requests, and what the API still keeps.

Partition start dates are configuration with fixed defaults, never derived from the clock:
a code server and a run worker that load the definitions on either side of midnight must
agree on the partition set. Partitions older than what the API keeps are clamped by each
stream (`clamp_to_retention`): they make no request and keep the rows already loaded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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


def period_starts(partitioning: Partitioning, start: datetime, end: datetime) -> list[datetime]:
    """The starts of the UTC days or months (the partitions) that [start, end) covers."""
    out, t = [], start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if partitioning is Partitioning.MONTHLY:
        t = t.replace(day=1)
    while t < end:
        out.append(t)
        t = t + timedelta(days=1) if partitioning is Partitioning.DAILY else _next_month(t)
    return out


def _next_month(t: datetime) -> datetime:
    return t.replace(year=t.year + (t.month == 12), month=t.month % 12 + 1)


def window_scope(
    windowing: TimeWindowing, start: datetime, end: datetime, times: pa.Array | pa.ChunkedArray
) -> dict[str, Any]:
    """Metadata for a run over several partitions (a range backfill is one run, one window).

    Dagster records the run's metadata on each partition of the range, so the figures would read
    once per partition (3 days of 100 rows: "100" three times). This says they are the window's and
    gives each partition its own row count, from the stored time column of the rows in the window."""
    starts = period_starts(windowing.partitioning, start, end)
    keys = [s.strftime("%Y-%m-%d") for s in starts]
    counts = dict.fromkeys(keys, 0)
    if len(times):
        ts = pc.cast(times, pa.timestamp("us", tz="UTC"))
        bounds = pa.array([*starts, end], pa.timestamp("us", tz="UTC"))
        for i, key in enumerate(keys):
            inside = pc.and_(pc.greater_equal(ts, bounds[i]), pc.less(ts, bounds[i + 1]))
            counts[key] = int(pc.sum(pc.cast(inside, pa.int64())).as_py() or 0)
    return {
        "segment/window_partitions": len(keys),
        "segment/rows_by_partition": counts,
        "segment/metadata_scope": (
            f"one run over {len(keys)} {windowing.partitioning.value} partitions ({keys[0]} .. {keys[-1]}): the "
            "request, row and change counts are the whole window's, recorded on each partition; "
            "segment/rows_by_partition gives each partition its own rows"
        ),
    }

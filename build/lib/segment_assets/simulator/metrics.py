"""Time-series endpoints: event volume, delivery overview, delivery metrics and usage.

Counts are pure functions of (seed, stream, bucket). A day's count is primary; hours split
the day and minutes split the hour, so a DAY bucket always equals the sum of its HOUR
buckets and any window equals the union of its days.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .errors import invalid
from .generator import EVENT_NAMES, digest, iso, mix, parse_time

if TYPE_CHECKING:
    from .workspace import Workspace

STEP = {"DAY": timedelta(days=1), "HOUR": timedelta(hours=1), "MINUTE": timedelta(minutes=1)}
MAX_BUCKETS = 20_000
APP_VERSIONS = ("4.2.0", "4.3.1")
EVENT_TYPES = {"Page Viewed": "PAGE", "Signed In": "IDENTIFY", "Signed Up": "IDENTIFY"}
DISCARD_REASONS = {
    "failed-on-ingest": ("INVALID_JSON", "EVENT_TOO_LARGE"),
    "filtered-at-source": ("TRACKING_PLAN_BLOCKED", "SCHEMA_FILTER"),
    "filtered-at-destination": ("DESTINATION_FILTER", "MAPPING_NOT_ENABLED"),
    "failed-delivery": ("RATE_LIMITED", "BAD_REQUEST", "TIMEOUT"),
}
METRIC_FACTOR = {  # per mille of received events
    "successfully-received": 1000,
    "failed-on-ingest": 8,
    "filtered-at-source": 40,
    "filtered-at-destination": 30,
    "failed-delivery": 15,
    "successful-delivery": 900,
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _split(total: int, n: int, key: int) -> list[int]:
    """Deterministically split ``total`` into ``n`` non-negative parts."""
    weights = [1 + mix(key, k) % 97 for k in range(n)]
    s = sum(weights)
    parts = [total * w // s for w in weights]
    rest = total - sum(parts)
    for k in range(rest):
        parts[(key + k) % n] += 1
    return parts


@lru_cache(maxsize=65536)
def _day_count(key: int, day: int, magnitude: int) -> int:
    return (magnitude * (700 + mix(key, day) % 600)) // 1000


@lru_cache(maxsize=65536)
def _hours(key: int, day: int, magnitude: int) -> tuple[int, ...]:
    return tuple(_split(_day_count(key, day, magnitude), 24, mix(key, day * 31 + 7)))


@lru_cache(maxsize=65536)
def _minutes(key: int, hour: int, magnitude: int) -> tuple[int, ...]:
    day, h = divmod(hour, 24)
    return tuple(_split(_hours(key, day, magnitude)[h], 60, mix(key, hour * 61 + 3)))


def bucket_count(key: int, magnitude: int, granularity: str, t: datetime, anchor: datetime) -> int:
    if t >= anchor:
        return 0  # the future has no traffic yet
    seconds = int((t - EPOCH).total_seconds())
    if granularity == "DAY":
        return _day_count(key, seconds // 86400, magnitude)
    if granularity == "HOUR":
        return _hours(key, seconds // 86400, magnitude)[(seconds // 3600) % 24]
    return _minutes(key, seconds // 3600, magnitude)[(seconds // 60) % 60]


def buckets(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """Aligned bucket starts t with start <= t < end."""
    step = STEP[granularity]
    seconds = int(step.total_seconds())
    offset = int((start - EPOCH).total_seconds())
    first = EPOCH + timedelta(seconds=-(-offset // seconds) * seconds)
    n = max(0, -(-int((end - first).total_seconds()) // seconds))
    if n > MAX_BUCKETS:
        raise invalid(f"Time range too large for granularity {granularity} ({n} buckets)", "startTime")
    return [first + step * k for k in range(n)]


class Stream:
    """One source's traffic for one event name, type and app version."""

    __slots__ = ("source", "event_name", "event_type", "app_version", "key", "magnitude")

    def __init__(self, seed: int, source: dict[str, Any], n: int) -> None:
        self.source = source
        self.event_name = EVENT_NAMES[(digest(source["id"]) + n) % len(EVENT_NAMES)]
        self.event_type = EVENT_TYPES.get(self.event_name, "TRACK")
        self.app_version = APP_VERSIONS[n % 2]
        self.key = digest(seed, source["id"], self.event_name, self.app_version)
        self.magnitude = 2_000 + self.key % 50_000  # events per day


def streams(ws: Workspace, source_ids: Iterable[str] | None = None) -> list[Stream]:
    wanted = set(source_ids) if source_ids is not None else None
    out = []
    for row in ws.rows("sources"):
        if wanted is not None and row.ident not in wanted:
            continue
        for n in range(4):
            out.append(Stream(ws.seed, row.obj, n))
    return out


def parse_window(query: dict[str, Any], required: bool = True) -> tuple[datetime, datetime]:
    try:
        start = parse_time(query["startTime"])
        end = parse_time(query["endTime"])
    except (KeyError, ValueError, TypeError):
        raise invalid("startTime and endTime must be ISO-8601 timestamps", "startTime") from None
    if end <= start:
        raise invalid("endTime must be after startTime", "endTime")
    return start, end


def _granularity(value: Any, default: str | None = None) -> str:
    g = (value or default or "").upper()
    if g not in STEP:
        raise invalid("granularity must be one of DAY, HOUR, MINUTE", "granularity")
    return g


def _group(
    items: list[tuple[tuple[Any, ...], int, int]],
    times: list[datetime],
    anchor: datetime,
    granularity: str,
    dims: list[str],
    labels: dict[str, Any],
) -> list[dict[str, Any]]:
    """Sum streams into one entry per distinct group-by key, each with a full series."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    meta: dict[tuple[Any, ...], dict[str, Any]] = {}
    for dim_values, key, magnitude in items:
        gkey = tuple(v for d, v in zip(labels["order"], dim_values) if d in dims and not isinstance(v, dict))
        counts = groups.setdefault(gkey, [0] * len(times))
        if gkey not in meta:
            meta[gkey] = {d: v for d, v in zip(labels["order"], dim_values) if d in dims}
        for n, t in enumerate(times):
            counts[n] += bucket_count(key, magnitude, granularity, t, anchor)
    out = []
    for gkey, counts in groups.items():
        entry = dict(meta[gkey])
        entry["total"] = sum(counts)
        entry["series"] = [{"time": iso(t), "count": c} for t, c in zip(times, counts)]
        out.append(entry)
    return out


def events_volume(ws: Workspace, query: dict[str, Any], as_list: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    granularity = _granularity(query.get("granularity"))
    start, end = parse_window(query)
    times = buckets(start, end, granularity)
    group_by = as_list(query.get("groupBy"))
    for g in group_by:
        if g not in ("eventName", "eventType", "source"):
            raise invalid(f"groupBy must be among eventName, eventType, source (got {g!r})", "groupBy")
    filters = {name: set(as_list(query.get(name))) for name in ("sourceId", "eventName", "eventType", "appVersion")}
    items = []
    for s in streams(ws, filters["sourceId"] or None):
        if (
            (filters["eventName"] and s.event_name not in filters["eventName"])
            or (filters["eventType"] and s.event_type not in filters["eventType"])
            or (filters["appVersion"] and s.app_version not in filters["appVersion"])
        ):
            continue
        source = {"id": s.source["id"], "name": s.source.get("name", ""), "slug": s.source["slug"]}
        items.append(((source["id"], s.event_name, s.event_type, source), s.key, s.magnitude))
    order = ("sourceKey", "eventName", "eventType", "source")
    dims = [d for d in ("eventName", "eventType") if d in group_by]
    if "source" in group_by:
        dims += ["sourceKey", "source"]
    result = _group(items, times, ws.anchor, granularity, dims, {"order": order})
    for entry in result:
        entry.pop("sourceKey", None)
    echo: dict[str, Any] = {
        "workspaceId": ws.workspace_id,
        "granularity": granularity,
        "startTime": iso(start),
        "endTime": iso(end),
    }
    for name in ("groupBy", "sourceId", "eventName", "eventType", "appVersion"):
        if as_list(query.get(name)):
            echo[name] = as_list(query.get(name))
    return result, {"path": "/events/volume", "query": echo}


DELIVERY_LIMITS = {  # granularity: (max range, max lookback)
    "MINUTE": (timedelta(hours=4), timedelta(hours=48)),
    "HOUR": (timedelta(days=14), timedelta(days=30)),
    "DAY": (timedelta(days=30), timedelta(days=30)),
}


def delivery_overview(
    ws: Workspace, metric: str, query: dict[str, Any], as_list: Any, destination: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    granularity = _granularity(query.get("granularity"))
    start, end = parse_window(query)
    max_range, lookback = DELIVERY_LIMITS[granularity]
    if end - start > max_range:
        raise invalid(f"{granularity} granularity allows a range of at most {max_range}", "endTime")
    # One day of slack: loaders align windows to midnight.
    if start < ws.now() - lookback - timedelta(days=1):
        raise invalid(f"{granularity} granularity allows startTime at most {lookback} ago", "startTime")
    times = buckets(start, end, granularity)
    group_by = as_list(query.get("groupBy"))
    filt = query.get("filter")
    if not isinstance(filt, dict):
        filt = {}
    filters = {k: set(as_list(v)) for k, v in filt.items()}
    reasons = DISCARD_REASONS.get(metric, (None,))
    dest_key = destination["id"] if destination else ""
    items = []
    for s in streams(ws, [query["sourceId"]]):
        for reason in reasons:
            dims = (s.event_name, s.event_type, s.app_version, reason)
            if any(
                filters.get(name) and value not in filters[name]
                for name, value in zip(("eventName", "eventType", "appVersion", "discardReason"), dims)
            ):
                continue
            key = digest(ws.seed, metric, dest_key, s.key, reason)
            magnitude = s.magnitude * METRIC_FACTOR[metric] // 1000 // len(reasons)
            items.append((dims, key, magnitude))
    order = ("eventName", "eventType", "appVersion", "discardReason")
    dataset = _group(items, times, ws.anchor, granularity, [d for d in order if d in group_by], {"order": order})
    for entry in dataset:
        for k in [k for k, v in entry.items() if v is None]:
            del entry[k]
    return dataset, {"total": sum(e["total"] for e in dataset)}


SUMMARY_LIMITS = {
    "MINUTE": (timedelta(hours=4), timedelta(hours=48), timedelta(hours=1)),
    "HOUR": (timedelta(days=7), timedelta(days=7), timedelta(days=7)),
    "DAY": (timedelta(days=14), timedelta(days=14), timedelta(days=14)),
}


def delivery_metrics_summary(ws: Workspace, destination: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
    granularity = _granularity(query.get("granularity"), "MINUTE")
    max_range, lookback, default_start = SUMMARY_LIMITS[granularity]
    now = ws.now()
    try:
        end = parse_time(query["endTime"]) if query.get("endTime") else now
        start = parse_time(query["startTime"]) if query.get("startTime") else end - default_start
    except ValueError:
        raise invalid("startTime and endTime must be ISO-8601 timestamps", "startTime") from None
    if end <= start:
        raise invalid("endTime must be after startTime", "endTime")
    if end - start > max_range:
        raise invalid(f"{granularity} granularity allows a range of at most {max_range}", "endTime")
    if start < now - lookback - timedelta(days=1):
        raise invalid(f"{granularity} granularity allows startTime at most {lookback} ago", "startTime")
    times = buckets(start, end, granularity)
    metrics = []
    for metric, breakdown in (
        ("successes", ("successes",)),
        ("failures", DISCARD_REASONS["failed-delivery"]),
        ("discarded", DISCARD_REASONS["filtered-at-destination"]),
    ):
        parts: list[dict[str, Any]] = []
        for reason in breakdown:
            key = digest(ws.seed, "summary", destination["id"], query["sourceId"], metric, reason)
            magnitude = 20_000 if metric == "successes" else 400
            parts.append(
                {
                    "metricName": reason if metric != "successes" else "successes",
                    "value": sum(bucket_count(key, magnitude, granularity, t, ws.anchor) for t in times),
                }
            )
        metrics.append({"metricName": metric, "total": sum(p["value"] for p in parts), "breakdown": parts})
    return {"sourceId": query["sourceId"], "destinationMetadataId": destination["metadata"]["id"], "metrics": metrics}


# ---- usage -----------------------------------------------------------------------------------


def parse_period(value: Any) -> date:
    try:
        d = date.fromisoformat(str(value)[:10])
    except ValueError:
        raise invalid("period must be a date such as 2024-02-01", "period") from None
    return d.replace(day=1)


def _usage_days(ws: Workspace, period: date) -> list[date]:
    last = period.replace(day=calendar.monthrange(period.year, period.month)[1])
    today = ws.anchor.date()
    return [period + timedelta(days=k) for k in range((min(last, today) - period).days + 1)]


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def usage(ws: Workspace, what: str, per_source: bool, query: dict[str, Any]) -> list[dict[str, Any]]:
    period = parse_period(query.get("period"))
    days = _usage_days(ws, period)
    sources = [r.ident for r in ws.rows("sources")]
    next_month = (period + timedelta(days=32)).replace(day=1)
    period_start, period_end = int(_midnight(period).timestamp()), int(_midnight(next_month).timestamp())
    fields = ("apiCalls",) if what == "api" else ("anonymous", "anonymousIdentified", "identified", "neverIdentified")
    totals = {(s, f): 0 for s in sources for f in fields}
    rows = []
    for d in days:
        day_index = (d - date(1970, 1, 1)).days
        for s in sources:
            for f in fields:
                totals[(s, f)] += 50 + mix(digest(ws.seed, what, s, f), day_index) % 5000
        stamp = iso(_midnight(d))
        groups = [[s] for s in sources] if per_source else [sources]
        for group in groups:
            row: dict[str, Any] = {"sourceId": group[0]} if per_source else {}
            if what == "mtu":
                row.update(periodStart=period_start, periodEnd=period_end)
            for f in fields:
                row[f] = str(sum(totals[(s, f)] for s in group))  # bigint strings, as the API sends
            row["timestamp"] = stamp
            rows.append(row)
    return rows

"""What a full sync (what `segment-assets sync` runs: every configuration stream, the last daily
partition, the current month) will cost, from the first pages the probe read.

Requests ≈ parent rows × fan-out × pages, counted from `totalEntries` of one-item pages of the
parent lists and extrapolated from one sampled parent for deeper levels; minimum time from each
endpoint's documented rate limit, along the chain of parents a stream waits for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from segment_assets.api import spec
from segment_assets.api.client import DEFAULT_GLOBAL_PER_MINUTE, SegmentClient
from segment_assets.api.rate_limits import minimum_seconds
from segment_assets.api.streams import STREAMS, Partitioning, RowFilter
from segment_assets.cli.doctor.probe import Count, Probe, matches
from segment_assets.engine.reading import plan_requests
from segment_assets.engine.windows import clamp_to_retention, window_queries

TOP_ENDPOINTS = 8


@dataclass
class StreamEstimate:
    stream: str
    operation_id: str
    requests: Count
    rate_limit_per_minute: float | None
    min_seconds: float  # this endpoint alone, at its documented limit (after the client's burst)
    chain_seconds: float  # including the parents it waits for
    chain: list[str]  # parent streams, root first
    note: str = ""


@dataclass
class Estimate:
    requests: Count
    min_seconds: float
    bound_by: str  # the stream whose chain is the slowest, or "global" for the client's ceiling
    streams: list[StreamEstimate]
    rows: dict[str, str]  # counted parent rows, as text (exact, ≈ or ≥)
    window: dict[str, str]  # partition windows the estimate assumes

    def top(self, n: int = TOP_ENDPOINTS) -> list[StreamEstimate]:
        """The streams a full sync waits longest for (those the rate limits slow down at all)."""
        slow = [s for s in self.streams if s.chain_seconds > 0]
        return sorted(slow, key=lambda s: (-s.chain_seconds, -s.requests.value, s.stream))[:n]


def counted_rows(probe: Probe, name: str, where: RowFilter | None = None) -> Count:
    """Rows of stream `name` (matching `where`), as far as one-item pages tell."""
    stream = STREAMS[name]
    census = probe.census.get(name)
    parents = counted_rows(probe, stream.parent.stream, stream.parent.where) if stream.parent else Count(1)
    if parents == Count(0):
        return Count(0)
    if census is None or (census.status in ("skipped", "unknown") and not census.per_set):
        return Count(0, "at_least")
    if census.status == "unavailable":
        return Count(0)
    counts = census.per_set
    if where is not None:
        fan_param = next((p for p in stream.fan_out if spec.snake_case(p) == where.column), None)
        if fan_param is not None:
            counts = [(fan, n) for fan, n in counts if matches({where.column: fan.get(fan_param)}, where)]
        else:
            counts = [(fan, n.loose()) for fan, n in counts]  # an upper bound: not every row matches
    per_parent = sum((n for _, n in counts), Count(0))
    if not stream.parent:
        return per_parent
    product = parents * per_parent
    return product if parents.value <= 1 and parents.precision == "exact" else product.loose()


def estimate_full_sync(probe: Probe, client: SegmentClient) -> Estimate:
    """What `segment-assets sync` costs: requests, and the least time the documented rate limits allow."""
    selected = {s.name: s for s in probe.streams}
    needed = {s.parent.stream for s in probe.streams if s.parent}
    needed |= {
        s.name for s in probe.streams if not s.parent and s.windowing and not s.windowing.period_param
    }  # days may span many pages
    for stream in probe.streams:
        if stream.name in needed:
            probe.take_census(client, stream)

    estimates: dict[str, StreamEstimate] = {}
    for stream in probe.streams:
        parents = counted_rows(probe, stream.parent.stream, stream.parent.where) if stream.parent else Count(1)
        windows: list[dict[str, Any]] | None = None
        if stream.windowing:
            span = probe.windows.get(stream.windowing.partitioning)
            clamped = clamp_to_retention(stream.windowing, *span, now=probe.now) if span else None
            windows = window_queries(stream.windowing, *clamped) if clamped else []
        sets = Count(len(plan_requests(stream, [{}], windows))) * parents
        inline_note = ""
        carrier = probe.census.get(stream.parent.stream) if stream.parent and stream.inline else None
        if carrier is not None and carrier.full_lists and carrier.full_lists[1]:
            full, seen = carrier.full_lists  # only rows whose inline list is full (or absent) are requested
            sets = Count(round(sets.value * full / seen), "approx") if full < seen else sets
            inline_note = (
                f"records inline in the parent list: only rows whose list is full are requested ({full} of {seen} "
                "sampled)"
            )
        census = probe.census.get(stream.name)
        if census is not None and census.status == "unavailable":
            per_set, note = Count(1), f"refused (HTTP {census.http_status}): one request per parameter set"
        elif census is not None and census.per_set:
            pages = sum(
                (Count(max(1, math.ceil(n.value / stream.max_page_size)), n.precision) for _, n in census.per_set),
                Count(0),
            )
            per_set = Count(max(1, round(pages.value / len(census.per_set))), pages.precision)
            note = "pages counted"
        elif stream.paging.value in ("none", "single"):
            per_set, note = Count(1), ""
        else:
            per_set, note = Count(1, "approx"), "one page per request assumed"
        requests = sets * per_set
        note = "; ".join(n for n in (inline_note, note) if n)
        limit = stream.rate_limit_per_minute
        seconds = 0.0
        if limit:
            seconds = minimum_seconds(requests.value, limit)  # as the shared rate budget paces them
        chain: list[str] = []
        above = stream.parent.stream if stream.parent else None
        while above in selected:
            chain.insert(0, above)
            above = selected[above].parent.stream if selected[above].parent else None  # type: ignore[union-attr]
        parent_seconds = estimates[chain[-1]].chain_seconds if chain else 0.0
        estimates[stream.name] = StreamEstimate(
            stream.name, stream.operation_id, requests, limit, seconds, seconds + parent_seconds, chain, note
        )
    streams = list(estimates.values())
    total = sum((s.requests for s in streams), Count(0))
    slowest = max(streams, key=lambda s: s.chain_seconds, default=None)
    global_seconds = total.value * 60.0 / DEFAULT_GLOBAL_PER_MINUTE
    if slowest is not None and slowest.chain_seconds >= global_seconds:
        min_seconds, bound_by = slowest.chain_seconds, slowest.stream
    else:
        min_seconds, bound_by = global_seconds, "global"
    parent_streams = {s.parent.stream for s in probe.streams if s.parent}
    rows = {name: str(counted_rows(probe, name)) for name in sorted(parent_streams)}
    window = {
        w.value: f"{a:%Y-%m-%d}" if w is Partitioning.DAILY else f"{a:%Y-%m}" for w, (a, _) in probe.windows.items()
    }
    return Estimate(total, min_seconds, bound_by, streams, rows, window)

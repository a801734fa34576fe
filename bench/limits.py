"""The rate-limit arithmetic the limit benchmarks compare against.

Minimum time of one endpoint: R requests at N per minute, starting with a fresh budget of N,
need their last request ceil(R/N − 1) minutes after the first (N at once, then N per further
minute); R ≤ N costs nothing. A child stream cannot start before its parent's table is
written, so a chain of rate-limited streams adds up: the bound of a sync is the longest
parent → child chain of those minimum times, and no sync reading those requests can be faster
whatever its concurrency (the per-token limit, 1200/min here, is checked the same way).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GLOBAL_PER_MINUTE = 1200  # the simulator's realistic per-token limit (REALISTIC_GLOBAL_PER_MINUTE)
WINDOW = 60.0


def own_minutes(requests: int, per_minute: float | None) -> int:
    if not per_minute or requests <= per_minute:
        return 0
    return math.ceil(requests / per_minute - 1)


@dataclass
class Bound:
    seconds: float
    chain: list[tuple[str, str, int, float | None, int]]  # (stream, operation, requests, limit/min, minutes)
    per_operation: list[tuple[str, str, int, float | None, int]]  # every limited operation, slowest first
    global_minutes: int


def rate_bound(requests_by_operation: Mapping[str, int]) -> Bound:
    """The fastest any client could make these requests under the documented limits."""
    from segment_assets.api.streams import STREAMS

    by_op = {s.operation_id: s for s in STREAMS.values() if s.materialized}
    rows = {}
    for op, n in requests_by_operation.items():
        stream = by_op.get(op)
        if stream is None:
            continue
        rows[stream.name] = (
            stream.name,
            op,
            n,
            stream.rate_limit_per_minute,
            own_minutes(n, stream.rate_limit_per_minute),
        )

    chains: dict[str, list[tuple[str, str, int, float | None, int]]] = {}

    def chain(name: str) -> list[tuple[str, str, int, float | None, int]]:
        if name not in chains:
            stream = STREAMS[name]
            above = chain(stream.parent.stream) if stream.parent and stream.parent.stream in rows else []
            chains[name] = [*above, rows[name]]
        return chains[name]

    longest = max((chain(n) for n in rows), key=lambda c: sum(r[4] for r in c), default=[])
    longest = [r for r in longest if r[3]] or longest[-1:]
    total = sum(requests_by_operation.values())
    global_minutes = own_minutes(total, GLOBAL_PER_MINUTE)
    seconds = 60.0 * max(sum(r[4] for r in longest), global_minutes)
    limited = sorted((r for r in rows.values() if r[3]), key=lambda r: (-r[4], -r[2] / r[3]))
    return Bound(seconds, longest, limited, global_minutes)


def needed(events: Iterable[tuple[float, str, int]]) -> Counter[str]:
    """Requests per operation that were answered (a 429 is a request the client should not have sent)."""
    return Counter(op for _, op, status in events if status != 429)


def max_in_window(times: list[float], width: float = WINDOW) -> int:
    """The most timestamps in any half-open window [t, t + width)."""
    times = sorted(times)
    best = 0
    for i, t in enumerate(times):
        best = max(best, bisect_left(times, t + width, i) - i)
    return best


def window_utilisation(
    events: list[tuple[float, str, int]], width: float = WINDOW
) -> list[tuple[str, int, float, float]]:
    """Per limited operation and for the token as a whole ('*'): (name, max requests started in
    any `width`-second window, the limit per minute, that max over the limit). Every request the
    server saw counts, 429s included."""
    from segment_assets.api.spec import operations

    limits = {op.operation_id: op.rate_limit_per_minute for op in operations().values() if op.rate_limit_per_minute}
    times: dict[str, list[float]] = {}
    for t, op, _ in events:
        times.setdefault(op, []).append(t)
    out = []
    for op, ts in times.items():
        if op in limits:
            m = max_in_window(ts, width)
            out.append((op, m, limits[op], m / limits[op]))
    everything = [t for t, _, _ in events]
    m = max_in_window(everything, width)
    out.append(("* (every operation, per token)", m, float(GLOBAL_PER_MINUTE), m / GLOBAL_PER_MINUTE))
    return sorted(out, key=lambda r: -r[3])


def start_waits(events: Iterable[tuple[float, str, int]]) -> list[tuple[str, str, float]]:
    """(child, parent, seconds from the parent's last request to the child's first) for every stream
    whose parent the same run read (same partitioning), longest first: how long a stream waited once
    its parent's requests were done (the parent's write included), e.g. for a slot."""
    from segment_assets.api.streams import STREAMS

    by_op = {s.operation_id: s for s in STREAMS.values() if s.materialized}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for t, op, _ in events:
        stream = by_op.get(op)
        if stream is not None:
            first[stream.name] = min(t, first.get(stream.name, t))
            last[stream.name] = max(t, last.get(stream.name, t))
    out = []
    for name, t in first.items():
        stream = STREAMS[name]
        parent = stream.parent.stream if stream.parent else None
        if parent in last and bool(stream.windowing) == bool(STREAMS[parent].windowing):
            out.append((name, parent, t - last[parent]))
    return sorted(out, key=lambda r: -r[2])

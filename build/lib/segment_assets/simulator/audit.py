"""The audit trail: millions of seeded events computed on demand, plus events from mutations.

Seeded event ``i`` (0 = newest) is a pure function of (seed, i); its timestamp strictly
decreases with ``i`` over [anchor - 90 days, anchor], so a time window maps to an index
range by binary search and nothing is stored.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .generator import BASE62, digest, mix, segment_id

if TYPE_CHECKING:
    from .workspace import Workspace

SPAN_MS = 90 * 86400 * 1000
# Weights of resource kinds in seeded events: config churn is mostly sources and destinations.
BASE_EVENT_KINDS = (
    ("sources", "Source", 6),
    ("destinations", "Destination", 8),
    ("warehouses", "Warehouse", 1),
    ("tracking_plans", "Tracking Plan", 3),
    ("functions", "Function", 2),
    ("users", "User", 2),
    ("user_groups", "User Group", 1),
    ("labels", "Label", 1),
    ("spaces", "Space", 1),
    ("audiences", "Audience", 2),
    ("transformations", "Transformation", 1),
)
ACTIONS = ("Modified", "Modified", "Modified", "Modified", "Created", "Created", "Deleted")


_PAIRS = tuple(a + b for a in BASE62 for b in BASE62)  # two base62 digits per divmod: ids are a hot path
_MINUTES: dict[int, str] = {}


def _b62(n: int) -> str:
    """22 base62 characters of a 128-bit number."""
    out = []
    for _ in range(11):
        n, r = divmod(n, 3844)
        out.append(_PAIRS[r])
    return "".join(out)


def iso_ms(ms: int) -> str:
    minute, rest = divmod(ms, 60_000)
    prefix = _MINUTES.get(minute)
    if prefix is None:
        if len(_MINUTES) > 100_000:
            _MINUTES.clear()
        prefix = _MINUTES[minute] = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")
    return f"{prefix}{rest // 1000:02d}.{rest % 1000:03d}Z"


class AuditTrail:
    def __init__(self, ws: Workspace, n: int) -> None:
        self.ws = ws
        self.n = n
        self.t0_ms = int(ws.anchor.timestamp() * 1000)
        self._s1 = digest(ws.seed, "audit", 1)
        self._s2 = digest(ws.seed, "audit", 2)
        self._pool: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] | None = None
        self._actors: tuple[tuple[str, str], ...] = ()
        self._extra: list[tuple[int, int, dict[str, Any]]] = []  # (ts_ms, seq, event), ascending
        self._seq = 0
        self._filter_cache: dict[tuple[Any, ...], list[int]] = {}

    # ---- seeded events -----------------------------------------------------------------------

    def ts_ms(self, i: int) -> int:
        u = 51 + mix(self._s1, i) % 922  # jitter inside the slot keeps timestamps strictly ordered
        return self.t0_ms - ((i * 1024 + u) * SPAN_MS) // (self.n * 1024)

    def _ensure_pool(self) -> None:
        if self._pool is not None:
            return
        with self.ws.lock:
            pool = []
            for kind, rtype, weight in BASE_EVENT_KINDS:
                self.ws.rows(kind)
                seeded = self.ws.seeded.get(kind, ())
                if seeded:
                    pool.extend([(rtype, seeded)] * weight)
            self.ws.rows("users")
            users = {r.ident: r.obj for r in self.ws.rows("users")}
            self._actors = tuple((ident, users.get(ident, {}).get("email", "")) for ident, _ in self.ws.seeded["users"])
            self._pool = tuple(pool)

    def event(self, i: int) -> dict[str, Any]:
        pool = self._pool
        if pool is None:
            self._ensure_pool()
            pool = self._pool
            assert pool is not None
        h = mix(self._s2, i)
        rtype, resources = pool[h % len(pool)]
        ident, name = resources[(h >> 12) % len(resources)]
        actor, email = self._actors[(h >> 28) % len(self._actors)]
        event = {
            "id": _b62((mix(self._s1 ^ 0x5A5A, i) << 64) | h),
            "timestamp": iso_ms(self.ts_ms(i)),
            "type": f"{rtype} {ACTIONS[(h >> 40) % len(ACTIONS)]}",
            "actor": actor,
            "resourceId": ident,
            "resourceType": rtype,
            "resourceName": name,
        }
        if email:
            event["actorEmail"] = email
        return event

    def _first_below(self, ms: int) -> int:
        """Smallest i whose timestamp is < ms (timestamps decrease with i)."""
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) // 2
            if self.ts_ms(mid) < ms:
                hi = mid
            else:
                lo = mid + 1
        return lo

    # ---- events from mutations ---------------------------------------------------------------

    def append(self, resource_type: str, action: str, ident: str, name: str, when: datetime) -> dict[str, Any]:
        with self.ws.lock:
            self._seq += 1
            ms = int(when.timestamp() * 1000)
            event = {
                "id": segment_id(self.ws.seed, "audit-change", self._seq),
                "timestamp": iso_ms(ms),
                "type": f"{resource_type} {action}",
                "actor": "public-api-token",
                "resourceId": ident,
                "resourceType": resource_type,
                "resourceName": name,
            }
            bisect.insort(self._extra, (ms, self._seq, event), key=lambda e: (e[0], e[1]))
            self._filter_cache.clear()
            return dict(event)

    def add_synthetic(self, n: int, when: datetime) -> list[dict[str, Any]]:
        self._ensure_pool()
        out = []
        for k in range(n):
            template = self.event(self.n + self._seq + k + 1)
            rtype, action = template["type"].rsplit(" ", 1)
            out.append(self.append(rtype, action, template["resourceId"], template["resourceName"], when))
        return out

    def latest(self) -> datetime:
        """The newest event time: the default endTime, so unchanged data gives identical cursors."""
        with self.ws.lock:
            ms = max(self.t0_ms, self._extra[-1][0] if self._extra else self.t0_ms)
        return datetime.fromtimestamp(ms / 1000, UTC)

    # ---- queries -----------------------------------------------------------------------------

    def query(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        resource_id: str | None = None,
        resource_type: str | None = None,
    ) -> AuditView:
        """Events with start <= timestamp < end (newest first), optionally for one resource."""
        self._ensure_pool()
        start_ms = int(start.timestamp() * 1000) if start else None
        end_ms = int(end.timestamp() * 1000) if end else None
        lo = self._first_below(end_ms) if end_ms is not None else 0
        hi = self._first_below(start_ms) if start_ms is not None else self.n
        hi = max(hi, lo)
        base: range | list[int] = range(lo, hi)
        if resource_id is not None or resource_type is not None:
            key = (lo, hi, resource_id, resource_type)
            cached = self._filter_cache.get(key)
            if cached is None:
                cached = [i for i in base if self._matches(self.event(i), resource_id, resource_type)]
                self._filter_cache[key] = cached
            base = cached
        with self.ws.lock:
            extra = [
                (ms, e)
                for ms, _, e in reversed(self._extra)
                if (start_ms is None or ms >= start_ms)
                and (end_ms is None or ms < end_ms)
                and self._matches(e, resource_id, resource_type)
            ]
        return AuditView(self, base, extra)

    @staticmethod
    def _matches(event: dict[str, Any], resource_id: str | None, resource_type: str | None) -> bool:
        return (resource_id is None or event["resourceId"] == resource_id) and (
            resource_type is None or event["resourceType"].lower() == resource_type.lower()
        )


class AuditView:
    """A newest-first merge of seeded events (by index) and mutation events, sliceable by offset."""

    def __init__(self, trail: AuditTrail, base: range | list[int], extra: list[tuple[int, dict[str, Any]]]) -> None:
        self.trail = trail
        self.base = base
        self.extra = [e for _, e in extra]
        # Merged position of each extra event: extras precede seeded events of equal or older time.
        self._pos = [j + self._newer_base(ms) for j, (ms, _) in enumerate(extra)]

    def _newer_base(self, ms: int) -> int:
        lo, hi = 0, len(self.base)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.trail.ts_ms(self.base[mid]) > ms:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def __len__(self) -> int:
        return len(self.base) + len(self.extra)

    def slice(self, a: int, b: int | None) -> list[dict[str, Any]]:
        total = len(self)
        b = total if b is None else min(b, total)
        out = []
        e = bisect.bisect_left(self._pos, a)
        k = a
        while k < b:
            if e < len(self._pos) and self._pos[e] == k:
                out.append(dict(self.extra[e]))
                e += 1
            else:
                out.append(self.trail.event(self.base[k - e]))
            k += 1
        return out

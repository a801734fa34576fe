"""Per-token rate limits: token buckets per (token, operation) and per token ("*")."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from .spec import ApiSpec

# Segment publishes no global number; 1200/min keeps "realistic" runs honest without
# starving a normal extraction. Per-operation limits come from the spec's x-rate-limit.
REALISTIC_GLOBAL_PER_MINUTE = 1200
UNLIMITED_REMAINING = 1_000_000


@dataclass
class Verdict:
    allowed: bool
    consumed: int
    remaining: int
    reset_epoch: float
    ms_before_next: int = 0

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Consumed", str(self.consumed)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", formatdate(self.reset_epoch, usegmt=True)),
        ]


class _Bucket:
    __slots__ = ("capacity", "tokens", "stamp")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.tokens = float(capacity)
        self.stamp = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.capacity / 60.0)
        self.stamp = now


class RateLimiter:
    """``limits`` maps operationId or "*" to requests per minute; None means unlimited."""

    def __init__(
        self, limits: dict[str, int] | str | None, spec: ApiSpec, clock: Callable[[], float] = time.time
    ) -> None:
        if limits == "realistic":
            limits = {
                op.operation_id: op.rate_limit_per_minute for op in spec.operations.values() if op.rate_limit_per_minute
            }
            limits["*"] = REALISTIC_GLOBAL_PER_MINUTE
        elif limits in ("none", None):
            limits = None
        elif not isinstance(limits, dict):
            raise ValueError("rate_limits must be None, 'realistic' or a dict of requests per minute")
        self.limits: dict[str, int] | None = limits
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._window: dict[str, tuple[int, int]] = {}  # token -> (minute, count) when unlimited
        self._lock = threading.Lock()

    def check(self, token: str, operation_id: str) -> Verdict:
        now = self._clock()
        with self._lock:
            if not self.limits:
                minute = int(now // 60)
                start, count = self._window.get(token, (minute, 0))
                count = count + 1 if start == minute else 1
                self._window[token] = (minute, count)
                return Verdict(True, count, UNLIMITED_REMAINING, (minute + 1) * 60.0)
            buckets = []
            for key in (operation_id, "*"):
                rpm = self.limits.get(key)
                if rpm:
                    bucket = self._buckets.get((token, key))
                    if bucket is None:
                        bucket = self._buckets[(token, key)] = _Bucket(int(rpm), now)
                    bucket.refill(now)
                    buckets.append(bucket)
            if not buckets:
                return Verdict(True, 0, UNLIMITED_REMAINING, now + 60)
            empty = [b for b in buckets if b.tokens < 1.0]
            if empty:
                wait = max((1.0 - b.tokens) * 60.0 / b.capacity for b in empty)
                tightest = min(empty, key=lambda b: b.tokens)
                return Verdict(
                    False, tightest.capacity - int(tightest.tokens), 0, now + wait, max(1, math.ceil(wait * 1000))
                )
            for b in buckets:
                b.tokens -= 1.0
            tightest = min(buckets, key=lambda b: b.tokens)
            refill = (tightest.capacity - tightest.tokens) * 60.0 / tightest.capacity
            return Verdict(True, tightest.capacity - int(tightest.tokens), int(tightest.tokens), now + refill)

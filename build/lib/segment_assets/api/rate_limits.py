"""Request budgets shared by everything that uses one token against one API URL.

Segment counts its limits per token and per endpoint (2/min for warehouse syncs, 25/min for
space schemas, ...), whoever sends the requests: threads of one run, the processes of a
Dagster run, concurrent runs, the CLI, other machines. So the budget lives in a store that
all of them share, keyed by a hash of base URL + token (the token itself is never stored):

- `MemoryStore`: this process only (threads);
- `FileStore`: every process on this machine (one SQLite file per key in a directory);
- `RedisStore`: every machine that reaches one Redis (one atomic Lua script per request).

Semantics, the same in every store: **at most N requests start in any window of
`window + margin` seconds**, for each operation with a limit of its own and for the
per-token (global) limit. This is a sliding-window log with reservations: a caller takes the
earliest instant that keeps every such window at N or fewer (first fit: a slot never moves
once handed out, and a slot pushed late by the global limit does not hold back other
operations), records it and sleeps until it. A schedule with at most N starts in every
window of length W never exceeds a server that counts N per fixed one-minute window, nor a
token bucket of capacity N refilled N per minute (any interval of d seconds holds at most
N·(⌊d/W⌋ + 1) ≤ N + N·d/60 starts). The margin (0.5 s by default) absorbs what separates our
start from the server's count: clock skew between machines, latency jitter, a sleep that
overshoots. It costs under 1 % of the rate at a 60 s window. A server that was already
drained (by a client outside the store) can still answer 429; `pause` handles that.

`pause(operation_id, seconds)` follows a 429 (`msBeforeNext`, else `X-RateLimit-Reset`) or a
response with `X-RateLimit-Remaining: 0`: nobody starts that operation before now + seconds.
Only for an operation without a limit of its own (so the exhausted limit is the per-token
one) does the pause hold back every operation (`RateBudget.pause` decides).

Clocks: the memory store uses the monotonic clock, the file store the machine's wall clock
(one clock for every process), the Redis store the Redis server's clock (one clock for
every machine). Times are integer microseconds so that every store computes exactly alike.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from pathlib import Path

WINDOW_SECONDS = 60.0
MARGIN_SECONDS = 0.5
EVERY_OPERATION = "*"  # the name of the per-token log and pause
STORE_CHOICES = "'memory', 'file', 'file:/some/dir' or 'redis://host:port/db'"


@dataclass(frozen=True)
class Limit:
    """At most `count` starts in any `period_us` microseconds, for the log called `name`."""

    name: str
    count: int
    period_us: int


def window_limit(
    name: str, per_minute: float | None, window: float = WINDOW_SECONDS, margin: float = MARGIN_SECONDS
) -> Limit | None:
    """A limit of `per_minute` requests as N starts per window; None means no limit.

    A fractional limit keeps a whole N and stretches the window (2.5/min: 2 per 48 s,
    0.5/min: 1 per 120 s), never rounding up past the documented rate."""
    if per_minute is None or per_minute == 0:
        return None
    if not isinstance(per_minute, (int, float)) or math.isnan(per_minute) or per_minute < 0:
        raise ValueError(
            f"rate limit for {name!r} must be a positive number of requests per minute, got {per_minute!r}"
        )
    if math.isinf(per_minute):
        return None
    count = max(1, math.floor(per_minute))
    return Limit(name, count, round((window * count / per_minute + margin) * 1_000_000))


def minimum_seconds(requests: float, per_minute: float | None) -> float:
    """The least time `requests` take under a limit of `per_minute` with a fresh budget: N start at
    once, then N per window (what `window_limit` enforces, without the margin)."""
    limit = window_limit("estimate", per_minute, margin=0.0)
    if limit is None or requests <= 0:
        return 0.0
    return (math.ceil(requests / limit.count) - 1) * limit.period_us / 1_000_000


def earliest_fit(starts: Sequence[int], at: int, count: int, period: int) -> int:
    """The earliest instant >= `at` that can join the sorted `starts` with every half-open
    window of `period` still holding at most `count` starts."""
    while True:
        lo = bisect_right(starts, at - period)  # starts in (at - period, at + period) can share a window with `at`
        hi = bisect_left(starts, at + period, lo)
        if hi - lo < count:
            return at
        here = bisect_right(starts, at, lo, hi)
        escape = None
        # Runs of `count` consecutive starts that fit in one window together with `at`; only
        # runs ending just before `at`, straddling it or beginning just after it can.
        for k in range(max(lo, here - count), min(here, hi - count) + 1):
            first, last = starts[k], starts[k + count - 1]
            if max(last, at) - min(first, at) < period and (escape is None or first + period > escape):
                escape = first + period
        if escape is None:
            return at
        at = escape


def reserve_slot(now: int, paused_until: int, logs: Sequence[tuple[MutableSequence[int], Limit]]) -> int:
    """Find the earliest slot every log admits (not before `paused_until`), record it in each
    log and drop what no future window can reach. The logs must be sorted."""
    slot = max(now, paused_until)
    moved = True
    while moved:
        moved = False
        for starts, limit in logs:
            fit = earliest_fit(starts, slot, limit.count, limit.period_us)
            if fit != slot:
                slot, moved = fit, True
    for starts, limit in logs:
        del starts[: bisect_right(starts, now - limit.period_us)]
        insort(starts, slot)
    return slot


def budget_key(base_url: str, token: str) -> str:
    """Names the budget of one token at one API URL without revealing the token."""
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{token}".encode()).hexdigest()[:32]


class RateLimitStore(ABC):
    """Where the starts and pauses of one budget key are kept. Thread-safe."""

    def __init__(self, window: float = WINDOW_SECONDS, margin: float = MARGIN_SECONDS) -> None:
        if not window > 0 or not margin >= 0:
            raise ValueError(f"rate-limit window must be > 0 and margin >= 0 seconds, got {window!r} and {margin!r}")
        self.window = window
        self.margin = margin
        self._pauses_guard = threading.Lock()
        self._pauses_seen: dict[str, tuple[float, float]] = {}  # operation -> (read at, paused until), monotonic

    # Without limits to record (pacing off) a request only asks whether a 429 paused its
    # operation, here or in another process; a store outside this process answers that from a
    # copy at most this old, instead of one file or Redis round trip per request.
    pause_refresh_seconds: float = 0.0

    def reserve(self, operation_id: str, per_minute: float | None, global_per_minute: float | None) -> float:
        """Reserve the next start of `operation_id`; returns the seconds to sleep before it."""
        limits = [
            lim
            for lim in (
                window_limit(operation_id, per_minute, self.window, self.margin),
                window_limit(EVERY_OPERATION, global_per_minute, self.window, self.margin),
            )
            if lim
        ]
        if not limits and self.pause_refresh_seconds:
            return self._paused_wait(operation_id)
        return max(0.0, self._reserve(operation_id, limits) / 1_000_000)

    def _paused_wait(self, operation_id: str) -> float:
        now = time.monotonic()
        with self._pauses_guard:
            read_at, until = self._pauses_seen.get(operation_id, (-math.inf, 0.0))
        if now - read_at > self.pause_refresh_seconds:
            until = now + max(0.0, self._reserve(operation_id, []) / 1_000_000)
            with self._pauses_guard:
                self._pauses_seen[operation_id] = (now, until)
        return max(0.0, until - now)

    def pause(self, operation_id: str | None, seconds: float) -> None:
        """Nobody starts `operation_id` (None: any operation) before now + `seconds`."""
        if seconds > 0:
            self._pause(operation_id or EVERY_OPERATION, round(seconds * 1_000_000))
            with self._pauses_guard:
                self._pauses_seen.clear()  # this process's own pause counts at once

    def close(self) -> None:
        """Release connections; a store that holds none ignores it."""

    @abstractmethod
    def _reserve(self, operation_id: str, limits: Sequence[Limit]) -> int:
        """Record a start; returns microseconds until it."""

    @abstractmethod
    def _pause(self, name: str, micros: int) -> None: ...


class MemoryStore(RateLimitStore):
    """This process's threads only."""

    def __init__(self, window: float = WINDOW_SECONDS, margin: float = MARGIN_SECONDS) -> None:
        super().__init__(window, margin)
        self._lock = threading.Lock()
        self._starts: dict[str, list[int]] = {}
        self._paused: dict[str, int] = {}

    def __repr__(self) -> str:
        return "MemoryStore()"

    def _reserve(self, operation_id: str, limits: Sequence[Limit]) -> int:
        with self._lock:
            now = time.monotonic_ns() // 1000
            paused = max(self._paused.get(operation_id, 0), self._paused.get(EVERY_OPERATION, 0))
            slot = reserve_slot(now, paused, [(self._starts.setdefault(lim.name, []), lim) for lim in limits])
        return slot - now

    def _pause(self, name: str, micros: int) -> None:
        with self._lock:
            until = time.monotonic_ns() // 1000 + micros
            self._paused[name] = max(self._paused.get(name, 0), until)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget (
    name TEXT PRIMARY KEY,                   -- operationId, or '*' for the per-token limit
    starts BLOB NOT NULL DEFAULT x'',         -- reserved starts, sorted int64 microseconds (wall clock)
    paused_until INTEGER NOT NULL DEFAULT 0   -- microseconds (wall clock)
) WITHOUT ROWID
"""


class FileStore(RateLimitStore):
    """Every process on this machine: one SQLite file per budget key in `directory`.

    Each reservation is one `BEGIN IMMEDIATE` transaction (read two rows, write two rows), so
    processes take turns; WAL and synchronous=OFF because only mutual exclusion matters: a
    budget lost in a crash of the machine costs at most one window of caution. A process
    waiting for the lock polls (SQLite's busy handler, sleeps of 1 to 100 ms, not FIFO); that
    is fine because a caller given a later slot sleeps instead of asking again, so the lock is
    rarely contended. Not for a directory shared by several machines (SQLite locking over NFS
    is unreliable and their clocks differ): use Redis there."""

    pause_refresh_seconds = 0.25

    def __init__(
        self,
        directory: str | os.PathLike[str],
        key: str,
        window: float = WINDOW_SECONDS,
        margin: float = MARGIN_SECONDS,
    ) -> None:
        super().__init__(window, margin)
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"cannot create the rate-limit directory {self.directory} ({exc}); set rate_limit_store "
                f"to 'file:/a/writable/dir' or 'memory'"
            ) from exc
        self.path = self.directory / f"{key}.sqlite3"
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        # A connection inherited through fork must not be used by the child.
        if self._con is None or self._pid != os.getpid():
            con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            deadline = time.monotonic() + 60.0
            while True:
                try:
                    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        con.execute("PRAGMA journal_mode=WAL")
                    con.execute("PRAGMA synchronous=OFF")
                    con.execute(_SCHEMA)
                    break
                except sqlite3.OperationalError as exc:
                    # Opening while other processes write can answer "locked" at once, without the
                    # busy timeout (journal-mode switch, WAL recovery): try again shortly.
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        con.close()
                        raise
                    time.sleep(0.005)
            self._con, self._pid = con, os.getpid()
        return self._con

    def _reserve(self, operation_id: str, limits: Sequence[Limit]) -> int:
        with self._lock:
            con = self._connection()
            if not limits:  # nothing to record (pacing off): only the pauses count, no write lock needed
                now = time.time_ns() // 1000
                paused = con.execute(
                    "SELECT max(paused_until) FROM budget WHERE name IN (?, ?)", (operation_id, EVERY_OPERATION)
                ).fetchone()[0]
                return max(now, paused or 0) - now
            con.execute("BEGIN IMMEDIATE")
            try:
                names = (operation_id, EVERY_OPERATION, *(lim.name for lim in limits))
                rows = {
                    name: (starts, paused)
                    for name, starts, paused in con.execute(
                        f"SELECT name, starts, paused_until FROM budget WHERE name IN ({','.join('?' * len(names))})",
                        names,
                    )
                }
                now = time.time_ns() // 1000  # read inside the lock: slots follow the order of transactions
                paused = max(rows.get(operation_id, (b"", 0))[1], rows.get(EVERY_OPERATION, (b"", 0))[1])
                logs = []
                for lim in limits:
                    starts = array("q")
                    starts.frombytes(rows.get(lim.name, (b"", 0))[0])
                    logs.append((starts, lim))
                slot = reserve_slot(now, paused, logs)
                con.executemany(
                    "INSERT INTO budget (name, starts) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET starts = excluded.starts",
                    [(lim.name, starts.tobytes()) for starts, lim in logs],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return slot - now

    def _pause(self, name: str, micros: int) -> None:
        with self._lock:
            self._connection().execute(
                "INSERT INTO budget (name, paused_until) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET paused_until = max(paused_until, excluded.paused_until)",
                (name, time.time_ns() // 1000 + micros),
            )

    def close(self) -> None:
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None


# KEYS: pause of the operation, pause of every operation, sequence, then one start log (a
# sorted set scored in microseconds) per limit; ARGV: count and period (µs) per log.
# Returns microseconds until the reserved slot. The same algorithm as `reserve_slot`.
_RESERVE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function us(x) return string.format('%.0f', x) end
local slot = now
for i = 1, 2 do
  local p = tonumber(redis.call('GET', KEYS[i]) or '0')
  if p > slot then slot = p end
end
local function fit(key, count, period, at)
  while true do
    local lo, hi = '(' .. us(at - period), '(' .. us(at + period)
    if redis.call('ZCOUNT', key, lo, hi) < count then return at end
    local raw = redis.call('ZRANGEBYSCORE', key, lo, hi, 'WITHSCORES')
    local starts, here = {}, 0
    for j = 2, #raw, 2 do
      local v = tonumber(raw[j])
      starts[#starts + 1] = v
      if v <= at then here = #starts end
    end
    local escape = nil
    for k = math.max(0, here - count), math.min(here, #starts - count) do
      local first, last = starts[k + 1], starts[k + count]
      if math.max(last, at) - math.min(first, at) < period then
        if escape == nil or first + period > escape then escape = first + period end
      end
    end
    if escape == nil then return at end
    at = escape
  end
end
local n = #KEYS - 3
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[3 + i], '-inf', us(now - tonumber(ARGV[2 * i])))
end
local moved = true
while moved do
  moved = false
  for i = 1, n do
    local f = fit(KEYS[3 + i], tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]), slot)
    if f ~= slot then slot = f; moved = true end
  end
end
if n == 0 then return slot - now end
local seq = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], 86400000)
for i = 1, n do
  local key = KEYS[3 + i]
  redis.call('ZADD', key, us(slot), tostring(seq))
  local last = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIRE', key, math.floor((last - now + tonumber(ARGV[2 * i])) / 1000) + 1000)
end
return slot - now
"""

_PAUSE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local micros = tonumber(ARGV[1])
local until_ = tonumber(t[1]) * 1000000 + tonumber(t[2]) + micros
if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%.0f', until_), 'PX', math.floor(micros / 1000) + 1000)
end
return 0
"""


class RedisStore(RateLimitStore):
    """Every machine that reaches one Redis: each reservation is one Lua script, atomic in
    Redis and timed by the Redis server's clock. All keys of a budget share one hash tag, so
    a Redis Cluster keeps them in one slot."""

    pause_refresh_seconds = 0.25

    def __init__(self, url: str, key: str, window: float = WINDOW_SECONDS, margin: float = MARGIN_SECONDS) -> None:
        super().__init__(window, margin)
        try:
            import redis
        except ImportError as exc:
            raise ValueError(
                "rate_limit_store='redis://...' needs the redis package: pip install 'segment-assets[celery]'"
            ) from exc
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=10, socket_timeout=30)
        kwargs = self._redis.connection_pool.connection_kwargs
        self._where = f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"
        self._prefix = f"segment-rate-limits:{{{key}}}:"
        self._reserve_script = self._redis.register_script(_RESERVE_LUA)
        self._pause_script = self._redis.register_script(_PAUSE_LUA)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r})"  # the URL may carry a password

    def _reserve(self, operation_id: str, limits: Sequence[Limit]) -> int:
        p = self._prefix
        keys = [
            f"{p}paused:{operation_id}",
            f"{p}paused:{EVERY_OPERATION}",
            f"{p}seq",
            *(f"{p}starts:{lim.name}" for lim in limits),
        ]
        args: list[int] = [x for lim in limits for x in (lim.count, lim.period_us)]
        return int(self._reserve_script(keys=keys, args=args))

    def _pause(self, name: str, micros: int) -> None:
        self._pause_script(keys=[f"{self._prefix}paused:{name}"], args=[micros])

    def close(self) -> None:
        self._redis.close()


_shared_memory: dict[str, MemoryStore] = {}
_shared_lock = threading.Lock()


def default_directory() -> Path:
    """$DAGSTER_HOME/.segment-rate-limits (Dagster runs and the CLI set DAGSTER_HOME), else
    the user's cache directory."""
    home = os.environ.get("DAGSTER_HOME")
    if home:
        return Path(home) / ".segment-rate-limits"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "segment-assets" / "rate-limits"


def open_store(
    spec: str, base_url: str, token: str, *, window: float = WINDOW_SECONDS, margin: float = MARGIN_SECONDS
) -> RateLimitStore:
    """The store `spec` names, for the budget of `token` at `base_url`:
    'memory' (shared by this process), 'file', 'file:/some/dir', 'redis://host:port/db'."""
    key = budget_key(base_url, token)
    text = spec.strip()
    if text == "memory":
        with _shared_lock:
            store = _shared_memory.get(f"{key}/{window}/{margin}")
            if store is None:
                store = _shared_memory[f"{key}/{window}/{margin}"] = MemoryStore(window, margin)
            return store
    if text == "file" or text.startswith("file:"):
        where = text[len("file:") :].strip() if text != "file" else ""
        return FileStore(Path(where).expanduser() if where else default_directory(), key, window, margin)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(text, key, window, margin)
    shown = text if "@" not in text else text.split("@", 1)[-1]
    raise ValueError(f"rate_limit_store must be {STORE_CHOICES}, got {shown!r}")


class RateBudget:
    """One client's limits (requests/min per operation and per token) over a shared store."""

    def __init__(
        self,
        per_operation: Mapping[str, float],
        global_per_minute: float | None,
        store: RateLimitStore | str | None = None,
        *,
        base_url: str = "",
        token: str = "",
    ) -> None:
        for name, rate in per_operation.items():
            window_limit(name, rate)  # reject a bad limit here, not at the first request
        window_limit(EVERY_OPERATION, global_per_minute)
        self.per_operation = {op: rate for op, rate in per_operation.items() if rate}
        self.global_per_minute = global_per_minute
        self._owns_store = not isinstance(store, RateLimitStore)
        if isinstance(store, RateLimitStore):
            self.store = store
        elif store is None:
            self.store = MemoryStore()  # this client alone, as before budgets were shared
        else:
            self.store = open_store(store, base_url, token)

    def __repr__(self) -> str:
        return f"RateBudget({self.store!r})"

    def reserve(self, operation_id: str) -> float:
        """Seconds to sleep before the next request of `operation_id` may start."""
        return self.store.reserve(operation_id, self.per_operation.get(operation_id), self.global_per_minute)

    def pause(self, operation_id: str, seconds: float) -> None:
        """The server said `operation_id` is exhausted for `seconds`: hold back that operation,
        or every operation when it has no limit of its own (the per-token limit ran out)."""
        self.store.pause(operation_id if operation_id in self.per_operation else None, seconds)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

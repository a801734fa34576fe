"""One of several processes sharing a token, for test_rate_limits.py.

    python -m segment_assets_tests.rate_limit_worker JSON

Once ready it prints `ready` and reads one JSON line from stdin: `start_at` and `deadline`
(wall-clock seconds), so that the test can start every worker at once. JSON (the argument)
holds `mode` and:
- mode "reserve": `store`, `window`, `margin`, `key` (url and token), `operation_id`,
  `per_minute`, `global_per_minute`, `count`: reserve `count` starts as fast as it can,
  without sleeping until them, and report the starts its store granted (`granted`; a memory
  store's are this process's own).
- mode "read": `url`, `token`, `store`, `stream`, `path`, `page_size`, `rate_limits`,
  `global_rate_limit`: page through `stream` as fast as the client allows until the
  deadline, and report the client's counters.
Prints one JSON line. Imports only the client (not Dagster), so four of them start quickly.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson


class Deadline(Exception):
    """The next request would start after the deadline: the worker is done."""


def _sleep_until_deadline(deadline: list[float]) -> Any:
    def sleep(seconds: float) -> None:
        if time.time() + seconds > deadline[0]:
            raise Deadline
        time.sleep(seconds)

    return sleep


def granted(store: Any, name: str) -> list[int]:
    """The starts `store` has granted and still records on the log `name` (an operation, or
    "*" for every operation), in microseconds of the store's clock: read from the store itself,
    not from a clock in the test."""
    from array import array

    from segment_assets.api.rate_limits import FileStore, MemoryStore, RedisStore

    if isinstance(store, MemoryStore):
        with store._lock:
            return list(store._starts.get(name, []))
    if isinstance(store, FileStore):
        with store._lock:
            row = store._connection().execute("SELECT starts FROM budget WHERE name = ?", (name,)).fetchone()
        starts = array("q")
        starts.frombytes(row[0] if row else b"")
        return list(starts)
    if isinstance(store, RedisStore):
        return sorted(
            int(score) for _, score in store._redis.zrange(f"{store._prefix}starts:{name}", 0, -1, withscores=True)
        )
    raise TypeError(f"no granted starts for {store!r}")


def _wait_for_go(job: dict[str, Any]) -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    job.update(orjson.loads(sys.stdin.readline()))
    time.sleep(max(0.0, job["start_at"] - time.time()))


def reserve(job: dict[str, Any]) -> dict[str, Any]:
    from segment_assets.api.rate_limits import open_store

    store = open_store(job["store"], job["key"][0], job["key"][1], window=job["window"], margin=job["margin"])
    _wait_for_go(job)
    for _ in range(job["count"]):
        store.reserve(job["operation_id"], job["per_minute"], job["global_per_minute"])
    starts = granted(store, job["operation_id"])
    store.close()
    return {"granted": starts}


def read(job: dict[str, Any]) -> dict[str, Any]:
    from segment_assets.api.client import SegmentClient
    from segment_assets.api.streams import STREAMS

    deadline = [float("inf")]
    client = SegmentClient(
        job["token"],
        job["url"],
        page_size=job["page_size"],
        rate_limits=job["rate_limits"],
        global_rate_limit=job["global_rate_limit"],
        rate_limit_store=job["store"],
        sleep=_sleep_until_deadline(deadline),
    )
    stream = STREAMS[job["stream"]]
    _wait_for_go(job)
    deadline[0] = job["deadline"]
    try:
        while True:
            for _ in client.pages(stream, job["path"]):
                pass
    except Deadline:
        pass
    finally:
        client.close()
    return client.stats.snapshot()


def main(argv: list[str]) -> int:
    job = orjson.loads(argv[0])
    result = reserve(job) if job["mode"] == "reserve" else read(job)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The floor of benchmark 4: the same requests with nothing but httpx and orjson, no storage.

Reads the plan of `bench.config_set` level by level (a child once its parent is read): every
request of a level goes to one pool of threads as large as segment_assets' fan-out pool (8),
each request pages through its cursor, parses every page with orjson and keeps only the parent
field its children need. What it costs is the HTTP and JSON work any client must do.
"""

from __future__ import annotations

import argparse
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson

from bench.processes import report

THREADS = 8


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_job")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--plan", required=True)
    args = parser.parse_args()
    with open(args.plan) as f:
        plan: list[dict[str, Any]] = json.load(f)
    needs = {r["parent"]["resource"]: r["parent"]["field"] for r in plan if r["parent"]}
    http = httpx.Client(
        base_url=args.url,
        headers={"Authorization": f"Bearer {args.token}"},
        limits=httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS),
    )
    counts = {"requests": 0, "records": 0}
    lock = threading.Lock()

    def read(r: dict[str, Any], path_value: str | None) -> list[Any]:
        path, query = r["path"], dict(r["query"])
        if r["parent"]:
            slot = "{" + r["parent"]["param"] + "}"
            if slot in path:
                path = path.replace(slot, str(path_value))
            else:
                query[r["parent"]["param"]] = path_value
        keep = needs.get(r["name"])
        kept, cursor, requests, records = [], None, 0, 0
        while True:
            params: dict[str, Any] = dict(query)
            if r["page_size"]:
                params["pagination[count]"] = r["page_size"]
                if cursor:
                    params["pagination[cursor]"] = cursor
            response = http.get(path, params=params, headers={"Accept": r["accept"]})
            requests += 1
            response.raise_for_status()
            data = orjson.loads(response.content)["data"]
            items = data.get(r["data_key"]) or []
            records += len(items)
            if keep:
                kept += [item[keep] for item in items]
            cursor = (data.get("pagination") or {}).get("next") if r["follows_cursor"] else None
            if not cursor:
                break
        with lock:
            counts["requests"] += requests
            counts["records"] += records
        return kept

    values: dict[str, list[Any]] = {}
    todo = list(plan)
    with ThreadPoolExecutor(THREADS) as pool:
        while todo:
            ready = [r for r in todo if not r["parent"] or r["parent"]["resource"] in values]
            todo = [r for r in todo if r not in ready]
            futures = {
                r["name"]: [
                    pool.submit(read, r, v) for v in (values[r["parent"]["resource"]] if r["parent"] else [None])
                ]
                for r in ready
            }
            for name, fs in futures.items():
                values[name] = [x for fut in fs for x in fut.result()]
    http.close()
    report(counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

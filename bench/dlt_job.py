"""The comparison of benchmark 4: dlt's declarative REST API source reading the configuration set
into DuckDB, in a process of its own.

Configured the way dlt's docs show for a cursor API with parent/child resources: bearer auth,
`pagination[count]` as a parameter, a JSON-path cursor paginator on `data.pagination.next` sent
back as `pagination[cursor]` (single page where the endpoint has no paging), each child's path
parameter `resolve`d from its parent resource's field, the endpoint's media type as Accept
header, `write_disposition="replace"`, and parquet loader files (dlt's fastest documented way
into DuckDB).
"""

from __future__ import annotations

import argparse
import json
import time

from bench.processes import report


def config(plan: list[dict], url: str, token: str) -> dict:
    resources = []
    for r in plan:
        params: dict[str, object] = dict(r["query"])
        if r["page_size"]:
            params["pagination[count]"] = r["page_size"]
        if r["parent"]:
            p = r["parent"]
            if "{" + p["param"] + "}" in r["path"]:
                params[p["param"]] = {"type": "resolve", "resource": p["resource"], "field": p["field"]}
            else:  # a query parameter (listFiltersForSpace's integrationId)
                params[p["param"]] = "{resources." + p["resource"] + "." + p["field"] + "}"
        paginator: object = (
            {"type": "cursor", "cursor_path": "data.pagination.next", "cursor_param": "pagination[cursor]"}
            if r["page_size"]
            else {"type": "single_page"}
        )
        resources.append(
            {
                "name": r["name"],
                "write_disposition": "replace",
                "endpoint": {
                    "path": r["path"],
                    "params": params,
                    "data_selector": f"data.{r['data_key']}",
                    "paginator": paginator,
                    "headers": {"Accept": r["accept"]},
                },
            }
        )
    return {"client": {"base_url": url + "/", "auth": {"type": "bearer", "token": token}}, "resources": resources}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dlt_job")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--pipelines-dir", required=True)
    parser.add_argument("--plan", required=True, help="JSON file written by bench.config_set.plan")
    parser.add_argument("--loader-file-format", default="parquet")
    args = parser.parse_args()

    import dlt
    from dlt.sources.rest_api import rest_api_source

    with open(args.plan) as f:
        plan = json.load(f)
    source = rest_api_source(config(plan, args.url, args.token))
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        destination=dlt.destinations.duckdb(args.db),
        dataset_name="segment",
        pipelines_dir=args.pipelines_dir,
    )
    # pipeline.run() is these three steps; timed one by one to show where dlt spends its time.
    phases: dict[str, float] = {}
    started = time.perf_counter()
    pipeline.extract(source, loader_file_format=args.loader_file_format)
    phases["extract"] = time.perf_counter() - started
    pipeline.normalize()
    phases["normalize"] = time.perf_counter() - started - phases["extract"]
    pipeline.load()
    phases["load"] = time.perf_counter() - started - phases["extract"] - phases["normalize"]
    rows = {}
    with pipeline.sql_client() as client:
        for r in plan:
            try:
                rows[r["name"]] = client.execute_sql(f"SELECT count(*) FROM {r['name']}")[0][0]
            except Exception:
                rows[r["name"]] = 0
    report({"rows": rows, "phases": phases})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

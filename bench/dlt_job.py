"""The comparison: dlt's REST API source reading the same endpoint into DuckDB, in a process of its own.

Configured the way its docs show for a cursor API: a JSON-path cursor paginator on
`data.pagination.next` sent back as `pagination[cursor]`, bearer auth, and the same page
size and time window segment_assets requests.
"""

from __future__ import annotations

import argparse
import time

from bench.processes import peak_rss, report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dlt_job")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--pipelines-dir", required=True)
    parser.add_argument("--path", default="audit-events")
    parser.add_argument("--data-selector", default="data.events")
    parser.add_argument("--table", default="audit_events")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--loader-file-format", help="default: the destination's preferred (insert_values for duckdb)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    import dlt
    from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
    from dlt.sources.rest_api import rest_api_source

    params: dict[str, object] = {"pagination[count]": args.page_size}
    params.update(dict(p.split("=", 1) for p in args.param))
    source = rest_api_source({
        "client": {
            "base_url": args.url,
            "auth": {"type": "bearer", "token": args.token},
            "headers": {"Accept": "application/vnd.segment.v1+json"},
            "paginator": JSONResponseCursorPaginator(cursor_path="data.pagination.next",
                                                     cursor_param="pagination[cursor]"),
        },
        "resources": [{
            "name": args.table,
            "write_disposition": "replace",
            "endpoint": {"path": args.path, "params": params, "data_selector": args.data_selector},
        }],
    })
    pipeline = dlt.pipeline(pipeline_name="bench_dlt", destination=dlt.destinations.duckdb(args.db),
                            dataset_name="segment", pipelines_dir=args.pipelines_dir)
    # pipeline.run() is these three steps; timed one by one to show where dlt spends its time.
    phases: dict[str, float] = {}
    started = time.perf_counter()
    pipeline.extract(source, loader_file_format=args.loader_file_format)
    phases["extract"] = time.perf_counter() - started
    pipeline.normalize()
    phases["normalize"] = time.perf_counter() - started - phases["extract"]
    info = pipeline.load()
    seconds = time.perf_counter() - started
    phases["load"] = seconds - phases["extract"] - phases["normalize"]
    with pipeline.sql_client() as client:
        rows = client.execute_sql(f"SELECT count(*) FROM {args.table}")[0][0]
    report({"rows": rows, "pipeline_seconds": seconds, "phases": phases, "peak_rss": peak_rss(),
            "loads": len(info.loads_ids), "loader_file_format": args.loader_file_format or "default"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

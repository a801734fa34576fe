"""The table reference, `docs/tables.md`, generated from the stream registry and the API schema.

Everything in it comes from `streams.py` (keys, update methods, parents, partitioning,
decisions) and the OpenAPI document (`spec.py`, `tables.py`: endpoints, stabilities, rate
limits, feature gates, column types and descriptions), so it cannot say something the code
does not do. `python -m segment_assets.cli.reference` writes it; `--check` exits 1 when the
file differs from what the code generates (a test runs the same comparison).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from segment_assets.api import spec
from segment_assets.api.streams import (
    EXCLUDED,
    STREAMS,
    Paging,
    Partitioning,
    StreamSpec,
    TimeWindowing,
    UpdateMethod,
    descendants_of,
    materialized_streams,
)
from segment_assets.api.tables import Column, table_def
from segment_assets.engine.reading import WATERMARK_OVERLAP
from segment_assets.storage.base import CHANGE_SUFFIX, DEFAULT_SCHEMA, HEADER_COLUMNS
from segment_assets.storage.history import HISTORY_COLUMNS, HISTORY_MEANINGS, HISTORY_SUFFIX

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "tables.md"
REGENERATE = "`python -m segment_assets.cli.reference` (or `segment-assets docs`)"

HEADER_MEANINGS = {
    "header__change_seq": "Orders every change of the database: `YYYYMMDDHHmmSShh` of the run (UTC) and a 19-digit "
    "counter. Sort by it to replay changes; it grows across all change tables of one target.",
    "header__change_oper": "`I` insert (the new row), `U` update (the row after the change), `D` delete (the row as "
    "it was last read).",
    "header__timestamp": "When the sync wrote the change, not when it happened in Segment (for that, join "
    "`audit_events` on the resource id).",
    "header__run_id": "The Dagster run that wrote the change.",
}


def _overlap() -> str:
    hours = WATERMARK_OVERLAP.total_seconds() / 3600
    return "a day" if hours == 24 else f"{hours:g} hours"


UPDATE_METHODS = {  # name, what it does
    UpdateMethod.RELOAD_AND_COMPARE: (
        "reload and compare",
        "Every run reads everything the endpoint serves and diffs "
        "it against the table on the primary key; inserts, updates and deletes go to "
        "the change table in the same transaction. A connection may choose `full_load` "
        "instead for any such stream: the table is replaced, no change table.",
    ),
    UpdateMethod.WATERMARK: (
        "watermark",
        "The endpoint lists newest first: paging stops at the first page that "
        f"reaches the stored maximum of the watermark field (less {_overlap()}, for late "
        "updates). Rows are upserted, with `I`/`U` rows in the change table; none are deleted.",
    ),
    UpdateMethod.INCREMENTAL: (
        "time-partitioned",
        "Each daily or monthly partition (or a range of them, in one run) "
        "replaces its time window idempotently. No change table.",
    ),
    UpdateMethod.FULL_LOAD: ("full load", "Every run replaces the table. No change table."),
}

PAGING = {
    Paging.CURSOR: "cursor paging (`pagination[count]`, `pagination[cursor]`), pages of up to {size}",
    Paging.TOP_LEVEL: "cursor paging with top-level `count`/`cursor` parameters, pages of up to {size}",
    Paging.PER_KEY: "one independent cursor per list ({keys}), pages of up to {size}",
    Paging.SINGLE: "one page (the endpoint accepts `pagination` but returns no cursor)",
    Paging.NONE: "not paginated",
}


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell and outside HTML tags (API descriptions hold `<eventName>`)."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _code(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _link(name: str) -> str:
    return f"[`{name}`](#{name})"


def _groups() -> dict[str, list[StreamSpec]]:
    groups: dict[str, list[StreamSpec]] = {}
    for stream in materialized_streams():  # declaration order: parents before children
        groups.setdefault(stream.group, []).append(stream)
    return groups


def _operation_summary(stream: StreamSpec) -> str:
    get = spec.document()["paths"][stream.path]["get"]
    summary = get.get("summary") or stream.operation_id
    first = (get.get("description") or "").split("\n\n", 1)[0]
    return _cell(f"{summary}. {first}" if first else summary)


def _rate_limit(stream: StreamSpec) -> str:
    limit = stream.rate_limit_per_minute
    if limit is None:
        return "none documented for this endpoint (the client paces every endpoint under one generous global ceiling)"
    return f"**{limit:g} requests/minute** (documented in the operation; the client paces the endpoint at it)"


def _parent(stream: StreamSpec) -> str:
    link = stream.parent
    if link is None:
        return "none: one read of the whole workspace"
    params = ", ".join(
        f"`{param}` ← `{link.stream}.{column}` (column `{link.column_for(param)}`)"
        for param, column in link.params.items()
    )
    text = f"{_link(link.stream)}: {params}"
    if link.where is not None:
        text += f"; only parent rows where {link.where}"
    return text


def _requests(stream: StreamSpec) -> str:
    per = f"one request per row of `{stream.parent.stream}`" if stream.parent else "one request"
    if stream.parent and stream.inline:
        per = (
            f"one request per row of `{stream.parent.stream}` whose `{stream.inline.column}` holds "
            f"{stream.inline.limit} values (a full list, maybe cut) or none; the other rows' "
            f"`{stream.inline.column}` are this table's rows, without a request"
        )
    for param, values in stream.fan_out.items():
        per += f" × {len(values)} values of `{param}` ({', '.join(values)})"
    if stream.windowing:
        per += " per time window"
    paging = PAGING[stream.paging].format(size=stream.max_page_size, keys=_code(stream.data_keys))
    extra = ""
    if stream.query:
        fixed = "; ".join(
            f"`{k}` = {', '.join(v) if isinstance(v, (list, tuple)) else v}" for k, v in stream.query.items()
        )
        extra = f"; fixed parameters: {fixed}"
    return f"{per}, {paging}{extra}"


def _partitioning(w: TimeWindowing) -> str:
    kind = "daily (UTC days)" if w.partitioning is Partitioning.DAILY else "monthly (UTC months)"
    parts = [f"{kind} on `{w.time_column}`"]
    if w.window_columns:
        parts.append("the records carry no time of their own: `window_start`/`window_end` hold the requested window")
    if w.period_param:
        parts.append(f"one request per month (`{w.period_param}` = the month's first day)")
    elif w.chunk_days:
        parts.append(f"one request per {w.chunk_days}-day window")
    elif w.max_range_days:
        parts.append(f"at most {w.max_range_days} days per request")
    if w.granularity:
        parts.append(f"`granularity` = {w.granularity}")
    if w.retention_days:
        parts.append(
            f"the API serves the last {w.retention_days} days only: older partitions make no request and "
            "keep the rows already loaded"
        )
    return "; ".join(parts)


def _update_method(stream: StreamSpec) -> str:
    name = UPDATE_METHODS[stream.update_method][0]
    text = f"[{name}](#update-methods)"
    if stream.update_method is UpdateMethod.WATERMARK:
        text += f" on `{stream.watermark}` (column `{spec.snake_case(stream.watermark or '')}`)"
    return text


def _change_table(stream: StreamSpec) -> str:
    name = stream.table + CHANGE_SUFFIX
    if stream.update_method.keeps_changes:
        what = "insert or update" if stream.update_method is UpdateMethod.WATERMARK else "insert, update or delete"
        text = (
            f"`{DEFAULT_SCHEMA}.{name}`: every column below plus the [header columns](#change-tables), "
            f"one row per {what}"
        )
        if stream.update_method is UpdateMethod.RELOAD_AND_COMPARE:
            text += " (unless a connection chooses `full_load` for this stream)"
        history = f"{DEFAULT_SCHEMA}.{stream.table}{HISTORY_SUFFIX}"
        return text + f"; history in `{history}` (every version, see [history tables](#history-tables))"
    if stream.windowing:
        return "none (time-partitioned: partitions are replaced, not diffed)"
    return "none"


def _column_rows(columns: Sequence[Column], key: Sequence[str]) -> list[str]:
    rows = ["| Column | Type | Key | Description |", "|---|---|---|---|"]
    for c in columns:
        rows.append(f"| `{c.name}` | {c.type} | {'PK' if c.name in key else ''} | {_cell(c.description)} |")
    return rows


def _table_section(stream: StreamSpec) -> list[str]:
    table = table_def(stream.name)
    op = stream.operation
    gate = (
        f"**{op.feature_gate}**: a workspace without it answers 403 and the table stays empty (the sync "
        "succeeds and says why)"
        if op.feature_gate
        else "none"
    )
    feeds = [s.name for s in descendants_of(stream.name, transitive=False)]
    lines = [
        f"### `{stream.table}`",
        "",
        _operation_summary(stream),
        "",
        f"- **Table**: `{DEFAULT_SCHEMA}.{stream.table}` (area `{stream.group}`)",
        f"- **Primary key**: {_code(stream.primary_key)}",
        f"- **Update method**: {_update_method(stream)}",
        f"- **Change table**: {_change_table(stream)}",
        f"- **Partitioning**: {_partitioning(stream.windowing) if stream.windowing else 'none'}",
        f"- **Source endpoint**: `{op.operation_id}`, `GET {op.path}`, stability `{op.stability}` "
        f"(`Accept: {op.media_type}`)",
        f"- **Feature gate**: {gate}",
        f"- **Rate limit**: {_rate_limit(stream)}",
        f"- **Parent**: {_parent(stream)}",
        f"- **Requests**: {_requests(stream)}",
    ]
    if feeds:
        lines.append(f"- **Parent of**: {', '.join(_link(n) for n in feeds)}")
    if stream.decision:
        lines.append(f"- **Decision**: {_cell(stream.decision)}")
    lines += ["", *_column_rows(table.columns, stream.primary_key), ""]
    return lines


def render() -> str:
    """The whole reference; the same code and OpenAPI document always give the same text."""
    groups = _groups()
    tables = materialized_streams()
    covered = [s for s in STREAMS.values() if not s.materialized]
    lines = [
        "# Table reference",
        "",
        "<!-- Generated from segment_assets/streams.py and the OpenAPI document by "
        f"{REGENERATE}. Do not edit: a test fails when this file is out of date. -->",
        "",
        f"{len(tables)} tables, one per stream, in schema `{DEFAULT_SCHEMA}` "
        f"(`SELECT * FROM {DEFAULT_SCHEMA}.sources`; a named connection uses its own schema). They come from "
        f"{len(tables)} GET operations of the Segment Public API v{spec.document()['info']['version']}; "
        f"{len(covered)} more operations are [covered by a list](#operations-that-are-not-tables) and "
        f"{len(EXCLUDED)} are [excluded](#excluded-operations).",
        "",
        "Columns are the record's fields in snake_case, typed from the OpenAPI schema: strings, integers, "
        "doubles and booleans as SQL types, declared time fields as `TIMESTAMPTZ`, objects, arrays and unions as "
        "`JSON` (query them with `->>`). Parent key columns come first; the last column, `_extra`, keeps any "
        "field the API returned that its schema does not document. Descriptions are the API's own.",
        "",
        "## Index",
        "",
        "| Area | Tables |",
        "|---|---|",
    ]
    for group, streams in groups.items():
        lines.append(f"| [{group}](#area-{group}) | {', '.join(_link(s.table) for s in streams)} |")
    lines += [
        "",
        "## Update methods",
        "",
        "| Method | What a run does |",
        "|---|---|",
        *(f"| {name} | {_cell(text)} |" for name, text in UPDATE_METHODS.values()),
        "",
        "## Change tables",
        "",
        f"A stream whose update method keeps changes also writes `<table>{CHANGE_SUFFIX}`: the table's columns "
        "followed by these, one row per change, in the same transaction as the table. "
        "`header__change_oper` says what happened to the row:",
        "",
        "| Column | Type | Meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {kind} | {_cell(HEADER_MEANINGS[name])} |" for name, kind in HEADER_COLUMNS]
    lines += [
        "",
        "## History tables",
        "",
        f"Every table with a change table also has `<table>{HISTORY_SUFFIX}` (SCD type 2), a view over the change "
        "table: one row per version of a row, the table's columns followed by these. The first sync writes an `I` "
        "change per row, so history starts with the first sync. A `D` change ends a version and opens none: a key "
        "deleted and created again has two versions and no row for the time between. The table as it was at a "
        "moment `t` is the rows `WHERE valid_from <= t AND (valid_to IS NULL OR valid_to > t)` "
        "(`segment-assets snapshot --as-of t` writes them to a new DuckDB file; `segment-assets diff` compares "
        "two moments). Time-partitioned and `full_load` tables have no history.",
        "",
        "| Column | Type | Meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {kind} | {_cell(HISTORY_MEANINGS[name])} |" for name, kind in HISTORY_COLUMNS]
    lines.append("")
    for group, streams in groups.items():
        lines += [f"## Area: {group}", ""]
        for stream in streams:
            lines += _table_section(stream)
    lines += [
        "## Operations that are not tables",
        "",
        "Single-object reads whose objects a list already returns in full: reading them per id would only "
        "spend rate limit.",
        "",
        "| Operation | Endpoint | Covered by | Why |",
        "|---|---|---|---|",
    ]
    for s in covered:
        lines.append(f"| `{s.operation_id}` | `GET {s.path}` | {_link(s.covered_by or '')} | {_cell(s.decision)} |")
    lines += [
        "",
        "## Excluded operations",
        "",
        "| Operation | Endpoint | Why |",
        "|---|---|---|",
    ]
    for operation_id, why in sorted(EXCLUDED.items()):
        lines.append(f"| `{operation_id}` | `GET {spec.operation(operation_id).path}` | {_cell(why)} |")
    return "\n".join(lines) + "\n"


def check(path: Path = DOC_PATH) -> str | None:
    """None when `path` holds exactly what `render()` gives; else what is wrong and how to fix it."""
    expected = render()
    if not path.exists():
        return f"{path} does not exist; generate it with {REGENERATE}"
    actual = path.read_text(encoding="utf-8")
    if actual == expected:
        return None
    diff = difflib.unified_diff(actual.splitlines(), expected.splitlines(), "on disk", "generated", n=0, lineterm="")
    shown = list(diff)[:20]
    return (
        f"{path} is out of date with the stream registry and the API schema; regenerate it with "
        f"{REGENERATE} and commit it. First differences:\n" + "\n".join(shown)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="segment-assets docs", description="Write the table reference (docs/tables.md) from the stream registry."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date, write nothing")
    parser.add_argument("--output", type=Path, default=DOC_PATH, help=f"the Markdown file (default {DOC_PATH})")
    args = parser.parse_args(argv)
    if args.check:
        problem = check(args.output)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(), encoding="utf-8")
    print(f"wrote {args.output} ({len(materialized_streams())} tables)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

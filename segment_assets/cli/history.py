"""`segment-assets snapshot` and `segment-assets diff`: the workspace as it was at a moment, and what
changed between two, from the history the change tables keep (`storage/history.py`), on a DuckDB
file or a lake alike."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from segment_assets.storage.history import Change

TIME_HELP = "ISO 8601 (2026-12-01, 2026-12-01T09:30:00Z, 2026-12-01 09:30+01:00); no offset means UTC"


def moment(text: str) -> datetime:
    """An --as-of/--from/--to value: ISO 8601, UTC unless it says otherwise."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: use {TIME_HELP}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def add_parsers(sub: Any) -> None:
    """The `snapshot` and `diff` subcommands (wired into the main parser by `commands.main`)."""
    p = sub.add_parser("snapshot", help="write every table with history as it was at a moment into a new DuckDB file")
    p.add_argument("--as-of", required=True, type=moment, metavar="TIMESTAMP", help=TIME_HELP)
    p.add_argument("--into", required=True, type=Path, metavar="FILE.duckdb", help="a new DuckDB file")
    p.add_argument("--connection", metavar="NAME", help="the workspace, when several are configured")
    p = sub.add_parser(
        "diff", help="the rows inserted, deleted and updated (which columns, old and new) between two moments"
    )
    p.add_argument("--from", dest="start", required=True, type=moment, metavar="T1", help=TIME_HELP)
    p.add_argument("--to", dest="end", type=moment, metavar="T2", help="default: now")
    p.add_argument("--table", action="append", metavar="T", help="only this table (repeat for several)")
    p.add_argument("--connection", metavar="NAME")
    p.add_argument("--format", choices=("text", "json"), default="text")


def _session(connection: str | None) -> tuple[duckdb.DuckDBPyConnection, str]:
    from segment_assets.cli.commands import pick_workspace
    from segment_assets.orchestration.resources import storage_resource
    from segment_assets.storage import StorageError

    target = storage_resource(pick_workspace(connection).connection).get_target()
    try:
        return target.sql_session(), target.schema
    except StorageError as exc:
        raise SystemExit(str(exc)) from None


def cmd_snapshot(args: argparse.Namespace) -> int:
    from segment_assets.storage.history import write_snapshot

    path: Path = args.into
    if path.suffix != ".duckdb":
        raise SystemExit(f"--into {path}: name a .duckdb file")
    if path.exists():
        raise SystemExit(f"--into {path} exists: a snapshot writes a new file; remove it or choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    con, schema = _session(args.connection)
    try:
        result = write_snapshot(con, args.as_of, path, schema)
    finally:
        con.close()
    when = args.as_of.isoformat()
    print(f"{path}: {len(result.rows)} table(s) in schema `{schema}` as of {when}")
    for name, rows in result.rows.items():
        print(f"  {name:44} {rows:>8} rows")
    if result.history_starts is None:
        print("no table has history yet: sync first")
    elif args.as_of < result.history_starts:
        print(f"note: history starts at {result.history_starts.isoformat()}, after {when}: the tables are empty")
    if result.left_out:
        print(
            f"left out, as they keep no history (time-partitioned windows are replaced, full-load tables "
            f"overwritten): {', '.join(result.left_out)}"
        )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from segment_assets.storage.history import diff

    end = args.end or datetime.now(UTC)
    if end < args.start:
        raise SystemExit(f"--to {end.isoformat()} is before --from {args.start.isoformat()}: swap them")
    con, _ = _session(args.connection)
    try:
        changes, without = diff(con, args.start, end, args.table)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        con.close()
    if args.format == "json":
        print(json.dumps([c.__dict__ for c in changes], default=str, indent=2))
        return 0
    print(render(changes, args.start, end))
    if without:
        print(f"(no history, not compared: {', '.join(without)})")
    return 0


def render(changes: list[Change], start: datetime, end: datetime) -> str:
    """Per table: counts, then each key inserted (+), deleted (-) or updated (~, a line per column)."""
    lines = [f"changes from {start.isoformat()} to {end.isoformat()}"]
    if not changes:
        return lines[0] + ": none"
    by_table: dict[str, list[Change]] = {}
    for c in changes:
        by_table.setdefault(c.table, []).append(c)
    for table, items in by_table.items():
        keys = {op: {json.dumps(c.key, default=str) for c in items if c.op == op} for op in "IUD"}
        lines.append(f"\n{table}: {len(keys['I'])} inserted, {len(keys['U'])} updated, {len(keys['D'])} deleted")
        shown: set[tuple[str, str]] = set()
        for c in items:
            key = ", ".join(f"{k}={v}" for k, v in c.key.items())
            if c.op == "U":
                if ("U", key) not in shown:
                    lines.append(f"  ~ {key}")
                    shown.add(("U", key))
                lines.append(f"      {c.column}: {_short(c.old)} -> {_short(c.new)}")
            else:
                lines.append(f"  {'+' if c.op == 'I' else '-'} {key}")
    return "\n".join(lines)


def _short(value: str | None, width: int = 100) -> str:
    """A value as text: NULL for none, '' for an empty string, long JSON cut."""
    if value is None:
        return "NULL"
    if value == "":
        return "''"
    return value if len(value) <= width else value[: width - 1] + "…"


COMMANDS = {"snapshot": cmd_snapshot, "diff": cmd_diff}

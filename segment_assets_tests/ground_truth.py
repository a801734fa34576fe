"""What a table should hold, from the simulator's ground truth and rules written here by hand.

Expected rows come from `sim.items(...)` walked from parent to child here, not from the
production planner (`plan_requests`) or shaper (`Shaper`, `table_def(...).shaper()`): a test
comparing those with the tables would only prove the code agrees with itself. Both sides are
brought to one plain form before comparing: field names in snake_case, JSON columns parsed,
timestamps as UTC datetimes, whole floats as ints, NULLs dropped, undocumented fields (the
table's `_extra`) merged back in.

Streams with an exotic shape (exploded arrays, bare-string records, maps, page-level fields,
two data keys, fan-out values, derived columns, parent filters) are `independent(stream)` False.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from segment_assets.api.streams import STREAMS, StreamSpec
from segment_assets.simulator import Simulator
from segment_assets.storage import DuckDBTarget

Row = dict[str, Any]
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def snake(name: str) -> str:
    """`writeKeys` -> `write_keys`, `reverseETLSchedule` -> `reverse_etl_schedule`."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).replace("-", "_").replace(".", "_").lower()


def plain(value: Any) -> Any:
    """One form for a served value and a stored one."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str):
        if _ISO.match(value):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        if value[:1] in ("{", "[", '"'):  # JSON text: a JSON column's object, array or string
            try:
                return plain(json.loads(value))
            except ValueError:
                return value
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def independent(stream: StreamSpec) -> bool:
    """Whether this module can say what the stream's table holds without production code."""
    odd = (
        stream.explode
        or stream.scalar_column
        or stream.map_key_column
        or stream.data_fields
        or stream.derived
        or stream.fan_out
        or len(stream.data_keys) > 1
        or stream.windowing
        or stream.covered_by
        or (stream.parent is not None and stream.parent.where is not None)
    )
    return not odd and (stream.parent is None or independent(STREAMS[stream.parent.stream]))


def served_item_row(stream: StreamSpec, item: Row, context: Row) -> Row:
    row = {snake(k): plain(v) for k, v in item.items() if v is not None}
    row.update(context)
    for part, default in stream.key_defaults.items():
        row.setdefault(part, default)
    return row


def stored_row(row: Row) -> Row:
    """A table row in plain form, its `_extra` (undocumented fields) merged in."""
    out = {c: plain(v) for c, v in row.items() if c != "_extra" and v is not None}
    for k, v in (json.loads(row["_extra"]) if row.get("_extra") else {}).items():
        if v is not None:
            out.setdefault(snake(k), plain(v))
    return out


def key_of(stream: StreamSpec, row: Row) -> tuple:
    return tuple(row.get(k) for k in stream.primary_key)


def served(stream: StreamSpec, sim: Simulator, query: Row | None = None) -> dict[tuple, Row]:
    """Every row the stream's table should hold, keyed by primary key: the simulator's items for
    each parent the simulator serves (children walked from their parents' served rows)."""
    assert independent(stream), f"{stream.name}: not a shape this module knows"
    path_params = set(re.findall(r"{(\w+)}", stream.path))
    if stream.parent is None:
        param_sets: list[tuple[Row, Row]] = [({}, {})]
    else:
        link = stream.parent
        param_sets = []
        for parent_row in served(STREAMS[link.stream], sim).values():
            params = {param: parent_row.get(column) for param, column in link.params.items()}
            if any(v is None for v in params.values()):
                continue  # a parent without that id is no parent (e.g. a subscription without a model)
            context = {link.column_names.get(p) or snake(p): v for p, v in params.items()}
            param_sets.append((params, context))
    rows: dict[tuple, Row] = {}
    for params, context in param_sets:
        path = {k: str(v) for k, v in params.items() if k in path_params}
        extra = {k: v for k, v in params.items() if k not in path_params}
        for item in sim.items(stream.operation_id, path, {**stream.query, **extra, **(query or {})}):
            row = served_item_row(stream, item, context)
            rows[key_of(stream, row)] = row
    return rows


def stored(
    target: DuckDBTarget, stream: StreamSpec, where: str = "", params: list[Any] | None = None
) -> dict[tuple, Row]:
    """The stream's table in plain form, keyed by primary key (duplicate keys fail)."""
    if not target.table_exists(stream.name):
        return {}
    con = target.sql_session()
    try:
        rel = con.execute(f'SELECT * FROM "{stream.name}" {where}', params or [])
        columns = [d[0] for d in rel.description]
        rows = [stored_row(dict(zip(columns, values))) for values in rel.fetchall()]
    finally:
        con.close()
    out = {key_of(stream, r): r for r in rows}
    assert len(out) == len(rows), f"{stream.name}: duplicate keys"
    return out


def served_audit_event_ids(sim: Any, first: date, last: date) -> set[str]:
    """Ids of the audit events the simulator serves for the UTC days first..last (a backfill's range)."""
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    window = {"startTime": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "endTime": end.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    return {
        e["id"]
        for e in sim.items("listAuditEvents", query=window)
        if start <= datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) < end
    }

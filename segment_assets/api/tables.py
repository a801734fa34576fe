"""Table layout of a stream, derived from its response schema, and records -> Arrow batches.

Columns are the record's top-level properties in snake_case, typed from the OpenAPI
schema (scalars as SQL types; objects, arrays and unions as JSON), preceded by the
parent key columns and followed by `_extra`, a JSON object of any field the schema does
not know, so a new API field is kept, never dropped. The layout exists before any row
arrives, so a stream with zero rows still gets a table with the right columns.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import pyarrow as pa

from segment_assets.api import spec
from segment_assets.api.streams import STREAMS, StreamSpec

EXTRA_COLUMN = "_extra"
RECORD_KIND = "recordKind"  # context key naming which data key a record came from
WINDOW_START = "windowStart"  # context keys of the request window, for windowed snapshots
WINDOW_END = "windowEnd"

ARROW_TYPES: Mapping[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "JSON": pa.string(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
}


class RecordShapeError(ValueError):
    """A page's records do not fit the stream's declared shape (missing key, changed type)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    source: str  # "context" (parent key / fan-out value), "data", "record", "item", "extra"
    api_name: str
    description: str = ""  # from the API schema, or what the column holds when the API has no field


@dataclass(frozen=True)
class TableDef:
    stream: StreamSpec
    columns: tuple[Column, ...]
    required: frozenset[str] = frozenset()  # record fields the schema marks required
    # Field names a record may carry without drift: those its response schema documents (any
    # shape of a union) and the parent-key / request-parameter columns, which are not fields.
    documented: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.stream.table

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.stream.primary_key

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(c.name, ARROW_TYPES[c.type]) for c in self.columns])

    def column_schema(self) -> list[tuple[str, str]]:
        return [(c.name, c.type) for c in self.columns]

    def shaper(self, strict: bool = True) -> Shaper:
        return Shaper(self, strict)


def _record_schema(stream: StreamSpec, key: str | None = None) -> dict[str, Any]:
    data_schema = stream.operation.data_schema
    if not stream.data_keys:
        return data_schema
    schema = spec.resolve(spec.properties(data_schema)[key or stream.data_keys[0]])
    if schema.get("type") == "array":
        return spec.resolve(schema["items"])
    return schema


@cache
def table_def(name: str) -> TableDef:
    stream = STREAMS[name]
    columns: list[Column] = []
    seen: set[str] = set()

    def add(
        api_name: str, prop: dict[str, Any] | None, source: str, col: str | None = None, description: str = ""
    ) -> None:
        col = col or spec.snake_case(api_name)
        if col in seen:
            return
        seen.add(col)
        kind = stream.column_types.get(col) or (spec.column_type(prop, api_name) if prop is not None else "VARCHAR")
        columns.append(Column(col, kind, source, api_name, description or spec.description(prop)))

    data_props = spec.properties(stream.operation.data_schema)
    if stream.parent:
        for param, parent_col in stream.parent.params.items():
            add(
                param,
                None,
                "context",
                stream.parent.column_for(param),
                f"`{parent_col}` of the parent table `{stream.parent.stream}` (request parameter `{param}`).",
            )
    for param, values in stream.fan_out.items():
        add(param, None, "context", description=f"Request parameter `{param}`: one of {', '.join(values)}.")
    if stream.windowing and stream.windowing.window_columns:
        add(WINDOW_START, None, "context", description="Start of the requested window (inclusive).")
        add(WINDOW_END, None, "context", description="End of the requested window (exclusive).")
    if len(stream.data_keys) > 1:
        add(
            RECORD_KIND,
            None,
            "context",
            description="Which list of the response the row came from: "
            + " or ".join(f"'{k}'" for k in stream.data_keys)
            + ".",
        )
    for name_ in stream.data_fields:
        add(name_, data_props.get(name_), "data")

    record = _record_schema(stream)
    if stream.scalar_column and not stream.explode:
        add(stream.scalar_column, None, "record")
    elif stream.map_key_column:
        add(stream.map_key_column, None, "record")
        add("value", {"type": "object"}, "record")
    else:
        record_props = spec.properties(record)
        for api_name, prop in record_props.items():
            if api_name == stream.explode:
                continue
            add(api_name, prop, "record")
        if stream.explode:
            item = spec.resolve(spec.resolve(record_props[stream.explode]).get("items", {}))
            if stream.scalar_column:
                add(stream.scalar_column, item, "item")
            else:
                for api_name, prop in spec.properties(item).items():
                    clash = spec.snake_case(api_name) in seen
                    add(api_name, prop, "item", spec.snake_case(f"{stream.explode}_{api_name}") if clash else None)
    for col, path in stream.derived.items():
        add(path, None, "derived", col, f"`{path}` of the record.")
    columns.append(
        Column(
            EXTRA_COLUMN,
            "JSON",
            "extra",
            EXTRA_COLUMN,
            "Fields the API returned that its schema does not document, kept as a JSON object.",
        )
    )
    for key in stream.primary_key:
        if key not in seen:
            raise ValueError(
                f"stream {stream.name}: primary key column {key!r} is not among its columns {sorted(seen)}"
            )
    required = {c.api_name for c in columns if c.source == "record"}
    # A multi-key stream (credential consumers: sources and warehouses) requires what all its shapes do.
    for data_key in stream.data_keys or (None,):
        required &= set(_record_schema(stream, data_key).get("required", ()))
    documented = {c.api_name for c in columns if c.source in ("context", "record")}
    for data_key in stream.data_keys or (None,):
        documented |= spec.field_names(_record_schema(stream, data_key))
    return TableDef(
        stream,
        tuple(columns),
        frozenset(required) if not stream.scalar_column else frozenset(),
        frozenset(documented),
    )


def _dig(record: Any, path: list[str]) -> Any:
    for part in path:
        record = record.get(part) if isinstance(record, dict) else None
    return record


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class Shaper:
    """Turns pages of one stream into Arrow batches. Strict: a record missing a field the
    schema requires, or a time field whose value is not a timestamp, is rejected (the page is
    re-read, then the stream fails with this error); lenient: the value lands as NULL and
    `missing_required` / `invalid_values` count it for the run's metadata.

    `undocumented` collects the top-level field names the API sent that the operation's response
    schema does not document (their values are kept in `_extra`, with any documented field that has
    no column of its own, such as a parent key the record repeats), so a schema-drift check can
    compare runs."""

    def __init__(self, table: TableDef, strict: bool = True) -> None:
        self.table = table
        self.strict = strict
        self.missing_required: Counter[str] = Counter()
        self.invalid_values: Counter[str] = Counter()  # api field name -> values loaded as NULL
        self.undocumented: set[str] = set()
        self._lock = threading.Lock()
        self.stream = table.stream
        self.record_cols = [c for c in table.columns if c.source == "record"]
        self.item_cols = [c for c in table.columns if c.source == "item"]
        self.derived_cols = [(c.name, c.api_name.split(".")) for c in table.columns if c.source == "derived"]
        known = {c.api_name for c in self.record_cols}
        if self.stream.explode:
            known.add(self.stream.explode)
        self.known = known

    def columns(self, records: list[Any], context: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, list[Any]]:
        """Column-wise values of a page: one list comprehension per column, no per-row dicts."""
        stream = self.stream
        cols: dict[str, list[Any]] = {}
        if stream.scalar_column and not stream.explode:
            rows: list[Any] = records
            cols[stream.scalar_column] = records
        else:
            for rec in records:
                if not isinstance(rec, dict):
                    raise RecordShapeError(
                        f"stream {stream.name}: expected objects in the page, got {type(rec).__name__}"
                    )
            items: list[Any] | None = None
            if stream.explode:  # each element of the array field becomes a row, its record repeated
                pairs = [(rec, item) for rec in records for item in rec.get(stream.explode) or ()]
                rows, items = [p[0] for p in pairs], [p[1] for p in pairs]
            else:
                rows = records
            for c in self.record_cols:
                cols[c.name] = [r.get(c.api_name) for r in rows]
            for col, path in self.derived_cols:
                cols[col] = [_dig(r, path) for r in rows]
            known = self.known
            extra = [None if r.keys() <= known else {k: v for k, v in r.items() if k not in known} for r in rows]
            cols[EXTRA_COLUMN] = extra
            seen = {k for e in extra if e for k in e} - self.table.documented
            if seen - self.undocumented:
                with self._lock:
                    self.undocumented |= seen
            if items is not None:
                if stream.scalar_column:
                    cols[stream.scalar_column] = items
                else:
                    for c in self.item_cols:
                        cols[c.name] = [i.get(c.api_name) for i in items]
        n = len(rows)
        for c in self.table.columns:
            if c.source == "context":
                cols[c.name] = [context.get(c.api_name)] * n
            elif c.source == "data":
                cols[c.name] = [data.get(c.api_name)] * n
            elif c.name not in cols:
                cols[c.name] = [None] * n
        return cols

    def batch(self, records: Iterable[Any], context: Mapping[str, Any], data: Mapping[str, Any]) -> pa.RecordBatch:
        records = list(records)
        if self.table.required:
            self._check_required(records)
        cols = self.columns(records, context, data)
        arrays = [self._array(c, cols[c.name]) for c in self.table.columns]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.table.arrow_schema())
        for key in self.table.primary_key:
            if batch.column(key).null_count:
                raise RecordShapeError(
                    f"stream {self.stream.name}: {batch.column(key).null_count} record(s) lack the primary-key "
                    f"field {key!r}; the API response is incomplete, nothing was written"
                )
        return batch

    def _check_required(self, records: list[Any]) -> None:
        required = self.table.required
        missing: Counter[str] = Counter()
        for rec in records:
            if isinstance(rec, dict) and not required <= rec.keys():
                missing.update(required - rec.keys())
        if not missing:
            return
        keys = {c.api_name for c in self.table.columns if c.name in self.table.primary_key}
        if self.strict or missing.keys() & keys:
            field_name, n = max(missing.items(), key=lambda kv: (kv[0] in keys, kv[1]))
            if field_name in keys:
                raise RecordShapeError(
                    f"stream {self.stream.name}: {n} record(s) lack the primary-key field {field_name!r}; "
                    "the API response is incomplete, nothing was written"
                )
            raise RecordShapeError(
                f"stream {self.stream.name}: {n} record(s) lack the field {field_name!r}, which the API schema marks "
                f"required; nothing was written. If the API really dropped it, set require_documented_fields=False "
                f"on the segment resource to load it as NULL"
            )
        with self._lock:
            self.missing_required.update(missing)

    def _array(self, c: Column, values: list[Any]) -> pa.Array:
        default = self.stream.key_defaults.get(c.name)
        if default is not None:
            values = [default if v is None else v for v in values]
        if c.type == "JSON":
            values = [_json(v) for v in values]
        elif c.type == "BIGINT":
            values = [int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v for v in values]
        elif c.type == "TIMESTAMPTZ":
            try:  # ISO-8601 strings, parsed by Arrow in C
                return pa.array(values, pa.string()).cast(ARROW_TYPES[c.type])
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                values = self._timestamps(c, values)  # unix seconds, dates, offsets Arrow does not parse
        elif c.type == "DOUBLE":
            values = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values]
        try:
            return pa.array(values, type=ARROW_TYPES[c.type])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            bad = next((v for v in values if v is not None and not _fits(v, c.type)), None)
            raise RecordShapeError(
                f"stream {self.stream.name}: field {c.api_name!r} (column {c.name}, {c.type}) received "
                f"{type(bad).__name__} value {bad!r:.60}; the API changed the field's type. Nothing was written; "
                f"declare column_types={{{c.name!r}: 'JSON'}} for this stream to keep it as JSON"
            ) from exc

    def _timestamps(self, c: Column, values: list[Any]) -> list[datetime | None]:
        out: list[datetime | None] = []
        bad: list[Any] = []
        for v in values:
            parsed = timestamp(v)
            if parsed is None and v is not None and v != "":
                bad.append(v)
            out.append(parsed)
        if bad:
            if self.strict:
                raise RecordShapeError(
                    f"stream {self.stream.name}: field {c.api_name!r} (column {c.name}, TIMESTAMPTZ) received "
                    f"{len(bad)} value(s) that are not timestamps, e.g. {bad[0]!r:.60}; nothing was written. If the "
                    f"API really sends such values, set require_documented_fields=False on the segment resource to "
                    f"load them as NULL (counted in the metadata), or declare column_types={{{c.name!r}: 'VARCHAR'}} "
                    f"for this stream"
                )
            with self._lock:
                self.invalid_values[c.api_name] += len(bad)
        return out


def timestamp(value: Any) -> datetime | None:
    """ISO-8601 strings (what most endpoints send), dates, or unix seconds (MTU period bounds);
    None for anything else (and for the empty string, which the API uses for "never")."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _fits(value: Any, kind: str) -> bool:
    return {
        "VARCHAR": isinstance(value, str),
        "BIGINT": isinstance(value, int) and not isinstance(value, bool),
        "DOUBLE": isinstance(value, (int, float)) and not isinstance(value, bool),
        "BOOLEAN": isinstance(value, bool),
    }.get(kind, True)

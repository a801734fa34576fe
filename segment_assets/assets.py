"""The one factory that turns stream declarations into Dagster assets, and the body they share.

A child stream depends on its parent asset and takes its ids from the parent's stored
table, so the asset graph mirrors the API's fan-out. Requests for many parents run
concurrently (bounded); pages become Arrow batches and go to the storage target, which
stages them and applies the write in one transaction.
"""


import itertools
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    DailyPartitionsDefinition,
    MaterializeResult,
    MonthlyPartitionsDefinition,
    PartitionsDefinition,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from segment_assets import spec
from segment_assets.client import NotFound, Page, SegmentClient, StreamUnavailable
from segment_assets.resources import DuckDBTargetResource, SegmentResource
from segment_assets.storage import SCHEMA, KeyCheck, Target, WriteResult
from segment_assets.streams import StreamSpec, TimeWindowing, Window, materialized_streams
from segment_assets.tables import RECORD_KIND, WINDOW_END, WINDOW_START, Shaper, TableDef, table_def

KEY_PREFIX = "segment"
POOL = "segment_api"
PK_CHECK = "primary_key_unique_not_null"


def asset_key(stream_name: str) -> AssetKey:
    return AssetKey([KEY_PREFIX, stream_name])


DAILY_HISTORY_DAYS = 90  # the audit trail's retention, the longest of the daily streams


@cache
def partitions_def(window: Window) -> PartitionsDefinition:
    """One daily and one monthly partitioning shared by all time-based streams, so a schedule
    or backfill can cover them together. Start dates: SEGMENT_DAILY_START / SEGMENT_MONTHLY_START
    (YYYY-MM-DD), else as far back as the API keeps data. Each stream clamps to its own retention."""
    today = datetime.now(timezone.utc).date()
    if window is Window.DAILY:
        start = os.environ.get("SEGMENT_DAILY_START") or str(today - timedelta(days=DAILY_HISTORY_DAYS - 1))
        return DailyPartitionsDefinition(start_date=start, timezone="UTC")
    start = os.environ.get("SEGMENT_MONTHLY_START") or str(date(today.year - 1, today.month, 1))
    # end_offset=1: the current month is a partition too; its cumulative counts are re-read.
    return MonthlyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)


def window_queries(windowing: TimeWindowing, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Request parameters covering [start, end): months for `period`, else time chunks no longer
    than the API accepts in one request (or exactly one chunk per day for per-window snapshots)."""
    if windowing.period_param:
        out, month = [], date(start.year, start.month, 1)
        while datetime(month.year, month.month, 1, tzinfo=timezone.utc) < end:
            out.append({windowing.period_param: month.isoformat()})
            month = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        return out
    step = timedelta(days=windowing.chunk_days or windowing.max_range_days or 10_000)
    out, a = [], start
    while a < end:
        b = min(a + step, end)
        q: dict[str, Any] = {windowing.start_param: _iso(a), windowing.end_param: _iso(b)}
        if windowing.granularity:
            q["granularity"] = windowing.granularity
        if windowing.window_columns:
            q[WINDOW_START], q[WINDOW_END] = a, b
        out.append(q)
        a = b
    return out


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clamp_to_retention(windowing: TimeWindowing, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The part of [start, end) the API still serves; None when all of it is older than retention."""
    if not windowing.retention_days:
        return start, end
    oldest = datetime.now(timezone.utc) - timedelta(days=windowing.retention_days)
    if windowing.partition is Window.MONTHLY:
        oldest = oldest.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if end <= oldest:
        return None
    return max(start, oldest), end


@dataclass(frozen=True)
class Request:
    path: dict[str, str]
    query: dict[str, Any]  # may hold context-only keys (the window bounds), never sent

    @property
    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.query.items() if k not in (WINDOW_START, WINDOW_END)}

    @property
    def context(self) -> dict[str, Any]:
        return {**self.query, **self.path}


@dataclass
class FetchOutcome:
    requests: int = 0  # parameter sets (parents x fan-out values) requested
    watermark_stops: int = 0  # requests whose paging stopped below the stored watermark
    parents_gone: int = 0  # parent ids that answered 404 (deleted since the parent table was loaded)
    unavailable: list[str] = field(default_factory=list)  # why, per parameter set refused

    @property
    def fully_unavailable(self) -> bool:
        return bool(self.unavailable) and len(self.unavailable) == self.requests


def plan_requests(stream: StreamSpec, target: Target, windows: list[dict[str, Any]] | None = None) -> list[Request]:
    """Every parameter set the stream must be read with: parent ids x fan-out values x time windows."""
    sets: list[dict[str, Any]] = [{}]
    if stream.parent:
        params = list(stream.parent.params)
        rows = target.parent_keys(stream.parent.stream, list(stream.parent.params.values()), stream.parent.where)
        sets = [dict(zip(params, row)) for row in rows]
    for param, values in stream.fan_out.items():
        sets = [{**s, param: v} for s in sets for v in values]
    path_names = set(stream.operation.path_params)
    return [
        Request(
            path={k: str(v) for k, v in s.items() if k in path_names},
            query={**{k: v for k, v in s.items() if k not in path_names}, **window},
        )
        for s in sets
        for window in (windows or [{}])
    ]


WATERMARK_OVERLAP = timedelta(days=1)  # re-read a day below the watermark: late-finishing syncs change


def fetch_batches(
    stream: StreamSpec, client: SegmentClient, requests: list[Request], outcome: FetchOutcome, concurrency: int,
    shaper: Shaper, watermarks: Mapping[tuple[str, ...], datetime] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Pages of all requests as Arrow batches. A single request streams page by page; many
    requests (fan-out) run on a bounded pool, each collecting its own (small) pages."""
    outcome.requests = len(requests)
    watermark_column = spec.snake_case(stream.watermark) if stream.watermark else None

    def read(request: Request) -> Iterator[pa.RecordBatch]:
        floor = (watermarks or {}).get(_parent_key(stream, request))

        def shape(page: Page) -> pa.RecordBatch:
            return shaper.batch(page.records, _context(request, page.record_kind), page.data)

        try:
            for batch in client.pages(stream, request.path, request.params, shape=shape):
                yield batch
                if floor is not None and _all_older(batch, watermark_column, floor - WATERMARK_OVERLAP):
                    outcome.watermark_stops += 1
                    return
        except StreamUnavailable as exc:
            outcome.unavailable.append(str(exc))
        except NotFound:
            if not stream.parent:
                raise
            outcome.parents_gone += 1  # deleted between the parent's load and this read

    if len(requests) == 1:
        yield from read(requests[0])
        return
    pending: set[Future[list[pa.RecordBatch]]] = set()
    todo = iter(requests)
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=f"segment-{stream.name}") as pool:
        try:
            for request in itertools.islice(todo, concurrency * 2):
                pending.add(pool.submit(lambda r: list(read(r)), request))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.add(pool.submit(lambda r: list(read(r)), nxt))
        finally:
            for future in pending:
                future.cancel()


def _parent_key(stream: StreamSpec, request: Request) -> tuple[str, ...]:
    ctx = request.context
    return tuple(str(ctx[p]) for p in stream.parent.params) if stream.parent else ()


def _all_older(batch: pa.RecordBatch, column: str | None, floor: datetime) -> bool:
    if not column or not batch.num_rows:
        return False
    newest = pc.max(batch.column(column)).as_py()
    return newest is not None and newest < floor


def stored_watermarks(stream: StreamSpec, target: Target) -> dict[tuple[str, ...], datetime]:
    if not stream.watermark:
        return {}
    group = [stream.parent.column_for(p) for p in stream.parent.params] if stream.parent else []
    return target.max_by(stream.table, group, spec.snake_case(stream.watermark))  # type: ignore[return-value]


def _context(request: Request, record_kind: str | None) -> dict[str, Any]:
    ctx = request.context
    if record_kind:
        ctx[RECORD_KIND] = record_kind
    return ctx


def column_schema(table: TableDef) -> TableSchema:
    return TableSchema(columns=[TableColumn(name, kind) for name, kind in table.column_schema()])


def materialize_stream(
    context: AssetExecutionContext, stream: StreamSpec, segment: SegmentResource, storage: DuckDBTargetResource
) -> MaterializeResult:
    table = table_def(stream.name)
    target = storage.get_target()
    started = time.monotonic()
    metadata: dict[str, Any] = {
        "dagster/table_name": f"{SCHEMA}.{table.name}",
        "dagster/column_schema": column_schema(table),
        "segment/operation_id": stream.operation_id,
        "segment/connection": segment.connection_name,
        "segment/update_method": stream.update_method.value,
    }
    if stream.stability not in segment.stabilities:
        target.ensure_table(table)
        return _unavailable(context, stream, target, table, metadata,
                            f"{stream.stability} endpoints are switched off in configuration (stabilities={segment.stabilities})")

    window: tuple[datetime, datetime] | None = None
    windows: list[dict[str, Any]] | None = None
    if stream.windowing:
        tw = context.partition_time_window
        window = clamp_to_retention(stream.windowing, tw.start, tw.end)
        metadata["segment/window"] = f"{_iso(tw.start)} .. {_iso(tw.end)}"
        if window is None:
            target.ensure_table(table)
            return _unavailable(context, stream, target, table, metadata,
                                f"the window is older than the API's {stream.windowing.retention_days}-day retention: "
                                "nothing was requested and rows already loaded for it are kept")
        windows = window_queries(stream.windowing, *window)

    client = segment.get_client()
    before = client.stats.snapshot()
    requests = plan_requests(stream, target, windows)
    outcome = FetchOutcome()
    shaper = table.shaper(strict=segment.require_documented_fields)
    batches = fetch_batches(stream, client, requests, outcome, segment.max_concurrency, shaper,
                            stored_watermarks(stream, target))
    # Knowing a stream is refused before the write keeps a gated stream's old table intact.
    staged = _peek_unavailable(batches, outcome)
    if outcome.fully_unavailable:
        target.ensure_table(table)
        _add_request_stats(metadata, client, before)
        return _unavailable(context, stream, target, table, metadata, outcome.unavailable[0])
    if window is not None and stream.windowing:
        result = target.replace_window(table, staged, time_column=stream.windowing.time_column,
                                       start=window[0], end=window[1], run_id=context.run.run_id)
    else:
        result = target.write_snapshot(table, staged, method=stream.update_method, run_id=context.run.run_id)
    _add_request_stats(metadata, client, before)
    metadata.update(_write_metadata(result))
    metadata["segment/parameter_sets"] = len(requests)
    if stream.watermark:
        metadata["segment/watermark_stops"] = outcome.watermark_stops
    if outcome.parents_gone:
        metadata["segment/parents_gone"] = outcome.parents_gone
    if shaper.missing_required:
        metadata["segment/missing_required_fields"] = dict(shaper.missing_required)
        context.log.warning("%s: records lacked required fields, loaded as NULL: %s", stream.name,
                            dict(shaper.missing_required))
    if outcome.unavailable:
        metadata["segment/unavailable_parameter_sets"] = len(outcome.unavailable)
        metadata["segment/unavailable_example"] = outcome.unavailable[0]
    metadata["segment/seconds"] = round(time.monotonic() - started, 3)
    context.log.info(
        "%s: %d rows (%d read, +%d ~%d -%d) in %d requests, %d pages",
        stream.name, result.rows, result.staged, result.inserted, result.updated, result.deleted,
        metadata["segment/api_requests"], metadata["segment/pages"],
    )
    return MaterializeResult(metadata=metadata, check_results=[_key_check(target, table, result.key_check)])


def _peek_unavailable(batches: Iterator[pa.RecordBatch], outcome: FetchOutcome) -> Iterator[pa.RecordBatch]:
    """Pull the first batch before the target is touched, so a refused stream is known up front."""
    first = next(batches, None)

    def chain() -> Iterator[pa.RecordBatch]:
        if first is not None:
            yield first
        yield from batches

    return chain()


def _add_request_stats(metadata: dict[str, Any], client: SegmentClient, before: Mapping[str, Any]) -> None:
    after = client.stats.snapshot()
    metadata["segment/api_requests"] = after["requests"] - before["requests"]
    metadata["segment/pages"] = after["pages"] - before["pages"]
    metadata["segment/retries"] = after["retries"] - before["retries"]
    metadata["segment/rate_limited_429"] = after["rate_limited"] - before["rate_limited"]
    metadata["segment/rate_limit_waits"] = after["rate_limit_waits"] - before["rate_limit_waits"]
    metadata["segment/rate_limit_wait_seconds"] = round(after["wait_seconds"] - before["wait_seconds"], 3)


def _write_metadata(result: WriteResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dagster/row_count": result.rows,
        "segment/rows_read": result.staged,
        "segment/inserted": result.inserted,
        "segment/updated": result.updated,
        "segment/deleted": result.deleted,
        "segment/change_rows": result.change_rows,
        "segment/write_seconds": round(result.seconds, 3),
    }
    if result.change_seq_first:
        out["segment/change_seq_range"] = f"{result.change_seq_first} .. {result.change_seq_last}"
    return out


def _unavailable(context: AssetExecutionContext, stream: StreamSpec, target: Target, table: TableDef,
                 metadata: dict[str, Any], why: str) -> MaterializeResult:
    context.log.warning("%s: stream unavailable, table left as it was: %s", stream.name, why)
    check = _key_check(target, table)
    metadata.update({
        "segment/status": "unavailable",
        "segment/unavailable_reason": why,
        "dagster/row_count": check.metadata["rows"].value if "rows" in check.metadata else 0,
    })
    metadata.setdefault("segment/api_requests", 0)
    return MaterializeResult(metadata=metadata, check_results=[check])


def _key_check(target: Target, table: TableDef, check: KeyCheck | None = None) -> AssetCheckResult:
    check = check or target.check_primary_key(table)
    return AssetCheckResult(
        check_name=PK_CHECK,
        passed=check.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "primary_key": MetadataValue.text(", ".join(table.primary_key)),
            "rows": check.rows,
            "duplicate_keys": check.duplicate_keys,
            "null_keys": check.null_keys,
        },
    )


def build_asset(stream: StreamSpec) -> AssetsDefinition:
    key = asset_key(stream.name)
    op = stream.operation
    deps = [asset_key(stream.parent.stream)] if stream.parent else []
    description = (
        f"Segment `{stream.operation_id}` (GET {stream.path}, {stream.stability}) into "
        f"`{SCHEMA}.{stream.table}`; key ({', '.join(stream.primary_key)}); {stream.update_method.value}."
        + (f" Requires the '{op.feature_gate}' feature." if op.feature_gate else "")
        + (f" {stream.decision}." if stream.decision else "")
    )

    @asset(
        key=key,
        group_name=stream.group,
        kinds={"segment", "duckdb"},
        deps=deps,
        description=description,
        check_specs=[AssetCheckSpec(PK_CHECK, asset=key, description="Primary key is unique and never null")],
        pool=POOL,
        partitions_def=partitions_def(stream.windowing.partition) if stream.windowing else None,
        # Partition code reads the run's whole time window, so a range backfill is one run.
        backfill_policy=BackfillPolicy.single_run() if stream.windowing else None,
        tags={"segment/stability": stream.stability},
        metadata={
            "dagster/table_name": f"{SCHEMA}.{stream.table}",
            "dagster/column_schema": column_schema(table_def(stream.name)),
            "segment/operation_id": stream.operation_id,
            "segment/path": stream.path,
        },
    )
    def _asset(context: AssetExecutionContext, segment: SegmentResource, storage: DuckDBTargetResource) -> MaterializeResult:
        return materialize_stream(context, stream, segment, storage)

    return _asset


def build_assets() -> list[AssetsDefinition]:
    with warnings.catch_warnings():
        # BackfillPolicy is "beta" in Dagster 1.13; single-run backfills are what we rely on.
        warnings.simplefilter("ignore", BetaWarning)
        return [build_asset(s) for s in materialized_streams()]

"""How one stream is read: its parameter sets (parent ids x fan-out values x time windows),
and its pages as Arrow batches.

A child stream takes its parent ids from the parent's stored table, so every stream can run
alone (a retry of one asset needs no re-read of its parents). Requests for many parents run
concurrently on the run's fan-out pool, a bounded number per stream; each request's pages are
shaped into Arrow batches as they arrive.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from segment_assets.api import spec
from segment_assets.api.client import SegmentClient
from segment_assets.api.errors import NotFound, StreamUnavailable
from segment_assets.api.paging import Page
from segment_assets.api.streams import InlineRecords, ParentLink, StreamSpec
from segment_assets.api.tables import RECORD_KIND, WINDOW_END, WINDOW_START, Shaper
from segment_assets.storage import Target

WATERMARK_OVERLAP = timedelta(days=1)  # re-read a day below the watermark: late-finishing syncs change


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
    unavailable: list[str] = field(default_factory=list)  # why, per parameter set refused (first few)
    unavailable_count: int = 0

    @property
    def fully_unavailable(self) -> bool:
        return self.unavailable_count > 0 and self.unavailable_count == self.requests

    def refused(self, why: str) -> None:
        self.unavailable_count += 1
        if len(self.unavailable) < 3:  # a few examples: the count says the rest, memory stays flat
            self.unavailable.append(why)


INLINE_PARENTS_PER_READ = 2_000  # complete lists handed to the writer at a time (`Target.complete_lists`)


@dataclass
class InlineParents:
    """A stream's parents split by what their stored list already holds (`StreamSpec.inline`): the
    parameter sets still requested from the stream's endpoint, and the complete lists, handed to
    the write in pieces of `per_read` parents (`Target.complete_lists`), never all at once: a space
    can hold 740,000 properties, each with up to 99 values."""

    requested: list[dict[str, Any]]
    target: Target | None = None  # with link and inline: where the complete lists are read
    link: ParentLink | None = None
    inline: InlineRecords | None = None
    per_read: int = INLINE_PARENTS_PER_READ
    complete_count: int = 0  # complete lists read so far (all of them once `batches` is consumed)

    def complete(self) -> Iterator[tuple[dict[str, Any], Any]]:
        """Each complete parent's parameter set with its list as stored."""
        if self.target is None or self.link is None or self.inline is None:
            return
        names, n = list(self.link.params), len(self.link.params)
        columns = list(self.link.params.values())
        for rows in self.target.complete_lists(self.link.stream, columns, self.link.where, self.inline, self.per_read):
            for row in rows:
                self.complete_count += 1
                yield dict(zip(names, row[:n])), row[n]

    def batches(self, shaper: Shaper, per_batch: int = 10_000) -> Iterator[pa.RecordBatch]:
        """The complete parents' records as the endpoint would have returned them, shaped with each
        parent's parameters as context; small lists are gathered into batches of about `per_batch` rows."""
        pending: list[pa.RecordBatch] = []
        rows = 0
        for params, raw in self.complete():
            records = _records(raw)
            if not records:
                continue
            batch = shaper.batch(records, params, {})
            pending.append(batch)
            rows += batch.num_rows
            if rows >= per_batch:
                yield from pa.Table.from_batches(pending).combine_chunks().to_batches()
                pending, rows = [], 0
        if pending:
            yield from pa.Table.from_batches(pending).combine_chunks().to_batches()


class ParentKeys:
    """Parent ids read once per run: sources feeds seven children, and a parent is written before
    any of its children starts (and never again in the same run), so one read serves them all."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._rows: dict[tuple[Any, ...], list[tuple[object, ...]]] = {}
        self._lock = threading.Lock()

    def _read(self, link: ParentLink) -> list[tuple[object, ...]]:
        columns = list(link.params.values())
        key = (link.stream, tuple(columns), link.where)
        with self._lock:
            rows = self._rows.get(key)
            if rows is None:
                rows = self._rows[key] = self.target.parent_keys(link.stream, columns, link.where)
        return rows

    def rows(self, stream: StreamSpec) -> list[dict[str, Any]]:
        """The parameter sets a child stream's parent table provides (parameter name -> value)."""
        if not stream.parent:
            return [{}]
        link = stream.parent
        return [dict(zip(link.params, row)) for row in self._read(link)]

    def inline(self, stream: StreamSpec) -> InlineParents:
        """The parameter sets of a stream whose parent's rows carry its records: those whose stored
        list may have been cut (as long as the limit) or is absent, to request, and a reader of the
        complete lists. The target tells them apart: only the parameters to request are held."""
        link, inline = stream.parent, stream.inline
        if link is None or inline is None:
            return InlineParents(self.rows(stream))
        cut = self.target.parent_keys(link.stream, list(link.params.values()), link.where, cut=inline)
        requested = [dict(zip(link.params, row)) for row in cut]
        return InlineParents(requested, self.target, link, inline, per_read=INLINE_PARENTS_PER_READ)


def _records(raw: Any) -> Any:
    """A stored list column's value: JSON text on both targets (None when the list was absent)."""
    return orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw


def parent_rows(stream: StreamSpec, target: Target) -> list[dict[str, Any]]:
    """The parameter sets a child stream's parent table provides (parameter name -> value)."""
    return ParentKeys(target).rows(stream)


def plan_requests(
    stream: StreamSpec, parents: list[dict[str, Any]], windows: list[dict[str, Any]] | None = None
) -> list[Request]:
    """Every parameter set the stream must be read with: parent ids x fan-out values x time windows."""
    sets = parents
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


def fetch_batches(
    stream: StreamSpec,
    client: SegmentClient,
    requests: list[Request],
    outcome: FetchOutcome,
    pool: Executor,
    concurrency: int,
    shaper: Shaper,
    watermarks: Mapping[tuple[str, ...], datetime] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Pages of all requests as Arrow batches. A single request streams page by page in the
    caller's thread; many requests (fan-out) run on `pool`, at most `concurrency` at once, each
    collecting its own (small) pages."""
    outcome.requests = len(requests)
    watermark_column = spec.snake_case(stream.watermark) if stream.watermark else None

    def read(request: Request) -> Iterator[pa.RecordBatch]:
        floor = (watermarks or {}).get(parent_key(stream, request))

        def shape(page: Page) -> pa.RecordBatch:
            return shaper.batch(page.records, _context(request, page.record_kind), page.data)

        try:
            for batch in client.pages(stream, request.path, request.params, shape=shape):
                yield batch
                if floor is not None and _reaches(batch, watermark_column, floor - WATERMARK_OVERLAP):
                    outcome.watermark_stops += 1  # newest first: every later page is older still
                    return
        except StreamUnavailable as exc:
            outcome.refused(str(exc))
        except NotFound:
            if not stream.parent:
                raise
            outcome.parents_gone += 1  # deleted between the parent's load and this read

    if len(requests) == 1:
        yield from read(requests[0])
        return
    # The pool is the run's, shared by every fan-out stream: at most `concurrency` requests of this
    # stream are in it at once, so a stream sleeping on a 2/min budget holds only its own share.
    pending: set[Future[list[pa.RecordBatch]]] = set()
    todo = iter(requests)
    try:
        for request in itertools.islice(todo, max(1, concurrency)):
            pending.add(pool.submit(lambda r: list(read(r)), request))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                batches = future.result()
                nxt = next(todo, None)
                if nxt is not None:  # before the batches go to the writer: the slot stays busy meanwhile
                    pending.add(pool.submit(lambda r: list(read(r)), nxt))
                yield from batches
    finally:
        for future in pending:
            future.cancel()
        wait(pending)  # requests already running end before the stream does (they end at once on a stop)


def parent_key(stream: StreamSpec, request: Request) -> tuple[str, ...]:
    ctx = request.context
    return tuple(str(ctx[p]) for p in stream.parent.params) if stream.parent else ()


def _reaches(batch: pa.RecordBatch, column: str | None, floor: datetime) -> bool:
    """The page holds a row at or below the floor: what is below it was read by an earlier run."""
    if not column or not batch.num_rows:
        return False
    oldest = pc.min(batch.column(column)).as_py()
    return oldest is not None and oldest <= floor


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

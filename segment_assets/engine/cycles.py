"""Big fan-outs read over several runs: resumable cycles.

Some streams cost one request per parent on a slow endpoint: the space-schema sample values
are one request per property at 25/min, so 740k properties would take 20 days in one run.
Before such a stream starts, its requests are estimated from the parent table; when they
exceed the run's budget (the endpoint's limit x `fanout_budget_minutes`, 30 minutes by
default), the stream reads **resumably**:

- A *cycle* reads every parent once. Each run reads the next parents in order, up to the
  budget, and commits what it read as an upsert (I/U change rows), then records which
  parents are done (`<table>__cycle_parents`) and which rows it saw (`<table>__cycle_keys`).
  The next run continues with the parents not done yet, including parents created since.
- **Deletes are decided when the cycle completes**, never before: a row no run of the cycle
  saw (its parent was deleted, or the API stopped listing it) is deleted then, with its `D`
  change row. Until then the table holds the previous cycle's rows for unread parents, so it
  is always a complete, if partly older, picture.
- The cycle's progress is in the target's state (`cycle:<table>`): the cycle id (its start
  time), parents done and total, and the last complete cycle; each materialization reports it.
- A killed run loses nothing committed: its parents are recorded done only after their rows
  are, so the next run re-reads at most the parents of the interrupted chunk (an upsert of the
  same rows writes no change rows).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from segment_assets.api.streams import StreamSpec, UpdateMethod
from segment_assets.api.tables import TableDef
from segment_assets.storage import Target, WriteResult

DEFAULT_BUDGET_MINUTES = 30.0
PARENTS_SUFFIX = "__cycle_parents"
KEYS_SUFFIX = "__cycle_keys"


def state_key(table: str) -> str:
    return f"cycle:{table}"


def budget_requests(stream: StreamSpec, minutes: float, overrides: Mapping[str, int] | None = None) -> int | None:
    """Requests one run may spend on `stream`; None when the stream is not budgeted (no parent,
    or an endpoint without a limit of its own, which is never the bottleneck)."""
    if overrides and stream.name in overrides:
        return max(1, int(overrides[stream.name]))
    if not stream.parent or not stream.rate_limit_per_minute or minutes <= 0:
        return None
    return max(1, int(stream.rate_limit_per_minute * minutes))


def resumable(stream: StreamSpec, method: UpdateMethod) -> bool:
    """Only a fan-out read in full and compared can be spread over runs: a partial read of a full
    load would lose rows, and watermark or partitioned streams are incremental already."""
    return stream.parent is not None and not stream.fan_out and method is UpdateMethod.RELOAD_AND_COMPARE


@dataclass
class CycleState:
    cycle: str | None = None  # id of the cycle in progress (its start, UTC), None between cycles
    parents_total: int = 0
    parents_done: int = 0
    complete_cycle: str | None = None  # the last cycle read to the end
    completed_at: str | None = None

    @classmethod
    def load(cls, target: Target, table: str) -> CycleState:
        raw = target.read_state(state_key(table))
        return cls(**json.loads(raw)) if raw else cls()

    def save(self, target: Target, table: str) -> None:
        target.write_state(state_key(table), json.dumps(self.__dict__, sort_keys=True))


@dataclass
class Cycle:
    """One run's share of a resumable read."""

    stream: StreamSpec
    table: TableDef
    target: Target
    state: CycleState
    chunk: list[dict[str, Any]]  # the parents this run reads
    remaining_after: int  # parents still to read after this run
    budget: int
    keys: list[pa.RecordBatch] = field(default_factory=list)

    @property
    def parents_table(self) -> str:
        return self.table.name + PARENTS_SUFFIX

    @property
    def keys_table(self) -> str:
        return self.table.name + KEYS_SUFFIX

    def tee_keys(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Pass batches through, keeping their primary keys for the cycle's delete decision."""
        for batch in batches:
            if batch.num_rows:
                self.keys.append(batch.select(list(self.table.primary_key)))
            yield batch

    def _seen_keys(self) -> pa.Table:
        if self.keys:
            return pa.Table.from_batches(self.keys)
        schema = self.table.arrow_schema()
        return pa.schema([schema.field(k) for k in self.table.primary_key]).empty_table()

    def write(self, batches: Iterable[pa.RecordBatch], run_id: str) -> WriteResult:
        # No deletes yet: a parent not read yet keeps its rows until the cycle says otherwise.
        result = self.target.upsert(self.table, self.tee_keys(batches), run_id=run_id)
        # Appended even when empty: the key table must exist at the end of a cycle whose runs read
        # no row at all (audiences without consumers), and then every row of the table goes.
        self.target.append_rows(self.keys_table, self._seen_keys())
        self.target.append_rows(self.parents_table, _parents_arrow(self.stream, self.chunk))
        self.state.parents_done += len(self.chunk)
        if self.remaining_after == 0:
            deleted = self.target.delete_missing(self.table, self.keys_table, run_id)
            result.deleted = deleted.deleted
            result.change_rows += deleted.change_rows
            result.rows = deleted.rows
            result.key_check = deleted.key_check or result.key_check
            result.change_seq_first = result.change_seq_first or deleted.change_seq_first
            result.change_seq_last = deleted.change_seq_last or result.change_seq_last
            self.target.drop_table(self.keys_table)
            self.target.drop_table(self.parents_table)
            self.state.complete_cycle, self.state.completed_at = self.state.cycle, _now()
            self.state.cycle = None
        self.state.save(self.target, self.table.name)
        return result

    def metadata(self) -> dict[str, Any]:
        done = self.state.parents_done
        total = self.state.parents_total
        return {
            "segment/cycle": self.state.cycle or self.state.complete_cycle,
            "segment/cycle_parents_done": done,
            "segment/cycle_parents_total": total,
            "segment/cycle_complete_for": self.state.complete_cycle or "none yet",
            "segment/cycle_runs_left": math.ceil(self.remaining_after / self.budget) if self.remaining_after else 0,
            "segment/request_budget": self.budget,
        }


def open_cycle(stream: StreamSpec, table: TableDef, target: Target, budget: int | None) -> Cycle | None:
    """The resumable share of this run, or None when the stream fits in one run (no cycle open).

    The parents are counted, and the next ones chosen, in the target (against the parent table and
    `<table>__cycle_parents`): a run holds this run's share of the parent keys, never all of them."""
    if budget is None or not stream.parent:
        return None
    state = CycleState.load(target, table.name)
    link = stream.parent
    columns, params = list(link.params.values()), list(link.params)
    parents_table = table.name + PARENTS_SUFFIX
    if state.cycle is None:
        total, _, _ = target.parents_left(link.stream, columns, link.where, None, params, 0, stream.inline)
        if total <= budget:
            return None
        state.cycle = _now()
        state.parents_done = 0
        for name in (parents_table, table.name + KEYS_SUFFIX):
            target.drop_table(name)  # leftovers of a cycle abandoned by an older version
    total, left, rows = target.parents_left(
        link.stream, columns, link.where, parents_table, params, budget, stream.inline
    )
    state.parents_done = total - left
    state.parents_total = total
    chunk = [dict(zip(params, row)) for row in rows]
    return Cycle(stream, table, target, state, chunk, left - len(chunk), budget)


def _parents_arrow(stream: StreamSpec, parents: Sequence[dict[str, Any]]) -> pa.Table:
    params = list(stream.parent.params) if stream.parent else []
    return pa.table({p: pa.array([str(row[p]) for row in parents], pa.string()) for p in params})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

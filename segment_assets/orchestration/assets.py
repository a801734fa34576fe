"""The factory that turns a workspace's stream declarations into Dagster assets.

One asset per stream (its own key, group, lineage, metadata and checks), executed by one
multi-asset per workspace and partitioning (configuration, daily, monthly), like
dagster-dbt and dagster-dlt do for their tables: `can_subset=True`, so any selection runs
as one step in which the selected streams proceed concurrently as soon as their parents
are written (`engine.runner.run_streams`), each stream's materialization yielded the moment
its table is committed. A child whose parent is not selected reads the parent's stored table.
A stream that fails or is stopped fails the step, named, after the others are recorded.
"""

import atexit
import itertools
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Set
from typing import ClassVar

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    BetaWarning,
    DagsterExecutionInterruptedError,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from segment_assets.api.streams import Partitioning, StreamSpec
from segment_assets.api.tables import table_def
from segment_assets.engine import progress
from segment_assets.engine.runner import StreamOutcome, StreamRun, run_streams, sync_stream
from segment_assets.orchestration.connections import ZERO_CONFIG, Connection
from segment_assets.orchestration.partitions import partitions_def
from segment_assets.orchestration.resources import DuckDBStorage, SegmentResource, StorageResource
from segment_assets.orchestration.translator import SegmentTranslator
from segment_assets.orchestration.workspaces import Workspace
from segment_assets.storage import KeyCheck

PK_CHECK = "primary_key_unique_not_null"
DRIFT_CHECK = "schema_drift"
PARTITIONINGS: tuple[Partitioning | None, ...] = (None, Partitioning.DAILY, Partitioning.MONTHLY)


def partitioning_of(stream: StreamSpec) -> Partitioning | None:
    return stream.windowing.partitioning if stream.windowing else None


def step_name(connection: Connection, partitioning: Partitioning | None, group: str | None = None) -> str:
    job = "config" if partitioning is None else partitioning.value
    name = connection.job_names[job].replace("segment_", "segment_sync_", 1)
    return f"{name}_{group}" if group else name


def asset_key(stream_name: str, connection: Connection = ZERO_CONFIG) -> AssetKey:
    """The default translator's key of a stream (`segment/<stream>` for the zero-config workspace)."""
    return Workspace(connection).asset_key(stream_name)


def build_assets(
    connection: Connection = ZERO_CONFIG, storage: StorageResource | None = None
) -> list[AssetsDefinition]:
    """The assets of one workspace with the default translator, for code that binds its own
    resources under the workspace's keys (`materialize(build_assets(), resources=...)`)."""
    return build_workspace_assets(Workspace(connection), storage or DuckDBStorage())


def build_workspace_assets(
    workspace: Workspace,
    storage: StorageResource,
    spec_mapper: Callable[[StreamSpec, AssetSpec], AssetSpec] | None = None,
) -> list[AssetsDefinition]:
    """One multi-asset per partitioning holding every selected stream of the workspace."""
    connection, translator = workspace.connection, workspace.translator
    streams = connection.streams()
    keys = {s.name: translator.get_asset_key(s, connection) for s in streams}
    out = []
    for partitioning in PARTITIONINGS:
        alike = [s for s in streams if partitioning_of(s) is partitioning]
        groups = dict.fromkeys(s.group for s in alike) if connection.step_per_group else {None: None}
        for group in groups:
            members = [s for s in alike if group is None or s.group == group]
            specs = []
            for s in members:
                spec = translator.get_asset_spec(
                    s,
                    connection,
                    storage_kind=storage.kind,
                    table_name=storage.table_name(s.table),
                    parent_key=keys.get(s.parent.stream) if s.parent else None,
                )
                specs.append(spec_mapper(s, spec) if spec_mapper else spec)
            if members:
                out.append(_multi_asset(workspace, partitioning, members, specs, group))
    return out


def _multi_asset(
    workspace: Workspace,
    partitioning: Partitioning | None,
    streams: list[StreamSpec],
    specs: list[AssetSpec],
    group: str | None = None,
) -> AssetsDefinition:
    by_key = {spec.key: stream for spec, stream in zip(specs, streams)}
    key_of = {stream.name: spec.key for spec, stream in zip(specs, streams)}
    connection = workspace.connection
    segment_key, storage_key = connection.resource_keys
    pdef = partitions_def(partitioning, connection) if partitioning else None
    with warnings.catch_warnings():
        # BackfillPolicy is "beta" in Dagster 1.13; single-run backfills are what we rely on.
        warnings.simplefilter("ignore", BetaWarning)

        @multi_asset(
            name=step_name(connection, partitioning, group),
            # Skippable: a stream that failed is not materialized, the others still are.
            specs=[s.replace_attributes(skippable=True) for s in specs],
            check_specs=[
                c
                for s in specs
                for c in (
                    AssetCheckSpec(PK_CHECK, asset=s.key, description="Primary key is unique and never null"),
                    AssetCheckSpec(
                        DRIFT_CHECK,
                        asset=s.key,
                        description="Warns when the API starts sending fields its "
                        "schema does not document (they are kept in the _extra column)",
                    ),
                )
            ],
            can_subset=True,
            required_resource_keys={segment_key, storage_key},
            partitions_def=pdef,
            # Partition code reads the run's whole time window, so a range backfill is one run.
            backfill_policy=BackfillPolicy.single_run() if pdef else None,
            pool=connection.pool,
            op_tags=connection.run_tags,
            description=f"Segment workspace `{connection.name}`: "
            + ("configuration streams" if partitioning is None else f"{partitioning.value}-partitioned streams")
            + ", read concurrently in dependency order.",
        )
        def _segment_streams(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
            segment: SegmentResource = getattr(context.resources, segment_key)
            storage: StorageResource = getattr(context.resources, storage_key)
            selected = [by_key[s.key] for s in specs if s.key in context.selected_asset_keys]
            yield from materialize_streams(context, selected, segment, storage, key_of, workspace.translator)

    return _segment_streams


def materialize_streams(
    context: AssetExecutionContext,
    streams: list[StreamSpec],
    segment: SegmentResource,
    storage: StorageResource,
    key_of: Mapping[str, AssetKey],
    translator: SegmentTranslator,
) -> Iterator[MaterializeResult]:
    """Run the selected streams concurrently; yield each one's materialization as it lands.

    A stopped run (an interrupt, SIGTERM, run termination) still yields the materialization of
    every table it committed, then fails the step naming each stream that did not finish: the
    specs are skippable, so a stream left out silently would leave the step green."""
    time_window = None
    if context.has_partition_key or context.has_partition_key_range:
        tw = context.partition_time_window
        time_window = (tw.start, tw.end)
    stop = threading.Event()  # the run's one stop: its client, streams and fan-out pool read it
    client = segment.make_client(stop)
    target = storage.get_target()
    run = StreamRun(
        client=client,
        target=target,
        run_id=context.run.run_id,
        method_for=storage.method_for,
        max_streams=segment.max_streams,
        fanout_concurrency=segment.max_concurrency,
        strict=segment.require_documented_fields,
        stabilities=tuple(segment.stabilities),
        time_window=time_window,
        budget_for=segment.budget_for,
        progress_interval=segment.progress_interval_seconds,
    )
    checks = context.selected_asset_check_keys
    written: set[str] = set()
    failures: list[StreamOutcome] = []
    interrupted: BaseException | None = None
    # Progress lines, and the client's 429 and retry messages, go to the run's event log from this
    # thread (run_streams calls flush between outcomes), at most one line per running stream every
    # `progress_interval_seconds`.
    run.progress.say = context.log.log
    client.on_message = run.progress.message
    progress.emit("run_started", run.progress, streams)
    outcomes = run_streams(
        streams,
        lambda s, why: sync_stream(s, run, why),
        max_parallel=segment.max_streams,
        stop=stop,
        paced=run.paced,
        tick=run.progress.flush,
    )
    unreported = UnreportedTables(context, outcomes, key_of, segment.connection_name)
    completed = False
    try:
        while True:
            # An interrupt raised here, between two outcomes or while one is reported, stops the run;
            # the streams still report (run_streams does the same for one raised while it waits),
            # and the step fails below. A second interrupt is not held back.
            outcome: StreamOutcome | None = None
            try:
                outcome = next(outcomes, None)
                if outcome is None:
                    break
                result = _record(context, outcome, key_of, checks, segment.connection_name, translator)
            except (KeyboardInterrupt, DagsterExecutionInterruptedError) as exc:
                if interrupted is not None:
                    raise
                stop.set()
                interrupted = exc
                if outcome is None:
                    continue
                # Delivered while this outcome was reported: its table may be committed, so report it.
                result = _record(context, outcome, key_of, checks, segment.connection_name, translator)
            if result is None:
                failures.append(outcome)
            else:
                written.add(outcome.stream.name)
                unreported.in_flight = outcome
                yield result
                unreported.in_flight = None  # Dagster resumed us: it has recorded the result
        run.progress.flush()  # the client's last messages
        completed = True
    finally:
        if not completed:  # Dagster closed this generator, or an error left it: the streams end first
            stop.set()
            unreported.record()
        unreported.forget()
        outcomes.close()
        run.close()
        client.close()
        target.close()  # readers of the file (other processes, the user's session) get it back at once
    reported = written | {o.stream.name for o in failures}
    unfinished = [s.name for s in streams if s.name not in reported]
    if failures or unfinished:
        lines = [f"{o.stream.name}: {_message(o.error)}" for o in failures]
        lines += [f"{name}: not finished when the run stopped" for name in unfinished]
        raise Failure(
            description=(
                f"the run was stopped: {len(lines)} stream(s) did not finish, {len(written)} were written:\n"
                if stop.is_set()
                else f"{len(lines)} stream(s) failed, the others were written:\n"
            )
            + "\n".join(lines),
            metadata={"failed_streams": MetadataValue.text(", ".join([o.stream.name for o in failures] + unfinished))},
        ) from interrupted
    if interrupted is not None:
        raise interrupted  # it came after the last stream was written


def _record(
    context: AssetExecutionContext,
    outcome: StreamOutcome,
    key_of: Mapping[str, AssetKey],
    checks: Set[AssetCheckKey],
    connection_name: str,
    translator: SegmentTranslator,
) -> MaterializeResult | None:
    """Log one stream's messages; its materialization if its table was written, else None."""
    progress.emit("stream_finished", outcome)
    for level, text in outcome.messages:
        context.log.log(level, text)
    if outcome.status not in ("ok", "unavailable"):
        context.log.error(f"{outcome.stream.name}: {outcome.status}: {_message(outcome.error)}")
        return None
    if outcome.status == "ok":  # an unavailable one said why among its messages
        context.log.info(progress.finished_line(outcome))
    key = key_of[outcome.stream.name]
    outcome.metadata["segment/connection"] = connection_name
    outcome.metadata["dagster/column_schema"] = translator.get_column_schema(outcome.stream)
    results = []
    if AssetCheckKey(key, PK_CHECK) in checks and outcome.key_check:
        results.append(_key_check(key, outcome))
    if AssetCheckKey(key, DRIFT_CHECK) in checks and outcome.new_undocumented is not None:
        results.append(_drift_check(key, outcome))
    return MaterializeResult(asset_key=key, metadata=outcome.metadata, check_results=results)


class UnreportedTables:
    """The tables a run committed that Dagster has not recorded, recorded once, as runless
    materializations naming the run, if the step ends without resuming the asset's generator.

    That happens when SIGTERM reaches a step while Dagster itself handles an event the generator
    yielded: Dagster raises before resuming it, and neither it nor its `finally` runs again
    while the process lives (what references it is Dagster's). The streams still end, each with
    its table committed or as it was. Whoever ends the process asks first (`record_unreported`:
    the CLI after a stopped run, and an exit hook for every other runner)."""

    _open: ClassVar["weakref.WeakSet[UnreportedTables]"] = weakref.WeakSet()

    def __init__(
        self,
        context: AssetExecutionContext,
        outcomes: Iterator[StreamOutcome],
        key_of: Mapping[str, AssetKey],
        connection: str,
    ) -> None:
        self.context, self.outcomes, self.key_of, self.connection = context, outcomes, key_of, connection
        self.in_flight: StreamOutcome | None = None  # yielded, and Dagster has not resumed us since
        self._lock = threading.Lock()
        self._open.add(self)

    def forget(self) -> None:
        self._open.discard(self)

    def record(self) -> None:
        with self._lock:
            if self not in self._open:
                return
            self.forget()
            instance, run_id = self.context.instance, self.context.run.run_id
            pending = [self.in_flight] if self.in_flight and not self._recorded(self.in_flight) else []
            for outcome in itertools.chain(pending, self.outcomes):
                if outcome.status in ("ok", "unavailable"):
                    for event in self._events(outcome, run_id):
                        instance.report_runless_asset_event(event)

    def _recorded(self, outcome: StreamOutcome) -> bool:
        latest = self.context.instance.get_latest_materialization_event(self.key_of[outcome.stream.name])
        return latest is not None and latest.run_id == self.context.run.run_id

    def _events(self, outcome: StreamOutcome, run_id: str) -> list[AssetMaterialization]:
        context = self.context
        partitions = context.partition_keys if context.has_partition_key or context.has_partition_key_range else [None]
        metadata = {
            **outcome.metadata,
            "segment/connection": self.connection,
            "segment/run_id": run_id,
            "segment/recorded": "after the run was stopped, as a runless materialization",
        }
        key = self.key_of[outcome.stream.name]
        return [AssetMaterialization(asset_key=key, metadata=metadata, partition=p) for p in partitions]


def record_unreported() -> None:
    """Record the committed tables of every run this process stopped without Dagster resuming it."""
    for tables in list(UnreportedTables._open):
        tables.record()


atexit.register(record_unreported)


def _message(error: BaseException | None) -> str:
    return f"{type(error).__name__}: {error}" if error else "unknown error"


def _drift_check(key: AssetKey, outcome: StreamOutcome) -> AssetCheckResult:
    new = outcome.new_undocumented or []
    return AssetCheckResult(
        asset_key=key,
        check_name=DRIFT_CHECK,
        passed=not new,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"The API started sending {len(new)} undocumented field(s): {', '.join(new)}"
            if new
            else "No new undocumented field"
        ),
        metadata={
            "new_fields": MetadataValue.text(", ".join(new) or "none"),
            "undocumented_fields": MetadataValue.text(", ".join(outcome.undocumented) or "none"),
        },
    )


def _key_check(key: AssetKey, outcome: StreamOutcome) -> AssetCheckResult:
    check: KeyCheck = outcome.key_check  # type: ignore[assignment]
    table = table_def(outcome.stream.name)
    return AssetCheckResult(
        asset_key=key,
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

"""When Segment assets run: schedules per partitioning, the audit-trail sensor, freshness policies.

Per workspace (names of the zero-config workspace; a named one inserts its name, see
`connections.py`):
- `segment_config_schedule`: every configuration (non-partitioned) stream, reload and compare,
  on the workspace's cron (`SEGMENT_CONFIG_CRON`, default hourly).
- `segment_daily_schedule`: the last complete day of every daily-partitioned stream.
- `segment_monthly_schedule`: the current month of the monthly usage streams, every day.
- `segment_audit_trail_sensor`: reads `/audit-events` from a cursor and re-syncs only the
  configuration streams the new events touch, between scheduled full syncs.

All start STOPPED; switch them on in the UI or with `dagster schedule start` / `dagster sensor start`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from croniter import croniter
from dagster import (
    AssetKey,
    AssetSelection,
    AssetSpec,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    FreshnessPolicy,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    apply_freshness_policy,
    define_asset_job,
    schedule,
    sensor,
)

from segment_assets.api.client import SegmentClient
from segment_assets.api.errors import StreamUnavailable
from segment_assets.api.streams import STREAMS, StreamSpec, Window, children_of
from segment_assets.orchestration.connections import DEFAULT_CONFIG_CRON, Connection
from segment_assets.orchestration.partitions import partitions_def

if TYPE_CHECKING:
    from dagster import JobDefinition as UnresolvedAssetJobDefinition  # what define_asset_job returns, for hints

TIMEZONE = "UTC"
CONFIG_JOB, DAILY_JOB, MONTHLY_JOB = "config", "daily", "monthly"
TRIGGER_TAG = "segment/trigger"

# Late metric buckets settle after midnight; the daily run starts an hour into the next day.
DAILY_HOUR, DAILY_MINUTE = 1, 0
MONTHLY_CRON = "30 1 * * *"
# Usage counts of a closed month can still move for a day or two: re-read it that long.
MONTHLY_SETTLE_DAYS = 2

# Freshness: a config stream may be this much later than its cron interval; a partitioned
# stream runs daily, so it should have materialized within a day plus this slack.
CONFIG_WARN_SLACK, CONFIG_FAIL_SLACK = timedelta(hours=1), timedelta(hours=2)
PARTITIONED_WARN, PARTITIONED_FAIL = timedelta(hours=25), timedelta(hours=26)

# The audit trail's resourceType (as events spell it) -> the config streams holding that
# resource. Their config descendants (children_of, transitively) are added at lookup time.
# A kind with no audit type of its own (rules, connections...) logs "<parent type> Modified".
AUDIT_RESOURCE_STREAMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Workspace": ("workspace",),
        "Source": ("sources",),
        # Connected destinations are destinations seen from their source.
        "Destination": ("destinations", "source_connected_destinations"),
        "Destination Filter": ("destination_filters",),
        "Destination Subscription": ("destination_subscriptions",),
        "Warehouse": ("warehouses", "source_connected_warehouses"),
        # The source -> plan link is on getSource (trackingPlanId) as well as under the plan.
        "Tracking Plan": ("tracking_plans", "source_details"),
        "Transformation": ("transformations",),
        "Function": ("functions",),
        "Insert Function Instance": ("insert_function_instances",),
        "Reverse ETL Model": ("reverse_etl_models",),
        "User": ("users",),
        "User Group": ("user_groups",),
        "Invite": ("invites",),
        "Label": ("labels",),
        "Credential": ("credentials",),
        # Regulations are listed workspace-wide and per source.
        "Regulation": ("regulations", "source_regulations"),
        "Space": ("spaces",),
        "Audience": ("audiences",),
        "Computed Trait": ("computed_traits",),
        "Profiles Warehouse": ("profiles_warehouses",),
        "Space Filter": ("space_filters",),
    }
)

AUDIT_MAX_PAGES = 10  # pages per tick; a longer backlog triggers a full config sync instead
AUDIT_TIME_BUDGET_SECONDS = 20.0  # Dagster cancels a sensor evaluation after 60 s by default
AUDIT_INITIAL_LOOKBACK = timedelta(minutes=5)  # first tick, no cursor yet: clock skew margin
AUDIT_SENSOR_INTERVAL_SECONDS = 60


# -- stream sets ---------------------------------------------------------------------------


DEFAULT_CONNECTION = Connection(name="default", default_names=True)


def config_streams(connection: Connection = DEFAULT_CONNECTION) -> list[StreamSpec]:
    """Every selected non-partitioned stream: configuration read in full and diffed into
    `<table>__ct`, and the sync histories read from their watermark."""
    return [s for s in connection.streams() if s.windowing is None]


def partitioned_streams(window: Window, connection: Connection = DEFAULT_CONNECTION) -> list[StreamSpec]:
    return [s for s in connection.streams() if s.windowing and s.windowing.partition is window]


def _keys(streams: Iterable[StreamSpec], keys: Mapping[str, AssetKey]) -> list[AssetKey]:
    return [keys[s.name] for s in streams]


def config_descendants(name: str) -> list[str]:
    """The config streams whose ids come from `name`, directly or through other streams."""
    out: list[str] = []
    todo = [name]
    while todo:
        for child in children_of(todo.pop()):
            if child.materialized and child.windowing is None and child.name not in out:
                out.append(child.name)
                todo.append(child.name)
    return out


def streams_for_resource_type(resource_type: str) -> set[str] | None:
    """Config streams an audit event on `resource_type` may have changed; None if the type is unknown."""
    roots = _AUDIT_TYPES_FOLDED.get(resource_type.strip().casefold())
    if roots is None:
        return None
    out = set(roots)
    for root in roots:
        out.update(config_descendants(root))
    return out


_AUDIT_TYPES_FOLDED = {k.casefold(): v for k, v in AUDIT_RESOURCE_STREAMS.items()}


# -- jobs and schedules --------------------------------------------------------------------


def build_jobs(connection: Connection, keys: Mapping[str, AssetKey]) -> dict[str, UnresolvedAssetJobDefinition]:
    """The workspace's jobs (keyed config/daily/monthly), for the streams it selects."""
    names = connection.job_names
    tags = connection.run_tags
    jobs = {
        CONFIG_JOB: define_asset_job(
            names[CONFIG_JOB],
            selection=AssetSelection.assets(*_keys(config_streams(connection), keys)),
            tags=tags,
            description=f"Every non-partitioned stream of Segment workspace `{connection.name}`: configuration "
            "(reload and compare into <table>__ct) and sync histories (from their watermark).",
        ),
    }
    for what, window, text in (
        (DAILY_JOB, Window.DAILY, "(audit trail, event volume, delivery); each run replaces its days"),
        (MONTHLY_JOB, Window.MONTHLY, "(usage); each run replaces its months"),
    ):
        streams = partitioned_streams(window, connection)
        if streams:
            jobs[what] = define_asset_job(
                names[what],
                selection=AssetSelection.assets(*_keys(streams, keys)),
                tags=tags,
                description=f"{window.value.capitalize()}-partitioned streams of Segment workspace "
                f"`{connection.name}` {text}.",
            )
    return jobs


def connection_partitions(connection: Connection, window: Window) -> Any:
    return partitions_def(window, connection.daily_start if window is Window.DAILY else connection.monthly_start)


def build_schedules(
    connection: Connection, jobs: Mapping[str, UnresolvedAssetJobDefinition]
) -> list[ScheduleDefinition]:
    cron = connection.config_cron
    out = [
        ScheduleDefinition(
            name=connection.schedule_name(CONFIG_JOB),
            job=jobs[CONFIG_JOB],
            cron_schedule=cron,
            execution_timezone=TIMEZONE,
            default_status=DefaultScheduleStatus.STOPPED,
            tags={TRIGGER_TAG: "schedule"},
            description=(
                f"Sync every non-partitioned stream ({len(config_streams(connection))} assets) on `{cron}` ({TIMEZONE}); "
                f"set `config_cron` of the workspace (or SEGMENT_CONFIG_CRON) to change it (default "
                f"`{DEFAULT_CONFIG_CRON}`, hourly). Configuration is reloaded and compared: each run diffs the full read "
                f"against the tables and appends I/U/D rows to <table>__ct; sync histories are read from their "
                f"watermark. Between these runs the audit-trail sensor re-syncs only what changed."
            ),
        )
    ]
    if DAILY_JOB in jobs:
        out.append(_daily_schedule(connection, jobs[DAILY_JOB]))
    if MONTHLY_JOB in jobs:
        out.append(_monthly_schedule(connection, jobs[MONTHLY_JOB]))
    return out


def daily_partition_key(now: datetime, connection: Connection = DEFAULT_CONNECTION) -> str:
    """The last complete day at `now`: the day before (UTC)."""
    pdef = connection_partitions(connection, Window.DAILY)
    return pdef.get_partition_key_for_timestamp((now - timedelta(days=1)).timestamp())


# Not build_schedule_from_partitioned_job: in Dagster 1.13 its ticks call the deprecated
# run_request_for_partition, a DeprecationWarning on every evaluation that users cannot act on.
def _daily_schedule(connection: Connection, job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    @schedule(
        name=connection.schedule_name(DAILY_JOB),
        job=job,
        cron_schedule=f"{DAILY_MINUTE} {DAILY_HOUR} * * *",
        execution_timezone=TIMEZONE,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"Each day at {DAILY_HOUR:02d}:{DAILY_MINUTE:02d} {TIMEZONE}, materialize the last complete daily "
            f"partition (yesterday) of every daily-partitioned stream "
            f"({', '.join(s.name for s in partitioned_streams(Window.DAILY, connection))}); the run replaces that day. "
            f"Missed days: backfill the range (one run)."
        ),
    )
    def segment_daily_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        key = daily_partition_key(context.scheduled_execution_time or datetime.now(UTC), connection)
        return RunRequest(run_key=key, partition_key=key, tags={TRIGGER_TAG: "schedule"})

    return segment_daily_schedule


def monthly_partition_keys(now: datetime, connection: Connection = DEFAULT_CONNECTION) -> list[str]:
    """The month containing `now` and, during the first MONTHLY_SETTLE_DAYS days, the month before."""
    pdef = connection_partitions(connection, Window.MONTHLY)
    now = now.astimezone(UTC)
    keys = [pdef.get_partition_key_for_timestamp(now.timestamp())]
    if now.day <= MONTHLY_SETTLE_DAYS:
        previous = pdef.get_partition_key_for_timestamp((now.replace(day=1) - timedelta(days=1)).timestamp())
        if pdef.has_partition_key(previous):
            keys.insert(0, previous)
    return keys


def _monthly_schedule(connection: Connection, job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    @schedule(
        name=connection.schedule_name(MONTHLY_JOB),
        job=job,
        cron_schedule=MONTHLY_CRON,
        execution_timezone=TIMEZONE,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"Every day at 01:30 {TIMEZONE}, materialize the current month's partition of the monthly usage "
            f"streams ({', '.join(s.name for s in partitioned_streams(Window.MONTHLY, connection))}): the API reports "
            f"cumulative daily counts for the open month, so it is re-read and replaced daily. On the first "
            f"{MONTHLY_SETTLE_DAYS} days of a month the previous month is re-read too, while it settles."
        ),
    )
    def segment_monthly_schedule(context: ScheduleEvaluationContext) -> list[RunRequest]:
        now = context.scheduled_execution_time or datetime.now(UTC)
        # The partition key repeats every day of the month: the day makes the run key unique.
        return [
            RunRequest(
                run_key=f"{key}@{now.astimezone(UTC):%Y-%m-%d}", partition_key=key, tags={TRIGGER_TAG: "schedule"}
            )
            for key in monthly_partition_keys(now, connection)
        ]

    return segment_monthly_schedule


# -- freshness -----------------------------------------------------------------------------


@lru_cache(maxsize=16)
def largest_cron_gap(cron: str, horizon: timedelta = timedelta(days=35)) -> timedelta:
    """The longest wait between two ticks of `cron` (a weekday-only cron waits over the weekend).
    Fixed start (not now): the definitions must not change with the clock."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = croniter(cron, start)
    previous, gap = ticks.get_next(datetime), timedelta(0)
    while True:
        tick = ticks.get_next(datetime)
        gap = max(gap, tick - previous)
        if tick - start > horizon:
            return gap
        previous = tick


def freshness_policy_for(stream: StreamSpec, cron: str = DEFAULT_CONFIG_CRON) -> FreshnessPolicy:
    """Partitioned streams run daily: fresh within a day plus slack. Config streams: within their
    cron's longest interval plus slack (hourly cron: warn after 2h, fail after 3h)."""
    if stream.windowing:
        return FreshnessPolicy.time_window(fail_window=PARTITIONED_FAIL, warn_window=PARTITIONED_WARN)
    interval = largest_cron_gap(cron)
    return FreshnessPolicy.time_window(
        fail_window=interval + CONFIG_FAIL_SLACK, warn_window=interval + CONFIG_WARN_SLACK
    )


def with_freshness_policy(connection: Connection) -> Callable[[StreamSpec, AssetSpec], AssetSpec]:
    """A spec mapper for the asset factory: each Segment asset gets its stream's freshness policy."""

    def apply(stream: StreamSpec, spec: AssetSpec) -> AssetSpec:
        return apply_freshness_policy(spec, freshness_policy_for(stream, connection.config_cron))

    return apply


# -- the audit-trail sensor ----------------------------------------------------------------


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class AuditCursor:
    """The newest event time seen (as the API wrote it) and the ids of every event at that time.

    The next read starts *at* that time, so an event written later in the same millisecond is
    still seen, and the ids keep the ones already counted out. `whole_ms` says every event of
    that millisecond is covered (a full re-sync was requested after a backlog), ids or not."""

    timestamp: str
    ids: frozenset[str] = frozenset()
    whole_ms: bool = False

    def dumps(self) -> str:
        raw: dict[str, Any] = {"timestamp": self.timestamp, "ids": sorted(self.ids)}
        if self.whole_ms:
            raw["whole_ms"] = True
        return json.dumps(raw, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | None) -> AuditCursor | None:
        if not text:
            return None
        raw = json.loads(text)
        return cls(raw["timestamp"], frozenset(raw.get("ids", ())), bool(raw.get("whole_ms")))

    def counted(self, event: Mapping[str, Any], ts: datetime, since: datetime) -> bool:
        return ts < since or (ts == since and (self.whole_ms or event["id"] in self.ids))


@dataclass
class AuditPoll:
    cursor: AuditCursor  # where the next tick starts
    events: list[dict[str, Any]] = field(default_factory=list)  # unseen events, newest first
    pages: int = 0
    overflow: bool = False  # more pages than one tick may read: the oldest unread events are unknown
    why_overflow: str = ""


def poll_audit_trail(
    client: SegmentClient,
    cursor: AuditCursor | None,
    *,
    now: datetime | None = None,
    max_pages: int = AUDIT_MAX_PAGES,
    time_budget: float = AUDIT_TIME_BUDGET_SECONDS,
    initial_lookback: timedelta = AUDIT_INITIAL_LOOKBACK,
) -> AuditPoll:
    """Every audit event newer than `cursor`, within `max_pages` pages and `time_budget` seconds.

    The API lists newest first, so when a tick stops early the events it did not read are the
    oldest ones; the poll then says `overflow`, and the caller re-syncs everything instead of
    guessing. An unchanged workspace costs one request: the page holding the cursor's own events.
    """
    started = time.monotonic()
    if cursor is None:
        cursor = AuditCursor(_iso((now or datetime.now(UTC)) - initial_lookback))
    stream = STREAMS["audit_events"]
    since = _parse_ts(cursor.timestamp)
    newest, newest_ts = since, cursor.timestamp
    at_newest: set[str] = set(cursor.ids)
    poll = AuditPoll(cursor)
    # One millisecond early: whether the API reads startTime as inclusive or as "after", events
    # in the cursor's own millisecond are listed, and the ids tell the counted ones apart.
    pages = client.pages(stream, query={"startTime": _iso(since - timedelta(milliseconds=1))})
    try:
        for page in pages:
            poll.pages += 1
            oldest = newest
            for event in page.records:
                ts = oldest = _parse_ts(event["timestamp"])
                if cursor.counted(event, ts, since):
                    continue  # an earlier tick had it
                poll.events.append(event)
                if ts > newest:
                    newest, newest_ts, at_newest = ts, event["timestamp"], set()
                if ts == newest:
                    at_newest.add(event["id"])
            more = bool((page.data.get("pagination") or {}).get("next"))
            if more and oldest < since:
                break  # newest first: the rest is older than the cursor
            if more and poll.pages >= max_pages and oldest <= since:
                break  # only the cursor's own millisecond is left, whose ids are known
            if more and poll.pages >= max_pages:
                poll.overflow, poll.why_overflow = True, f"more than {max_pages} pages of new events"
                break
            if more and time.monotonic() - started > time_budget:
                poll.overflow, poll.why_overflow = True, f"reading took over {time_budget:.0f}s"
                break
    finally:
        pages.close()  # an unread next page is never requested
    # After a backlog the unread events may share the newest millisecond, so their ids are not
    # all known; the full re-sync the caller requests covers that millisecond whole instead.
    poll.cursor = AuditCursor(
        newest_ts, frozenset(at_newest), whole_ms=poll.overflow or (cursor.whole_ms and newest_ts == cursor.timestamp)
    )
    return poll


@dataclass(frozen=True)
class AuditPlan:
    streams: list[str]  # config streams to re-sync, sorted
    unknown_types: dict[str, int]  # resourceType -> events ignored
    resources: list[str]  # "Type:id" of the resources touched, newest first, unique


def plan_from_events(
    events: Sequence[Mapping[str, Any]], overflow: bool = False, selected: Iterable[str] | None = None
) -> AuditPlan:
    streams: set[str] = set()
    unknown: dict[str, int] = {}
    resources: list[str] = []
    for event in events:
        rtype = str(event.get("resourceType") or "")
        affected = streams_for_resource_type(rtype)
        if affected is None:
            unknown[rtype] = unknown.get(rtype, 0) + 1
            continue
        streams |= affected
        resource = f"{rtype}:{event.get('resourceId')}"
        if resource not in resources:
            resources.append(resource)
    config = {s.name for s in config_streams()} if selected is None else set(selected)
    streams = config if overflow else streams & config
    return AuditPlan(sorted(streams), unknown, resources)


def default_keys(connection: Connection) -> dict[str, AssetKey]:
    return {s.name: AssetKey([*connection.asset_key_prefix, s.name]) for s in connection.streams()}


def build_audit_sensor(
    connection: Connection = DEFAULT_CONNECTION,
    keys: Mapping[str, AssetKey] | None = None,
    job: UnresolvedAssetJobDefinition | None = None,
    *,
    max_pages: int = AUDIT_MAX_PAGES,
    time_budget: float = AUDIT_TIME_BUDGET_SECONDS,
    initial_lookback: timedelta = AUDIT_INITIAL_LOOKBACK,
    minimum_interval_seconds: int = AUDIT_SENSOR_INTERVAL_SECONDS,
) -> SensorDefinition:
    keys = keys or default_keys(connection)
    selected = [s.name for s in config_streams(connection)]
    segment_key = connection.resource_keys[0]
    job = job or build_jobs(connection, keys)[CONFIG_JOB]

    @sensor(
        name=connection.sensor_name,
        job=job,
        required_resource_keys={segment_key},
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            f"Polls the Audit Trail of Segment workspace `{connection.name}` (GET /audit-events) from the last "
            "event seen and launches one run of its configuration job re-syncing only the configuration streams "
            "the new events touch: the stream of each event's resourceType and its config descendants (e.g. a "
            "Source event re-reads sources, source_details, connected destinations/warehouses...). A quiet "
            f"workspace costs one API request per tick. At most {max_pages} pages or {time_budget:.0f}s per tick; a "
            "longer backlog re-syncs every config stream. Unknown resource types are logged and ignored. Needs the "
            "Audit Trail feature (Business plan); without it the sensor skips and the config schedule keeps "
            "tables current."
        ),
    )
    def segment_audit_trail_sensor(context: SensorEvaluationContext, **resources: Any) -> SensorResult | SkipReason:
        # The resource key is the workspace's; direct invocation (tests) passes it as a keyword.
        segment = resources.get(segment_key) or getattr(context.resources, segment_key)
        cursor = AuditCursor.loads(context.cursor)
        client = segment.make_client()
        try:
            poll = poll_audit_trail(
                client, cursor, max_pages=max_pages, time_budget=time_budget, initial_lookback=initial_lookback
            )
        except StreamUnavailable as exc:
            return SkipReason(
                f"The Segment Audit Trail is not available to this workspace or token (HTTP {exc.status}): it needs "
                f"the Audit Trail feature (Business plan). Nothing to watch; {connection.schedule_name(CONFIG_JOB)} "
                "keeps the configuration tables current."
            )
        finally:
            client.close()
        plan = plan_from_events(poll.events, poll.overflow, selected)
        for rtype, n in sorted(plan.unknown_types.items()):
            context.log.warning("audit trail: %d event(s) with unknown resourceType %r ignored", n, rtype)
        new_cursor = poll.cursor.dumps()
        if not plan.streams:
            why = (
                f"no new audit events since {poll.cursor.timestamp}"
                if not poll.events
                else f"{len(poll.events)} new audit event(s), none on a replicated resource type"
            )
            return SensorResult(skip_reason=SkipReason(why), cursor=new_cursor if poll.cursor != cursor else None)
        digest = hashlib.sha1(",".join(sorted(e["id"] for e in poll.events)).encode()).hexdigest()[:12]
        tags = {
            TRIGGER_TAG: "audit-trail",
            "segment/audit_events": str(len(poll.events)),
            "segment/audit_resources": _truncate(", ".join(plan.resources), 400),
        }
        if poll.overflow:
            tags["segment/audit_overflow"] = poll.why_overflow
            context.log.warning("audit trail: %s; re-syncing every config stream", poll.why_overflow)
        context.log.info(
            "audit trail: %d new event(s) in %d page(s) -> %d stream(s): %s",
            len(poll.events),
            poll.pages,
            len(plan.streams),
            ", ".join(plan.streams),
        )
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=f"audit:{poll.cursor.timestamp}:{digest}",
                    asset_selection=[keys[s] for s in plan.streams],
                    tags=tags,
                )
            ],
            cursor=new_cursor,
        )

    return segment_audit_trail_sensor


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

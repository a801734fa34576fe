"""When Segment assets run on a clock: one job per partitioning and workspace, and its schedule.

Per workspace (names of the zero-config workspace; a named one inserts its name, see
`connections.py`):
- `segment_config_schedule`: every configuration (non-partitioned) stream, reload and compare,
  on the workspace's cron (`SEGMENT_CONFIG_CRON`, default hourly).
- `segment_daily_schedule`: the last complete day of every daily-partitioned stream.
- `segment_monthly_schedule`: the current month of the monthly usage streams, every day.

All start STOPPED; switch them on in the UI or with `dagster schedule start`. Between two config
runs the audit-trail sensor (`sensors.py`) re-syncs what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from segment_assets.api.streams import Partitioning, StreamSpec
from segment_assets.orchestration.connections import DEFAULT_CONFIG_CRON, Connection
from segment_assets.orchestration.partitions import partitions_def
from segment_assets.orchestration.workspaces import Workspace

if TYPE_CHECKING:
    # What define_asset_job returns: Dagster does not export the class, so it is named for type
    # checking only.
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

TIMEZONE = "UTC"
CONFIG_JOB, DAILY_JOB, MONTHLY_JOB = "config", "daily", "monthly"
TRIGGER_TAG = "segment/trigger"

# Late metric buckets settle after midnight; the daily run starts an hour into the next day.
DAILY_HOUR, DAILY_MINUTE = 1, 0
MONTHLY_CRON = "30 1 * * *"
# Usage counts of a closed month can still move for a day or two: re-read it that long.
MONTHLY_SETTLE_DAYS = 2


def config_streams(connection: Connection) -> list[StreamSpec]:
    """Every selected non-partitioned stream: configuration read in full and diffed into
    `<table>__ct`, and the sync histories read from their watermark."""
    return [s for s in connection.streams() if s.windowing is None]


def partitioned_streams(partitioning: Partitioning, connection: Connection) -> list[StreamSpec]:
    return [s for s in connection.streams() if s.windowing and s.windowing.partitioning is partitioning]


def build_jobs(workspace: Workspace) -> dict[str, UnresolvedAssetJobDefinition]:
    """The workspace's jobs (keyed config/daily/monthly), for the streams it selects."""
    connection = workspace.connection
    names = connection.job_names
    tags = connection.run_tags
    jobs = {
        CONFIG_JOB: define_asset_job(
            names[CONFIG_JOB],
            selection=AssetSelection.assets(*(workspace.asset_key(s) for s in config_streams(connection))),
            tags=tags,
            description=f"Every non-partitioned stream of Segment workspace `{connection.name}`: configuration "
            "(reload and compare into <table>__ct) and sync histories (from their watermark). Materialize all here "
            "refreshes every configuration table in one run, as the schedule and `segment-assets sync` do; on the "
            "lineage page, Materialize all also backfills every daily and monthly partition.",
        ),
    }
    for what, partitioning, text in (
        (DAILY_JOB, Partitioning.DAILY, "(audit trail, event volume, delivery); each run replaces its days"),
        (MONTHLY_JOB, Partitioning.MONTHLY, "(usage); each run replaces its months"),
    ):
        streams = partitioned_streams(partitioning, connection)
        if streams:
            jobs[what] = define_asset_job(
                names[what],
                selection=AssetSelection.assets(*(workspace.asset_key(s) for s in streams)),
                tags=tags,
                description=f"{partitioning.value.capitalize()}-partitioned streams of Segment workspace "
                f"`{connection.name}` {text}. Materialize here with one partition to refresh it (the schedule "
                f"reads the latest), or a range (one run).",
            )
    return jobs


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
                f"Sync every non-partitioned stream ({len(config_streams(connection))} assets) on `{cron}` "
                f"({TIMEZONE}); set `config_cron` of the workspace (or SEGMENT_CONFIG_CRON) to change it (default "
                f"`{DEFAULT_CONFIG_CRON}`, hourly). Configuration is reloaded and compared: each run diffs the full "
                f"read against the tables and appends I/U/D rows to <table>__ct; sync histories are read from their "
                f"watermark. Between these runs the audit-trail sensor re-syncs only what changed."
            ),
        )
    ]
    if DAILY_JOB in jobs:
        out.append(_daily_schedule(connection, jobs[DAILY_JOB]))
    if MONTHLY_JOB in jobs:
        out.append(_monthly_schedule(connection, jobs[MONTHLY_JOB]))
    return out


def daily_partition_key(now: datetime, connection: Connection) -> str:
    """The last complete day at `now`: the day before (UTC)."""
    pdef = partitions_def(Partitioning.DAILY, connection)
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
            f"({_names(partitioned_streams(Partitioning.DAILY, connection))}); the run replaces that day. "
            f"Missed days: backfill the range (one run)."
        ),
    )
    def segment_daily_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        key = daily_partition_key(context.scheduled_execution_time or datetime.now(UTC), connection)
        return RunRequest(run_key=key, partition_key=key, tags={TRIGGER_TAG: "schedule"})

    return segment_daily_schedule


def monthly_partition_keys(now: datetime, connection: Connection) -> list[str]:
    """The month containing `now` and, during the first MONTHLY_SETTLE_DAYS days, the month before."""
    pdef = partitions_def(Partitioning.MONTHLY, connection)
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
            f"streams ({_names(partitioned_streams(Partitioning.MONTHLY, connection))}): the API reports "
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


def _names(streams: list[StreamSpec]) -> str:
    return ", ".join(s.name for s in streams)

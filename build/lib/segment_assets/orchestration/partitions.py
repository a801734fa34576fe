"""The Dagster partitions of the time-based streams: one daily and one monthly partitioning per
workspace, starting at fixed dates (never derived from the clock: a code server and a run worker
that load the definitions on either side of midnight must agree on the partition set)."""

from __future__ import annotations

from functools import cache

from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition, TimeWindowPartitionsDefinition

from segment_assets.api.streams import Partitioning
from segment_assets.orchestration.connections import ZERO_CONFIG, Connection


def partitions_def(partitioning: Partitioning, connection: Connection = ZERO_CONFIG) -> TimeWindowPartitionsDefinition:
    """The workspace's daily or monthly partitioning, shared by its time-based streams so a schedule
    or backfill covers them together; it starts at the connection's daily_start or monthly_start."""
    return _partitions(
        partitioning, connection.daily_start if partitioning is Partitioning.DAILY else connection.monthly_start
    )


@cache  # one object per start date: the assets and jobs of a workspace share it
def _partitions(partitioning: Partitioning, start: str) -> TimeWindowPartitionsDefinition:
    if partitioning is Partitioning.DAILY:
        return DailyPartitionsDefinition(start_date=start, timezone="UTC")
    # end_offset=1: the current month is a partition too; its cumulative counts are re-read.
    return MonthlyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)

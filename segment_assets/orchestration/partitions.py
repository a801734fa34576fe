"""The Dagster partitions of the time-based streams: one daily and one monthly partitioning per
workspace, starting at fixed dates (never derived from the clock: a code server and a run worker
that load the definitions on either side of midnight must agree on the partition set)."""

from __future__ import annotations

from functools import cache

from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition, PartitionsDefinition

from segment_assets.api.streams import Window
from segment_assets.engine.windows import DEFAULT_DAILY_START, DEFAULT_MONTHLY_START


@cache
def partitions_def(window: Window, start: str | None = None) -> PartitionsDefinition:
    """One daily and one monthly partitioning per workspace, shared by its time-based streams so a
    schedule or backfill covers them together."""
    if window is Window.DAILY:
        return DailyPartitionsDefinition(start_date=start or DEFAULT_DAILY_START, timezone="UTC")
    # end_offset=1: the current month is a partition too; its cumulative counts are re-read.
    return MonthlyPartitionsDefinition(start_date=start or DEFAULT_MONTHLY_START, timezone="UTC", end_offset=1)

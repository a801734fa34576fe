"""How fresh each Segment asset should be: a freshness policy per asset, from its schedule.

A configuration stream runs on its workspace's cron: it may be the cron's longest interval late,
plus slack, before the policy warns and then fails. A partitioned stream runs daily: it should
have materialized within a day, plus slack.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from croniter import croniter
from dagster import AssetSpec, FreshnessPolicy, apply_freshness_policy

from segment_assets.api.streams import StreamSpec
from segment_assets.orchestration.connections import DEFAULT_CONFIG_CRON, Connection

CONFIG_WARN_SLACK, CONFIG_FAIL_SLACK = timedelta(hours=1), timedelta(hours=2)
PARTITIONED_WARN, PARTITIONED_FAIL = timedelta(hours=25), timedelta(hours=26)


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

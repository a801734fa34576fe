"""The audit-trail sensor: re-syncs the configuration streams that Segment's Audit Trail says changed.

Per workspace (`segment_audit_trail_sensor` for the zero-config one; a named one inserts its
name): reads `/audit-events` from a cursor and launches one run of the workspace's configuration
job selecting only the streams the new events touch, between two scheduled full syncs. Starts
STOPPED; switch it on in the UI or with `dagster sensor start`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from segment_assets.api.client import SegmentClient
from segment_assets.api.errors import StreamUnavailable
from segment_assets.api.paging import Page
from segment_assets.api.streams import STREAMS, descendants_of
from segment_assets.orchestration.jobs import CONFIG_JOB, TRIGGER_TAG, build_jobs, config_streams
from segment_assets.orchestration.workspaces import Workspace

if TYPE_CHECKING:
    # What define_asset_job returns: Dagster does not export the class, so it is named for type
    # checking only.
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# The audit trail's resourceType (as events spell it) -> the config streams holding that
# resource. Their config descendants (descendants_of) are added at lookup time.
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


def streams_for_resource_type(resource_type: str) -> set[str] | None:
    """Config streams an audit event on `resource_type` may have changed; None if the type is unknown."""
    roots = _AUDIT_TYPES_FOLDED.get(resource_type.strip().casefold())
    if roots is None:
        return None
    out = set(roots)
    for root in roots:
        out.update(s.name for s in descendants_of(root) if s.windowing is None)
    return out


_AUDIT_TYPES_FOLDED = {k.casefold(): v for k, v in AUDIT_RESOURCE_STREAMS.items()}


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
    pages: Generator[Page, None, None] = client.pages(
        stream, query={"startTime": _iso(since - timedelta(milliseconds=1))}
    )
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


def plan_from_events(events: Sequence[Mapping[str, Any]], overflow: bool, selected: Iterable[str]) -> AuditPlan:
    """The `selected` config streams the events touch; all of them after an `overflow`."""
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
    config = set(selected)
    streams = config if overflow else streams & config
    return AuditPlan(sorted(streams), unknown, resources)


def build_audit_sensor(
    workspace: Workspace,
    job: UnresolvedAssetJobDefinition | None = None,
    *,
    max_pages: int = AUDIT_MAX_PAGES,
    time_budget: float = AUDIT_TIME_BUDGET_SECONDS,
    initial_lookback: timedelta = AUDIT_INITIAL_LOOKBACK,
    minimum_interval_seconds: int = AUDIT_SENSOR_INTERVAL_SECONDS,
) -> SensorDefinition:
    """The sensor of `workspace`, launching `job` (default: the workspace's configuration job)."""
    connection = workspace.connection
    keys = workspace.asset_keys()
    selected = [s.name for s in config_streams(connection)]
    segment_key = connection.resource_keys[0]
    job = job or build_jobs(workspace)[CONFIG_JOB]

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

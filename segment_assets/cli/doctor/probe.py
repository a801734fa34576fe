"""What a few requests tell about a workspace connection: whether its token works (and in which
region), which feature-gated areas its plan has, and the first page of each stream the cost
estimate needs (`estimate.py`).

1. the token: one `GET /` (getWorkspace); on a 401, one request to the other region's base
   URL tells a refused token from a token of the other region, and names the setting to change;
2. the feature-gated areas (Protocols, Spaces, Audiences, Functions...): one request each with
   `pagination[count]=1` (one per value of a required parameter: listFunctions asks per
   resourceType), 403 meaning "not in this workspace's plan" and naming the tables that will
   stay empty.

The token is read from the connection's variable and never printed.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from segment_assets.api import spec
from segment_assets.api.client import REGIONS, SegmentClient
from segment_assets.api.errors import (
    NotFound,
    SegmentAPIError,
    SegmentAuthError,
    StreamUnavailable,
    TransientError,
    token_help,
)
from segment_assets.api.paging import Page
from segment_assets.api.streams import STREAMS, Partitioning, RowFilter, StreamSpec, descendants_of
from segment_assets.api.tables import table_def
from segment_assets.engine.reading import plan_requests
from segment_assets.engine.windows import clamp_to_retention, window_queries
from segment_assets.orchestration.connections import CONNECTIONS_ENV, Connection
from segment_assets.orchestration.partitions import partitions_def

# Areas Segment's plans gate although the OpenAPI document names no feature gate for them
# (the Audit Trail needs a Business tier; Reverse ETL is sold apart): probed like the others.
PLAN_AREAS: Mapping[str, str] = {"Audit Trail": "listAuditEvents", "Reverse ETL": "listReverseEtlModels"}


# -- counts that say how sure they are ---------------------------------------------------------

_PRECISIONS = ("exact", "approx", "at_least")  # worst last


@dataclass(frozen=True)
class Count:
    """A number of rows or requests: `exact`, `approx` (extrapolated from a sample, an upper bound,
    or pages assumed), or `at_least` (the API gave no total)."""

    value: int
    precision: str = "exact"  # exact, approx (sampled) or at_least (a lower bound)

    def _precision(self, other: Count) -> str:
        return max(self.precision, other.precision, key=_PRECISIONS.index)

    def __add__(self, other: Count) -> Count:
        return Count(self.value + other.value, self._precision(other))

    def __mul__(self, other: Count) -> Count:
        if (self.value == 0 and self.precision == "exact") or (other.value == 0 and other.precision == "exact"):
            return Count(0)
        return Count(self.value * other.value, self._precision(other))

    def loose(self) -> Count:
        return Count(self.value, self._precision(Count(0, "approx")))

    def __str__(self) -> str:
        return {"exact": "", "approx": "≈", "at_least": "≥"}[self.precision] + str(self.value)


def page_count(page: Page) -> Count:
    """How many items the request would list in all, from its first page."""
    pagination = page.data.get("pagination") or {}
    total = pagination.get("totalEntries")
    if isinstance(total, (int, float)) and not isinstance(total, bool):
        return Count(int(total))
    if not pagination.get("next"):
        return Count(len(page.records))
    return Count(len(page.records) + 1, "at_least")  # totalEntries "may be omitted": at least one more


@dataclass
class Census:
    """One stream's first pages, for the sampled parent (or the workspace)."""

    stream: str
    status: str  # "ok", "unavailable" (403, or 404 on a gated list), "unknown" (no verdict), "skipped"
    http_status: int | None = None
    message: str = ""
    per_set: list[tuple[dict[str, Any], Count]] = field(default_factory=list)  # (fan-out values, items)
    samples: list[dict[str, Any]] = field(default_factory=list)  # rows as the table stores them
    # A list whose rows carry a child's records (`StreamSpec.inline`): (rows whose list is full, rows seen)
    # on the sampled first page, the share of rows the child will request.
    full_lists: tuple[int, int] | None = None


@dataclass
class FeatureStatus:
    area: str
    status: str  # "available", "not available", "unknown"
    operation_id: str
    http_status: int | None
    empty_tables: list[str]  # what stays empty when the area is not available
    note: str = ""


def _gate(stream: StreamSpec) -> str | None:
    return stream.feature_gate or next((a for a, op in PLAN_AREAS.items() if op == stream.operation_id), None)


def feature_areas(streams: Sequence[StreamSpec]) -> dict[str, list[StreamSpec]]:
    """Gated area (alphabetical) -> its selected streams, in declaration order (parents first)."""
    areas: dict[str, list[StreamSpec]] = {}
    for stream in streams:
        gate = _gate(stream)
        if gate:
            areas.setdefault(gate, []).append(stream)
    return dict(sorted(areas.items()))


def matches(row: Mapping[str, Any], where: RowFilter | None) -> bool:
    if where is None:
        return True
    value = row.get(where.column)
    return isinstance(value, str) and (where.startswith is None or value.startswith(where.startswith))


def latest_windows(connection: Connection) -> dict[Partitioning, tuple[datetime, datetime]]:
    """The windows `segment-assets sync` reads: the last daily partition and the current month."""
    out = {}
    for partitioning in (Partitioning.DAILY, Partitioning.MONTHLY):
        pdef = partitions_def(partitioning, connection)
        key = pdef.get_last_partition_key()
        if key is not None:
            tw = pdef.time_window_for_partition_key(key)
            out[partitioning] = (tw.start, tw.end)
    return out


class ProbeFailed(Exception):
    """The connection cannot be used: `problem` says why, `region_hint` which setting to change."""

    def __init__(self, problem: str, *, config_error: bool = False, region_hint: str = "") -> None:
        super().__init__(problem)
        self.problem, self.config_error, self.region_hint = problem, config_error, region_hint


class Probe:
    """The requests the doctor makes to one workspace; `census` keeps the first pages it read."""

    def __init__(
        self,
        connection: Connection,
        *,
        environ: Mapping[str, str] | None = None,
        region_urls: Mapping[str, str] = REGIONS,
        now: datetime | None = None,
        max_retries: int = 2,
        where: str | None = None,
    ) -> None:
        self.connection = connection
        self.env = os.environ if environ is None else environ
        self.region_urls = {k: v.rstrip("/") for k, v in region_urls.items()}
        self.now = now or datetime.now(UTC)
        self.max_retries = max_retries
        # Where a named connection's settings are written, for the message asking to change one.
        self.where = where or self.env.get(CONNECTIONS_ENV) or "the connections file"
        self.streams = connection.streams()
        self.clients: list[SegmentClient] = []
        self.census: dict[str, Census] = {}
        self.base_url = (connection.api_url or self.region_urls[connection.region]).rstrip("/")
        self.windows = latest_windows(connection)

    def close(self) -> int:
        """Close every client; the number of requests they made."""
        requests = sum(c.stats.requests for c in self.clients)
        for c in self.clients:
            c.close()
        return requests

    # -- the token -------------------------------------------------------------------------

    def connect(self) -> tuple[SegmentClient, dict[str, Any]]:
        """A client whose token the API accepted, and the workspace's id, slug and name."""
        token = self.env.get(self.connection.token_env, "").strip()
        if not token:
            raise ProbeFailed(
                f"{self.connection.token_env} is not set, so connection {self.connection.name!r} has no "
                f"token. {token_help(self.connection.token_env)}",
                config_error=True,
            )
        client = self._client(token, self.base_url)
        try:
            data = client.request(STREAMS["workspace"], {}, {})
        except SegmentAuthError:
            raise self._refused(token) from None
        except TransientError as exc:
            raise ProbeFailed(f"could not reach {self.base_url}: {exc}") from None
        return client, {k: v for k, v in (data.get("workspace") or {}).items() if k in ("id", "slug", "name")}

    def _client(self, token: str, base_url: str) -> SegmentClient:
        limits = {
            op.operation_id: op.rate_limit_per_minute for op in spec.operations().values() if op.rate_limit_per_minute
        }
        client = SegmentClient(
            token,
            base_url,
            max_retries=self.max_retries,
            read_timeout=30.0,
            rate_limits=limits,
            token_env=self.connection.token_env,
        )
        self.clients.append(client)
        return client

    def _configured_region(self) -> str | None:
        """The region whose URL the connection uses; None for any other URL (a proxy, a simulator)."""
        if not self.connection.api_url:
            return self.connection.region
        url = self.connection.api_url.rstrip("/")
        return next((r for r, u in self.region_urls.items() if u == url), None)

    def _refused(self, token: str) -> ProbeFailed:
        c, env = self.connection, self.connection.token_env
        here = self._configured_region()
        if here is None:
            return ProbeFailed(f"{self.base_url} refused the token in {env} (HTTP 401). {token_help(env)}")
        for other, url in self.region_urls.items():
            if other == here:
                continue
            try:
                self._client(token, url).request(STREAMS["workspace"], {}, {})
            except (SegmentAuthError, TransientError):
                continue
            if c.default_names:
                setting = f"set SEGMENT_REGION={other}"
                if c.api_url:
                    setting += " and unset SEGMENT_API_URL (it points at the " + here.upper() + " API)"
            else:
                setting = f"set `region: {other}` for connection {c.name!r} in {self.where}"
                if c.api_url:
                    setting += " and remove its `api_url`"
            return ProbeFailed(
                f"the {here.upper()} API ({self.base_url}) refused the token in {env} (HTTP 401): "
                f"it is a token of the {other.upper()} region",
                region_hint=f"the token in {env} belongs to a workspace in the {other.upper()} region "
                f"({url} accepted it); {setting}",
            )
        return ProbeFailed(
            f"the Segment API refused the token in {env} in every region ({', '.join(self.region_urls)}):"
            f" it is invalid, revoked, or lacks access. {token_help(env)}"
        )

    # -- first pages -----------------------------------------------------------------------

    def _first_page(
        self, client: SegmentClient, stream: StreamSpec, path: dict[str, str], query: dict[str, Any], size: int = 1
    ) -> Page:
        client.page_size = size  # pages() sends it as the page size of this stream's paging style
        pages: Generator[Page, None, None] = client.pages(stream, path, query)
        try:
            return next(pages)
        finally:
            pages.close()

    def take_census(self, client: SegmentClient, stream: StreamSpec) -> Census:
        if stream.name in self.census:
            return self.census[stream.name]
        census = Census(stream.name, "ok")
        self.census[stream.name] = census
        parent_rows: list[dict[str, Any]] = [{}]
        if stream.parent:
            parent = self.take_census(client, STREAMS[stream.parent.stream])
            sample = next((r for r in parent.samples if matches(r, stream.parent.where)), None)
            if parent.status != "ok" or sample is None:
                census.status = "skipped"
                census.message = (
                    f"its parent {parent.stream} is {parent.status}"
                    if parent.status != "ok"
                    else f"no {parent.stream} row to ask about"
                )
                return census
            if any(sample.get(col) is None for col in stream.parent.params.values()):
                census.status, census.message = "skipped", f"the sampled {parent.stream} row has no id for it"
                return census
            parent_rows = [{param: sample[col] for param, col in stream.parent.params.items()}]
        windows = None
        if stream.windowing:
            span = self.windows.get(stream.windowing.partitioning)
            clamped = clamp_to_retention(stream.windowing, *span, now=self.now) if span else None
            windows = window_queries(stream.windowing, *clamped)[:1] if clamped else []
            if not windows:
                census.status, census.message = "skipped", "no window the API still serves"
                return census
        shaper = table_def(stream.name).shaper(strict=False)
        # A list that carries a child's records inline is read a whole page at once (still one request):
        # the share of full lists on it says how many of the child's requests remain.
        inline = next(
            (s.inline for s in STREAMS.values() if s.inline and s.parent and s.parent.stream == stream.name), None
        )
        for request in plan_requests(stream, parent_rows, windows):
            try:
                size = stream.max_page_size if inline else 1
                page = self._first_page(client, stream, request.path, request.params, size)
            except StreamUnavailable as exc:
                census.status, census.http_status = "unavailable", exc.status
                if exc.status == 404 and stream.parent:
                    census.status = "unknown"  # a gated get per parent: 404 may just mean "this one has none"
                census.message = str(exc)
                return census
            except (NotFound, SegmentAPIError, TransientError) as exc:
                census.status, census.message = "unknown", str(exc)
                census.http_status = getattr(exc, "status", None)
                return census
            fan = {k: v for k, v in request.params.items() if k in stream.fan_out}
            census.per_set.append((fan, page_count(page)))
            records = [r for r in page.records if isinstance(r, dict)]
            if inline is not None:
                full, seen = census.full_lists or (0, 0)
                lists = [r.get(inline.column) for r in records]
                census.full_lists = (full + sum(not inline.complete(v) for v in lists), seen + len(lists))
            if records:
                cols = shaper.columns(records[:1], request.context, page.data)
                census.samples.append({name: values[0] for name, values in cols.items()})
        return census

    # -- features --------------------------------------------------------------------------

    def features(self, client: SegmentClient) -> Iterator[FeatureStatus]:
        """The verdict on each gated area of the selected streams, one first page each."""
        for area, streams in feature_areas(self.streams).items():
            probe = streams[0]
            census = self.take_census(client, probe)
            selected = {s.name for s in self.streams}
            empty: list[str] = []
            for name in (n for s in streams for n in (s.name, *(d.name for d in descendants_of(s.name)))):
                if name in selected and name not in empty:
                    empty.append(name)
            above = self.census.get(probe.parent.stream) if probe.parent else None
            if census.status == "ok":
                status, note = "available", ""
            elif census.status == "unavailable":
                status = "not available"
                note = f"HTTP {census.http_status}: these tables will stay empty (their assets succeed and say why)"
            elif above is not None and above.status == "unavailable":
                status, census.http_status = "not available", above.http_status
                note = f"its parent {above.stream} is not available: these tables will stay empty"
            else:
                status, note = "unknown", census.message
            yield FeatureStatus(area, status, probe.operation_id, census.http_status, empty, note)

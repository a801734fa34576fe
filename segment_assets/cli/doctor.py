"""`segment-assets doctor`: is a workspace connection ready to sync, and what will a full sync cost?

For each configured connection (or the one named), with few requests:

1. the token: one `GET /` (getWorkspace); on a 401, one request to the other region's base
   URL tells a refused token from a token of the other region, and names the setting to change;
2. the feature-gated areas (Protocols, Spaces, Audiences, Functions...): one request each with
   `pagination[count]=1` (one per value of a required parameter: listFunctions asks per
   resourceType), 403 meaning "not in this workspace's plan" and naming the tables that will
   stay empty;
3. the cost of a full sync (what `segment-assets sync` runs: every configuration stream, the last
   daily partition, the current month): requests ≈ parent rows × fan-out × pages, counted from
   `totalEntries` of one-item pages of the parent lists and extrapolated from one sampled parent
   for deeper levels; minimum time from each endpoint's documented rate limit, along the chain of
   parents a stream waits for.

The token is read from the connection's variable and never printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from segment_assets.api import spec
from segment_assets.api.client import DEFAULT_GLOBAL_PER_MINUTE, REGIONS, SegmentClient
from segment_assets.api.errors import (
    NotFound,
    SegmentAPIError,
    SegmentAuthError,
    SegmentError,
    StreamUnavailable,
    TransientError,
    token_help,
)
from segment_assets.api.paging import Page
from segment_assets.api.rate_limits import minimum_seconds
from segment_assets.api.streams import STREAMS, RowFilter, StreamSpec, Window, children_of
from segment_assets.api.tables import table_def
from segment_assets.engine.reading import plan_requests
from segment_assets.engine.windows import clamp_to_retention, window_queries
from segment_assets.orchestration.connections import (
    CONNECTIONS_ENV,
    Connection,
    ConnectionConfigError,
    configured_connections,
)
from segment_assets.orchestration.partitions import partitions_def

# Areas Segment's plans gate although the OpenAPI document names no feature gate for them
# (the Audit Trail needs a Business tier; Reverse ETL is sold apart): probed like the others.
PLAN_AREAS: Mapping[str, str] = {"Audit Trail": "listAuditEvents", "Reverse ETL": "listReverseEtlModels"}

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
TOP_ENDPOINTS = 8


# -- counts that say how sure they are ---------------------------------------------------------

_KINDS = ("exact", "approx", "at_least")  # worst last


@dataclass(frozen=True)
class Count:
    """A number of rows or requests: `exact`, `approx` (extrapolated from a sample, an upper bound,
    or pages assumed), or `at_least` (the API gave no total)."""

    value: int
    kind: str = "exact"

    def _kind(self, other: Count) -> str:
        return max(self.kind, other.kind, key=_KINDS.index)

    def __add__(self, other: Count) -> Count:
        return Count(self.value + other.value, self._kind(other))

    def __mul__(self, other: Count) -> Count:
        if (self.value == 0 and self.kind == "exact") or (other.value == 0 and other.kind == "exact"):
            return Count(0)
        return Count(self.value * other.value, self._kind(other))

    def loose(self) -> Count:
        return Count(self.value, self._kind(Count(0, "approx")))

    def __str__(self) -> str:
        return {"exact": "", "approx": "≈", "at_least": "≥"}[self.kind] + str(self.value)


def page_count(page: Page) -> Count:
    """How many items the request would list in all, from its first page."""
    pagination = page.data.get("pagination") or {}
    total = pagination.get("totalEntries")
    if isinstance(total, (int, float)) and not isinstance(total, bool):
        return Count(int(total))
    if not pagination.get("next"):
        return Count(len(page.records))
    return Count(len(page.records) + 1, "at_least")  # totalEntries "may be omitted": at least one more


# -- what the doctor found ---------------------------------------------------------------------


@dataclass
class Census:
    """One stream's first pages, for the sampled parent (or the workspace)."""

    stream: str
    status: str  # "ok", "unavailable" (403, or 404 on a gated list), "unknown" (no verdict), "skipped"
    http_status: int | None = None
    message: str = ""
    per_set: list[tuple[dict[str, Any], Count]] = field(default_factory=list)  # (fan-out values, items)
    samples: list[dict[str, Any]] = field(default_factory=list)  # rows as the table stores them


@dataclass
class FeatureStatus:
    area: str
    status: str  # "available", "not available", "unknown"
    operation_id: str
    http_status: int | None
    empty_tables: list[str]  # what stays empty when the area is not available
    note: str = ""


@dataclass
class StreamEstimate:
    stream: str
    operation_id: str
    requests: Count
    rate_limit_per_minute: float | None
    min_seconds: float  # this endpoint alone, at its documented limit (after the client's burst)
    chain_seconds: float  # including the parents it waits for
    chain: list[str]  # parent streams, root first
    note: str = ""


@dataclass
class Estimate:
    requests: Count
    min_seconds: float
    bound_by: str  # the stream whose chain is the slowest, or "global" for the client's ceiling
    streams: list[StreamEstimate]
    rows: dict[str, str]  # counted parent rows, as text (exact, ≈ or ≥)
    window: dict[str, str]  # partition windows the estimate assumes

    def top(self, n: int = TOP_ENDPOINTS) -> list[StreamEstimate]:
        """The streams a full sync waits longest for (those the rate limits slow down at all)."""
        slow = [s for s in self.streams if s.chain_seconds > 0]
        return sorted(slow, key=lambda s: (-s.chain_seconds, -s.requests.value, s.stream))[:n]


@dataclass
class Report:
    connection: str
    token_env: str
    region: str
    base_url: str
    ok: bool = False
    problem: str = ""
    config_error: bool = False  # the connection cannot even be tried (no token): exit code 2
    workspace: dict[str, Any] | None = None
    region_hint: str = ""
    features: list[FeatureStatus] = field(default_factory=list)
    estimate: Estimate | None = None
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.estimate is not None:
            out["estimate"]["requests"] = self.estimate.requests.value
            out["estimate"]["requests_kind"] = self.estimate.requests.kind
            out["estimate"]["top"] = [s.stream for s in self.estimate.top()]
            for item, est in zip(out["estimate"]["streams"], self.estimate.streams):
                item["requests"], item["requests_kind"] = est.requests.value, est.requests.kind
        return out


# -- the checks --------------------------------------------------------------------------------


def _gate(stream: StreamSpec) -> str | None:
    return stream.feature_gate or next((a for a, op in PLAN_AREAS.items() if op == stream.operation_id), None)


def _descendants(name: str) -> list[str]:
    out = []
    for child in children_of(name):
        if child.materialized:
            out += [child.name, *_descendants(child.name)]
    return out


def feature_areas(streams: Sequence[StreamSpec]) -> dict[str, list[StreamSpec]]:
    """Gated area (alphabetical) -> its selected streams, in declaration order (parents first)."""
    areas: dict[str, list[StreamSpec]] = {}
    for stream in streams:
        gate = _gate(stream)
        if gate:
            areas.setdefault(gate, []).append(stream)
    return dict(sorted(areas.items()))


def _matches(row: Mapping[str, Any], where: RowFilter | None) -> bool:
    if where is None:
        return True
    value = row.get(where.column)
    return isinstance(value, str) and (where.startswith is None or value.startswith(where.startswith))


def _latest_windows(connection: Connection) -> dict[Window, tuple[datetime, datetime]]:
    """The windows `segment-assets sync` reads: the last daily partition and the current month."""
    out = {}
    for window, start in ((Window.DAILY, connection.daily_start), (Window.MONTHLY, connection.monthly_start)):
        pdef = partitions_def(window, start)
        key = pdef.get_last_partition_key()
        if key is not None:
            tw = pdef.time_window_for_partition_key(key)
            out[window] = (tw.start, tw.end)
    return out


class Doctor:
    def __init__(
        self,
        connection: Connection,
        *,
        environ: Mapping[str, str] | None = None,
        region_urls: Mapping[str, str] = REGIONS,
        estimate: bool = True,
        now: datetime | None = None,
        max_retries: int = 2,
    ) -> None:
        self.connection = connection
        self.env = os.environ if environ is None else environ
        self.region_urls = {k: v.rstrip("/") for k, v in region_urls.items()}
        self.do_estimate = estimate
        self.now = now or datetime.now(UTC)
        self.max_retries = max_retries
        self.streams = connection.streams()
        self.clients: list[SegmentClient] = []
        self.census: dict[str, Census] = {}
        base = (connection.api_url or self.region_urls[connection.region]).rstrip("/")
        self.report = Report(connection.name, connection.token_env, connection.region, base)
        self.windows = _latest_windows(connection)

    # -- running ---------------------------------------------------------------------------

    def run(self) -> Report:
        report = self.report
        token = self.env.get(self.connection.token_env, "").strip()
        if not token:
            report.problem = (
                f"{self.connection.token_env} is not set, so connection {self.connection.name!r} has no "
                f"token. {token_help(self.connection.token_env)}"
            )
            report.config_error = True
            return report
        try:
            client = self._client(token, report.base_url)
            try:
                data = client.request(STREAMS["workspace"], {}, {})
            except SegmentAuthError:
                self._refused(token)
                return report
            except TransientError as exc:
                report.problem = f"could not reach {report.base_url}: {exc}"
                return report
            report.workspace = {k: v for k, v in (data.get("workspace") or {}).items() if k in ("id", "slug", "name")}
            report.ok = True
            self._features(client)
            if self.do_estimate:
                report.estimate = self._estimate(client)
        except SegmentError as exc:  # the token stopped working, or an endpoint answered nonsense
            report.ok = False
            report.problem = str(exc)
        finally:
            report.requests = sum(c.stats.requests for c in self.clients)
            for c in self.clients:
                c.close()
        return report

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

    def _refused(self, token: str) -> None:
        report, c = self.report, self.connection
        env = c.token_env
        here = self._configured_region()
        if here is None:
            report.problem = f"{report.base_url} refused the token in {env} (HTTP 401). {token_help(env)}"
            return
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
                where = self.env.get(CONNECTIONS_ENV) or "the connections file"
                setting = f"set `region: {other}` for connection {c.name!r} in {where}"
                if c.api_url:
                    setting += " and remove its `api_url`"
            report.region_hint = (
                f"the token in {env} belongs to a workspace in the {other.upper()} region "
                f"({url} accepted it); {setting}"
            )
            report.problem = (
                f"the {here.upper()} API ({report.base_url}) refused the token in {env} (HTTP 401): "
                f"it is a token of the {other.upper()} region"
            )
            return
        report.problem = (
            f"the Segment API refused the token in {env} in every region ({', '.join(self.region_urls)}):"
            f" it is invalid, revoked, or lacks access. {token_help(env)}"
        )

    # -- first pages -----------------------------------------------------------------------

    def _first_page(
        self, client: SegmentClient, stream: StreamSpec, path: dict[str, str], query: dict[str, Any]
    ) -> Page:
        client.page_size = 1  # pages() sends it as the page size of this stream's paging style
        pages = client.pages(stream, path, query)
        try:
            return next(pages)
        finally:
            pages.close()

    def _take_census(self, client: SegmentClient, stream: StreamSpec) -> Census:
        if stream.name in self.census:
            return self.census[stream.name]
        census = Census(stream.name, "ok")
        self.census[stream.name] = census
        parent_rows: list[dict[str, Any]] = [{}]
        if stream.parent:
            parent = self._take_census(client, STREAMS[stream.parent.stream])
            sample = next((r for r in parent.samples if _matches(r, stream.parent.where)), None)
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
            span = self.windows.get(stream.windowing.partition)
            clamped = clamp_to_retention(stream.windowing, *span, now=self.now) if span else None
            windows = window_queries(stream.windowing, *clamped)[:1] if clamped else []
            if not windows:
                census.status, census.message = "skipped", "no window the API still serves"
                return census
        shaper = table_def(stream.name).shaper(strict=False)
        for request in plan_requests(stream, parent_rows, windows):
            try:
                page = self._first_page(client, stream, request.path, request.params)
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
            if records:
                cols = shaper.columns(records[:1], request.context, page.data)
                census.samples.append({name: values[0] for name, values in cols.items()})
        return census

    # -- features --------------------------------------------------------------------------

    def _features(self, client: SegmentClient) -> None:
        for area, streams in feature_areas(self.streams).items():
            probe = streams[0]
            census = self._take_census(client, probe)
            selected = {s.name for s in self.streams}
            empty: list[str] = []
            for name in (n for s in streams for n in (s.name, *_descendants(s.name))):
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
            self.report.features.append(
                FeatureStatus(area, status, probe.operation_id, census.http_status, empty, note)
            )

    # -- the cost of a full sync -----------------------------------------------------------

    def _rows(self, name: str, where: RowFilter | None = None) -> Count:
        """Rows of stream `name` (matching `where`), as far as one-item pages tell."""
        stream = STREAMS[name]
        census = self.census.get(name)
        parents = self._rows(stream.parent.stream, stream.parent.where) if stream.parent else Count(1)
        if parents == Count(0):
            return Count(0)
        if census is None or (census.status in ("skipped", "unknown") and not census.per_set):
            return Count(0, "at_least")
        if census.status == "unavailable":
            return Count(0)
        counts = census.per_set
        if where is not None:
            fan_param = next((p for p in stream.fan_out if spec.snake_case(p) == where.column), None)
            if fan_param is not None:
                counts = [(fan, n) for fan, n in counts if _matches({where.column: fan.get(fan_param)}, where)]
            else:
                counts = [(fan, n.loose()) for fan, n in counts]  # an upper bound: not every row matches
        per_parent = sum((n for _, n in counts), Count(0))
        if not stream.parent:
            return per_parent
        product = parents * per_parent
        return product if parents.value <= 1 and parents.kind == "exact" else product.loose()

    def _estimate(self, client: SegmentClient) -> Estimate:
        selected = {s.name: s for s in self.streams}
        needed = {s.parent.stream for s in self.streams if s.parent}
        needed |= {
            s.name for s in self.streams if not s.parent and s.windowing and not s.windowing.period_param
        }  # days may span many pages
        for stream in self.streams:
            if stream.name in needed:
                self._take_census(client, stream)

        estimates: dict[str, StreamEstimate] = {}
        for stream in self.streams:
            parents = self._rows(stream.parent.stream, stream.parent.where) if stream.parent else Count(1)
            windows: list[dict[str, Any]] | None = None
            if stream.windowing:
                span = self.windows.get(stream.windowing.partition)
                clamped = clamp_to_retention(stream.windowing, *span, now=self.now) if span else None
                windows = window_queries(stream.windowing, *clamped) if clamped else []
            sets = Count(len(plan_requests(stream, [{}], windows))) * parents
            census = self.census.get(stream.name)
            if census is not None and census.status == "unavailable":
                per_set, note = Count(1), f"refused (HTTP {census.http_status}): one request per parameter set"
            elif census is not None and census.per_set:
                pages = sum(
                    (Count(max(1, math.ceil(n.value / stream.max_page_size)), n.kind) for _, n in census.per_set),
                    Count(0),
                )
                per_set = Count(max(1, round(pages.value / len(census.per_set))), pages.kind)
                note = "pages counted"
            elif stream.paging.value in ("none", "single"):
                per_set, note = Count(1), ""
            else:
                per_set, note = Count(1, "approx"), "one page per request assumed"
            requests = sets * per_set
            limit = stream.rate_limit_per_minute
            seconds = 0.0
            if limit:
                seconds = minimum_seconds(requests.value, limit)  # as the shared rate budget paces them
            chain, above = [], stream.parent.stream if stream.parent else None
            while above in selected:
                chain.insert(0, above)
                above = selected[above].parent.stream if selected[above].parent else None  # type: ignore[union-attr]
            parent_seconds = estimates[chain[-1]].chain_seconds if chain else 0.0
            estimates[stream.name] = StreamEstimate(
                stream.name, stream.operation_id, requests, limit, seconds, seconds + parent_seconds, chain, note
            )
        streams = list(estimates.values())
        total = sum((s.requests for s in streams), Count(0))
        slowest = max(streams, key=lambda s: s.chain_seconds, default=None)
        global_seconds = total.value * 60.0 / DEFAULT_GLOBAL_PER_MINUTE
        if slowest is not None and slowest.chain_seconds >= global_seconds:
            min_seconds, bound_by = slowest.chain_seconds, slowest.stream
        else:
            min_seconds, bound_by = global_seconds, "global"
        parents = {s.parent.stream for s in self.streams if s.parent}
        rows = {name: str(self._rows(name)) for name in sorted(parents)}
        window = {w.value: f"{a:%Y-%m-%d}" if w is Window.DAILY else f"{a:%Y-%m}" for w, (a, _) in self.windows.items()}
        return Estimate(total, min_seconds, bound_by, streams, rows, window)


def diagnose(
    connection: Connection,
    *,
    environ: Mapping[str, str] | None = None,
    region_urls: Mapping[str, str] = REGIONS,
    estimate: bool = True,
    now: datetime | None = None,
) -> Report:
    """Check one connection; never raises for what the API answers (the report says it)."""
    return Doctor(connection, environ=environ, region_urls=region_urls, estimate=estimate, now=now).run()


# -- output ------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def render_text(report: Report) -> str:
    lines = [
        f"connection {report.connection!r}: token from {report.token_env}, region {report.region}, {report.base_url}"
    ]
    if not report.ok:
        lines.append(f"  FAILED  {report.problem}")
        if report.region_hint:
            lines.append(f"  hint    {report.region_hint}")
        lines.append(f"  the doctor made {report.requests} request(s)")
        return "\n".join(lines)
    ws = report.workspace or {}
    lines.append(f"  ok      token accepted: workspace {ws.get('name')!r} (slug {ws.get('slug')}, id {ws.get('id')})")
    if report.features:
        lines += ["", "  feature-gated areas (one-item requests):"]
        width = max(len(f.area) for f in report.features)
        for f in report.features:
            status = {"available": "available", "not available": "NOT AVAILABLE", "unknown": "unknown"}[f.status]
            lines.append(f"    {f.area:<{width}}  {status:<13}  {f.operation_id}")
            if f.status == "not available":
                lines.append(f"    {'':<{width}}  {f.note}: {_names(f.empty_tables)}")
            elif f.status == "unknown":
                lines.append(f"    {'':<{width}}  no verdict: {f.note}")
    est = report.estimate
    if est is not None:
        window = ", ".join(f"the {'day' if k == 'daily' else 'month'} {v}" for k, v in est.window.items())
        bound = (
            f"the client's global ceiling of {DEFAULT_GLOBAL_PER_MINUTE:g} requests/minute"
            if est.bound_by == "global"
            else est.bound_by
        )
        lines += [
            "",
            f"  a full sync (configuration streams, then {window}):",
            f"    {est.requests} requests, at least {duration(est.min_seconds)} "
            f"at the documented rate limits (slowest: {bound})",
        ]
        lines.append(
            f"    {'stream':<36} {'endpoint':<52} {'requests':>8} {'limit/min':>9} {'done after':>11}  waits for"
        )
        for s in est.top():
            limit = f"{s.rate_limit_per_minute:g}" if s.rate_limit_per_minute else "-"
            lines.append(
                f"    {s.stream:<36} {s.operation_id:<52} {str(s.requests):>8} {limit:>9} "
                f"{duration(s.chain_seconds):>11}  {' > '.join(s.chain) or '-'}"
            )
        counted = ", ".join(f"{k} {v}" for k, v in est.rows.items())
        lines.append(f"    parent rows counted: {counted}")
        lines.append(
            "    ≈: extrapolated from one sampled parent or one page per request assumed; ≥: the API gave no total"
        )
    lines += ["", f"  the doctor made {report.requests} request(s)"]
    return "\n".join(lines)


def main(
    argv: list[str] | None = None,
    *,
    out: TextIO | None = None,
    region_urls: Mapping[str, str] = REGIONS,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Exit 0 when every checked connection works, 1 when one does not, 2 on a configuration error."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="segment-assets doctor",
        description="Check the token, region and feature-gated areas of a workspace "
        "and estimate what a full sync costs.",
    )
    parser.add_argument("--connection", metavar="NAME", help="check this connection only (default: every one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object for machines")
    parser.add_argument("--no-estimate", action="store_true", help="skip the full-sync estimate (fewer requests)")
    args = parser.parse_args(argv)
    try:
        connections = configured_connections(environ)
    except (ConnectionConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.connection:
        connections = [c for c in connections if c.name == args.connection]
        if not connections:
            names = ", ".join(c.name for c in configured_connections(environ))
            print(f"error: no connection named {args.connection!r}; configured: {names}", file=sys.stderr)
            return EXIT_CONFIG
    reports = [
        diagnose(c, environ=environ, region_urls=region_urls, estimate=not args.no_estimate) for c in connections
    ]
    if args.json:
        json.dump({"ok": all(r.ok for r in reports), "connections": [r.as_dict() for r in reports]}, out, indent=2)
        out.write("\n")
    else:
        print("\n\n".join(render_text(r) for r in reports), file=out)
    if all(r.ok for r in reports):
        return EXIT_OK
    return EXIT_CONFIG if any(r.config_error for r in reports) else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())

"""The doctor's report on each workspace: text for people, JSON for machines, and the command.

Exit 0 when every checked workspace works, 1 when one does not, 2 on a configuration error
(no token, a bad connections file, an unknown --connection).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TextIO

from dagster import ComponentTree

from segment_assets.api.client import DEFAULT_GLOBAL_PER_MINUTE, REGIONS
from segment_assets.api.errors import SegmentError
from segment_assets.cli.doctor.estimate import Estimate, estimate_full_sync
from segment_assets.cli.doctor.probe import FeatureStatus, Probe, ProbeFailed
from segment_assets.orchestration.connections import Connection, ConnectionConfigError
from segment_assets.orchestration.workspaces import current_project_components, find_dg_project, resolve_workspaces

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


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
            out["estimate"]["requests_precision"] = self.estimate.requests.precision
            out["estimate"]["top"] = [s.stream for s in self.estimate.top()]
            for item, est in zip(out["estimate"]["streams"], self.estimate.streams):
                item["requests"], item["requests_precision"] = est.requests.value, est.requests.precision
        return out


def diagnose(
    connection: Connection,
    *,
    environ: Mapping[str, str] | None = None,
    region_urls: Mapping[str, str] = REGIONS,
    estimate: bool = True,
    now: datetime | None = None,
    where: str | None = None,
) -> Report:
    """Check one connection (configured in `where`); never raises for what the API answers (the
    report says it)."""
    probe = Probe(connection, environ=environ, region_urls=region_urls, now=now, where=where)
    report = Report(connection.name, connection.token_env, connection.region, probe.base_url)
    try:
        client, report.workspace = probe.connect()
        report.ok = True
        for feature in probe.features(client):
            report.features.append(feature)
        if estimate:
            report.estimate = estimate_full_sync(probe, client)
    except ProbeFailed as failed:
        report.problem, report.region_hint = failed.problem, failed.region_hint
        report.config_error = failed.config_error
    except SegmentError as exc:  # the token stopped working, or an endpoint answered nonsense
        report.ok, report.problem = False, str(exc)
    finally:
        report.requests = probe.close()
    return report


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
    components: ComponentTree | None = None,
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
        components = components or current_project_components()
    except Exception as exc:  # the user's project fails to import: say which, not a traceback of ours
        print(f"error: cannot load the dg project in {find_dg_project()}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        workspaces = resolve_workspaces(environ, components)
    except (ConnectionConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.connection:
        chosen = [w for w in workspaces if w.name == args.connection]
        if not chosen:
            names = ", ".join(w.name for w in workspaces)
            print(f"error: no connection named {args.connection!r}; configured: {names}", file=sys.stderr)
            return EXIT_CONFIG
        workspaces = chosen
    reports = [
        diagnose(w.connection, environ=environ, region_urls=region_urls, estimate=not args.no_estimate, where=w.origin)
        for w in workspaces
    ]
    if args.json:
        json.dump({"ok": all(r.ok for r in reports), "connections": [r.as_dict() for r in reports]}, out, indent=2)
        out.write("\n")
    else:
        print("\n\n".join(render_text(r) for r in reports), file=out)
    if all(r.ok for r in reports):
        return EXIT_OK
    return EXIT_CONFIG if any(r.config_error for r in reports) else EXIT_FAILED

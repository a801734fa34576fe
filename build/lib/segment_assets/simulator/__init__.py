"""A local, seeded Segment Public API (v73 GET surface) over real HTTP.

>>> with Simulator(seed=7) as sim:
...     httpx.get(f"{sim.url}/sources", headers={"Authorization": f"Bearer {sim.token}"})

Same seed, scale and counts: the same workspace on every start. Configuration objects are
dated from a fixed epoch and are byte-identical on every start; histories read with a
watermark (warehouse syncs, reverse-ETL sync statuses) and the regulations (served for 90
days) sit on absolute time slots before the start of the current UTC day, identical on every
start of a day; audit events, events volume, delivery metrics and usage stay relative to the
start-up clock so that yesterday's partition has data (see ``workspace`` for the details).

``live_interval=60`` (``simulate --live``) changes a few configuration objects every minute,
with their audit events (see ``live``); ``POST /__simulator/mutate`` (bearer token, optional
body ``{"change": "rename_source"}``) makes one change on demand. ``tls_cert``/``tls_key``
serve HTTPS (``tls.make_certificates`` writes a throw-away CA and certificate).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from .api import Api, Stats
from .endpoints import example_request
from .faults import FAULT_KINDS, Fault, FaultPlan
from .live import CHANGES, LiveChanges, LiveLoop
from .ratelimit import REALISTIC_GLOBAL_PER_MINUTE, RateLimiter
from .server import HttpServer
from .spec import load_spec
from .tls import server_context
from .workspace import AUDIT_RESOURCE_TYPES, Workspace

__all__ = [
    "AUDIT_RESOURCE_TYPES",
    "CHANGES",
    "FAULT_KINDS",
    "REALISTIC_GLOBAL_PER_MINUTE",
    "Simulator",
    "Workspace",
    "main",
]


class Simulator:
    """The Segment Public API, seeded and local. See the module docstring for an example.

    ``now`` fixes the clock the time-based data is anchored to; afterwards the simulator clock
    advances with real time from there (mutation audit events get that clock's time).
    ``live_interval``: seconds between live changes (``live_changes`` of them each time) while
    the server runs; None: the workspace changes only when told. ``tls_cert``/``tls_key``:
    PEM files to serve HTTPS with.
    """

    def __init__(
        self,
        seed: int = 7,
        scale: float = 1.0,
        counts: dict[str, int] | None = None,
        latency_ms: float = 0,
        faults: str | dict[str, float] | None = None,
        disabled_features: tuple[str, ...] | list[str] = (),
        rate_limits: dict[str, int] | str | None = None,
        tokens: tuple[str, ...] | list[str] = ("sim-token",),
        now: datetime | None = None,
        live_interval: float | None = None,
        live_changes: int = 3,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
    ) -> None:
        if not tokens:
            raise ValueError("at least one token is required")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both a certificate and its key (tls_cert and tls_key), or neither")
        self.seed = seed
        anchor = now if now is not None else datetime.now(UTC).replace(microsecond=0)
        if anchor.tzinfo is None:
            anchor = anchor.replace(tzinfo=UTC)
        self.anchor = anchor.astimezone(UTC)
        self._mono0 = time.monotonic()
        self.spec = load_spec()
        self.workspace = Workspace(seed, scale, counts, self.anchor, self.now, self.spec)
        self.tokens = tuple(tokens)
        self.faults = FaultPlan(seed, faults)
        self.limiter = RateLimiter(rate_limits, self.spec)
        self.stats = Stats()
        self.api = Api(
            self.spec, self.workspace, self.tokens, self.faults, self.limiter, tuple(disabled_features), self.stats
        )
        self.live = LiveChanges(self.workspace)
        self.api.controls["mutate"] = lambda body: self.mutate(body.get("change"))
        self.live_loop = LiveLoop(self.live, live_interval, live_changes) if live_interval is not None else None
        self.scheme = "https" if tls_cert is not None else "http"
        ssl_context = server_context(tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
        self._server = HttpServer(self.api, latency_ms, ssl_context)
        self.url: str | None = None

    def now(self) -> datetime:
        return self.anchor + timedelta(seconds=time.monotonic() - self._mono0)

    @property
    def token(self) -> str:
        return self.tokens[0]

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server.start(host, port)
        self.url = self._url()
        if self.live_loop is not None:
            self.live_loop.start()
        return self.url

    def stop(self) -> None:
        if self.live_loop is not None:
            self.live_loop.stop()
        self._server.stop()
        self.url = None

    def _url(self) -> str:
        host = self._server.host
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{self._server.port}"

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8765, announce: bool = True) -> None:
        def ready() -> None:
            self.url = self._url()
            if announce:
                print(
                    f"Segment API simulator on {self.url} (seed={self.seed}, "
                    f"{len(self.spec.operations)} GET operations); Ctrl-C stops",
                    flush=True,
                )
            if self.live_loop is not None:
                if announce:
                    self.live_loop.on_change = _print_change
                    print(
                        f"live workspace: {self.live_loop.per_tick} changes every {self.live_loop.interval:g} s",
                        flush=True,
                    )
                self.live_loop.start()

        try:
            self._server.serve_forever(host, port, ready)
        except KeyboardInterrupt:
            pass
        finally:
            if self.live_loop is not None:
                self.live_loop.stop()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- inspection and control --------------------------------------------------------------

    def items(
        self, operation_id: str, path_params: dict[str, str] | None = None, query: dict[str, Any] | None = None
    ) -> list[Any]:
        """Every item the endpoint serves for these params, as paging over HTTP returns them.

        Lists: the items in order. Single-object gets: ``[object]`` when `data` holds one
        object, else ``[data]`` (getSource -> ``[{"source": ..., "trackingPlanId": ...}]``).
        listSupportedDestinationsFromAudience: the map's values (each carries its key as
        ``id``). listCredentialConsumers: the sources, then the warehouses.
        """
        if operation_id not in self.spec.operations:
            raise KeyError(f"unknown operation {operation_id!r}")
        return self.api.items(operation_id, path_params, query)

    def example_request(self, operation_id: str) -> tuple[dict[str, str], dict[str, Any]]:
        """(path_params, query) that make ``operation_id`` answer 200 with at least one item."""
        return example_request(self.workspace, operation_id)

    def path(self, operation_id: str, path_params: dict[str, str] | None = None) -> str:
        """The request path of an operation with its path params filled in and quoted."""
        path = self.spec.operations[operation_id].path
        for name, value in (path_params or {}).items():
            path = path.replace("{" + name + "}", quote(str(value), safe=""))
        return path

    def mutate(self, change: str | None = None) -> dict[str, Any]:
        """Make one configuration change now, with its audit event, as the live mode does.
        ``change``: one of ``CHANGES`` (default: the next in turn). Returns what changed."""
        return self.live.apply(change)

    def reset_stats(self) -> None:
        self.stats.reset()

    def inject(self, kind: str, operation_id: str | None = None, times: int = 1, **params: Any) -> Fault:
        """Make the next ``times`` requests (of ``operation_id``, or of any operation) fail.

        Kinds: 429 (ms_before_next=200), 500, 502, 503, 401, 403, timeout (seconds=30),
        reset, malformed, truncated, repeat_cursor, missing_field (field=), type_change (field=).
        """
        if operation_id is not None and operation_id not in self.spec.operations:
            raise KeyError(f"unknown operation {operation_id!r}")
        return self.faults.inject(kind, operation_id, times, **params)


def _print_change(change: dict[str, Any]) -> None:
    print(f"live change: {change['type']} {change['resourceName']!r} ({change['resourceId']})", flush=True)


def _parse_counts(values: list[str]) -> dict[str, int]:
    counts = {}
    for value in values:
        kind, _, n = value.partition("=")
        if not n.isdigit():
            raise argparse.ArgumentTypeError(f"--count expects KIND=N, got {value!r}")
        counts[kind.strip()] = int(n)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="segment-assets simulate", description="Serve a seeded Segment Public API (GET operations) on localhost."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="KIND=N",
        help="override a collection's base size (per parent for child kinds), repeatable",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--faults", default=None, metavar="SPEC", help='e.g. "429:0.05,500:0.1,timeout:0.02"')
    parser.add_argument(
        "--disable-features",
        default="",
        metavar="A,B",
        help='feature gates to switch off, e.g. "Protocols,Audit Trail"',
    )
    parser.add_argument("--rate-limits", choices=("none", "realistic"), default="none")
    parser.add_argument("--token", action="append", default=[], help="accepted bearer token, repeatable")
    parser.add_argument(
        "--live",
        action="store_true",
        help="a live workspace: change a few configuration objects (with audit events) every interval",
    )
    parser.add_argument(
        "--live-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between live changes (default 60); implies --live",
    )
    parser.add_argument(
        "--live-changes", type=int, default=3, metavar="N", help="changes per live interval (default 3)"
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help="serve HTTPS with this certificate (python -m segment_assets.simulator.tls DIR makes one)",
    )
    parser.add_argument("--tls-key", default=None, metavar="PEM", help="the private key of --tls-cert")
    args = parser.parse_args(argv)
    live = args.live or args.live_interval is not None
    try:
        sim = Simulator(
            seed=args.seed,
            scale=args.scale,
            counts=_parse_counts(args.count),
            latency_ms=args.latency_ms,
            faults=args.faults,
            disabled_features=tuple(f.strip() for f in args.disable_features.split(",") if f.strip()),
            rate_limits=None if args.rate_limits == "none" else "realistic",
            tokens=tuple(args.token) or ("sim-token",),
            live_interval=(60.0 if args.live_interval is None else args.live_interval) if live else None,
            live_changes=args.live_changes,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    except (ValueError, argparse.ArgumentTypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        sim.serve_forever(args.host, args.port)
    except OSError as error:  # e.g. the port is taken
        print(f"error: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0

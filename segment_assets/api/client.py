"""SegmentClient: the one place that speaks HTTP to the Segment Public API.

Auth, region, versioned media types, the one request loop behind every paging style (the
styles themselves are the paginators of `paging.py`, chosen by the stream declaration), pacing
by a budget shared with every client of the token (`rate_limits.py`), 429 handling with
`msBeforeNext`, bounded retries and the mapping of status codes to typed errors (`errors.py`)
live here. Pages are yielded as they arrive; nothing holds a whole stream in memory.
Every request and every wait reads the stop event of the run the client serves (`stops.py`).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

from segment_assets.api import stops
from segment_assets.api.errors import (
    NotFound,
    PaginationError,
    SegmentAPIError,
    SegmentAuthError,
    StreamUnavailable,
    SyncStopped,
    TransientError,
    token_help,
)
from segment_assets.api.paging import Page, paginator_for
from segment_assets.api.rate_limits import RateBudget, RateLimitStore
from segment_assets.api.streams import StreamSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

REGIONS: Mapping[str, str] = {
    "us": "https://api.segmentapis.com",
    "eu": "https://eu1.api.segmentapis.com",
}


# Global ceiling per token: Segment publishes none, so this is deliberately generous and
# the per-endpoint limits (from the operation descriptions, see `spec.py`) do the real pacing.
DEFAULT_GLOBAL_PER_MINUTE = 1200.0


@dataclass
class RequestStats:
    requests: int = 0
    pages: int = 0
    records: int = 0  # items in the pages read
    retries: int = 0
    rate_limited: int = 0  # 429 responses received
    rate_limit_waits: int = 0  # times a request waited (429, exhausted headers or the shared budget)
    wait_seconds: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def status(self, code: int) -> None:
        with self._lock:
            self.by_status[code] = self.by_status.get(code, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "pages": self.pages,
                "records": self.records,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "rate_limit_waits": self.rate_limit_waits,
                "wait_seconds": round(self.wait_seconds, 3),
            }


class SegmentClient:
    def __init__(
        self,
        token: str,
        base_url: str | None = None,
        *,
        region: str = "us",
        page_size: int | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        rate_limits: Mapping[str, float] | None = None,
        global_rate_limit: float | None = DEFAULT_GLOBAL_PER_MINUTE,
        max_connections: int = 16,
        sleep: Any = None,
        stop: threading.Event | None = None,
        token_env: str = "SEGMENT_API_TOKEN",
        rate_limit_store: RateLimitStore | str | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        """`rate_limit_store` says who shares the budget: None (default) this client alone; 'memory',
        'file', 'file:/dir', 'redis://host:port/db' (see `rate_limits.open_store`) or a store."""
        if not token:
            raise SegmentAuthError(f"No Segment API token. {token_help(token_env)}")
        if region not in REGIONS:
            raise ValueError(f"SEGMENT_REGION must be one of {sorted(REGIONS)}, got {region!r}")
        self.base_url = (base_url or REGIONS[region]).rstrip("/")
        self.page_size = page_size
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.limiter = RateBudget(
            rate_limits or {}, global_rate_limit, rate_limit_store, base_url=self.base_url, token=token
        )
        self.stats = RequestStats()  # the whole client; per stream in stream_stats (streams run concurrently)
        self.stream_stats: dict[str, RequestStats] = {}
        self._stats_guard = threading.Lock()
        self.token_env = token_env
        # Where the 429 and retry messages go besides this module's logger: the run's log (Dagster's
        # event log, through `engine/progress.py`), set by whoever runs the client.
        self.on_message: Callable[[int, str], None] | None = None
        # The stop of the run this client serves (`stops.py` says who sets it); a client used on
        # its own gets one, so process exit still ends its waits.
        self.stop = stops.register(stop if stop is not None else threading.Event())
        self._sleep = sleep or self._sleep_unless_stopped
        # The first request goes alone: a refused token then costs exactly one request, not one
        # per concurrent stream; every later request fails fast with the same error.
        self._verified = threading.Event()
        self._first_request = threading.Lock()
        self._auth_error: SegmentAuthError | None = None
        # Proxies (HTTPS_PROXY, NO_PROXY) and SSL_CERT_FILE come from the environment (httpx's
        # trust_env); a CA bundle given here wins, for a TLS-inspecting gateway between us and Segment.
        # One TLS context for every thread's client (building one loads the CA bundle: ~20 ms).
        verify: ssl.SSLContext = httpx.create_ssl_context()
        if ca_bundle:
            if not Path(ca_bundle).is_file():
                raise ValueError(f"ca_bundle {ca_bundle!r} is not a file: give the PEM file of the CA to trust")
            verify = ssl.create_default_context(cafile=ca_bundle)
        # One httpx client per thread (streams run on threads): a shared pool serialises every
        # request and response on its lock, and under the GIL that lock convoys (measured: a
        # fan-out's requests took 30-70 ms each with 16 threads on one pool, 3 ms alone). The
        # run's threads live as long as the run, so each opens one and reuses it; close() ends all.
        self._http_settings: dict[str, Any] = dict(
            verify=verify,
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "segment-assets/0.1"},
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._local = threading.local()
        self._http_clients: list[httpx.Client] = []
        self._http_guard = threading.Lock()

    @property
    def _http(self) -> httpx.Client:
        http = getattr(self._local, "http", None)
        if http is None:
            http = httpx.Client(**self._http_settings)
            with self._http_guard:
                self._http_clients.append(http)
            self._local.http = http
        return http

    @property
    def http_clients(self) -> tuple[httpx.Client, ...]:
        """The per-thread HTTP clients opened so far and not yet closed by close()."""
        with self._http_guard:
            return tuple(self._http_clients)

    def __repr__(self) -> str:
        return f"SegmentClient(base_url={self.base_url!r}, token=<hidden>)"

    def close(self) -> None:
        with self._http_guard:
            clients, self._http_clients = self._http_clients, []
        for http in clients:
            http.close()
        self.limiter.close()

    def __enter__(self) -> SegmentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request --------------------------------------------------------------------

    def request(self, stream: StreamSpec, path_params: Mapping[str, str], query: Mapping[str, Any]) -> dict[str, Any]:
        """GET one page of `stream`; returns `data`. Retries what is transient, raises the rest."""
        if not self._verified.is_set():
            with self._first_request:
                if not self._verified.is_set():
                    return self._request(stream, path_params, query)
        return self._request(stream, path_params, query)

    def stats_for(self, stream_name: str) -> RequestStats:
        with self._stats_guard:
            return self.stream_stats.setdefault(stream_name, RequestStats())

    def _count(self, stream: StreamSpec, **counts: float) -> None:
        self.stats.add(**counts)
        self.stats_for(stream.name).add(**counts)

    def _sleep_unless_stopped(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _check_stop(self) -> None:
        if self._auth_error is not None:
            raise self._auth_error
        if self.stop.is_set():
            raise SyncStopped("the sync was asked to stop; no further request is sent")

    def _request(self, stream: StreamSpec, path_params: Mapping[str, str], query: Mapping[str, Any]) -> dict[str, Any]:
        path = stream.path.format(**{k: _quote(v) for k, v in path_params.items()})
        headers = {"Accept": stream.operation.media_type}
        attempt = 0
        while True:
            attempt += 1
            self._check_stop()
            self._pace(stream)
            self._check_stop()
            self._count(stream, requests=1)
            try:
                response = self._http.get(path, params=_encode_query(query), headers=headers)
                body = response.content
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                self._retry_or_raise(stream, attempt, f"{type(exc).__name__}")
                continue
            status = response.status_code
            self.stats.status(status)
            if status != 401:
                self._verified.set()  # any other answer proves the token authenticates
            self._observe_headers(response, stream.operation_id)
            if status == 200:
                try:
                    parsed = orjson.loads(body)
                    data = parsed["data"]
                    if not isinstance(data, dict):
                        raise TypeError("`data` is not an object")
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                    self._retry_or_raise(stream, attempt, f"unreadable 200 body ({exc}; {len(body)} bytes)")
                    continue
                return data
            message = _error_message(body)
            if status == 429:
                self._count(stream, rate_limited=1)
                wait = self._rate_limit_wait(body, response, attempt, stream.operation_id)
                self._say(logging.INFO, f"{stream.name}: 429 Too Many Requests, waiting {wait:.2f}s")
                self._wait(stream, wait)
                if attempt > self.max_retries * 4:
                    raise TransientError(f"stream {stream.name}: still rate limited after {attempt} attempts")
                continue
            if status >= 500:
                self._retry_or_raise(stream, attempt, f"HTTP {status} {message}")
                continue
            if status == 401:
                self._auth_error = SegmentAuthError(
                    f"the Segment API refused the token in {self.token_env} (HTTP 401 on GET {stream.path}: "
                    f"{message}); the sync stopped without further requests. {token_help(self.token_env)}"
                )
                self._verified.set()  # release the requests waiting behind this one: they fail fast
                raise self._auth_error
            if status == 403 or (status == 404 and stream.feature_gate):
                raise StreamUnavailable(stream.operation_id, status, message, stream.feature_gate)
            if status == 404:
                raise NotFound(f"stream {stream.name}: GET {path} answered 404: {message}")
            raise SegmentAPIError(f"stream {stream.name}: GET {stream.path} answered HTTP {status}: {message}")

    def _pace(self, stream: StreamSpec) -> None:
        wait = self.limiter.reserve(stream.operation_id)
        if wait > 0:
            self._wait(stream, wait)

    def _wait(self, stream: StreamSpec, seconds: float) -> None:
        self._count(stream, rate_limit_waits=1, wait_seconds=seconds)
        self._sleep(seconds)
        self._check_stop()

    def _retry_or_raise(self, stream: StreamSpec, attempt: int, what: str, final: Exception | None = None) -> None:
        """Sleep before retry `attempt`, or raise `final` (default: a TransientError) once retries ran out."""
        if attempt > self.max_retries:
            raise final or TransientError(
                f"stream {stream.name}: GET {stream.path} failed {attempt} times, last: {what}"
            )
        self._count(stream, retries=1)
        delay = self._backoff(attempt)
        self._say(logging.INFO, f"{stream.name}: {what}, retry {attempt} in {delay:.2f}s")
        self._sleep(delay)
        self._check_stop()

    def _say(self, level: int, text: str) -> None:
        log.log(level, text)
        if self.on_message is not None:
            self.on_message(level, text)

    def _backoff(self, attempt: int) -> float:
        # "Full jitter": spreads retries of concurrent workers instead of synchronising them.
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))

    def _rate_limit_wait(self, body: bytes, response: httpx.Response, attempt: int, operation_id: str) -> float:
        try:
            ms = orjson.loads(body)["errors"][0]["data"]["msBeforeNext"]
            wait = float(ms) / 1000.0
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            wait = _reset_wait(response) or self._backoff(attempt) + self.backoff_base
        self.limiter.pause(operation_id, wait)
        return wait

    def _observe_headers(self, response: httpx.Response, operation_id: str) -> None:
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            wait = _reset_wait(response)
            if wait:
                self.limiter.pause(operation_id, wait)

    # -- pagination ---------------------------------------------------------------------

    def pages(
        self,
        stream: StreamSpec,
        path_params: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        shape: Callable[[Page], T] | None = None,
    ) -> Generator[T, None, None]:
        """Yield every page of `stream` for one set of parameters, following its paging style.

        `shape` turns a page into what the caller keeps (e.g. an Arrow batch); a page it rejects
        with ValueError, or a page whose cursor repeats, is requested again like an unreadable
        body, and the error is raised only if it persists."""
        path_params = dict(path_params or {})
        base_query = {**stream.query, **(query or {})}
        take: Callable[[Page], Any] = shape or (lambda page: page)
        paginator = paginator_for(stream, self.page_size)
        while paginator.has_more:
            attempt = 0
            while True:
                data = self.request(stream, path_params, {**base_query, **paginator.params()})
                try:
                    pages = list(paginator.read(data))
                    kept = [take(page) for page in pages]
                    break
                except (PaginationError, ValueError) as exc:
                    attempt += 1
                    self._retry_or_raise(stream, attempt, f"unusable page ({exc})", final=exc)
            self._count(stream, pages=1, records=sum(len(page.records) for page in pages))
            yield from kept
            paginator.advance(data)


def _quote(value: str) -> str:
    return quote(str(value), safe="")


def _encode_query(query: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Objects as `name[field]` (what the official SDKs send), arrays as `name.0`, `name.1`."""
    out: list[tuple[str, str]] = []
    for name, value in query.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            out.extend((f"{name}[{k}]", str(v)) for k, v in value.items() if v is not None)
        elif isinstance(value, (list, tuple)):
            out.extend((f"{name}.{i}", str(v)) for i, v in enumerate(value))
        else:
            out.append((name, str(value)))
    return tuple(out)


def _error_message(body: bytes) -> str:
    try:
        errors = orjson.loads(body).get("errors") or []
        return "; ".join(str(e.get("message") or e.get("type")) for e in errors) or body[:200].decode(errors="replace")
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode(errors="replace")


def _reset_wait(response: httpx.Response) -> float | None:
    reset = response.headers.get("X-RateLimit-Reset")
    if not reset:
        return None
    try:
        when = parsedate_to_datetime(reset).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when - time.time(), 300.0))

"""Real servers for the UI and deployment tests: PostgreSQL, Redis, an S3 server, `dagster dev`,
and a Chromium page.

Each one starts on a free loopback port, in a temporary directory, in its own process group,
waits until it answers (a timeout names what did not happen and shows the end of the server's
log), and is stopped, whole process group included, when its `with` block ends, failing or not.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import Page

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"
PG_SCHEME = "postgresql+psycopg2"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


class ServiceError(RuntimeError):
    """A server did not start, or did not become ready in time; the message holds its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# Signals a test process may have set to "ignore": a shell that starts a job in the background
# ignores SIGINT for it, and Dagster's `materialize` then copies that SIGINT disposition onto
# SIGTERM (dagster._utils.interrupts). An ignored signal stays ignored across exec, so a server
# started from such a process would never stop on SIGTERM, and Python (and Dagster, which maps
# SIGTERM onto the SIGINT handler) would never shut down gracefully.
DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def default_signals() -> None:
    """`preexec_fn` for every process a test starts: SIGTERM, SIGINT, SIGHUP and SIGQUIT at
    their default action, whatever the test process does with them."""
    for signum in DEFAULT_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen with default signal dispositions (see `default_signals`); stop it with
    `stopped`."""
    return subprocess.Popen(list(argv), preexec_fn=default_signals, **kwargs)


def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run with default signal dispositions (see `default_signals`)."""
    return subprocess.run(list(argv), preexec_fn=default_signals, **kwargs)


def stop(proc: subprocess.Popen[Any], grace: float = 60.0) -> None:
    """SIGTERM, up to `grace` seconds to exit, then SIGKILL: the process is gone on return."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def stopped(proc: subprocess.Popen[Any], grace: float = 60.0) -> Iterator[subprocess.Popen[Any]]:
    """Yields `proc` and stops it (`stop`) when the block ends, failing or not."""
    try:
        yield proc
    finally:
        stop(proc, grace)


@dataclass
class ServiceProcess:
    """A server process, leader of its own process group, with its output in `log_path`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM

    @property
    def pgid(self) -> int:
        return self.popen.pid  # start_new_session: the leader's pid is the group id

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 20.0) -> None:
        """Ask the whole group to stop, give it `grace` seconds, then kill whatever is left."""
        try:
            os.killpg(self.pgid, self.stop_signal)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:  # children outliving the leader (code servers, run workers) go too
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=30)


def start_process(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stop_signal: int = signal.SIGTERM,
) -> ServiceProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=default_signals,
            )
        except FileNotFoundError as error:
            raise ServiceError(f"cannot start {name}: {error.filename} not found") from error
    return ServiceProcess(name, popen, log_path, stop_signal)


def wait_until(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    process: ServiceProcess | None = None,
    interval: float = 0.25,
) -> T:
    """Poll `check` until it returns something truthy; exceptions other than ServiceError count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except ServiceError:  # the check saw a failure that waiting will not fix
            raise
        except Exception as error:
            last_error = error
        if process is not None and not process.alive():
            raise ServiceError(
                f"{process.name} exited with code {process.popen.returncode} before {what}; "
                f"last lines of {process.log_path}:\n{process.tail()}"
            )
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            tail = f"; last lines of {process.log_path}:\n{process.tail()}" if process else ""
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{tail}")
        time.sleep(interval)


@contextmanager
def _temp_dir(prefix: str, owner: str | None = None) -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is private to root, and PostgreSQL runs as another user.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if owner:
            shutil.chown(path, owner, owner)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- PostgreSQL ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    database: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def connect(self) -> Any:
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=self.database)

    def dagster_storage_yaml(self) -> str:
        """The dagster.yaml storage block that puts runs, event log and schedules in this database.

        The scheme names the driver: SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3,
        while dagster-postgres installs psycopg2."""
        return (
            f"storage:\n  postgres:\n    postgres_db:\n      hostname: {self.host}\n      port: {self.port}\n"
            f"      username: {self.user}\n      password: ''\n      db_name: {self.database}\n"
            f"      scheme: {PG_SCHEME}\n"
        )


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise ServiceError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
            "install them with `apt-get install postgresql` (.ci/run does)"
        )
    return Path(found[-1]).parent


@contextmanager
def postgres_server(database: str = "dagster") -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster (trust auth, loopback only, fsync off) with `database` created."""
    import psycopg2

    bindir = _postgres_bin()
    # PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.
    as_root = os.geteuid() == 0
    owner = "postgres" if as_root else None
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    with _temp_dir("segment-pg-", owner) as tmp:
        data, port = tmp / "data", free_port()
        init = subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise ServiceError(f"initdb failed ({init.returncode}):\n{init.stdout[-2000:]}\n{init.stderr[-2000:]}")
        proc = start_process(
            "postgres",
            [
                *run_as,
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"unix_socket_directories={tmp}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=200",
            ],
            tmp / "postgres.log",
            stop_signal=signal.SIGINT,  # "fast" shutdown
        )
        try:

            def create() -> bool:
                con = psycopg2.connect(host=LOOPBACK, port=port, user="postgres", dbname="postgres", connect_timeout=2)
                try:
                    con.autocommit = True
                    with con.cursor() as cur:
                        cur.execute(f'CREATE DATABASE "{database}"')
                finally:
                    con.close()
                return True

            wait_until(create, what=f"PostgreSQL to accept connections on {LOOPBACK}:{port}", timeout=60, process=proc)
            yield Postgres(LOOPBACK, port, "postgres", database)
        finally:
            proc.stop()


# -- Redis ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Redis:
    host: str
    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"


@contextmanager
def redis_server() -> Iterator[Redis]:
    """A Redis server without persistence, on loopback."""
    import redis

    if shutil.which("redis-server") is None:
        raise ServiceError("redis-server not found: install it with `apt-get install redis-server` (.ci/run does)")
    with _temp_dir("segment-redis-") as tmp:
        port = free_port()
        proc = start_process(
            "redis-server",
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
            ],
            tmp / "redis.log",
        )
        try:
            wait_until(
                lambda: redis.Redis(host=LOOPBACK, port=port, socket_timeout=2).ping(),
                what=f"Redis to answer PING on {LOOPBACK}:{port}",
                timeout=30,
                process=proc,
            )
            yield Redis(LOOPBACK, port)
        finally:
            proc.stop()


# -- S3 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3:
    endpoint_url: str
    bucket: str
    access_key_id: str = "test"
    secret_access_key: str = "test"
    region: str = "us-east-1"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    @property
    def env(self) -> dict[str, str]:
        """The variables a process needs to reach this server as its S3."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", ())]

    def storage_options(self) -> dict[str, str]:
        """Options for object_store-based readers and writers (deltalake, polars...)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        }


@contextmanager
def s3_server(bucket: str = "segment-lake") -> Iterator[S3]:
    """moto's S3-compatible server on loopback, with `bucket` created."""
    with _temp_dir("segment-s3-") as tmp:
        port = free_port()
        proc = start_process(
            "moto_server", [str(VENV_BIN / "moto_server"), "-H", LOOPBACK, "-p", str(port)], tmp / "moto.log"
        )
        try:
            url = f"http://{LOOPBACK}:{port}"
            wait_until(
                lambda: httpx.get(f"{url}/moto-api/", timeout=2).status_code == 200,
                what=f"moto_server to answer on {url}",
                timeout=60,
                process=proc,
            )
            s3 = S3(url, bucket)
            s3.client().create_bucket(Bucket=bucket)
            yield s3
        finally:
            proc.stop()


# -- a forwarding proxy ----------------------------------------------------------------------


@contextmanager
def tinyproxy(workdir: Path) -> Iterator[tuple[str, Path]]:
    """Debian's tinyproxy on loopback, logging every request line it sees: (proxy URL, log file)."""
    port, log = free_port(), workdir / "tinyproxy.log"
    conf = workdir / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen {LOOPBACK}\nTimeout 30\nAllow {LOOPBACK}\nMaxClients 32\n"
        f'LogLevel Info\nLogFile "{log}"\nPidFile "{workdir / "tinyproxy.pid"}"\n'
    )
    proc = start_process("tinyproxy", ["tinyproxy", "-d", "-c", str(conf)], workdir / "tinyproxy.out")
    try:

        def listening() -> bool:
            try:
                socket.create_connection((LOOPBACK, port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(listening, what=f"tinyproxy to listen on {port}", timeout=20, process=proc)
        yield f"http://{LOOPBACK}:{port}", log
    finally:
        proc.stop()


# -- dagster dev ---------------------------------------------------------------------------


@dataclass
class DagsterDev:
    """`dagster dev` (webserver, daemon, code server) for one DAGSTER_HOME."""

    url: str
    home: Path
    process: ServiceProcess
    started_seconds: float = 0.0
    _client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = self._client.post(f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]


_LOCATIONS = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)
_DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"


@contextmanager
def dagster_dev(
    home: Path,
    env: Mapping[str, str],
    workspace: Path = PROJECT_ROOT / "workspace.yaml",
    instance_yaml: str | None = None,
    timeout: float = 180.0,
) -> Iterator[DagsterDev]:
    """`dagster dev` on a free port with DAGSTER_HOME=`home`, ready once its code locations have
    loaded and its daemons report healthy. `instance_yaml` becomes home/dagster.yaml (default:
    the project's dagster.yaml, as `./run ui` uses it)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        instance_yaml if instance_yaml is not None else (PROJECT_ROOT / "dagster.yaml").read_text()
    )
    port = free_port()
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    started = time.monotonic()
    # As `./run ui` runs it: through `segment-assets ui` (its terminal is in the log), from
    # DAGSTER_HOME (no warning about the project's dagster.yaml).
    proc = start_process(
        "dagster dev",
        [
            sys.executable,
            "-m",
            "segment_assets",
            "ui",
            "-w",
            str(workspace),
            "-h",
            LOOPBACK,
            "-p",
            str(port),
        ],
        home / "dagster-dev.log",
        env=full_env,
        cwd=home,
        stop_signal=signal.SIGINT,
    )
    dev = DagsterDev(f"http://{LOOPBACK}:{port}", home, proc)
    try:

        def locations_loaded() -> bool:
            entries = dev.graphql(_LOCATIONS)["workspaceOrError"]["locationEntries"]
            errors = [
                e
                for e in entries
                if e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "PythonError"
            ]
            if errors:
                raise ServiceError(f"code location failed to load: {errors[0]['locationOrLoadError']['message']}")
            return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

        def daemons_healthy() -> bool:
            statuses = dev.graphql(_DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
            return all(s["healthy"] for s in statuses if s["required"])

        wait_until(
            locations_loaded,
            what=f"dagster dev to load its code locations at {dev.url}",
            timeout=timeout,
            process=proc,
            interval=1.0,
        )
        wait_until(
            daemons_healthy, what="the Dagster daemons to report healthy", timeout=timeout, process=proc, interval=1.0
        )
        dev.started_seconds = time.monotonic() - started
        yield dev
    finally:
        dev._client.close()
        proc.stop()


# -- Chromium ------------------------------------------------------------------------------


@contextmanager
def chromium_page(width: int = 1600, height: int = 1000) -> Iterator[Page]:
    """A Playwright page in Debian's Chromium (Playwright cannot download its own browsers here)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise ServiceError(f"{CHROMIUM} not found: install it with `apt-get install chromium` (.ci/run does)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            # Dagster invites to its community on a first visit; a user clicks Skip, whenever it shows.
            page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
            yield page
        finally:
            browser.close()


def show_in_catalog(page: Page, url: str, selection: str, href: str, attempts: int = 3) -> None:
    """Opens the asset catalog filtered to `selection` (Dagster's selection syntax, in the URL as a
    user bookmarks it) and waits until the link to `href` is drawn. On a loaded machine the catalog's
    first query can come back empty while the code location settles; a user reloads, and so does
    this, `attempts` times, each waiting the page's default timeout."""
    from urllib.parse import quote

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(1, attempts + 1):
        page.goto(f"{url}/assets?asset-selection={quote(selection)}", wait_until="domcontentloaded")
        try:
            page.locator(f'a[href="{href}"]').first.wait_for(state="visible")
            return
        except PlaywrightTimeout:
            if attempt == attempts:
                raise

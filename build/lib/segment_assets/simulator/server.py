"""A small asyncio HTTP/1.1 server (keep-alive, pipelining-safe) in front of ``Api``.

http.server parses headers with the email package and manages a thread per connection;
this loop serves several times more small requests per second, which the benchmarks need.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from email.utils import formatdate

from .api import Api, Response

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024


class _DateHeader:
    """The Date header, formatted at most once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True)
        return self._value


class HttpServer:
    """``ssl_context``: serve HTTPS (asyncio does the TLS; the HTTP handling is unchanged)."""

    def __init__(self, api: Api, latency_ms: float = 0.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.api = api
        self.latency = latency_ms / 1000.0
        self.ssl_context = ssl_context
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._date = _DateHeader()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, args=(host, port), name="segment-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self._thread = None
            raise self._error

    def _run(self, host: str, port: int) -> None:
        try:
            asyncio.run(self._serve(host, port, self._ready.set))
        except BaseException as exc:  # surfaced to start()
            self._error = exc
            self._ready.set()

    def serve_forever(self, host: str, port: int, on_ready: Callable[[], None]) -> None:
        asyncio.run(self._serve(host, port, on_ready))

    async def _serve(self, host: str, port: int, on_ready: Callable[[], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(
            self._connection, host, port, limit=MAX_HEADER_BYTES, reuse_address=True, ssl=self.ssl_context
        )
        sock = self._server.sockets[0]
        self.host, self.port = sock.getsockname()[:2]
        on_ready()
        try:
            await self._stopping.wait()
        finally:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

    def stop(self) -> None:
        if self.loop is not None and self._stopping is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.loop = None

    # ---- one connection ----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                try:
                    length = int(headers.get("content-length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY_BYTES:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                body = await reader.readexactly(length) if length else b""  # GETs ignore it; controls read it
                keep_alive = (headers.get("connection", "").lower() != "close") and version == "HTTP/1.1"
                response = self.api.handle(method, target, headers, body)
                delay = self.latency + response.hold_seconds
                if delay:
                    await asyncio.sleep(delay)
                if not await self._write(writer, method, response, keep_alive):
                    return
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            return  # the client went away (or failed the TLS handshake) mid-request
        finally:
            self._writers.discard(writer)
            try:
                writer.close()
            except RuntimeError:
                pass

    async def _write(self, writer: asyncio.StreamWriter, method: str, response: Response, keep_alive: bool) -> bool:
        body = response.body
        head = [
            f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
            f"Date: {self._date()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(body)}",
        ]
        head.extend(f"{k}: {v}" for k, v in response.headers)
        if not keep_alive:
            head.append("Connection: close")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if response.cut_at is not None:
            # "reset" fault: promise the whole body, send half, drop the connection.
            writer.write(payload + body[: response.cut_at])
            await writer.drain()
            writer.transport.abort()
            return False
        writer.write(payload if method == "HEAD" else payload + body)
        if writer.transport.get_write_buffer_size() > 256 * 1024:
            await writer.drain()
        return True

"""The live stop events of this process: one registry, set all at once at interpreter exit and by
the CLI's SIGTERM/SIGINT handler.

A run of streams owns one `threading.Event` (`engine.runner.StreamRun.stop`) and hands it to its
client, which registers it here and reads it before every request and during every wait. The
event is a plain flag: nobody polls the main thread's state.

Why `threading._register_atexit` and not a daemon thread joining the main thread: at exit the
interpreter first runs threading's exit hooks, and `concurrent.futures` joins its pool workers
in one of them, before the main thread counts as finished. A worker sleeping on a 2/min budget
would hold that join for minutes while a watcher joining the main thread never wakes. Hooks run
in reverse order of registration, so registering after `concurrent.futures.thread` is imported
puts ours first: every stop is set before any worker is joined.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 - imported first so our exit hook runs before its join
import threading
import weakref

_live: weakref.WeakSet[threading.Event] = weakref.WeakSet()
_guard = threading.Lock()


def register(stop: threading.Event) -> threading.Event:
    """Make `stop` one of the events `stop_all` sets (until it is garbage)."""
    with _guard:
        _live.add(stop)
    return stop


def stop_all() -> None:
    """Ask every sync in this process to stop: no further request, waits end at once."""
    with _guard:
        events = list(_live)
    for event in events:
        event.set()


threading._register_atexit(stop_all)  # type: ignore[attr-defined]

"""What a sync is doing, for whoever watches it in this process (the `segment-assets sync`
terminal view). Dagster runs launched elsewhere have no observer and pay nothing.

`engine/runner.py` and `orchestration/assets.py` report a run's client and each stream's start and end
here; an observer registered with `watch()` receives them. Calls come from worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from segment_assets.api.client import SegmentClient
    from segment_assets.api.streams import StreamSpec
    from segment_assets.engine.runner import StreamOutcome


class Observer(Protocol):
    def run_started(self, client: SegmentClient, streams: list[StreamSpec]) -> None: ...

    def stream_started(self, stream: StreamSpec) -> None: ...

    def stream_finished(self, outcome: StreamOutcome) -> None: ...


_observers: list[Observer] = []
_guard = threading.Lock()


@contextmanager
def watch(observer: Observer) -> Iterator[Observer]:
    with _guard:
        _observers.append(observer)
    try:
        yield observer
    finally:
        with _guard:
            _observers.remove(observer)


def emit(method: str, *args: Any) -> None:
    for observer in list(_observers):
        getattr(observer, method)(*args)

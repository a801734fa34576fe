"""One paginator per paging style the Segment Public API uses, chosen by the stream declaration.

A paginator holds the position of one read (one stream, one set of parameters) and knows three
things: the paging parameters of the next request, the pages a response holds (refusing a
response whose cursor repeats), and how to move past a response once its pages were kept.
Reading a response changes nothing, so the client can ask for the same page again when a
response is unusable; only `advance` moves on. The client owns the requests and the retries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from segment_assets.api.errors import PaginationError
from segment_assets.api.streams import Paging, StreamSpec

# Opaque to the client; listFiltersForSpace's is a numeric offset, the others are strings.
Cursor = str | int


@dataclass(frozen=True)
class Page:
    records: list[Any]
    data: dict[str, Any]
    record_kind: str | None = None  # which data key the records came from (multi-key endpoints)


class Paginator(ABC):
    def __init__(self, stream: StreamSpec, count: int) -> None:
        self.stream = stream
        self.count = count  # page size sent to the API, already capped at the endpoint's maximum
        self.pages_read = 0

    @property
    @abstractmethod
    def has_more(self) -> bool:
        """Whether another request is due."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The paging query parameters of the next request."""

    @abstractmethod
    def read(self, data: dict[str, Any]) -> list[Page]:
        """The pages in one response's `data`; raises PaginationError if its cursor was already sent."""

    def advance(self, data: dict[str, Any]) -> None:
        """Move past the response `data`, whose pages were kept."""
        self.pages_read += 1

    def _single_page(self, data: dict[str, Any]) -> list[Page]:
        # A declaration with several data keys and one cursor reads the first key.
        key = self.stream.data_keys[0] if self.stream.data_keys else None
        return [Page(records(self.stream, data, key), data)]

    def _repeated(self, cursor: Cursor, where: str = "") -> PaginationError:
        return PaginationError(
            f"stream {self.stream.name}: the API returned cursor {cursor!r}{where} twice; stopping instead of "
            f"looping (after {self.pages_read} pages)"
        )


class UnpaginatedPaginator(Paginator):
    """Paging.NONE: one request without paging parameters, one page."""

    def __init__(self, stream: StreamSpec, count: int) -> None:
        super().__init__(stream, count)
        self._done = False

    @property
    def has_more(self) -> bool:
        return not self._done

    def params(self) -> dict[str, Any]:
        return {}

    def read(self, data: dict[str, Any]) -> list[Page]:
        return self._single_page(data)

    def advance(self, data: dict[str, Any]) -> None:
        super().advance(data)
        self._done = True


class SinglePagePaginator(UnpaginatedPaginator):
    """Paging.SINGLE: the endpoint takes `pagination[count]` but answers without a pagination
    object, so there is no cursor to follow: one page."""

    def params(self) -> dict[str, Any]:
        return {"pagination": {"count": self.count}}


class CursorPaginator(Paginator):
    """Paging.CURSOR: `pagination[count]`/`pagination[cursor]` in, `data.pagination` out; the
    next cursor is `pagination.next`, and the read ends when it is absent or null."""

    def __init__(self, stream: StreamSpec, count: int) -> None:
        super().__init__(stream, count)
        self.cursor: Cursor | None = None
        self._finished = False
        self._seen: set[Cursor] = set()  # every cursor sent or reported as current so far

    @property
    def has_more(self) -> bool:
        return not self._finished

    def params(self) -> dict[str, Any]:
        return {"pagination": self._page_input()}

    def _page_input(self) -> dict[str, Any]:
        return {"count": self.count, **({"cursor": self.cursor} if self.cursor else {})}

    def read(self, data: dict[str, Any]) -> list[Page]:
        pagination = data.get("pagination") or {}
        nxt = pagination.get("next")
        if nxt and (nxt in self._seen or nxt in (self.cursor, pagination.get("current"))):
            raise self._repeated(nxt)
        return self._single_page(data)

    def advance(self, data: dict[str, Any]) -> None:
        super().advance(data)
        pagination = data.get("pagination") or {}
        nxt = pagination.get("next")
        if not nxt:
            self._finished = True
            return
        self._seen.update(c for c in (self.cursor, pagination.get("current")) if c)
        self.cursor = nxt


class TopLevelCursorPaginator(CursorPaginator):
    """Paging.TOP_LEVEL: `count` and `cursor` as top-level query parameters (the reverse-ETL
    sync statuses); the response still reports its cursors in `data.pagination`."""

    def params(self) -> dict[str, Any]:
        return self._page_input()


class PerKeyCursorPaginator(Paginator):
    """Paging.PER_KEY: one independent cursor per data key, `<key>Pagination` in and out
    (listCredentialConsumers). A key is dropped from the request once its list ends; a response
    still carries the records of an exhausted key (its first page, served again), which are
    ignored. One response holds one page per key still being read."""

    def __init__(self, stream: StreamSpec, count: int) -> None:
        super().__init__(stream, count)
        self.cursors: dict[str, Cursor | None] = {key: None for key in stream.data_keys}
        self._seen: set[tuple[str, Cursor]] = set()

    @property
    def has_more(self) -> bool:
        return bool(self.cursors)

    def params(self) -> dict[str, Any]:
        return {
            f"{key}Pagination": {"count": self.count, **({"cursor": cursor} if cursor else {})}
            for key, cursor in self.cursors.items()
        }

    def _next_cursors(self, data: dict[str, Any]) -> dict[str, Cursor | None]:
        return {key: (data.get(f"{key}Pagination") or {}).get("next") for key in self.cursors}

    def read(self, data: dict[str, Any]) -> list[Page]:
        for key, nxt in self._next_cursors(data).items():
            if nxt and ((key, nxt) in self._seen or nxt == self.cursors[key]):
                raise self._repeated(nxt, f" for {key}")
        return [Page(records(self.stream, data, key), data, record_kind=key) for key in self.cursors]

    def advance(self, data: dict[str, Any]) -> None:
        super().advance(data)
        for key, nxt in self._next_cursors(data).items():
            if nxt:
                self._seen.add((key, nxt))
                self.cursors[key] = nxt
            else:
                del self.cursors[key]


PAGINATORS: Mapping[Paging, type[Paginator]] = MappingProxyType(
    {
        Paging.NONE: UnpaginatedPaginator,
        Paging.SINGLE: SinglePagePaginator,
        Paging.CURSOR: CursorPaginator,
        Paging.TOP_LEVEL: TopLevelCursorPaginator,
        Paging.PER_KEY: PerKeyCursorPaginator,
    }
)


def paginator_for(stream: StreamSpec, page_size: int | None = None) -> Paginator:
    """A fresh paginator for one read of `stream`; `page_size` is capped at the endpoint's maximum."""
    count = min(page_size or stream.max_page_size, stream.max_page_size)
    return PAGINATORS[stream.paging](stream, count)


def records(stream: StreamSpec, data: dict[str, Any], key: str | None) -> list[Any]:
    """The records under `key` of a response's `data`; with no key, `data` itself is the one record."""
    if key is None:
        return [data]
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and stream.map_key_column:
        return [{stream.map_key_column: k, "value": v} for k, v in value.items()]
    return [value]

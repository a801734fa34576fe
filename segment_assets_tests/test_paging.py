"""The paginators of api/paging.py, fed hand-written response bodies (no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from segment_assets.api.errors import PaginationError
from segment_assets.api.paging import (
    PAGINATORS,
    CursorPaginator,
    Paginator,
    PerKeyCursorPaginator,
    SinglePagePaginator,
    TopLevelCursorPaginator,
    UnpaginatedPaginator,
    paginator_for,
)
from segment_assets.api.streams import STREAMS, Paging


def read_all(paginator: Paginator, responses: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Drive `paginator` as the client does; returns the params sent and the records kept."""
    sent, kept = [], []
    for data in responses:
        assert paginator.has_more, "a response arrived after the paginator said it was done"
        sent.append(paginator.params())
        kept.extend(r for page in paginator.read(data) for r in page.records)
        paginator.advance(data)
    assert not paginator.has_more, "the paginator wants more than the responses given"
    return sent, kept


def test_every_paging_style_has_a_paginator() -> None:
    assert set(PAGINATORS) == set(Paging)
    for stream in STREAMS.values():
        assert isinstance(paginator_for(stream), PAGINATORS[stream.paging])


def test_page_size_is_capped_at_the_endpoint_maximum() -> None:
    audiences = STREAMS["audiences"]  # at most 200 per page
    assert paginator_for(audiences).count == 200
    assert paginator_for(audiences, page_size=5000).count == 200
    assert paginator_for(audiences, page_size=7).count == 7


def test_cursor_follows_next_until_it_is_absent() -> None:
    paginator = paginator_for(STREAMS["sources"], page_size=2)
    assert isinstance(paginator, CursorPaginator)
    sent, kept = read_all(
        paginator,
        [
            {"sources": [{"id": "a"}, {"id": "b"}], "pagination": {"current": "MA==", "next": "Mg=="}},
            {
                "sources": [{"id": "c"}, {"id": "d"}],
                "pagination": {"current": "Mg==", "next": "NA==", "previous": "MA=="},
            },
            {"sources": [{"id": "e"}], "pagination": {"current": "NA==", "next": None, "previous": "Mg=="}},
        ],
    )
    assert sent == [
        {"pagination": {"count": 2}},
        {"pagination": {"count": 2, "cursor": "Mg=="}},
        {"pagination": {"count": 2, "cursor": "NA=="}},
    ]
    assert [r["id"] for r in kept] == ["a", "b", "c", "d", "e"]


def test_cursor_page_without_pagination_object_is_the_last() -> None:
    _, kept = read_all(paginator_for(STREAMS["sources"]), [{"sources": [{"id": "a"}]}])
    assert kept == [{"id": "a"}]


def test_next_equal_to_current_is_refused() -> None:
    paginator = paginator_for(STREAMS["sources"], page_size=1)
    with pytest.raises(PaginationError, match="'MA==' twice"):
        paginator.read({"sources": [{"id": "a"}], "pagination": {"current": "MA==", "next": "MA=="}})


def test_a_cursor_sent_before_is_refused_later() -> None:
    paginator = paginator_for(STREAMS["sources"], page_size=1)
    for current, nxt in (("c0", "c1"), ("c1", "c2")):
        data = {"sources": [{"id": current}], "pagination": {"current": current, "next": nxt}}
        paginator.read(data)
        paginator.advance(data)
    with pytest.raises(PaginationError, match="'c1' twice"):
        paginator.read({"sources": [{"id": "x"}], "pagination": {"current": "c2", "next": "c1"}})


def test_reading_a_response_does_not_move_the_paginator() -> None:
    # The client asks for the same page again after a refused one: the request must not change.
    paginator = paginator_for(STREAMS["sources"], page_size=1)
    first = {"sources": [{"id": "a"}], "pagination": {"current": "c0", "next": "c1"}}
    paginator.read(first)
    paginator.advance(first)
    before = paginator.params()
    with pytest.raises(PaginationError):
        paginator.read({"sources": [{"id": "b"}], "pagination": {"current": "c1", "next": "c1"}})
    assert paginator.params() == before
    good = {"sources": [{"id": "b"}], "pagination": {"current": "c1", "next": None}}
    assert [p.records for p in paginator.read(good)] == [[{"id": "b"}]]
    assert paginator.params() == before and paginator.has_more
    paginator.advance(good)
    assert not paginator.has_more


def test_numeric_offset_cursor_starting_at_zero() -> None:
    # listFiltersForSpace: current 0 on the first page, next is the offset of the following one.
    sent, kept = read_all(
        paginator_for(STREAMS["space_filters"]),
        [
            {"filters": [{"id": i} for i in range(10)], "pagination": {"current": 0, "next": 10}},
            {"filters": [{"id": 10}], "pagination": {"current": 10, "next": None}},
        ],
    )
    assert sent == [{"pagination": {"count": 10}}, {"pagination": {"count": 10, "cursor": 10}}]
    assert len(kept) == 11


def test_a_map_becomes_one_record_per_entry() -> None:
    _, kept = read_all(
        paginator_for(STREAMS["audience_supported_destinations"]),
        [{"destinations": {"braze": {"id": "d1"}, "iterable": {"id": "d2"}}, "pagination": {"current": "MA=="}}],
    )
    assert kept == [
        {"destination_key": "braze", "value": {"id": "d1"}},
        {"destination_key": "iterable", "value": {"id": "d2"}},
    ]


def test_top_level_count_and_cursor() -> None:
    paginator = paginator_for(STREAMS["reverse_etl_sync_statuses"], page_size=1000)
    assert isinstance(paginator, TopLevelCursorPaginator)
    sent, kept = read_all(
        paginator,
        [
            {"syncStatuses": [{"syncId": "1"}], "pagination": {"current": "p0", "next": "p1"}},
            {"syncStatuses": [{"syncId": "2"}], "pagination": {"current": "p1"}},
        ],
    )
    assert sent == [{"count": 100}, {"count": 100, "cursor": "p1"}]
    assert [r["syncId"] for r in kept] == ["1", "2"]


def test_top_level_cursor_repeated_is_refused() -> None:
    paginator = paginator_for(STREAMS["reverse_etl_sync_statuses"])
    with pytest.raises(PaginationError, match="twice"):
        paginator.read({"syncStatuses": [], "pagination": {"current": "p0", "next": "p0"}})


def test_single_page_sends_count_and_ignores_any_next() -> None:
    paginator = paginator_for(STREAMS["source_regulations"], page_size=3)
    assert isinstance(paginator, SinglePagePaginator)
    sent, kept = read_all(paginator, [{"regulations": [{"id": "r1"}], "pagination": {"current": "a", "next": "a"}}])
    assert sent == [{"pagination": {"count": 3}}]
    assert kept == [{"id": "r1"}]


def test_unpaginated_sends_no_paging_parameter() -> None:
    paginator = paginator_for(STREAMS["labels"], page_size=3)
    assert isinstance(paginator, UnpaginatedPaginator)
    sent, kept = read_all(paginator, [{"labels": [{"key": "env", "value": "prod"}]}])
    assert sent == [{}]
    assert kept == [{"key": "env", "value": "prod"}]


def test_without_data_key_the_whole_response_is_the_record() -> None:
    data = {"sourceId": "s1", "settings": {"track": {"allowUnplannedEvents": True}}}
    _, kept = read_all(paginator_for(STREAMS["source_schema_settings"]), [data])
    assert kept == [data]


def test_single_object_and_absent_key() -> None:
    _, kept = read_all(paginator_for(STREAMS["workspace"]), [{"workspace": {"id": "w1"}}])
    assert kept == [{"id": "w1"}]
    _, kept = read_all(paginator_for(STREAMS["labels"]), [{}])
    assert kept == []


def test_per_key_cursors_advance_independently() -> None:
    paginator = paginator_for(STREAMS["credential_consumers"], page_size=1)
    assert isinstance(paginator, PerKeyCursorPaginator)
    responses = [
        {
            "sources": [{"id": "s1"}],
            "warehouses": [{"id": "w1"}],
            "sourcesPagination": {"current": "s0", "next": "s1"},
            "warehousesPagination": {"current": "w0"},
        },
        # warehouses ended: the API serves its first page again, which must not be kept twice
        {
            "sources": [{"id": "s2"}],
            "warehouses": [{"id": "w1"}],
            "sourcesPagination": {"current": "s1"},
        },
    ]
    sent, kinds = [], []
    for data in responses:
        sent.append(paginator.params())
        kinds.extend((p.record_kind, [r["id"] for r in p.records]) for p in paginator.read(data))
        paginator.advance(data)
    assert not paginator.has_more
    assert sent == [
        {"sourcesPagination": {"count": 1}, "warehousesPagination": {"count": 1}},
        {"sourcesPagination": {"count": 1, "cursor": "s1"}},
    ]
    assert kinds == [("sources", ["s1"]), ("warehouses", ["w1"]), ("sources", ["s2"])]


def test_per_key_repeated_cursor_is_refused() -> None:
    paginator = paginator_for(STREAMS["credential_consumers"], page_size=1)
    first = {"sources": [], "warehouses": [], "warehousesPagination": {"current": "w0", "next": "w1"}}
    paginator.read(first)
    paginator.advance(first)
    with pytest.raises(PaginationError, match="'w1' for warehouses twice"):
        paginator.read({"sources": [], "warehouses": [], "warehousesPagination": {"current": "w1", "next": "w1"}})

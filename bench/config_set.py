"""The configuration set of benchmark 4: the streams dlt's declarative `rest_api` source can
express as declared, derived from `segment_assets/streams.py`, and the request plan that the
dlt job and the bare client are given (so neither imports segment_assets while timed).

In: configuration streams (not time-based) whose records are a list under one data key, read
either at workspace level or once per row of one parent stream that is itself in the set, the
parent giving exactly one parameter from one of its fields (dlt's `resolve` parameter), paged
with `pagination[count]`/`pagination[cursor]` or not at all.

Out, and why:
- single objects, not lists (getWorkspace, getSource, getRegulation, the warehouse connection
  state and schedule, the source's schema settings and live plugin);
- fixed-value fan-outs (`listFunctions` per resourceType, supported destinations per audience
  type), which need one resource per value, and their children;
- two paginations in one response (`listCredentialConsumers`: sources and warehouses, each
  with its own cursor);
- a map instead of a list (`listSupportedDestinationsFromAudience`);
- children taking two or more parameters from their parent (audience children: space and
  audience ids; selective syncs: warehouse and source; the space-schema properties and sample
  values; reverse-ETL statuses: model and subscription) or only some parent rows (insert
  function instances: INSERT_* functions only);
- time-based streams (partition windows).
"""

from __future__ import annotations

from typing import Any


def _is_list(stream: Any) -> bool:
    from segment_assets.api import spec

    if stream.data_key is None or isinstance(stream.data_key, tuple):
        return False
    prop = spec.properties(stream.operation.data_schema).get(stream.data_key)
    return prop is not None and spec.resolve(prop).get("type") == "array"


def classify() -> tuple[list[str], dict[str, str]]:
    """(streams in the set, in declaration order; stream -> why it is out)."""
    from segment_assets.api.streams import Paging, materialized_streams

    chosen: list[str] = []
    out: dict[str, str] = {}
    for s in materialized_streams():
        why = None
        if s.windowing:
            why = "time-based"
        elif s.fan_out:
            why = "fan-out over fixed values"
        elif s.paging is Paging.PER_KEY:
            why = "two paginations in one response"
        elif s.map_key_column:
            why = "a map, not a list"
        elif not _is_list(s):
            why = "a single object, not a list"
        elif s.parent and (len(s.parent.params) != 1 or s.parent.where):
            why = "several parameters from the parent, or a filtered parent"
        elif s.parent and s.parent.stream not in chosen:
            why = f"its parent {s.parent.stream} is out"
        if why is None:
            chosen.append(s.name)
        else:
            out[s.name] = why
    return chosen, out


def plan(names: list[str]) -> list[dict[str, Any]]:
    """What a generic REST client needs to read each stream: path, records, paging, parent."""
    from segment_assets.api.streams import STREAMS, Paging

    out = []
    for name in names:
        s = STREAMS[name]
        parent = None
        if s.parent:
            ((param, column),) = s.parent.params.items()
            if "_" in column:
                raise ValueError(f"{name}: parent column {column!r} is not an API field name")
            parent = {"resource": s.parent.stream, "param": param, "field": column}
        paged = s.paging in (Paging.CURSOR, Paging.SINGLE)
        out.append(
            {
                "name": name,
                "path": s.path.lstrip("/"),
                "data_key": s.data_key,
                "page_size": min(1000, s.max_page_size) if paged else None,
                "follows_cursor": s.paging is Paging.CURSOR,
                "accept": s.operation.media_type,
                "query": dict(s.query),
                "parent": parent,
            }
        )
    return out

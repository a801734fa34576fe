"""The Segment Public API v73 OpenAPI document, read once, and what streams derive from it.

The document (`openapi-v73-get.json`, shipped as package data) is the single source for
each operation's path, stability, per-endpoint rate limit, feature gate and response
schema; stream declarations name an operationId and take the rest from here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

SPEC_FILE = "openapi-v73-get.json"

MEDIA_TYPES = {
    "v1": "application/vnd.segment.v1+json",
    "beta": "application/vnd.segment.v1beta+json",
    "alpha": "application/vnd.segment.v1alpha+json",
}


@cache
def document() -> dict[str, Any]:
    with resources.files("segment_assets.api").joinpath(SPEC_FILE).open("rb") as f:
        return json.load(f)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    path: str
    tag: str
    stability: str
    media_type: str
    rate_limit_per_minute: float | None
    feature_gate: str | None
    parameters: tuple[dict[str, Any], ...]
    data_schema: dict[str, Any]

    def parameter(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.parameters if p["name"] == name), None)

    @property
    def required_query(self) -> tuple[str, ...]:
        return tuple(p["name"] for p in self.parameters if p["in"] == "query" and p.get("required"))

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in schema:
            schema = document()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        elif len(schema.get("allOf", ())) == 1:  # the SDK's way of writing a nullable $ref
            schema = schema["allOf"][0]
        else:
            return schema


@cache
def operations() -> dict[str, Operation]:
    ops: dict[str, Operation] = {}
    for path, item in document()["paths"].items():
        get = item.get("get")
        if not get:
            continue
        envelope = resolve(get["responses"]["200"]["content"]["application/json"]["schema"])
        rate = get.get("x-rate-limit")
        per_minute = None
        if rate:
            per_minute = rate["requests"] * (60.0 if rate.get("per") == "second" else 1.0)
        stability = get.get("x-stability", "v1")
        ops[get["operationId"]] = Operation(
            operation_id=get["operationId"],
            path=path,
            tag=(get.get("tags") or ["Other"])[0],
            stability=stability,
            media_type=MEDIA_TYPES[stability],
            rate_limit_per_minute=per_minute,
            feature_gate=get.get("x-feature-gate"),
            parameters=tuple(get.get("parameters", ())),
            data_schema=resolve(envelope["properties"]["data"]),
        )
    return ops


def operation(operation_id: str) -> Operation:
    try:
        return operations()[operation_id]
    except KeyError:
        raise KeyError(f"operationId {operation_id!r} is not a GET in {SPEC_FILE}") from None


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    return _CAMEL.sub("_", name).replace("-", "_").replace(".", "_").lower()


# Time fields. The v73 document gives almost none of them a `format`, so they are recognised by
# name, a rule checked against every property of the document and against what the API sends
# (ISO-8601 strings such as `2026-11-02T10:00:00.000Z`):
#   - strings named `*At` (createdAt, updatedAt, deployedAt, deprecatedAt, finishedAt,
#     startedAt, lastSeenAt), `*Time` (startTime, endTime), `time`, `timestamp`, `start`, `end`;
#   - strings with `format: date-time`;
#   - numbers named periodStart / periodEnd: unix seconds (their descriptions say so).
# Listed exceptions, recognised by name although the rule above misses them:
TIME_FIELD_EXCEPTIONS: frozenset[str] = frozenset(
    {
        "nextExecution",  # audience schedules: "The next scheduled execution time (RFC3339)."
    }
)
# ... and names the rule would catch that are not times (none in v73; kept for the next version).
NOT_TIME_FIELDS: frozenset[str] = frozenset()
_TIME_NAME = re.compile(r"(?:[a-z0-9]At|[a-z0-9]Time)$|^(?:time|timestamp|start|end)$")
UNIX_SECONDS_FIELDS: frozenset[str] = frozenset({"periodStart", "periodEnd"})


def is_time_field(name: str | None, schema: dict[str, Any]) -> bool:
    """Whether a scalar property holds a point in time (lands as TIMESTAMPTZ)."""
    kind = schema.get("type")
    if not name or name in NOT_TIME_FIELDS:
        return kind == "string" and schema.get("format") == "date-time"
    if kind == "string":
        return schema.get("format") == "date-time" or name in TIME_FIELD_EXCEPTIONS or bool(_TIME_NAME.search(name))
    return kind in ("number", "integer") and name in UNIX_SECONDS_FIELDS


def column_type(schema: dict[str, Any], name: str | None = None) -> str:
    """DuckDB type for a JSON-schema property named `name`: scalars map to SQL types (times to
    TIMESTAMPTZ, see `is_time_field`); objects, arrays and unions stay JSON so nested shapes that
    differ between versions never break a load."""
    schema = resolve(schema)
    kind = schema.get("type")
    if "anyOf" in schema or "oneOf" in schema or kind in ("object", "array") or kind is None:
        return "JSON"
    if is_time_field(name, schema):
        return "TIMESTAMPTZ"
    return {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}[kind]


def description(schema: dict[str, Any] | None) -> str:
    """A property's description; a `$ref` property takes its target's (the SDK puts it there)."""
    if not schema:
        return ""
    text = schema.get("description") or resolve(schema).get("description") or ""
    return " ".join(text.split())


def properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resolve(schema).get("properties", {})


def field_names(schema: dict[str, Any]) -> frozenset[str]:
    """Every field name a record of `schema` may carry: its properties and those of each
    alternative it composes (`$ref`, `allOf`, `oneOf`, `anyOf`, an array's `items`), so a field
    one shape of a union documents is documented. The schema-drift check compares against this."""
    names: set[str] = set()
    pending, visited = [schema], set()
    while pending:
        current = pending.pop()
        ref = current.get("$ref")
        if ref:
            if ref not in visited:
                visited.add(ref)
                pending.append(document()["components"]["schemas"][ref.rsplit("/", 1)[-1]])
            continue
        names.update(current.get("properties", {}))
        for combinator in ("allOf", "oneOf", "anyOf"):
            pending.extend(current.get(combinator, ()))
        if current.get("type") == "array" and isinstance(current.get("items"), dict):
            pending.append(current["items"])
    return frozenset(names)

"""The GET operations of the bundled OpenAPI document, indexed for routing and serving."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import unquote

SCHEMA_PREFIX = "#/components/schemas/"


@dataclass(frozen=True)
class Operation:
    operation_id: str
    path: str
    pattern: re.Pattern[str]
    path_params: tuple[str, ...]
    media_types: tuple[str, ...]
    stability: str
    feature_gate: str | None
    rate_limit_per_minute: int | None
    required_query: tuple[str, ...]
    array_query: frozenset[str]
    query_enums: dict[str, tuple[str, ...]]
    response_schema: str  # e.g. ListSourcesV1Output (the `data` object)
    data_properties: dict[str, dict[str, Any]]
    data_required: tuple[str, ...]
    pagination_input: str | None  # schema name of the `pagination` query param
    pagination_output: str | None  # schema name of data.pagination
    list_key: str | None  # the array (or map) property of `data`, if any
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def media_type(self) -> str:
        return self.media_types[0]


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref[len(SCHEMA_PREFIX) :] if ref else None


class ApiSpec:
    """Loads openapi-v73-get.json once and answers routing and schema questions."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas: dict[str, dict[str, Any]] = document["components"]["schemas"]
        self.operations: dict[str, Operation] = {}
        for path, item in document["paths"].items():
            op = self._operation(path, item["get"])
            self.operations[op.operation_id] = op
        # Literal segments must win over parameters (/audiences/previews/{id} vs /audiences/{id}/...):
        # try paths with more literal characters first.
        self._routes = sorted(
            self.operations.values(),
            key=lambda o: (-len(re.sub(r"\{[^}]+\}", "", o.path)), o.path),
        )
        self._exact = {o.path: o for o in self.operations.values() if not o.path_params}

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[ref_name(schema)]  # type: ignore[index]
        return schema

    def _operation(self, path: str, get: dict[str, Any]) -> Operation:
        params = {p["name"]: p for p in get.get("parameters", [])}
        path_params = tuple(re.findall(r"\{([^}]+)\}", path))
        regex = "^" + re.sub(r"\\\{([^}]+)\\\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(path)) + "/?$"
        if path == "/":
            regex = "^/$"
        content = get["responses"]["200"]["content"]
        envelope = self.schemas[ref_name(next(iter(content.values()))["schema"])]  # type: ignore[index]
        data_ref = envelope["properties"]["data"]
        data_name = ref_name(data_ref) or ""
        data = self.resolve(data_ref)
        props = data.get("properties", {})
        list_key = None
        for key, prop in props.items():
            if not key.endswith("agination") and self.resolve(prop).get("type") == "array":
                list_key = key
                break
        if list_key is None and "pagination" in props:
            # listSupportedDestinationsFromAudience: a paginated free-form map.
            list_key = next(k for k in props if k != "pagination")
        pag_in = None
        if "pagination" in params:
            pag_in = ref_name(params["pagination"]["schema"])
        elif "warehousesPagination" in params:
            pag_in = "PaginationInput"
        pag_out = None
        for key in ("pagination", "sourcesPagination"):
            if key in props:
                pag_out = ref_name(props[key])
        query = {n: p for n, p in params.items() if p["in"] == "query"}
        rate = get.get("x-rate-limit")
        return Operation(
            operation_id=get["operationId"],
            path=path,
            pattern=re.compile(regex),
            path_params=path_params,
            media_types=tuple(get["x-media-types"]),
            stability=get["x-stability"],
            feature_gate=get.get("x-feature-gate"),
            rate_limit_per_minute=int(rate["requests"]) if rate else None,
            required_query=tuple(n for n, p in query.items() if p.get("required")),
            array_query=frozenset(n for n, p in query.items() if self.resolve(p["schema"]).get("type") == "array"),
            query_enums={
                n: tuple(self.resolve(p["schema"])["enum"])
                for n, p in query.items()
                if "enum" in self.resolve(p["schema"])
            },
            response_schema=data_name,
            data_properties=props,
            data_required=tuple(data.get("required", ())),
            pagination_input=pag_in,
            pagination_output=pag_out,
            list_key=list_key,
            parameters=params,
        )

    def match(self, path: str) -> tuple[Operation, dict[str, str]] | None:
        op = self._exact.get(path) or self._exact.get(path.rstrip("/") or "/")
        if op is not None:
            return op, {}
        for op in self._routes:
            if not op.path_params:
                continue
            m = op.pattern.match(path)
            if m:
                return op, {k: unquote(v) for k, v in m.groupdict().items()}
        return None

    def item_schema(self, op: Operation, key: str | None = None) -> dict[str, Any] | None:
        """The schema of one item of the operation's list (or of its single object)."""
        key = key or op.list_key
        if key is None:
            objects = [
                k for k in op.data_required if "$ref" in op.data_properties[k] or "allOf" in op.data_properties[k]
            ]
            if not objects:
                return None
            key = objects[0]
        prop = op.data_properties[key]
        if "allOf" in prop:
            prop = prop["allOf"][0]
        resolved = self.resolve(prop)
        if resolved.get("type") == "array":
            return self.resolve(resolved["items"])
        return resolved


@lru_cache(maxsize=1)
def load_spec() -> ApiSpec:
    text = resources.files("segment_assets.api").joinpath("openapi-v73-get.json").read_text(encoding="utf-8")
    return ApiSpec(json.loads(text))

"""Request semantics of the Public API: auth, feature gates, rate limits, validation,
pagination, the response envelope and faults. Transport-free: ``server.py`` feeds it
parsed requests and writes back its ``Response``."""

from __future__ import annotations

import base64
import binascii
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from .endpoints import ENDPOINTS, Listing
from .errors import ApiError, invalid, not_found
from .faults import STATUS_FAULTS, Fault, FaultPlan, break_field
from .ratelimit import RateLimiter
from .spec import ApiSpec, Operation
from .workspace import Workspace

ERROR_MEDIA_TYPE = "application/json"
PAGE_LIMITS = {  # pagination input schema -> (max count, default count)
    "PaginationInput": (1000, 200),
    "ListAudiencesPaginationInput": (200, 200),
    "ListFiltersPaginationInput": (10, 10),
}
# Simulator-only control endpoints (e.g. POST /__simulator/mutate). No Segment path starts
# with "/__", so they cannot shadow an operation.
CONTROL_PREFIX = "/__simulator/"
MAX_CONTROL_BODY = 64 * 1024
RETL_SYNCS = "listReverseETLSyncStatusesFromModelAndSubscriptionId"
CREDENTIAL_CONSUMERS = "listCredentialConsumers"
_KEY_PART = re.compile(r"\[([^\]]*)\]|\.([^.\[]+)")


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = ERROR_MEDIA_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    hold_seconds: float = 0.0  # "timeout" fault: wait this long before answering
    cut_at: int | None = None  # "reset" fault: send this many body bytes, then drop the connection


class Stats:
    """Request counters. Attribute access or ``stats["total"]``; ``as_dict()`` for a snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.by_operation: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.total = 0
        self.rate_limited = 0
        self.last_accept: dict[str, str | None] = {}

    def record(self, operation_id: str, status: int, accept: str | None) -> None:
        with self._lock:
            self.total += 1
            self.by_operation[operation_id] += 1
            self.by_status[status] += 1
            if status == 429:
                self.rate_limited += 1
            self.last_accept[operation_id] = accept

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_operation": dict(self.by_operation),
                "by_status": dict(self.by_status),
                "rate_limited": self.rate_limited,
                "last_accept": dict(self.last_accept),
            }

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]


def parse_query(text: str) -> dict[str, Any]:
    """Decode deepObject (`pagination[count]`, `pagination.count`) and array (`groupBy.0`,
    `groupBy[]`, repeated keys) parameters into nested dicts and lists."""
    out: dict[str, Any] = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        m = re.match(r"[^\[.]+", raw_key)
        if not m:
            continue
        name = m.group(0)
        parts = [p.group(1) if p.group(1) is not None else p.group(2) for p in _KEY_PART.finditer(raw_key[m.end() :])]
        if not parts:
            if name in out:
                prev = out[name]
                out[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                out[name] = value
            continue
        node = out.setdefault(name, {})
        if not isinstance(node, dict):
            node = out[name] = {"": node}
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            last = parts[-1]
            if last == "":
                last = str(sum(1 for k in node if k.isdigit() or k == ""))
            node[last] = value
    return out


def normalize_query(query: dict[str, Any]) -> dict[str, Any]:
    """Accept a query given as HTTP would send it (``{"pagination[count]": 5, "groupBy": [...]}``)
    or already nested (``{"pagination": {"count": 5}}``)."""
    pairs: list[tuple[str, str]] = []
    nested: dict[str, Any] = {}
    for key, value in query.items():
        if isinstance(value, dict):
            nested[key] = value
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return {**parse_query(urlencode(pairs)), **nested}


def encode_cursor(offset: int, state: str | None = None) -> str:
    text = str(offset) if state is None else f"{offset}|{state}"
    return base64.b64encode(text.encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str | None]:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
        offset_text, _, state = text.partition("|")
        offset = int(offset_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("Invalid pagination cursor", "pagination.cursor") from None
    if offset < 0:
        raise invalid("Invalid pagination cursor", "pagination.cursor")
    return offset, state or None


def _count(value: Any, maximum: int, default: int, fld: str) -> int:
    if value is None or value == "":
        return default
    try:
        count = int(str(value))
    except ValueError:
        raise invalid(f"{fld} must be an integer between 1 and {maximum}", fld) from None
    if not 1 <= count <= maximum:
        raise invalid(f"{fld} must be between 1 and {maximum} (got {count})", fld)
    return count


def _slice(items: Any, a: int, b: int) -> list[Any]:
    if hasattr(items, "slice"):
        return items.slice(a, b)
    return list(items[a:b])


class Api:
    def __init__(
        self,
        spec: ApiSpec,
        workspace: Workspace,
        tokens: tuple[str, ...],
        faults: FaultPlan,
        limiter: RateLimiter,
        disabled_features: tuple[str, ...] = (),
        stats: Stats | None = None,
    ) -> None:
        self.spec = spec
        self.ws = workspace
        self.tokens = frozenset(tokens)
        self.faults = faults
        self.limiter = limiter
        known = {op.feature_gate for op in spec.operations.values() if op.feature_gate} | {"Audit Trail"}
        unknown = {f for f in disabled_features if f.lower() not in {k.lower() for k in known}}
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {', '.join(sorted(known))}")
        self.disabled = frozenset(f.lower() for f in disabled_features)
        self.stats = stats or Stats()
        # name -> handler(JSON body) -> `data` of the answer, served at POST CONTROL_PREFIX + name.
        self.controls: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}

    # ---- data, transport-free -----------------------------------------------------------------

    def data(self, op: Operation, path: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
        """The `data` object of a 200 response, after validation and pagination."""
        self._validate(op, query)
        result = ENDPOINTS[op.operation_id](self.ws, path, query)
        if not isinstance(result, Listing):
            return result
        if op.operation_id == CREDENTIAL_CONSUMERS:
            data: dict[str, Any] = {}
            for key in ("warehouses", "sources"):
                page, pagination = self._page(op, result.items[key], query.get(f"{key}Pagination"), None)
                data[key], data[f"{key}Pagination"] = page, pagination
            return data
        data = dict(result.extra)
        list_key = op.list_key
        assert list_key is not None  # handlers answer a Listing only for operations that return a list
        if op.pagination_output is None:  # unpaginated lists, and listRegulationsFromSource
            data[list_key] = _slice(result.items, 0, len(result.items))
            return data
        if op.operation_id == RETL_SYNCS:
            pagination = {"count": query.get("count"), "cursor": query.get("cursor")}
            page, data["pagination"] = self._page(op, result.items, pagination, result.state, (100, 10), "count")
        else:
            page, data["pagination"] = self._page(op, result.items, query.get("pagination"), result.state)
        if self.spec.resolve(op.data_properties[list_key]).get("type") == "object":
            data[list_key] = {item["id"]: item for item in page}  # listSupportedDestinationsFromAudience
        else:
            data[list_key] = page
        return data

    def items(
        self, operation_id: str, path_params: dict[str, str] | None = None, query: dict[str, Any] | None = None
    ) -> list[Any]:
        """Every item the operation serves for these params, unpaginated (see Simulator.items)."""
        op = self.spec.operations[operation_id]
        path = dict(path_params or {})
        query = normalize_query(dict(query or {}))
        self._validate(op, query)
        result = ENDPOINTS[operation_id](self.ws, path, query)
        if isinstance(result, Listing):
            if isinstance(result.items, dict):  # credential consumers
                return list(result.items["sources"]) + list(result.items["warehouses"])
            return _slice(result.items, 0, len(result.items))
        values = list(result.values())
        if len(values) == 1 and isinstance(values[0], dict):
            return [values[0]]
        return [result]

    def _validate(self, op: Operation, query: dict[str, Any]) -> None:
        for name in op.required_query:
            if query.get(name) in (None, "", [], {}):
                raise invalid(f'"{name}" is required', name)
        for name, allowed in op.query_enums.items():
            value = query.get(name)
            if isinstance(value, str) and value and value not in allowed:
                raise invalid(f'"{name}" must be one of {", ".join(allowed)}', name)

    def _page(
        self,
        op: Operation,
        items: Any,
        pagination: Any,
        state: str | None,
        limits: tuple[int, int] | None = None,
        fld: str = "pagination.count",
    ) -> tuple[list[Any], dict[str, Any]]:
        if pagination is not None and not isinstance(pagination, dict):
            raise invalid("pagination must be an object with count and cursor", "pagination")
        pagination = pagination or {}
        maximum, default = limits or PAGE_LIMITS.get(op.pagination_input or "PaginationInput", (1000, 200))
        count = _count(pagination.get("count"), maximum, default, fld)
        cursor = pagination.get("cursor")
        total = len(items)
        if op.pagination_output == "ListFiltersPaginationOutput":
            # listFiltersForSpace: the cursor is a plain numeric offset.
            try:
                offset = int(cursor) if cursor not in (None, "") else 0
            except ValueError:
                raise invalid("pagination.cursor must be a number", "pagination.cursor") from None
            out: dict[str, Any] = {"current": offset, "totalEntries": total}
            if offset + count < total:
                out["next"] = offset + count
            return _slice(items, offset, offset + count), out
        offset, cursor_state = decode_cursor(cursor) if cursor else (0, None)
        state = cursor_state or state
        out = {"current": encode_cursor(offset, state), "totalEntries": total}
        out["next"] = encode_cursor(offset + count, state) if offset + count < total else None
        if offset > 0 and op.pagination_output != "ForwardOnlyPaginationOutput":
            out["previous"] = encode_cursor(max(0, offset - count), state)
        return _slice(items, offset, offset + count), out

    # ---- HTTP semantics ---------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Response:
        parts = urlsplit(target)
        if parts.path.startswith(CONTROL_PREFIX):
            return self._control(method, parts.path[len(CONTROL_PREFIX) :], headers, body)
        accept = headers.get("accept")
        matched = self.spec.match(parts.path or "/")
        op_id = matched[0].operation_id if matched else "unknown"
        try:
            response = self._handle(method, parts.query, headers, matched)
        except ApiError as error:
            response = self._error(error)
        except Exception as error:  # a simulator bug: answer like the API would, and say so
            traceback.print_exc(file=sys.stderr)
            response = self._error(ApiError(500, f"Simulator error: {error!r}", type_="server-error"))
        self.stats.record(op_id, response.status, accept)
        return response

    def _handle(
        self, method: str, query_text: str, headers: dict[str, str], matched: tuple[Operation, dict[str, str]] | None
    ) -> Response:
        if matched is None:
            raise not_found("Resource")
        op, path = matched
        if method not in ("GET", "HEAD"):
            raise ApiError(405, f"{method} is not supported by the simulator", type_="method-not-allowed")
        token = self._token(headers.get("authorization"))
        fault = self.faults.next_fault(op.operation_id)
        if fault is not None and fault.kind in STATUS_FAULTS:
            raise self._status_fault(fault)
        if (
            op.feature_gate
            and op.feature_gate.lower() in self.disabled
            or (op.operation_id == "listAuditEvents" and "audit trail" in self.disabled)
        ):
            raise ApiError(
                403,
                f"Workspace needs to have the {op.feature_gate or 'Audit Trail'} feature enabled",
                type_="forbidden",
            )
        verdict = self.limiter.check(token, op.operation_id)
        if not verdict.allowed:
            raise ApiError(
                429,
                "Too many requests",
                headers=dict(verdict.headers()),
                data={"remainingPoints": 0, "msBeforeNext": verdict.ms_before_next, "consumedPoints": verdict.consumed},
            )
        query = parse_query(query_text)
        if op.operation_id == "listAuditEvents":
            cursor = (
                (query.get("pagination") or {}).get("cursor") if isinstance(query.get("pagination"), dict) else None
            )
            if cursor:
                query["__cursor_state"] = decode_cursor(cursor)[1]
        data = self.data(op, path, query)
        media_type = self._media_type(op, headers.get("accept"))
        response = Response(200, b"", media_type, verdict.headers())
        if fault is not None:
            data = self._body_fault(fault, op, data, query)
        response.body = orjson.dumps({"data": data})
        if fault is not None:
            self._wire_fault(fault, response)
        return response

    def _control(self, method: str, name: str, headers: dict[str, str], body: bytes) -> Response:
        """A control request: same bearer token as the API; no faults, rate limits or stats,
        which belong to the API traffic a test measures."""
        try:
            self._token(headers.get("authorization"))
            handler = self.controls.get(name)
            if handler is None:
                known = ", ".join(f"POST {CONTROL_PREFIX}{n}" for n in sorted(self.controls)) or "none"
                raise ApiError(404, f"No simulator control {name!r}; known: {known}", type_="not-found")
            if method != "POST":
                raise ApiError(405, f"Simulator controls take POST, not {method}", type_="method-not-allowed")
            if len(body) > MAX_CONTROL_BODY:
                raise invalid(f"Control request bodies are at most {MAX_CONTROL_BODY} bytes", "body")
            try:
                payload = orjson.loads(body) if body.strip() else {}
            except orjson.JSONDecodeError:
                raise invalid('The body must be a JSON object, e.g. {"change": "rename_source"}', "body") from None
            if not isinstance(payload, dict):
                raise invalid('The body must be a JSON object, e.g. {"change": "rename_source"}', "body")
            try:
                data = handler(payload)
            except (KeyError, ValueError) as error:
                raise invalid(str(error.args[0] if error.args else error), "body") from None
            return Response(200, orjson.dumps({"data": data}))
        except ApiError as error:
            return self._error(error)
        except Exception as error:  # a simulator bug: say so, like the API paths do
            traceback.print_exc(file=sys.stderr)
            return self._error(ApiError(500, f"Simulator error: {error!r}", type_="server-error"))

    def _token(self, authorization: str | None) -> str:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ApiError(401, "Missing bearer token in the Authorization header", type_="unauthorized")
        token = authorization[7:].strip()
        if token not in self.tokens:
            raise ApiError(401, "Invalid token", type_="unauthorized")
        return token

    @staticmethod
    def _media_type(op: Operation, accept: str | None) -> str:
        if accept:
            for candidate in op.media_types:
                if candidate in accept:
                    return candidate
        return op.media_type

    def _error(self, error: ApiError) -> Response:
        return Response(error.status, orjson.dumps(error.body()), ERROR_MEDIA_TYPE, list(error.headers.items()))

    def _status_fault(self, fault: Fault) -> ApiError:
        if fault.kind == "429":
            ms = int(fault.params.get("ms_before_next", 200))
            return ApiError(
                429,
                "Too many requests",
                data={"remainingPoints": 0, "msBeforeNext": ms, "consumedPoints": 1},
                headers={
                    "X-RateLimit-Consumed": "1",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": formatdate(time.time() + ms / 1000, usegmt=True),
                },
            )
        status = int(fault.kind)
        messages = {
            401: "Invalid token",
            403: "Forbidden",
            500: "Internal server error",
            502: "Bad gateway",
            503: "Service unavailable",
        }
        return ApiError(status, messages.get(status, "Injected fault"))

    def _body_fault(self, fault: Fault, op: Operation, data: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
        if fault.kind == "repeat_cursor":
            pagination = data.get("pagination")
            if isinstance(pagination, dict):
                data["pagination"] = {**pagination, "next": pagination["current"]}
        elif fault.kind in ("missing_field", "type_change"):
            key = op.list_key
            target = data.get(key) if key else None
            if key is None:
                objects = [v for v in data.values() if isinstance(v, dict)]
                target = objects[:1] or [data]
            elif isinstance(target, dict):
                target = list(target.values())
            target = [dict(item) if isinstance(item, dict) else item for item in target or []]
            fld = fault.params.get("field") or self._first_required(op)
            break_field(target, fld, fault.kind)
            if key is None:
                for k, v in list(data.items()):
                    if isinstance(v, dict):
                        data[k] = target[0]
                        break
                else:
                    data = target[0]
            elif isinstance(data.get(key), dict):
                data[key] = {item.get("id", str(n)): item for n, item in enumerate(target)}
            else:
                data[key] = target
        return data

    def _first_required(self, op: Operation) -> str:
        schema = self.spec.item_schema(op)
        required = (schema or {}).get("required") or list((schema or {}).get("properties", {}))
        return required[0] if required else "id"

    @staticmethod
    def _wire_fault(fault: Fault, response: Response) -> None:
        if fault.kind == "malformed":
            response.body = b'{"data": {"oops": <html>502 Bad Gateway</html>'
        elif fault.kind == "truncated":
            response.body = response.body[: max(1, len(response.body) // 2)]
        elif fault.kind == "reset":
            response.cut_at = max(1, len(response.body) // 2)
        elif fault.kind == "timeout":
            response.hold_seconds = float(fault.params.get("seconds", 30))

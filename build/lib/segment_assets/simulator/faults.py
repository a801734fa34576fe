"""Misbehaviour on demand: random faults at given rates, and deterministic one-shot injections."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from .generator import digest

FAULT_KINDS = (
    "429",
    "500",
    "502",
    "503",
    "401",
    "403",
    "timeout",
    "reset",
    "malformed",
    "truncated",
    "repeat_cursor",
    "missing_field",
    "type_change",
)
STATUS_FAULTS = frozenset({"429", "500", "502", "503", "401", "403"})


@dataclass
class Fault:
    kind: str
    operation_id: str | None = None
    times: int = 1
    params: dict[str, Any] = field(default_factory=dict)


def parse_fault_spec(spec: str | dict[str, float] | None) -> list[tuple[str, float, dict[str, Any]]]:
    """``"429:0.05,500:0.1,timeout:0.02:seconds=2"`` -> [(kind, rate, params), ...]."""
    if not spec:
        return []
    if isinstance(spec, dict):
        items = [f"{k}:{v}" for k, v in spec.items()]
    else:
        items = [part.strip() for part in spec.split(",") if part.strip()]
    out = []
    for item in items:
        kind, _, rest = item.partition(":")
        rate_text, *options = rest.split(":") if rest else ("",)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        try:
            rate = float(rate_text)
        except ValueError:
            raise ValueError(f"fault {kind!r} needs a rate, e.g. {kind}:0.05") from None
        if not 0 <= rate <= 1:
            raise ValueError(f"fault rate for {kind!r} must be within [0, 1]")
        params: dict[str, Any] = {}
        for option in options:
            key, _, value = option.partition("=")
            params[key] = float(value) if value.replace(".", "", 1).isdigit() else value
        out.append((kind, rate, params))
    if sum(rate for _, rate, _ in out) > 1:
        raise ValueError("fault rates add up to more than 1")
    return out


class FaultPlan:
    """Decides, per request, which fault (if any) to apply. Injected faults come first."""

    def __init__(self, seed: int, spec: str | dict[str, float] | None = None) -> None:
        self.rates = parse_fault_spec(spec)
        self._rng = random.Random(digest(seed, "faults"))
        self._queue: list[Fault] = []
        self._lock = threading.Lock()

    def inject(self, kind: str, operation_id: str | None = None, times: int = 1, **params: Any) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        fault = Fault(kind, operation_id, times, params)
        with self._lock:
            self._queue.append(fault)
        return fault

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def next_fault(self, operation_id: str) -> Fault | None:
        with self._lock:
            for fault in self._queue:
                if fault.operation_id in (None, operation_id):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._queue.remove(fault)
                    return Fault(fault.kind, operation_id, 1, dict(fault.params))
            if not self.rates:
                return None
            draw = self._rng.random()
        acc = 0.0
        for kind, rate, params in self.rates:
            acc += rate
            if draw < acc:
                return Fault(kind, operation_id, 1, dict(params))
        return None


def break_field(items: list[Any], fld: str, mode: str) -> None:
    """missing_field drops ``fld`` from every item; type_change swaps its JSON type."""
    for item in items:
        if not isinstance(item, dict) or fld not in item:
            continue
        if mode == "missing_field":
            del item[fld]
        else:
            item[fld] = changed_type(item[fld])


def changed_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return {"items": value}
    if isinstance(value, dict):
        return [value]
    return 0

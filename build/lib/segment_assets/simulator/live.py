"""A live workspace: configuration changes as a person editing it in the Segment app makes them.

Every change goes through ``Workspace.create/update/delete``, the same mutations tests make,
so the object is served changed at once and the matching audit event ("Source Modified",
"Label Created", "Tracking Plan Modified" for a new rule...) is appended with the simulator
clock's time. ``LiveLoop`` applies a few changes every interval (`simulate --live`); the
control endpoint ``POST /__simulator/mutate`` applies one on demand, so a test need not wait.

Changes are seeded: the n-th change of a simulator picks the same kind and target on every
run (as long as nothing else mutated the workspace in between).
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from .generator import EVENT_NAMES, SplitMix, iso, rng_for, words
from .workspace import Row, Workspace

# Applied in turn when no change is named; create_label comes before delete_label so that
# the live mode deletes the labels it created rather than the seeded ones.
CHANGES = (
    "rename_source",
    "toggle_destination",
    "create_label",
    "update_destination_filter",
    "add_tracking_plan_rule",
    "delete_label",
)
LABEL_KEYS = ("environment", "team", "region", "product")

Applied = tuple[str, str, str, dict[str, Any]]  # (kind, ident, action, object after the change)


class LiveChanges:
    """Applies one named (or the next) configuration change and describes it."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self._n = 0
        self._labels: list[str] = []  # idents of the labels this object created, oldest first

    def apply(self, change: str | None = None) -> dict[str, Any]:
        """Apply ``change`` (one of ``CHANGES``; default: the next in turn) and return what
        changed: the change, the workspace kind, the object's id and state, and its audit event."""
        if change is not None and change not in CHANGES:
            raise ValueError(f"unknown change {change!r}; known: {', '.join(CHANGES)}")
        with self.ws.lock:  # one critical section: last_audit_event belongs to this change
            n = self._n
            self._n += 1
            name = change or CHANGES[n % len(CHANGES)]
            kind, ident, action, obj = getattr(self, f"_{name}")(rng_for(self.ws.seed, "live", n), n)
            event = dict(self.ws.last_audit_event or {})
        return {
            "change": name,
            "kind": kind,
            "id": ident,
            "action": action,
            "object": obj,
            "auditEventId": event.get("id"),
            "type": event.get("type"),
            "resourceType": event.get("resourceType"),
            "resourceId": event.get("resourceId"),
            "resourceName": event.get("resourceName"),
            "timestamp": event.get("timestamp"),
        }

    # ---- the changes -------------------------------------------------------------------------

    def _pick(self, kind: str, rng: SplitMix) -> Row | None:
        rows = self.ws.rows(kind)
        return rows[rng.randrange(len(rows))] if rows else None

    def _rename_source(self, rng: SplitMix, n: int) -> Applied:
        row = self._pick("sources", rng)
        if row is None:
            return self._create_label(rng, n)
        name = f"{row.obj['metadata']['name']} {words(rng, 1).title()} {n}"
        return "sources", row.ident, "Modified", self.ws.update("sources", row.ident, name=name)

    def _toggle_destination(self, rng: SplitMix, n: int) -> Applied:
        row = self._pick("destinations", rng)
        if row is None:
            return self._create_label(rng, n)
        obj = self.ws.update("destinations", row.ident, enabled=not row.obj.get("enabled", True))
        return "destinations", row.ident, "Modified", obj

    def _create_label(self, rng: SplitMix, n: int) -> Applied:
        key, value = LABEL_KEYS[n % len(LABEL_KEYS)], f"live-{words(rng, 1)}-{n}"
        obj = self.ws.create("labels", key=key, value=value, description=f"Added by the live workspace (change {n})")
        self._labels.append(f"{key}:{value}")
        return "labels", self._labels[-1], "Created", obj

    def _delete_label(self, rng: SplitMix, n: int) -> Applied:
        # The live labels first, newest first; a seeded one only if none is left, and never the last label.
        while self._labels and self.ws.get_row("labels", self._labels[-1]) is None:
            self._labels.pop()  # deleted by someone else meanwhile
        if self._labels:
            ident = self._labels.pop()
        elif len(self.ws.rows("labels")) > 1:
            ident = self._pick("labels", rng).ident  # type: ignore[union-attr]
        else:
            return self._create_label(rng, n)
        obj = self.ws.get("labels", ident) or {}
        self.ws.delete("labels", ident)
        return "labels", ident, "Deleted", obj

    def _update_destination_filter(self, rng: SplitMix, n: int) -> Applied:
        row = self._pick("destination_filters", rng)
        if row is None:
            return self._create_label(rng, n)
        event = EVENT_NAMES[rng.randrange(len(EVENT_NAMES))]
        obj = self.ws.update(
            "destination_filters",
            row.ident,
            enabled=not row.obj.get("enabled", True),
            title=f"Drop {event}",
            updatedAt=iso(self.ws.now()),
            **{"if": f"event = '{event}'"},
        )
        return "destination_filters", row.ident, "Modified", obj

    def _add_tracking_plan_rule(self, rng: SplitMix, n: int) -> Applied:
        plan = self._pick("tracking_plans", rng)
        if plan is None:
            return self._create_label(rng, n)
        now = iso(self.ws.now())
        obj = self.ws.create(
            "rules",
            trackingPlanId=plan.ident,
            type="TRACK",
            key=f"{words(rng).title()} {n}",
            createdAt=now,
            updatedAt=now,
            version=1,
        )
        ident = f"TRACK:{obj['key']}"
        if "deprecatedAt" in obj:  # the seeded generator deprecates every 11th rule; a new one is not
            row = self.ws.get_row("rules", ident, plan.pkey + (plan.ident,))
            obj.pop("deprecatedAt")
            row.obj = {k: v for k, v in row.obj.items() if k != "deprecatedAt"}  # type: ignore[union-attr]
        return "rules", ident, "Created", obj


class LiveLoop:
    """A daemon thread applying ``per_tick`` changes every ``interval`` seconds until stopped."""

    def __init__(
        self,
        changes: LiveChanges,
        interval: float,
        per_tick: int = 3,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the live interval must be a positive number of seconds, got {interval}")
        if per_tick < 1:
            raise ValueError(f"live changes per interval must be at least 1, got {per_tick}")
        self.changes = changes
        self.interval = interval
        self.per_tick = per_tick
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="segment-simulator-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for _ in range(self.per_tick):
                try:
                    result = self.changes.apply()
                except Exception:  # a simulator bug must not end the live mode silently
                    traceback.print_exc(file=sys.stderr)
                    continue
                if self.on_change is not None:
                    self.on_change(result)

"""The seeded, mutable Segment workspace behind the simulator.

Every collection ("kind") is declared once in ``KINDS``: its schema, its base size at
scale 1, its parent kind and a finisher that sets the ids, names, foreign keys and
timestamps the schema-driven generator cannot know. Rows are generated lazily, kind by
kind, on first access; row ``i`` of a kind depends only on (seed, kind, i) and the rows
of the kinds it refers to. Audit events are not stored at all: event ``i`` is computed
on demand, so a workspace with millions of them starts instantly.

Three clocks date the rows, so that a fresh simulator (every `segment-assets demo` starts
one) serves what the previous one served and a sync sees only changes that happened:

- ``epoch`` (``CONFIG_EPOCH``, 2024-01-01 UTC, or the start of the clock's day if a test
  fixes an earlier clock): every configuration object's createdAt, updatedAt, deployedAt...
  is dated back from it. Configuration objects are byte-identical on every start, on any day.
- ``today`` (the start of the anchor's UTC day): histories read as non-partitioned tables
  with a watermark (warehouse syncs every 12 h, reverse-ETL sync statuses every 6 h), the
  regulations the API serves for 90 days only (one per source every 40 days), the
  profiles' lastSeenAt and the audiences' nextExecution. History rows are functions of
  absolute time slots before ``today``: two starts on one day serve identical rows, and a
  later day adds the new slots on top while the rows both days serve stay identical.
- ``anchor`` (the start-up time, or ``Simulator(now=...)``): time-based data read by
  partition (audit events over the last 90 days, events volume, delivery metrics, usage),
  so yesterday's partition always has data. Mutations are stamped with the simulator clock,
  which runs on from ``anchor``.
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .audit import AuditTrail
from .generator import (
    EVENT_NAMES,
    FIRST_NAMES,
    LAST_NAMES,
    WORDS,
    SchemaGenerator,
    digest,
    free_form,
    iso,
    mix,
    rng_for,
    segment_id,
    slugify,
    words,
)
from .spec import ApiSpec, load_spec

SOURCE_CATALOG = (
    "JavaScript",
    "iOS",
    "Android",
    "Node.js",
    "HTTP API",
    "Python",
    "Ruby",
    "Go",
    "Java",
    "PHP",
    "React Native",
    "Flutter",
    "Kotlin",
    "Swift",
    "Salesforce",
    "Stripe",
    "Zendesk",
    "HubSpot",
    "Intercom",
    "Twilio",
    "SendGrid",
    "Mailchimp",
    "Shopify",
    "Braze (Source)",
    "Iterable (Source)",
    "Snowflake",
    "BigQuery",
    "Redshift",
    "Databricks",
    "Postgres",
    ".NET",
    "Clojure",
    "AMP",
    "Xamarin",
    "Unity",
    "Roku",
    "Facebook Lead Ads",
    "Google Ads",
    "Marketo",
    "Zuora",
)
DESTINATION_CATALOG = (
    "Amplitude",
    "Mixpanel",
    "Google Analytics 4",
    "Braze",
    "Iterable",
    "Customer.io",
    "Intercom",
    "HubSpot",
    "Salesforce",
    "Facebook Conversions API",
    "Google Ads Conversions",
    "Snapchat Conversions",
    "TikTok Conversions",
    "Webhooks",
    "Amazon S3",
    "Google Cloud Storage",
    "Kafka",
    "Amazon Kinesis",
    "Slack",
    "Zendesk",
    "FullStory",
    "Hotjar",
    "Optimizely",
    "LaunchDarkly",
    "Heap",
    "Pendo",
    "Klaviyo",
    "Mailchimp",
    "SendGrid Marketing Campaigns",
    "Twilio Engage",
    "LinkedIn Conversions API",
    "Pinterest Conversions API",
    "Reddit Conversions API",
    "Bing Ads",
    "Criteo",
    "Appsflyer",
    "Adjust",
    "Branch",
    "Airship",
    "OneSignal",
    "Vero",
    "Autopilot",
    "Marketo Static Lists",
    "Pardot",
    "Responsys",
    "Eloqua",
    "Sprig",
    "Qualtrics",
    "Delighted",
    "Chameleon",
    "Userpilot",
    "Gainsight PX",
    "Totango",
    "ChurnZero",
    "Vitally",
    "Planhat",
    "June",
    "PostHog",
    "Statsig",
    "Split",
)
WAREHOUSE_CATALOG = (
    "Snowflake",
    "BigQuery",
    "Redshift",
    "Postgres",
    "Databricks",
    "Azure Synapse Analytics",
    "IBM Db2",
    "Segment Data Lakes",
)
ROLE_NAMES = (
    "Workspace Owner",
    "Workspace Member",
    "Source Admin",
    "Source Read-only",
    "Engage User",
    "Tracking Plan Admin",
    "Unify Read-only",
    "Entities Admin",
)
FUNCTION_TYPES = ("SOURCE", "DESTINATION", "INSERT_SOURCE", "INSERT_DESTINATION", "INSERT_TRANSFORMATION")
TRAIT_NAMES = (
    "email",
    "first_name",
    "last_name",
    "plan",
    "company",
    "created_at",
    "country",
    "city",
    "lifetime_value",
    "orders_count",
    "last_seen",
    "phone",
    "industry",
    "employees",
    "title",
)
PROPERTY_NAMES = (
    "order_id",
    "revenue",
    "currency",
    "product_id",
    "sku",
    "category",
    "price",
    "quantity",
    "coupon",
    "url",
    "path",
    "referrer",
    "search_query",
    "plan_name",
    "context.app.version",
)
COLLECTIONS = ("identifies", "tracks", "pages", "screens", "groups", "users", "accounts", "order_completed")

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Configuration objects (createdAt, updatedAt, deployedAt...) are dated back from this fixed
# epoch rather than from the clock, so every start serves them byte-identical and a sync
# sees no change that did not happen (see Workspace).
CONFIG_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
WAREHOUSE_SYNC_PERIOD = timedelta(hours=12)
RETL_SYNC_PERIOD = timedelta(hours=6)
REGULATION_PERIOD = timedelta(days=40)  # two per source: both within the API's 90-day window


@dataclass(slots=True)
class Row:
    obj: dict[str, Any]
    pkey: tuple[str, ...]  # ids of the ancestors, outermost first
    ident: str
    kind: str


@dataclass(slots=True)
class Ctx:
    """What a finisher may use besides the generated object."""

    ws: Workspace
    rng: Any
    i: int  # index among all rows of the kind
    j: int  # index among the rows of the same parent
    parent: Row | None
    p: int = 0  # index of the parent among its kind's rows
    parent_count: int = 1  # rows of the parent kind

    @property
    def parent_row(self) -> Row:
        """The parent of a child kind's row (only child kinds' finishers ask)."""
        if self.parent is None:
            raise ValueError("a top-level kind's finisher asked for its parent row")
        return self.parent


Finisher = Callable[[dict[str, Any], Ctx], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Kind:
    name: str
    schema: str | None  # generated first, then finished; None: the finisher builds the whole row
    base: int  # rows at scale 1; per parent row for child kinds
    parent: str | None = None
    parent_field: str | None = None  # create() keyword that names the parent id
    id_field: str | None = "id"
    resource_type: str | None = None  # audit-trail resourceType
    name_field: str = "name"
    finish: Finisher | None = None
    ident: Callable[[dict[str, Any]], str] | None = None
    spread: bool = True  # vary the per-parent count around `base`
    # Whether `scale` multiplies `base`. Top-level kinds scale; child kinds keep their
    # per-parent size (else totals grow as scale**depth) except the long histories.
    scales: bool | None = None

    @property
    def scaled(self) -> bool:
        return self.parent is None if self.scales is None else self.scales

    def ident_of(self, obj: dict[str, Any]) -> str:
        if self.ident is not None:
            return self.ident(obj)
        return str(obj[self.id_field])  # type: ignore[index]


def _pick(ws: Workspace, kind: str, n: int) -> Row:
    rows = ws.rows(kind)
    return rows[n % len(rows)]


# ---- finishers: ids, names, foreign keys, timestamps -------------------------------------------


def _history_slot(c: Ctx, period: timedelta, *key: object) -> tuple[int, datetime, int]:
    """(slot number since 1970, start time, hash) of the j-th newest whole ``period`` before
    the start of today. A history row is a function of its slot, not of its position, so two
    starts on one day serve the same rows and a later day only adds rows at the top."""
    slot = (c.ws.today - UNIX_EPOCH) // period - 1 - c.j
    h = digest(c.ws.seed, *key, slot)
    return slot, UNIX_EPOCH + period * slot + timedelta(minutes=h % 60), h


def _catalog(names: Sequence[str], prefix: str) -> Finisher:
    def finish(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
        name = names[c.i] if c.i < len(names) else f"{words(c.rng).title()} {c.i}"
        obj.update(
            id=segment_id(c.ws.seed, prefix, name),
            name=name,
            slug=slugify(name),
            description=f"{name} integration for Segment.",
        )
        if "status" in obj:
            obj["status"] = "PUBLIC" if c.rng.random() < 0.85 else "PUBLIC_BETA"
        obj["logos"] = {"default": f"https://cdn.segment.com/logos/{slugify(name)}.svg"}
        return obj

    return finish


def _destination_metadata(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    _catalog(DESTINATION_CATALOG, "destination-metadata")(obj, c)
    obj["previousNames"] = [obj["name"]]
    obj["categories"] = [c.rng.choice(("Analytics", "Advertising", "Email Marketing", "CRM", "Raw Data"))]
    for n, action in enumerate(obj.get("actions", ())):
        action["id"] = segment_id(obj["id"], "action", n)
        action["slug"] = slugify(f"{action['name']} {n}")
    return obj


def _source(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    meta = _pick(c.ws, "source_metadata", c.rng.randrange(1 << 30)).obj
    name = f"{meta['name']} {words(c.rng, 1).title()} {c.i}"
    labels = [r.obj for r in c.ws.rows("labels")]
    obj.update(
        id=segment_id(c.ws.seed, "source", c.i),
        name=name,
        slug=slugify(name),
        metadata=meta,
        workspaceId=c.ws.workspace_id,
        enabled=c.rng.random() < 0.9,
        writeKeys=[segment_id(c.ws.seed, "write-key", c.i, length=32)],
        labels=[labels[(c.i + k) % len(labels)] for k in range(c.i % 3)] if labels else [],
    )
    obj["settings"] = free_form(c.rng)
    return obj


def _destination(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    meta = _pick(c.ws, "destination_metadata", c.rng.randrange(1 << 30)).obj
    source = _pick(c.ws, "sources", c.i).obj  # every source gets at least one destination
    obj.update(
        id=segment_id(c.ws.seed, "destination", c.i),
        name=f"{meta['name']} ({source['name']})",
        enabled=c.rng.random() < 0.85,
        metadata=meta,
        sourceId=source["id"],
        settings=free_form(c.rng),
    )
    return obj


def _warehouse(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    meta = _pick(c.ws, "warehouse_metadata", c.i).obj
    obj.update(
        id=segment_id(c.ws.seed, "warehouse", c.i),
        metadata=meta,
        workspaceId=c.ws.workspace_id,
        enabled=True,
        settings={
            "name": f"{meta['slug']}-{c.i}",
            "database": "segment_events",
            "hostname": f"{meta['slug']}.example.net",
        },
    )
    return obj


def _tracking_plan(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    name = f"{words(c.rng).title()} Tracking Plan"
    created = c.ws.epoch - timedelta(days=c.rng.randint(100, 700))
    obj.update(
        id=f"tp_{segment_id(c.ws.seed, 'tracking-plan', c.i)}",
        name=name,
        slug=slugify(name),
        type="LIVE" if c.i % 4 != 3 else "RULE_LIBRARY",
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(days=c.rng.randint(1, 90))),
    )
    return obj


RULE_TYPES = ("TRACK", "TRACK", "TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN", "COMMON")


def _rule(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    rtype = RULE_TYPES[c.j % len(RULE_TYPES)] if c.j >= 3 else "TRACK"
    key = f"{EVENT_NAMES[c.j % len(EVENT_NAMES)]}" + (f" {c.j // len(EVENT_NAMES)}" if c.j >= len(EVENT_NAMES) else "")
    created = c.ws.epoch - timedelta(days=c.rng.randint(30, 400))
    obj.update(
        type=rtype,
        key=key if rtype in ("TRACK", "PAGE", "SCREEN") else f"{rtype.title()} {c.j}",
        jsonSchema={
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "properties": {
                    "type": "object",
                    "required": [PROPERTY_NAMES[c.j % 10]],
                    "properties": {PROPERTY_NAMES[c.j % 10]: {"type": "string"}},
                }
            },
        },
        version=1 + c.j % 3,
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(days=c.rng.randint(0, 20))),
    )
    if c.j % 11 == 10:
        obj["deprecatedAt"] = iso(created + timedelta(days=25))
    return obj


def _permissions(c: Ctx) -> list[dict[str, Any]]:
    role = _pick(c.ws, "roles", c.i).obj
    return [
        {"roleName": role["name"], "roleId": role["id"], "resources": [{"id": c.ws.workspace_id, "type": "WORKSPACE"}]}
    ]


def _user(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    first, last = FIRST_NAMES[c.i % len(FIRST_NAMES)], LAST_NAMES[(c.i * 7) % len(LAST_NAMES)]
    obj.update(
        id=segment_id(c.ws.seed, "user", c.i),
        name=f"{first} {last}",
        email=f"{first}.{slugify(last)}{c.i}@example.com".lower(),
        permissions=_permissions(c),
    )
    return obj


def _role(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    name = ROLE_NAMES[c.i] if c.i < len(ROLE_NAMES) else f"Custom Role {c.i}"
    obj.update(id=segment_id(c.ws.seed, "role", c.i), name=name, description=f"{name} access.")
    return obj


def _user_group(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    obj.update(
        id=segment_id(c.ws.seed, "user-group", c.i),
        name=f"{words(c.rng, 1).title()} Team {c.i}",
        memberCount=0,
        permissions=_permissions(c),
    )
    return obj


def _label(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    keys = ("environment", "team", "region", "product")
    obj.update(
        key=keys[c.i % len(keys)],
        value=f"{WORDS[(c.i * 3) % len(WORDS)]}{c.i // len(keys) or ''}",
        description=f"Label {c.i}",
    )
    return obj


def _invite(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    scope = c.parent_row.ident[:6] if c.parent else "ws"
    return {"email": f"invitee.{scope.lower()}.{c.i}@example.com"}


def _function(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    rtype = FUNCTION_TYPES[c.i % len(FUNCTION_TYPES)]
    prefix = {
        "SOURCE": "sfnc",
        "DESTINATION": "dfn",
        "INSERT_SOURCE": "ifns",
        "INSERT_DESTINATION": "ifnd",
        "INSERT_TRANSFORMATION": "ifnt",
    }[rtype]
    created = c.ws.epoch - timedelta(days=c.rng.randint(10, 300))
    name = f"{words(c.rng).title()} {rtype.replace('_', ' ').title()} Function"
    obj.update(
        id=f"{prefix}_{segment_id(c.ws.seed, 'function', c.i)}",
        resourceType=rtype,
        displayName=name,
        createdAt=iso(created),
        createdBy=_pick(c.ws, "users", c.i).ident,
        deployedAt=iso(created + timedelta(days=1)),
        description=f"{name}.",
        logoUrl=f"https://cdn.segment.com/functions/{c.i}.svg",
        catalogId=segment_id(c.ws.seed, "fn-catalog", c.i),
        isLatestVersion=True,
        batchMaxCount=100,
    )
    obj["code"] = "async function onTrack(event, settings) {\n  return event\n}\n"
    return obj


def _function_version(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    created = c.ws.epoch - timedelta(days=60 - c.j * 7, hours=c.i % 24)
    obj.update(
        id=segment_id(c.ws.seed, "function-version", c.i),
        author=_pick(c.ws, "users", c.i).obj["email"],
        isDeployed=c.j == 0,
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(hours=2)),
        deployedAt=iso(created + timedelta(hours=3)),
    )
    return obj


def _insert_instance(obj: dict[str, Any], c: Ctx) -> dict[str, Any] | None:
    fn = c.parent_row.obj
    if not fn["resourceType"].startswith("INSERT_"):
        return None
    target = _pick(c.ws, "sources" if fn["resourceType"] == "INSERT_SOURCE" else "destinations", c.i)
    created = c.ws.epoch - timedelta(days=c.rng.randint(1, 200))
    obj.update(
        id=segment_id(c.ws.seed, "insert-instance", c.i),
        name=f"{fn['displayName']} #{c.j}",
        integrationId=target.ident,
        classId=fn["id"],
        enabled=c.rng.random() < 0.8,
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(days=1)),
        settings={"apiKey": "******"},
        encryptedSettings={"secret": "******"},
    )
    return obj


def _transformation(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    dest = _pick(c.ws, "destinations", c.i).obj
    obj.update(
        id=segment_id(c.ws.seed, "transformation", c.i),
        name=f"Rename {EVENT_NAMES[c.i % 15]}",
        sourceId=dest["sourceId"],
        destinationMetadataId=dest["metadata"]["id"],
        enabled=c.rng.random() < 0.8,
        **{"if": f"event = '{EVENT_NAMES[c.i % 15]}'"},
    )
    return obj


def _destination_filter(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    dest = c.parent_row.obj
    created = c.ws.epoch - timedelta(days=c.rng.randint(1, 300))
    obj.update(
        id=segment_id(c.ws.seed, "destination-filter", c.i),
        sourceId=dest["sourceId"],
        destinationId=dest["id"],
        title=f"Drop {EVENT_NAMES[c.i % 15]}",
        enabled=c.rng.random() < 0.8,
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(days=c.rng.randint(0, 30))),
        actions=[{"type": "DROP"}],
        **{"if": f"event = '{EVENT_NAMES[c.i % 15]}'"},
    )
    return obj


def _subscription(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    dest = c.parent_row.obj
    actions = dest["metadata"].get("actions") or []
    action = actions[c.j % len(actions)] if actions else {"id": segment_id("action", c.i), "slug": "track-event"}
    obj.update(
        id=segment_id(c.ws.seed, "subscription", c.i),
        name=f"{words(c.rng).title()} Mapping",
        actionId=action["id"],
        actionSlug=action["slug"],
        destinationId=dest["id"],
        enabled=c.rng.random() < 0.85,
        settings={"event": "{{event}}"},
        trigger='type = "track"',
    )
    obj.pop("modelId", None)
    obj.pop("reverseETLSchedule", None)
    if c.i % 3 == 0:  # every third subscription is a reverse-ETL mapping
        model = _pick(c.ws, "reverse_etl_models", c.i // 3)
        obj["modelId"] = model.ident
        obj["reverseETLSchedule"] = {"strategy": "PERIODIC", "config": {"interval": "1h"}}
    return obj


def _retl_model(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    table = f"{WORDS[c.i % len(WORDS)]}_customers"
    obj.update(
        id=segment_id(c.ws.seed, "retl-model", c.i),
        sourceId=_pick(c.ws, "sources", c.i).ident,
        name=f"{table.replace('_', ' ').title()} Model",
        description=f"Rows of {table}.",
        enabled=True,
        query=f"SELECT id, email, plan FROM analytics.{table}",
        queryIdentifierColumn="id",
    )
    return obj


def _retl_sync(obj: dict[str, Any], c: Ctx) -> dict[str, Any] | None:
    sub = c.parent_row.obj
    if "modelId" not in sub:
        return None
    model = c.ws.get_row("reverse_etl_models", sub["modelId"])
    slot, started, h = _history_slot(c, RETL_SYNC_PERIOD, "retl-sync", c.parent_row.ident)
    seconds = 60 + (h >> 8) % 300
    status = "FAILED" if (h >> 20) % 5 == 0 else "SUCCESS"
    obj.clear()
    # Unique across subscriptions (getReverseETLSyncStatus finds a sync by id alone) and a
    # function of the slot, so the sync keeps its id on every start and every later day.
    obj.update(
        syncId=str(slot * 1_000_000 + c.p),
        modelId=sub["modelId"],
        sourceId=model.obj["sourceId"] if model else "",
        syncStatus=status,
        duration=f"{seconds}s",
        startedAt=iso(started),
        finishedAt=iso(started + timedelta(seconds=seconds)),
    )
    if status == "FAILED":
        obj.update(error="Destination rejected the batch", errorCode="DESTINATION_ERROR")
    return obj


def _credential(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    created = c.ws.epoch - timedelta(days=c.rng.randint(10, 500))
    obj.update(
        id=segment_id(c.ws.seed, "credential", c.i),
        workspaceId=c.ws.workspace_id,
        name=f"{words(c.rng).title()} Credential",
        settings={"role": "arn:aws:iam::123456789012:role/segment"},
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(days=3)),
    )
    return obj


REGULATION_TYPES = ("SUPPRESS_WITH_DELETE", "DELETE_ONLY", "SUPPRESS_ONLY", "DELETE_INTERNAL")
REGULATION_STATUS = ("FINISHED", "FINISHED", "RUNNING", "INITIALIZED", "FAILED")


def _regulation(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    # Each source files a regulation every REGULATION_PERIOD (at its own phase); rows are the
    # newest ones up to the start of today, so they stay inside the API's 90-day window, are
    # identical on every start of a day, and a new regulation pushes the oldest one out.
    source = c.parent_row.ident
    minutes = REGULATION_PERIOD // timedelta(minutes=1)
    phase = timedelta(minutes=digest(c.ws.seed, "regulation-phase", source) % minutes)
    k = (c.ws.today - UNIX_EPOCH - phase) // REGULATION_PERIOD - c.j
    created = UNIX_EPOCH + phase + REGULATION_PERIOD * k
    h = digest(c.ws.seed, "regulation", source, k)
    status = REGULATION_STATUS[h % len(REGULATION_STATUS)]
    finished = created + timedelta(hours=30)
    if status == "FINISHED" and finished > c.ws.today:
        status = "RUNNING"
    obj.update(
        id=segment_id(c.ws.seed, "regulation", source, k),
        subjectType="USER_ID",
        subjects=[f"user-{(h >> 8) % 100_000}-{m}" for m in range(1 + (h >> 28) % 2)],
        status=status,
        createdAt=iso(created),
        regulationType=REGULATION_TYPES[(h >> 32) % len(REGULATION_TYPES)],
    )
    if status == "FINISHED":
        obj["finishedAt"] = iso(finished)
    return obj


def _suppression(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    return {"subjectType": "USER_ID", "subjectIds": [f"suppressed-user-{c.i}-{k}" for k in range(1 + c.i % 3)]}


def _live_plugin(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    created = c.ws.epoch - timedelta(days=40 - c.j * 10, minutes=c.i)
    obj.update(
        id=segment_id(c.ws.seed, "live-plugin", c.i),
        sourceId=c.parent_row.ident,
        createdAt=iso(created),
        createdBy=_pick(c.ws, "users", c.i).ident,
        version=c.j + 1,
        downloadURL=f"https://cdn.segment.com/live-plugins/{c.i}.js",
        code="export default () => {}",
    )
    return obj


def _space(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    name = ("Production", "Staging", "Sandbox", "EU")[c.i % 4] + (f" {c.i}" if c.i >= 4 else "")
    return {"id": f"spa_{segment_id(c.ws.seed, 'space', c.i)}", "slug": slugify(name), "name": name}


def _stamped(c: Ctx, obj: dict[str, Any]) -> None:
    created = c.ws.epoch - timedelta(days=c.rng.randint(5, 400), minutes=c.i)
    user = _pick(c.ws, "users", c.i).ident
    obj.update(
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(days=c.rng.randint(0, 4))),
        createdBy=user,
        updatedBy=user,
    )


def _audience(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    name = f"{words(c.rng).title()} Audience"
    obj.update(
        id=f"aud_{segment_id(c.ws.seed, 'audience', c.i)}",
        spaceId=c.parent_row.ident,
        name=name,
        key=slugify(name).replace("-", "_") + f"_{c.i}",
        enabled=True,
        definition={"query": f"event('{EVENT_NAMES[c.i % 15]}').count() >= 1", "targetEntity": None},
        audienceType=("USERS", "USERS", "ACCOUNTS")[c.i % 3],
        computeCadence={"type": "BATCH"},
        options={"filterByExternalIds": ["email"], "includeHistoricalData": True, "backfillEventDataDays": 30},
    )
    obj.pop("schedules", None)
    _stamped(c, obj)
    return obj


def _schedule(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    periodic = c.i % 2 == 0
    return {
        "id": f"sch_{segment_id(c.ws.seed, 'schedule', c.i)}",
        "strategy": "PERIODIC" if periodic else "SPECIFIC_DAYS",
        "config": {"interval": "12h"} if periodic else {"days": [1, 3, 5], "hours": [9], "timezone": "UTC"},
        "nextExecution": iso(c.ws.today + timedelta(days=1, hours=c.i % 12)),
    }


def _activation(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    aud = c.parent_row.obj
    conns = c.ws.children("audience_connections", c.parent)
    obj.update(
        id=segment_id(c.ws.seed, "activation", c.i),
        enabled=True,
        workspaceId=c.ws.workspace_id,
        spaceId=aud["spaceId"],
        audienceId=aud["id"],
        connectionId=conns[c.j % len(conns)].ident if conns else segment_id("conn", c.i),
        activationType=("Audience Entered", "Audience Exited", "Audience Membership Changed")[c.i % 3],
        activationName=f"Sync {aud['name']} #{c.j}",
        personalization={"profile": {"properties": ["email", "first_name"]}},
    )
    return obj


def _audience_connection(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    dest = _pick(c.ws, "destinations", c.i).obj
    created = c.ws.epoch - timedelta(days=c.rng.randint(1, 200))
    obj.update(
        id=segment_id(c.ws.seed, "audience-connection", c.i),
        name=dest.get("name", "Destination"),
        sourceId=dest["sourceId"],
        enabled=True,
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(days=1)),
        settings={},
        destinationId=dest["id"],
        metadata={k: dest["metadata"][k] for k in ("id", "name", "slug")},
    )
    return obj


def _audience_consumer(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    siblings = c.ws.children("audiences", None, c.parent_row.pkey)
    at = next((n for n, r in enumerate(siblings) if r is c.parent), 0)
    return {"audienceId": siblings[(at + 1 + c.j) % len(siblings)].ident}


def _computed_trait(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    name = f"{TRAIT_NAMES[c.i % len(TRAIT_NAMES)].replace('_', ' ').title()} Score"
    obj.update(
        id=f"ctr_{segment_id(c.ws.seed, 'computed-trait', c.i)}",
        spaceId=c.parent_row.ident,
        name=name,
        key=slugify(name).replace("-", "_") + f"_{c.i}",
        enabled=True,
        definition={"query": f"event('{EVENT_NAMES[c.i % 15]}').count()", "type": "USERS"},
    )
    _stamped(c, obj)
    return obj


def _profiles_warehouse(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    meta = _pick(c.ws, "warehouse_metadata", c.i).obj
    obj.update(
        id=segment_id(c.ws.seed, "profiles-warehouse", c.i),
        spaceId=c.parent_row.ident,
        metadata=meta,
        workspaceId=c.ws.workspace_id,
        enabled=True,
        settings={"database": "profiles"},
        schemaName=f"profiles_{c.i}",
    )
    return obj


def _space_selective_sync(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    return {
        "collection": COLLECTIONS[c.j % len(COLLECTIONS)] + ("" if c.j < len(COLLECTIONS) else f"_{c.j}"),
        "warehouseId": c.parent_row.ident,
        "enabled": c.j % 4 != 3,
        "properties": {"id": True, "email": c.j % 2 == 0},
    }


def _space_filter(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    created = c.ws.epoch - timedelta(days=c.rng.randint(1, 200))
    obj.update(
        id=segment_id(c.ws.seed, "space-filter", c.i),
        workspaceId=c.ws.workspace_id,
        integrationId=c.parent_row.ident,
        enabled=True,
        name=f"Block {EVENT_NAMES[c.i % 15]}",
        description="Drops noisy events.",
        drop=True,
        createdAt=iso(created),
        updatedAt=iso(created + timedelta(days=2)),
        **{"if": f"event = '{EVENT_NAMES[c.i % 15]}'"},
    )
    return obj


def _seen(c: Ctx) -> str:
    return iso(c.ws.today - timedelta(minutes=(c.j + 1) * 37 + c.i % 13))


def _space_event(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    name = EVENT_NAMES[c.j % len(EVENT_NAMES)] + ("" if c.j < len(EVENT_NAMES) else f" {c.j}")
    return {"name": name, "type": "TRACK" if c.j % 6 else "PAGE", "lastSeenAt": _seen(c)}


def _event_property(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    name = PROPERTY_NAMES[c.j % len(PROPERTY_NAMES)] + ("" if c.j < len(PROPERTY_NAMES) else f"_{c.j}")
    return {
        "name": name,
        "type": "CONTEXT" if name.startswith("context.") else "PROPERTY",
        "eventName": c.parent_row.ident,
        "lastSeenAt": _seen(c),
    }


def _trait(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    name = TRAIT_NAMES[c.j % len(TRAIT_NAMES)] + ("" if c.j < len(TRAIT_NAMES) else f"_{c.j}")
    return {"trait": name, "type": ("CUSTOM", "CUSTOM", "COMPUTED", "AUDIENCE", "SQL")[c.j % 5], "lastSeenAt": _seen(c)}


def _entity_path(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    entity = ("accounts", "products", "subscriptions", "households", "stores")[c.j % 5] + ("" if c.j < 5 else f"_{c.j}")
    return {
        "id": segment_id(c.ws.seed, "entity-path", c.i),
        "entityName": entity.title(),
        "pathName": f"profile.{entity}",
        "entitySlug": entity,
        "relationshipSlugs": [entity],
        "childRelationshipSlugs": [],
        "parentRelationshipSlugPath": "profile",
    }


def _entity_property(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    names = ("id", "name", "status", "created_at", "tier", "owner_email")
    name = names[c.j % len(names)] + ("" if c.j < len(names) else f"_{c.j}")
    return {"name": name, "primaryKey": c.j == 0, "dataType": "STRING" if c.j % 3 else "NUMBER"}


def _warehouse_sync(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    conn = c.parent_row  # a warehouse connection: pkey (warehouseId,), ident sourceId
    slot, start, h = _history_slot(c, WAREHOUSE_SYNC_PERIOD, "warehouse-sync", *conn.pkey, conn.ident)
    duration = 120 + (h >> 8) % 3000
    status = "failed" if (h >> 20) % 7 == 0 else "success"
    return {
        "sourceId": conn.ident,
        "start": iso(start),
        "end": iso(start + timedelta(seconds=duration)),
        "status": status,
        "duration": duration,
        "humanDuration": f"{duration // 60}m{duration % 60}s",
        "count": (h >> 32) % 100_000,
        "notices": []
        if status == "success"
        else [{"level": "error", "message": "Permission denied on schema", "createdAt": iso(start)}],
    }


def _warehouse_selective_sync(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
    return {
        "sourceId": c.parent_row.ident,
        "warehouseId": c.parent_row.pkey[0],
        "collection": COLLECTIONS[c.j % len(COLLECTIONS)] + ("" if c.j < len(COLLECTIONS) else f"_{c.j}"),
        "enabled": c.j % 3 != 2,
        "properties": {"context_ip": c.j % 2 == 0},
    }


def _connection(target: str, field: str) -> Finisher:
    """Link rows: the j-th link of the p-th parent points at target row (p + j * parents)."""

    def finish(obj: dict[str, Any], c: Ctx) -> dict[str, Any]:
        return {field: _pick(c.ws, target, c.p + c.j * c.parent_count).ident}

    return finish


def _tracking_plan_source(obj: dict[str, Any], c: Ctx) -> dict[str, Any] | None:
    # A source belongs to at most one tracking plan; the last two sources to none.
    sources = c.ws.rows("sources")
    n = c.p + c.j * c.parent_count
    if n >= max(len(sources) - 2, 1):
        return None
    return {"sourceId": sources[n].ident}


KINDS: tuple[Kind, ...] = (
    # The catalog is Segment's, not the workspace's: it does not grow with `scale`.
    Kind("source_metadata", "SourceMetadataV1", 40, finish=_catalog(SOURCE_CATALOG, "source-metadata"), scales=False),
    Kind("destination_metadata", "DestinationMetadataV1", 60, finish=_destination_metadata, scales=False),
    Kind(
        "warehouse_metadata",
        "WarehouseMetadataV1",
        8,
        finish=_catalog(WAREHOUSE_CATALOG, "warehouse-metadata"),
        scales=False,
    ),
    Kind(
        "labels",
        None,
        6,
        id_field=None,
        resource_type="Label",
        name_field="value",
        finish=_label,
        ident=lambda o: f"{o['key']}:{o['value']}",
    ),
    Kind("roles", "RoleV1", 6, finish=_role),
    Kind("users", "UserV1", 20, resource_type="User", finish=_user),
    Kind("user_groups", "UserGroupV1", 4, resource_type="User Group", finish=_user_group),
    Kind(
        "group_memberships",
        None,
        5,
        parent="user_groups",
        parent_field="userGroupId",
        id_field="userId",
        finish=_connection("users", "userId"),
        spread=False,
    ),
    Kind("invites", None, 5, id_field="email", resource_type="Invite", name_field="email", finish=_invite),
    Kind(
        "group_invites",
        None,
        2,
        parent="user_groups",
        parent_field="userGroupId",
        id_field="email",
        name_field="email",
        finish=_invite,
        spread=False,
    ),
    Kind("sources", "SourceV1", 10, resource_type="Source", finish=_source),
    Kind("destinations", "DestinationV1", 15, resource_type="Destination", finish=_destination),
    Kind("warehouses", "WarehouseV1", 3, resource_type="Warehouse", finish=_warehouse, name_field="id"),
    Kind(
        "warehouse_connections",
        None,
        4,
        parent="warehouses",
        parent_field="warehouseId",
        id_field="sourceId",
        finish=_connection("sources", "sourceId"),
        spread=False,
    ),
    Kind(
        "warehouse_syncs",
        None,
        5,
        parent="warehouse_connections",
        parent_field="sourceId",
        id_field="start",
        finish=_warehouse_sync,
    ),
    Kind(
        "warehouse_selective_syncs",
        None,
        3,
        parent="warehouse_connections",
        parent_field="sourceId",
        id_field="collection",
        finish=_warehouse_selective_sync,
    ),
    Kind("tracking_plans", "TrackingPlanV1", 3, resource_type="Tracking Plan", finish=_tracking_plan),
    Kind(
        "rules",
        None,
        20,
        parent="tracking_plans",
        parent_field="trackingPlanId",
        id_field=None,
        name_field="key",
        finish=_rule,
        ident=lambda o: f"{o['type']}:{o.get('key')}",
        scales=True,
    ),
    Kind(
        "tracking_plan_sources",
        None,
        4,
        parent="tracking_plans",
        parent_field="trackingPlanId",
        id_field="sourceId",
        finish=_tracking_plan_source,
        spread=False,
    ),
    Kind("transformations", "TransformationV1", 4, resource_type="Transformation", finish=_transformation),
    Kind(
        "destination_filters",
        "DestinationFilterV1",
        2,
        parent="destinations",
        parent_field="destinationId",
        resource_type="Destination Filter",
        name_field="title",
        finish=_destination_filter,
    ),
    Kind("reverse_etl_models", "ReverseEtlModel", 3, resource_type="Reverse ETL Model", finish=_retl_model),
    Kind(
        "destination_subscriptions",
        "DestinationSubscription",
        2,
        parent="destinations",
        parent_field="destinationId",
        resource_type="Destination Subscription",
        finish=_subscription,
        spread=False,
    ),
    Kind(
        "reverse_etl_syncs",
        None,
        15,
        parent="destination_subscriptions",
        parent_field="subscriptionId",
        id_field="syncId",
        finish=_retl_sync,
        spread=False,
    ),
    Kind("functions", "FunctionV1", 25, resource_type="Function", name_field="displayName", finish=_function),
    Kind("function_versions", "Version", 3, parent="functions", parent_field="functionId", finish=_function_version),
    Kind(
        "insert_function_instances",
        "InsertFunctionInstanceAlpha",
        2,
        parent="functions",
        parent_field="functionId",
        resource_type="Insert Function Instance",
        finish=_insert_instance,
        spread=False,
    ),
    Kind("credentials", "CredentialV1", 3, resource_type="Credential", finish=_credential),
    Kind(
        "credential_sources",
        None,
        2,
        parent="credentials",
        parent_field="credentialId",
        id_field="sourceId",
        finish=_connection("sources", "sourceId"),
        spread=False,
    ),
    Kind(
        "credential_warehouses",
        None,
        1,
        parent="credentials",
        parent_field="credentialId",
        id_field="warehouseId",
        finish=_connection("warehouses", "warehouseId"),
        spread=False,
    ),
    Kind(
        "regulations",
        None,
        2,
        parent="sources",
        parent_field="sourceId",
        resource_type="Regulation",
        name_field="regulationType",
        finish=_regulation,
        spread=False,
    ),
    Kind("suppressions", None, 5, id_field=None, finish=_suppression, ident=lambda o: o["subjectIds"][0]),
    Kind(
        "live_plugins",
        "LivePluginsAlpha",
        2,
        parent="sources",
        parent_field="sourceId",
        finish=_live_plugin,
        spread=False,
    ),
    Kind("spaces", None, 2, resource_type="Space", finish=_space),
    Kind(
        "audiences",
        "AudienceSummaryWithAudienceTypeAndLookback",
        4,
        parent="spaces",
        parent_field="spaceId",
        resource_type="Audience",
        finish=_audience,
    ),
    Kind("audience_schedules", None, 1, parent="audiences", parent_field="audienceId", finish=_schedule, spread=False),
    Kind(
        "audience_connections",
        "SimpleDestination",
        2,
        parent="audiences",
        parent_field="audienceId",
        finish=_audience_connection,
    ),
    Kind(
        "activations",
        "ActivationOutput",
        2,
        parent="audiences",
        parent_field="audienceId",
        name_field="activationName",
        finish=_activation,
    ),
    Kind(
        "audience_consumers",
        None,
        1,
        parent="audiences",
        parent_field="audienceId",
        id_field="audienceId",
        finish=_audience_consumer,
        spread=False,
    ),
    Kind(
        "computed_traits",
        "ComputedTraitSummary",
        3,
        parent="spaces",
        parent_field="spaceId",
        resource_type="Computed Trait",
        finish=_computed_trait,
    ),
    Kind(
        "profiles_warehouses",
        "ProfilesWarehouseAlpha",
        1,
        parent="spaces",
        parent_field="spaceId",
        resource_type="Profiles Warehouse",
        name_field="schemaName",
        finish=_profiles_warehouse,
        spread=False,
    ),
    Kind(
        "space_selective_syncs",
        None,
        3,
        parent="profiles_warehouses",
        parent_field="warehouseId",
        id_field="collection",
        finish=_space_selective_sync,
    ),
    Kind(
        "space_filters",
        "Filter",
        3,
        parent="spaces",
        parent_field="spaceId",
        resource_type="Space Filter",
        finish=_space_filter,
    ),
    Kind("space_events", None, 8, parent="spaces", parent_field="spaceId", id_field="name", finish=_space_event),
    Kind(
        "event_properties",
        None,
        4,
        parent="space_events",
        parent_field="eventName",
        id_field="name",
        finish=_event_property,
    ),
    Kind(
        "traits", None, 6, parent="spaces", parent_field="spaceId", id_field="trait", name_field="trait", finish=_trait
    ),
    Kind(
        "entity_paths",
        None,
        3,
        parent="spaces",
        parent_field="spaceId",
        id_field="entitySlug",
        name_field="entityName",
        finish=_entity_path,
    ),
    Kind(
        "entity_properties",
        None,
        4,
        parent="entity_paths",
        parent_field="entitySlug",
        id_field="name",
        finish=_entity_property,
    ),
)

# resourceType strings of the audit trail -> kind. Kinds without a resource type log their
# changes as "<ancestor type> Modified" (e.g. a new rule modifies its Tracking Plan).
AUDIT_RESOURCE_TYPES: dict[str, str] = {k.resource_type: k.name for k in KINDS if k.resource_type}


class Workspace:
    """All rows of the simulated workspace, generated lazily and safe to mutate from any thread."""

    AUDIT_RESOURCE_TYPES = AUDIT_RESOURCE_TYPES

    def __init__(
        self,
        seed: int = 7,
        scale: float = 1.0,
        counts: dict[str, int] | None = None,
        anchor: datetime | None = None,
        clock: Callable[[], datetime] | None = None,
        spec: ApiSpec | None = None,
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.counts = dict(counts or {})
        self.anchor = (anchor or datetime.now(UTC)).astimezone(UTC)
        # Three clocks, see the module docstring: `anchor` for time-based data, `today` for
        # recent histories, `epoch` for configuration objects.
        self.today = self.anchor.replace(hour=0, minute=0, second=0, microsecond=0)
        self.epoch = min(CONFIG_EPOCH, self.today)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.spec = spec or load_spec()
        self.generator = SchemaGenerator(self.spec, self.epoch)
        self.kinds_by_name: dict[str, Kind] = {k.name: k for k in KINDS}
        unknown = set(self.counts) - set(self.kinds_by_name) - {"audit_events"}
        if unknown:
            raise ValueError(f"unknown kinds in counts: {sorted(unknown)}")
        self.lock = threading.RLock()
        self.version = 0  # bumped by every mutation; caches key on it
        self.workspace_id = segment_id(seed, "workspace")
        name = f"{WORDS[seed % len(WORDS)].title()} Corp"
        self.workspace = {"id": self.workspace_id, "slug": slugify(name), "name": name}
        self._rows: dict[str, list[Row]] = {}
        self._by_key: dict[str, dict[tuple[str, ...], Row]] = {}
        self._by_id: dict[str, dict[str, Row]] = {}
        self._children: dict[str, dict[tuple[str, ...], list[Row]]] = {}
        self._created: dict[str, int] = {}
        self.seeded: dict[str, tuple[tuple[str, str], ...]] = {}  # (ident, name) at seed time, for audit events
        # The audit event the latest create/update/delete appended (None if it logged none);
        # read it under `lock`, in the same critical section as the mutation.
        self.last_audit_event: dict[str, Any] | None = None
        self._samples: dict[tuple[str, ...], builtins.list[str]] = {}  # sample values set by set_sample_values
        self.audit = AuditTrail(self, self.count("audit_events", 3000))

    # ---- reading -----------------------------------------------------------------------------

    def kinds(self) -> list[str]:
        return [k.name for k in KINDS] + ["audit_events"]

    def kind(self, name: str) -> Kind:
        try:
            return self.kinds_by_name[name]
        except KeyError:
            raise KeyError(f"unknown kind {name!r}; known: {', '.join(self.kinds())}") from None

    def count(self, kind: str, base: int, scaled: bool = True) -> int:
        if kind in self.counts:
            return int(self.counts[kind])
        return max(1, round(base * self.scale)) if scaled else base

    def rows(self, kind: str) -> list[Row]:
        """The live row list of a kind (callers must not mutate it)."""
        rows = self._rows.get(kind)
        if rows is None:
            with self.lock:
                rows = self._rows.get(kind)
                if rows is None:
                    rows = self._materialize(self.kind(kind))
        return rows

    def list(self, kind: str, parent: str | None = None) -> list[dict[str, Any]]:
        """Copies of a kind's rows; with ``parent`` only the children of that parent id."""
        if kind == "audit_events":
            return self.audit.query().slice(0, None)
        with self.lock:
            rows = self.rows(kind)
            if parent is not None:
                rows = [r for r in rows if r.pkey and r.pkey[-1] == parent]
            return [copy.deepcopy(r.obj) for r in rows]

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        row = self.get_row(kind, ident)
        return copy.deepcopy(row.obj) if row else None

    def get_row(self, kind: str, ident: str, pkey: tuple[str, ...] | None = None) -> Row | None:
        self.rows(kind)
        if pkey is not None:
            return self._by_key[kind].get(pkey + (ident,))
        return self._by_id[kind].get(ident)

    def children(self, kind: str, parent: Row | None, pkey: tuple[str, ...] | None = None) -> builtins.list[Row]:
        self.rows(kind)
        if pkey is None:
            pkey = parent.pkey + (parent.ident,) if parent is not None else ()
        return self._children[kind].get(pkey, [])

    def children_under(self, kind: str, prefix: tuple[str, ...]) -> builtins.list[Row]:
        """Rows whose parent key starts with ``prefix`` (e.g. all syncs of one warehouse)."""
        n = len(prefix)
        return [r for r in self.rows(kind) if r.pkey[:n] == prefix]

    def parent_row(self, kind: Kind, pkey: tuple[str, ...]) -> Row | None:
        if kind.parent is None:
            return None
        self.rows(kind.parent)
        return self._by_key[kind.parent].get(pkey)

    # ---- generation --------------------------------------------------------------------------

    def _materialize(self, kind: Kind) -> builtins.list[Row]:
        parents: builtins.list[Row | None] = list(self.rows(kind.parent)) if kind.parent else [None]
        self._by_key[kind.name] = {}
        self._by_id[kind.name] = {}
        self._children[kind.name] = {}
        rows: builtins.list[Row] = []
        self._rows[kind.name] = rows  # visible early so finishers may look at siblings
        total = self.count(kind.name, kind.base, kind.scaled)
        i = 0
        for p, parent in enumerate(parents):
            n = total
            if parent is not None and kind.spread and kind.name not in self.counts and n > 2:
                n = max(1, round(n * (0.5 + (digest(self.seed, kind.name, parent.ident) % 1000) / 1000)))
            for j in range(n):
                obj = self._generate(kind, Ctx(self, rng_for(self.seed, kind.name, i), i, j, parent, p, len(parents)))
                i += 1
                if obj is None:
                    continue
                pkey = parent.pkey + (parent.ident,) if parent is not None else ()
                ident = kind.ident_of(obj)
                if pkey + (ident,) in self._by_key[kind.name]:
                    continue  # link rows may collide when a parent has more links than targets
                self._index(kind, Row(obj, pkey, ident, kind.name))
        self.seeded[kind.name] = tuple((r.ident, str(r.obj.get(kind.name_field, r.ident))) for r in rows)
        return rows

    def _generate(self, kind: Kind, ctx: Ctx) -> dict[str, Any] | None:
        obj = self.generator.generate(kind.schema, ctx.rng) if kind.schema else {}
        return kind.finish(obj, ctx) if kind.finish else obj

    def _index(self, kind: Kind, row: Row) -> None:
        self._rows[kind.name].append(row)
        self._by_key[kind.name][row.pkey + (row.ident,)] = row
        self._by_id[kind.name].setdefault(row.ident, row)
        self._children[kind.name].setdefault(row.pkey, []).append(row)

    # ---- mutations ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock()

    def create(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Add a row; unspecified fields are generated. Child kinds need their parent field
        (e.g. ``create("rules", trackingPlanId=..., type="TRACK", key="Signed Up")``)."""
        spec = self.kind(kind)
        with self.lock:
            parent = None
            if spec.parent:
                pid = fields.get(spec.parent_field)  # type: ignore[arg-type]
                if pid is None:
                    raise ValueError(f"create({kind!r}) needs {spec.parent_field}=<{spec.parent} id>")
                parent = self.get_row(spec.parent, pid)
                if parent is None:
                    raise KeyError(f"no {spec.parent} with id {pid!r}")
            n = self._created.get(kind, 0)
            self._created[kind] = n + 1
            base = len(self.rows(kind))
            parents = self.rows(spec.parent) if spec.parent else [None]
            ctx = Ctx(
                self,
                rng_for(self.seed, kind, "created", n),
                base + n,
                len(self.children(kind, parent)),
                parent,
                next((k for k, r in enumerate(parents) if r is parent), 0),
                len(parents),
            )
            obj = self._generate(spec, ctx) or {}
            if spec.id_field == "id" and "id" in obj:
                obj["id"] = segment_id(self.seed, kind, "created", n)
            schema_props = self.spec.schemas[spec.schema].get("properties", {}) if spec.schema else {}
            obj.update({k: v for k, v in fields.items() if k != spec.parent_field or k in schema_props})
            pkey = parent.pkey + (parent.ident,) if parent else ()
            row = Row(obj, pkey, spec.ident_of(obj), kind)
            if pkey + (row.ident,) in self._by_key[kind]:
                raise ValueError(f"{kind} {row.ident!r} already exists")
            self._index(spec, row)
            self._changed(spec, row, "Created")
            return copy.deepcopy(obj)

    def update(self, kind: str, ident: str, **changes: Any) -> dict[str, Any]:
        spec = self.kind(kind)
        with self.lock:
            row = self._require(kind, ident)
            # Copy-on-write: the server serialises row objects without holding the lock.
            new = {**copy.deepcopy(row.obj), **changes}
            row.obj = new
            new_ident = spec.ident_of(new)
            if new_ident != row.ident:
                self._by_key[kind].pop(row.pkey + (row.ident,), None)
                self._by_id[kind].pop(row.ident, None)
                row.ident = new_ident
                self._by_key[kind][row.pkey + (row.ident,)] = row
                self._by_id[kind].setdefault(row.ident, row)
            self._changed(spec, row, "Modified")
            return copy.deepcopy(new)

    def delete(self, kind: str, ident: str) -> None:
        spec = self.kind(kind)
        with self.lock:
            row = self._require(kind, ident)
            self._remove(spec, row)
            self._changed(spec, row, "Deleted")

    def _require(self, kind: str, ident: str) -> Row:
        row = self.get_row(kind, ident)
        if row is None:
            raise KeyError(f"no {kind} with id {ident!r}")
        return row

    def _remove(self, spec: Kind, row: Row) -> None:
        for child in KINDS:
            if child.parent == spec.name:
                for c in list(self.children(child.name, row)):
                    self._remove(child, c)
        self._rows[spec.name] = [r for r in self._rows[spec.name] if r is not row]
        self._by_key[spec.name].pop(row.pkey + (row.ident,), None)
        if self._by_id[spec.name].get(row.ident) is row:
            del self._by_id[spec.name][row.ident]
            for other in self._rows[spec.name]:  # another parent's row may share the ident
                if other.ident == row.ident:
                    self._by_id[spec.name][row.ident] = other
                    break
        siblings = self._children[spec.name].get(row.pkey, [])
        self._children[spec.name][row.pkey] = [r for r in siblings if r is not row]

    def _changed(self, spec: Kind, row: Row, action: str) -> None:
        self.version += 1
        self.last_audit_event = None
        kind, target, pkey = spec, row, row.pkey
        while kind.resource_type is None and kind.parent:
            parent = self.parent_row(kind, pkey)
            if parent is None:
                return
            kind, target, pkey, action = self.kind(kind.parent), parent, parent.pkey, "Modified"
        if kind.resource_type is None:
            return
        self.last_audit_event = self.audit.append(
            kind.resource_type, action, target.ident, str(target.obj.get(kind.name_field, target.ident)), self.now()
        )

    def sample_values(self, *path: str) -> builtins.list[str]:
        """What a sample-value endpoint serves for a (space, event|entity|trait, property) path, in
        order; the property lists inline the first `samplesCount` of these."""
        with self.lock:
            values = self._samples.get(path)
        return builtins.list(values) if values is not None else sample_values(*path)

    def set_sample_values(self, *path: str, values: Sequence[str]) -> None:
        """Replace a property's (or trait's) sample values, as new data reaching Segment does (no
        audit event: nobody edited the configuration)."""
        with self.lock:
            self._samples[path] = builtins.list(values)
            self.version += 1

    def add_audit_events(self, n: int, at: datetime | None = None) -> builtins.list[dict[str, Any]]:
        """Append ``n`` synthetic audit events at ``at`` (default: the simulator clock)."""
        return self.audit.add_synthetic(n, at or self.now())


# The dedicated sample-value endpoints return up to 1,000 values; the property lists inline at most
# 100. About one property in 36 has more than 100 (101-500), so a workspace of 1,800 properties
# has some 50 whose inline list is cut; the others have 0-40.
MANY_SAMPLES_ONE_IN = 36
MAX_SAMPLE_VALUES = 1000


def sample_values(*parts: str) -> list[str]:
    """Deterministic sample values for a (space, event|entity|trait, property) path, all distinct."""
    seed = digest(*parts)
    h = digest("sample-count", *parts)
    n = 101 + (h >> 8) % 400 if h % MANY_SAMPLES_ONE_IN == 0 else (h >> 8) % 41
    return [f"{words(rng_for(seed, k), 1)}-{k}-{mix(seed, k) % 1000}" for k in range(min(n, MAX_SAMPLE_VALUES))]


__all__ = ["AUDIT_RESOURCE_TYPES", "KINDS", "Kind", "Row", "Workspace", "sample_values"]

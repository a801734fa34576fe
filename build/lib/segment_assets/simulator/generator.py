"""Deterministic values: seeded hashing, Segment-like ids, and a schema-driven object generator.

Python's ``hash()`` of a string changes per process, so every derived number goes through
blake2b (for strings) or splitmix64 (for integers).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from .spec import ApiSpec

MASK64 = (1 << 64) - 1
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def digest(*parts: object) -> int:
    """A stable 64-bit integer for any tuple of printable parts."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def mix(a: int, b: int = 0) -> int:
    """splitmix64 of (a, b): cheap enough for per-item hot paths (audit events, series)."""
    z = (a * 0x9E3779B97F4A7C15 + b + 0x632BE59BD9B4E019) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def segment_id(*parts: object, length: int = 22) -> str:
    """A 22-character base62 id like the ones Segment returns (e.g. ``qQEHquLrjRDN9j1ByrChyn``)."""
    n = int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=17).digest(), "big")
    chars = []
    for _ in range(length):
        n, r = divmod(n, 62)
        chars.append(BASE62[r])
    return "".join(chars)


class SplitMix:
    """The few ``random.Random`` methods the generators use, on splitmix64: seeding a
    Mersenne Twister per row costs more than generating the row."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self.next64() >> 11) * (1.0 / 9007199254740992.0)

    def randrange(self, n: int) -> int:
        return self.next64() % n

    def randint(self, a: int, b: int) -> int:
        return a + self.next64() % (b - a + 1)

    def choice(self, seq: Any) -> Any:
        return seq[self.next64() % len(seq)]


def rng_for(*parts: object) -> SplitMix:
    return SplitMix(digest(*parts))


def iso(ts: datetime) -> str:
    """ISO-8601 with milliseconds and Z, the format Segment uses."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_time(value: str) -> datetime:
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


WORDS = (
    "alpha",
    "amber",
    "atlas",
    "beacon",
    "cedar",
    "comet",
    "delta",
    "ember",
    "falcon",
    "harbor",
    "iris",
    "juniper",
    "kepler",
    "lumen",
    "maple",
    "nova",
    "onyx",
    "orbit",
    "pine",
    "quartz",
    "raven",
    "sierra",
    "summit",
    "tango",
    "tundra",
    "umbra",
    "vega",
    "willow",
    "zephyr",
    "zenith",
)
EVENT_NAMES = (
    "Order Completed",
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Signed Up",
    "Signed In",
    "Page Viewed",
    "Cart Viewed",
    "Coupon Applied",
    "Subscription Started",
    "Video Played",
    "Search Performed",
    "Item Shared",
    "Payment Failed",
    "Trial Ended",
)
FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Donald",
    "Sophie",
    "Guido",
    "Anita",
    "Bjarne",
)
LAST_NAMES = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "McCarthy",
    "Johnson",
    "Knuth",
    "Wilson",
    "Rossum",
    "Borg",
    "Stroustrup",
)


def words(rng: SplitMix, n: int = 2) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def slugify(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


class SchemaGenerator:
    """Walks a component schema and fills it with plausible deterministic values.

    Required properties are always present; optional ones appear with probability
    ``optional_rate`` so that loaders meet both present and absent columns.
    """

    def __init__(self, spec: ApiSpec, anchor: datetime, optional_rate: float = 0.6) -> None:
        self.spec = spec
        self.anchor = anchor
        self.optional_rate = optional_rate

    def generate(self, schema: dict[str, Any] | str, rng: SplitMix, depth: int = 0, name: str = "") -> Any:
        if isinstance(schema, str):
            schema = self.spec.schemas[schema]
        schema = self.spec.resolve(schema)
        if "allOf" in schema:
            return self.generate(schema["allOf"][0], rng, depth, name)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.generate(rng.choice(schema[key]), rng, depth, name)
        if "enum" in schema:
            return rng.choice(schema["enum"])
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            return self._object(schema, rng, depth)
        if kind == "array":
            if depth > 4:
                return []
            return [self.generate(schema["items"], rng, depth + 1, name) for _ in range(rng.randint(1, 2))]
        if kind == "string":
            return self.string(name, rng)
        if kind == "integer":
            return rng.randint(0, 1000)
        if kind == "number":
            return rng.randint(0, 1000)
        if kind == "boolean":
            return rng.random() < 0.5
        # Untyped (jsonSchema, defaultValue, choices): any JSON value is valid.
        return self.string(name, rng)

    def _object(self, schema: dict[str, Any], rng: SplitMix, depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        if not props:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict) and depth < 5:
                return {
                    f"{rng.choice(WORDS)}_{i}": self.generate(extra, rng, depth + 1) for i in range(rng.randint(1, 2))
                }
            return free_form(rng)
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for key, prop in props.items():
            if key not in required and (depth > 3 or rng.random() > self.optional_rate):
                continue
            if prop.get("nullable") and key not in required and rng.random() < 0.1:
                out[key] = None
                continue
            out[key] = self.generate(prop, rng, depth + 1, key)
        return out

    def string(self, name: str, rng: SplitMix) -> str:
        low = name.lower()
        if (
            low.endswith("at")
            and low not in ("format",)
            or low in ("timestamp", "time", "start", "end", "nextexecution")
        ):
            return iso(self.anchor - timedelta(seconds=rng.randint(3600, 90 * 86400)))
        if low == "email" or low.endswith("email"):
            return f"{rng.choice(FIRST_NAMES).lower()}.{rng.randint(1, 999)}@example.com"
        if low.endswith("url") or low in ("website", "default", "mark", "alt"):
            return f"https://cdn.example.com/{slugify(words(rng))}.svg"
        if low == "id" or low.endswith("id"):
            return segment_id(rng.random())
        if low == "slug" or low.endswith("slug"):
            return slugify(words(rng))
        if low in ("code",):
            return "async function onTrack(event, settings) {\n  return event\n}\n"
        if low in ("if", "query"):
            return f"event = '{rng.choice(EVENT_NAMES)}'"
        if low in ("timezone",):
            return rng.choice(("UTC", "America/New_York", "Europe/Paris"))
        if low in ("duration", "humanduration"):
            return f"{rng.randint(1, 59)}m{rng.randint(0, 59)}s"
        return words(rng).title() if "name" in low or low in ("label", "title") else words(rng, rng.randint(1, 4))


def free_form(rng: SplitMix) -> dict[str, Any]:
    """A settings-like free-form object."""
    return {
        "apiKey": segment_id("key", rng.random(), length=16),
        "region": rng.choice(("us-west-2", "eu-west-1", "us-east-1")),
        "sendAnonymousData": rng.random() < 0.5,
    }

"""A snapshot of the asset specs the code location declares, as dagster-open-platform's `test_defs`.

Every asset key with its group, kinds, partitions definition, dependencies and check names, for
the default code location (no SEGMENT_* variable set) and for a connections file of two
workspaces, compared with `snapshots/asset_specs.json`. A renamed key, a moved group or a lost
dependency is then a visible diff in review, not a surprise in a deployed UI. After an intended
change, rewrite the file and commit it with the change:

    SEGMENT_UPDATE_SNAPSHOTS=1 ./run test segment_assets_tests/test_definitions.py
"""

from __future__ import annotations

import difflib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import Definitions, TimeWindowPartitionsDefinition

from segment_assets.orchestration.connections import load_connections_file
from segment_assets.orchestration.definitions import build_definitions, code_location
from segment_assets.orchestration.workspaces import Workspace

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "asset_specs.json"
UPDATE_ENV = "SEGMENT_UPDATE_SNAPSHOTS"


def _partitions(pdef: Any) -> dict[str, Any] | None:
    if pdef is None:
        return None
    if isinstance(pdef, TimeWindowPartitionsDefinition):
        return {
            "type": type(pdef).__name__,
            "cron": pdef.cron_schedule,
            "start": pdef.start.isoformat(),
            "end": pdef.end.isoformat() if pdef.end else None,
            "timezone": pdef.timezone,
            "format": pdef.fmt,
            "end_offset": pdef.end_offset,
        }
    return {"type": type(pdef).__name__, "repr": str(pdef)}


def asset_specs(defs: Definitions) -> dict[str, Any]:
    """key -> group, kinds, partitions, deps and check names, sorted, as plain JSON."""
    checks: dict[str, list[str]] = defaultdict(list)
    for check_key in defs.resolve_asset_graph().asset_check_keys:
        checks[check_key.asset_key.to_user_string()].append(check_key.name)
    out = {}
    for spec in defs.resolve_all_asset_specs():
        key = spec.key.to_user_string()
        out[key] = {
            "group": spec.group_name,
            "kinds": sorted(spec.kinds),
            "partitions": _partitions(spec.partitions_def),
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
            "checks": sorted(checks.get(key, [])),
        }
    return dict(sorted(out.items()))


def two_workspaces(tmp_path: Path) -> Definitions:
    file = tmp_path / "connections.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "connections": [
                    {"name": "us_prod", "token_env": "SEGMENT_US_TOKEN", "region": "us"},
                    {
                        "name": "eu_prod",
                        "token_env": "SEGMENT_EU_TOKEN",
                        "region": "eu",
                        "owners": ["team:data-eu"],
                        "tags": {"tier": "gold"},
                    },
                ]
            }
        )
    )
    return build_definitions([Workspace(c) for c in load_connections_file(file)])


def _summary(expected: dict[str, Any], current: dict[str, Any]) -> str:
    lines = []
    for location in sorted(set(expected) | set(current)):
        old, new = expected.get(location, {}), current.get(location, {})
        lines += [f"{location}: new asset {k}" for k in sorted(set(new) - set(old))]
        lines += [f"{location}: asset gone {k}" for k in sorted(set(old) - set(new))]
        for k in sorted(set(old) & set(new)):
            fields = [f for f in sorted(set(old[k]) | set(new[k])) if old[k].get(f) != new[k].get(f)]
            if fields:
                lines.append(f"{location}: {k} changed its {', '.join(fields)}")
    return "\n".join(lines)


@pytest.fixture
def no_segment_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SEGMENT_") and name != UPDATE_ENV:
            monkeypatch.delenv(name)


def test_asset_specs_match_the_snapshot(no_segment_environment: None, tmp_path: Path) -> None:
    current = {
        "default code location": asset_specs(code_location()),
        "two workspaces (connections file)": asset_specs(two_workspaces(tmp_path)),
    }
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with {UPDATE_ENV}=1 to write {SNAPSHOT.name}"
    expected = SNAPSHOT.read_text()
    if text != expected:
        summary = _summary(json.loads(expected), current)
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                "snapshots/asset_specs.json (checked in)",
                "asset specs now",
                n=2,
            )
        )
        pytest.fail(
            f"The asset specs differ from the snapshot. If the change is intended, run\n"
            f"    {UPDATE_ENV}=1 ./run test segment_assets_tests/test_definitions.py\n"
            f"and commit snapshots/asset_specs.json with it.\n\n{summary}\n\n{diff}",
            pytrace=False,
        )


def test_the_snapshot_covers_both_locations_and_every_field() -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    default, two = snapshot["default code location"], snapshot["two workspaces (connections file)"]
    assert default and two
    assert {k.split("/")[1] for k in two} == {"us_prod", "eu_prod"}, "namespaced by connection"
    assert all(
        set(spec) == {"group", "kinds", "partitions", "deps", "checks"} for spec in (*default.values(), *two.values())
    )
    assert any(spec["deps"] for spec in default.values()), "children depend on their parents"
    assert any(spec["partitions"] for spec in default.values()), "daily and monthly streams are partitioned"
    assert any(spec["checks"] for spec in default.values())

"""The generated table reference: up to date, complete, and saying what the registry declares."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from segment_assets.api.streams import EXCLUDED, STREAMS, materialized_streams
from segment_assets.api.tables import table_def
from segment_assets.cli import reference


def section(text: str, table: str) -> str:
    start = text.index(f"### `{table}`\n")
    end = text.find("\n### ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_docs_tables_md_is_up_to_date() -> None:
    problem = reference.check(reference.DOC_PATH)
    assert problem is None, problem


def test_every_table_column_and_operation_is_documented() -> None:
    text = reference.render()
    for stream in materialized_streams():
        body = section(text, stream.table)
        for column in table_def(stream.name).columns:
            assert re.search(rf"^\| `{re.escape(column.name)}` \| {column.type} \|", body, re.M), (
                f"{stream.table}.{column.name} ({column.type}) missing from its section"
            )
        assert f"`GET {stream.path}`" in body and f"`{stream.operation_id}`" in body
    not_tables = [s for s in STREAMS.values() if not s.materialized]
    tail = text[text.index("## Operations that are not tables") :]
    for stream in not_tables:
        assert re.search(rf"^\| `{stream.operation_id}` \| .* \| \[`{stream.covered_by}`\]", tail, re.M)
    for operation_id, why in EXCLUDED.items():
        assert f"| `{operation_id}` |" in tail and why in tail


def test_sections_state_keys_methods_partitions_gates_and_limits() -> None:
    text = reference.render()
    rules = section(text, "tracking_plan_rules")
    assert "- **Primary key**: `tracking_plan_id`, `type`, `key`" in rules
    assert "**Protocols**" in rules and "**200 requests/minute**" in rules
    assert "[`tracking_plans`](#tracking_plans): `trackingPlanId` ← `tracking_plans.id`" in rules
    assert "`segment.tracking_plan_rules__ct`" in rules
    assert "rules have no id" in rules  # the declaration's decision

    syncs = section(text, "warehouse_syncs")
    assert "[watermark](#update-methods) on `start`" in syncs
    assert "**2 requests/minute**" in syncs
    assert "one row per insert or update" in syncs

    volume = section(text, "events_volume")
    assert "daily (UTC days) on `time`" in volume and "last 30 days" in volume
    assert "- **Change table**: none" in volume

    usage = section(text, "usage_mtu_daily")
    assert "monthly (UTC months) on `timestamp`" in usage and "`period`" in usage

    instances = section(text, "insert_function_instances")
    assert "only parent rows where resource_type starts with 'INSERT_'" in instances

    functions = section(text, "functions")
    assert "× 5 values of `resourceType`" in functions
    assert "- **Parent of**: [`function_details`](#function_details)" in functions


def test_index_links_every_table_once_and_anchors_exist() -> None:
    text = reference.render()
    index = text[text.index("## Index") : text.index("## Update methods")]
    linked = re.findall(r"\[`(\w+)`\]\(#(\w+)\)", index)
    assert sorted(name for name, _ in linked) == sorted(s.table for s in materialized_streams())
    assert all(name == anchor for name, anchor in linked)
    headings = set(re.findall(r"^### `(\w+)`$", text, re.M))
    for anchor in re.findall(r"\]\(#([\w-]+)\)", text):
        if anchor.startswith("area-"):
            assert f"## Area: {anchor[5:]}\n" in text
        elif anchor not in (
            "change-tables",
            "history-tables",
            "update-methods",
            "operations-that-are-not-tables",
            "excluded-operations",
        ):
            assert anchor in headings, f"link to #{anchor} has no heading"


def test_api_descriptions_cannot_break_the_markdown() -> None:
    text = reference.render()
    transformations = section(text, "transformations")
    row = next(line for line in transformations.splitlines() if line.startswith("| `if` |"))
    assert "&lt;eventName" in row and "<eventName" not in row
    assert row.count(" | ") == 3  # four cells: no stray pipe from the description


def test_check_names_the_command_when_the_file_is_stale(tmp_path: Path) -> None:
    stale = tmp_path / "tables.md"
    stale.write_text(reference.render().replace("| `id` | VARCHAR | PK |", "| `id` | BIGINT | PK |", 1))
    out = subprocess.run(
        [sys.executable, "-m", "segment_assets.cli.reference", "--check", "--output", str(stale)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "out of date" in out.stderr and "python -m segment_assets.cli.reference" in out.stderr
    assert "BIGINT" in out.stderr  # the first difference is shown

    out = subprocess.run(
        [sys.executable, "-m", "segment_assets.cli.reference", "--output", str(stale)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert stale.read_text() == reference.render()
    assert reference.main(["--check", "--output", str(stale)]) == 0
    assert reference.main(["--check", "--output", str(tmp_path / "missing.md")]) == 1

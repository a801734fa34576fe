"""`segment-assets sync` in a child process, optionally frozen inside one DuckDB write.

    python -m segment_assets_tests.fault_worker [--pause-before-commit TABLE --marker FILE] STREAM...

Connection and target come from the environment, as for the real command
(SEGMENT_API_TOKEN, SEGMENT_API_URL, SEGMENT_PACE_REQUESTS, SEGMENT_DUCKDB_PATH, DAGSTER_HOME).
With --pause-before-commit, the first transaction that has deleted or inserted rows of
TABLE stops just before its COMMIT, writes FILE and sleeps: the test then SIGKILLs the
process at the worst moment, with the write applied but not committed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class _PausingConnection:
    def __init__(self, con: Any, table: str, marker: Path) -> None:
        self._con = con
        self._needles = (f'."{table}"', f'."{table}__ct"')  # as storage quotes them
        self._marker = marker
        self._written: list[str] = []

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        head = " ".join(sql.split())[:160]
        if head.upper().startswith(("DELETE", "INSERT")) and any(n in head for n in self._needles):
            self._written.append(head)
        if head.upper() == "COMMIT" and self._written:
            self._marker.write_text("\n".join(self._written))
            time.sleep(600)
        return self._con.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def pause_before_commit(table: str, marker: Path) -> None:
    from segment_assets.storage import DuckDBTarget

    connect = DuckDBTarget.connect

    @contextmanager
    def pausing(self: DuckDBTarget) -> Iterator[Any]:
        with connect(self) as con:
            yield _PausingConnection(con, table, marker)

    DuckDBTarget.connect = pausing  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("streams", nargs="+")
    parser.add_argument("--pause-before-commit", metavar="TABLE")
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args(argv)
    if args.pause_before_commit:
        pause_before_commit(args.pause_before_commit, args.marker)
    from segment_assets.cli.commands import run_sync

    run_sync(args.streams)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""`python -m bench` (`./run bench`): run the benchmarks and write bench/RESULTS.md.

1 limits      full sync under the documented limits: wall time against the rate-limit bound
2 shared      concurrent syncs sharing one token: achieved rate per endpoint against its limit
3 resync      re-sync of the unchanged workspace under the limits (runs after 1, on its file)
4 throughput  configuration set: whole sync and engine alone vs dlt's rest_api source and a bare client
5 ui          "Materialize all" through `dagster dev` and GraphQL vs the CLI; start-up costs
6 memory      peak RSS of the fan-out-heavy selection at growing scales
7 estimate    requests estimated from the parent tables vs made, sample-value streams (runs with 6)
8 sigterm     time to stop after SIGTERM, and the state the file is left in
9 lake        the same full sync into DuckDB and into a Delta lake
10 space_schema a big space schema (1,800 properties) under the limits: sample values inline, before and after
11 launch     "Materialize" on one asset through `dagster dev`: click to success, run-queue settings
12 cycles     memory of a resumable cycle choosing its share of 10,000 and 740,000 parents
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    cycle_memory,
    full_sync,
    inline_memory,
    lake,
    launch_latency,
    machine,
    memory,
    report,
    shared_token,
    sigterm,
    space_schema,
    throughput,
    ui_path,
)
from bench.figures import Section
from bench.settings import Settings, Workdir

BENCHMARKS = (
    "limits",
    "shared",
    "resync",
    "throughput",
    "ui",
    "memory",
    "estimate",
    "sigterm",
    "lake",
    "space_schema",
    "launch",
    "cycles",
    "inline",
)
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def parse(argv: list[str]) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: small sizes, one run each (a few minutes plus the limit benchmarks, whose "
        "length the documented limits set)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"run only these benchmarks ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--shared-seconds",
        type=float,
        help="how long the concurrent syncs of 2 run after their first request (default 180)",
    )
    parser.add_argument("--throughput-runs", type=int, help="runs per tool in 4 (default 3)")
    parser.add_argument("--throughput-scale", type=float, help="simulator scale in 4 (default 20)")
    parser.add_argument(
        "--profile-throughput",
        action="store_true",
        help="in 4, run the whole sync and the engine alone once more under py-spy (if installed) and "
        "report where their time goes",
    )
    parser.add_argument("--memory-scales", type=float, nargs="+", metavar="X", help="scales of 6 (default 1 5 20)")
    parser.add_argument(
        "--profile-memory",
        action="store_true",
        help="profile 6 with tracemalloc even when its growth is within the target",
    )
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (DuckDB files, logs)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"report file (default {RESULTS})")
    args = parser.parse_args(argv)
    s = Settings.quick_preset() if args.quick else Settings()
    for name in ("shared_seconds", "throughput_runs", "throughput_scale"):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    s.throughput_profile = args.profile_throughput
    if args.memory_scales:
        s.memory_scales = tuple(sorted(args.memory_scales))
    return args, s


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, settings = parse(argv)
    wanted = set(args.only or BENCHMARKS)
    work = Workdir(args.workdir)
    started = time.monotonic()
    sections: list[Section] = []
    failures: dict[str, str] = {}
    steps: list[tuple[str, float]] = []
    print(f"benchmarks: {', '.join(b for b in BENCHMARKS if b in wanted)}; scratch {work.path}", flush=True)

    def step(name: str, fn: Callable[[], Section | list[Section] | None]) -> None:
        t = time.monotonic()
        print(f"[{time.monotonic() - started:6.0f}s] {name} ...", flush=True)
        try:
            out = fn()
        except Exception:
            failures[name] = traceback.format_exc()
            print(f"  FAILED: {failures[name].strip().splitlines()[-1]}", flush=True)
            return
        finally:
            steps.append((name, time.monotonic() - t))
        for section in out if isinstance(out, list) else [out] if out else []:
            sections.append(section)
            for f in section.figures:
                print(f"  {f.name}: {f.value}" + (f"  [target {f.target}]" if f.target else ""), flush=True)

    machine_info = machine.describe()
    # The limit benchmarks first: their length is set by the API's limits, not by this machine.
    if wanted & {"limits", "resync"}:
        step(
            "1. full sync under the limits" + (", 3. re-sync" if "resync" in wanted else ""),
            lambda: _only(full_sync.run(settings, work, resync="resync" in wanted), wanted, {1: "limits"}),
        )
    if "shared" in wanted:
        step("2. concurrent syncs sharing a token", lambda: shared_token.run(settings, work))
    if "sigterm" in wanted:
        step("8. SIGTERM", lambda: sigterm.run(settings, work))
    if "throughput" in wanted:
        step("4. throughput vs dlt", lambda: throughput.run(settings, work))
    if "ui" in wanted:
        step("5. UI path", lambda: ui_path.run(settings, work))
    if wanted & {"memory", "estimate"}:
        step(
            "6. memory" + (", 7. estimate vs actual" if "estimate" in wanted else ""),
            lambda: _only(memory.run(settings, work, args.profile_memory), wanted, {6: "memory", 7: "estimate"}),
        )
    if "lake" in wanted:
        step("9. lake vs DuckDB", lambda: lake.run(settings, work))
    if "space_schema" in wanted:
        step("10. big space schema", lambda: space_schema.run(settings, work))
    if "launch" in wanted:
        step("11. launch latency", lambda: launch_latency.run(settings, work))
    if "cycles" in wanted:
        step("12. memory of a resumable cycle", lambda: cycle_memory.run(settings, work))
    if "inline" in wanted:
        step("13. memory of the inline sample lists", lambda: inline_memory.run(settings, work))

    seconds = time.monotonic() - started
    command = "python -m bench" + (" " + " ".join(argv) if argv else "")
    text = report.render(sections, machine_info, command, seconds, settings.quick, failures, steps, BENCHMARKS)
    report.write(text, args.output)
    print(f"wrote {args.output} in {seconds:.0f} s", flush=True)
    if not args.keep:
        work.remove()
    return 1 if failures else 0


def _only(sections: list[Section], wanted: set[str], names: dict[int, str]) -> list[Section]:
    """Drop the sections a shared step produced but nobody asked for."""
    return [s for s in sections if s.number not in names or names[s.number] in wanted]


if __name__ == "__main__":
    raise SystemExit(main())

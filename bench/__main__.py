"""`python -m bench` (`./run bench`): run the benchmarks of issue 5 and write bench/RESULTS.md."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import cdc, machine, memory, rate_limits, report, request_count, scaling, throughput
from bench.figures import Section
from bench.settings import Settings, Workdir
from bench.workspace_sync import SyncRun, full_sync

BENCHMARKS = ("throughput", "requests", "rate", "memory", "cdc", "scaling")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def parse(argv: list[str]) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, one run each (~1-2 min)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--throughput-rows", type=int, help="rows the throughput read loads (default 200000)")
    parser.add_argument("--throughput-runs", type=int, help="runs per tool (default 3)")
    parser.add_argument("--dlt-default-runs", type=int,
                        help="runs of dlt with its default loader (default 1: ~1 min each)")
    parser.add_argument("--rate-seconds", type=float,
                        help="length of each run of the main rate-limit scenario (default 30; the others run half)")
    parser.add_argument("--rate-runs", type=int, help="runs of the main rate-limit scenario (default 3)")
    parser.add_argument("--memory-counts", type=int, nargs="+", metavar="N",
                        help="audit events (default 100000 1000000)")
    parser.add_argument("--memory-runs", type=int, help="runs per memory count (default 3 for 100k, 1 for 1M)")
    parser.add_argument("--scales", type=float, nargs="+",
                        help="workspace scales (default 1 10 100; ×100 takes ~2.5 min)")
    parser.add_argument("--scale-runs", type=int,
                        help="runs per scale (default 3 at ×1, 1 above: the ×10 and ×100 syncs are the slowest)")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (DuckDB files, logs)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"report file (default {RESULTS})")
    args = parser.parse_args(argv)
    s = Settings.quick_preset() if args.quick else Settings()
    for name in ("throughput_rows", "throughput_runs", "dlt_default_runs", "rate_seconds", "rate_runs"):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    if args.throughput_runs is not None:
        s.dlt_parquet_runs = args.throughput_runs
    if args.memory_counts:
        s.memory_counts = tuple(args.memory_counts)
    if args.memory_runs is not None:
        s.memory_runs = {n: args.memory_runs for n in s.memory_counts}
    if args.scales:
        s.scales = tuple(sorted(args.scales))
    if args.scale_runs is not None:
        s.scale_runs = {x: args.scale_runs for x in s.scales}
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
        except Exception:  # one broken benchmark must not hide the others' figures
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
    if wanted & {"requests", "cdc", "scaling"}:
        step("6. scaling, 2. request count, 5. change capture", lambda: _workspace_syncs(settings, work, wanted))
    if "throughput" in wanted:
        step("1. throughput vs dlt", lambda: throughput.run(settings, work))
    if "memory" in wanted:
        step("4. memory", lambda: memory.run(settings, work))
    if "rate" in wanted:
        step("3. rate-limit utilisation", lambda: rate_limits.run(settings, work))

    seconds = time.monotonic() - started
    command = "python -m bench" + (" " + " ".join(argv) if argv else "")
    text = report.render(sections, machine_info, command, seconds, settings.quick, failures, steps)
    report.write(text, args.output)
    print(f"wrote {args.output} in {seconds:.0f} s", flush=True)
    if not args.keep:
        work.remove()
    return 1 if failures else 0


def _workspace_syncs(settings: Settings, work: Workdir, wanted: set[str]) -> list[Section]:
    """Full syncs per scale; the ×1 simulator stays up for the request count and the quiet re-sync."""
    sections: list[Section] = []
    results: dict[float, list[SyncRun]] = {}
    scales = settings.scales if "scaling" in wanted else (1.0,)
    if 1.0 not in scales:
        scales = (1.0, *scales)
    for scale in scales:
        with work.simulator(seed=7, scale=scale) as sim:
            results[scale] = [full_sync(work, sim, label=f"sync-x{scale:g}")
                              for _ in range(settings.runs_for_scale(scale))]
            if scale == 1.0 and wanted & {"requests", "cdc"}:
                section, minimum = request_count.run(results[scale][-1], sim, scale)
                if "requests" in wanted:
                    sections.append(section)
                if "cdc" in wanted:
                    sections.append(cdc.run(work, sim, results[scale][-1], minimum, settings.cdc_streams))
        for run in results[scale]:
            run.db.unlink(missing_ok=True)
    if "scaling" in wanted:
        notes = []
        top = max(results)
        low = min(results)
        if 100 not in results and top > low:
            # Marginal cost per request between the smallest and largest runs, requests growing linearly.
            a, b = results[low][0], results[top][0]
            per_request = (b.wall_seconds - a.wall_seconds) / (b.requests - a.requests)
            requests = b.requests * 100 / top
            estimate = b.wall_seconds + (requests - b.requests) * per_request
            notes.append(f"Scale ×100 was not run: at the marginal {1000 * per_request:.1f} ms per request "
                         f"measured between ×{low:g} and ×{top:g}, its ~{requests:,.0f} requests would take about "
                         f"{estimate / 60:.0f} min per run; `--scales 1 10 100` runs it.")
        section = scaling.run(results)
        section.notes += notes
        sections.append(section)
    return sections


if __name__ == "__main__":
    raise SystemExit(main())

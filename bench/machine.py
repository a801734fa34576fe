"""The machine and software a report was measured on."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from bench.processes import REPO

PACKAGES = ("segment-assets", "dagster", "duckdb", "pyarrow", "httpx", "orjson", "dlt", "psutil")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        # Only trailing whitespace: porcelain lines start with a status column that may be a space.
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def describe() -> dict[str, str]:
    import psutil

    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    dirty = [line[3:] for line in _git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")]
    load = os.getloadavg()
    return {
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical cores ({psutil.cpu_count(logical=False)} physical)",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(versions),
        "commit": (_git("rev-parse", "--short", "HEAD") or "unknown")
        + (
            f" + uncommitted changes outside bench/ in {', '.join(dirty[:6])}"
            + (f" and {len(dirty) - 6} more" if len(dirty) > 6 else "")
            if dirty
            else ""
        ),
        "load average at start": f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)",
    }

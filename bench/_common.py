"""Shared helpers for bench/*.py (see shared/design/benchmarks.md).

Progress goes to stderr; figures go to stdout, one JSON object per line:
  {"bench": "<area>", "figure": "<name>", "value": <number>, "unit": "<unit>"}
"""

from __future__ import annotations

import json
import platform
import statistics
import sys


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def progress(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def figure(bench: str, name: str, value, unit: str) -> None:
    print(json.dumps({"bench": bench, "figure": name, "value": value, "unit": unit}), flush=True)


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    assert values, "percentile of nothing"
    xs = sorted(values)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def median(values) -> float:
    return statistics.median(values)

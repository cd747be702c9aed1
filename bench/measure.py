"""Samples and their summaries, and the facts about the machine a report starts with."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Samples:
    """Repeated measurements of one quantity (a unit such as "ms" or "texts/s")."""

    unit: str
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100)."""
        if not self.values:
            return float("nan")
        ordered = sorted(self.values)
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]

    def text(self, digits: int = 1) -> str:
        """'12.3 ms (min 11.0, max 15.2, n=5)' or, for one value, '12.3 ms'."""
        if len(self.values) == 1:
            return f"{self.median:.{digits}f} {self.unit}"
        return (
            f"{self.median:.{digits}f} {self.unit} (min {self.low:.{digits}f}, "
            f"max {self.high:.{digits}f}, n={len(self.values)})"
        )


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Result of ``fn()`` and its wall time in seconds."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def latencies_ms(fn: Callable[[str], object], queries: Iterable[str]) -> Samples:
    """Wall time of ``fn(q)`` for each query, in milliseconds."""
    out = Samples("ms")
    for query in queries:
        started = time.perf_counter()
        fn(query)
        out.add((time.perf_counter() - started) * 1000)
    return out


def fastest_of(runs: list[Samples]) -> float:
    """The fastest single call over all runs: close to the uncontended cost."""
    return min(min(run.values) for run in runs)


def percentile_runs(runs: list[Samples], p: float) -> Samples:
    """The p-th percentile of each run, as samples over runs (median, min, max across runs)."""
    out = Samples(runs[0].unit if runs else "ms")
    for run in runs:
        out.add(run.percentile(p))
    return out


def rss_mb(pid: int) -> float:
    """Resident set size of a process (VmRSS from /proc), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine() -> dict[str, str]:
    """Cores, CPU model, RAM, OS, and the load average at the time of the call."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "ram": f"{ram_gb:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def versions() -> dict[str, str]:
    names = ["chromadb", "llama-index-core", "onnxruntime", "bm25s", "fastapi", "uvicorn"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out

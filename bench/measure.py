"""Samples and their summaries, and the facts about the machine a report starts with."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

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


def cpu_s(pid: int) -> float:
    """The CPU seconds process ``pid`` has used (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, quiet: float = 0.05, window_s: float = 5.0, limit_s: float = 1800.0) -> float:
    """Wait until process ``pid`` uses less than ``quiet`` of a core over ``window_s`` (at most
    ``limit_s``); the seconds waited."""
    begun = time.perf_counter()
    while time.perf_counter() - begun < limit_s:
        before = cpu_s(pid)
        time.sleep(window_s)
        if cpu_s(pid) - before < quiet * window_s:
            break
    return time.perf_counter() - begun


def rss_mb(pid: int) -> float:
    """Resident set size of a process (VmRSS from /proc), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class TreeSampler:
    """The summed RSS (its peak) and CPU of this process and the processes it starts from now
    on, read from /proc every ``every_s`` seconds in a thread."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s, self.peak_kb, self.pss_peak_kb = every_s, 0, 0
        self.before = set(descendants(os.getpid()))  # a Chroma server started earlier: not ours
        self.cpu: dict[int, float] = {}  # pid -> its CPU seconds when last seen
        self.threads: dict[int, tuple[str, float]] = {}  # this process' threads: name, CPU
        self.own_kb = {"RssAnon": 0, "RssFile": 0}  # this process' peaks of each
        self.timeline: list[tuple[float, int, int, int]] = []  # every 2 s: t, anon, file, sum MB
        self._began = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        ours = [os.getpid()] + [p for p in descendants(os.getpid()) if p not in self.before]
        total, pss, own = 0, 0, {}
        for pid in ours:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                used = cpu_s(pid)
            except OSError:
                continue  # ended meanwhile
            kb = {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in status.splitlines())
                  if k in ("VmRSS", "RssAnon", "RssFile")}  # fmt: skip
            total += kb.get("VmRSS", 0)
            pss += pss_kb(pid)
            self.cpu[pid] = used
            if pid == os.getpid():
                own = kb
                for key in self.own_kb:
                    self.own_kb[key] = max(self.own_kb[key], kb.get(key, 0))
        self.peak_kb = max(self.peak_kb, total)
        self.pss_peak_kb = max(self.pss_peak_kb, pss)
        at = time.perf_counter() - self._began
        if not self.timeline or at - self.timeline[-1][0] >= 2.0:
            mb = [own.get("RssAnon", 0) // 1024, own.get("RssFile", 0) // 1024, total // 1024]
            self.timeline.append((round(at, 1), mb[0], mb[1], mb[2]))
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            try:
                name, rest = task.joinpath("stat").read_text().split("(", 1)[1].rsplit(")", 1)
            except OSError:
                continue
            fields = rest.split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            self.threads[int(task.name)] = (name, cpu)

    def by_thread(self) -> dict[str, float]:
        """CPU seconds of this process' threads (those seen) by name."""
        out: dict[str, float] = {}
        for name, cpu in self.threads.values():
            out[name] = round(out.get(name, 0.0) + cpu, 1)
        return out


def pss_kb(pid: int) -> int:
    """The process' proportional set size: its RSS with each shared page divided among the
    processes sharing it (workers forked from one server share their imports)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(ln.split()[1]) for ln in rollup.splitlines() if ln.startswith("Pss:")), 0)


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


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

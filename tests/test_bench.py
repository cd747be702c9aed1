"""Smoke test of the benchmark harness: `python -m bench --quick --no-write` runs every phase
and prints a report with every section, without touching BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import scale
from bench.measure import settle
from bench.report import SECTIONS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.integration
def test_quick_bench_prints_every_section_and_writes_nothing() -> None:
    benchmarks = REPO / "BENCHMARKS.md"
    before = benchmarks.read_bytes() if benchmarks.exists() else None
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-write"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout
    for section in SECTIONS:
        assert section in report, f"missing {section!r}"
    assert "| Search p50, bundled corpus |" in report
    assert (
        "| Texts embedded by the re-ingest | 0 |" in report
    )  # the unchanged re-ingest embedded nothing
    assert "| Errors | 0 |" in report
    after = benchmarks.read_bytes() if benchmarks.exists() else None
    assert after == before


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_scale_section_runs_tiny_and_writes_nothing() -> None:
    """`python -m bench --scale N` at a tiny N: a store of 1,000 chunks, two replicas, small
    ingests through the pipeline; every figure of the section is measured."""
    benchmarks = REPO / "BENCHMARKS.md"
    before = benchmarks.read_bytes() if benchmarks.exists() else None
    command = [sys.executable, "-m", "bench", "--scale", "1000", "--ingest", "60"]
    # A rate one client keeps up with on a loaded machine (a search took 45 ms in a CI run):
    # behind schedule, an open loop's searches count from when they were due, so those sent
    # during a short ingest were all due before it began and none counted as busy.
    command += ["--visible", "20", "--poll-s", "1", "--quick", "--no-write", "--search-rate", "10"]
    bench = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its servers go with it, whatever happens here
    )
    try:
        report, errors = bench.communicate(timeout=1500)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 0, errors[-3000:]
    assert report.startswith(scale.HEADING), report[:500]
    assert "Searches: one client, open loop at 10 a second" in report
    assert "| Chunks / sentence records in the store | 1,000 / " in report
    for row in ("Search p50, idle", "Search p99 while an ingest of", "cold build"):
        assert row in report
    visible = next(line for line in report.splitlines() if "end of writes to visible, per" in line)
    assert "gave up" not in visible and "n/a" not in visible, visible
    assert "n/a" not in report.split("| Bundled corpus", 1)[1].splitlines()[0]
    documents = next(line for line in report.splitlines() if line.startswith("| Documents: GET"))
    assert "n/a" not in documents, documents
    steps = next(line for line in report.splitlines() if line.startswith("| Where searches"))
    for step in ("busy: slowest", "idle: slowest", "lexical", "embed", "dense", "sentence"):
        assert step in steps, steps
    after = benchmarks.read_bytes() if benchmarks.exists() else None
    assert after == before


def test_an_open_loop_sends_on_schedule_and_counts_a_late_start_as_waiting() -> None:
    """Search i is due i / rate s after the first: an early caller waits for it; a caller
    late behind a slow search gets the time it was due, so the wait counts in its latency."""
    clock = scale.Clock(rate=20.0)  # one every 50 ms
    first = clock.due()
    second = clock.due()
    assert time.perf_counter() >= second == pytest.approx(first + 0.05)
    time.sleep(0.2)  # a slow search: the next two are due in the past
    third, fourth = clock.due(), clock.due()
    assert (third, fourth) == (pytest.approx(first + 0.10), pytest.approx(first + 0.15))
    assert time.perf_counter() - third >= 0.1


def test_a_closed_loop_counts_from_now() -> None:
    clock = scale.Clock()
    before = time.perf_counter()
    assert before <= clock.due() <= time.perf_counter()


def test_settle_waits_until_a_process_is_quiet() -> None:
    """The scale bench times the cold build once the Chroma server has done its own work:
    settle returns once the process has been quiet for a window, not while it computes."""
    busy = "import time\nend = time.time() + 2\nwhile time.time() < end: pass\ntime.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        waited = settle(child.pid, window_s=1.0)
    finally:
        child.kill()
        child.wait()
    assert 1.5 <= waited < 30.0

"""Smoke test of the benchmark harness: `python -m bench --quick --no-write` runs every phase
and prints a report with every section, without touching BENCHMARKS.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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

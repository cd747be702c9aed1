"""A short, bounded load test: ``bench.load`` against a ``citeqa serve`` subprocess over the
bundled corpus (a copy of the session's ingested store), 4 clients for 5 s, no errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.load import ApiProcess, main
from citeqa.config import Settings
from tests.servers import child_env

pytestmark = pytest.mark.integration


def test_load_for_five_seconds_without_errors(corpus_settings: Settings, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(corpus_settings.data_dir, store)  # one process per embedded store
    env = child_env(CITEQA_DATA_DIR=str(store), CITEQA_GENERATOR="extractive")
    report = tmp_path / "load.json"
    with ApiProcess(env, tmp_path / "api.log").start(180) as api:
        argv = ["--url", api.url, "--seconds", "5", "--concurrency", "4", "--json", str(report)]
        assert main(argv) == 0
    result = json.loads(report.read_text())
    assert result["errors"] == 0, result["error_samples"]
    assert set(result["endpoints"]) == {"search", "ask"}
    assert result["requests"] >= 4 and result["throughput_rps"] > 0
    assert 4.5 <= result["seconds"] < 60  # it stopped by itself, soon after the 5 s
    assert result["endpoints"]["search"]["p50_ms"] <= result["endpoints"]["search"]["p95_ms"]

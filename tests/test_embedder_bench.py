"""bench/embedder_concurrency.py: its quick run measures every concurrency against the fake
server in a child process, and it rewrites only its own section of BENCHMARKS.md."""

from __future__ import annotations

import pytest

from bench import embedder_concurrency as bench

OTHER = "# Benchmarks\n\nintro\n\n## Ingest\n\ningest text\n"


def test_its_section_is_appended_then_replaced_in_place() -> None:
    first = bench.replace_section(OTHER, f"{bench.HEADING}\n\nold figures\n")
    assert first.startswith(OTHER.rstrip("\n")) and first.endswith("old figures\n")
    # between two other sections: replaced in place, the sections around it kept
    middle = first + "\n## Method\n\nmethod text\n"
    second = bench.replace_section(middle, f"{bench.HEADING}\n\nnew figures\n")
    assert "old figures" not in second and second.count(bench.HEADING) == 1
    assert second.index("ingest text") < second.index("new figures") < second.index("## Method")
    assert second.endswith("method text\n")


def test_the_ceiling_counts_rounds_of_requests() -> None:
    result = bench.Result(texts=100, batch_size=16, passes=1)  # 7 requests
    assert bench.ceiling(result, 1) == pytest.approx(100 / (7 * bench.LATENCY_S))
    assert bench.ceiling(result, 4) == pytest.approx(100 / (2 * bench.LATENCY_S))
    assert bench.ceiling(result, 8) == pytest.approx(100 / (1 * bench.LATENCY_S))


@pytest.mark.integration
@pytest.mark.slow
def test_quick_run_measures_every_concurrency() -> None:
    result = bench.run(quick=True)
    assert set(result.by_concurrency) == set(bench.CONCURRENCIES)
    for samples in result.by_concurrency.values():
        assert len(samples.values) == 1 and samples.median > 0
    text = bench.section(result)
    assert text.startswith(bench.HEADING)
    assert all(f"\n| {c} | " in text for c in bench.CONCURRENCIES)

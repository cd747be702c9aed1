"""Paced ingests (ingest/pacing.py): the records an ingest writes a second stay under
``CITEQA_INGEST_MAX_RECORDS_PER_S``, into a real (embedded) Chroma."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from ingest.pacing import SLICE_S, Pacer, paced_upsert
from ingest.run import ingest_paths


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_pacer_waits_until_the_records_written_are_due() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, sleep=clock.sleep)
    clock.now += 0.1  # the first batch embedded and written in 0.1 s
    pacer.wrote(50)  # due at 0.5 s
    assert clock.slept == [pytest.approx(0.4)]
    clock.now += 0.7  # a slow write: already past due, no wait
    pacer.wrote(50)  # due at 1.0 s, the clock says 1.2
    assert len(clock.slept) == 1
    pacer.wrote(100)  # due at 2.0 s
    assert clock.slept[-1] == pytest.approx(0.8)


def test_an_unpaced_ingest_never_waits() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    pacer.wrote(10_000)
    assert clock.slept == []


class Upserts:
    """A collection's ``upsert`` that records the ids of each call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def upsert(self, ids: list[str], **columns: list[object]) -> None:
        assert all(len(column) == len(ids) for column in columns.values())
        self.calls.append(list(ids))


def test_a_paced_write_goes_in_slices_of_what_is_due_in_a_tenth_of_a_second() -> None:
    """Chroma makes a query of a collection wait for a write to it: a paced ingest writes
    little at a time, and waits after each slice."""
    clock = FakeClock()
    pacer = Pacer(50.0, clock=clock, sleep=clock.sleep)
    assert pacer.slice == round(50 * SLICE_S) == 5
    collection = Upserts()
    ids = [f"s{i}" for i in range(12)]
    paced_upsert(collection, pacer, ids, documents=[i.upper() for i in ids])
    assert collection.calls == [ids[:5], ids[5:10], ids[10:]]
    assert clock.slept == [pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.04)]


def test_an_unpaced_write_is_one_upsert() -> None:
    collection = Upserts()
    ids = [f"s{i}" for i in range(300)]
    paced_upsert(collection, Pacer(None), ids, documents=ids)
    assert collection.calls == [ids]


def test_a_paced_ingest_writes_no_faster_than_its_rate(tmp_path: Path, embedder: Embedder) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(6):
        sentences = " ".join(f"Finding {i}.{j} holds for {j + 2} datasets." for j in range(8))
        (root / f"paper{i}.md").write_text(f"# Paper {i}\n\n{sentences}\n")
    unpaced = Settings(data_dir=tmp_path / "a", generator="extractive")
    begun = time.monotonic()
    (summary,) = ingest_paths(unpaced, [root], embedder=embedder)
    fast = time.monotonic() - begun
    records = summary.embedded
    assert records > 40
    rate = records / (fast + 2.0)  # at least 2 s slower than unpaced, whatever the machine
    paced = Settings(data_dir=tmp_path / "b", generator="extractive", ingest_max_records_per_s=rate)
    begun = time.monotonic()
    (again,) = ingest_paths(paced, [root], embedder=embedder)
    assert again.embedded == records
    assert time.monotonic() - begun >= records / rate - 0.05  # the last batch's wait rounds

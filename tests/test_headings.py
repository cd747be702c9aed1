"""A heading line of a document names a topic and states nothing: the extractive answer quotes
the sentences under it, never the heading itself (service/answering/evidence.py)."""

from __future__ import annotations

import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from ingest.run import ingest_paths
from service.answering.engine import Engine, build_engine
from service.answering.evidence import heading_key

MANUAL = """# Field Guide to Loom Calibration

## 1 Overview

This guide covers the yearly service of weaving looms in small workshops.

## 2 The warp tension index

### 2.1 Why the warp tension index matters

The warp tension index is the ratio of the measured thread tension to the rated tension of
the loom. Values above 1.2 break threads within an hour of weaving.

## 3 Shuttle alignment

Shuttles drift by about two millimetres a month and are realigned with a brass gauge.
"""


@pytest.fixture(scope="module")
def manual_engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    root = tmp_path_factory.mktemp("manual")
    docs = root / "docs"
    docs.mkdir()
    (docs / "loom-guide.md").write_text(MANUAL, encoding="utf-8")
    settings = Settings(data_dir=root / "store", generator="extractive")
    for _ in ingest_paths(settings, [docs], embedder=embedder):
        pass
    return build_engine(settings, embedder=embedder)


def _headings() -> set[str]:
    lines = [line.lstrip("#").strip() for line in MANUAL.splitlines() if line.startswith("#")]
    return {heading_key(line) for line in lines}


@pytest.mark.parametrize(
    "question",
    [
        "What is the warp tension index?",
        "Why does the warp tension index matter?",
        "shuttle alignment",
    ],
)
def test_headings_are_not_quoted_as_answers(manual_engine: Engine, question: str) -> None:
    answer = manual_engine.ask(question)
    assert not answer.refused
    quoted = {heading_key(c.quote) for c in answer.citations}
    assert quoted, answer.answer
    assert not quoted & _headings(), answer.answer


def test_a_heading_key_ignores_its_section_number_and_punctuation() -> None:
    assert heading_key("2.2. Creation of 'zooreg' objects") == heading_key(
        "Creation of zooreg objects"
    )
    assert heading_key("1 The concordance statistic") == heading_key("The Concordance Statistic")
    assert heading_key("A.1 Proofs") == heading_key("Proofs")
    assert heading_key("The 2 models agree.") != heading_key("models agree")

"""Offline answers by question class (issue 14), over the real ingested bundled corpus: a
definition answers with the sentence that introduces its subject, a question about documents
with each matching document once, an overview of the collection with several documents."""

from __future__ import annotations

import pytest

from service.answering.answer import Answer
from service.answering.engine import Engine
from service.answering.evidence import _defines


def _quotes_by_document(answer: Answer) -> dict[str, list[str]]:
    quotes: dict[str, list[str]] = {}
    for citation in answer.citations:
        quotes.setdefault(citation.doc_id, []).append(citation.quote)
    return quotes


def test_what_is_x_answers_with_the_paper_that_introduces_x(engine: Engine) -> None:
    """ "DeepNet" is named only by its paper's title; "DeepNets-1M" (another paper's dataset)
    is another name, so its "We introduce ... DeepNets-1M" does not define DeepNet."""
    answer = engine.ask("What is DeepNet?")
    assert not answer.refused
    first = answer.citations[0]
    assert first.title.startswith("DeepNet: Scaling Transformers")
    assert "propose" in first.quote or "introduce" in first.quote


@pytest.mark.parametrize(
    ("sentence", "subject", "title", "defines"),
    [
        ("We introduce a dataset of graphs, DeepNets-1M.", "DeepNet", "Graphs", False),
        ("In this paper, we propose a way to train deep nets.", "DeepNet", "DeepNet: X", True),
        ("The GDPR stands for the General Data Protection Regulation.", "GDPR", "Law", True),
        ("A zooreg series is a regular series.", "zooreg series", "zoo", True),
        ("Mixers, which are the fastest, are rare.", "Mixers", "Other", True),
        ("Mixers fail on long inputs.", "Mixers", "Other", False),
    ],
)
def test_what_defines_a_subject(sentence: str, subject: str, title: str, defines: bool) -> None:
    assert _defines(sentence, subject, title) is defines


def test_which_papers_lists_each_matching_document_once(engine: Engine) -> None:
    answer = engine.ask("Which papers are about KV cache compression?")
    assert not answer.refused
    assert len({hit.doc_id for hit in answer.sources}) == len(answer.sources)
    quotes = _quotes_by_document(answer)
    assert len(quotes) >= 3
    # a sentence each, and at most one more for a part of the question none states
    assert sum(len(q) for q in quotes.values()) <= len(quotes) + 1, quotes
    assert all("KV" in " ".join(q) for q in quotes.values())


def test_an_overview_question_lists_several_documents(engine: Engine) -> None:
    answer = engine.ask("What is this corpus about?")
    assert not answer.refused
    quotes = _quotes_by_document(answer)
    assert len(quotes) >= 3
    assert sum(len(q) for q in quotes.values()) <= len(quotes) + 1, quotes

"""Questions about documents (issue 14), through the engine over the real ingested bundled
corpus: "which papers are about X?" lists every matching document, however many the default
``top_k`` would have kept; "what is this corpus about?" is answered from the collection as a
whole, whatever its wording."""

from __future__ import annotations

import numpy as np
import pytest

from service.answering import overview
from service.answering.answer import Answer
from service.answering.engine import Engine
from service.answering.overview import MIN_WORDS, rank_documents, representatives, topic_terms
from service.answering.question import Question


def _cited_titles(answer: Answer) -> set[str]:
    return {citation.title for citation in answer.citations}


def _titles(engine: Engine) -> set[str]:
    return {str(doc["title"]) for doc in engine.retriever.listing().documents_after(None, 10_000)}


def test_which_papers_lists_every_document_the_question_is_about(engine: Engine) -> None:
    """Six papers of the corpus bear "DeepSeek" in their title, more than the five sources a
    fact question reads: a list question ranks documents, not the top chunks, so each is
    named, and no paper that never mentions DeepSeek is."""
    wanted = {t for t in _titles(engine) if "DeepSeek" in t}
    assert len(wanted) > engine.settings.top_k
    answer = engine.ask("Which papers are about DeepSeek models?")
    assert not answer.refused
    cited = _cited_titles(answer)
    assert wanted <= cited, wanted - cited
    texts = {hit.title: hit.text.lower() for hit in answer.sources}
    assert all("deepseek" in texts[title] for title in cited)


def test_a_callers_top_k_bounds_the_list(engine: Engine) -> None:
    """Without a ``top_k`` the list names every matching document (above); a caller that asks
    for at most three sources gets three, from the answer and from a search alike."""
    question = "Which papers are about DeepSeek models?"
    answer = engine.ask(question, top_k=3)
    assert not answer.refused
    assert len(answer.sources) == 3
    assert len(_cited_titles(answer)) <= 3
    assert len(engine.search(question, 3)) == 3


def test_the_topic_of_a_list_question_leaves_out_how_it_asks() -> None:
    """The documents' noun and the verb asking for them are no topic."""
    asked = Question.parse("Which survival vignettes use the flchain data?")
    assert topic_terms(asked) == topic_terms(Question.parse("flchain survival data"))


def test_the_collection_overview_does_not_depend_on_the_wording(engine: Engine) -> None:
    """Asked about the collection as a whole, the engine describes the same documents
    however the question is put, each by a sentence that says something (not a heading)."""
    first = engine.ask("What is this corpus about?")
    second = engine.ask("What topics does the collection cover?")
    assert not first.refused and not second.refused
    assert len(_cited_titles(first)) >= 3
    assert _cited_titles(first) == _cited_titles(second)
    assert all(len(c.quote.split()) >= MIN_WORDS for c in first.citations)


@pytest.fixture
def clustered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of vectors of each clustering (overview.representatives) from now on."""
    sizes: list[int] = []
    cluster = overview.representatives

    def counted(vectors: np.ndarray, k: int = overview.MAX_TOPICS) -> list[int]:
        sizes.append(len(vectors))
        return cluster(vectors, k)

    monkeypatch.setattr(overview, "representatives", counted)
    return sizes


def test_the_overview_is_found_once_per_state_of_the_collection(
    engine: Engine, clustered: list[int]
) -> None:
    """The documents that stand for the collection depend on the collection alone: a second
    overview question over the same view reuses them (no second read of every document's
    first chunk, no second clustering) and cites the same documents."""
    engine.retriever._overviews.clear()  # what an earlier test may have left
    first = engine.ask("What is this corpus about?")
    second = engine.ask("What topics does the collection cover?")
    assert len(clustered) == 1
    assert _cited_titles(first) == _cited_titles(second)


def test_a_collection_larger_than_the_sample_is_described_from_the_sample(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, clustered: list[int]
) -> None:
    """Past ``overview.SAMPLE`` documents, the overview groups the first chunks of the sample
    the lexical view draws (by a hash of the ids: every replica the same), read by id: it
    cites only sampled documents, and clusters as many vectors as it sampled."""
    engine.retriever._overviews.clear()
    monkeypatch.setattr(overview, "SAMPLE", 12)
    drawn = engine.retriever.listing().sample(12)
    assert len(drawn) == 12
    sampled = {engine.retriever.listing().chunks([cid])[cid].metadata["title"] for cid in drawn}
    answer = engine.ask("What is this corpus about?")
    engine.retriever._overviews.clear()  # the next test's overview is of the whole corpus
    assert not answer.refused
    assert clustered == [12]
    assert len(_cited_titles(answer)) >= 3
    assert _cited_titles(answer) <= sampled


def test_representatives_take_one_document_of_each_group() -> None:
    """Three tight groups of documents: one representative each, the largest group first."""
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    sizes = [5, 2, 3]
    rows = [
        c + 0.01 * rng.standard_normal(8)
        for c, n in zip(centres, sizes, strict=True)
        for _ in range(n)
    ]
    vectors = np.asarray(rows) / np.linalg.norm(rows, axis=1, keepdims=True)
    chosen = representatives(vectors, k=3)
    assert [int(np.argmax(vectors[i][:3])) for i in chosen] == [0, 2, 1]


def test_a_document_is_listed_when_its_evidence_is_near_the_best_ones() -> None:
    """Kept: at least half-way from the pool's median document to the best one. Two documents
    hold the topic and are close to the question, three neither: the two are listed, whatever
    the absolute level of the cosines."""
    from service.answering.corpus import CorpusStats
    from service.answering.lexical_views import Chunk

    texts = {
        "a": "Cox models handle tied event times with the Efron approximation.",
        "b": "The Efron approximation for ties in Cox models.",
        "c": "Reading data from files.",
        "d": "Plotting a time series.",
        "e": "Installing the package.",
    }
    pool = {f"{d}#0": Chunk(f"{d}#0", text, {"doc_id": d}) for d, text in texts.items()}
    stats = CorpusStats(idf={"efron": 3.0, "approxim": 2.0, "cox": 1.0}, default_idf=3.0)
    asked = Question.parse("Which documents discuss the Efron approximation in Cox models?")
    for shift in (0.0, 0.3):  # another embedding model: other cosines, the same order
        cosine = {"a#0": 0.5 + shift, "b#0": 0.45 + shift, "c#0": 0.2 + shift, "d#0": 0.15 + shift}
        listed = rank_documents(asked, pool, cosine, stats)
        assert [cid for cid, _ in listed] == ["a#0", "b#0"]

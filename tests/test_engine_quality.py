"""Retrieval and answers on the development set, over the real ingested bundled corpus.

These are quality floors on the whole dev set, not checks of single questions; the eval gate
(tests/test_eval_run.py) tracks the exact figures against evals/baseline.json.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from citeqa.errors import InputError
from evals.dataset import EvalItem, load_dataset
from evals.metrics import fact_in_text
from service.answering.engine import Engine

DEV = load_dataset(Path(__file__).parents[1] / "evals" / "datasets" / "dev.jsonl")
ANSWERABLE = [item for item in DEV if item.type != "unanswerable"]
UNANSWERABLE = [item for item in DEV if item.type == "unanswerable"]


@pytest.mark.parametrize(
    ("query", "title_start"),
    [
        ("FastV", "An Image is Worth 1/2 Tokens After Layer 2"),
        ("DeepSeek-V3", "DeepSeek-V3 Technical Report"),
        ("GLM-130B", "GLM-130B: An Open Bilingual Pre-trained Model"),
    ],
)
def test_exact_names_are_found(engine: Engine, query: str, title_start: str) -> None:
    hits = engine.search(query, 3)
    assert hits[0].title.startswith(title_start)
    assert hits[0].ranks.get("lexical", 99) <= 3, "the lexical side finds exact names"


def test_paraphrase_is_found_by_the_dense_side(engine: Engine) -> None:
    hits = engine.search("randomly skipping residual blocks while training very deep networks", 5)
    assert hits[0].title == "Deep Networks with Stochastic Depth"
    assert hits[0].ranks.get("dense", 99) <= 3


def test_gold_paper_in_top_5_for_95_percent_of_answerable_dev_questions(engine: Engine) -> None:
    found = [
        any(h.title in item.gold_titles for h in engine.search(item.question, 5))
        for item in ANSWERABLE
    ]
    assert sum(found) / len(found) >= 0.95


def _answer_checks(engine: Engine, item: EvalItem) -> tuple[bool, bool]:
    answer = engine.ask(item.question)
    for citation in answer.citations:
        source = answer.sources[citation.n - 1]
        assert source.chunk_id == citation.chunk_id
        body_start = int(source.metadata["start"])
        assert (
            source.body[citation.start - body_start : citation.end - body_start] == citation.quote
        )
    has_facts = all(fact_in_text(fact, answer.answer) for fact in item.key_facts)
    cites_gold = any(c.title in item.gold_titles for c in answer.citations)
    return has_facts, cites_gold


def test_extractive_answers_state_the_fact_and_cite_the_gold_paper(engine: Engine) -> None:
    facts = [item for item in ANSWERABLE if item.type == "fact"]
    results = [_answer_checks(engine, item) for item in facts]
    assert sum(r[0] for r in results) / len(results) >= 0.8
    assert sum(r[1] for r in results) / len(results) >= 0.9


def test_a_question_about_several_named_papers_cites_each(engine: Engine) -> None:
    """Multi-paper dev questions whose names are split between papers ("... of Apollo-7B and
    of LongVA-7B"): the answer quotes each gold paper, not only the best-scoring one."""
    split = [
        item
        for item in ANSWERABLE
        if item.type == "multi" and engine.prepare(item.question).names.split()
    ]
    assert len(split) >= 10
    cited_all = [
        set(item.gold_titles) <= {c.title for c in engine.ask(item.question).citations}
        for item in split
    ]
    assert sum(cited_all) / len(cited_all) >= 0.85


def test_unanswerable_questions_are_refused_with_closest_sources(engine: Engine) -> None:
    answers = [engine.ask(item.question) for item in UNANSWERABLE]
    # 0.6, not 0.7: the rules that only fit this set's phrasing ("which GPU / LLM backbone",
    # numeric words like "accuracy" or "epochs") went in issue 14; they refused 0.07 + 0.04
    # of these near misses and none of r-vignettes'.
    assert sum(a.refused for a in answers) / len(answers) >= 0.6
    for answer in answers:
        if answer.refused:
            assert answer.citations == []
            assert answer.answer.startswith("The corpus does not contain")
            assert "[1]" in answer.answer or not answer.sources


def test_off_topic_question_is_refused(engine: Engine) -> None:
    answer = engine.ask("How do I bake a sourdough bread with a crispy crust?")
    assert answer.refused


@pytest.mark.parametrize("top_k", [0, 51])
def test_top_k_is_bounded(engine: Engine, top_k: int) -> None:
    with pytest.raises(InputError, match="top_k"):
        engine.ask("What is FastV?", top_k)


def test_question_length_is_bounded(engine: Engine) -> None:
    with pytest.raises(InputError, match="limit is 2000"):
        engine.ask("x" * 2001)

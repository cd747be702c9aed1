"""The extractive answer's text: each quoted sentence stays a claim of its own, cited to its
own chunk, even when a quote (a code line, a URL) has no full stop."""

from __future__ import annotations

from evals.metrics import answer_sentences, grounded
from service.answering.citations import validate
from service.answering.evidence import Candidate, Evidence
from service.answering.extractive import render, select_sentences
from service.answering.question import Question
from service.answering.retrieval import Hit

CODE = "R> fit <- tmerge(data1, data2, id = id, death = event(futime, fustat))"
PROSE = "The event() and cumevent() arguments add endpoints to the data set."
URL = "The package is available from https://cran.r-project.org/package=survival"


def _hit(n: int, body: str) -> Hit:
    title = "Time Dependent Covariates"
    return Hit(
        chunk_id=f"doc#{n}",
        doc_id="doc",
        title=title,
        text=f"{title}\n{body}",
        score=1.0,
        url="",
        metadata={"prefix_len": len(title) + 1},
    )


def _quote(hit_index: int, text: str) -> Candidate:
    return Candidate(
        hit_index=hit_index,
        position=0,
        text=text,
        start=0,
        end=len(text),
        similarity=0.5,
        coverage=0.5,
        detail=0.5,
        has_number=False,
    )


def _answer(first: str, second: str) -> tuple[str, list[Hit]]:
    hits = [_hit(1, f"Create the data. {first}"), _hit(2, f"{second} More text follows here.")]
    evidence = Evidence(
        question=Question.parse("Which arguments add variables in tmerge?"),
        hits=hits,
        candidates=[_quote(0, first), _quote(1, second)],
    )
    return validate(render(evidence, evidence.candidates), hits).text, hits


def test_a_quote_without_a_full_stop_does_not_run_into_the_next_one() -> None:
    for first in (CODE, URL):
        text, hits = _answer(first, PROSE)
        sentences = answer_sentences(text)
        assert [s.cited for s in sentences] == [(1,), (2,)], text
        # each claim is grounded in the one stored chunk it cites (evals.metrics' rule)
        assert all(grounded(s.claim, hits[s.cited[0] - 1].text) for s in sentences), text


def test_quotes_that_end_their_sentences_share_one_line() -> None:
    text, _ = _answer("The tmerge function builds counting process data.", PROSE)
    assert "\n" not in text.split(": ", 1)[1]
    assert [s.cited for s in answer_sentences(text)] == [(1,), (2,)]


def _placed(position: int, text: str, score: float) -> Candidate:
    cand = _quote(0, text)
    cand.position, cand.score = position, score
    return cand


def _chosen(first: str) -> list[str]:
    hit = _hit(1, "whatever")
    candidates = [
        _placed(0, first, 2.0),
        _placed(1, "glmnet.control(itrace = 1)", 0.4),
        _placed(2, "The bar slows the fit down a little.", 0.3),
    ]
    evidence = Evidence(
        question=Question.parse("How do I make glmnet always show a progress bar?"),
        hits=[hit],
        candidates=candidates,
    )
    return [c.text for c in select_sentences(evidence)]


def test_a_sentence_that_announces_the_next_one_brings_it_along() -> None:
    """The best sentence ends with a colon (or is the question itself, as a FAQ heading):
    what it announces is the next sentence, however poorly that one scores alone."""
    announcing = "To always print the progress bar, call glmnet.control with itrace:"
    assert "glmnet.control(itrace = 1)" in _chosen(announcing)
    asking = "How can glmnet always print the progress bar?"
    assert "glmnet.control(itrace = 1)" in _chosen(asking)
    stating = "The progress bar is printed when trace.it is TRUE."
    assert _chosen(stating) == [stating]


def test_the_runner_up_of_the_best_document_may_come_from_its_next_chunk() -> None:
    """Where a chunk ends is no boundary of what a document says: the document's second
    sentence scoring nearly as well as its best is quoted too, whichever chunk holds it."""
    hits = [_hit(1, "first chunk"), _hit(2, "second chunk"), _hit(3, "another document")]
    hits[2].doc_id = "other"
    best = _placed(0, "lme4 lacks influence diagnostics such as Cook's distance.", 2.0)
    second = _quote(1, "They are available in the packages HLMdiag and influence.ME.")
    second.score = 1.9
    elsewhere = _quote(2, "Another package fits mixed models.")
    elsewhere.score = 1.0
    evidence = Evidence(
        question=Question.parse("Which packages provide influence diagnostics for lme4?"),
        hits=hits,
        candidates=[best, second, elsewhere],
    )
    assert select_sentences(evidence) == [best, second]

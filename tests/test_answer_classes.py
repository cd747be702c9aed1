"""Offline answers by question class (issue 14), over the real ingested bundled corpus: a
definition answers with the sentence that introduces its subject, a question about documents
with each matching document once, an overview of the collection with several documents."""

from __future__ import annotations

import pytest

from service.answering.answer import Answer
from service.answering.engine import Engine
from service.answering.evidence import Evidence
from service.answering.extractive import select_sentences
from service.answering.features import NameMatch
from service.answering.question import Question
from service.answering.sentence_roles import defines, refers_back
from tests.evidence_parts import candidate, titled_hit


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
    ("sentence", "subject", "title", "expected"),
    [
        ("We introduce a dataset of graphs, DeepNets-1M.", "DeepNet", "Graphs", False),
        ("In this paper, we propose a way to train deep nets.", "DeepNet", "DeepNet: X", True),
        ("The GDPR stands for the General Data Protection Regulation.", "GDPR", "Law", True),
        ("A zooreg series is a regular series.", "zooreg series", "zoo", True),
        ("Mixers, which are the fastest, are rare.", "Mixers", "Other", True),
        ("Mixers fail on long inputs.", "Mixers", "Other", False),
        ("We describe a new solver, named Quokka, for sparse systems.", "Quokka", "Other", True),
        # the name comes before the verb: what is proposed is not the subject
        ("We list where Quokka fails and propose fixes for later work.", "Quokka", "Q", False),
        # without the name, "named" or "called" introduce nothing: only "we propose / present
        # / introduce" says what a document about its subject proposes
        ("The arguments are named in the call.", "relaxed lasso", "The Relaxed Lasso", False),
        # a sentence that spells an abbreviation out says what it is, either way round
        ("The Quick Sparse Solver (QSS) model runs in linear time.", "QSS", "Other", True),
        ("The Quick Sparse Solver (QSS) runs in linear time.", "Quick Sparse Solver", "O", True),
        ("We use QSS (Quick Sparse Solver) on every system.", "QSS", "Other", True),
        # parentheses that do not spell the name out define nothing
        ("We compare with QSS (Lee et al., 2021) and others.", "QSS", "Other", False),
    ],
)
def test_what_defines_a_subject(sentence: str, subject: str, title: str, expected: bool) -> None:
    assert defines(sentence, subject, title) is expected


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


def test_the_document_both_dense_rankings_put_first_is_quoted_too() -> None:
    """A paraphrase shares words with another paper's sentence (it scores best), but the
    chunk and the sentence embeddings both rank the other paper first: the answer shows both."""
    hits = [
        titled_hit("lexical", "Words Alike", {"lexical": 1, "dense": 4}),
        titled_hit("dense", "Meaning Alike", {"dense": 1, "sentence": 1, "lexical": 9}),
    ]
    lexical = candidate(0, "Skipping layers at random in training words alike.", 2.0)
    dense = candidate(1, "Dropping whole residual blocks during training helps.", 1.2)
    evidence = Evidence(
        question=Question.parse("How can randomly leaving out layers while training help?"),
        hits=hits,
        candidates=[lexical, dense],
    )
    assert select_sentences(evidence) == [lexical, dense]
    # no second paper when the dense rankings disagree with each other
    hits[1].ranks = {"dense": 1, "sentence": 3}
    hits[0].ranks = {"sentence": 1}
    assert select_sentences(evidence) == [lexical]


def test_a_comparison_quotes_the_paper_of_each_named_thing() -> None:
    """Alpha-7B's paper names BetaBench too and scores best, but BetaBench's own paper is the
    one about it: the answer quotes it as well, however low its sentence scores."""
    hits = [
        titled_hit("alpha", "Alpha-7B: A Video Model", {"dense": 1}),
        titled_hit("beta", "BetaBench: A Long Video Benchmark", {"sentence": 1}),
    ]
    alpha = candidate(0, "Alpha-7B reaches 70.9 on BetaBench.", 2.0)
    beta = candidate(1, "BetaBench evaluates twenty models on long videos.", 0.5)
    question = Question.parse(
        "What does Alpha-7B score on BetaBench, and how many models did BetaBench test?"
    )
    names = NameMatch(
        asked=list(question.names),
        weight={"Alpha-7B": 5.0, "BetaBench": 4.0},
        by_doc={"alpha": {"Alpha-7B", "BetaBench"}, "beta": {"BetaBench"}},
        rare={"Alpha-7B", "BetaBench"},
        distinctive_names={"Alpha-7B", "BetaBench"},
    )
    evidence = Evidence(question=question, hits=hits, candidates=[alpha, beta], names=names)
    assert question.names == ("Alpha-7B", "BetaBench")
    assert select_sentences(evidence) == [alpha, beta]


def test_a_sentence_that_continues_a_chosen_one_is_quoted_with_it() -> None:
    """The best sentence says what the option is for; the next one, which shares no word
    with the question but opens by referring back to it ("This ..."), says what it does. The
    two state one thing: the answer quotes both. A next sentence that starts anew is not
    added."""
    hits = [titled_hit("sandwich", "Clustered Covariances", {"dense": 1})]
    best = candidate(0, "The fix argument makes the covariance matrix positive semi-definite.", 2.0)
    best.position = 1
    after = candidate(0, "This is achieved by converting any negative eigenvalues to zero.", 0.4)
    after.position, after.refers_back = 2, refers_back(after.text)
    evidence = Evidence(
        question=Question.parse("What does the fix argument do to the covariance matrix?"),
        hits=hits,
        candidates=[best, after],
    )
    assert select_sentences(evidence) == [best, after]
    after.text = "Clusters are given by the cluster argument."  # starts anew
    after.refers_back = refers_back(after.text)
    assert select_sentences(evidence) == [best]


def test_the_sentence_closest_in_meaning_is_quoted_beside_the_lexical_choice() -> None:
    """The best sentence repeats the question's words; another sentence of its document is
    closer to the question in meaning (its embedding) and paraphrases the answer: the answer
    quotes both. Not when the best one is also the closest."""
    hits = [titled_hit("lme4", "Fitting Mixed Models", {"dense": 1})]
    lexical = candidate(0, "lme4 does not plot influence diagnostics such as leverage.", 2.0)
    lexical.position, lexical.similarity = 1, 0.58
    meaning = candidate(0, "These measures are available in the add-on package HLMdiag.", 1.6)
    meaning.position, meaning.similarity = 5, 0.70
    evidence = Evidence(
        question=Question.parse("How do I get influence diagnostics for lme4 fits?"),
        hits=hits,
        candidates=[lexical, meaning],
    )
    assert select_sentences(evidence) == [lexical, meaning]
    meaning.similarity = 0.50
    assert select_sentences(evidence) == [lexical]


def test_a_which_question_is_answered_with_a_sentence_that_names_the_thing() -> None:
    """ "Which system ...?" asks to identify a thing: when the best sentence names nothing
    the question does not, the best sentence of its document that does is quoted with it;
    not when the best one names it already, nor for a question that is not a "which"."""
    hits = [titled_hit("kv", "Offloading Attention to Storage", {"dense": 1})]
    best = candidate(0, "Decode-phase attention and the KV cache run inside the SSD.", 2.0)
    naming = candidate(0, "We present InstInfer, an in-storage inference system.", 0.9)
    other = candidate(0, "Throughput improves on long sequences.", 1.0)
    best.position, naming.position, other.position = 3, 0, 5
    question = "Which system moves decode-phase attention and the KV cache onto the SSD?"
    evidence = Evidence(
        question=Question.parse(question), hits=hits, candidates=[best, naming, other]
    )
    assert select_sentences(evidence) == [naming, best]
    evidence.question = Question.parse("How does decode-phase attention reach the SSD?")
    assert select_sentences(evidence) == [best]
    evidence.question = Question.parse(question)
    best.text = "Decode-phase attention and the KV cache run inside the SSD with FlashKV."
    assert select_sentences(evidence) == [best]

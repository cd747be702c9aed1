"""Questions that ask several things (issue 14): each part of a multi-part question gets the
sentence that answers it, from the document it is about, and no unrelated paper's sentence;
a list of documents quotes the sentence that names what each document presents."""

from __future__ import annotations

import pytest

from citeqa.text import term_set
from service.answering.evidence import Candidate, Evidence
from service.answering.extractive import select_sentences
from service.answering.features import NameMatch
from service.answering.parts import question_parts
from service.answering.question import Question
from tests.evidence_parts import candidate, titled_hit


def _sentences(question: Question, *specs: tuple[int, str, float]) -> list[Candidate]:
    """Candidates of hit ``i`` at successive positions, matching the question's terms they
    hold."""
    made = []
    for position, (hit_index, text, score) in enumerate(specs):
        cand = candidate(hit_index, text, score)
        cand.position = position
        cand.matched = frozenset(question.terms & term_set(text))
        made.append(cand)
    return made


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "A-1 and B-2 both prune tokens. What ratio does A-1 keep, and what metric does "
            "B-2 use?",
            ["What ratio does A-1 keep", "what metric does B-2 use?"],
        ),
        (
            "What is stochastic depth and why does it help?",
            ["What is stochastic depth", "why does it help?"],
        ),
        ("Which two; and how do they differ?", ["Which two", "how do they differ?"]),
        # one question about two things is one part: each thing's paper answers it
        ("How many models were evaluated in ZeroBench and in MLVU, respectively?", []),
        ("Compare A-1 and B-2: which is faster?", []),
        ("What is the speed and memory of A-1?", []),
    ],
)
def test_a_question_splits_where_english_joins_questions(text: str, parts: list[str]) -> None:
    assert [p.text for p in question_parts(text)] == parts


def test_each_part_of_a_question_gets_the_sentence_that_answers_it() -> None:
    """Scored against the whole question, each paper's best sentence is a general one; the
    sentence stating what each part asks scores lower but answers it."""
    question = Question.parse(
        "What strategy does Alpha-MoD use to set the retention ratio, and what metric does "
        "Beta-MoD use to pick layers?"
    )
    hits = [
        titled_hit("a", "Alpha-MoD: Sparse Tokens"),
        titled_hit("b", "Beta-MoD: Adapting Depth"),
    ]
    a_general, a_answer, b_general, b_answer = _sentences(
        question,
        (0, "Alpha-MoD skips tokens in the layers of multimodal models.", 2.0),
        (0, "Alpha-MoD sets the retention ratio with a progressive decay strategy.", 1.6),
        (1, "Beta-MoD converts most dense layers to sparse ones.", 1.5),
        (1, "A new metric, the rank of attention maps, picks which layers to convert.", 1.3),
    )
    names = NameMatch(
        asked=list(question.names),
        weight={n: 5.0 for n in question.names},
        by_doc={"a": {"Alpha-MoD"}, "b": {"Beta-MoD"}},
        rare=set(question.names),
        distinctive_names=set(question.names),
    )
    evidence = Evidence(
        question=question,
        hits=hits,
        candidates=[a_general, a_answer, b_general, b_answer],
        names=names,
    )
    chosen = select_sentences(evidence)
    assert a_answer in chosen and b_answer in chosen


def test_a_part_that_names_nothing_is_answered_from_the_quoted_paper() -> None:
    """ "why does it help?" is about the subject of the first part: its answer comes from that
    subject's paper, not from another paper that happens to say "helps"."""
    question = Question.parse("What is stochastic depth and why does it help?")
    hits = [titled_hit("sd", "Deep Networks with Stochastic Depth"), titled_hit("other", "Dropout")]
    defines, other, why = _sentences(
        question,
        (0, "Stochastic depth drops whole layers at random while training deep networks.", 2.0),
        (1, "Dropout helps to regularise large networks.", 1.7),
        (0, "It helps because it shortens the expected depth during training.", 1.3),
    )
    evidence = Evidence(
        question=question,
        hits=hits,
        candidates=[defines, other, why],
        term_weights={t: 1.0 for t in question.terms},
    )
    assert select_sentences(evidence) == [defines, why]


def test_a_listed_document_is_quoted_by_the_sentence_that_names_its_contribution() -> None:
    """The title of the second paper does not name its method; among its sentences that
    answer nearly as well as its best, the one introducing the method names it."""
    question = Question.parse("Which papers reduce hallucination with preference optimization?")
    assert question.asks_documents
    hits = [
        titled_hit("s", "Silkie: Preference Distillation"),
        titled_hit("p", "Aligning Modalities"),
    ]
    silkie, general, names_it = _sentences(
        question,
        (0, "Silkie reduces hallucination with preference optimization.", 2.1),
        (1, "Preference optimization reduces hallucination across benchmarks.", 2.0),
        (1, "We propose POVID to generate preference data with AI models.", 1.8),
    )
    evidence = Evidence(question=question, hits=hits, candidates=[silkie, general, names_it])
    chosen = select_sentences(evidence)
    assert names_it in chosen and general not in chosen


def test_a_document_the_question_describes_is_quoted() -> None:
    """ "the original residual learning paper" names no name, but one retrieved title holds
    most of its words: what the question asks of that paper is quoted from it, however low
    its sentence scores next to the other paper's."""
    question = Question.parse(
        "What is the deepest network in the original residual learning paper, compared with "
        "the identity mappings follow-up?"
    )
    hits = [
        titled_hit("identity", "Identity Mappings in Deep Residual Networks"),
        titled_hit("resnet", "Deep Residual Learning for Image Recognition"),
    ]
    follow_up, original = _sentences(
        question,
        (0, "We train a 200-layer ResNet on ImageNet with identity mappings.", 2.0),
        (1, "We evaluate residual nets with a depth of up to 152 layers.", 0.8),
    )
    evidence = Evidence(question=question, hits=hits, candidates=[follow_up, original])
    assert select_sentences(evidence) == [follow_up, original]

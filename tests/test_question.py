"""The question is analysed once, into a :class:`Question` every step of an ask reads."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

import citeqa.text
import service.answering.question
from citeqa.text import code_names
from service.answering.engine import Engine
from service.answering.qualifiers import stated
from service.answering.question import Question

_ANALYSIS_MODULES = (citeqa.text.__name__, service.answering.question.__name__)


@contextmanager
def calls_with(text: str) -> Iterator[tuple[Counter[str], Counter[str]]]:
    """Count the calls of the analysis modules' functions that take ``text`` as an argument:
    all of them, and those made from outside the analysis modules (a step of the engine
    analysing the question itself)."""
    every: Counter[str] = Counter()
    from_outside: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or frame.f_globals.get("__name__") not in _ANALYSIS_MODULES:
            return
        code = frame.f_code
        arguments = [frame.f_locals.get(name) for name in code.co_varnames[: code.co_argcount]]
        if text not in arguments:
            return
        every[code.co_qualname] += 1
        caller = frame.f_back
        if caller is None or caller.f_globals.get("__name__") not in _ANALYSIS_MODULES:
            from_outside[code.co_qualname] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield every, from_outside
    finally:
        sys.setprofile(previous)


@pytest.mark.parametrize(
    "question",
    [
        "How many GPUs were used to train TinyViT?",  # names, a count
        "What is DeepNet?",  # a definition
        "Which method performed best on ImageNet, and how many layers does it have?",
    ],
)
def test_one_ask_analyses_the_question_once(engine: Engine, question: str) -> None:
    with calls_with(question) as (every, from_outside):
        engine.ask(question)
    assert every["names"] == 1
    assert sum(from_outside.values()) == 1, from_outside  # Question.parse, nothing else


def test_names_come_with_their_keys_once_each() -> None:
    asked = Question.parse("Does the Pixel-8 beat the iPhone 15 and the Pixel-8 Pro?")
    assert asked.names == ("Pixel-8", "iPhone", "Pro")
    assert {"pixel8", "iphone"} <= asked.name_keys
    assert asked.yes_no and asked.asks_several is False


def test_a_count_in_words_and_the_counted_thing() -> None:
    asked = Question.parse("How many arguments does the parse function take when given two files?")
    assert asked.expects_number and asked.asks_count
    assert asked.counted == ("arguments",)
    assert asked.focus == "arguments"
    assert asked.numbers == frozenset({"2"})  # "two files"
    assert not asked.names


def test_a_definition_names_its_subject() -> None:
    asked = Question.parse("What is the General Data Protection Regulation?")
    assert asked.defined_subject == "General Data Protection Regulation"
    assert not asked.expects_number and not asked.yes_no
    assert asked.names == ("General", "Data", "Protection", "Regulation")


@pytest.mark.parametrize(
    "question",
    [
        "What is QSS?",
        "What does QSS stand for?",
        "QSS stands for what?",
        "QSS stands for?",
        "What is meant by QSS?",
        "Define QSS",
        "explain QSS",
    ],
)
def test_the_ways_a_definition_is_asked(question: str) -> None:
    assert Question.parse(question).defined_subject == "QSS"


def test_a_question_about_a_subject_is_not_always_a_definition() -> None:
    assert Question.parse("How fast is QSS?").defined_subject == ""
    assert Question.parse("What does QSS beat on sparse systems?").defined_subject == ""
    assert Question.parse("the letter that stands for a constant").defined_subject == ""


def test_the_unit_and_kind_of_answer_asked() -> None:
    boil = Question.parse("How long does it take to boil an egg, in minutes?")
    assert boil.unit == "time" and boil.expects_number  # "a quarter of an hour" answers it
    assert Question.parse("What latency in ms does it reach?").unit == "time"
    assert Question.parse("How much memory, in GiB, does it need?").unit == "size"
    assert Question.parse("What PSNR gain in dB does it bring?").unit == "dB"
    year = Question.parse("In what year was the Eiffel Tower completed?")
    assert year.asks_year and not year.asks_license and year.names == ("Eiffel", "Tower")
    license_q = Question.parse("Under which license is the library released?")
    assert license_q.asks_license and not license_q.asks_year
    best = Question.parse("Which team scored highest in the 1998 final?")
    assert best.asks_best_one and best.numbers == frozenset({"1998"})


def test_several_things_and_content_terms() -> None:
    asked = Question.parse("Compare the battery life of phones and tablets.")
    assert asked.asks_several
    assert asked.terms == frozenset({"compar", "batteri", "life", "phone", "tablet"})
    assert not Question.parse("What colour is the sky?").asks_several


@pytest.mark.parametrize(
    ("text", "documents", "collection"),
    [
        ("Which papers are about KV cache compression?", True, False),
        ("Which survival package vignettes analyse the MGUS data?", True, False),
        ("What articles discuss flood insurance?", True, False),
        ("List the documents about tax returns.", True, False),
        ("Are there any reports on bridge inspections?", True, False),
        ("Which of the studies use a control group?", True, False),
        ("What is this corpus about?", False, True),
        ("What topics does the collection cover?", False, True),
        ("Summarize the documents.", False, True),
        ("Which paper proposes FastV?", False, False),  # one document
        ("Which reports the larger gain, PyramidInfer or ShadowKV?", False, False),  # a verb
        ("Which studies a smaller model, A or B?", False, False),  # a verb
        ("Which methods outperform BM25?", False, False),  # methods, not documents
        ("What does the collection say about GDPR?", False, False),  # a topic
        ("What is the capital of Australia?", False, False),
    ],
)
def test_questions_a_list_of_documents_answers(
    text: str, documents: bool, collection: bool
) -> None:
    """ "Which papers discuss X?" asks for documents; "what is this corpus about?" for the
    collection as a whole; both are answered by documents, one cited sentence each."""
    asked = Question.parse(text)
    assert (asked.asks_documents, asked.about_collection) == (documents, collection)
    assert asked.lists_documents is (documents or collection)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How does tbats() handle multiple seasonal periods?", ("tbats()",)),
        ("What does glmer.nb fit, and what does coxph.control set?", ("glmer.nb", "coxph.control")),
        ("Which argument of log_lik sets the draws?", ("log_lik",)),
        ("Is `lmer` faster than `glmer`?", ("lmer", "glmer")),
        ("What is cv.glmnet with doParallel on Windows?", ("doParallel", "Windows", "cv.glmnet")),
    ],
)
def test_identifiers_written_as_code_are_names(question: str, expected: tuple[str, ...]) -> None:
    assert Question.parse(question).names == expected


def test_abbreviations_versions_and_plurals_are_not_identifiers() -> None:
    assert code_names("Which model(s), e.g. MiDaS v3.1, beat the U.S. baseline in Fig.3?") == []
    assert code_names("We trained the model.Then what? See f(x) and i.e. the rest.") == []


def test_an_identifier_is_looked_up_as_one_key() -> None:
    assert Question.parse("What does glmer.nb fit?").name_keys == {"glmernb"}
    assert Question.parse("What does tbats() return?").name_keys == {"tbats"}
    assert Question.parse("Is `lmer` the function?").name_keys == {"lmer"}


def _pinned(question: str) -> list[str]:
    return [q.text for q in Question.parse(question).qualifiers]


@pytest.mark.parametrize(
    ("question", "pinned"),
    [
        # sizes, settings and variants, in digits or in words, with a scale word or not
        (
            "What FVD does a one-billion-parameter NBP model reach on UCF101?",
            ["one-billion", "UCF101"],
        ),
        ("What AUC did the ResNet-50 baseline reach?", ["ResNet-50"]),
        ("What's LongVILA-8B's accuracy when using 1,024 frames?", ["LongVILA-8B", "1,024"]),
        ("With a depth of only six, what top-1 does it reach?", ["six"]),
        ("For a 70B model, how much faster is it?", ["70B"]),
        ("How much does FastV save on LLaVA-1.5-7B?", ["LLaVA-1.5-7B"]),
        ("How many packages depended on zoo in 2020?", ["2020"]),
        ("What error does a net of two hundred layers reach?", ["two hundred"]),
        ("How many of the four hundred eighty-two directions?", ["four hundred eighty-two"]),
        # a bound or an estimate the answer may differ from, alternatives offered, a count of
        # what is asked, a number word in another sense: no qualifier
        ("Is its accuracy more than 50%?", []),
        ("How much data did the model of about 5M parameters see?", []),
        ("It reached a top-1 of ninety-something percent. What exactly?", []),
        ("Which 30-odd layer net did they use?", []),
        ("With a depth of six or so, what top-1 does it reach?", []),
        ("Which backbone does it use (e.g., Vicuna or LLaMA-2)?", []),
        ("Was it run on Gaudi2, H100, or something else?", []),
        ("Which two vision backbones are combined?", []),
        ("Is one of them faster?", []),
        ("What shortcut links any two blocks of a thousand-layer net?", []),
        ("What error do nets beyond twelve hundred layers reach?", []),
    ],
)
def test_the_qualifiers_a_question_pins_its_answer_to(question: str, pinned: list[str]) -> None:
    assert _pinned(question) == pinned


def test_a_qualifier_is_stated_in_any_writing_of_its_amount() -> None:
    [billion] = Question.parse("What does a one-billion-parameter model reach?").qualifiers
    assert all(stated(billion, text) for text in ["a 1B model", "1,000M", "one billion"])
    assert not any(stated(billion, text) for text in ["from 700M to 3B parameters", "10B"])
    [frames] = Question.parse("What accuracy with 1024 frames?").qualifiers
    assert stated(frames, "from 8 to 1,024 frames") and not stated(frames, "1400-frame videos")
    # a numbered name: its family named with another number only is another variant
    [variant] = Question.parse("What AUC did the ResNet-50 baseline reach?").qualifiers
    assert stated(variant, "a ResNet50 model") and not stated(variant, "a ResNet-18 model")
    assert not stated(variant, "ResNet-500") and stated(variant, "ResNet-18/34/50 models")
    assert stated(variant, "a convolutional baseline")  # not named at all: no variant told
    # hundreds written in words are one amount: 200, not "two" and "hundred"
    [layers] = Question.parse("What error does a net of two hundred layers reach?").qualifiers
    assert stated(layers, "a 200-layer ResNet") and not stated(layers, "a 2-layer net")
    [tpu] = Question.parse("What used a hundred and ten thousand TPU hours?").qualifiers
    assert stated(tpu, "110k TPU-v4 core hours") and not stated(tpu, "10k TPU hours")
    [ways] = Question.parse("With seven thousand four hundred eighty-two directions?").qualifiers
    assert stated(ways, "7,482 translation directions") and not stated(ways, "482 directions")
    [size] = Question.parse("How much does FastV save on LLaVA-1.5-7B?").qualifiers
    assert not stated(size, "45% for LLaVA-1.5-13B") and stated(size, "LLaVA-1.5-7B and 13B")


def test_version_and_default_questions() -> None:
    assert Question.parse("In which SAS release was it fixed?").version_of == "SAS"
    assert Question.parse("Since which version does glmnet fit it?").version_of == ""
    assert Question.parse("When was GLM-130B released?").version_of is None
    assert Question.parse("What is the default value of timefix?").asks_default
    assert not Question.parse("What is the value of timefix?").asks_default
    assert Question.parse(
        "What is the default value of the threshold thresh in glmnet?"
    ).defaulted == ("thresh")
    assert Question.parse("Default bobyqa maxfun in lmerControl?").defaulted == "maxfun"
    # "value" says a default is asked; the word before it says of what.
    assert Question.parse("Fstats default from value?").defaulted == "from"
    assert Question.parse("the default lambda values for glmnet?").defaulted == "lambda"
    assert Question.parse("Which values does it try by default?").defaulted == ""

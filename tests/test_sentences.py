"""Sentence splitting on real text: heading and list numbers stay with the sentence they
number, and no sentence ends at a line break inside a paragraph.

The PDFs are real documents nobody here wrote (tests/data/r-vignettes, with their source and
license).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from citeqa.text import sentence_spans
from ingest.formats.pdf import read_pdf

DATA = Path(__file__).parent / "data" / "r-vignettes"
PDFS = ["sandwich-sandwich-OOP.pdf", "survival-tiedtimes.pdf"]
BARE_NUMBER = re.compile(r"\(?\d+(?:\.\d+)*[.)]?")


@cache
def _sentences(name: str) -> tuple[str, list[str]]:
    text = read_pdf((DATA / name).read_bytes()).text
    return text, [text[s:e] for s, e in sentence_spans(text)]


def test_numbered_headings_of_a_real_paper_are_one_sentence_each() -> None:
    _, sentences = _sentences("sandwich-sandwich-OOP.pdf")
    for heading in ["1. Introduction", "4.1. The bread", "5.2. Probit and tobit models"]:
        assert heading in sentences
    assert not [s for s in sentences if BARE_NUMBER.fullmatch(s)], "a number is no sentence"
    # A sentence ending in a number is kept: "... in Section 4." is no list label.
    assert any(s.endswith("covariance matrices in Section 4.") for s in sentences)


def test_a_dotted_number_broken_at_a_line_end_stays_in_its_sentence() -> None:
    _, sentences = _sentences("sandwich-sandwich-OOP.pdf")
    doi = next(s for s in sentences if "j.csda.2005.04." in s)
    assert doi.endswith("004."), doi


@pytest.mark.parametrize("name", PDFS)
def test_no_sentence_ends_at_a_line_break_inside_a_paragraph(name: str) -> None:
    text, sentences = _sentences(name)
    assert "\n" not in text.replace("\n\n", ""), "a paragraph of a PDF holds no line break"
    assert not [s for s in sentences if "\n" in s]
    # Every sentence ends at its paragraph's end or at sentence punctuation.
    for start, end in sentence_spans(text):
        at_paragraph_end = end == len(text) or text[end : end + 2] == "\n\n"
        sentence = text[start:end]
        assert at_paragraph_end or re.search(r"[.!?:;]['\"\u2019\u201d)\]]*$", sentence), sentence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Fit it as follows: 1. Fit the model. 2. Check the residuals.",
            ["Fit it as follows:", "1. Fit the model.", "2. Check the residuals."],
        ),
        (
            "We proceed in two steps. 1. Fit the model. 2. Check it.",
            ["We proceed in two steps.", "1. Fit the model.", "2. Check it."],
        ),
        ("3.2. Model fitting", ["3.2. Model fitting"]),
        ("3.2 Model fitting", ["3.2 Model fitting"]),
        ("Results are in Section 4. Section 5 concludes.", None),
        ("The estimate is zero. (4)", ["The estimate is zero. (4)"]),
        # Initials end no sentence: a name's ("E.T. Bench") or an author's ("S.V. Rajkumar").
        (
            "We introduce E.T. Bench, a benchmark. It has 7.3K samples.",
            ["We introduce E.T. Bench, a benchmark.", "It has 7.3K samples."],
        ),
        ("[4] R. Kyle, S.V. Rajkumar. Blood 2006.", ["[4] R. Kyle, S.V. Rajkumar.", "Blood 2006."]),
    ],
)
def test_list_and_heading_numbers(text: str, expected: list[str] | None) -> None:
    found = [text[s:e] for s, e in sentence_spans(text)]
    assert found == (expected or ["Results are in Section 4.", "Section 5 concludes."])

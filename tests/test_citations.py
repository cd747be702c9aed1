"""Citation validation, independent of the generator."""

from __future__ import annotations

import json
import re

from service.citations import parse_markers, validate
from service.engine import Engine
from service.retrieval import Hit

TEXT = (
    "We present DeepSeek-V3, a strong Mixture-of-Experts language model with 671B total "
    "parameters with 37B activated for each token. It was trained on 14.8 trillion tokens."
)


def _hit(n: int, text: str = TEXT, title: str = "DeepSeek-V3 Technical Report") -> Hit:
    spans = [[0, TEXT.index(" It was") + 0], [TEXT.index("It was"), len(TEXT)]]
    meta = {"start": 0, "prefix_len": len(title) + 1, "sentences": json.dumps(spans)}
    return Hit(f"c{n}", f"d{n}", title, f"{title}\n{text}", 1.0, "", meta)


def test_markers_are_parsed() -> None:
    assert parse_markers("A [1] and [2, 3] and [1].") == [1, 2, 3]


def test_supported_sentence_keeps_its_citation_with_an_exact_quote() -> None:
    result = validate("DeepSeek-V3 has 37B activated parameters for each token [1].", [_hit(1)])
    assert result.text == "DeepSeek-V3 has 37B activated parameters for each token [1]."
    (citation,) = result.citations
    assert citation.quote == TEXT[citation.start : citation.end]
    assert "37B activated" in citation.quote


def test_invented_citation_numbers_are_removed() -> None:
    hits = [_hit(1), _hit(2, "Unrelated text about cats."), _hit(3, "Dogs bark loudly.")]
    result = validate("DeepSeek-V3 was trained on 14.8 trillion tokens [7].", hits)
    assert "[7]" not in result.text
    assert [c.n for c in result.citations] == [1]


def test_a_number_missing_from_the_source_drops_the_sentence() -> None:
    result = validate(
        "DeepSeek-V3 activates 99B parameters per token [1]. It has 671B parameters [1].",
        [_hit(1)],
    )
    assert "99B" not in result.text and "671B" in result.text
    assert result.dropped[0]["reason"].startswith("number(s) 99")


def test_unsupported_words_drop_the_sentence() -> None:
    result = validate("The model cures diseases in hospitals worldwide [1].", [_hit(1)])
    assert result.text == "" and result.citations == []
    assert "content words" in result.dropped[0]["reason"]


QUESTION_TITLE = "MMBench: Is Your Multi-modal Model an All-around Player?"
MMBENCH = "We propose MMBench, a novel multi-modality benchmark. It has 3000 questions."


def test_a_quoted_title_ending_in_a_question_mark_is_no_sentence_of_its_own() -> None:
    meta = {"start": 0, "prefix_len": len(QUESTION_TITLE) + 1}
    hit = Hit("c1", "d1", QUESTION_TITLE, f"{QUESTION_TITLE}\n{MMBENCH}", 1.0, "", meta)
    result = validate(
        f"\u201c{QUESTION_TITLE}\u201d: We propose MMBench [1]. It has 3000 [1].", [hit]
    )
    assert result.text == (
        f"\u201c{QUESTION_TITLE}\u201d: We propose MMBench [1]. It has 3000 [1]."
    )
    assert [c.quote for c in result.citations] == [
        "We propose MMBench, a novel multi-modality benchmark.",
        "It has 3000 questions.",
    ]


def test_two_sentences_quoting_the_same_span_list_it_once() -> None:
    result = validate("DeepSeek-V3 has 671B parameters [1]. It has 671B parameters [1].", [_hit(1)])
    assert len(result.citations) == 1


def test_markers_stay_out_of_quoted_titles_of_the_corpus(engine: Engine) -> None:
    """Titles of the bundled corpus with "?" (and "E.T. Bench", with a full stop)."""
    for question in (
        "What is MMBench?",
        "Is wide attention the way forward for transformers?",
        "How many samples does E.T. Bench encompass?",
    ):
        answer = engine.ask(question)
        assert not answer.refused, question
        for quoted in re.findall(r"\u201c[^\u201d]*\u201d", answer.answer):
            assert not parse_markers(quoted), answer.answer
        spans = [(c.n, c.chunk_id, c.start, c.end) for c in answer.citations]
        assert len(spans) == len(set(spans)), answer.citations

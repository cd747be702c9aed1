"""Citation validation, independent of the generator."""

from __future__ import annotations

import json
import re

from service.answering.citations import Validator, parse_markers, strip_markers, validate
from service.answering.engine import Engine
from service.answering.retrieval import Hit

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


def test_stripping_markers_keeps_a_space_before_a_word_that_starts_with_a_dot() -> None:
    """The space a marker leaves before a full stop goes; the document's own space before a
    file suffix, a method suffix or a decimal stays (quoted, they must read as written)."""
    assert strip_markers("It is saved [1].") == "It is saved."
    assert strip_markers("A file with suffix .stan [5].") == "A file with suffix .stan."
    assert strip_markers("The .zoo part is written out [1].") == "The .zoo part is written out."
    assert strip_markers("The p-value is p = .05 [2], as reported [1], here.") == (
        "The p-value is p = .05, as reported, here."
    )


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


# --------------------------------------------------------------------------- what weak models write

VL2_TITLE = "DeepSeek-VL2: Mixture-of-Experts Vision-Language Models"
VL2 = (
    "We present DeepSeek-VL2, an advanced series of large Mixture-of-Experts (MoE) "
    "Vision-Language Models. DeepSeek-VL2-Tiny, DeepSeek-VL2-Small and DeepSeek-VL2 have 1.0B, "
    "2.8B and 4.5B activated parameters respectively."
)
GOOD = "DeepSeek-V3 has 671B total parameters [1]."


def _vl2() -> Hit:
    meta = {"start": 0, "prefix_len": len(VL2_TITLE) + 1}
    return Hit("c2", "d2", VL2_TITLE, f"{VL2_TITLE}\n{VL2}", 1.0, "", meta)


def test_lines_without_content_are_dropped() -> None:
    """Echoed prompt markup, a "Sources:" label and a title on its own state nothing; before,
    each was kept with a citation (their words are in the source)."""
    draft = (
        'Sources: [1]\n</source> [1]\n<source id="1" title="DeepSeek-V3 Technical Report">\n'
        f"DeepSeek-V3 Technical Report [1]\n---\n{GOOD}"
    )
    assert validate(draft, [_hit(1)]).text == GOOD


def test_markup_a_source_itself_contains_is_quoted_not_stripped() -> None:
    """A document may contain text that looks like markup; quoting it is quoting the document
    (the web page shows it as text). Only markup no source contains is prompt echo."""
    text = "The tag <br/> ends a line in HTML. It was used by early browsers."
    draft = 'The tag <br/> ends a line in HTML [1]. <source id="1"> It was used by early browsers.'
    result = validate(draft, [_hit(1, text=text, title="HTML basics")])
    assert result.text.startswith("The tag <br/> ends a line in HTML [1].")
    assert "<source" not in result.text


def test_a_title_split_into_sentences_is_no_content() -> None:
    """Found by the independent eval check: an echoed title with "?" became two sentences, each
    only part of the title, and both were kept."""
    title = "Is MMBench All You Need? Modeling A Strong Multi-modality Benchmark"
    meta = {"start": 0, "prefix_len": len(title) + 1}
    hit = Hit("c1", "d1", title, f"{title}\n{MMBENCH}", 1.0, "", meta)
    result = validate(f"{title} [1]\nWe propose MMBench [1].", [hit])
    assert result.text == "We propose MMBench [1]."


def test_a_repeated_sentence_is_kept_once() -> None:
    result = validate(f"{GOOD}\n\n{GOOD} It was trained on 14.8 trillion tokens [1].", [_hit(1)])
    assert result.text == f"{GOOD}\n\nIt was trained on 14.8 trillion tokens [1]."
    assert result.dropped == [
        {"sentence": GOOD.replace(" [1]", ""), "reason": "repeats an earlier sentence"}
    ]


def test_a_sentence_naming_a_model_its_source_does_not_mention_is_dropped() -> None:
    """The numbers and most words are in the VL2 abstract, but it is not about DeepSeek-V3."""
    claim = "We present DeepSeek-V3, with 1.0B and 2.8B activated parameters [2]."
    result = validate(claim, [_hit(1), _vl2()])
    assert result.text == "" and result.citations == []
    assert result.dropped[0]["reason"] == "name(s) DeepSeek-V3 not in the cited source"


def test_a_number_must_be_stated_of_the_claims_subject() -> None:
    """12 is in the source, but of the encoder's layers, not of the training time."""
    text = "The encoder has 12 layers. Training took 3 days on 8 accelerators."
    hit = _hit(1, text, title="A small encoder")
    result = validate("Training took 12 days [1].", [hit])
    assert result.text == ""
    assert result.dropped[0]["reason"] == "number(s) 12 stated of another subject in the source"
    assert validate("Training took 3 days [1].", [hit]).text == "Training took 3 days [1]."


def test_validated_pieces_fed_in_any_chunks_make_the_same_answer() -> None:
    draft = (
        "Sources: [1]\nDeepSeek-V3 has 671B total parameters [1]. It activates 99B [1]. "
        "It was trained on 14.8 trillion tokens [1].\n\n</source>\nDeepSeek-V3 has 671B total "
        f"parameters [1].\n\u201c{QUESTION_TITLE}\u201d is a title. It has 37B activated [1]."
    )
    whole = validate(draft, [_hit(1)])
    for size in (1, 3, 7, 40):
        validator = Validator([_hit(1)])
        pieces = [
            p for i in range(0, len(draft), size) for p in validator.feed(draft[i : i + size])
        ]
        pieces += validator.close()
        assert "".join(p.text for p in pieces) == validator.text == whole.text, size
        assert [c for p in pieces for c in p.citations] == whole.citations
        assert validator.result().dropped == whole.dropped


def test_a_cut_draft_keeps_what_was_complete() -> None:
    validator = Validator([_hit(1)])
    pieces = validator.feed(f"{GOOD} It was trained on 14.8 trillion")
    assert [p.text for p in pieces] == [GOOD]  # the first sentence, once the second started
    assert validator.close("cut off by the time limit") == []
    assert validator.result().dropped[-1]["reason"] == "cut off by the time limit"

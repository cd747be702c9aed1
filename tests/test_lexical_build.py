"""The tantivy index's cold build made faster without changing what it indexes (issue 19:
cold build <= 5 min at 1M chunks): each fast form against the plain one it replaced, on the
bundled corpus and on texts made to trip it; the versions a batched read keeps are those
visible_chunks keeps of a whole read; the Chroma reads run ahead of the indexing."""

from __future__ import annotations

import random
import re
import threading
import time

from citeqa.resources import BUNDLED_CORPUS
from citeqa.store import visible_chunks
from citeqa.text import lowered_words, squashed, term_set, words
from service.answering.corpus import (
    _LONG_THEN_SHORT,
    _SHORT_THEN_LONG,
    _expansion,
    _short_then_long,
    abbreviations,
)
from service.answering.lexical_build import Versions, read_ahead
from service.answering.lexical_fields import (
    NAME_GAP,
    Stems,
    Tokens,
    _name_keys,
    analyzer,
    name_terms,
)
from service.answering.lexical_views import _COMPOUND, with_compounds

TRICKY = [
    "",
    "  \n\t ",
    "GPT-4.5 and Human-Eval / HumanEval beat A100s",
    "e.g. U.S. v3.1-beta, i.e. 1.2.3. and 2,990",
    "a--b -c- .d. x-.y z.-w -- . - 42",
    "the Kelvin sign \u212a, \u0130stanbul, na\u00efve caf\u00e9,",
    "\u00c5NGSTR\u00d6M 10\u207b\u00b3 \u212aelvin",
    "snake_case foo_bar __init__ glmer.nb tbats()",
    "Deep Seek DeepSeek-V3-Base (DSV3) of the General Data Protection Regulation (GDPR)",
    "(A1) opens it; the 3D Morphable Model (3DMM), _private Key Value (KV) and Mixture-of-"
    "Experts (MoE); words ( GDPR ) spaced; MoE (Mixture of Experts) after",
    "a b c d e f g h i j Nine Ten Words Long Of Term Set Seven (NTWLOTSS) 1abc def (AD)",
    "x_y Key Value (KV), \u00e9t\u00e9 Zeta Beta (ZB) (ZB)(ZB) a-b c (AC) Open Ai\t(OA) ( OA )",
    "one",
    "two words",
]


def texts() -> list[str]:
    return TRICKY + BUNDLED_CORPUS.read_text(encoding="utf-8").splitlines()


def fuzzed(count: int = 4000) -> list[str]:
    """Short random texts of the pieces the fast forms look for (separators, parentheses,
    capitals, spaces of several kinds), seeded: the places where a fast form could skip a
    match the plain one finds."""
    pieces = ["a", "x", "B", "GDPR", "Of", "of", "1", "-", ".", "/", "_", " ", "  ", "\n", "\t"]
    pieces += ["(", ")", "\u00e9", "Key Value", "KV", "AI", "Zeta"]
    chosen = random.Random(23)
    return ["".join(chosen.choices(pieces, k=chosen.randint(0, 30))) for _ in range(count)]


def plain_name_terms(text: str) -> set[str]:
    """name_terms as it was: one word at a time."""
    found = [w for w in words(text) if squashed(w)]
    keys = [squashed(w) for w in found]
    out = set(keys)
    out.update(k for w in found for p in re.split(r"[-./]", w) if (k := squashed(p)))
    return out


def test_name_keys_are_the_ones_made_word_by_word() -> None:
    for text in texts():
        assert name_terms(text) == plain_name_terms(text), text
    keys = name_terms("GPT-4.5 and Human-Eval / HumanEval beat A100s on DeepSeek-V3-Base")
    assert {"humaneval", "gpt45", "gpt", "4", "5", "a100s", "deepseek", "deepseekv3base"} <= keys
    assert "gpt45and" not in keys  # words in a row: a phrase query's (TantivyView.has_key)


def phrases(names: str) -> set[tuple[str, ...]]:
    """The phrases of one to three terms a "names" field holds (none spans a NAME_GAP)."""
    found: set[tuple[str, ...]] = set()
    for part in names.split(f" {NAME_GAP} "):
        terms = part.split()
        for size in (1, 2, 3):
            found.update(tuple(terms[i : i + size]) for i in range(len(terms) - size + 1))
    return found


def test_names_hold_the_phrases_of_every_words_parts() -> None:
    """The "names" field writes again only the words near one with parts: it holds the same
    phrases of up to three terms (what has_key asks) as all the text's parts written again."""
    for text in texts() + fuzzed():
        lowered = lowered_words(text)
        joined = " ".join(lowered)
        every_part = (
            f"{squashed_words(joined)} {NAME_GAP} {' '.join(re.findall('[a-z0-9]+', joined))}"
        )
        assert phrases(_name_keys(lowered)) == phrases(every_part), text
    fewer = _name_keys(lowered_words("one two three four five six Human-Eval seven eight nine"))
    assert fewer == (
        "one two three four five six humaneval seven eight nine | five six human eval seven eight"
    )


def squashed_words(joined: str) -> str:
    return joined.replace("-", "").replace(".", "")


def test_a_chunks_words_are_found_and_lowered_at_once_as_one_at_a_time() -> None:
    for text in texts():
        assert lowered_words(text) == [w.lower() for w in words(text)], text


def test_stems_from_a_table_of_words_are_term_sets() -> None:
    """A cold build's stems of a chunk: term_set's, each distinct word's terms made once, the
    table emptied when full (a limit of 3 empties it all the time)."""
    for stems in (Stems(), Stems(limit=3)):
        for text in [*texts(), *TRICKY]:  # the tricky texts twice: their words are in the table
            assert stems(lowered_words(text)) == term_set(text), text
    assert Stems()(lowered_words("The Transformers (ViT-B) of Deep-Seek")) == {
        "transform", "vit-b", "vit", "b", "deep-seek", "deep", "seek"
    }  # fmt: skip


def test_tokens_from_a_table_of_words_are_the_analyzers() -> None:
    """A cold build's tokens of a chunk: the analyzer's of the whole text, made in Python for
    an ASCII text (the tricky texts hold the non-ASCII ones, analyzed whole)."""
    whole = analyzer()
    for tokens in (Tokens(), Tokens(limit=3)):
        for text in [*texts(), *TRICKY, "snake_case __init__ x_ _y 2_000 a_b-c.d/e A1_B2"]:
            compounds = with_compounds(text)
            assert tokens(compounds) == whole.analyze(compounds), text


def test_compounds_are_the_ones_made_by_substitution() -> None:
    for text in texts() + fuzzed():
        joined = [re.sub(r"[-./]", "", m.group(0)) for m in _COMPOUND.finditer(text)]
        assert with_compounds(text) == (f"{text} {' '.join(joined)}" if joined else text), text


def test_compound_names_are_the_ones_found_with_backtracking() -> None:
    backtracking = re.compile(r"\b\w+(?:[-./]\w+)+\b")
    for text in [*texts(), "a-b.c/d e--f g-.h i- -j k.l. m_n-o \u00e9-\u00fc 1.2.3 x/ /y"]:
        assert _COMPOUND.findall(text) == backtracking.findall(text), text


def plain_abbreviations(texts: list[str]) -> dict[str, frozenset[str]]:
    """abbreviations as it was: both patterns over every text from its start."""
    pairs: dict[str, set[str]] = {}
    for text in texts:
        found = [(lt, s) for lt, s in _LONG_THEN_SHORT.findall(text)]
        found += [(lt, s) for s, lt in _SHORT_THEN_LONG.findall(text)]
        for long_text, short in found:
            if long_form := _expansion(long_text.split(), short):
                pairs.setdefault(short.lower(), set()).add(long_form)
                pairs.setdefault(long_form, set()).add(short.lower())
    return {k: frozenset(v) for k, v in pairs.items()}


def test_short_forms_before_their_long_forms_are_the_ones_found_from_the_start() -> None:
    for text in texts() + fuzzed():
        assert _short_then_long(text) == _SHORT_THEN_LONG.findall(text), text


def test_abbreviations_are_the_ones_both_patterns_find_from_the_start() -> None:
    for text in texts() + fuzzed():
        assert abbreviations([text]) == plain_abbreviations([text]), text
    mixed = "x (e.g. this) and 1st_order-wise General Data Protection Regulation (GDPR) (GDPR)"
    assert abbreviations([mixed]) == plain_abbreviations([mixed])
    assert "general data protection regulation" in abbreviations([mixed])["gdpr"]


def test_the_next_batch_is_read_while_this_one_is_indexed() -> None:
    began: list[int] = []
    lock = threading.Lock()

    def read(batch: list[str]) -> dict[str, list[str]]:
        with lock:
            began.append(int(batch[0]))
        return {"ids": batch}

    batches = [[str(n)] for n in range(4)]
    ahead = read_ahead(read, batches)  # type: ignore[arg-type]
    first = next(ahead)
    deadline = time.monotonic() + 10
    while len(began) < 2:  # batch 1 is read while the caller still holds batch 0
        assert time.monotonic() < deadline, "the next batch was not read ahead"
        time.sleep(0.01)
    rest = list(ahead)
    assert [first, *rest] == [(b, {"ids": b}) for b in batches]
    assert began == [0, 1, 2, 3]


def chunk(doc: str, version: str, n: int, of: int | None, written: float) -> tuple[str, dict]:
    meta: dict[str, object] = {"doc_id": doc, "doc_hash": version, "ingested_at": written}
    if of is not None:
        meta["doc_chunks"] = of
    return f"{doc}#{version}-{n}", meta


def test_a_batched_read_keeps_the_versions_a_whole_read_keeps() -> None:
    rows = [
        *(chunk("a", "v1", n, 3, 1.0) for n in range(3)),  # replaced by v2, both whole
        *(chunk("b", "v1", n, 2, 1.0) for n in range(2)),
        *(chunk("a", "v2", n, 2, 2.0) for n in range(2)),
        chunk("c", "v1", 0, 2, 1.0),  # half written: never shown
        *(chunk("d", "v2", n, 1, 2.0) for n in range(1)),  # newer first, then an older one
        *(chunk("d", "v1", n, 2, 1.0) for n in range(2)),
        chunk("e", "v1", 0, None, 1.0),  # written before versions had a chunk count
        *(chunk("f", "v1", n, 1, 1.0) for n in range(2)),  # more chunks than its count
    ]
    whole = {rows[i][0] for i in visible_chunks([m for _, m in rows])}
    shuffled = random.Random(19)
    for size in (1, 2, 3, 5, len(rows)):
        for order in (rows, sorted(rows, key=lambda _: shuffled.random())):
            versions = Versions()
            shown: dict[str, list[str]] = {}
            for start in range(0, len(order), size):
                part = order[start : start + size]
                got = {"ids": [i for i, _ in part], "documents": ["t"] * len(part)}
                for doc, kept, replaces in versions.add({**got, "metadatas": [m for _, m in part]}):  # type: ignore[arg-type]
                    assert replaces == (doc in shown)
                    shown[doc] = [cid for cid, _, _ in kept]
            assert versions.doubtful == {"e", "f"}
            kept_ids = {
                cid for doc, ids in shown.items() if doc not in versions.doubtful for cid in ids
            }
            assert kept_ids == {cid for cid in whole if cid[0] not in "ef"}

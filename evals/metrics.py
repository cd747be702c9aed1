"""Evaluation metrics: pure, deterministic functions over one answer or a set of item records.

Every per-item metric returns a number in [0, 1], or ``None`` when it does not apply to the item
(for example retrieval metrics on an unanswerable question). Aggregates are means over the items
a metric applies to; ``None`` values are excluded, and a metric no item applies to aggregates to
``None``. The figures and their definitions:

=====================  ==========================================================================
metric                 definition (per item; the reported figure is the mean over applicable items)
=====================  ==========================================================================
hit_at_1, hit_at_5     1 if a gold title is among the titles of the first k retrieved sources
                       (sources in rank order, one per chunk). Answerable items.
mrr                    1 / rank of the first source whose title is gold; 0 if none. Answerable.
all_gold_at_5          1 if every gold title is among the first 5 sources (every gold document,
                       by ``source``, when the item has ``gold_docs``). ``multi`` items.
gold_doc_at_5          1 if a gold document (``gold_docs``: a file relative to the ingested folder,
                       compared with the sources' ``source``) is among the first 5 sources.
                       Answerable items with gold docs.
citation_hit           1 if a gold title is among the titles of the answer's citations (a refusal
                       cites nothing and scores 0). Answerable items.
gold_doc_cited         1 if a gold document is among the documents the answer cites (0 for a
                       refusal). Answerable items with gold docs.
page_accuracy          1 if one of the answer's citations of a gold document spans (``page`` ..
                       ``page_end``) one of that document's gold pages, else 0 (also when the gold
                       document is not cited). Answerable items with ``gold_pages``.
key_fact_accuracy      1 if every key fact appears in the answer text (see :func:`normalise_text`
                       and :func:`fact_in_text`); a refusal scores 0. Answerable items.
key_fact_recall        the share of key facts that appear in the answer. Answerable items.
faithfulness           share of the answer's sentences grounded in a chunk they cite, as stored
                       (:func:`sentence_grounded`: every content word and number of the sentence
                       in that chunk; not the engine validator's rule, and not the text the
                       answer carries); a sentence without a citation is not grounded.
                       Non-refused answers (also answers to unanswerable questions).
citation_precision     ALCE-style: share of (sentence, cited source n) pairs in which the stored
                       chunk n names alone grounds the sentence. Non-refused answers with
                       citations.
refusal_precision      share of refusals that are on unanswerable items: per item 1 if refused and
                       unanswerable, 0 if refused and answerable. Refused items.
refusal_recall         share of unanswerable items that were refused. Unanswerable items.
false_refusal_rate     share of answerable items that were refused (lower is better).
faithfulness_llm       with ``--judge llm`` only: supported claims / claims, judged by the LLM
                       (:mod:`evals.judge`); reported beside ``faithfulness``, never replacing it.
=====================  ==========================================================================

Answer hygiene (:func:`answer_hygiene`, counts summed over the items, reported as ``hygiene``):
``empty_lines`` (lines without content), ``repeated_sentences``, ``unsupported_names`` (names a
sentence states that the sources it cites never mention). Each should be 0; the check is
independent of the engine's validator.

Latency (p50/p95 of ``timings_ms.total``) is reported apart from the quality metrics, since it is
the only figure that changes between two runs of the same engine.

Answers are read in the JSON shape of ``Answer.public()``: citation markers ``[n]`` point at
``sources[n-1]``, and the text a marker cites is the chunk ``sources[n-1]["chunk_id"]`` names,
read from the store (:func:`cited_texts`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from citeqa.text import answer_sentence_spans
from evals.dataset import same_source

# Metric names, in report order.
RETRIEVAL_METRICS = ("hit_at_1", "hit_at_5", "mrr", "all_gold_at_5", "gold_doc_at_5")
ANSWER_METRICS = (
    "citation_hit",
    "gold_doc_cited",
    "page_accuracy",
    "key_fact_accuracy",
    "key_fact_recall",
    "faithfulness",
    "citation_precision",
)
REFUSAL_METRICS = ("refusal_precision", "refusal_recall", "false_refusal_rate")
QUALITY_METRICS = RETRIEVAL_METRICS + ANSWER_METRICS + REFUSAL_METRICS
OPTIONAL_METRICS = ("faithfulness_llm",)
LOWER_IS_BETTER = frozenset({"false_refusal_rate"})
UNANSWERABLE = "unanswerable"


# --------------------------------------------------------------------------- text normalisation

_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TIMES_RE = re.compile(
    r"(\d(?:[\d.]*\d)?)\s*(?:×|x(?![a-z0-9])|-?\s*fold\b|\s+times\b)", re.IGNORECASE
)
_PERCENT_RE = re.compile(r"(\d(?:[\d.]*\d)?)\s*(?:%|per\s*cent\b|percent\b)", re.IGNORECASE)
_DASHES = dict.fromkeys(map(ord, "‐‑‒–—−"), "-")


def normalise_text(text: str) -> str:
    """Canonical form for key-fact matching.

    * Unicode NFKC, lower case, dashes and minus signs as ``-``, runs of whitespace as one space;
    * thousands separators dropped: ``"2,990"`` -> ``"2990"`` (``"1,2"`` is left alone);
    * multipliers written ``x``: ``"7x"``, ``"7×"``, ``"7 x"``, ``"7 times"``, ``"7-fold"``,
      ``"7 fold"`` -> ``"7x"``;
    * percentages written ``%``: ``"45%"``, ``"45 %"``, ``"45 percent"``, ``"45 per cent"``
      -> ``"45%"``.
    """
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).lower()
    text = re.sub(r"\s+", " ", text)
    text = _THOUSANDS_RE.sub("", text)
    text = _TIMES_RE.sub(r"\1x", text)
    text = _PERCENT_RE.sub(r"\1%", text)
    return text.strip()


def fact_in_text(fact: str, text: str) -> bool:
    """Whether ``fact`` appears in ``text``, both normalised by :func:`normalise_text`.

    Case-insensitive substring match, except that a fact starting (ending) with a digit must not
    be preceded (followed) by another digit or a decimal point followed by one, so "2.7" is not
    found in "12.7" or "2.75".
    """
    needle = normalise_text(fact)
    if not needle:
        return True
    hay = normalise_text(text)
    before = r"(?<![\d.])" if needle[0].isdigit() else ""
    after = r"(?!\d|\.\d)" if needle[-1].isdigit() else ""
    return re.search(before + re.escape(needle) + after, hay) is not None


# --------------------------------------------------------------------------- retrieval


def _norm_title(title: str) -> str:
    return " ".join(title.split()).casefold()


def _gold_set(gold_titles: Iterable[str]) -> set[str]:
    return {_norm_title(t) for t in gold_titles}


def hit_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int = 5) -> float | None:
    """1.0 if any gold title is among the first ``k`` retrieved titles, else 0.0.

    ``retrieved`` lists the titles of the retrieved sources in rank order (a title may repeat,
    one entry per chunk); titles match ignoring case and whitespace. ``None`` without gold titles.
    """
    if not gold:
        return None
    wanted = _gold_set(gold)
    return 1.0 if any(_norm_title(t) in wanted for t in retrieved[:k]) else 0.0


def reciprocal_rank(retrieved: Sequence[str], gold: Sequence[str]) -> float | None:
    """1 / (1-based rank of the first retrieved title that is gold); 0.0 if none is.

    The mean over items is the MRR. ``None`` without gold titles.
    """
    if not gold:
        return None
    wanted = _gold_set(gold)
    for rank, title in enumerate(retrieved, start=1):
        if _norm_title(title) in wanted:
            return 1.0 / rank
    return 0.0


def all_gold_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int = 5) -> float | None:
    """1.0 if every distinct gold title is among the first ``k`` retrieved titles, else 0.0.

    Meant for ``multi`` items (two or more gold titles); ``None`` with fewer than two.
    """
    wanted = _gold_set(gold)
    if len(wanted) < 2:
        return None
    found = {_norm_title(t) for t in retrieved[:k]}
    return 1.0 if wanted <= found else 0.0


def gold_doc_at_k(sources: Sequence[str], gold_docs: Sequence[str], k: int = 5) -> float | None:
    """1.0 if a gold doc is among the ``source`` of the first ``k`` retrieved sources, else 0.0;
    ``None`` without gold docs (see :func:`evals.dataset.same_source`)."""
    if not gold_docs:
        return None
    return 1.0 if any(same_source(s, g) for s in sources[:k] for g in gold_docs) else 0.0


def all_gold_docs_at_k(
    sources: Sequence[str], gold_docs: Sequence[str], k: int = 5
) -> float | None:
    """1.0 if every distinct gold doc is among the ``source`` of the first ``k`` sources;
    ``None`` with fewer than two gold docs."""
    if len(set(gold_docs)) < 2:
        return None
    return 1.0 if all(any(same_source(s, g) for s in sources[:k]) for g in gold_docs) else 0.0


def _all_gold_at_5(
    item_type: str, sources: Sequence[Mapping[str, Any]], gold: Sequence[str], docs: Sequence[str]
) -> float | None:
    if item_type != "multi":
        return None
    if docs:
        return all_gold_docs_at_k([str(s.get("source", "")) for s in sources], docs)
    return all_gold_at_k([str(s.get("title", "")) for s in sources], gold)


# --------------------------------------------------------------------------- answers


def gold_doc_cited(cited_sources: Sequence[str], gold_docs: Sequence[str]) -> float | None:
    """1.0 if a gold doc is among the sources the answer cites (0.0 for a refusal, which cites
    nothing); ``None`` without gold docs."""
    return gold_doc_at_k(cited_sources, gold_docs, k=len(cited_sources))


def page_accuracy(
    citations: Sequence[Mapping[str, Any]], gold_pages: Mapping[str, Sequence[int]]
) -> float | None:
    """1.0 if a citation of a gold doc spans one of its gold pages: ``page`` .. ``page_end``
    (``page_end`` absent: the one page) holds a page of ``gold_pages[doc]``; else 0.0, also when
    no citation is of a gold doc. ``None`` when no gold doc has pages."""
    wanted = {doc: set(pages) for doc, pages in gold_pages.items() if pages}
    if not wanted:
        return None
    for citation in citations:
        first = citation.get("page")
        if first is None:
            continue
        last = citation.get("page_end") or first
        for doc, pages in wanted.items():
            if same_source(str(citation.get("source", "")), doc) and any(
                first <= p <= last for p in pages
            ):
                return 1.0
    return 0.0


def citation_hit(cited_titles: Sequence[str], gold: Sequence[str]) -> float | None:
    """1.0 if a gold title is among the titles the answer cites, else 0.0 (also for a refusal,
    which cites nothing). ``None`` without gold titles."""
    if not gold:
        return None
    wanted = _gold_set(gold)
    return 1.0 if any(_norm_title(t) in wanted for t in cited_titles) else 0.0


def key_fact_accuracy(answer: str, key_facts: Sequence[str], refused: bool = False) -> float | None:
    """1.0 if every key fact appears in the answer text (:func:`fact_in_text`), else 0.0.

    Citation markers are removed first. A refusal scores 0.0 (its list of closest sources must
    not count as an answer). ``None`` without key facts.
    """
    if not key_facts:
        return None
    if refused:
        return 0.0
    text = without_markers(answer)
    return 1.0 if all(fact_in_text(f, text) for f in key_facts) else 0.0


def key_fact_recall(answer: str, key_facts: Sequence[str], refused: bool = False) -> float | None:
    """The share of key facts that appear in the answer (0.0 for a refusal); ``None`` without
    key facts."""
    if not key_facts:
        return None
    if refused:
        return 0.0
    text = without_markers(answer)
    return sum(fact_in_text(f, text) for f in key_facts) / len(key_facts)


@dataclass(frozen=True)
class Sentence:
    """One sentence of an answer: the claim without markers and the source numbers it cites."""

    claim: str
    cited: tuple[int, ...]


def answer_sentences(answer: str) -> list[Sentence]:
    """The answer's sentences: paragraphs split on newlines, then
    ``citeqa.text.answer_sentence_spans`` (a quoted title is no sentence of its own).

    Markers that open a sentence belong to the one before it: "... (near the end of the
    path.) [1] Next sentence [2]." cites [1] for the first sentence. Fragments without a word
    or number (a stray marker, punctuation) are skipped.
    """
    out: list[Sentence] = []
    for paragraph in answer.split("\n"):
        first = len(out)
        for start, end in answer_sentence_spans(paragraph):
            raw = paragraph[start:end]
            lead = _LEADING_MARKERS_RE.match(raw)
            if lead and len(out) > first:
                before = out[-1]
                cited = dict.fromkeys([*before.cited, *markers(lead.group(0))])
                out[-1] = Sentence(before.claim, tuple(cited))
                raw = raw[lead.end() :]
            claim = without_markers(raw)
            if not claim_tokens(claim):
                continue
            out.append(Sentence(claim, tuple(markers(raw))))
    return out


# --------------------------------------------------------------------------- grounding
# Whether a sentence is grounded in the text it cites, judged apart from the engine's citation
# validator (service.answering.citations, which every kept sentence passed by construction):
# the cited text is the chunk as stored (the runner reads it from the store by the chunk id
# the answer names, never the text the answer carries), and the rule is another, stricter one:
# every content word and number of the sentence is in that one chunk. A verbatim quote passes;
# a quote with a word changed, a number moved, a "not" added, or a citation of another chunk
# does not; a paraphrase passes only when it keeps the chunk's words (the LLM judge,
# ``faithfulness_llm``, is the measure of paraphrases).

_MARKER_RE = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")
_LEADING_MARKERS_RE = re.compile(r"(?:\s*\[\s*\d+(?:\s*,\s*\d+)*\s*\])+")
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
# Function words; negations ("no", "not", "never", "without") are content: they flip a claim.
_FUNCTION_WORD_LIST = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my of off on once only or other our ours out over own same she should so some
    such than that the their theirs them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
"""
_FUNCTION_WORDS = frozenset(_FUNCTION_WORD_LIST.split())
# Words the extractive generator writes itself, not quoted from a source: the lead of a
# statement that disagrees with another paper (service.answering.extractive.SOURCES_DIFFER).
_FRAMING_RE = re.compile(r"^\W*the sources differ;\s*", re.IGNORECASE)


def markers(sentence: str) -> list[int]:
    """The numbers of the ``[n]`` / ``[n, m]`` markers of a sentence, in order, once each."""
    found = [int(n) for group in _MARKER_RE.findall(sentence) for n in group.split(",")]
    return list(dict.fromkeys(found))


# A space before punctuation that ends a clause (what a removed marker leaves), not before a
# full stop that starts a word: "suffix .stan", "The .zoo part", "p = .05" are the document's.
_SPACE_BEFORE_END_RE = re.compile(r"\s+([.,;:!?]+)(?=\s|$|[\"'\u201d\u2019)\]])")


def without_markers(text: str) -> str:
    """The text without ``[n]`` markers (and the space a marker left before punctuation)."""
    return _SPACE_BEFORE_END_RE.sub(r"\1", _MARKER_RE.sub("", text)).strip()


def _fold(token: str) -> str:
    """A plural's singular, crudely ("tokens" -> "token"), so "uses" matches "use"."""
    return (
        token[:-1] if len(token) > 3 and token.endswith("s") and not token.endswith("ss") else token
    )


def claim_tokens(text: str) -> set[str]:
    """The content words and numbers of ``text``, normalised (:func:`normalise_text`: "2,990"
    is "2990", "7 times" is "7x"), function words left out, plurals folded."""
    tokens = _TOKEN_RE.findall(normalise_text(text))
    return {_fold(t) for t in tokens if t not in _FUNCTION_WORDS}


def grounded(claim: str, text: str) -> bool:
    """Whether every content word and number of ``claim`` is in ``text`` (one stored chunk:
    its title line and body). A claim without content words is grounded."""
    return claim_tokens(_FRAMING_RE.sub("", claim)) <= claim_tokens(text)


def cited_texts(
    sources: Sequence[Mapping[str, Any]], stored: Mapping[str, str]
) -> list[str | None]:
    """What each ``[n]`` marker points at: the stored text of the chunk ``sources[n-1]`` names
    by ``chunk_id`` (``stored``: chunk id -> text, read from the store), None when the store
    does not hold it."""
    return [stored.get(str(source.get("chunk_id", ""))) for source in sources]


def _cited(n: int, texts: Sequence[str | None]) -> str | None:
    return texts[n - 1] if 1 <= n <= len(texts) else None


def sentence_grounded(sentence: Sentence, texts: Sequence[str | None]) -> bool:
    """A sentence is grounded when one chunk it cites grounds it on its own; a sentence citing
    nothing (or only markers that point at no stored chunk) is not."""
    return any(
        (text := _cited(n, texts)) is not None and grounded(sentence.claim, text)
        for n in sentence.cited
    )


def faithfulness(answer: str, texts: Sequence[str | None], refused: bool = False) -> float | None:
    """Share of the answer's sentences (:func:`answer_sentences`) grounded in a chunk they
    cite (:func:`sentence_grounded`); ``texts[n-1]`` is the stored text marker ``[n]`` points
    at (:func:`cited_texts`).

    ``None`` for a refusal or an answer without sentences.
    """
    if refused:
        return None
    sentences = answer_sentences(answer)
    if not sentences:
        return None
    return sum(sentence_grounded(s, texts) for s in sentences) / len(sentences)


def citation_precision(
    answer: str, texts: Sequence[str | None], refused: bool = False
) -> float | None:
    """ALCE-style citation precision: the share of (sentence, n) pairs, over every citation
    marker of every sentence, in which the stored chunk n points at grounds the sentence alone.

    A marker pointing at no stored chunk counts as an ungrounded pair. ``None`` for a refusal
    or an answer without citations.
    """
    if refused:
        return None
    pairs = [(s.claim, n) for s in answer_sentences(answer) for n in s.cited]
    if not pairs:
        return None
    return sum(
        (text := _cited(n, texts)) is not None and grounded(claim, text) for claim, n in pairs
    ) / len(pairs)


def source_text(source: Mapping[str, Any]) -> str:
    """The text the answer says a citation of ``source`` (a ``sources`` entry of
    ``Answer.public()``) points at: its title and text (what answer hygiene reads)."""
    return f"{source.get('title', '')}\n{source.get('text', '')}"


# --------------------------------------------------------------------------- refusals


def refusal_correct(refused: bool, unanswerable: bool) -> float | None:
    """Per-item term of refusal precision: 1.0 for a refusal of an unanswerable item, 0.0 for a
    refusal of an answerable one, ``None`` when the item was answered."""
    if not refused:
        return None
    return 1.0 if unanswerable else 0.0


def refusal_hit(refused: bool, unanswerable: bool) -> float | None:
    """Per-item term of refusal recall: 1.0/0.0 whether an unanswerable item was refused;
    ``None`` for answerable items."""
    if not unanswerable:
        return None
    return 1.0 if refused else 0.0


def false_refusal(refused: bool, unanswerable: bool) -> float | None:
    """Per-item term of the false-refusal rate: 1.0/0.0 whether an answerable item was refused;
    ``None`` for unanswerable items."""
    if unanswerable:
        return None
    return 1.0 if refused else 0.0


def refusal_scores(
    refused: Sequence[bool], unanswerable: Sequence[bool]
) -> dict[str, float | None]:
    """Refusal precision, recall and false-refusal rate over a set of items.

    * precision = refused unanswerable / refused (``None`` if nothing was refused);
    * recall = refused unanswerable / unanswerable (``None`` without unanswerable items);
    * false_refusal_rate = refused answerable / answerable (``None`` without answerable items).

    These equal the means of :func:`refusal_correct`, :func:`refusal_hit` and
    :func:`false_refusal` over the items.
    """
    if len(refused) != len(unanswerable):
        raise ValueError("refused and unanswerable must have the same length")
    pairs = list(zip(refused, unanswerable, strict=True))
    return {
        "refusal_precision": mean(refusal_correct(r, u) for r, u in pairs),
        "refusal_recall": mean(refusal_hit(r, u) for r, u in pairs),
        "false_refusal_rate": mean(false_refusal(r, u) for r, u in pairs),
    }


# --------------------------------------------------------------------------- answer hygiene
# An independent check of what the engine's validator promises (no line without content, no
# repeated sentence, no name absent from the source a sentence cites), written apart from
# service.answering.citations on purpose: simpler rules, so a validator that fails shows up here.

HYGIENE_COUNTS = ("empty_lines", "repeated_sentences", "unsupported_names")
_HY_TAG_RE = re.compile(r"<[^<>\n]*>?")
_HY_LABEL_RE = re.compile(r"^\W*(sources?|question|answer)\W*$", re.IGNORECASE)
_HY_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
_HY_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]")
_HY_NAME_RE = re.compile(r"[a-z][A-Z]|[A-Z]{2}|[A-Za-z]\d")


def _alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def content_less(line: str, titles: Sequence[str]) -> bool:
    """A line that states nothing: prompt markup, punctuation, a label such as ``Sources:``,
    or only the title of a source (citation markers and quotes aside)."""
    text = _HY_TAG_RE.sub(" ", _MARKER_RE.sub(" ", line)).strip()
    if not re.search(r"[A-Za-z]{2}|\d", text) or _HY_LABEL_RE.match(text):
        return True
    return _alnum(text) in {_alnum(t) for t in titles}


def mixed_case_names(sentence: str) -> list[str]:
    """Names that cannot be ordinary words: a capital after a lower-case letter ("DeepSeek"),
    two capitals ("MMLU", "GPT-4"), a letter followed by a digit ("V3"); not amounts ("671B")."""
    return [
        token
        for token in _HY_TOKEN_RE.findall(_MARKER_RE.sub(" ", sentence))
        if not token[0].isdigit() and _HY_NAME_RE.search(token)
    ]


def _named_in(name: str, text: str) -> bool:
    lowered = name.lower()
    return lowered in text or all(part in text for part in lowered.split("-") if part)


def answer_hygiene(
    answer: str, sources: Sequence[Mapping[str, Any]], refused: bool = False
) -> dict[str, int]:
    """Counts of ``HYGIENE_COUNTS`` in one answer: lines without content, sentences that repeat
    an earlier one (compared on letters and digits), and names (:func:`mixed_case_names`) that
    the sources a sentence cites never mention (a fragment without a marker takes the markers
    of the next fragment of its line). A refusal counts nothing."""
    counts = dict.fromkeys(HYGIENE_COUNTS, 0)
    if refused:
        return counts
    titles = [str(s.get("title", "")) for s in sources]
    seen: set[str] = set()
    for line in answer.split("\n"):
        if not line.strip():
            continue
        if content_less(line, titles):
            counts["empty_lines"] += 1
            continue
        fragments = [f for f in _HY_SPLIT_RE.split(line.strip()) if f]
        for i, fragment in enumerate(fragments):
            key = _alnum(_MARKER_RE.sub(" ", fragment))
            if len(key) >= 12 and key in seen:
                counts["repeated_sentences"] += 1
            seen.add(key)
            cited = next((m for f in fragments[i:] if (m := _MARKER_RE.findall(f))), [])
            numbers_cited = {int(n) for m in cited for n in re.findall(r"\d+", m)}
            texts = [
                source_text(sources[n - 1]).lower() for n in numbers_cited if 1 <= n <= len(sources)
            ]
            if not texts:
                continue
            for name in mixed_case_names(fragment):
                if not any(_named_in(name, text) for text in texts):
                    counts["unsupported_names"] += 1
    return counts


# --------------------------------------------------------------------------- one item


def item_metrics(
    *,
    item_type: str,
    gold_titles: Sequence[str],
    key_facts: Sequence[str],
    answer: Mapping[str, Any],
    gold_docs: Sequence[str] = (),
    gold_pages: Mapping[str, Sequence[int]] | None = None,
    stored: Mapping[str, str] | None = None,
) -> dict[str, float | None]:
    """Every per-item metric of one answer (``Answer.public()`` shape) to one dataset item.

    ``stored`` maps the chunk ids of the answer's sources to their text as read from the store
    (:func:`cited_texts`); without it, ``faithfulness`` and ``citation_precision`` are not
    computed (``None``): the text the answer carries is no independent evidence."""
    unanswerable = item_type == UNANSWERABLE
    refused = bool(answer.get("refused"))
    text = str(answer.get("answer", ""))
    sources = list(answer.get("sources", []))
    citations = list(answer.get("citations", []))
    retrieved = [str(s.get("title", "")) for s in sources]
    cited = [str(c.get("title", "")) for c in citations]
    gold = [] if unanswerable else list(gold_titles)
    docs = [] if unanswerable else list(gold_docs)
    facts = [] if unanswerable else list(key_facts)
    texts = cited_texts(sources, stored or {})
    return {
        "hit_at_1": hit_at_k(retrieved, gold, 1),
        "hit_at_5": hit_at_k(retrieved, gold, 5),
        "mrr": reciprocal_rank(retrieved, gold),
        "all_gold_at_5": _all_gold_at_5(item_type, sources, gold, docs),
        "gold_doc_at_5": gold_doc_at_k([str(s.get("source", "")) for s in sources], docs),
        "citation_hit": citation_hit(cited, gold),
        "gold_doc_cited": gold_doc_cited([str(c.get("source", "")) for c in citations], docs),
        "page_accuracy": None if unanswerable else page_accuracy(citations, gold_pages or {}),
        "key_fact_accuracy": key_fact_accuracy(text, facts, refused),
        "key_fact_recall": key_fact_recall(text, facts, refused),
        "faithfulness": None if stored is None else faithfulness(text, texts, refused),
        "citation_precision": None if stored is None else citation_precision(text, texts, refused),
        "refusal_precision": refusal_correct(refused, unanswerable),
        "refusal_recall": refusal_hit(refused, unanswerable),
        "false_refusal_rate": false_refusal(refused, unanswerable),
    }


# --------------------------------------------------------------------------- aggregation


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not ``None``; ``None`` if there are none."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return sum(present) / len(present)


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def aggregate(
    records: Sequence[Mapping[str, float | None]], names: Sequence[str], digits: int = 4
) -> dict[str, float | None]:
    """The mean of each metric in ``names`` over ``records`` (``None`` values excluded), rounded."""
    return {name: rounded(mean(r.get(name) for r in records), digits) for name in names}


def applicable_counts(
    records: Sequence[Mapping[str, float | None]], names: Sequence[str]
) -> dict[str, int]:
    """How many records each metric applied to (was not ``None``)."""
    return {name: sum(r.get(name) is not None for r in records) for name in names}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default method);
    ``None`` for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_stats(totals_ms: Sequence[float], digits: int = 1) -> dict[str, float | None]:
    """p50 / p95 / mean / max of per-question total latencies, in milliseconds."""
    return {
        "p50_ms": rounded(percentile(totals_ms, 50), digits),
        "p95_ms": rounded(percentile(totals_ms, 95), digits),
        "mean_ms": rounded(mean(totals_ms), digits),
        "max_ms": rounded(max(totals_ms), digits) if totals_ms else None,
        "count": len(totals_ms),
    }

"""Citation validation, applied to every answer whichever generator wrote it.

For each sentence of the answer:

1. ``[n]`` markers that point at no returned source are removed (invented citations);
2. a sentence without a valid marker is given the source that supports it best, if one does;
3. the sentence must be *supported* by the text it cites: every number it states appears there
   (normalised: "2,990" = "2990"), and at least ``MIN_COVERAGE`` of its content terms (stemmed)
   appear in the cited text or the cited document's title;
4. unsupported sentences are dropped from the answer and reported in ``dropped``.

Each kept citation records the sentence of the cited chunk that best matches the answer sentence:
its exact text (``quote``) and character offsets in the document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from citeqa.layout import location
from citeqa.text import answer_sentence_spans, numbers, sentence_spans, term_set
from service.answer import Citation
from service.retrieval import Hit

MIN_COVERAGE = 0.6
_MARKER_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass
class Validated:
    text: str
    citations: list[Citation]
    dropped: list[dict[str, str]]


def parse_markers(sentence: str) -> list[int]:
    """The citation numbers of ``[n]`` / ``[n, m]`` markers, in order of first appearance."""
    found: list[int] = []
    for group in _MARKER_RE.findall(sentence):
        for number in group.split(","):
            if int(number) not in found:
                found.append(int(number))
    return found


def strip_markers(sentence: str) -> str:
    """The text without ``[n]`` citation markers (and the space left before punctuation)."""
    return re.sub(r"\s+([.,;:!?])", r"\1", _MARKER_RE.sub("", sentence)).strip()


def support(claim: str, hit: Hit) -> tuple[bool, str]:
    """Whether ``hit`` supports ``claim``; the reason when it does not."""
    evidence = hit.text
    missing_numbers = numbers(claim) - numbers(evidence)
    if missing_numbers:
        return False, f"number(s) {', '.join(sorted(missing_numbers))} not in the cited source"
    claim_terms = term_set(claim)
    if not claim_terms:
        return True, ""
    covered = len(claim_terms & term_set(evidence)) / len(claim_terms)
    if covered < MIN_COVERAGE:
        return False, f"only {covered:.0%} of its content words are in the cited source"
    return True, ""


def best_quote(claim: str, hit: Hit, document_offset: int) -> tuple[str, int, int]:
    """The sentence of ``hit`` closest to ``claim``, with document offsets."""
    body = hit.body
    exact = body.find(claim)
    if exact >= 0:  # a verbatim quote (the extractive generator's sentences)
        return claim, document_offset + exact, document_offset + exact + len(claim)
    spans = json.loads(str(hit.metadata.get("sentences", "[]"))) or [
        [document_offset + s, document_offset + e] for s, e in sentence_spans(body)
    ]
    claim_terms = term_set(claim)
    best = max(
        spans,
        key=lambda span: _overlap(
            claim_terms, body[span[0] - document_offset : span[1] - document_offset]
        ),
    )
    start, end = int(best[0]), int(best[1])
    return body[start - document_offset : end - document_offset], start, end


def _overlap(claim_terms: set[str], text: str) -> float:
    terms = term_set(text)
    return len(claim_terms & terms) / (len(terms) ** 0.5 + 1)


def validate(answer: str, hits: list[Hit]) -> Validated:
    """Validate every sentence of ``answer`` against ``hits`` (citation n is hits[n-1])."""
    kept_paragraphs: list[str] = []
    citations: list[Citation] = []
    dropped: list[dict[str, str]] = []
    for paragraph in answer.split("\n"):
        kept: list[str] = []
        for start, end in answer_sentence_spans(paragraph):
            sentence = _validate_sentence(paragraph[start:end], hits, citations, dropped)
            if sentence:
                kept.append(sentence)
        if kept:
            kept_paragraphs.append(" ".join(kept))
    return Validated("\n\n".join(kept_paragraphs), citations, dropped)


def _validate_sentence(
    raw: str, hits: list[Hit], citations: list[Citation], dropped: list[dict[str, str]]
) -> str | None:
    claim = strip_markers(raw)
    if not term_set(claim) and not numbers(claim):
        return None  # a stray marker or punctuation
    markers = [n for n in parse_markers(raw) if 1 <= n <= len(hits)]
    if not markers:
        markers = _best_supporting(claim, hits)
    supported = []
    reason = "no source supports it"
    for n in markers:
        ok, why = support(claim, hits[n - 1])
        if ok:
            supported.append(n)
        else:
            reason = why
    if not supported:
        dropped.append({"sentence": claim, "reason": reason})
        return None
    for n in supported:
        citation = _citation(n, claim, hits[n - 1])
        if citation not in citations:  # two sentences may quote the same span: listed once
            citations.append(citation)
    return claim_with_markers(claim, supported)


def _best_supporting(claim: str, hits: list[Hit]) -> list[int]:
    for n, hit in enumerate(hits, start=1):
        if support(claim, hit)[0]:
            return [n]
    return []


def claim_with_markers(claim: str, ns: list[int]) -> str:
    marks = "".join(f"[{n}]" for n in ns)
    if claim and claim[-1] in ".!?":
        return f"{claim[:-1]} {marks}{claim[-1]}"
    return f"{claim} {marks}"


def _citation(n: int, claim: str, hit: Hit) -> Citation:
    offset = int(hit.metadata.get("start", 0))
    quote, start, end = best_quote(claim, hit, offset)
    return Citation(
        n=n,
        doc_id=hit.doc_id,
        title=hit.title,
        chunk_id=hit.chunk_id,
        quote=quote,
        start=start,
        end=end,
        url=hit.url or None,
        source=hit.source,
        collection=hit.collection,
        **location(hit.metadata, start, end),
    )

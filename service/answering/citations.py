"""Citation validation, applied to every answer whichever generator wrote it.

For each sentence of the answer:

1. ``[n]`` markers that point at no returned source are removed (invented citations);
2. a sentence without a valid marker is given the source that supports it best, if one does;
3. the sentence must be *supported* by the text it cites: every number it states appears there
   (normalised: "2,990" = "2990") in a sentence about the same subject (one that shares a name or
   content terms with it), every name it states (:func:`citeqa.text.names`: the model, dataset or
   method it is about) appears there, and at least ``MIN_COVERAGE`` of its content terms
   (stemmed) appear in the cited text or the cited document's title;
4. unsupported sentences are dropped from the answer and reported in ``dropped``; so are
   repeated sentences, while sentences without content (prompt markup, a ``Sources:`` label, a
   source title on its own) are removed silently.

:class:`Validator` does this sentence by sentence as the text arrives, so a stream can show
validated text only; :func:`validate` feeds it a whole answer.

Each kept citation records the sentence of the cited chunk that best matches the answer sentence:
its exact text (``quote``) and character offsets in the document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from citeqa.layout import location
from citeqa.text import (
    QUOTATION_RE,
    answer_sentence_spans,
    mentions,
    names,
    numbers,
    sentence_spans,
    squashed,
    term_set,
)
from service.answering.answer import Citation
from service.answering.retrieval import Hit

MIN_COVERAGE = 0.6
NUMBER_CONTEXT_TERMS = 2  # content terms a number's sentence shares with the claim
_MARKER_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_SPACE_BEFORE_END = re.compile(r"\s+([.,;:!?]+)(?=\s|$|[\"'\u201d\u2019)\]])")


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
    """The text without ``[n]`` citation markers (and the space a marker leaves before the
    punctuation that closes a clause). A space before a full stop that starts a word stays:
    "suffix .stan", "ifelse .zoo", "p = .05" are what the document says."""
    return _SPACE_BEFORE_END.sub(r"\1", _MARKER_RE.sub("", sentence)).strip()


def support(claim: str, hit: Hit) -> tuple[bool, str]:
    """Whether ``hit`` supports ``claim``; the reason when it does not."""
    evidence = hit.text
    missing_numbers = numbers(claim) - numbers(evidence)
    if missing_numbers:
        return False, f"number(s) {', '.join(sorted(missing_numbers))} not in the cited source"
    lowered = evidence.lower()
    claim_names = names(claim)
    absent = [name for name in claim_names if not mentions(lowered, name)]
    if absent:
        return False, f"name(s) {', '.join(absent)} not in the cited source"
    claim_terms = term_set(claim)
    if not claim_terms:
        return True, ""
    covered = len(claim_terms & term_set(evidence)) / len(claim_terms)
    if covered < MIN_COVERAGE:
        return False, f"only {covered:.0%} of its content words are in the cited source"
    elsewhere = _numbers_of_another_subject(claim, claim_names, claim_terms, evidence)
    if elsewhere:
        return False, f"number(s) {', '.join(elsewhere)} stated of another subject in the source"
    return True, ""


def _numbers_of_another_subject(
    claim: str, claim_names: list[str], claim_terms: set[str], evidence: str
) -> list[str]:
    """The claim's numbers that no sentence of ``evidence`` states of the claim's subject.

    A number is stated of the subject when a sentence of the evidence holds it and also names
    one of the claim's names, or shares at least :data:`NUMBER_CONTEXT_TERMS` of the claim's
    other content terms (all of them when it has fewer): "37B activated parameters" of the
    sentence that says "37B activated", not of one that only happens to contain "37".
    """
    stated = numbers(claim)
    if not stated:
        return []
    focus = {t for t in claim_terms if not any(ch.isdigit() for ch in t)}
    needed = min(NUMBER_CONTEXT_TERMS, len(focus))
    found: set[str] = set()
    for start, end in sentence_spans(evidence):
        sentence = evidence[start:end]
        here = stated & numbers(sentence)
        if not here:
            continue
        lowered = sentence.lower()
        if any(mentions(lowered, name) for name in claim_names) or (
            len(focus & term_set(sentence)) >= needed
        ):
            found |= here
    return sorted(stated - found)


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


@dataclass
class Piece:
    """Validated answer text as it becomes final: ``text`` to append to the answer (with its
    separator from what came before) and the citations that ``text`` added."""

    text: str
    citations: list[Citation]


class Validator:
    """Validates an answer sentence by sentence, as the text arrives.

    :meth:`feed` takes any piece of the draft and returns the :class:`Piece` s that became final:
    a sentence is validated once it is complete, that is when a later sentence or line has
    started (or at :meth:`close`). Kept sentences are joined with a space within a line of the
    draft; lines with kept sentences become paragraphs joined by a blank line. The concatenation
    of every returned piece is :attr:`text`, exactly. :func:`validate` feeds a whole answer.

    Besides the support rule of :func:`support`, a sentence is dropped when it has no content
    (prompt markup, a ``Sources:`` label, a title on its own: :func:`content_of`) or repeats an
    earlier sentence of the answer.
    """

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.citations: list[Citation] = []
        self.dropped: list[dict[str, str]] = []
        self.text = ""
        self._buffer = ""  # the current line of the draft, not yet validated
        self._line_kept = False  # the current line already has a kept sentence
        self._seen: set[str] = set()
        self._quoted = "\n".join(f"{hit.title}\n{hit.text}" for hit in hits)
        self._titles = {  # a title, and each sentence of one ("Is X all you need?")
            squashed(part)
            for hit in hits
            for part in [hit.title, *(hit.title[a:b] for a, b in sentence_spans(hit.title))]
        }

    def feed(self, text: str) -> list[Piece]:
        """Validate what ``text`` completes; returns the pieces that became final."""
        self._buffer += text
        pieces: list[Piece] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            pieces += self._sentences(line, answer_sentence_spans(line))
            self._line_kept = False
        spans = answer_sentence_spans(self._buffer)
        done = _complete_spans(self._buffer, spans)
        if done:
            cut = spans[done][0]
            pieces += self._sentences(self._buffer, spans[:done])
            self._buffer = self._buffer[cut:]
        return pieces

    def close(self, cut_reason: str | None = None) -> list[Piece]:
        """Validate the rest. ``cut_reason`` says why the draft stopped early (a time or token
        limit): its last sentence is then dropped unless it ended."""
        line, self._buffer = self._buffer, ""
        spans = answer_sentence_spans(line)
        if cut_reason and spans and not _ENDED_RE.search(line[spans[-1][0] : spans[-1][1]]):
            start, end = spans.pop()
            self.dropped.append({"sentence": strip_markers(line[start:end]), "reason": cut_reason})
        return self._sentences(line, spans)

    def result(self) -> Validated:
        return Validated(self.text, self.citations, self.dropped)

    def _sentences(self, line: str, spans: list[tuple[int, int]]) -> list[Piece]:
        pieces = []
        for start, end in spans:
            before = len(self.citations)
            sentence = self._sentence(line[start:end])
            if sentence is None:
                continue
            separator = " " if self._line_kept else ("\n\n" if self.text else "")
            self._line_kept = True
            piece = Piece(separator + sentence, self.citations[before:])
            self.text += piece.text
            pieces.append(piece)
        return pieces

    def _sentence(self, raw: str) -> str | None:
        claim = content_of(strip_markers(raw), self._titles, self._quoted)
        if not claim:
            return None  # markup, a label, a title, a stray marker or punctuation
        key = squashed(claim)
        if key in self._seen:
            self.dropped.append({"sentence": claim, "reason": "repeats an earlier sentence"})
            return None
        self._seen.add(key)
        cited = parse_markers(raw)
        return _validate_sentence(claim, cited, self.hits, self.citations, self.dropped)


def _complete_spans(line: str, spans: list[tuple[int, int]]) -> int:
    """How many leading sentences of an unfinished ``line`` are complete: all but the last,
    once the last one's first word is whole (the splitter looks at the word after a full stop)
    and no quotation opened before them is still open (a closing quote can join sentences)."""
    if len(spans) < 2 or not re.search(r"\s", line[spans[-1][0] :].lstrip()):
        return 0
    closed = [m.span() for m in QUOTATION_RE.finditer(line)]
    opened = [
        m.start()
        for m in re.finditer('[\u201c"]', line)
        if not any(start <= m.start() < end for start, end in closed)
    ]
    done = len(spans) - 1
    while done and opened and opened[0] < spans[done - 1][1]:
        done -= 1
    return done


_ENDED_RE = re.compile(r"[.!?][\"\u201d')\]]*(\s*\[[\d,\s]+\])*\s*$")
_MARKUP_RE = re.compile(r"</?[A-Za-z_][^<>\n]*>?|&lt;/?\w+[^\n]*?(&gt;|>|$)")
_LABEL_RE = re.compile(r"^\W*(sources?|question|answer|title|from|id)\s*:\s*", re.IGNORECASE)


def content_of(claim: str, titles: set[str], quoted: str = "") -> str:
    """The claim without prompt markup (``<source ...>``, ``</source>``) and a leading prompt
    label (``Sources:``); empty when nothing is left that states anything: no content word or
    number, or only the title of a source or one sentence of a title (``titles``, squashed).
    Markup that the sources themselves contain (``quoted``: their titles and texts) is what the
    document says, quoted: it stays (the page shows it as text)."""

    def unless_quoted(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0) in quoted else " "

    text = _LABEL_RE.sub("", _MARKUP_RE.sub(unless_quoted, claim)).strip()
    if text != claim:  # close the gap markup left; a verbatim quote stays as it is
        text = re.sub(r"\s{2,}", " ", text)
    if not term_set(text) and not numbers(text):
        return ""
    if squashed(text) in titles:
        return ""
    return text


def validate(answer: str, hits: list[Hit]) -> Validated:
    """Validate every sentence of ``answer`` against ``hits`` (citation n is hits[n-1])."""
    validator = Validator(hits)
    validator.feed(answer)
    validator.close()
    return validator.result()


def _validate_sentence(
    claim: str,
    cited: list[int],
    hits: list[Hit],
    citations: list[Citation],
    dropped: list[dict[str, str]],
) -> str | None:
    markers = [n for n in cited if 1 <= n <= len(hits)]
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

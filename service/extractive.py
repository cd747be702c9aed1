"""The extractive generator: answers with verbatim sentences of the sources, no LLM needed.

It picks the best-scoring candidate sentence (see :mod:`service.evidence`), adds the sentence
next to it when that one also answers the question (facts often span two sentences), and, for
questions that span papers, the best sentence of each other document that scores nearly as
well. Every sentence is quoted verbatim and followed by the number of its source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from service.answer import Draft
from service.citations import claim_with_markers
from service.evidence import Candidate, Evidence, asks_several

MAX_SENTENCES = 5
SAME_CHUNK_RATIO = 0.85  # a second sentence of the best chunk scoring this close is kept
MIN_RATIO = 0.6  # an added sentence scores at least this share of the best one
MIN_GAIN = 0.12  # ... and covers at least this (IDF-weighted) share of the question anew


class ExtractiveGenerator:
    name = "extractive"

    def generate(self, evidence: Evidence) -> Draft:
        chosen = select_sentences(evidence)
        if not chosen:
            return Draft(text="", refused=True)
        # One paragraph per paper, led by its title: the reader sees where each quote is from.
        paragraphs: dict[str, list[str]] = {}
        titles: dict[str, str] = {}
        for cand in chosen:
            hit = evidence.hits[cand.hit_index]
            titles.setdefault(hit.doc_id, hit.title)
            paragraphs.setdefault(hit.doc_id, []).append(
                claim_with_markers(cand.text, [cand.hit_index + 1])
            )
        text = "\n".join(
            f"\u201c{titles[doc]}\u201d: {' '.join(p)}" for doc, p in paragraphs.items()
        )
        return Draft(text=text)

    def stream(self, evidence: Evidence) -> Iterator[str]:
        """The same draft, in word-sized pieces (for streaming APIs)."""
        draft = self.generate(evidence)
        yield from re.findall(r"\S+\s*", draft.text)


MAX_DOCUMENTS = 3


_ENTITY = re.compile(r"\b[\w\-\.]*(?:[a-z][A-Z]|[A-Z]{2}|\d)[\w\-\.]*\b")


def is_multi_part(question: str, titles: list[str] | None = None) -> bool:
    """The question asks about several things at once: "both", "each", "compare", two joined
    questions, or names (like "EMOv2", "GLM-130B") that appear in the titles of different
    retrieved papers."""
    if asks_several(question):
        return True
    names = {m.group(0).lower() for m in _ENTITY.finditer(question)}
    named = {t for t in titles or [] if any(n in t.lower() for n in names)}
    return len(named) >= 2


def _best_of_other_documents(
    evidence: Evidence, chosen: list[Candidate], best_score: float
) -> list[Candidate]:
    """The best sentence of each further document that scores close enough to the best, and
    of each document that alone mentions a name the question asks about ("... of Apollo-7B
    and of LongVA-7B"), however it scores: that part of the question is about that paper."""
    doc_of = [hit.doc_id for hit in evidence.hits]
    used = {doc_of[c.hit_index] for c in chosen}
    added: list[Candidate] = []
    named = evidence.names.distinctive_by_doc()
    covered = set().union(*(named.get(d, set()) for d in used))
    for cand in sorted(evidence.candidates, key=lambda c: -c.score):
        doc = doc_of[cand.hit_index]
        if len(used) >= MAX_DOCUMENTS or doc in used:
            continue
        if cand.score >= MIN_RATIO * best_score or named.get(doc, set()) - covered:
            used.add(doc)
            covered |= named.get(doc, set())
            added.append(cand)
    return added


def _runners_up(evidence: Evidence, chosen: list[Candidate]) -> list[Candidate]:
    """For a question about several papers, each paper's second sentence when it scores
    nearly as well as its first: each part of the question may be answered by another one."""
    added: list[Candidate] = []
    for first in list(chosen):
        doc = evidence.hits[first.hit_index].doc_id
        same_doc = [c for c in evidence.candidates if evidence.hits[c.hit_index].doc_id == doc]
        second = _runner_up(first, same_doc, chosen + added)
        if second is not None:
            added.append(second)
    return added


def _runner_up(first: Candidate, pool: list[Candidate], taken: list[Candidate]) -> Candidate | None:
    """The best sentence of ``pool`` not yet taken, when it scores nearly as well as
    ``first``."""
    second = max((c for c in pool if c not in taken), key=lambda c: c.score, default=None)
    return second if second is not None and second.score >= SAME_CHUNK_RATIO * first.score else None


def select_sentences(evidence: Evidence) -> list[Candidate]:
    """The best sentence, then greedily those that cover question terms it leaves uncovered.

    Compound questions ("what error, and which competition?") and questions spanning papers
    ("what speedup does each report?") need several sentences; a sentence is added only when it
    scores close to the best and covers a meaningful share of the question that the sentences
    chosen so far do not.
    """
    best = evidence.best()
    if best is None:
        return []
    chosen = [best]
    same_chunk = [c for c in evidence.candidates if c.hit_index == best.hit_index]
    runner_up = _runner_up(best, same_chunk, chosen)
    if runner_up is not None:
        chosen.append(runner_up)  # facts often run over two sentences
    if evidence.names.split() or is_multi_part(
        evidence.question, list({h.title for h in evidence.hits})
    ):
        chosen.extend(_best_of_other_documents(evidence, chosen, best.score))
        if len({evidence.hits[c.hit_index].doc_id for c in chosen}) > 1:
            chosen.extend(_runners_up(evidence, chosen)[: MAX_SENTENCES - len(chosen)])
    covered = set().union(*(c.matched for c in chosen))
    total = sum(evidence.term_weights.values()) or 1.0
    while len(chosen) < MAX_SENTENCES:
        pool = [
            c for c in evidence.candidates if c not in chosen and c.score >= MIN_RATIO * best.score
        ]
        gains = [
            (sum(evidence.term_weights.get(t, 0.0) for t in c.matched - covered) / total, c)
            for c in pool
        ]
        gain, pick = max(gains, key=lambda g: (g[0], g[1].score), default=(0.0, None))
        if pick is None or gain < MIN_GAIN:
            break
        chosen.append(pick)
        covered |= pick.matched
    return sorted(chosen, key=lambda c: (c.hit_index, c.position))

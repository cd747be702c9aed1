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
from service.evidence import Candidate, Evidence

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
        paragraphs: dict[int, list[str]] = {}
        for cand in chosen:
            paragraphs.setdefault(cand.hit_index, []).append(
                claim_with_markers(cand.text, [cand.hit_index + 1])
            )
        return Draft(text="\n".join(" ".join(p) for p in paragraphs.values()))

    def stream(self, evidence: Evidence) -> Iterator[str]:
        """The same draft, in word-sized pieces (for streaming APIs)."""
        draft = self.generate(evidence)
        for piece in re.findall(r"\S+\s*", draft.text):
            yield piece


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
    same_chunk = [c for c in evidence.candidates if c.hit_index == best.hit_index and c is not best]
    runner_up = max(same_chunk, key=lambda c: c.score, default=None)
    if runner_up is not None and runner_up.score >= SAME_CHUNK_RATIO * best.score:
        chosen.append(runner_up)  # facts often run over two sentences
    covered = set().union(*(c.matched for c in chosen))
    total = sum(evidence.term_weights.values()) or 1.0
    while len(chosen) < MAX_SENTENCES:
        pool = [c for c in evidence.candidates if c not in chosen and c.score >= MIN_RATIO * best.score]
        gains = [(sum(evidence.term_weights.get(t, 0.0) for t in c.matched - covered) / total, c) for c in pool]
        gain, pick = max(gains, key=lambda g: (g[0], g[1].score), default=(0.0, None))
        if pick is None or gain < MIN_GAIN:
            break
        chosen.append(pick)
        covered |= pick.matched
    return sorted(chosen, key=lambda c: (c.hit_index, c.position))

"""Hand-made evidence parts for tests of the answer's selection and rendering."""

from __future__ import annotations

from service.answering.evidence import Candidate


def candidate(hit_index: int, text: str, score: float = 0.0) -> Candidate:
    """A candidate sentence of hit ``hit_index`` with middling features and the given score."""
    return Candidate(
        hit_index=hit_index,
        position=0,
        text=text,
        start=0,
        end=len(text),
        similarity=0.5,
        coverage=0.5,
        detail=0.5,
        has_number=False,
        score=score,
    )

"""Hand-made evidence parts for tests of the answer's selection and rendering."""

from __future__ import annotations

from service.answering.evidence import Candidate
from service.answering.retrieval import Hit


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


def titled_hit(doc_id: str, title: str, ranks: dict[str, int] | None = None) -> Hit:
    """A hit whose chunk is its document's title, at the given rank in each retriever."""
    return Hit(
        chunk_id=f"{doc_id}#0",
        doc_id=doc_id,
        title=title,
        text=title,
        score=1.0,
        url="",
        metadata={},
        ranks=dict(ranks or {}),
    )

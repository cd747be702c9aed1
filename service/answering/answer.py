"""What an answer is: text with [n] markers, validated citations, sources, timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from service.answering.retrieval import Hit

REFUSAL_TEXT = "The corpus does not contain an answer to this question."


@dataclass
class Citation:
    """Where a cited sentence comes from: the exact span of a document, the document's
    provenance (:attr:`Hit.source`, the collection), so a reader can judge the source, and,
    when known, its physical page (1-based, what ``#page=N`` opens; ``page_end`` when the
    quote runs onto another page; ``page_label`` when the PDF prints another number there)
    and section (heading trail)."""

    n: int
    doc_id: str
    title: str
    chunk_id: str
    quote: str
    start: int
    end: int
    url: str | None
    source: str
    collection: str
    page: int | None = None
    page_end: int | None = None
    page_label: str | None = None
    section: str | None = None


@dataclass
class Draft:
    """A generator's raw output, before citation validation."""

    text: str
    refused: bool = False
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    sources: list[Hit]
    timings_ms: dict[str, float]
    generator: str
    answerability: float
    standalone_question: str | None = None
    dropped: list[dict[str, str]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)  # LLM tokens; empty without an LLM
    # Names of the question the collection never writes, read as the one it does that they
    # are a slip of ("Perseption" -> "Perception"; service.answering.spelling).
    read_as: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The JSON shape of /v1/ask and `citeqa ask --json`."""
        return {
            "question": self.question,
            "answer": self.answer,
            "refused": self.refused,
            "citations": [asdict(c) for c in self.citations],
            "sources": public_sources(self.sources),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "generator": self.generator,
            "answerability": round(self.answerability, 4),
            "dropped": self.dropped,
            "usage": self.usage,
            "read_as": self.read_as,
        }


def public_sources(hits: list[Hit]) -> list[dict[str, Any]]:
    """The JSON shape of sources (in answers, searches and streams), numbered from 1 as the
    citations number them."""
    return [dict(hit.public(), n=n) for n, hit in enumerate(hits, start=1)]


def refusal_text(hits: list[Hit], limit: int = 3, unknown: list[str] | None = None) -> str:
    """The refusal, saying which names of the question the corpus never mentions, and listing
    the closest sources so the user can look for themselves."""
    text = REFUSAL_TEXT
    if unknown:
        text += f" No document mentions {', '.join(unknown)}."
    if not hits:
        return text
    seen: list[str] = []
    lines = []
    for i, hit in enumerate(hits):
        if hit.doc_id in seen:
            continue
        seen.append(hit.doc_id)
        lines.append(f"[{i + 1}] {hit.title}")
        if len(lines) == limit:
            break
    return f"{text} Closest sources: " + "; ".join(lines) + "."

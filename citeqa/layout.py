"""Where a span of a document's text is: its physical page (1-based) and its section path.

Ingest records, per document, the offset where each page starts and where each section (a
heading trail such as "3 Model fitting > 3.2 Priors") starts; each chunk keeps the part of that
map it covers, so a citation of any span of the chunk can say its page and section.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Layout:
    """Page starts and section starts of one document's text, both sorted by offset."""

    pages: list[tuple[int, int]] = field(default_factory=list)  # (offset, page number)
    sections: list[tuple[int, str]] = field(default_factory=list)  # (offset, heading trail)
    labels: dict[int, str] = field(default_factory=dict)  # page -> printed label, if other

    def page_at(self, offset: int) -> int | None:
        return _at(self.pages, offset)

    def section_at(self, offset: int) -> str:
        return _at(self.sections, offset) or ""

    def page_map(self, start: int, end: int) -> list[tuple[int, int]]:
        """The page starts that matter for [start, end): the page at ``start``, then each later
        page start before ``end``."""
        first = max(_index(self.pages, start), 0)
        return [page for page in self.pages[first:] if page[0] < end]


def _index(starts: list[tuple[int, Any]], offset: int) -> int:
    """The index of the last start at or before ``offset``; -1 when there is none."""
    return bisect.bisect_right(starts, offset, key=lambda start: start[0]) - 1


def _at(starts: list[tuple[int, Any]], offset: int) -> Any:
    i = _index(starts, offset)
    return starts[i][1] if i >= 0 else None


def location(metadata: Mapping[str, Any], start: int, end: int) -> dict[str, Any]:
    """``page`` (and ``page_end`` when the span crosses pages; ``page_label`` when the PDF
    prints another label on that page) and ``section`` of the span [start, end) of a chunk,
    from the chunk's metadata; a key is left out when unknown."""
    found: dict[str, Any] = {}
    pages = [(int(o), int(p)) for o, p in json.loads(str(metadata.get("page_map") or "[]"))]
    if pages:
        layout = Layout(pages=pages)
        first, last = layout.page_at(start), layout.page_at(max(start, end - 1))
        found["page"] = first if first is not None else pages[0][1]
        if last is not None and last != found["page"]:
            found["page_end"] = last
        labels = json.loads(str(metadata.get("page_labels") or "{}"))
        if str(found["page"]) in labels:
            found["page_label"] = labels[str(found["page"])]
    if metadata.get("section"):
        found["section"] = str(metadata["section"])
    return found


def describe(
    source: str | None,
    page: int | None,
    page_end: int | None,
    section: str | None,
    page_label: str | None = None,
) -> str:
    """How a person reads a place: "paper.pdf, p. 7-8 · 3 Model fitting > 3.2 Priors"
    (the parts that are known; "p. 7 (printed 5)" where the PDF labels its pages)."""
    parts = [source] if source else []
    if page is not None:
        printed = f" (printed {page_label})" if page_label else ""
        parts.append(f"p. {page}" + (f"-{page_end}" if page_end is not None else "") + printed)
    place = ", ".join(parts)
    if section:
        place = f"{place} · {section}" if place else section
    return place

"""Sentence-preserving chunker, as a llama-index ``NodeParser``.

Each chunk holds whole sentences of one document (a sentence longer than the budget becomes a
chunk of its own), starts with the document title so that every chunk says what it is about,
and records the character offsets of its sentences in the document so answers can quote exact
spans. Chunk ids are deterministic: document id, position and a hash of the content.

Given the document's :class:`~citeqa.layout.Layout`, a chunk never spans two sections, and it
records its ``section`` (heading trail), ``page_start``/``page_end``, ``page_map`` (the page
starts within it, so that any quote of it can say its page) and ``page_labels`` (printed page
labels that differ from the page numbers).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import BaseNode, NodeRelationship, TextNode
from pydantic import Field

from citeqa.layout import Layout
from citeqa.text import sentence_spans

Span = tuple[int, int]


def chunk_id(doc_id: str, index: int, text: str) -> str:
    return f"{doc_id}#{index}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def doc_hash(title: str, text: str, layout: Layout | None = None) -> str:
    """The version of a document: its title, text and layout (when it has pages or sections:
    a text file without headings keeps the version it had before layouts existed)."""
    parts = [layout.pages, layout.sections, layout.labels] if layout else []
    where = f"\n{json.dumps(parts)}" if any(parts) else ""
    return hashlib.sha1(f"{title}\n{text}{where}".encode()).hexdigest()[:16]


class SentenceChunker(NodeParser):
    """Packs whole sentences into chunks of at most ``max_tokens`` (title included)."""

    max_tokens: int = Field(200, description="Budget of word pieces per chunk.")
    count_tokens: Callable[[str], int] = Field(exclude=True, description="Token counter.")

    def _parse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        out: list[BaseNode] = []
        for node in nodes:
            out.extend(self.chunk_document(node))
        return out

    def chunk_document(self, document: BaseNode, layout: Layout | None = None) -> list[TextNode]:
        text = document.get_content()
        title = str(document.metadata["title"])
        spans = sentence_spans(text) or [(0, len(text))]
        budget = max(16, self.max_tokens - self.count_tokens(title))
        groups = [g for part in _by_section(spans, layout) for g in self._pack(text, part, budget)]
        digest = doc_hash(title, text, layout)
        return [
            self._node(document, title, text, group, index, digest, layout)
            for index, group in enumerate(groups)
        ]

    def _pack(self, text: str, spans: list[Span], budget: int) -> list[list[Span]]:
        """Greedy packing towards an even size, so a document splits into balanced chunks."""
        sizes = [self.count_tokens(text[s:e]) for s, e in spans]
        parts = max(1, math.ceil(sum(sizes) / budget))
        target = min(budget, math.ceil(sum(sizes) / parts))
        groups: list[list[Span]] = [[]]
        used = 0
        for span, size in zip(spans, sizes, strict=True):
            if groups[-1] and used + size > target and used + size > target * 1.15:
                groups.append([])
                used = 0
            groups[-1].append(span)
            used += size
        return groups

    def _node(
        self,
        document: BaseNode,
        title: str,
        text: str,
        group: list[Span],
        index: int,
        digest: str,
        layout: Layout | None,
    ) -> TextNode:
        start, end = group[0][0], group[-1][1]
        prefix = f"{title}\n"
        content = prefix + text[start:end]
        metadata = {
            "doc_id": document.metadata["doc_id"],
            "title": title,
            "url": document.metadata.get("url", ""),
            "source": document.metadata["source"],
            "doc_hash": digest,
            "chunk_index": index,
            "start": start,
            "prefix_len": len(prefix),
            "sentences": json.dumps(group),
        }
        if layout is not None:
            metadata.update(_where(layout, start, end))
        if document.metadata.get("file"):  # an upload's original, kept by ingest/uploads.py
            metadata["file"] = document.metadata["file"]
        return TextNode(
            id_=chunk_id(str(document.metadata["doc_id"]), index, content),
            text=content,
            metadata=metadata,
            relationships={NodeRelationship.SOURCE: document.as_related_node_info()},
        )


def _by_section(spans: list[Span], layout: Layout | None) -> list[list[Span]]:
    """The sentence spans in runs of one section each (one run without sections)."""
    if layout is None or not layout.sections:
        return [spans]
    runs: list[list[Span]] = []
    current: str | None = None
    for span in spans:
        section = layout.section_at(span[0])
        if not runs or section != current:
            runs.append([])
            current = section
        runs[-1].append(span)
    return runs


def _where(layout: Layout, start: int, end: int) -> dict[str, Any]:
    """Chunk metadata: section, first and last page, and the page starts within the chunk."""
    found: dict[str, Any] = {}
    section = layout.section_at(start)
    if section:
        found["section"] = section
    pages = layout.page_map(start, end)
    if pages:
        found["page_start"] = pages[0][1]
        found["page_end"] = pages[-1][1]
        found["page_map"] = json.dumps(pages)
        labels = {page: layout.labels[page] for _, page in pages if page in layout.labels}
        if labels:
            found["page_labels"] = json.dumps(labels)
    return found

"""Sentence-preserving chunker, as a llama-index ``NodeParser``.

Each chunk holds whole sentences of one document (a sentence longer than the budget becomes a
chunk of its own), starts with the document title and, when the document has headings, the
section trail it is in, so that every chunk says what it is about even far from its heading
(the embedding and BM25 both see them; quotes come from the body after that prefix), and
records the character offsets of its sentences in the document so answers can quote exact
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
# Bump when the chunks of the same text change (packing, ids, metadata, sentence splitting):
# a file the store holds is re-chunked only when this, its bytes or the budget change.
# 2: the section trail joins the title in a chunk's prefix.
CHUNKER_VERSION = 2


def chunk_id(doc_id: str, index: int, text: str) -> str:
    return f"{doc_id}#{index}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def doc_hash(title: str, text: str, layout: Layout | None = None, chunking: str = "") -> str:
    """The version of a document: its title, text and layout (when it has pages or sections:
    a text file without headings keeps the version it had before layouts existed), and the
    ``chunking`` that cut it (:attr:`SentenceChunker.chunking`): chunks another chunker or
    budget made belong to another version, even where a chunk keeps its id (same place, same
    text), so that a version is never a mix of the two."""
    parts = [layout.pages, layout.sections, layout.labels] if layout else []
    where = f"\n{json.dumps(parts)}" if any(parts) else ""
    made = f"\n{chunking}" if chunking else ""
    return hashlib.sha1(f"{title}\n{text}{where}{made}".encode()).hexdigest()[:16]


class SentenceChunker(NodeParser):
    """Packs whole sentences into chunks of at most ``max_tokens`` (title included)."""

    max_tokens: int = Field(200, description="Budget of word pieces per chunk.")
    count_tokens: Callable[[str], int] = Field(exclude=True, description="Token counter.")
    vectors: str = Field(
        "",
        description="How ingest makes the chunks' vectors when not by a pass over each chunk "
        "(CITEQA_CHUNK_VECTORS); empty: by that pass.",
    )

    @property
    def chunking(self) -> str:
        """What decides a chunk's record: the chunker's version, its budget and, when not by
        a pass over the chunk, how its vector is made (chunks whose vectors were made another
        way belong to another version, and are rewritten)."""
        made = f"/v:{self.vectors}" if self.vectors else ""
        return f"c{CHUNKER_VERSION}/t{self.max_tokens}{made}"

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
        groups = [
            group
            for part in _by_section(spans, layout)
            for group in self._pack(text, part, self._section_budget(budget, part, layout))
        ]
        digest = doc_hash(title, text, layout, self.chunking)
        return [
            self._node(document, title, text, group, index, digest, layout)
            for index, group in enumerate(groups)
        ]

    def _section_budget(self, budget: int, spans: list[Span], layout: Layout | None) -> int:
        """The budget of a run of one section: what its section trail leaves."""
        section = layout.section_at(spans[0][0]) if layout else ""
        return max(16, budget - self.count_tokens(section)) if section else budget

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
        section = layout.section_at(start) if layout else ""
        prefix = f"{title}\n{section}\n" if section else f"{title}\n"
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

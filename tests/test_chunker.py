"""The sentence-preserving chunker."""

from __future__ import annotations

import json

from citeqa.config import BUNDLED_CORPUS
from citeqa.embedding import Embedder
from citeqa.layout import Layout
from ingest.chunker import SentenceChunker, doc_hash
from ingest.readers import make_document, read_listing


def _chunker(embedder: Embedder, max_tokens: int = 200) -> SentenceChunker:
    return SentenceChunker(max_tokens=max_tokens, count_tokens=embedder.count_tokens)


def test_chunks_keep_sentences_whole_and_record_offsets(embedder: Embedder) -> None:
    chunker = _chunker(embedder)
    for document in read_listing(BUNDLED_CORPUS).documents[:40]:
        text = document.get_content()
        for node in chunker.chunk_document(document):
            title = document.metadata["title"]
            assert node.get_content().startswith(title + "\n")
            spans = json.loads(node.metadata["sentences"])
            body = node.get_content()[node.metadata["prefix_len"] :]
            assert body == text[spans[0][0] : spans[-1][1]]
            for start, end in spans:
                sentence = text[start:end]
                assert sentence in body
                assert sentence[-1] in ".!?)\"'" or end == len(text) or sentence.endswith(":")


def test_chunks_respect_the_token_budget_unless_one_sentence_is_longer(embedder: Embedder) -> None:
    chunker = _chunker(embedder, max_tokens=80)
    for document in read_listing(BUNDLED_CORPUS).documents[:30]:
        for node in chunker.chunk_document(document):
            if len(json.loads(node.metadata["sentences"])) > 1:
                assert embedder.count_tokens(node.get_content()) <= 80 * 1.2


def test_chunk_ids_are_deterministic_and_content_addressed(embedder: Embedder) -> None:
    doc = make_document("d1", "Title", "First sentence here. Second one there.", "test")
    changed = make_document("d1", "Title", "First sentence here. Second one changed.", "test")
    first = [n.node_id for n in _chunker(embedder).chunk_document(doc)]
    again = [n.node_id for n in _chunker(embedder).chunk_document(doc)]
    other = [n.node_id for n in _chunker(embedder).chunk_document(changed)]
    assert first == again
    assert first != other
    assert all(cid.startswith("d1#") for cid in first)


def test_only_a_layout_with_pages_or_sections_changes_the_document_version() -> None:
    """Text files without headings keep the chunks an earlier ingest wrote (no re-embedding);
    a change of pages or sections alone rewrites the document's chunks."""
    assert doc_hash("Title", "Body.") == doc_hash("Title", "Body.", Layout())
    assert doc_hash("Title", "Body.") != doc_hash("Title", "Body.", Layout(sections=[(0, "A")]))
    assert doc_hash("T", "B", Layout(pages=[(0, 1)])) != doc_hash("T", "B", Layout(pages=[(0, 2)]))


def test_a_chunk_far_from_its_heading_still_says_its_section(embedder: Embedder) -> None:
    """The section trail joins the title in the prefix that is embedded and indexed, so a
    chunk deep inside "Appendix: Convergence criteria" is found by what its heading says;
    the body after the prefix is still the exact text of the document."""
    heading = "Appendix: Convergence criteria"
    filler = " ".join(f"Sentence number {i} says something about the model." for i in range(60))
    text = f"{heading}\n\n{filler}"
    layout = Layout(sections=[(0, heading)])
    doc = make_document("d1", "Title", text, "test")
    nodes = _chunker(embedder, max_tokens=80).chunk_document(doc, layout)
    assert len(nodes) > 2
    for node in nodes:
        content = node.get_content()
        assert content.startswith(f"Title\n{heading}\n")
        spans = json.loads(node.metadata["sentences"])
        assert content[node.metadata["prefix_len"] :] == text[spans[0][0] : spans[-1][1]]
        assert embedder.count_tokens(content) <= 80 * 1.2

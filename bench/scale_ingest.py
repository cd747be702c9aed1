"""Synthetic ingests for the scale bench, written by citeqa's own ingest pipeline.

``python -m bench.scale_ingest --chroma URL --collection C --chunks N --tag T`` ingests
synthetic documents of about N chunks in all (source ``bench:T``) into a Chroma server, the
way ``citeqa ingest`` or an upload does (chunker, sentence records, versions, whatever else
the pipeline records), so every design of the lexical index sees them as it sees a real ingest.
Each document is 3 real sentences of the bundled corpus drawn at random (one chunk); its title
carries the word ``T`` (so a search for it finds them). The embeddings are not computed by the
model: :class:`PrecomputedEmbedder` returns each known sentence's real vector and, for a chunk,
the normalised mean of its sentences' vectors, as the synthetic stores are made
(bench/scale_store.py); a text it does not know goes to the model.

The last document is the ingest's probe (:func:`probe_document`): a sentence of its own, which
no synthetic chunk shares, so that a search for it tells whether the ingest is visible.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np
from llama_index.core.schema import Document

from bench.scale_store import bundled_store, corpus_vectors
from bench.synthetic import CorpusVectors, mean_vector
from citeqa.config import Settings
from citeqa.embedding import Embedder, MiniLMOnnxEmbedder
from ingest.readers import ReadResult, make_document
from ingest.run import build_ingestor

SENTENCES_PER_DOC = 3


class PrecomputedEmbedder:
    """The model's name and token counts; vectors looked up where the bench knows them."""

    def __init__(self, model: Embedder, corpus: CorpusVectors) -> None:
        self.model = model
        self.name, self.dim = model.name, model.dim
        self.sentences = dict(zip(corpus.sentences.texts, corpus.sentences.vectors, strict=True))
        self.known: dict[str, np.ndarray] = {}  # chunk texts registered by the generator
        self.by_title: dict[str, list[str]] = {}  # title -> the document's sentences
        self.missed = 0

    def register(self, title: str, sentences: list[str]) -> None:
        self.by_title[title] = sentences
        vector = mean_vector(np.stack([self.sentences[s] for s in sentences]))
        self.known[f"{title}\n{' '.join(sentences)}"] = vector

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(text) for text in texts]).astype(np.float32)

    def _vector(self, text: str) -> np.ndarray:
        if text in self.known:
            return self.known[text]
        if text in self.sentences:
            return self.sentences[text]
        title, _, body = text.partition("\n")
        parts = [s for s in self.by_title.get(title, []) if s in body]
        if parts:  # the chunker cut the document elsewhere than the generator
            return mean_vector(np.stack([self.sentences[s] for s in parts]))
        self.missed += 1
        return self.model.embed([text])[0]

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)


def probe_document(tag: str, i: int, source: str) -> Document:
    """A document no other chunk resembles: its text is first for itself by every ranking.

    A synthetic document's sentences each recur in thousands of chunks at 1M (they are drawn
    from the bundled corpus's), so a search for one of them ranks its near-copies as high as
    itself and fusion may leave it out of the top 5. This one's words and meaning are its own
    (the model embeds it, as for any text the bench does not know)."""
    title = f"Visibility probe {tag} {i}"
    text = (
        f"This closing note of the synthetic ingest {tag} was written last, as entry {i}, "
        "so that a search for its words shows whether the replicas can see the ingest."
    )
    return make_document(f"{tag}-{i:06d}", title, text, source)


def documents(
    embedder: PrecomputedEmbedder, corpus: CorpusVectors, count: int, tag: str, seed: int
) -> ReadResult:
    """``count`` documents of one chunk each, the last of them the probe."""
    rng = np.random.default_rng(seed)
    titles = sorted({str(m["title"]) for m in corpus.chunks.metadatas})
    sentences = list(embedder.sentences)
    read = ReadResult(source=f"bench:{tag}")
    for i in range(count - 1):
        title = f"{titles[int(rng.integers(len(titles)))]} ({tag} {i})"
        picked = [sentences[int(r)] for r in rng.integers(len(sentences), size=SENTENCES_PER_DOC)]
        embedder.register(title, picked)
        read.documents.append(make_document(f"{tag}-{i:06d}", title, " ".join(picked), read.source))
    read.documents.append(probe_document(tag, count - 1, read.source))
    return read


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_ingest", description=__doc__)
    parser.add_argument("--chroma", required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument(
        "--chunks", type=int, required=True, help="documents (one chunk each), at least 1"
    )
    parser.add_argument("--tag", required=True, help="a word in every title; source bench:TAG")
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    model = MiniLMOnnxEmbedder()
    corpus = corpus_vectors(bundled_store(model), model)
    embedder = PrecomputedEmbedder(model, corpus)
    read = documents(embedder, corpus, args.chunks, args.tag, args.seed)
    last = read.documents[-1]
    settings = Settings(chroma_url=args.chroma, collection=args.collection)
    ingestor = build_ingestor(settings, embedder)
    started = time.time()
    summary = ingestor.ingest(read)
    written = time.time()
    out = {
        "started": started,
        "written": written,
        "documents": len(read.documents),
        "chunks": summary.chunks_written,
        "summary": summary.line(),
        "missed": embedder.missed,
        # The probe's own words: once the ingest is visible, they find it first.
        "probe": f"{last.metadata['title']} {last.text}",
        "probe_doc": last.metadata["doc_id"],
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

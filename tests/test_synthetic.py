"""The synthetic stores of the bench (bench/synthetic.py): a build that was stopped continues
from its last whole block and ends in the same store as one written at once."""

from __future__ import annotations

from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from bench.synthetic import read_corpus_vectors, write_store
from citeqa.embedding import Embedder
from citeqa.store import Index, open_index
from service.answering.engine import Engine

BLOCK = 4  # chunks per synthetic block: a few blocks over a small store
SEED = 5


class Stopped(Exception):
    pass


def _state(index: Index) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name, collection in (("chunks", index.chunks), ("sentences", index.sentences)):
        got = collection.get(include=["documents", "metadatas"])
        rows = sorted(zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True))
        state[name] = [(i, d, dict(m)) for i, d, m in rows]
    assert index.log is not None
    state["logged"] = sorted({c.doc_id for c in index.log.read(0.0)})
    return state


def test_a_stopped_build_continues_to_the_same_store(engine: Engine, embedder: Embedder) -> None:
    corpus = read_corpus_vectors(engine.index)
    n_chunks = len(corpus.chunks.ids) + 3 * BLOCK - 2  # three synthetic blocks, the last short
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    whole = open_index(client, "synthetic-whole", embedder, create=True)
    seen: list[tuple[int, int]] = []
    write_store(
        whole, 1000, n_chunks, corpus, SEED, BLOCK, lambda b, c: seen.append((b, c)), 0, BLOCK
    )
    assert seen[-1] == (4, n_chunks)

    resumed = open_index(client, "synthetic-resumed", embedder, create=True)

    def stop_after_block_2(blocks: int, chunks: int) -> None:
        if blocks == 3:  # block 2 is written, but the build stops before it is recorded
            raise Stopped

    with pytest.raises(Stopped):
        write_store(resumed, 1000, n_chunks, corpus, SEED, BLOCK, stop_after_block_2, 0, BLOCK)
    write_store(resumed, 1000, n_chunks, corpus, SEED, BLOCK, None, 2, BLOCK)

    expected, got = _state(whole), _state(resumed)
    assert len(got["chunks"]) == n_chunks
    assert len(got["sentences"]) > len(corpus.sentences.ids)  # block 1 has its sentences
    assert got == expected

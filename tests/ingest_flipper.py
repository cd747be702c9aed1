"""The writer of the consistency test: re-ingests a folder again and again while one paper
switches between two versions, through a deliberately slow chunk collection.

    python -m tests.ingest_flipper FOLDER --paper 99 --words 500 --rounds 4 --pause 0.6

Settings come from the environment (CITEQA_CHROMA_URL, CITEQA_COLLECTION). Every chunk upsert
and delete is followed by ``--pause`` seconds and batches hold 2 records, so a reader has time
to see every intermediate state of the collection: a new version half written, both versions
complete, the old one half deleted. Prints one line per round.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from citeqa.config import Settings
from citeqa.embedding import build_embedder
from citeqa.store import Index, connect, open_index
from ingest.chunker import SentenceChunker
from ingest.pipeline import Ingestor
from ingest.readers import read_source
from tests.servers import write_paper

MARKERS = ("alpha", "beta")


class SlowCollection:
    """A Chroma collection whose writes take ``pause`` seconds longer."""

    def __init__(self, collection: Any, pause: float) -> None:
        self._collection = collection
        self._pause = pause

    def upsert(self, **kwargs: Any) -> None:
        self._collection.upsert(**kwargs)
        time.sleep(self._pause)

    def delete(self, **kwargs: Any) -> None:
        self._collection.delete(**kwargs)
        time.sleep(self._pause)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--paper", type=int, default=99)
    parser.add_argument("--words", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.6)
    args = parser.parse_args()
    settings = Settings()
    embedder = build_embedder(settings)
    real = open_index(connect(settings), settings.collection, embedder, create=True)
    slow: Any = SlowCollection(real.chunks, args.pause)
    index = Index(chunks=slow, sentences=real.sentences, log=real.log)
    chunker = SentenceChunker(
        max_tokens=settings.chunk_max_tokens, count_tokens=embedder.count_tokens
    )
    ingestor = Ingestor(index, embedder, chunker, max_batch=2)
    for round_no in range(1, args.rounds + 1):
        marker = MARKERS[round_no % 2]
        write_paper(args.folder, args.paper, args.words, marker)
        summary = ingestor.ingest(read_source(args.folder))
        print(f"round {round_no}: {marker}: {summary.line()}", flush=True)


if __name__ == "__main__":
    main()

"""Embedding overlapped with store writes: batch N is written while batch N+1 is embedded.

Ingest spends most of its time embedding and the rest writing into Chroma (its HNSW index and
SQLite); in turn, the two add up. :func:`embed_and_write` hands each embedded batch to one
writer thread and embeds the next batch meanwhile, so the wall is close to the longer of the
two rather than their sum.

What a reader of the store can see does not change: the batches are written one at a time, in
the order given, each only after the one before it was written, so the store goes through
exactly the states of writing them in turn. At most one batch is being written while one is
embedded (memory stays bounded). ``written`` of a batch runs in the caller's thread once its
write is done, in order (progress counts written texts, as before). A failure (an embedding, a
write or a ``written``) stops the run: no later batch is written, the write in flight is waited
for, and the first error in batch order is raised, the one writing in turn would have raised;
no thread writes after the function returns or raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from citeqa.embedding import Embedder


@dataclass(frozen=True)
class Batch:
    """Texts to embed, how to write them with their vectors, what to do once written."""

    texts: list[str]
    write: Callable[[np.ndarray], None]  # runs in the writer thread
    written: Callable[[], None]  # runs in the caller's thread, after ``write``


def embed_and_write(embedder: Embedder, work: Iterable[Batch], overlap: bool = True) -> None:
    """Embed and write each batch of ``work``, in order; with ``overlap``, the write of one
    batch runs while the next one is embedded (without: embed, write, embed...)."""
    if not overlap:
        for batch in work:
            batch.write(embedder.embed(batch.texts))
            batch.written()
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="citeqa-write") as writer:
        in_flight: tuple[Future[None], Batch] | None = None
        try:
            for batch in work:
                vectors = embedder.embed(batch.texts)
                if in_flight is not None:
                    previous, in_flight = in_flight, None
                    _finish(*previous)
                in_flight = writer.submit(batch.write, vectors), batch
        except BaseException:
            if in_flight is not None:  # written before the failure, in batch order
                _finish(*in_flight)  # raises its own error first, if it has one
            raise
        if in_flight is not None:
            _finish(*in_flight)


def _finish(future: Future[None], batch: Batch) -> None:
    """Wait for ``batch``'s write (raising its error), then run its ``written``."""
    future.result()
    batch.written()

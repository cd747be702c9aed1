"""Paced store writes: an ingest that leaves the machine's cores to the searches.

A Chroma server spends far more CPU on a write than on a query: at 1M chunks, 23.5 ms of
CPU a chunk written against about 15 ms a search's two queries (BENCHMARKS.md, Scale). An
ingest written as fast as the server takes it holds most of a small machine's cores for its
duration, and every search beside it waits for CPU. ``CITEQA_INGEST_MAX_RECORDS_PER_S`` caps
the rate instead: after each write the ingest waits until the records written so far are due
at that rate, so it takes longer and the searches keep their latency.

A paced ingest also writes in slices of the records due in :data:`SLICE_S`: Chroma applies a
write to a collection's index as one step, and a query of that collection waits for it (at
100k chunks, one write of an embedding batch, 64 chunks and their sentences, held a query
for up to 250 ms; at 1M about 1.5 s). Slices keep each wait short; the CPU the writes take
is the same.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

SLICE_S = 0.1  # a paced write holds the records due in this long


class Pacer:
    """Keeps one ingest's writes at or under ``per_s`` records a second on average, from its
    making on (one per ingest: a pause between ingests earns no burst); ``per_s`` None writes
    as fast as the store takes them."""

    def __init__(
        self,
        per_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_s = per_s
        self.clock, self.sleep = clock, sleep
        self.began = clock()
        self.records = 0

    def wrote(self, records: int) -> None:
        """``records`` were written: wait until they are due."""
        if not self.per_s:
            return
        self.records += records
        wait = self.began + self.records / self.per_s - self.clock()
        if wait > 0:
            self.sleep(wait)

    @property
    def slice(self) -> int | None:
        """Records per write: those due in :data:`SLICE_S` (None: unpaced, any number)."""
        return max(1, math.floor(self.per_s * SLICE_S)) if self.per_s else None


def paced_upsert(collection: Any, pacer: Pacer, ids: Sequence[str], **columns: Any) -> None:
    """``collection.upsert`` of ``ids`` and their ``columns`` (embeddings, documents,
    metadatas: sequences as long as ``ids``), in :attr:`Pacer.slice` slices, each followed by
    the pacer's wait."""
    step = pacer.slice or max(1, len(ids))
    for start in range(0, len(ids), step):
        end = start + step
        collection.upsert(ids=ids[start:end], **{k: v[start:end] for k, v in columns.items()})
        pacer.wrote(min(end, len(ids)) - start)

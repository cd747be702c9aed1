"""Paced store writes: an ingest that leaves the machine's cores to the searches.

A Chroma server spends far more CPU on a write than on a query: at 1M chunks, 23.5 ms of
CPU a chunk written against about 15 ms a search's two queries (BENCHMARKS.md, Scale). An
ingest written as fast as the server takes it holds most of a small machine's cores for its
duration, and every search beside it waits for CPU. ``CITEQA_INGEST_MAX_RECORDS_PER_S`` caps
the rate instead: after each batch is written the ingest waits until the records written so
far are due at that rate, so it takes longer and the searches keep their latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable


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

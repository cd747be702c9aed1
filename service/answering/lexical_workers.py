"""A cold build's per-chunk work spread over processes (issue 19: 1M chunks on 2 cores).

Making a chunk's fields (:class:`service.answering.lexical_fields.Fielder`: its words, stems,
name keys, tokens, record) is Python holding the GIL, most of a cold build; tantivy's indexing
and Chroma's reads are not. So a cold build hands each batch of documents to a pool of worker
processes and adds what they return, in the order it read them, to its writers: the same index
as made in one process. At most :data:`IN_FLIGHT` batches per worker are out at once, so memory
stays bounded by the batch size, not the collection's.

Workers are started by a fork server (not forked from the API process, whose threads would be
copied mid-flight), which imports :mod:`service.answering.lexical_fields` once.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from service.answering.lexical_fields import DocumentFields, Fielder, Row, fielded

log = logging.getLogger("citeqa.lexical")

Batch = list[tuple[str, list[Row], bool]]  # documents' ids, chunks and whether one is replaced
IN_FLIGHT = 2  # batches per worker sent and not yet taken back
MAX_WORKERS = 32
PARALLEL_FROM = 20_000  # chunks: a smaller cold build is over before processes would pay off


def worker_count(wanted: int | None, chunks: int) -> int:
    """Processes for a cold build of ``chunks`` chunks: ``wanted`` (0: none, this process
    makes the fields), by default one per CPU from :data:`PARALLEL_FROM` chunks on."""
    if wanted is None:
        wanted = (os.cpu_count() or 1) if chunks >= PARALLEL_FROM else 0
    return max(0, min(wanted, MAX_WORKERS))


def fields_of(
    batches: Iterable[Batch], workers: int, fielder: Fielder
) -> Iterator[tuple[DocumentFields, bool]]:
    """Each document of ``batches`` as its fields and whether it replaces one, in order; made by
    ``workers`` processes, or by ``fielder`` in this one when ``workers`` is 0 or the worker
    processes fail (a main module that cannot be imported again, a worker killed)."""
    batches = iter(batches)
    pending: deque[tuple[Batch, Future[list[DocumentFields]]]] = deque()
    if workers > 0:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["service.answering.lexical_fields"])
        pool = ProcessPoolExecutor(workers, mp_context=context)
        try:
            for batch in batches:
                if batch:
                    pending.append((batch, _submit(pool, batch)))
                    yield from _taken(pending, keep=IN_FLIGHT * workers - 1)
            yield from _taken(pending, keep=0)
        except BrokenProcessPool as error:
            log.warning("lexical build: worker processes failed (%s), going on in this one", error)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for batch in itertools.chain((batch for batch, _ in pending), batches):
        for doc_id, rows, again in batch:
            yield fielder.document(doc_id, rows), again


def _submit(pool: ProcessPoolExecutor, batch: Batch) -> Future[list[DocumentFields]]:
    try:
        return pool.submit(fielded, [(doc_id, rows) for doc_id, rows, _ in batch])
    except BrokenProcessPool as error:  # raised in order, when this batch's turn comes
        failed: Future[list[DocumentFields]] = Future()
        failed.set_exception(error)
        return failed


def _taken(
    pending: deque[tuple[Batch, Future[list[DocumentFields]]]], keep: int
) -> Iterator[tuple[DocumentFields, bool]]:
    """The fields of the oldest batches sent, until ``keep`` are left in flight (a batch leaves
    ``pending`` only once its fields are back)."""
    while len(pending) > keep:
        batch, future = pending[0]
        made = future.result()
        pending.popleft()
        yield from zip(made, (again for _, _, again in batch), strict=True)

"""Chroma alone: how much paced writes slow its queries, with no citeqa process in the way.

``python -m bench.chroma_writes STORE [--sync N ...]`` copies the ``chroma run`` folder of a
scale store (bench/scale_store.py: ``STORE/db``, collections ``scale`` and
``scale__sentences``) to a scratch folder, serves the copy with ``chroma run``, and times the
two dense queries a citeqa search makes (the chunks, then the sentences, with citeqa's
``n_results`` and ``include``), one after the other from one client: first idle, then while
another process adds records at ``--rate`` records a second in slices of 0.1 s, a chunk for
every three sentence records (what ``CITEQA_INGEST_MAX_RECORDS_PER_S`` lets an ingest write). Each
pair of a ``--sync`` and a ``--rate`` value is one run on the same copy, the collections'
``hnsw:sync_threshold`` set first (Chroma persists a collection's HNSW files every that many
records written). ``--elsewhere`` writes to a collection of its own instead (same HNSW settings,
empty at first): whether the queries wait on their collections' index or on the server.
``--followers N`` adds N processes asking Chroma, every ``--poll-s`` seconds while the writer
runs, what a replica's lexical follower asks on a poll that finds changes (service/answering/
lexical.py), to price those reads at the store's size; ``--reads`` names which reads, one run
each (:func:`follow`; "none": no followers).

The scale bench (``python -m bench --scale``) measures whole searches through citeqa's
replicas; this one says which part of their busy tail is Chroma's own, and prints it (nothing is
written to BENCHMARKS.md). The copy is removed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import chromadb
import numpy as np
from chromadb.api.models.Collection import Collection

from bench.measure import Samples, load_average
from bench.scale_store import COLLECTION, SERVE_SYNC_THRESHOLD
from citeqa.changes import COUNT_EVERY_S, RECENT
from tests.servers import ChromaServer

WRITERS = 4  # heads in the heads collection ("tail" reads)
SLICE_S = 0.1  # as ingest/pacing.py writes
CHUNK_K, SENTENCE_K = 30, 90  # n_results of a search's two dense queries (candidate_k, 3x it)
NOISE = 0.05  # query and written vectors: stored vectors moved by this much, renormalised


@dataclass
class Phase:
    chunks: Samples
    sentences: Samples
    both: Samples

    def text(self) -> str:
        def pair(s: Samples) -> str:
            return f"{s.percentile(50):.1f} / {s.percentile(99):.1f}"

        return (
            f"n={len(self.both.values)}; p50 / p99 ms: chunks {pair(self.chunks)}, sentences "
            f"{pair(self.sentences)}, both {pair(self.both)}, max {self.both.high:.1f}"
        )


def collections(port: int) -> tuple[Collection, Collection]:
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    return client.get_collection(COLLECTION), client.get_collection(f"{COLLECTION}__sentences")


def moved(vectors: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    picked = vectors[rng.integers(0, len(vectors), n)]
    picked = picked + rng.normal(0, NOISE, picked.shape)
    return (picked / np.linalg.norm(picked, axis=1, keepdims=True)).astype(np.float32)


def query(port: int, vectors: np.ndarray, seconds: float, seed: int) -> Phase:
    chunks, sentences = collections(port)
    rng = np.random.default_rng(seed)
    phase = Phase(Samples("ms"), Samples("ms"), Samples("ms"))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        vector = moved(vectors, rng, 1).tolist()
        began = time.perf_counter()
        chunks.query(query_embeddings=vector, n_results=CHUNK_K, include=["distances"])
        between = time.perf_counter()
        sentences.query(query_embeddings=vector, n_results=SENTENCE_K, include=["distances"])
        ended = time.perf_counter()
        phase.chunks.add((between - began) * 1000)
        phase.sentences.add((ended - between) * 1000)
        phase.both.add((ended - began) * 1000)
    return phase


def write(
    port: int, vectors: np.ndarray, rate: float, seconds: float, seed: int, elsewhere: bool
) -> None:
    """Add records at ``rate`` a second for ``seconds`` (a process of its own)."""
    targets = collections(port)
    if elsewhere:
        client = chromadb.HttpClient(host="127.0.0.1", port=port)
        hnsw = targets[0].configuration_json["hnsw"]
        other = client.get_or_create_collection("bench_writes", configuration={"hnsw": hnsw})
        targets = (other, other)
    rng = np.random.default_rng(seed)
    owed, written, due = 0.0, 0, time.monotonic()
    end = due + seconds
    while time.monotonic() < end:
        owed += rate * SLICE_S
        count = int(owed)
        owed -= count
        n_chunks = round(count / 4)
        for collection, n in zip(targets, (n_chunks, count - n_chunks), strict=True):
            if n > 0:
                ids = [f"bench-writes-{uuid.uuid4().hex}" for _ in range(n)]
                collection.add(
                    ids=ids,
                    embeddings=moved(vectors, rng, n),
                    documents=["written by bench.chroma_writes"] * n,
                    metadatas=[{"doc_id": i} for i in ids],
                )
                written += n
        due = max(due + SLICE_S, time.monotonic() - 1)
        time.sleep(max(0.0, due - time.monotonic()))
    print(f"  writer: {written} records in {seconds:.0f} s", flush=True)


def add_heads(port: int, writers: int) -> None:
    """The writers' heads a follower lists on each poll ("tail"): ``writers`` of them, each
    naming RECENT records, as citeqa's writers keep them."""
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    heads = client.get_or_create_collection(f"{COLLECTION}__heads", embedding_function=None)
    ids = [f"{n:020d}-{uuid.uuid4().hex[:8]}-{n:08d}" for n in range(RECENT)]
    heads.upsert(
        ids=[f"writer{n}" for n in range(writers)],
        embeddings=[[1.0]] * writers,
        metadatas=[{"appended": 10_000, "at": time.time()}] * writers,
        documents=[json.dumps(ids)] * writers,
    )


def follow(port: int, seconds: float, poll_s: float, seed: int, reads: str) -> None:
    """Every ``poll_s``, ask Chroma what a lexical follower asks on a poll that finds changes:
    ``reads`` "filtered" as citeqa does today (the log's count, its records since the cursor,
    the documents' chunks by ``where doc_id $in``); "log" the log's records alone; "ids" one
    record and 25 documents' chunks by id (what a follower told the ids would read); "head"
    as citeqa followed in session 20 (the log's head and its chunks by id, its records by
    ``logged_at``); "tail" as citeqa follows since session 21 (the writers' heads listed, 25
    records and their chunks by id, the log counted every COUNT_EVERY_S)."""
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    chunks = client.get_collection(COLLECTION)
    log = client.get_collection(f"{COLLECTION}__changes")
    listed = chunks.get(limit=2000, include=["metadatas"])
    docs: dict[str, list[str]] = {}
    for chunk_id, meta in zip(listed["ids"], listed["metadatas"] or [], strict=True):
        docs.setdefault(str(meta["doc_id"]), []).append(chunk_id)
    doc_ids = sorted(docs)
    records = log.get(limit=25, include=[])["ids"]
    heads = client.get_collection(f"{COLLECTION}__heads", embedding_function=None)
    rng = np.random.default_rng(seed)
    took = Samples("ms")
    end = time.monotonic() + seconds
    count_due = 0.0
    while time.monotonic() < end:
        began = time.perf_counter()
        picked = [str(d) for d in rng.choice(doc_ids, 25, replace=False)]
        if reads == "tail":
            if time.monotonic() >= count_due:
                log.count()
                count_due = time.monotonic() + COUNT_EVERY_S
            heads.get(include=["metadatas", "documents"])
            log.get(ids=records, include=["metadatas", "documents"])
            ids = [i for d in picked for i in docs[d]]
            chunks.get(ids=ids, include=["documents", "metadatas"])
        if reads == "filtered":
            log.count()
        if reads in ("filtered", "log", "head"):
            log.get(where={"logged_at": {"$gte": time.time() - 30}}, include=["metadatas"])
        if reads == "filtered":
            chunks.get(where={"doc_id": {"$in": picked}}, include=["documents", "metadatas"])
        if reads in ("ids", "head"):
            log.get(ids=[listed["ids"][0]], include=["metadatas"])
            ids = [i for d in picked for i in docs[d]]
            chunks.get(ids=ids, include=["documents", "metadatas"])
        took.add((time.perf_counter() - began) * 1000)
        time.sleep(max(0.0, poll_s - (time.perf_counter() - began)))
    print(f"  follower ({reads}): {len(took.values)} polls, {took.percentile(50):.0f} ms each")


def run(
    port: int,
    sync: int,
    rate: float,
    idle_s: float,
    busy_s: float,
    elsewhere: bool = False,
    followers: int = 0,
    poll_s: float = 2.0,
    reads: str = "none",
) -> float:
    """One run at ``sync``; prints both phases and returns busy p99 / idle p99 (both queries)."""
    chunks, sentences = collections(port)
    for collection in (chunks, sentences):
        collection.modify(configuration={"hnsw": {"sync_threshold": sync}})
    stored = chunks.get(limit=300, include=["embeddings"])["embeddings"]
    vectors = np.asarray(stored, dtype=np.float64)
    query(port, vectors, 10, seed=1)  # warm
    idle = query(port, vectors, idle_s, seed=2)
    spawn = multiprocessing.get_context("spawn")
    writer = spawn.Process(target=write, args=(port, vectors, rate, busy_s, 3, elsewhere))
    readers = [
        spawn.Process(target=follow, args=(port, busy_s, poll_s, 10 + i, reads))
        for i in range(followers if reads != "none" else 0)
    ]
    for process in (writer, *readers):
        process.start()
    busy = query(port, vectors, busy_s, seed=4)
    for process in (writer, *readers):
        process.join()
    ratio = busy.both.percentile(99) / idle.both.percentile(99)
    into = "a collection of their own" if elsewhere else "the queried collections"
    also = f", {len(readers)} follower(s) ({reads}) every {poll_s:g} s" if readers else ""
    print(f"sync_threshold {sync}, {rate:g} records/s into {into}{also}, load {load_average()}")
    print(f"  idle: {idle.text()}\n  busy: {busy.text()}\n  busy p99 / idle p99: {ratio:.2f}x")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chroma_writes", description=__doc__)
    parser.add_argument("store", type=Path, help="a scale store folder (its db/ is copied)")
    parser.add_argument("--sync", type=int, nargs="+", default=[SERVE_SYNC_THRESHOLD])
    parser.add_argument("--rate", type=float, nargs="+", default=[50.0], help="records a second")
    parser.add_argument("--idle-s", type=float, default=40.0)
    parser.add_argument("--busy-s", type=float, default=90.0)
    parser.add_argument("--elsewhere", action="store_true", help="write to another collection")
    parser.add_argument("--followers", type=int, default=2, help="processes of followers' reads")
    parser.add_argument("--poll-s", type=float, default=2.0, help="the followers' poll")
    parser.add_argument(
        "--reads",
        nargs="+",
        choices=["none", "filtered", "log", "ids", "head", "tail"],
        default=["none", "filtered"],
    )
    parser.add_argument("--scratch", type=Path, default=None, help="where the copy goes")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="chroma-writes-", dir=args.scratch))
    try:
        began = time.monotonic()
        shutil.copytree(args.store / "db", scratch / "db")
        print(f"copied {args.store / 'db'} in {time.monotonic() - began:.0f} s", flush=True)
        server = ChromaServer(scratch / "db").start(timeout=600)
        try:
            chunks, sentences = collections(server.port)
            add_heads(server.port, WRITERS)
            print(f"{chunks.count():,} chunk and {sentences.count():,} sentence records")
            for sync, rate, reads in itertools.product(args.sync, args.rate, args.reads):
                run(
                    server.port,
                    sync,
                    rate,
                    args.idle_s,
                    args.busy_s,
                    args.elsewhere,
                    args.followers,
                    args.poll_s,
                    reads,
                )
        finally:
            server.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

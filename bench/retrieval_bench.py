"""Latency of ``engine.search`` (query embedding included), and where a query's time goes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.measure import Samples, fastest_of, latencies_ms, percentile_runs
from bench.synthetic import hnsw_of
from service.answering.engine import Engine


@dataclass
class SearchResult:
    label: str
    chunks: int
    sentences: int
    first_query_s: float  # the first search builds the in-process BM25 index
    runs: list[Samples]
    components: dict[str, Samples] = field(default_factory=dict)
    store_build_s: float | None = None  # synthetic stores: how long building the store took
    store_built_now: bool = False
    store_note: str = ""
    hnsw: dict[str, object] = field(default_factory=dict)

    @property
    def p50(self) -> Samples:
        return percentile_runs(self.runs, 50)

    @property
    def p95(self) -> Samples:
        return percentile_runs(self.runs, 95)

    @property
    def fastest(self) -> float:
        """The fastest single search: close to the uncontended cost on a shared machine."""
        return fastest_of(self.runs)


def open_search(label: str, engine: Engine, questions: list[str], k: int = 5) -> SearchResult:
    """A store's result, with the time of its first search (which builds the BM25 index)."""
    started = time.perf_counter()
    engine.search(questions[0], k)
    return SearchResult(
        label=label,
        chunks=engine.index.chunks.count(),
        sentences=engine.index.sentences.count(),
        first_query_s=time.perf_counter() - started,
        runs=[],
        hnsw=hnsw_of(engine.index.chunks),
    )


def measure_searches(
    stores: list[tuple[SearchResult, Engine]], questions: list[str], runs: int, k: int = 5
) -> None:
    """``runs`` passes over the questions; each question is searched on every store in turn,
    so that all stores see the same load. Then each step of a search, timed alone."""
    for _ in range(runs):
        for result, _engine in stores:
            result.runs.append(Samples("ms"))
        for question in questions:
            for result, engine in stores:
                started = time.perf_counter()
                engine.search(question, k)
                result.runs[-1].add((time.perf_counter() - started) * 1000)
    for result, engine in stores:
        result.components = components(engine, questions)


def components(engine: Engine, questions: list[str]) -> dict[str, Samples]:
    """Per-query time of each step of hybrid retrieval, measured one step at a time.

    Uses the retriever's internals; returns {} when they have changed shape.
    """
    retriever = engine.retriever
    k = retriever.candidate_k
    try:
        lexical = retriever.lexical.view()
        vectors = {q: engine.embedder.embed([q])[0] for q in questions}
        steps: dict[str, Callable[[str], object]] = {
            "query embedding": lambda q: engine.embedder.embed([q]),
            "dense over chunks (Chroma)": lambda q: retriever._dense_chunks(vectors[q], k),
            "dense over sentences (Chroma)": lambda q: retriever._dense_sentences(vectors[q], k),
            "BM25 (lexical index)": lambda q: lexical.search(q, k),
        }
        return {name: latencies_ms(step, questions) for name, step in steps.items()}
    except AttributeError:
        return {}

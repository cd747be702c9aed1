"""The candidate replacement of the BM25 snapshot, measured (docs/lexical-index.md): a tantivy
index (Lucene-style segments, merged in the background) fed with today's own tokens.

tantivy is not a citeqa dependency; to run this probe:

    .venv/bin/pip install --target /tmp/tantivy tantivy==0.27.0
    PYTHONPATH=/tmp/tantivy .venv/bin/python scripts/lexical_tantivy_probe.py 100000 1000000

Each size runs in a fresh interpreter, on the synthetic chunks of scripts/lexical_rebuild.py.
The index tokenizes in Rust (service.answering.tantivy_view.analyzer) with the rules bm25s
applies (the same word pattern, lower case, bm25s' English stop words, Snowball English stems)
after with_compounds in Python; the probe first checks on 2,000 chunks that both give exactly
the same tokens.
Measured: the cold build (tokenize, index, commit), the index on disk and the process RSS, the
search p50/p95 over the dev questions, and an update: 1,000 chunks replaced (1,000 deleted by
id, 1,000 added), committed, visible to a reloaded searcher. Prints one JSON line per size.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def tokens(texts: list[str]) -> list[list[str]]:
    """Today's BM25 tokens (service.answering.retrieval's bm25s call)."""
    import bm25s

    from citeqa.text import stemmer
    from service.answering.lexical_views import with_compounds

    return bm25s.tokenize(  # type: ignore[no-any-return]
        [with_compounds(t) for t in texts],
        stopwords="en",
        stemmer=stemmer(),
        show_progress=False,
        return_ids=False,
        allow_empty=True,
    )


def measure(size: int) -> dict[str, Any]:
    import tantivy
    from lexical_rebuild import rss_mb, synthetic

    from evals.dataset import load_dataset
    from service.answering.lexical_views import with_compounds

    ids, texts, _ = synthetic(size + 1000)
    from service.answering.tantivy_view import analyzer  # the service's own analyzer

    rust = analyzer()
    sample = texts[:2000]
    same = [rust.analyze(with_compounds(t)) for t in sample] == tokens(sample)
    extra_ids, extra_texts = ids[size:], texts[size:]
    ids, texts = ids[:size], texts[:size]
    folder = Path(tempfile.mkdtemp(prefix="tantivy-probe-"))
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("terms", tokenizer_name="citeqa", index_option="freq")
    schema = builder.build()
    index = tantivy.Index(schema, path=str(folder))
    index.register_tokenizer("citeqa", rust)
    base = rss_mb()

    started = time.perf_counter()
    writer = index.writer(heap_size=256_000_000, num_threads=2)
    for cid, text in zip(ids, texts, strict=True):
        writer.add_document(tantivy.Document(id=cid, terms=with_compounds(text)))
    writer.commit()
    writer.wait_merging_threads()
    build_s = time.perf_counter() - started

    index.reload()
    searcher = index.searcher()
    questions = [item.question for item in load_dataset(ROOT / "evals/datasets/dev.jsonl")]
    asked = tokens(questions)

    def search(terms: list[str]) -> list[str]:
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(schema, "terms", term))
                for term in dict.fromkeys(terms)
            ]
        )
        hits = searcher.search(query, 30, count=False).hits
        return [searcher.doc(address)["id"][0] for _, address in hits]

    for terms in asked[:10]:
        search(terms)  # warm the OS cache
    latencies = []
    for terms in asked:
        t0 = time.perf_counter()
        search(terms)
        latencies.append((time.perf_counter() - t0) * 1000)
    searched_rss = rss_mb()

    # an ingest of 1k chunks: 1,000 replaced ids deleted, 1,000 new chunks added
    t0 = time.perf_counter()
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    for cid in ids[:1000]:
        writer.delete_documents_by_term("id", cid)
    for cid, text in zip(extra_ids, extra_texts, strict=True):
        writer.add_document(tantivy.Document(id=cid, terms=with_compounds(text)))
    writer.commit()
    index.reload()
    searcher = index.searcher()
    update_s = time.perf_counter() - t0
    assert searcher.num_docs == size
    disk_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    shutil.rmtree(folder)
    latencies.sort()
    return {
        "chunks": size,
        "same_tokens_as_bm25s": same,
        "build_s": round(build_s, 1),
        "disk_mb": round(disk_mb),
        "rss_after_searches_mb": round(searched_rss - base),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "search_p50_ms": round(statistics.median(latencies), 2),
        "search_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "update_1k_s": round(update_s, 2),
        "segments": searcher.num_segments,
    }


if __name__ == "__main__":
    from lexical_rebuild import per_size

    raise SystemExit(per_size(__file__, measure, sys.argv[1:]))

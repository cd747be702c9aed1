"""What today's full rebuild of the BM25 snapshot costs at N synthetic chunks.

The measurement behind docs/lexical-index.md:

    .venv/bin/python scripts/lexical_rebuild.py 100000 1000000

Each size runs in a fresh interpreter. The chunks are made from the bundled corpus
(data/ml_papers.txt: titles and abstracts of 154 papers) as bench/synthetic.py makes its
synthetic stores: every abstract is cut into sentences; a synthetic chunk is a random real
title followed by 3 to 5 (mean 4, as real chunks hold about 4.1) sentences drawn at random from
all real sentences, seeded; two chunks per synthetic document, metadata shaped as the ingest
pipeline writes it. The build measured is service.answering.lexical_views' own ``_Snapshot`` (the
bm25s snapshot), in memory: the Chroma read before it (paging by offset) is not included.
Prints one JSON line per size.
"""

from __future__ import annotations

import gc
import json
import random
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def corpus() -> tuple[list[str], list[str]]:
    lines = [ln.strip() for ln in (ROOT / "data" / "ml_papers.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln and "trending papers" not in ln]
    titles, sentences = [], []
    for title, abstract in zip(lines[0::2], lines[1::2], strict=False):
        titles.append(title)
        sentences += [s for s in SENTENCE_END.split(abstract) if len(s) > 20]
    return titles, sentences


def synthetic(size: int) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    rng = random.Random(19)
    titles, sentences = corpus()
    ids, texts, metas = [], [], []
    for i in range(size):
        doc = i // 2
        title = titles[rng.randrange(len(titles))]
        body = [sentences[rng.randrange(len(sentences))] for _ in range(rng.choice((3, 4, 4, 5)))]
        text = f"{title}\n\n{' '.join(body)}"
        spans, start = [], len(title) + 2
        for sentence in body:
            spans.append([start, start + len(sentence)])
            start += len(sentence) + 1
        ids.append(f"{doc:08d}-{i % 2}-{rng.getrandbits(64):016x}")
        texts.append(text)
        metas.append(
            {
                "doc_id": f"synthetic-{doc:08d}",
                "doc_hash": f"{rng.getrandbits(64):016x}",
                "doc_chunks": 2,
                "ingested_at": 1.7e9 + doc,
                "title": title,
                "source": "synthetic:lexical-rebuild",
                "file_name": f"synthetic-{doc:08d}.txt",
                "position": i % 2,
                "sentences": json.dumps(spans),
            }
        )
    return ids, texts, metas


def measure(size: int) -> dict[str, Any]:
    from service.answering.lexical_views import _Snapshot
    from service.answering.question import Question
    from service.answering.retrieval import naming, unknown_names

    base = rss_mb()
    ids, texts, metas = synthetic(size)
    gc.collect()
    with_records = rss_mb()
    started = time.perf_counter()
    lexical = _Snapshot(ids, texts, metas)
    build_s = time.perf_counter() - started
    gc.collect()
    built = rss_mb()
    # one name the corpus never mentions: the per-query scan of the squashed corpus
    scans = []
    for _ in range(5):
        started = time.perf_counter()
        unknown_names(lexical, Question.parse("What is Zyxwvutsrq-9000?"))
        scans.append(time.perf_counter() - started)
    question = "How many tokens was DeepSeek-V3 pre-trained on?"
    searches = []
    for _ in range(5):
        started = time.perf_counter()
        found = lexical.search(question, 30)
        naming(Question.parse(question), found, lexical.stats)
        searches.append(time.perf_counter() - started)
    return {
        "chunks": size,
        "text_mb": round(sum(len(t) for t in texts) / 2**20),
        "records_rss_mb": round(with_records - base),
        "build_s": round(build_s, 1),
        "index_rss_mb": round(built - with_records),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "squashed_mb": round(len(lexical.squashed) / 2**20),
        "unknown_name_ms": round(sorted(scans)[2] * 1000, 1),
        "bm25_search_and_naming_ms": round(sorted(searches)[2] * 1000, 1),
    }


def per_size(script: str, measure: Callable[[int], dict[str, Any]], argv: list[str]) -> int:
    """Measure each size of ``argv`` in a fresh interpreter running ``script --one SIZE``."""
    if argv[:1] == ["--one"]:
        print(json.dumps(measure(int(argv[1]))), flush=True)
        return 0
    for size in argv or ["100000"]:
        subprocess.run([sys.executable, script, "--one", size], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(per_size(__file__, measure, sys.argv[1:]))

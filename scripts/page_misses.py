"""Why the right page is not cited: each answerable item with ``gold_pages``, traced through the
candidate pool (service.answering.retrieval) to the citations.

    CITEQA_DATA_DIR=/tmp/copy-of-rv-store HF_HUB_OFFLINE=1 \
        .venv/bin/python scripts/page_misses.py evals/datasets/rv-dev.jsonl [--out FILE]

For every item it finds the gold-page chunks (chunks of a gold document whose page range holds
a gold page; "fact chunks": those of them whose text states a key fact) and records their best
rank in each ranking the retriever fuses, taken deep (dense chunks, dense sentences, BM25; 1 =
best, None = not among the first DEEP), in the fused order, among the hits (the pool the
evidence is built from) and among the citations. Each page miss gets one class:

* ``doc``: no citation of a gold document (a document miss, not a page miss);
* ``absent``: no gold-page chunk in any ranking's first ``candidate_k`` (retrieval);
* ``pool``: a gold-page chunk is a candidate but fusion leaves it out of the hits, and putting
  it among the hits would not get it cited (the selection prefers another sentence);
* ``pool-fixable``: a ``pool`` miss that the pool alone would fix: with the gold-page chunk of
  best fused rank in place of the last hit, the answer (evidence, generator, validation as the
  engine runs them) cites the gold page;
* ``select``: a gold-page chunk is among the hits, yet another chunk of the document is cited
  (sentence selection, service.answering.evidence/extractive).

Prints the class counts, the rank distributions and the median retrieval time, and writes one
JSON line per item to ``--out``.

Measured on main aa87963 (rv-dev, 78 answerable items with pages): ok 58, doc 5, select 5,
pool 5, pool-fixable 5. Pool changes tried through the whole eval (rv-dev page accuracy; the
bundled dev/holdout/holdout2 moved too): RRF constant 10 (0.744 -> 0.769, bundled holdout2 key
fact -0.022 and dev refusal recall -0.025), 20 (0.756, dev key fact -0.007), the first chunk of
the dense-sentence and BM25 rankings always among the hits (0.731), one hit per page range of a
document (0.756, false refusals 0.023 -> 0.034), 8 hits instead of 5 (0.744). A chunk brought
into the hits mostly loses the sentence selection to the chunks it joins: the lever is the
selection (service.answering.evidence), not the pool.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEEP = 300  # how deep each ranking is read for the diagnosis


def _basename(source: str) -> str:
    return source.replace("\\", "/").rsplit("/", 1)[-1]


def _best(ranking: list[str], wanted: set[str]) -> int | None:
    return next((i + 1 for i, cid in enumerate(ranking) if cid in wanted), None)


def _where(cid: str, rankings: dict[str, list[str]], meta: dict[str, Any]) -> str:
    """A chunk as "doc#n p.P d/s/l/n ranks" for the listing."""
    ranks = "/".join(str(r.index(cid) + 1) if cid in r else "-" for r in rankings.values())
    return f"{cid.split('-')[0].split(':', 1)[-1]} p{meta[cid].get('page_start')} {ranks}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("-k", "--top-k", type=int, default=None)
    args = parser.parse_args()

    from citeqa.config import Settings
    from citeqa.store import public_source
    from evals.dataset import load_dataset
    from evals.metrics import fact_in_text, page_accuracy
    from service.answering.engine import Finished, Started, build_engine
    from service.answering.question import Question
    from service.answering.retrieval import Hit, Retrieval, naming, unknown_names

    settings = Settings()
    engine = build_engine(settings)
    retriever = engine.retriever
    got = engine.index.chunks.get(include=["metadatas", "documents"])
    meta = dict(zip(got["ids"], got["metadatas"] or [], strict=True))
    text = dict(zip(got["ids"], got["documents"] or [], strict=True))
    by_file: dict[str, list[str]] = collections.defaultdict(list)
    for cid, m in meta.items():
        by_file[_basename(public_source(str(m["doc_id"]), str(m.get("source", ""))))].append(cid)

    rows: list[dict[str, Any]] = []
    timings: list[float] = []
    for item in load_dataset(args.dataset):
        if item.type == "unanswerable" or not any(item.gold_pages.values()):
            continue
        gold = set()
        for doc, pages in item.gold_pages.items():
            for cid in by_file.get(doc, []):
                if meta[cid].get("page_start") is None:
                    continue
                first = int(str(meta[cid]["page_start"]))
                last = int(str(meta[cid].get("page_end") or first))
                if any(first <= p <= last for p in pages):
                    gold.add(cid)
        fact = {c for c in gold if any(fact_in_text(f, text[c]) for f in item.key_facts)}
        asked = Question.parse(item.question)
        started = time.perf_counter()
        retriever.retrieve_hits(asked, engine.check_top_k(args.top_k))
        timings.append((time.perf_counter() - started) * 1000)
        hits: list[str] = []
        sources: list[Hit] = []
        answer = None
        for event in engine.run(item.question, args.top_k):
            if isinstance(event, Started):
                sources = list(event.sources)
                hits = [h.chunk_id for h in sources]
            elif isinstance(event, Finished):
                answer = event.answer.public()
        assert answer is not None
        vector = retriever.embedder.embed([asked.text])[0]
        view = retriever.lexical.view()
        found = view.search(asked.text, DEEP)
        rankings = {
            "dense": list(retriever._dense_chunks(vector, DEEP)),
            "sentence": retriever._dense_sentences(vector, DEEP),
            "lexical": [c.id for c in found],
            "names": naming(asked, found, view.stats),
        }
        gold_docs = {cid for doc in item.gold_pages for cid in by_file.get(doc, [])}
        cited = [
            c
            for c in answer["citations"]
            if _basename(str(c.get("source") or "")) in item.gold_pages
        ]
        page_ok = page_accuracy(answer["citations"], item.gold_pages) == 1.0
        k = retriever.candidate_k
        ranks = {name: _best(r, gold) for name, r in rankings.items()}
        pool = {name: r[: retriever.candidate_k] for name, r in rankings.items()}
        fused = [cid for cid, _ in retriever._fuse(pool)]
        best = min(gold, key=lambda c: fused.index(c) if c in fused else len(fused), default=None)
        if page_ok:
            klass = "ok"
        elif not cited:
            klass = "doc"
        elif gold & set(hits):
            klass = "select"
        elif any(r is not None and r <= k for r in ranks.values()):
            klass = "pool"
        else:
            klass = "absent"
        if klass == "pool" and best is not None:
            # Would the answer cite the gold page if its best chunk took the last hit's place?
            swapped = sources[:-1] + retriever._hits([(best, 0.0)], rankings, view, found)
            retrieval = Retrieval(asked, vector, swapped, view.stats, unknown_names(view, asked))
            evidence = engine.evidence.build(retrieval)
            if evidence.answerable:
                draft = engine.generator.generate(evidence)
                cited_now = engine.finish(item.question, evidence, draft).public()["citations"]
            else:
                cited_now = []
            if page_accuracy(cited_now, item.gold_pages) == 1.0:
                klass = "pool-fixable"
        row = {
            "id": item.id,
            "class": klass,
            "refused": bool(answer["refused"]),
            "gold_chunks": len(gold),
            "fact_chunks": len(fact),
            "doc_chunks": len(gold_docs),
            "ranks": ranks,
            "fact_ranks": {name: _best(r, fact) for name, r in rankings.items()},
            "fused_rank": _best(fused, gold),
            "best_gold": _where(best, rankings, meta) if best else None,
            "hits": [_where(h, rankings, meta) for h in hits],
            "hit_rank": _best(hits, gold),
            "doc_hits": f"{sum(1 for h in hits if h in gold_docs)}/{len(hits)}",
            "cited_pages": [(c.get("page"), c.get("page_end")) for c in cited],
            "gold_pages": item.gold_pages,
        }
        rows.append(row)

    classes = collections.Counter(r["class"] for r in rows)
    print(f"items {len(rows)}: " + ", ".join(f"{c} {n}" for c, n in classes.most_common()))
    for klass in ("pool-fixable", "pool", "absent", "select"):
        chosen = [r for r in rows if r["class"] == klass]
        if not chosen:
            continue
        print(f"\n{klass}:")
        for r in chosen:
            print(
                f"  {r['id']}: ranks {r['ranks']} fact {r['fact_ranks']} hit {r['hit_rank']} "
                f"fused {r['fused_rank']} doc_hits {r['doc_hits']} gold {r['gold_chunks']}"
                f"/{r['doc_chunks']} cited {r['cited_pages']} want {r['gold_pages']}"
            )
    for r in rows:
        if r["class"] in ("pool-fixable", "pool", "select"):
            print(f"  {r['id']} gold {r['best_gold']} | hits " + ", ".join(r["hits"]))
    print(f"\nretrieve_hits p50 {statistics.median(timings):.1f} ms over {len(timings)}")
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

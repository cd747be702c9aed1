"""The figures of one bench run, the targets they are held to, and BENCHMARKS.md from them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.baseline import BaselineResult
from bench.documents_ingest import SHARED_FOLDER, DocumentsResult
from bench.fixes import ABResult
from bench.ingest_bench import RAW_SHARE, IngestResult
from bench.measure import Samples
from bench.retrieval_bench import SearchResult
from bench.service_bench import ServiceResult

SECTIONS = (
    "## Machine and versions",
    "## Targets",
    "## Ingest",
    "## Retrieval",
    "## Service",
    "## llama-index default pipeline, side by side",
    "## Local fixes, before/after",
    "## Profiles of missed targets",
    "## Method",
    "## Documents folder: ingest from empty, unchanged re-ingest",
)


@dataclass
class Target:
    key: str
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


@dataclass
class Profile:
    key: str
    what: str
    text: str


@dataclass
class BenchRun:
    date: str
    quick: bool
    machine: dict[str, str]
    versions: dict[str, str]
    load_start: str
    load_end: str = ""
    total_s: float = 0.0
    ingest: IngestResult | None = None
    documents: DocumentsResult | None = None
    searches: list[SearchResult] = field(default_factory=list)
    approximation: list[float] = field(default_factory=list)
    baseline: BaselineResult | None = None
    hit_citeqa: float = float("nan")
    hit_baseline: float = float("nan")
    service: ServiceResult | None = None
    targets: list[Target] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # target key -> explanation
    fixes: list[ABResult] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)  # (phase, seconds)


def evaluate_targets(run: BenchRun) -> list[Target]:
    assert run.ingest and run.baseline and run.service and run.searches
    ingest, service, bundled, largest = run.ingest, run.service, run.searches[0], run.searches[-1]
    citeqa_p50, baseline_p50 = run.baseline.citeqa_p50, run.baseline.p50
    faster = citeqa_p50.median < baseline_p50.median
    as_good = run.hit_citeqa >= run.hit_baseline
    return [
        Target(
            "ingest",
            "Ingest throughput vs raw embedding",
            ">= 85%",
            ingest.ratio.text(0),
            ingest.ratio.median >= 85,
        ),
        Target(
            "reingest",
            "Unchanged re-ingest, bundled corpus",
            "< 1 s",
            ingest.reingest_s.text(2),
            ingest.reingest_s.median < 1.0,
        ),
        *_documents_targets(run.documents),
        Target(
            "search",
            "Search p50, bundled corpus",
            "<= 20 ms",
            bundled.p50.text(),
            bundled.p50.median <= 20,
        ),
        Target(
            "search_large",
            f"Search p50, {largest.label} chunks",
            "<= 60 ms at 100k",
            largest.p50.text(),
            largest.p50.median <= 60 if largest.chunks >= 100_000 else None,
        ),
        Target(
            "web",
            "Web-layer overhead on /v1/ask, p50",
            "<= 5 ms",
            service.overhead_p50.text(),
            service.overhead_p50.median <= 5,
        ),
        Target(
            "baseline",
            "Retrieval vs llama-index default",
            "hit@5 >= and faster per query",
            f"hit@5 {run.hit_citeqa:.1%} vs {run.hit_baseline:.1%}; p50 {citeqa_p50.median:.1f} vs "
            f"{baseline_p50.median:.1f} ms",
            as_good and faster,
        ),
        Target(
            "rss",
            "RSS idle, default embedding model",
            "< 600 MB",
            service.rss_idle_mb.text(0),
            service.rss_idle_mb.median < 600,
        ),
    ]


def _documents_targets(docs: DocumentsResult | None) -> list[Target]:
    """Issue 13's targets, held only on the whole r-vignettes folder of ../shared."""
    if docs is None:
        return []
    whole = Path(docs.folder) == SHARED_FOLDER.resolve()
    extraction = docs.extraction_s + docs.chunking_s
    return [
        Target(
            "documents",
            "Ingest of r-vignettes from empty",
            "<= 4 min",
            f"{docs.wall_s:.0f} s, {docs.pages_per_s:.1f} pages/s",
            docs.wall_s <= 240 if whole else None,
        ),
        Target(
            "documents_share",
            "Extraction + chunking, share of that ingest",
            "<= 15%",
            f"{docs.share(extraction):.1f} %",
            docs.share(extraction) <= 15 if whole else None,
        ),
        Target(
            "documents_reingest",
            "Unchanged re-ingest of r-vignettes",
            "< 2 s",
            docs.reingest_s.text(2),
            docs.reingest_s.median < 2 if whole else None,
        ),
    ]


def render(run: BenchRun) -> str:
    parts = [
        _header(run),
        _machine(run),
        _targets(run),
        _ingest(run),
        _documents(run),
        _retrieval(run),
        _service(run),
        _baseline(run),
        _fixes(run),
        _profiles(run),
        _method(run),
    ]
    return "\n\n".join(part.strip() for part in parts) + "\n"


def _header(run: BenchRun) -> str:
    mode = " (`--quick`: a smoke run on a subset; figures are not comparable)" if run.quick else ""
    return f"""# Benchmarks

Written by `python -m bench` (`make bench`) on {run.date}{mode}; the whole run took
{run.total_s / 60:.1f} min. Do not edit by hand: rerun the bench.

Timings on a shared 2-core machine are noisy: each figure is the median over N runs with the
min and max, and comparisons (pipeline vs raw model, citeqa vs llama-index, HTTP vs engine) are
made within one run, interleaved where possible."""


def _machine(run: BenchRun) -> str:
    m = run.machine
    rows = [
        ("CPU", f"{m['cpu']}, {m['cores']} cores"),
        ("RAM", m["ram"]),
        ("OS", m["os"]),
        ("Load average (1/5/15 min) at start / end", f"{run.load_start} / {run.load_end}"),
        *((name, version) for name, version in run.versions.items()),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"{SECTIONS[0]}\n\n| | |\n| --- | --- |\n{table}"


def _targets(run: BenchRun) -> str:
    marks = {True: "met", False: "**missed**", None: "not measured"}
    rows = "\n".join(
        f"| {t.name} | {t.goal} | {t.measured} | {marks[t.met]} |" for t in run.targets
    )
    notes = "\n".join(
        f"- **{t.name}**: {run.notes[t.key]}" for t in run.targets if t.key in run.notes
    )
    return f"""{SECTIONS[1]}

2 cores, CPU only, default embedding model (all-MiniLM-L6-v2 int8 ONNX, 2 threads).

| Target | Goal | Measured | |
| --- | --- | --- | --- |
{rows}

{notes}"""


def _ingest(run: BenchRun) -> str:
    ing = run.ingest
    assert ing is not None
    raw_label = f"Raw model, every {RAW_SHARE}nd of the same texts by length (A-B-A)"
    return f"""{SECTIONS[2]}

{ing.documents} documents -> {ing.chunks} chunks; the pipeline embeds every chunk and every
sentence with a letter: {ing.texts} texts. {len(ing.ingest_s.values)} round(s) from an empty store.

| | |
| --- | --- |
| Ingest from empty, wall | {ing.ingest_s.text(1)} |
| Ingest throughput | {ing.ingest_rate.text(1)}; {ing.chunk_rate.text(2)} |
| {raw_label} | {ing.raw_rate.text(1)} ({ing.raw_s.text(1)} scaled to all the texts) |
| Pipeline / raw throughput | {ing.ratio.text(0)} |
| Inside the ingest: `embed` (batches of the pipeline) | {ing.embed_in_pipeline_s.text(1)} |
| Inside the ingest: `count_tokens` (chunker) | {ing.count_tokens_s.text(2)} |
| Inside the ingest: the rest (read, split, plan, Chroma writes) | {_rest(ing).text(1)} |
| Re-ingest of the unchanged corpus | {ing.reingest_s.text(2)} |
| Inside the re-ingest: `count_tokens` (chunker) | {ing.reingest_count_tokens_s.text(2)} |
| Texts embedded by the re-ingest | {ing.reingest_embedded} |"""


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def _documents(run: BenchRun) -> str:
    if run.documents is None:
        return f"{SECTIONS[9]}\n\nNot run."
    return documents_section(run.documents, "inside this run")


def documents_section(docs: DocumentsResult, when: str) -> str:
    """The section on a documents folder's ingest (also written alone by
    `python -m bench.documents_ingest --write`)."""
    whole = Path(docs.folder) == SHARED_FOLDER.resolve()
    folder = (
        "the 35 documents of `../shared/corpora/r-vignettes` (31 PDFs, 4 HTML)"
        if whole
        else f"`{Path(docs.folder).name}` (not ../shared/corpora/r-vignettes: not issue 13's "
        "figures)"
    )
    goals = "; ".join(f"{t.name}: {t.goal}, {t.measured}" for t in _documents_targets(docs))
    skipped = "; ".join(f"{name}: {reason}" for name, reason in docs.skipped) or "none"
    rows = [
        ("Documents", f"{docs.documents} read; skipped: {skipped}"),
        ("Pages (PDF, physical)", f"{docs.pages:,}"),
        (
            "Chunk vectors (CITEQA_CHUNK_VECTORS)",
            "sentence-mean: the mean of its sentences' and its title line's vectors"
            if docs.chunk_vectors == "sentence-mean"
            else "embed: a model pass over each chunk",
        ),
        (
            "Chunks / records with a vector / texts the model embedded",
            f"{docs.chunks:,} / {docs.texts:,} (every chunk, every sentence with a letter) / "
            f"{docs.model_texts:,}",
        ),
        (
            "Load average (1/5/15 min) at start / end",
            f"{_load(docs.load_start)} / {_load(docs.load_end)}",
        ),
        ("Ingest from empty, wall", f"{docs.wall_s:.1f} s ({docs.pages_per_s:.2f} pages/s)"),
        (
            "CPU time of that ingest (all threads; on 2 idle cores the wall is at least half)",
            f"{docs.cpu_s:.1f} s (2-core floor {docs.cpu_s / 2:.0f} s)",
        ),
        ("extraction", f"{docs.extraction_s:.1f} s ({docs.share(docs.extraction_s):.1f}%)"),
        ("reading and hashing the files", f"{docs.hashing_s:.2f} s"),
        (
            "chunking (sentence splitting, token counting)",
            f"{docs.chunking_s:.1f} s ({docs.share(docs.chunking_s):.1f}%)",
        ),
        (
            "embedding",
            f"{docs.embedding_s:.1f} s ({docs.share(docs.embedding_s):.0f}%; "
            f"{docs.texts_per_s:.0f} texts/s)",
        ),
        (
            "store writes not hidden by embedding (read of the stored records, Chroma upserts "
            "left over, deletes)",
            f"{docs.store_writes_s:.1f} s ({docs.share(docs.store_writes_s):.0f}%)",
        ),
        (
            "Chroma upserts, in the writer thread while the next batch embeds",
            f"{docs.upserts_s:.1f} s",
        ),
        (
            "Unchanged re-ingest, in process (`citeqa ingest`'s work: open the store, read "
            "its records, hash the files, plan)",
            docs.reingest_s.text(2),
        ),
        ("of which opening the store (the model is not loaded)", docs.reingest_open_s.text(2)),
        (
            "Files extracted / texts embedded by those re-ingests",
            f"{docs.reingest_extracted} / {docs.reingest_embedded}",
        ),
        ("Load average (1/5/15 min) after the re-ingests", _load(docs.reingest_load)),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""{SECTIONS[9]}

`python -m bench.documents_ingest` {when}: {folder}, into an empty store, the default
embedder (MiniLM int8, 2 threads), then unchanged re-ingests of it, each with its own
ingestor as `citeqa ingest` builds one. A file whose extraction fails (no readable text layer)
is tried again by every re-ingest: the store holds nothing of it to compare with.
Targets (issue 13): {goals}.

| | |
| --- | --- |
{table}"""


def _rest(ing: IngestResult) -> Samples:
    out = Samples("s")
    for total, embed, count in zip(
        ing.ingest_s.values, ing.embed_in_pipeline_s.values, ing.count_tokens_s.values, strict=True
    ):
        out.add(total - embed - count)
    return out


def _retrieval(run: BenchRun) -> str:
    rows = []
    for s in run.searches:
        took = f", took {_duration(s.store_build_s)}" if s.store_build_s else ""
        build = f"built in this run{took}" if s.store_built_now else f"cached{took}"
        build = build if s.label.startswith("synthetic") else "ingested above"
        build += f"; {s.store_note}" if s.store_note else ""
        hnsw = "/".join(
            str(s.hnsw.get(k)) for k in ("max_neighbors", "ef_construction", "ef_search")
        )
        rows.append(
            f"| {s.label} | {s.chunks:,} | {s.sentences:,} | {s.p50.text()} | {s.p95.text()} | "
            f"{s.fastest:.1f} ms | {s.first_query_s:.1f} s | {hnsw} | {build} |"
        )
    table = "\n".join(rows)
    return f"""{SECTIONS[3]}

`engine.search(question, k=5)` in process, query embedding included, over the
{len(run.searches[0].runs[0].values)} dev-set questions; each question is searched on every store
in turn (so all stores see the same load); p50 and p95 per pass, median (min, max) over
passes. "Fastest" is the fastest single search, close to the uncontended cost on a shared
machine. The first search of a store builds the in-process BM25 index (shown apart).

| Store | Chunks | Sentences | p50 | p95 | Fastest | First search | HNSW M/efC/efS | Store |
| --- | ---: | ---: | --- | --- | --- | --- | --- | --- |
{table}

Where a search's time goes (each step timed alone over the same questions, median ms):

{_components(run)}

{_synthetic_note(run)}"""


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _components(run: BenchRun) -> str:
    names: list[str] = []
    for s in run.searches:
        names.extend(n for n in s.components if n not in names)
    if not names:
        return "(the retriever's internals changed: no breakdown)"
    header = "| Step | " + " | ".join(s.label for s in run.searches) + " |"
    rule = "| --- |" + " ---: |" * len(run.searches)
    rows = [
        f"| {name} | "
        + " | ".join(
            f"{s.components[name].median:.1f}" if name in s.components else "" for s in run.searches
        )
        + " |"
        for name in names
    ]
    return "\n".join([header, rule, *rows])


def _synthetic_note(run: BenchRun) -> str:
    ing = run.ingest
    assert ing is not None
    rate = ing.raw_rate.median
    sentences_per_chunk = (ing.texts - ing.chunks) / max(ing.chunks, 1)
    texts_100k = 100_000 * (1 + sentences_per_chunk)
    hours = texts_100k / rate / 3600 if rate else float("nan")
    approx = run.approximation
    quality = (
        f"mean {statistics.mean(approx):.3f}, median {statistics.median(approx):.3f}, "
        f"min {min(approx):.3f}"
        if approx
        else "not measured"
    )
    return f"""**Synthetic stores are an approximation.** Embedding a 100k-chunk store for
real means {texts_100k:,.0f} texts (each chunk and its {sentences_per_chunk:.1f} sentences on
average); at the raw throughput measured above ({rate:.1f} texts/s) that is {hours:.1f} hours,
out of reach for a benchmark. So the synthetic stores hold the real corpus (real embeddings)
plus synthetic documents made of real sentences recombined at random (seeded): each sentence
record keeps the real embedding of its sentence, and each synthetic chunk's embedding is the
L2-normalised mean of its sentences' embeddings instead of the model's embedding of the chunk
text. On the real chunks, the cosine between the model's chunk embedding and that mean is
{quality} ({len(approx)} chunks): close, not equal, so the ranking quality of the synthetic
stores means nothing; their latency does (same record counts, shapes, metadata and vector
dimension). Built once and cached under `bench/.cache/`."""


def _service(run: BenchRun) -> str:
    svc = run.service
    assert svc is not None
    e2e = _percentiles(svc.e2e_runs, 50)
    engine = _percentiles(svc.engine_runs, 50)
    healthz = _percentiles(svc.healthz_runs, 50)
    return f"""{SECTIONS[4]}

`citeqa serve` in a subprocess on the ingested store (extractive generator), an httpx client
with keep-alive on 127.0.0.1, the dev-set questions.

| | |
| --- | --- |
| Start to first `/readyz` 200 | {svc.startup_s.text(2)} |
| of which: imports, in a fresh interpreter (measured apart) | {svc.imports_s.text(2)} |
| of which: loading the embedding model, same probe | {svc.model_s.text(2)} |
| RSS once ready (idle) | {svc.rss_idle_mb.text(0)} |
| RSS in the probe: interpreter / + imports / + one model / + a 2nd model, freed | {_memory(svc)} |
| RSS after {svc.questions_asked:,} questions | {svc.rss_after_mb:.0f} MB |
| /v1/ask p50, client side | {e2e.text()} |
| /v1/ask p50, engine's own `timings_ms.total` | {engine.text()} |
| Web-layer overhead p50 (per request: client time - engine time) | {svc.overhead_p50.text(2)} |
| GET /healthz p50 (HTTP + FastAPI floor) | {healthz.text(2)} |
| Web-layer overhead p50 in process (the app over ASGI, no socket) | {_in_process(svc)} |
| Requests/s, concurrency 1 | {svc.rps.get(1, 0):.1f} |
| Requests/s, concurrency 8 | {svc.rps.get(8, 0):.1f} |
| Errors | {svc.errors} |"""


def _in_process(svc: ServiceResult) -> str:
    values = svc.in_process_overhead
    if not values.values:
        return "not measured"
    return f"{values.percentile(50):.2f} ms (fastest {values.low:.2f}, n={len(values.values)})"


def _memory(svc: ServiceResult) -> str:
    steps = ("python", "imports", "model", "second_model_freed")
    if not all(step in svc.memory for step in steps):
        return "not measured"
    return " / ".join(f"{svc.memory[step]:.0f}" for step in steps) + " MB"


def _percentiles(runs: list[Samples], p: float) -> Samples:
    out = Samples("ms")
    for r in runs:
        out.add(r.percentile(p))
    return out


def _baseline(run: BenchRun) -> str:
    base, ing = run.baseline, run.ingest
    assert base is not None and ing is not None
    ingest_ratio = ing.ingest_s.median / base.ingest_s.median
    query_ratio = base.citeqa_p50.median / base.p50.median
    return f"""{SECTIONS[5]}

llama-index's defaults on the same {ing.documents} documents and questions with the same
embedding model: `VectorStoreIndex` over a fresh Chroma collection, SentenceSplitter defaults
({base.nodes} nodes), `as_retriever(similarity_top_k=5)`. Queries alternate between the two
question by question (citeqa: `engine.search(q, 5)`), so both see the same load. hit@5: an
answerable dev question whose gold paper is among the 5 retrieved titles.

| | citeqa | llama-index default | ratio (citeqa / llama-index) |
| --- | --- | --- | --- |
| Ingest from empty | {ing.ingest_s.text(1)} | {base.ingest_s.text(1)} | {ingest_ratio:.1f}x |
| Texts embedded at ingest | {ing.texts} | {base.nodes} | {ing.texts / max(base.nodes, 1):.1f}x |
| Query p50 | {base.citeqa_p50.text()} | {base.p50.text()} | {query_ratio:.2f}x |
| Query p95 | {base.citeqa_p95.text()} | {base.p95.text()} | |
| Fastest query | {base.citeqa_fastest:.1f} ms | {base.fastest:.1f} ms | |
| hit@5 (answerable dev questions) | {run.hit_citeqa:.1%} | {run.hit_baseline:.1%} | |"""


def _fixes(run: BenchRun) -> str:
    rows = []
    for ab in run.fixes:
        before, after = ab.samples["before"], ab.samples["after"]
        change = after.median / before.median - 1 if before.median else float("nan")
        rows.append(
            f"| {ab.what} | {ab.before}: {before.median:.2f} (min {before.low:.2f}) | "
            f"{ab.after}: {after.median:.2f} (min {after.low:.2f}) | {change:+.0%} | "
            f"{len(before.values)} | {ab.note} |"
        )
    table = "\n".join(rows)
    return f"""{SECTIONS[6]}

Both variants of each change are re-measured in every run, interleaved call by call so that
they share the machine's load (median ms, min in brackets).

- Applied, `service/answering/retrieval.py`: the dense search over sentences asks Chroma for ids
only (a
  sentence id is `<chunk id>/s<position>`, so it names its chunk) instead of the metadata of the
  3 * k records, which SQLite had to fetch and which cost more than the vector search itself.
  Same rankings (checked in each run, last column).
- Applied, `service/answering/retrieval.py`: the map from chunk id to position in the BM25 snapshot
is
  built once with the snapshot, not on every query (at 100k chunks, rebuilding it was more than
  half of a search; the profile showed it).
- Applied, `service/answering/retrieval.py`: the BM25 snapshot is loaded from Chroma in pages of
5,000:
  one `get` of the 100k-chunk collection failed in Chroma's SQLite ("too many SQL variables").
- Applied, `service/answering/retrieval.py`: each hit's cosine similarity to the question is the
dense
  search's own distance (cosine space: 1 - distance) instead of a Chroma `get` of the hits'
  embeddings and a dot product; hits the dense search did not return (3 of 525 on the dev set)
  still read their stored embedding. Same figures (largest difference, last column).
- Applied, `citeqa/embedding.py`: one text (a query) skips the tokenizer's padding toggle under
  a lock and the length sort of the batch path. Same vectors (tests/test_embedding.py).
- Applied, `cli/main.py`: `citeqa serve` builds one embedding model, not two (the probe's last
  RSS figure under Service is what the second cost), and `/readyz` turns true only once the BM25
  snapshot is built, so the first search does not pay for it.
- Applied, `ingest/pipeline.py`: the ingest plan reads a source's existing records in pages (a
  source of 33k chunks failed like the 100k-chunk snapshot below; tests/test_ingest.py).
- Candidate, not applied, `service/answering/retrieval.py`: the two Chroma queries in threads while
BM25
  runs in the caller. Chroma's bindings do not let them overlap usefully on 2 cores shared with
  the ONNX threads and other work: no faster, often slower (row below), so they stay serial.
- Candidate, not applied, `citeqa/embedding.py`: the ONNX session's idle threads sleep instead
  of spinning (`session.intra_op.allow_spinning=0`). Under heavy contention (load average 12-15
  on 2 cores) it cut the query embedding p50 by ~13% and batches by ~10%; under moderate load
  (~5) single queries were ~10% slower. Mixed, so ONNX's default stays and the bench keeps
  measuring it.

| What | Before | After | Change | Calls each | |
| --- | --- | --- | ---: | ---: | --- |
{table}"""


def _profiles(run: BenchRun) -> str:
    if not run.profiles:
        missed = [t.name for t in run.targets if t.met is False]
        why = (
            "profiles skipped in this run (`--quick` or `--no-profile`)"
            if missed
            else "no target missed"
        )
        return f"{SECTIONS[7]}\n\n{why}."
    blocks = [f"### {p.what}\n\n```\n{p.text}\n```" for p in run.profiles]
    return f"{SECTIONS[7]}\n\npyinstrument, wall time, one pass.\n\n" + "\n\n".join(blocks)


def _method(run: BenchRun) -> str:
    phases = "\n".join(f"| {name} | {_duration(seconds)} |" for name, seconds in run.phases)
    return f"""{SECTIONS[8]}

- `python -m bench` (`make bench`) writes this file; `python -m bench --quick --no-write` is the
  smoke run (tests/test_bench.py). `pip install -e '.[bench]'` adds pyinstrument for the profiles.
- Ingest: each round embeds half of a sample of the pipeline's texts raw (every
  {RAW_SHARE}nd by length), ingests, then embeds the other half of the sample (A-B-A), so both see
  the same background load; ratio = ingest rate / raw rate (texts/s) per round.
- Latency: `time.perf_counter()` around each call; no warm-up call is counted.
- Service: the client runs on the same 2 cores as the server, so HTTP figures include the client.
- Synthetic stores: see the note under Retrieval.

Where this run's {run.total_s / 60:.1f} minutes went:

| Phase | Time |
| --- | ---: |
{phases}"""


def explain(run: BenchRun) -> dict[str, str]:
    """One note per missed target, from this run's own figures."""
    missed = {t.key for t in run.targets if t.met is False}
    writers = {
        "ingest": _why_ingest,
        "reingest": _why_reingest,
        "search": lambda r: _why_search(r, r.searches[0]),
        "search_large": lambda r: _why_search(r, r.searches[-1]),
        "web": _why_web,
        "baseline": _why_baseline,
        "rss": _why_rss,
    }
    notes = {key: writer(run) for key, writer in writers.items() if key in missed}
    met = {t.key for t in run.targets if t.met}
    for key, caveat in (("ingest", _caveat_ingest), ("baseline", _caveat_baseline)):
        text = caveat(run) if key in met else ""
        if text:
            notes[key] = text
    return notes


def _caveat_ingest(run: BenchRun) -> str:
    """A ratio above 100% is noise: the pipeline runs the same model calls and more."""
    ing = run.ingest
    if ing is None or ing.ratio.median <= 100:
        return ""
    share = ing.embed_in_pipeline_s.median / ing.ingest_s.median
    return (
        f"above 100%, which the pipeline cannot be (it makes the same model calls and more): the "
        f"raw sample and the ingest met different background load ({len(ing.ratio.values)} "
        f"round(s)). The load-free measure is inside the ingest: the model took {share:.0%} of "
        "its wall time, so the pipeline's own work is the rest."
    )


def _caveat_baseline(run: BenchRun) -> str:
    """Met on medians; say so when the fastest queries, nearest the uncontended cost, are not."""
    base = run.baseline
    if base is None or base.citeqa_fastest <= base.fastest:
        return ""
    return (
        f"met on this run's medians (p50 {base.citeqa_p50.text()} vs {base.p50.text()}, "
        f"interleaved), but the fastest single queries, nearest the uncontended cost, are "
        f"{base.citeqa_fastest:.1f} vs {base.fastest:.1f} ms: without contention citeqa's dense "
        "search over sentences and BM25 cost more than llama-index's heavier single query "
        "(documents and metadata from SQLite, its own plumbing) saves, and the medians move "
        f"with the machine's load.{_load_caveat(run)}"
    )


def _why_ingest(run: BenchRun) -> str:
    ing = run.ingest
    assert ing is not None
    embed, raw = ing.embed_in_pipeline_s.median, ing.raw_s.median
    rest = _rest(ing).median
    return (
        f"of {ing.ingest_s.median:.1f} s, {embed:.1f} s are in the model (the raw call takes "
        f"{raw:.1f} s: the pipeline's batches of 64, sorted by length only within each batch, "
        f"pad more), {ing.count_tokens_s.median:.1f} s count tokens for the chunker and "
        f"{rest:.1f} s go to reading, sentence splitting, planning and Chroma writes (profile "
        "below)."
    )


def _why_reingest(run: BenchRun) -> str:
    ing = run.ingest
    assert ing is not None
    return (
        f"nothing is embedded, but the corpus is read, split into sentences and re-chunked "
        f"({ing.reingest_count_tokens_s.median:.2f} s counting tokens) and the store's ids are "
        "fetched from Chroma before the plan says there is nothing to do (profile below)."
    )


def _why_search(run: BenchRun, search: SearchResult) -> str:
    parts = ", ".join(f"{name} {value.median:.1f} ms" for name, value in search.components.items())
    embed = search.components.get("query embedding")
    share = (
        f" The query embedding alone is {embed.median / search.p50.median:.0%} of p50."
        if embed
        else ""
    )
    return (
        f"{search.label}: p50 {search.p50.median:.1f} ms (the quietest pass: "
        f"{search.p50.low:.1f} ms), fastest single search {search.fastest:.1f} ms. Steps timed "
        f"alone (median): {parts}.{share}{_load_caveat(run)}"
    )


def _why_web(run: BenchRun) -> str:
    svc = run.service
    assert svc is not None
    healthz = _percentiles(svc.healthz_runs, 50).median
    app = svc.in_process_overhead
    inside = (
        f" The same app driven in process over ASGI (httpx's ASGI client, no socket, no "
        f"uvicorn) adds {app.percentile(50):.2f} ms p50 to the engine's time: middleware, "
        "validation, the threadpool hop and JSON together; the rest of the overhead is the "
        "HTTP round trip between two processes (client, kernel, uvicorn) and waiting for a core."
        if app.values
        else ""
    )
    return (
        f"GET /healthz, which does no engine work, takes {healthz:.1f} ms p50 here: that is the "
        "floor of one HTTP round trip (client, uvicorn, FastAPI) on this machine; /v1/ask adds "
        f"request/response validation, a threadpool hop and a larger JSON body.{inside}"
        f"{_load_caveat(run)}"
    )


def _why_baseline(run: BenchRun) -> str:
    base = run.baseline
    assert base is not None
    embed = run.searches[0].components.get("query embedding")
    embed_text = (
        f" (the query embedding, {embed.median:.1f} ms, is common to both)" if embed else ""
    )
    return (
        f"hit@5 {run.hit_citeqa:.1%} vs {run.hit_baseline:.1%}; per query citeqa does a dense "
        "search over chunks, one over sentences and BM25 where "
        f"llama-index does one dense search{embed_text}: p50 {base.citeqa_p50.median:.1f} vs "
        f"{base.p50.median:.1f} ms, fastest {base.citeqa_fastest:.1f} vs "
        f"{base.fastest:.1f} ms.{_load_caveat(run)}"
    )


def _why_rss(run: BenchRun) -> str:
    svc = run.service
    assert svc is not None
    return f"RSS idle {svc.rss_idle_mb.median:.0f} MB (profile the imports and the model session)."


def _load_caveat(run: BenchRun) -> str:
    cores = int(run.machine.get("cores", "1") or 1)
    loads = [float(x) for x in (run.load_start.split(" / ")[0], run.load_end.split(" / ")[0]) if x]
    if loads and max(loads) > cores:
        return (
            f" The machine was shared during the run (load average {max(loads):.1f} on {cores} "
            "cores): medians include waiting for a core; the fastest figures are closer to the "
            "uncontended cost."
        )
    return ""


def replace_section(document: str, heading: str, new: str) -> str:
    """``document`` with the section under ``heading`` replaced by ``new`` (appended when
    absent); the section runs to the next ``## `` heading."""
    start = document.find(heading)
    if start < 0:
        return document.rstrip("\n") + "\n\n" + new
    end = document.find("\n## ", start + len(heading))
    rest = document[end + 1 :] if end >= 0 else ""
    return document[:start] + new + ("\n" + rest if rest else "")

"""`python -m bench` (`make bench`): run every phase and rewrite BENCHMARKS.md.

`--quick` runs a short version (a few documents, few questions, small synthetic store, no
profiles) for smoke tests; `--no-write` prints the report instead of writing BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import (
    baseline,
    documents_ingest,
    embedder_concurrency,
    fixes,
    ingest_bench,
    profiling,
    retrieval_bench,
    scale,
    service_bench,
    synthetic,
)
from bench.load import REPO_ROOT
from bench.measure import load_average, machine, versions
from bench.report import BenchRun, Profile, evaluate_targets, explain, render, replace_section
from citeqa.config import Settings
from citeqa.embedding import MiniLMOnnxEmbedder
from evals.dataset import load_dataset
from service.answering.engine import build_engine
from service.answering.extractive import ExtractiveGenerator

CACHE = Path(__file__).resolve().parent / ".cache"
DEV_SET = REPO_ROOT / "evals" / "datasets" / "dev.jsonl"
OUTPUT = REPO_ROOT / "BENCHMARKS.md"
log = logging.getLogger("bench")


@dataclass(frozen=True)
class Plan:
    """How much of each phase to run."""

    documents: int | None  # None: the whole corpus
    questions: int | None
    ingest_rounds: int
    reingests: int
    search_runs: int
    synthetic_sizes: tuple[int, ...]
    cache_synthetic: bool
    baseline_ingests: int
    startups: int
    service_runs: int
    rps_seconds: float
    total_questions: int
    profiles: bool
    ab_batch: int  # texts in the batch of the ONNX spinning before/after
    ab_batch_reps: int
    document_reingests: int  # unchanged re-ingests of the documents folder


# One ingest from empty (~100 s, itself an average over 1,622 texts) and one llama-index
# ingest keep the whole run under 10 minutes on a loaded 2-core machine.
FULL = Plan(None, None, 1, 5, 3, (10_000, 100_000), True, 1, 3, 2, 10.0, 1000, True, 32, 2, 5)
QUICK = Plan(3, 5, 1, 2, 2, (300,), False, 1, 1, 1, 1.0, 30, False, 4, 1, 1)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s bench: %(message)s", stream=sys.stderr
    )
    for noisy in ("bm25s", "chromadb", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.scale:
        return _scale(args)
    plan = QUICK if args.quick else FULL
    if args.no_profile or args.profile:
        plan = dataclasses.replace(plan, profiles=bool(args.profile))
    if args.sizes:
        sizes = tuple(int(size) for size in args.sizes.split(","))
        plan = dataclasses.replace(plan, synthetic_sizes=sizes)
    CACHE.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
    try:
        run = run_all(plan, workdir, quick=args.quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = render(run)
    log.info("embedder over HTTP, by concurrency")
    embedding = embedder_concurrency.section(embedder_concurrency.run(quick=args.quick))
    report = replace_section(report, embedder_concurrency.HEADING, embedding)
    if args.no_write:
        print(report)
    else:
        args.output.write_text(report, encoding="utf-8")
        log.info("wrote %s", args.output)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run for smoke tests")
    parser.add_argument(
        "--no-write", action="store_true", help="print the report, keep BENCHMARKS.md"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip profiles of missed targets")
    parser.add_argument(
        "--profile", action="store_true", help="profile missed targets (--quick too)"
    )
    parser.add_argument(
        "--sizes", default="", help="synthetic store sizes, comma-separated (default 10000,100000)"
    )
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help="report path (default BENCHMARKS.md)"
    )
    scale = parser.add_argument_group("scale (issue 19): only this section runs")
    scale.add_argument("--scale", type=int, default=0, help="chunks in the store, e.g. 1000000")
    scale.add_argument("--replicas", type=int, default=2, help="citeqa serve processes")
    scale.add_argument("--ingest", type=int, default=10_000, help="chunks ingested while serving")
    scale.add_argument(
        "--visible", type=int, default=1_000, help="chunks whose visibility is timed"
    )
    scale.add_argument(
        "--poll-s", type=float, default=2.0, help="CITEQA_LEXICAL_POLL_S of replicas"
    )
    scale.add_argument(
        "--search-rate",
        type=float,
        default=0.0,
        help="searches a second, sent on a schedule, idle and busy alike (open loop); "
        "0: each when the last is answered",
    )
    scale.add_argument(
        "--env",
        action="append",
        default=[],
        help="KEY=VALUE for the replicas and the ingests (repeatable)",
    )
    return parser


def _scale(args: argparse.Namespace) -> int:
    env = dict(item.split("=", 1) for item in args.env)
    run = scale.run(
        args.scale,
        args.replicas,
        args.ingest,
        args.visible,
        args.poll_s,
        env,
        questions=10 if args.quick else None,
        rate=args.search_rate,
    )
    old = args.output.read_text(encoding="utf-8") if args.output.exists() else "# Benchmarks\n"
    text = scale.section(run, old)
    if args.no_write:
        print(text)
    else:
        args.output.write_text(replace_section(old, scale.HEADING, text), encoding="utf-8")
        log.info("wrote %s", args.output)
    return 0


def run_all(plan: Plan, workdir: Path, quick: bool) -> BenchRun:
    started = time.perf_counter()
    run = BenchRun(
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        quick=quick,
        machine=machine(),
        versions=versions(),
        load_start=load_average(),
    )
    embedder_threads = Settings().embed_threads
    embedder = MiniLMOnnxEmbedder(threads=embedder_threads)
    embedder.embed(["warm-up"])
    items = load_dataset(DEV_SET)[: plan.questions]
    questions = [item.question for item in items]
    reader = ingest_bench.corpus_reader(Settings().corpus_path, plan.documents)

    phase = PhaseClock(run)
    phase.start(f"ingest, {plan.ingest_rounds} round(s) from empty (A-B-A with the raw model)")
    run.ingest = ingest_bench.run_ingest(
        embedder, reader, plan.ingest_rounds, plan.reingests, workdir
    )
    store = run.ingest.store
    assert store is not None
    phase.start("documents folder: ingest from empty, unchanged re-ingests")
    run.documents = documents_ingest.run(
        _documents_folder(quick, workdir), plan.document_reingests, embedder, workdir
    )

    phase.start("search on the ingested corpus: first search, hit@5")
    engine = build_engine(store, embedder=embedder, generator=ExtractiveGenerator())
    stores = [(retrieval_bench.open_search("bundled corpus", engine, questions), engine)]
    run.hit_citeqa = baseline.hit_at_k(items, lambda q: [h.title for h in engine.search(q, 5)])
    corpus = synthetic.read_corpus_vectors(engine.index)
    batch = sorted(corpus.chunks.texts)[: plan.ab_batch]
    run.approximation = synthetic.approximation_quality(corpus)
    for size in plan.synthetic_sizes:
        phase.start(f"synthetic store of {size:,} chunks: build or open, first search")
        store_info = synthetic.ensure_store(
            CACHE if plan.cache_synthetic else workdir, size, corpus, embedder
        )
        big = build_engine(store_info.settings, embedder=embedder, generator=ExtractiveGenerator())
        result = retrieval_bench.open_search(f"synthetic {size:,}", big, questions)
        result.store_build_s = store_info.build_s
        result.store_built_now = store_info.built_now
        result.store_note = store_info.note
        stores.append((result, big))
    phase.start(f"search on {len(stores)} stores, interleaved, {plan.search_runs} passes")
    retrieval_bench.measure_searches(stores, questions, plan.search_runs)
    run.searches = [result for result, _ in stores]
    largest = stores[-1][1] if len(stores) > 1 else None
    phase.start("before/after of local changes")
    run.fixes.append(fixes.sentence_query(engine, "bundled corpus", questions))
    run.fixes.append(fixes.hit_similarity(engine, "bundled corpus", questions))
    run.fixes.append(fixes.concurrent_queries(engine, "bundled corpus", questions))
    if largest is not None:
        run.fixes.append(fixes.sentence_query(largest, run.searches[-1].label, questions))
        run.fixes.append(fixes.position_map(largest, run.searches[-1].label, questions))
    run.fixes.append(fixes.single_text_embedding(embedder, questions))
    run.fixes.extend(fixes.spinning(embedder_threads, questions[:20], batch, plan.ab_batch_reps))
    del corpus
    gc.collect()

    phase.start("llama-index default pipeline, interleaved queries")
    run.baseline, titles = baseline.run_baseline(
        reader().documents,
        embedder,
        lambda q: engine.search(q, 5),
        questions,
        plan.baseline_ingests,
        plan.search_runs,
        workdir,
    )
    run.hit_baseline = baseline.hit_at_k(items, titles)

    phase.start("service: citeqa serve over HTTP")
    run.service = service_bench.run_service(
        store,
        questions,
        workdir / "serve.log",
        plan.startups,
        plan.service_runs,
        plan.rps_seconds,
        plan.total_questions,
    )
    with service_bench.WebLayer(store, engine, questions) as web:
        run.service.in_process_overhead = web.overhead()
    run.targets = evaluate_targets(run)
    if plan.profiles:
        phase.start("profiles of missed targets")
        run.profiles = _profiles(run, engine, largest, questions, reader, workdir, embedder)
    phase.stop()
    run.load_end = load_average()
    run.notes = explain(run)
    run.total_s = time.perf_counter() - started
    return run


def _documents_folder(quick: bool, workdir: Path) -> Path:
    """r-vignettes of ../shared; a smoke run (or a clone alone) reads one bundled PDF."""
    if not quick and documents_ingest.SHARED_FOLDER.is_dir():
        return documents_ingest.SHARED_FOLDER
    folder = workdir / "documents"
    folder.mkdir()
    shutil.copy(documents_ingest.BUNDLED_FOLDER / "survival-tiedtimes.pdf", folder)
    return folder


class PhaseClock:
    """Logs each phase as it starts and records how long it took in ``run.phases``."""

    def __init__(self, run: BenchRun) -> None:
        self.run = run
        self.name = ""
        self.started = 0.0

    def start(self, name: str) -> None:
        self.stop()
        log.info("%s", name)
        self.name, self.started = name, time.perf_counter()

    def stop(self) -> None:
        if self.name:
            self.run.phases.append((self.name, time.perf_counter() - self.started))
        self.name = ""


def _profiles(run, engine, largest, questions, reader, workdir, embedder) -> list[Profile]:  # type: ignore[no-untyped-def]
    if not profiling.available():
        return [Profile("all", "pyinstrument is not installed: `pip install -e '.[bench]'`", "")]
    missed = {target.key for target in run.targets if target.met is False}
    profiles = []
    if "ingest" in missed:
        log.info("profile: ingest of 20 documents from empty")
        subset = ingest_bench.corpus_reader(Settings().corpus_path, 20)

        def ingest_subset() -> None:
            store = Settings(data_dir=Path(tempfile.mkdtemp(prefix="profile-", dir=workdir)))
            from ingest.run import build_ingestor

            build_ingestor(store, embedder).ingest(subset())

        profiles.append(
            Profile(
                "ingest",
                "ingest of the first 20 documents from empty",
                profiling.profile(ingest_subset),
            )
        )
    if "reingest" in missed:
        from ingest.run import build_ingestor

        ingestor = build_ingestor(run.ingest.store, embedder)
        profiles.append(
            Profile(
                "reingest",
                "re-ingest of the unchanged corpus",
                profiling.profile(lambda: ingestor.ingest(reader())),
            )
        )
    if "search" in missed or "baseline" in missed:
        profiles.append(
            Profile(
                "search",
                f"engine.search over the {len(questions)} dev questions, bundled corpus",
                profiling.profile(lambda: [engine.search(q, 5) for q in questions]),
            )
        )
    if "web" in missed:
        log.info("profile: /v1/ask over ASGI in process")
        with service_bench.WebLayer(run.ingest.store, engine, questions) as web:
            text = profiling.profile(web.ask_all)
        what = (
            f"/v1/ask over ASGI in process (no socket, no uvicorn), {len(questions)} dev "
            "questions; the engine's own time is the wait on the threadpool (epoll)"
        )
        profiles.append(Profile("web", what, text))
    if "search_large" in missed and largest is not None:
        profiles.append(
            Profile(
                "search_large",
                f"engine.search over the {len(questions)} dev questions, {run.searches[-1].label}",
                profiling.profile(lambda: [largest.search(q, 5) for q in questions]),
            )
        )
    return profiles


if __name__ == "__main__":
    raise SystemExit(main())

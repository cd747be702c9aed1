"""``citeqa eval``: run a dataset, gate on it, compare two runs, draft a dataset.

::

    citeqa eval --dataset PATH [--corpus DIR | --collection NAME] [--out DIR]
                [--generator extractive|llm] [--judge none|llm] [--top-k K]
                [--baseline FILE] [--fail-under METRIC=VALUE]... [--tolerance T]
                [--junit FILE] [--write-baseline]
    citeqa eval compare RUN_A RUN_B [--out DIR]
    citeqa eval draft (--collection NAME | --corpus DIR) [-n 60] [--out FILE] [--no-llm]

Exit codes: 0 when the run (and its gate) holds, 1 on a regression, a floor missed or an LLM
judge that failed too often, 2 on a usage or dataset error. Everything but latency is
deterministic for a given store, dataset and offline generator.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeqa.config import Settings
from citeqa.errors import InputError, StoreNotReadyError
from citeqa.lock import hold_store

if TYPE_CHECKING:
    from evals.runner import EvalRun

GENERATORS = ("extractive", "llm")
JUDGES = ("none", "llm")
EXIT_OK, EXIT_GATE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line or its input: exit 2 with the message."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The options of ``citeqa eval`` and its ``compare`` and ``draft`` subcommands."""
    parser.add_argument("--dataset", type=Path, help="JSONL dataset (evals/dataset.py)")
    _add_target(parser)
    parser.add_argument("--out", type=Path, default=None, help="output folder (eval-out/<name>)")
    parser.add_argument("--generator", choices=GENERATORS, default=None)
    parser.add_argument("--judge", choices=JUDGES, default="none")
    parser.add_argument("-k", "--top-k", type=int, default=None)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="fail on a regression against this file: a baseline (floors, tolerance, metrics, "
        "as evals/baseline.json), or an earlier run's folder or summary.json",
    )
    parser.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fail when METRIC is below VALUE (above it for false_refusal_rate); repeatable",
    )
    parser.add_argument(
        "--tolerance", type=float, default=None, help="allowed drop below the baseline"
    )
    parser.add_argument("--junit", type=Path, help="write JUnit XML, one test case per item")
    parser.add_argument(
        "--write-baseline",
        action="store_true",
        help="after the run, replace the metrics of --baseline with this run's (floors kept)",
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="{compare,draft}")
    compare = sub.add_parser(
        "compare",
        help="compare two eval runs: compare.md and a self-contained report.html",
        description="Compare two eval output folders (A: before, B: after).",
    )
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_B)")
    draft = sub.add_parser(
        "draft",
        help="draft candidate dataset items from a collection, for a person to review",
        description="Draft fact questions and near misses from the documents of a collection.",
    )
    _add_target(draft)
    draft.add_argument("-n", type=int, default=60, help="number of items (default 60)")
    draft.add_argument("--out", type=Path, default=None, help="JSONL file to write")
    draft.add_argument("--seed", type=int, default=0)
    draft.add_argument(
        "--no-llm", action="store_true", help="draft offline even when an LLM is configured"
    )


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--corpus",
        type=Path,
        help="ingest this folder first (incremental) into its own collection, then use it; "
        "its answerability model is fit as `citeqa ingest` fits it",
    )
    parser.add_argument("--collection", help="the collection to use (default: the configured)")
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="with --corpus: do not fit the collection's answerability model after the ingest",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch ``citeqa eval`` and its subcommands; usage errors exit 2 with a message."""
    try:
        if args.eval_command == "compare":
            return _compare(args)
        settings = _target_settings(args, settings)
        with hold_store(settings, "eval"):
            if args.corpus is not None:
                from evals.corpus import ingest_corpus

                print(
                    ingest_corpus(settings, args.corpus, calibrate=args.calibrate), file=sys.stderr
                )
            if args.eval_command == "draft":
                return _draft(args, settings)
            return _eval(args, settings)
    except UsageError as exc:
        print(f"citeqa eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _target_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` with the collection of ``--collection`` or ``--corpus`` (named after the
    folder: :func:`evals.corpus.collection_for`)."""
    from citeqa.store import check_collection_name

    name = args.collection
    if args.corpus is not None:
        if not args.corpus.is_dir():
            raise UsageError(f"--corpus {args.corpus}: not a folder")
        from evals.corpus import collection_for

        name = name or collection_for(args.corpus)
    if not name:
        return settings
    try:
        check_collection_name(name)
    except InputError as exc:
        raise UsageError(exc.message) from exc
    return settings.model_copy(update={"collection": name})


def open_engine(settings: Settings) -> Any:
    """The engine over ``settings.collection``, which must exist and hold documents."""
    from citeqa.embedding import build_embedder
    from citeqa.store import connect, open_index
    from service.answering.engine import build_engine

    embedder = build_embedder(settings)
    try:
        index = open_index(connect(settings), settings.collection, embedder, create=False)
    except StoreNotReadyError as exc:
        raise UsageError(f"{exc.message} (or pass --corpus DIR)") from exc
    if index.chunks.count() == 0:
        raise UsageError(f"collection {settings.collection!r} is empty: ingest documents first")
    return build_engine(settings, embedder=embedder, index=index)


# --------------------------------------------------------------------------- eval and gate


def default_out_dir(dataset: Path) -> Path:
    """``./eval-out/<dataset stem>``."""
    return Path("eval-out") / Path(dataset).stem


def parse_fail_under(specs: Sequence[str]) -> dict[str, float]:
    """``["key_fact_accuracy=0.6", ...]`` -> floors; a usage error names a bad spec."""
    from evals.metrics import OPTIONAL_METRICS, QUALITY_METRICS

    known = QUALITY_METRICS + OPTIONAL_METRICS
    floors: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise UsageError(
                f"--fail-under {spec!r}: expected METRIC=VALUE with METRIC one of "
                + ", ".join(known)
            )
        try:
            floors[name] = float(value)
        except ValueError:
            raise UsageError(f"--fail-under {spec!r}: {value!r} is not a number") from None
    return floors


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from evals.dataset import DatasetError, load_dataset
    from evals.judge import DEFAULT_CACHE_DIR, LLMJudge
    from evals.runner import describe_judge_health, format_table, run_eval, write_outputs

    if args.dataset is None:
        raise UsageError("--dataset is required (or use `citeqa eval compare|draft`)")
    floors = parse_fail_under(args.fail_under)
    if args.write_baseline and args.baseline is None:
        raise UsageError("--write-baseline needs --baseline FILE (the file to write)")
    baseline = None if args.write_baseline or args.baseline is None else _baseline(args.baseline)
    if args.generator is not None:
        settings = settings.model_copy(update={"generator": args.generator})
    if args.judge == "llm" and not settings.llm_configured:
        raise UsageError(
            "--judge llm needs an LLM endpoint: set CITEQA_LLM_BASE_URL and/or "
            "CITEQA_LLM_API_KEY (or OPENAI_API_KEY)"
        )
    try:
        items = load_dataset(Path(args.dataset))
    except (OSError, DatasetError) as exc:
        raise UsageError(str(exc)) from exc
    if not items:
        raise UsageError(f"{args.dataset} holds no items")

    started = time.perf_counter()
    engine = open_engine(settings)
    try:
        engine.check_top_k(args.top_k)
    except InputError as exc:
        raise UsageError(exc.message) from exc
    _warn_dataset_problems(engine, items)
    judge = LLMJudge(settings, cache_dir=DEFAULT_CACHE_DIR) if args.judge == "llm" else None
    result = run_eval(
        engine,
        items,
        progress=sys.stderr.isatty(),
        top_k=args.top_k,
        judge=judge,
        dataset_path=Path(args.dataset),
    )
    out_dir = Path(args.out) if args.out is not None else default_out_dir(Path(args.dataset))
    paths = write_outputs(result, out_dir)
    if args.junit is not None:
        from evals.junit import write_junit

        write_junit(result.records, args.junit, name=Path(args.dataset).stem)
        paths["junit"] = args.junit
    elapsed = time.perf_counter() - started

    print(format_table(result.summary))
    if result.summary["metrics"].get("by_tag"):
        print()
        print(format_table(result.summary, "by_tag"))
    print()
    print(
        f"{len(items)} items, collection {settings.collection}, generator "
        f"{result.summary['generator']}, judge {result.summary['judge']}, {elapsed:.1f} s"
        + (f" ({judge.calls} LLM judge calls)" if judge is not None else "")
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    code = EXIT_OK
    if "judge_health" in result.summary:
        print(f"LLM judge: {describe_judge_health(result.summary['judge_health'])}")
        code = _judge_verdict(result.summary["judge_health"], settings.judge_max_failed_share)
    if args.write_baseline:
        from evals.gate import write_baseline

        write_baseline(result.summary, args.baseline)
        print(f"wrote baseline {args.baseline}")
        return code
    if baseline is not None or floors:
        code = max(code, _gate(result, baseline, floors, args.tolerance))
    return code


def _baseline(path: Path) -> dict[str, Any]:
    """A baseline file's content, or an earlier run's summary (a folder holding summary.json,
    or the file) as a baseline without floors."""
    import json

    from evals.gate import DEFAULT_TOLERANCE, overall_metrics

    file = path / "summary.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--baseline {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise UsageError(f"--baseline {path}: neither a baseline nor an eval summary")
    if "overall" in data["metrics"]:  # an eval run's summary.json
        return {"metrics": overall_metrics(data), "floors": {}, "tolerance": DEFAULT_TOLERANCE}
    return data


def _gate(
    result: EvalRun,
    baseline: dict[str, Any] | None,
    floors: dict[str, float],
    tolerance: float | None,
) -> int:
    """Print the gate's verdict; 1 when a metric regressed or missed its floor."""
    from evals.gate import DEFAULT_TOLERANCE, compare

    base = baseline or {}
    failures = compare(
        result.summary,
        base.get("metrics", {}),
        {**base.get("floors", {}), **floors},
        tolerance if tolerance is not None else float(base.get("tolerance", DEFAULT_TOLERANCE)),
        items=result.records,
    )
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    if failures:
        print(f"gate failed: {len(failures)} metric(s)", file=sys.stderr)
        return EXIT_GATE
    print("gate passed")
    return EXIT_OK


MAX_WARNINGS = 10


def _warn_dataset_problems(engine: Any, items: Sequence[Any]) -> None:
    """Warnings for the items with gold docs whose gold is not in the collection or whose key
    facts its text does not state (:func:`evals.dataset.validate_against_corpus`): they will
    fail, and the dataset or the extraction needs a look."""
    from evals.corpus import documents
    from evals.dataset import validate_against_corpus

    with_docs = [item for item in items if item.gold_docs]
    if not with_docs:
        return
    docs = documents(engine.index)
    problems = validate_against_corpus(
        with_docs, {d.title: d.text for d in docs}, {d.source: d.text for d in docs}
    )
    for problem in problems[:MAX_WARNINGS]:
        print(f"warning: {problem} (collection {engine.settings.collection!r})", file=sys.stderr)
    if len(problems) > MAX_WARNINGS:
        print(f"warning: ... and {len(problems) - MAX_WARNINGS} more", file=sys.stderr)


def _judge_verdict(health: dict[str, Any] | None, max_failed_share: float) -> int:
    """1 (with the reason on stderr) when the judge failed on more than ``max_failed_share``
    of the answers it had to judge: its figure would stand for a part of the run only."""
    if health is None or health["failed_share"] <= max_failed_share:
        return EXIT_OK
    print(
        f"error: the LLM judge failed on {health['failed']} of "
        f"{health['failed'] + health['judged']} answers ({health['failed_share']:.0%}, more than "
        f"the {max_failed_share:.0%} allowed by CITEQA_JUDGE_MAX_FAILED_SHARE); faithfulness_llm "
        "covers only the answers it judged",
        file=sys.stderr,
    )
    return EXIT_GATE


# --------------------------------------------------------------------------- compare, draft


def _compare(args: argparse.Namespace) -> int:
    from evals.compare import CompareError, write_compare

    try:
        paths = write_compare(args.run_a, args.run_b, args.out or args.run_b)
    except CompareError as exc:
        raise UsageError(str(exc)) from exc
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as fh:
            fh.write(paths["markdown"].read_text(encoding="utf-8") + "\n")
    print(paths["markdown"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return EXIT_OK


def _draft(args: argparse.Namespace, settings: Settings) -> int:
    from evals.corpus import documents
    from evals.draft import LLMQuestionWriter, draft_items, write_draft

    if args.n < 1:
        raise UsageError("-n must be at least 1")
    engine = open_engine(settings)
    writer = LLMQuestionWriter(settings) if settings.llm_configured and not args.no_llm else None
    drafted = draft_items(documents(engine.index), args.n, seed=args.seed, writer=writer)
    out = args.out or Path("eval-drafts") / f"{settings.collection}.jsonl"
    write_draft(drafted.items, out)
    print(drafted.describe())
    print(f"wrote {out}: review every item before using it as a dataset")
    return EXIT_OK

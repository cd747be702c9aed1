"""``citeqa eval``: run a dataset through the engine, write the results, print the table.

The ``citeqa`` command line wires :func:`eval_command` as::

    citeqa eval --dataset PATH [--out DIR] [--generator extractive|llm] [--judge none|llm]
                [--top-k K]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from citeqa.config import Settings
from citeqa.errors import InputError
from evals.dataset import DatasetError, load_dataset
from evals.judge import DEFAULT_CACHE_DIR, LLMJudge
from evals.runner import describe_judge_health, format_table, run_eval, write_outputs

GENERATORS = ("extractive", "llm")
JUDGES = ("none", "llm")


def default_out_dir(dataset: Path) -> Path:
    """``./eval-out/<dataset stem>``."""
    return Path("eval-out") / Path(dataset).stem


def eval_command(
    dataset: Path,
    out: Path | None,
    generator: str | None,
    judge: str,
    top_k: int | None,
    settings: Settings,
    progress: bool = True,
    judge_cache: Path = DEFAULT_CACHE_DIR,
) -> int:
    """Run the eval; 0 on success, 2 on a usage or dataset error (message on stderr), 1 when
    the LLM judge failed on more than ``settings.judge_max_failed_share`` of the answers.

    Store errors (``StoreNotReadyError`` when nothing was ingested...) and LLM errors propagate
    as :class:`citeqa.errors.CiteqaError` for the ``citeqa`` command line to report.

    ``generator`` ("extractive" or "llm") overrides ``settings.generator``; ``judge="llm"`` adds
    the LLM-judged ``faithfulness_llm`` (responses cached under ``judge_cache``).
    """
    from service.engine import build_engine  # heavy imports only when actually running

    if generator is not None and generator not in GENERATORS:
        print(f"error: --generator must be one of {', '.join(GENERATORS)}", file=sys.stderr)
        return 2
    if judge not in JUDGES:
        print(f"error: --judge must be one of {', '.join(JUDGES)}", file=sys.stderr)
        return 2
    if generator is not None:
        settings = settings.model_copy(update={"generator": generator})
    if judge == "llm" and not settings.llm_configured:
        print(
            "error: --judge llm needs an LLM endpoint: set CITEQA_LLM_BASE_URL and/or "
            "CITEQA_LLM_API_KEY (or OPENAI_API_KEY)",
            file=sys.stderr,
        )
        return 2
    try:
        items = load_dataset(Path(dataset))
    except (OSError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not items:
        print(f"error: {dataset} holds no items", file=sys.stderr)
        return 2

    started = time.perf_counter()
    engine = build_engine(settings)
    try:
        engine.check_top_k(top_k)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    llm_judge = LLMJudge(settings, cache_dir=judge_cache) if judge == "llm" else None
    run = run_eval(
        engine, items, progress=progress, top_k=top_k, judge=llm_judge, dataset_path=Path(dataset)
    )
    out_dir = Path(out) if out is not None else default_out_dir(Path(dataset))
    paths = write_outputs(run, out_dir)
    elapsed = time.perf_counter() - started

    print(format_table(run.summary))
    print()
    print(
        f"{len(items)} items, generator {run.summary['generator']}, judge "
        f"{run.summary['judge']}, {elapsed:.1f} s"
        + (f" ({llm_judge.calls} LLM judge calls)" if llm_judge is not None else "")
    )
    print(f"wrote {paths['items']}, {paths['summary']}, {paths['report']}")
    return _judge_verdict(run.summary.get("judge_health"), settings.judge_max_failed_share)


def _judge_verdict(health: dict[str, Any] | None, max_failed_share: float) -> int:
    """1 (with the reason on stderr) when the judge failed on more than ``max_failed_share``
    of the answers it had to judge: its figure would stand for a part of the run only."""
    if health is None:
        return 0
    print(f"LLM judge: {describe_judge_health(health)}")
    if health["failed_share"] <= max_failed_share:
        return 0
    print(
        f"error: the LLM judge failed on {health['failed']} of "
        f"{health['failed'] + health['judged']} answers ({health['failed_share']:.0%}, more than "
        f"the {max_failed_share:.0%} allowed by CITEQA_JUDGE_MAX_FAILED_SHARE); faithfulness_llm "
        "covers only the answers it judged",
        file=sys.stderr,
    )
    return 1

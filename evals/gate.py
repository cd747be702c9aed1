"""The regression gate: compare an eval summary with the committed baseline.

``evals/baseline.json`` holds, together::

    {"floors": {"hit_at_5": 0.95, ...},       # absolute limits (a ceiling for lower-is-better)
     "tolerance": 0.02,                       # allowed drop below the baseline value
     "metrics": {"hit_at_5": 0.98, ...},      # overall metrics of the baseline run
     "dataset": "evals/datasets/dev.jsonl",
     ...}                                     # informative: generator, corpus fingerprint

A metric fails when it is below its floor, or more than ``tolerance`` below its baseline value.
For lower-is-better metrics (``false_refusal_rate``) both comparisons are mirrored: it fails
above its floor (ceiling) or more than ``tolerance`` above the baseline. A metric that has a
floor or a baseline value but could not be computed fails too. Latency is never compared.

The gate runs as ``citeqa eval --baseline FILE [--fail-under METRIC=VALUE]`` (:mod:`evals.cli`),
the command users run in their CI and this repository's ``make eval-gate``. The baseline is
regenerated from a real run with ``citeqa eval ... --baseline FILE --write-baseline``
(:func:`write_baseline`), which keeps the floors and tolerance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from citeqa.resources import package_path
from evals.metrics import LOWER_IS_BETTER, OPTIONAL_METRICS

BASELINE_PATH = package_path("evals", "baseline.json")
DEFAULT_FLOORS: dict[str, float] = {
    "hit_at_5": 0.95,
    "citation_hit": 0.90,
    "key_fact_accuracy": 0.80,
    "faithfulness": 0.95,
    "citation_precision": 0.95,
    "refusal_recall": 0.70,
    "false_refusal_rate": 0.05,
}
DEFAULT_TOLERANCE = 0.02
DEFAULT_DATASET = "evals/datasets/dev.jsonl"
WORST_PER_METRIC = 5
_EPS = 1e-9


def overall_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The overall quality metrics of a summary written by :mod:`evals.runner` (a flat dict of
    metrics is accepted as is)."""
    metrics = summary.get("metrics")
    if isinstance(metrics, Mapping):
        overall = metrics.get("overall", metrics)
        if isinstance(overall, Mapping):
            return dict(overall)
    return dict(summary)


def _worse(name: str, new: float, reference: float, margin: float = 0.0) -> bool:
    if name in LOWER_IS_BETTER:
        return new > reference + margin + _EPS
    return new < reference - margin - _EPS


def _item_badness(name: str, record: Mapping[str, Any]) -> float | None:
    """How badly one item did on ``name`` (higher is worse); ``None`` if it does not apply."""
    value = record.get("metrics", {}).get(name)
    if value is None:
        return None
    return float(value) if name in LOWER_IS_BETTER else 1.0 - float(value)


def worst_for(
    name: str, items: Sequence[Mapping[str, Any]], n: int = WORST_PER_METRIC
) -> list[Mapping[str, Any]]:
    """The items that did worst on metric ``name`` (only those that lost something on it)."""
    scored = []
    for index, record in enumerate(items):
        badness = _item_badness(name, record)
        if badness is not None and badness > _EPS:
            scored.append((-badness, index, record))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [record for _, _, record in scored[:n]]


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def _describe_worst(name: str, items: Sequence[Mapping[str, Any]] | None) -> str:
    if not items:
        return ""
    worst = worst_for(name, items)
    if not worst:
        return ""
    lines = [f"  worst items on {name}:"]
    for record in worst:
        value = record.get("metrics", {}).get(name)
        tag = " (refused)" if record.get("refused") else ""
        lines.append(f"    - {record.get('id')} [{_fmt(value)}]{tag}: {record.get('question', '')}")
    return "\n" + "\n".join(lines)


def compare(
    summary: Mapping[str, Any],
    baseline: Mapping[str, Any],
    floors: Mapping[str, float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    items: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """Failure messages of ``summary`` against the floors and the baseline; empty when it passes.

    ``summary`` is a runner summary (or a flat dict of overall metrics); ``baseline`` is either
    the baseline file's content or its ``metrics`` dict. Each message names the metric, the
    baseline and new values and the limit broken; with ``items`` (the run's per-item records,
    as in ``items.jsonl``) it also lists the worst items on that metric, ids and questions.
    """
    new_metrics = overall_metrics(summary)
    base_metrics = overall_metrics(baseline)
    floors = dict(DEFAULT_FLOORS if floors is None else floors)
    failures: list[str] = []
    names = list(floors) + [n for n in base_metrics if n not in floors]
    for name in names:
        new = new_metrics.get(name)
        old = base_metrics.get(name)
        if old is not None and not isinstance(old, int | float):
            continue  # not a metric
        if new is None and old is None and name not in floors:
            continue  # applies to nothing, then and now
        problems: list[str] = []
        if new is None:
            problems.append("could not be computed (no applicable items)")
        else:
            if name in floors and _worse(name, float(new), float(floors[name])):
                kind = "above the ceiling" if name in LOWER_IS_BETTER else "below the floor"
                problems.append(f"{kind} {floors[name]:.4f}")
            if old is not None and _worse(name, float(new), float(old), tolerance):
                direction = "above" if name in LOWER_IS_BETTER else "below"
                problems.append(f"more than the tolerance {tolerance:.4f} {direction} the baseline")
        if problems:
            failures.append(
                f"{name}: {_fmt(old)} (baseline) -> {_fmt(new)} (now): "
                + "; ".join(problems)
                + _describe_worst(name, items)
            )
    return failures


def load_baseline(path: Path = BASELINE_PATH) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


def check(
    summary: Mapping[str, Any],
    baseline_path: Path = BASELINE_PATH,
    items: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """:func:`compare` against the floors, tolerance and metrics stored in ``baseline_path``."""
    baseline = load_baseline(baseline_path)
    return compare(
        summary,
        baseline.get("metrics", {}),
        baseline.get("floors", DEFAULT_FLOORS),
        float(baseline.get("tolerance", DEFAULT_TOLERANCE)),
        items=items,
    )


def write_baseline(summary: Mapping[str, Any], path: Path = BASELINE_PATH) -> dict[str, Any]:
    """Replace the baseline metrics with ``summary``'s overall metrics, keeping the floors,
    tolerance, dataset and ``floors_note`` (why the floors are what they are) already in
    ``path`` (defaults when the file does not exist).

    LLM-judged figures (``faithfulness_llm``) are left out: the gate runs offline."""
    path = Path(path)
    existing: dict[str, Any] = load_baseline(path) if path.exists() else {}
    dataset = summary.get("dataset", {})
    baseline = {
        "floors": existing.get("floors", dict(DEFAULT_FLOORS)),
        "tolerance": existing.get("tolerance", DEFAULT_TOLERANCE),
        "metrics": {k: v for k, v in overall_metrics(summary).items() if k not in OPTIONAL_METRICS},
        "dataset": existing.get("dataset")
        or (dataset.get("path") if isinstance(dataset, Mapping) else None)
        or DEFAULT_DATASET,
    }
    if isinstance(dataset, Mapping) and dataset.get("sha256"):
        baseline["dataset_sha256"] = dataset["sha256"]
    for key in ("generator", "top_k"):
        if key in summary:
            baseline[key] = summary[key]
    corpus = summary.get("corpus")
    if isinstance(corpus, Mapping) and "fingerprint" in corpus:
        baseline["corpus_fingerprint"] = corpus["fingerprint"]
    if "floors_note" in existing:
        baseline["floors_note"] = existing["floors_note"]
    path.write_text(json.dumps(baseline, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return baseline

"""Fit the answerability model (service/evidence.py) on a development set.

    python -m evals.calibrate --dataset evals/datasets/dev.jsonl

Runs retrieval and evidence scoring (no generation) for every item, fits an L2-regularised
logistic regression of "answerable" on the features, and picks the threshold as the largest
value at which at most ``--max-false-refusal`` of the answerable items would be refused.

A development set holds few unanswerable questions, so the fit also sees near-miss questions
generated from the ingested corpus (:mod:`evals.nearmiss`): they carry ``--near-miss-share`` of
the weight of the unanswerable class. The threshold is set on the development set alone, and
the figures to trust are the cross-validated ones: refit on four fifths of the development set
(plus the generated questions), measured on the fifth it never saw.

It prints the weights to paste into ``ANSWERABILITY_WEIGHTS``; it never edits code by itself,
so a calibration is a reviewed commit. Calibrate on a whole development set, never on one
question, and never on the holdout.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citeqa.config import Settings
from evals.dataset import EvalItem, load_dataset
from evals.nearmiss import near_miss_questions, papers
from service.engine import Engine, build_engine
from service.evidence import answerability_features


@dataclass
class Features:
    names: list[str]
    x: np.ndarray  # one row of features per item
    y: np.ndarray  # 1 = answerable
    ruled: np.ndarray  # refused by a rule (Evidence.ruled_out), whatever the model says


def collect(engine: Engine, items: Sequence[EvalItem], top_k: int) -> Features:
    """The answerability features of ``items``, their labels, and which a rule refuses."""
    names: list[str] = []
    rows, labels, ruled = [], [], []
    for item in items:
        evidence = engine.evidence.build(engine.retriever.retrieve_hits(item.question, top_k))
        features = answerability_features(evidence)
        names = list(features)
        rows.append([features[n] for n in names])
        labels.append(0.0 if item.type == "unanswerable" else 1.0)
        ruled.append(evidence.ruled_out)
    return Features(names, np.array(rows), np.array(labels), np.array(ruled, dtype=bool))


def class_weights(y: np.ndarray, generated: np.ndarray, share: float) -> np.ndarray:
    """Per-item weights: the two classes weigh the same; inside the unanswerable class the
    generated items weigh ``share`` in all and the written ones the rest."""
    weight = np.zeros(len(y))
    answerable, written = y == 1, (y == 0) & ~generated
    weight[answerable] = 0.5 / max(1, answerable.sum())
    if generated.any():
        weight[written] = 0.5 * (1 - share) / max(1, written.sum())
        weight[generated] = 0.5 * share / generated.sum()
    else:
        weight[written] = 0.5 / max(1, written.sum())
    return weight


def fit(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = 0.01, steps: int = 20000
) -> np.ndarray:
    """Weighted logistic regression by gradient descent; returns [bias, *weights]."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ ((p - y) * weight) / weight.sum() + l2 * np.r_[0, w[1:]]
        w -= 0.5 * grad
    return w


def predict(w: np.ndarray, x: np.ndarray, ruled: np.ndarray | None = None) -> np.ndarray:
    """The model's answerability; 0 for items a rule refuses, so thresholds account for them."""
    p = np.asarray(1 / (1 + np.exp(-(np.hstack([np.ones((len(x), 1)), x]) @ w))))
    return np.where(ruled, 0.0, p) if ruled is not None else p


def threshold_for(p: np.ndarray, y: np.ndarray, max_false_refusal: float) -> float:
    """A threshold that refuses as many unanswerable items as possible while refusing at most
    ``max_false_refusal`` of the answerable ones, and no more answerable ones than that takes:
    halfway between the highest refused unanswerable item and the next answerable one."""
    answerable = np.sort(p[y == 1])
    if not len(answerable):
        return 0.5
    limit = float(answerable[int(np.floor(max_false_refusal * len(answerable)))] - 1e-6)
    refused = p[(y == 0) & (p < limit)]
    if not len(refused):
        return float(answerable[0] - 1e-6)
    highest = float(refused.max())
    above = answerable[answerable > highest]
    return min(limit, (highest + float(above[0])) / 2) if len(above) else limit


def fit_with(
    x: np.ndarray, y: np.ndarray, gx: np.ndarray, share: float, steps: int = 20000
) -> np.ndarray:
    """Fit on development items ``x``/``y`` plus generated unanswerable items ``gx``."""
    xs, ys = np.vstack([x, gx]), np.r_[y, np.zeros(len(gx))]
    generated = np.r_[np.zeros(len(y), dtype=bool), np.ones(len(gx), dtype=bool)]
    return fit(xs, ys, class_weights(ys, generated, share), steps=steps)


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    gx: np.ndarray,
    share: float,
    max_false_refusal: float,
    folds: int = 5,
    repeats: int = 10,
    ruled: np.ndarray | None = None,
) -> tuple[float, float]:
    """Refusal recall and false-refusal rate on held-out folds of the development set
    (stratified, repeated): what to expect on questions the fit never saw."""
    rng = np.random.default_rng(0)
    ruled = np.zeros(len(y), dtype=bool) if ruled is None else ruled
    recall, false_refusal = [], []
    for _ in range(repeats):
        pos, neg = rng.permutation(np.flatnonzero(y == 1)), rng.permutation(np.flatnonzero(y == 0))
        answered = np.zeros(len(y), dtype=bool)
        for k in range(folds):
            test = np.r_[pos[k::folds], neg[k::folds]]
            train = np.setdiff1d(np.arange(len(y)), test)
            w = fit_with(x[train], y[train], gx, share, steps=5000)
            p_train = predict(w, x[train], ruled[train])
            threshold = threshold_for(p_train, y[train], max_false_refusal)
            answered[test] = predict(w, x[test], ruled[test]) >= threshold
        recall.append(float(np.mean(~answered[y == 0])))
        false_refusal.append(float(np.mean(~answered[y == 1])))
    return float(np.mean(recall)), float(np.mean(false_refusal))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("evals/datasets/dev.jsonl"))
    parser.add_argument("--max-false-refusal", type=float, default=0.04)
    parser.add_argument("--near-miss-share", type=float, default=0.2)
    parser.add_argument("--near-miss-per-paper", type=int, default=2)
    parser.add_argument(
        "--drop", action="append", default=[], help="leave this feature out (weight 0); repeatable"
    )
    args = parser.parse_args()
    settings = Settings()
    engine = build_engine(settings)
    dev = collect(engine, load_dataset(args.dataset), settings.top_k)
    generated = near_miss_questions(papers(engine.index), per_paper=args.near_miss_per_paper)
    gen = collect(engine, generated, settings.top_k)
    keep = [i for i, n in enumerate(dev.names) if n not in args.drop]
    x, y, gx, names = dev.x[:, keep], dev.y, gen.x[:, keep], [dev.names[i] for i in keep]

    w = fit_with(x, y, gx, args.near_miss_share)
    p = predict(w, x, dev.ruled)
    threshold = threshold_for(p, y, args.max_false_refusal)
    share, budget = args.near_miss_share, args.max_false_refusal
    cv = cross_validate(x, y, gx, share, budget, ruled=dev.ruled)
    cv_written_only = cross_validate(x, y, gx[:0], 0.0, budget, ruled=dev.ruled)
    weights = {"bias": round(float(w[0]), 3)} | {
        n: round(float(v), 3) for n, v in zip(names, w[1:], strict=True)
    }
    report = {
        "weights": weights,
        "threshold": round(threshold, 4),
        "in_sample": {
            "refusal_recall": round(float(np.mean(p[y == 0] < threshold)), 3),
            "false_refusal_rate": round(float(np.mean(p[y == 1] < threshold)), 3),
            "generated_near_miss_refused": round(
                float(np.mean(predict(w, gx, gen.ruled) < threshold)), 3
            ),
            "refused_by_rules": {
                "unanswerable": int(dev.ruled[y == 0].sum()),
                "answerable": int(dev.ruled[y == 1].sum()),
            },
        },
        "cross_validated": {
            "refusal_recall": round(cv[0], 3),
            "false_refusal_rate": round(cv[1], 3),
        },
        "cross_validated_without_generated": {
            "refusal_recall": round(cv_written_only[0], 3),
            "false_refusal_rate": round(cv_written_only[1], 3),
        },
        "generated_near_miss_questions": len(generated),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

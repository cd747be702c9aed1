"""Fit the answerability model (service/evidence.py) on a development set.

    python -m evals.calibrate --dataset evals/datasets/dev.jsonl

Runs retrieval and evidence scoring (no generation) for every item, fits an L2-regularised
logistic regression of "answerable" on the features, and picks the threshold as the largest
value at which at most ``--max-false-refusal`` of answerable items would be refused. It prints
the weights to paste into ``ANSWERABILITY_WEIGHTS``; it never edits code by itself, so a
calibration is a reviewed commit. Calibrate on a whole development set, never on one question.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from citeqa.config import Settings
from evals.dataset import load_dataset
from service.engine import build_engine
from service.evidence import answerability_features


def collect(dataset: Path, settings: Settings) -> tuple[list[str], np.ndarray, np.ndarray]:
    engine = build_engine(settings)
    names: list[str] = []
    rows, labels = [], []
    for item in load_dataset(dataset):
        evidence = engine.evidence.build(
            engine.retriever.retrieve_hits(item.question, settings.top_k)
        )
        features = answerability_features(evidence)
        names = list(features)
        rows.append([features[n] for n in names])
        labels.append(0.0 if item.type == "unanswerable" else 1.0)
    return names, np.array(rows), np.array(labels)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 0.003, steps: int = 20000) -> np.ndarray:
    """Logistic regression by gradient descent; returns [bias, *weights]."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    pos = y.mean()
    sample_weight = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))  # balance the classes
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ ((p - y) * sample_weight) / len(y) + l2 * np.r_[0, w[1:]]
        w -= 0.5 * grad
    return w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("evals/datasets/dev.jsonl"))
    parser.add_argument("--max-false-refusal", type=float, default=0.04)
    args = parser.parse_args()
    names, x, y = collect(args.dataset, Settings())
    w = fit(x, y)
    p = 1 / (1 + np.exp(-(np.hstack([np.ones((len(x), 1)), x]) @ w)))
    answerable = np.sort(p[y == 1])
    allowed = int(np.floor(args.max_false_refusal * len(answerable)))
    threshold = float(answerable[allowed] - 1e-6) if len(answerable) else 0.5
    recall = float(np.mean(p[y == 0] < threshold))
    weights = {"bias": round(float(w[0]), 3)} | {
        n: round(float(v), 3) for n, v in zip(names, w[1:], strict=True)
    }
    print(
        json.dumps(
            {"weights": weights, "threshold": round(threshold, 4), "refusal_recall": recall},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

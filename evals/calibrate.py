"""Fit a collection's answerability model (service/answering/answerability.py) on its own documents.

    citeqa calibrate [--dataset LABELLED.jsonl] [--collection NAME]

Generates answerable and near-miss questions from the collection's documents
(:mod:`evals.nearmiss`), adds labelled questions (the prior: the features of the bundled
development set's 441 written questions, computed in their own collection and shipped in the
package, :data:`PRIOR`; and the user's labelled set when one is given), runs retrieval and
evidence scoring (no generation) for each, fits an L2-regularised logistic regression of
"answerable" on the features and picks the threshold as the largest value at which at most
``max_false_refusal`` of the labelled answerable questions no rule refuses would be refused.
(The rules' refusals are not the threshold's to budget: a few questions a rule refuses would
otherwise drive it to zero.) The features are relative to the collection they are computed
in (shares of IDF weight, cosines), so written questions of one collection teach what real
questions look like in another, and the generated ones where this collection's scores lie.
Without the prior, the generated questions alone (easier than users' own: stretches of the
documents' sentences) set the threshold, and it refused almost four times as many
answerable questions (bundled dev 0.137 against 0.036; docs/answerability.md has the
measurements). The figures to trust are the cross-validated ones: refit without a fifth of
the labelled questions, measured on that fifth.

The model is stored with the collection (:func:`service.answering.answerability.store`), so every
replica reads it; ``citeqa ingest`` refits it after an ingest that changed the collection
materially. ``python -m evals.calibrate --write-prior`` (on a store of the bundled corpus)
computes the prior again: after a change to the features, or to the engine under them.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.resources import ANSWERABILITY_PRIOR
from citeqa.store import Index
from evals.dataset import EvalItem, load_dataset
from evals.nearmiss import (
    Paper,
    answerable_questions,
    near_miss_questions,
    papers,
    reworded_questions,
)
from evals.paraphrase import Thesaurus
from evals.runner import corpus_fingerprint
from service.answering.answerability import FALLBACK, AnswerabilityModel
from service.answering.engine import Engine
from service.answering.features import answerability_features
from service.answering.question import Question

log = logging.getLogger(__name__)

MIN_DOCUMENTS = 5  # fewer documents give too few questions for a fit: the fallback stays
MAX_DOCUMENTS = 80  # documents asked about (a sample of a larger collection): bounds the cost
PER_DOCUMENT = 3  # detail questions per document and kind
MAX_FALSE_REFUSAL = 0.04  # of the labelled answerable questions, as the fallback model's
GENERATED_SHARE = 0.3  # weight of the generated questions inside each class, beside a labelled set
PRIOR = ANSWERABILITY_PRIOR  # shipped in the package: see write_prior
PRIOR_DATASET = Path(__file__).parent / "datasets" / "dev.jsonl"


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
        retrieval = engine.retrieve(Question.parse(item.question), top_k)
        evidence = engine.evidence.build(retrieval, model=FALLBACK)
        if evidence.best() is None:
            continue
        features = answerability_features(evidence)
        names = list(features)
        rows.append([features[n] for n in names])
        labels.append(0.0 if item.type == "unanswerable" else 1.0)
        ruled.append(evidence.ruled_out)
    return Features(names, np.array(rows), np.array(labels), np.array(ruled, dtype=bool))


def write_prior(engine: Engine, path: Path = PRIOR, dataset: Path = PRIOR_DATASET) -> Features:
    """Compute the features of ``dataset``'s questions in ``engine``'s collection (the bundled
    corpus, whose labelled set it is) and keep them in ``path``: the prior every fit adds."""
    data = collect(engine, load_dataset(dataset), engine.settings.top_k)
    record = {
        "dataset": dataset.name,
        "collection": corpus_fingerprint(engine),
        "names": data.names,
        "rows": [[round(float(v), 6) for v in row] for row in data.x],
        "answerable": [int(v) for v in data.y],
        "ruled": [bool(v) for v in data.ruled],
    }
    path.write_text(json.dumps(record, separators=(",", ":")) + "\n")
    return data


def load_prior(names: Sequence[str], path: Path = PRIOR) -> Features | None:
    """The shipped prior, None when it is missing or was computed for other features than
    ``names`` (then the fit goes on without it, and says so in the log)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("no answerability prior at %s: fitting without it", path)
        return None
    if sorted(record["names"]) != sorted(names):
        log.warning("the answerability prior in %s has other features: fitting without it", path)
        return None
    columns = [record["names"].index(name) for name in names]
    return Features(
        list(names),
        np.array(record["rows"], dtype=float)[:, columns],
        np.array(record["answerable"], dtype=float),
        np.array(record["ruled"], dtype=bool),
    )


def prior_collection(engine: Engine, path: Path = PRIOR) -> bool:
    """``engine``'s collection is the one the prior was computed in (the same chunks): its
    labelled questions are the prior, and the default model is already its fit on them."""
    try:
        recorded = json.loads(path.read_text()).get("collection") or {}
    except (OSError, ValueError):
        return False
    if engine.index.chunks.count() != recorded.get("chunks"):
        return False
    return bool(corpus_fingerprint(engine) == recorded)


def class_weights(y: np.ndarray, generated: np.ndarray, share: float) -> np.ndarray:
    """Per-item weights: the two classes weigh the same; inside each class the generated
    items weigh ``share`` in all and the written ones the rest (all of it when a class has
    only one kind)."""
    weight = np.zeros(len(y))
    for label in (0, 1):
        cls = y == label
        gen, written = cls & generated, cls & ~generated
        if gen.any() and written.any():
            weight[gen] = 0.5 * share / gen.sum()
            weight[written] = 0.5 * (1 - share) / written.sum()
        elif cls.any():
            weight[cls] = 0.5 / cls.sum()
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
    """Fit on written items ``x``/``y`` plus generated unanswerable items ``gx``."""
    xs, ys = np.vstack([x, gx]), np.r_[y, np.zeros(len(gx))]
    generated = np.r_[np.zeros(len(y), dtype=bool), np.ones(len(gx), dtype=bool)]
    return fit(xs, ys, class_weights(ys, generated, share), steps=steps)


def threshold_pool(y: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """The items the threshold is set on (and cross-validated on): the written ones when
    they hold answerable questions, else all."""
    written = ~generated
    return written if (written & (y == 1)).any() else np.ones(len(y), dtype=bool)


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    generated: np.ndarray,
    share: float,
    max_false_refusal: float,
    folds: int = 5,
    repeats: int = 3,
    ruled: np.ndarray | None = None,
) -> tuple[float, float]:
    """Refusal recall and false-refusal rate on held-out folds of the threshold pool
    (stratified, repeated; the other items always train): what to expect on questions the fit
    never saw."""
    rng = np.random.default_rng(0)
    ruled = np.zeros(len(y), dtype=bool) if ruled is None else ruled
    pool = threshold_pool(y, generated)
    recall, false_refusal = [], []
    for _ in range(repeats):
        pos = rng.permutation(np.flatnonzero(pool & (y == 1)))
        neg = rng.permutation(np.flatnonzero(pool & (y == 0)))
        answered = np.zeros(len(y), dtype=bool)
        for k in range(folds):
            test = np.r_[pos[k::folds], neg[k::folds]]
            train = np.setdiff1d(np.arange(len(y)), test)
            weight = class_weights(y[train], generated[train], share)
            w = fit(x[train], y[train], weight, steps=5000)
            in_pool = train[pool[train] & ~ruled[train]]
            threshold = threshold_for(predict(w, x[in_pool]), y[in_pool], max_false_refusal)
            answered[test] = predict(w, x[test], ruled[test]) >= threshold
        recall.append(float(np.mean(~answered[pool & (y == 0)])))
        false_refusal.append(float(np.mean(~answered[pool & (y == 1)])))
    return float(np.mean(recall)), float(np.mean(false_refusal))


def generated_questions(
    corpus: Sequence[Paper], thesaurus: Thesaurus | None = None, seed: int = 0
) -> list[EvalItem]:
    """Answerable and near-miss questions about a sample of at most :data:`MAX_DOCUMENTS`
    of the documents; with a ``thesaurus``, reworded ones in the forms users write too."""
    sample = list(corpus)
    if len(sample) > MAX_DOCUMENTS:
        sample = [
            sample[i]
            for i in np.random.default_rng(seed).choice(len(sample), MAX_DOCUMENTS, replace=False)
        ]
    items = answerable_questions(sample, PER_DOCUMENT, seed) + near_miss_questions(
        sample, PER_DOCUMENT, seed
    )
    if thesaurus is not None:
        items += reworded_questions(sample, thesaurus, PER_DOCUMENT, seed)
    return items


def fit_model(
    data: Features,
    generated: np.ndarray,
    max_false_refusal: float = MAX_FALSE_REFUSAL,
    share: float = GENERATED_SHARE,
) -> AnswerabilityModel:
    """The model fit on ``data`` (``generated`` marks the generated items), its threshold,
    and its cross-validated figures."""
    x, y = data.x, data.y
    w = fit(x, y, class_weights(y, generated, share))
    pool = threshold_pool(y, generated)
    p = predict(w, x, data.ruled)
    free = pool & ~data.ruled  # the model's own refusals are what the threshold sets
    threshold = threshold_for(p[free], y[free], max_false_refusal)
    recall, false_refusal = cross_validate(
        x, y, generated, share, max_false_refusal, ruled=data.ruled
    )
    figures: dict[str, Any] = {
        "cross_validated_refusal_recall": round(recall, 3),
        "cross_validated_false_refusal": round(false_refusal, 3),
        "in_sample_refusal_recall": round(float(np.mean(p[pool & (y == 0)] < threshold)), 3),
        "in_sample_false_refusal": round(float(np.mean(p[pool & (y == 1)] < threshold)), 3),
        "generated_answerable": int((generated & (y == 1)).sum()),
        "generated_near_miss": int((generated & (y == 0)).sum()),
        "labelled": int((~generated).sum()),
    }
    weights = {"bias": round(float(w[0]), 4)} | {
        n: round(float(v), 4) for n, v in zip(data.names, w[1:], strict=True)
    }
    return AnswerabilityModel(weights, round(threshold, 4), True, figures)


def calibrate(
    engine: Engine, labelled: Sequence[EvalItem] = (), seed: int = 0
) -> AnswerabilityModel | None:
    """The collection's model, fit on questions generated from its documents plus the prior
    and ``labelled``; None when the collection has fewer than :data:`MIN_DOCUMENTS`
    documents, or is the prior's own collection and nothing else is labelled (the default
    model is its fit: on the bundled corpus a refit trades near misses refused for nothing,
    docs/answerability.md)."""
    if not labelled and prior_collection(engine):
        return None
    corpus = papers(engine.index)
    if len(corpus) < MIN_DOCUMENTS:
        return None
    top_k = engine.settings.top_k
    thesaurus = Thesaurus.build([f"{p.title} {p.text}" for p in corpus], engine.retriever.embedder)
    gen = collect(engine, generated_questions(corpus, thesaurus, seed), top_k)
    prior = load_prior(gen.names)
    own = collect(engine, labelled, top_k) if labelled else None
    written = [f for f in (prior, own) if f is not None and len(f.y)]
    if not written:
        model = fit_model(gen, np.ones(len(gen.y), dtype=bool))
    else:
        data = Features(
            gen.names,
            np.vstack([gen.x, *(f.x for f in written)]),
            np.r_[gen.y, *(f.y for f in written)],
            np.r_[gen.ruled, *(f.ruled for f in written)],
        )
        generated = np.zeros(len(data.y), dtype=bool)
        generated[: len(gen.y)] = True
        model = fit_model(data, generated)
    figures = model.figures | {"documents": len(corpus)}
    return AnswerabilityModel(model.weights, model.threshold, True, figures)


def describe(model: AnswerabilityModel | None) -> str:
    """One line for the ingest summary and ``citeqa calibrate``."""
    if model is None:
        return (
            f"answerability: fewer than {MIN_DOCUMENTS} documents, or the collection the prior "
            "was computed in (the default model is its fit): the default model stays"
        )
    f = model.figures
    return (
        f"answerability fit on {f.get('documents', '?')} documents "
        f"({f.get('generated_answerable', 0)} + {f.get('generated_near_miss', 0)} generated "
        f"questions, {f.get('labelled', 0)} labelled): cross-validated near misses refused "
        f"{f.get('cross_validated_refusal_recall', 0):.2f} at "
        f"{f.get('cross_validated_false_refusal', 0):.2f} false refusals; threshold "
        f"{model.threshold:.3f}"
    )


MATERIAL_SHARE = 0.1  # an ingest that adds, changes or deletes this share of documents refits


def material(model: AnswerabilityModel, documents: int, changed: int) -> bool:
    """Whether a collection of ``documents``, ``changed`` of which by the last ingest, needs a
    new fit: it has none, or the change is at least :data:`MATERIAL_SHARE` of it or of the
    documents the model was fit on."""
    if not model.fitted:
        return True
    fitted_on = int(model.figures.get("documents", 0))
    moved = max(changed, abs(documents - fitted_on))
    return moved >= MATERIAL_SHARE * max(1, min(documents, fitted_on))


def after_ingest(
    settings: Settings, index: Index, embedder: Embedder, changed: int
) -> AnswerabilityModel | None:
    """Refit and store the collection's model when an ingest or a delete that added, changed
    or deleted ``changed`` documents changed it materially; logs the figures (the ingest
    summary's calibration line). None when nothing was fit."""
    from service.answering import answerability
    from service.answering.engine import build_engine
    from service.answering.extractive import ExtractiveGenerator

    current = answerability.load(index.chunks)
    documents = len(papers(index)) if changed or not current.fitted else 0
    if documents < MIN_DOCUMENTS or not material(current, documents, changed):
        return None
    engine = build_engine(settings, embedder, ExtractiveGenerator(), index)
    model = calibrate(engine)
    if model is not None:
        answerability.store(index.chunks, model)
        log.info("%s", describe(model))
    return model


def run(settings: Settings, dataset: Path | None = None) -> AnswerabilityModel | None:
    """Fit the configured collection's model (on ``dataset`` too, when given) and store it."""
    from service.answering import answerability
    from service.answering.engine import build_engine
    from service.answering.extractive import ExtractiveGenerator

    engine = build_engine(settings, generator=ExtractiveGenerator())
    model = calibrate(engine, load_dataset(dataset) if dataset else [])
    if model is not None:
        answerability.store(engine.index.chunks, model)
    return model


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=None, help="a labelled set (JSONL)")
    parser.add_argument(
        "--write-prior",
        action="store_true",
        help=f"compute {PRIOR.name} again from {PRIOR_DATASET.name} (on the bundled corpus' store)",
    )
    args = parser.parse_args(argv)
    if args.write_prior:
        from service.answering.engine import build_engine
        from service.answering.extractive import ExtractiveGenerator

        data = write_prior(build_engine(Settings(), generator=ExtractiveGenerator()))
        print(f"{PRIOR}: {len(data.y)} questions, {int(data.y.sum())} answerable")
        return
    model = run(Settings(), args.dataset)
    print(describe(model))
    if model is not None:
        print(json.dumps({"weights": model.weights, "threshold": model.threshold}, indent=2))


if __name__ == "__main__":
    main()

"""Which candidate sentence states the asked fact: the diagnosis of the extractive answer's
sentence choice, and the fit of its sentence ranker (``service.answering.evidence.RANKER``).

    python -m evals.selection diagnose --set NAME=STORE:DATASET [--set ...]
    python -m evals.selection fit --set NAME=STORE:DATASET [--set ...] [--check NAME=STORE:DATASET]

``STORE`` is a data dir holding the collection (a copy: the engine opens it), ``STORE@NAME`` its
collection NAME (``corpus-r-vignettes`` for ``citeqa eval --corpus .../r-vignettes``), ``DATASET`` a
JSONL dev set (evals/dataset.py). Retrieval and the candidate sentences are computed once per
item; every ranker is then judged by answering each item again from those candidates through
the engine's own evidence, generator and citation validator, and scored with
:mod:`evals.metrics` (key fact, cited, page, false refusals).

``diagnose`` labels each candidate of an answerable item "holds all key facts" (in its text or
its document's title, as the answer shows both) and sorts the items the answer misses into
classes: refused; no candidate holds them all (one in several sentences, or none); one holds
them but is not chosen (with its rank and the features that separate it from the chosen one).

``fit`` learns the ranker's weights: a pairwise logistic regression over the candidates'
:func:`~service.answering.evidence.sentence_features`, one pair per (better, worse) candidate of
an item, graded by the share of key facts each holds; items weigh equally. It reports key fact
before -> after cross-validated by document folds (each fold answered by the ranker fit without
it) on every ``--set``, then the ranker fit on all of them on the ``--check`` sets, and prints
the weights to paste into ``RANKER``.
"""

from __future__ import annotations

import argparse
import copy
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from citeqa.config import Settings
from evals.dataset import EvalItem, load_dataset
from evals.metrics import answer_sentences, fact_in_text
from evals.runner import record, stored_chunks, summarise
from service.answering import evidence as evidence_module
from service.answering.engine import Engine
from service.answering.evidence import HAND_SET, Candidate, SentenceRanker
from service.answering.extractive import select_sentences
from service.answering.question import Question
from service.answering.retrieval import Retrieval

FOLDS = 5
MAX_PAIRS = 300  # per item; items weigh equally whatever their number of pairs
L2 = 0.01
REPORTED = (
    "key_fact_accuracy",
    "gold_doc_cited",
    "citation_hit",
    "page_accuracy",
    "false_refusal_rate",
    "refusal_recall",
    "faithfulness",
    "sentences",  # per answered item: a longer answer states more facts, so watch it
)


@dataclass
class Case:
    """One dataset item with its retrieval and candidate sentences, computed once."""

    set_name: str
    item: EvalItem
    retrieval: Retrieval
    candidates: list[Candidate]
    features: list[dict[str, float]] | None = field(default=None, repr=False)  # once built

    def held(self, cand: Candidate) -> float:
        """The share of the item's key facts the candidate's text or title states."""
        facts = self.item.key_facts
        if not facts:
            return 0.0
        text = self.retrieval.hits[cand.hit_index].title + "\n" + cand.text
        return sum(fact_in_text(f, text) for f in facts) / len(facts)

    @property
    def group(self) -> str:
        """The fold group: the item's (first) gold document, else its id."""
        docs = self.item.gold_docs or self.item.gold_titles
        return str(docs[0]) if docs else self.item.id


@dataclass
class Corpus:
    name: str
    engine: Engine
    cases: list[Case]


def open_engine(store: str) -> Engine:
    """The engine over ``DIR`` (its configured collection) or ``DIR@COLLECTION``."""
    from evals.cli import open_engine

    folder, _, collection = store.partition("@")
    settings = Settings(data_dir=Path(folder))
    if collection:
        settings = settings.model_copy(update={"collection": collection})
    return open_engine(settings)


def collect(name: str, engine: Engine, items: Sequence[EvalItem]) -> list[Case]:
    cases = []
    for item in items:
        asked = Question.parse(engine.check_question(item.question))
        retrieval = engine.retrieve(asked)
        cases.append(Case(name, item, retrieval, engine.evidence.candidates(retrieval)))
    return cases


@contextmanager
def ranked_by(ranker: SentenceRanker) -> Iterator[None]:
    saved = evidence_module.RANKER
    evidence_module.RANKER = ranker
    try:
        yield
    finally:
        evidence_module.RANKER = saved


def evidence_of(engine: Engine, case: Case) -> Any:
    """The engine's evidence for the case from its cached candidates."""
    return engine.evidence.build(case.retrieval, candidates=copy.deepcopy(case.candidates))


def answer(engine: Engine, case: Case) -> dict[str, Any]:
    """The case's record (evals.runner) answered through the engine's path from evidence on."""
    evidence = evidence_of(engine, case)
    asked = case.retrieval.question.text
    if not evidence.answerable:
        result = engine.refusal(asked, evidence)
    else:
        result = engine.finish(asked, evidence, engine.generator.generate(evidence))
    public = result.public()
    return record(case.item, public, stored_chunks(engine, public))


def measure(corpus: Corpus, cases: Sequence[Case], ranker: SentenceRanker) -> list[dict[str, Any]]:
    with ranked_by(ranker):
        return [answer(corpus.engine, case) for case in cases]


def figures(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    overall = summarise(records)["metrics"]["overall"]
    answered = [len(answer_sentences(r["answer"])) for r in records if not r["refused"]]
    return {**{name: overall.get(name) for name in REPORTED}, "sentences": _mean(answered)}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def line(label: str, before: dict[str, Any], after: dict[str, Any] | None = None) -> str:
    def cell(name: str) -> str:
        b = before.get(name)
        text = "  -  " if b is None else f"{b:.3f}"
        if after is not None:
            a = after.get(name)
            text += " -> " + ("  -  " if a is None else f"{a:.3f}")
        return f"{name.replace('_accuracy', '').replace('_rate', '')} {text}"

    return f"{label:<22} " + " | ".join(cell(n) for n in REPORTED)


# --------------------------------------------------------------------------- diagnosis


def diagnose(corpus: Corpus) -> Counter[str]:
    """The classes of key-fact misses of the current ranker, printed item by item."""
    classes: Counter[str] = Counter()
    separating: dict[str, list[float]] = {}
    for case in corpus.cases:
        if case.item.type == "unanswerable" or not case.item.key_facts:
            continue
        record = answer(corpus.engine, case)
        if record["metrics"]["key_fact_accuracy"]:
            classes["hit"] += 1
            continue
        evidence = evidence_of(corpus.engine, case)
        ranked = sorted(evidence.candidates, key=lambda c: -c.score)
        held = [case.held(c) for c in ranked]
        chosen = select_sentences(evidence) if ranked else []
        kind = _miss_class(record, ranked, held, chosen)
        classes[kind] += 1
        detail = ""
        if kind.startswith("holds, not chosen"):
            rank = held.index(1.0)
            good, best = ranked[rank], ranked[0]
            diff = {k: good.features[k] - best.features[k] for k in good.features}
            for k, v in diff.items():
                separating.setdefault(k, []).append(v)
            shown = ", ".join(f"{k} {v:+.2f}" for k, v in diff.items() if abs(v) > 1e-9)
            detail = f" rank {rank + 1}/{len(ranked)}: {shown}"
        print(f"  {case.item.id} [{kind}]{detail}")
    if separating:
        print("  mean feature difference, all-facts candidate minus chosen best:")
        for k, vs in separating.items():
            print(f"    {k:<16} {np.mean(vs):+.3f}  (higher in {np.mean(np.array(vs) > 0):.0%})")
    return classes


def _miss_class(
    record: dict[str, Any], ranked: list[Candidate], held: list[float], chosen: list[Candidate]
) -> str:
    if record["refused"]:
        return "refused" if 1.0 in held else "refused, no candidate holds all"
    if 1.0 in held:
        if any(held[ranked.index(c)] == 1.0 for c in chosen):
            return "holds, chosen, lost later"  # dropped by the validator or rendering
        return "holds, not chosen"
    if held and max(held) > 0:
        return "no candidate holds all, some hold part"
    return "no candidate holds any"


# --------------------------------------------------------------------------- fit


def item_pairs(case: Case, names: list[str]) -> np.ndarray:
    """Feature differences (better minus worse) of the item's candidate pairs, graded by
    the share of key facts held; at most :data:`MAX_PAIRS`, chosen deterministically."""
    if not case.item.key_facts or case.item.type == "unanswerable":
        return np.zeros((0, len(names)))
    scored = evidence_of_features(case)
    held = np.array([case.held(c) for c in case.candidates])
    rows = [{**f, "hand": HAND_SET.score(f)} for f in scored]
    x = np.array([[f[n] for n in names] for f in rows]) if rows else np.zeros((0, len(names)))
    better, worse = np.nonzero(held[:, None] > held[None, :])
    if len(better) > MAX_PAIRS:
        keep = np.random.default_rng(zlib.crc32(case.item.id.encode())).choice(
            len(better), MAX_PAIRS, replace=False
        )
        better, worse = better[keep], worse[keep]
    return np.asarray(x[better] - x[worse])


def evidence_of_features(case: Case) -> list[dict[str, float]]:
    """The candidates' features (in the case's candidate order), computed once per case."""
    if case.features is None:
        built = evidence_of(_ENGINES[case.set_name], case)
        case.features = [c.features for c in built.candidates]
    return case.features


_ENGINES: dict[str, Engine] = {}


def fit_ranker(cases: Sequence[Case], names: list[str], l2: float = L2) -> SentenceRanker:
    """A learned correction of the hand-set score: a pairwise logistic regression over the
    hand-set score (unpenalised: its scale) and every feature (penalised towards 0 by ``l2``),
    so that a feature moves the ranking only as far as the labelled items show it should.
    The result is the hand-set score plus the corrections, on the hand-set score's scale, so
    the selection's ratios to the best score (extractive.MIN_RATIO, RUNNER_UP_RATIO) keep
    their meaning."""
    columns = ["hand", *names]
    blocks = [item_pairs(c, columns) for c in cases]
    blocks = [b for b in blocks if len(b)]
    x = np.vstack(blocks)
    weight = np.concatenate([np.full(len(b), 1.0 / len(b)) for b in blocks])
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    penalty = np.r_[0.0, np.full(len(names), l2)]
    w = _logistic(x / scale, weight, penalty) / scale
    hand, corrections = w[0], w[1:] / w[0]
    assert hand > 0, "the hand-set score should rank the labelled items better than chance"
    weights = {
        n: HAND_SET.weights.get(n, 0.0) + float(d) for n, d in zip(names, corrections, strict=True)
    }
    return SentenceRanker({n: round(v, 4) for n, v in weights.items() if round(v, 4)})


def _logistic(x: np.ndarray, weight: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Weighted logistic regression without bias of rows that are all positive examples
    (pairs: better minus worse), by gradient descent, with an L2 ``penalty`` per column."""
    w = np.zeros(x.shape[1])
    for _ in range(3000):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = -x.T @ ((1 - p) * weight) / weight.sum() + penalty * w
        w -= 2.0 * grad
    return w


def top_share(cases: Sequence[Case], ranker: SentenceRanker, names: list[str]) -> float:
    """The share of the labelled items (one candidate holds all key facts) whose best
    candidate under ``ranker`` holds them all."""
    found = []
    for case in cases:
        held = [case.held(c) for c in case.candidates]
        if 1.0 not in held:
            continue
        scores = [ranker.score(f) for f in evidence_of_features(case)]
        found.append(held[int(np.argmax(scores))] == 1.0)
    return sum(found) / max(1, len(found))


def fold_of(case: Case) -> int:
    return zlib.crc32(case.group.encode()) % FOLDS


def cross_validated(corpora: Sequence[Corpus], names: list[str], l2: float) -> None:
    cases = [c for corpus in corpora for c in corpus.cases]
    after: dict[str, dict[str, dict[str, Any]]] = {corpus.name: {} for corpus in corpora}
    for fold in range(FOLDS):
        ranker = fit_ranker([c for c in cases if fold_of(c) != fold], names, l2)
        print(f"fold {fold}: {dict(ranker.weights)}")
        for corpus in corpora:
            held_out = [c for c in corpus.cases if fold_of(c) == fold]
            print(
                f"  {corpus.name} best holds all: {top_share(held_out, HAND_SET, names):.3f}"
                f" -> {top_share(held_out, ranker, names):.3f}"
            )
        for corpus in corpora:
            for case in corpus.cases:
                if fold_of(case) == fold:
                    with ranked_by(ranker):
                        after[corpus.name][case.item.id] = answer(corpus.engine, case)
    for corpus in corpora:
        before = figures(measure(corpus, corpus.cases, HAND_SET))
        out_of_fold = figures([after[corpus.name][c.item.id] for c in corpus.cases])
        print(line(f"{corpus.name} (CV, l2 {l2})", before, out_of_fold))


# --------------------------------------------------------------------------- command line


def parse_set(text: str) -> tuple[str, str, Path]:
    name, _, rest = text.partition("=")
    store, _, dataset = rest.partition(":")
    return name, store, Path(dataset)


def load(specs: Sequence[str]) -> list[Corpus]:
    engines: dict[str, Engine] = {}
    corpora = []
    for spec in specs:
        name, store, dataset = parse_set(spec)
        engine = engines.setdefault(store, open_engine(store))
        _ENGINES[name] = engine
        corpora.append(Corpus(name, engine, collect(name, engine, load_dataset(dataset))))
    return corpora


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evals.selection")
    parser.add_argument("command", choices=("diagnose", "fit", "measure"))
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--check", action="append", default=[])
    parser.add_argument("--l2", action="append", type=float, default=[], help="penalties to try")
    args = parser.parse_args(argv)
    corpora = load(args.sets)
    commands: dict[str, Callable[[], None]] = {
        "diagnose": lambda: _diagnose_all(corpora),
        "measure": lambda: _measure_all(corpora),
        "fit": lambda: _fit(corpora, load(args.check), args.l2 or [L2]),
    }
    commands[args.command]()


def _measure_all(corpora: Sequence[Corpus]) -> None:
    for corpus in corpora:
        print(line(corpus.name, figures(measure(corpus, corpus.cases, evidence_module.RANKER))))


def _diagnose_all(corpora: Sequence[Corpus]) -> None:
    for corpus in corpora:
        print(f"{corpus.name}:")
        classes = diagnose(corpus)
        print(f"  {corpus.name} classes: {dict(classes)}")


def _fit(corpora: Sequence[Corpus], checks: Sequence[Corpus], penalties: list[float]) -> None:
    names = list(_some_features(corpora))
    for l2 in penalties:
        cross_validated(corpora, names, l2)
    ranker = fit_ranker([c for corpus in corpora for c in corpus.cases], names, penalties[-1])
    print(f"fit on all (l2 {penalties[-1]}): {dict(ranker.weights)}")
    for corpus in checks:
        before = figures(measure(corpus, corpus.cases, HAND_SET))
        print(
            line(
                f"{corpus.name} (held out)", before, figures(measure(corpus, corpus.cases, ranker))
            )
        )


def _some_features(corpora: Sequence[Corpus]) -> list[str]:
    for corpus in corpora:
        for case in corpus.cases:
            if case.candidates:
                return list(evidence_of_features(case)[0])
    raise SystemExit("no candidates")


if __name__ == "__main__":
    main()

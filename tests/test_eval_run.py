"""The offline eval of the dev set end to end: determinism, outputs, speed and the CI gate.

The gate here is the one ``make eval-gate`` runs through ``citeqa eval --baseline``: it fails when
a metric of the dev set falls below its floor or more than the tolerance below
``evals/baseline.json`` (regenerate that file from a real run with ``citeqa eval --dataset
evals/datasets/dev.jsonl --baseline evals/baseline.json --write-baseline`` when a change is
intended).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from citeqa.config import Settings
from evals.dataset import EvalItem, load_dataset
from evals.gate import BASELINE_PATH, check, compare, load_baseline
from evals.runner import EvalRun, run_eval, write_outputs
from service.answering.answer import Answer
from service.answering.engine import Engine, build_engine
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.slow

DEV_SET = REPO_ROOT / "evals" / "datasets" / "dev.jsonl"
TIME_LIMIT_S = 60.0


def _ingest_own(tmp: Path) -> Engine:
    from citeqa.embedding import build_embedder
    from citeqa.store import connect, open_index
    from ingest.chunker import SentenceChunker
    from ingest.pipeline import Ingestor
    from ingest.readers import read_source

    s = Settings.model_validate({"data_dir": tmp, "generator": "extractive"})
    e = build_embedder(s)
    c = connect(s)
    idx = open_index(c, s.collection, e, create=True)
    chunker = SentenceChunker(max_tokens=s.chunk_max_tokens, count_tokens=e.count_tokens)
    Ingestor(idx, e, chunker, c.get_max_batch_size()).ingest(read_source(s.corpus_path))
    return build_engine(s, embedder=e, index=idx)


@pytest.fixture(scope="module")
def eval_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """The extractive engine over the bundled corpus, ingested once: the session fixture of
    ``tests/conftest.py`` when there is one, else an ingest of this module's own."""
    try:
        engine: Engine = request.getfixturevalue("engine")
    except pytest.FixtureLookupError:
        engine = _ingest_own(tmp_path_factory.mktemp("eval-store"))
    assert engine.generator.name == "extractive"
    yield engine


@pytest.fixture(scope="module")
def runs(eval_engine: Engine) -> dict[str, Any]:
    """Two offline runs of the dev set, the first one timed."""
    items = load_dataset(DEV_SET)
    started = time.perf_counter()
    first = run_eval(eval_engine, items, progress=False, dataset_path=DEV_SET)
    elapsed = time.perf_counter() - started
    second = run_eval(eval_engine, items, progress=False, dataset_path=DEV_SET)
    return {"first": first, "second": second, "elapsed": elapsed}


def _without_timings(run: EvalRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary = {k: v for k, v in run.summary.items() if k != "latency"}
    records = [{k: v for k, v in r.items() if k != "timings_ms"} for r in run.records]
    return summary, records


def test_full_offline_eval_is_fast(runs: dict[str, Any]) -> None:
    assert runs["elapsed"] < TIME_LIMIT_S, f"dev-set eval took {runs['elapsed']:.1f} s"


def test_two_runs_are_identical_except_latency(runs: dict[str, Any]) -> None:
    first, second = runs["first"], runs["second"]
    assert json.dumps(_without_timings(first), sort_keys=True) == json.dumps(
        _without_timings(second), sort_keys=True
    )
    assert first.summary["latency"]["overall"]["count"] == len(first.records)


def test_outputs_are_written(runs: dict[str, Any], tmp_path: Path) -> None:
    run: EvalRun = runs["first"]
    paths = write_outputs(run, tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "items.jsonl",
        "summary.json",
        "report.md",
    }
    lines = paths["items"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(run.records) == len(load_dataset(DEV_SET))
    first = json.loads(lines[0])
    for key in ("id", "question", "type", "answer", "refused", "citations", "retrieved"):
        assert key in first
    assert "hit_at_5" in first["metrics"] and "total" in first["timings_ms"]
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["dataset"]["items"] == len(run.records)
    assert len(summary["dataset"]["sha256"]) == 64
    assert len(summary["corpus"]["fingerprint"]) == 64
    assert "llm_api_key" not in summary["settings"]
    assert set(summary["metrics"]["by_type"]) == {"fact", "paraphrase", "multi", "unanswerable"}
    report = paths["report"].read_text(encoding="utf-8")
    assert "| metric | overall |" in report and "## Worst items" in report


def test_gate_passes_against_committed_baseline(runs: dict[str, Any]) -> None:
    run: EvalRun = runs["first"]
    failures = check(run.summary, BASELINE_PATH, run.records)
    baseline = load_baseline(BASELINE_PATH)
    note = ""
    if baseline.get("corpus_fingerprint") not in (None, run.summary["corpus"]["fingerprint"]):
        note = "\n(the corpus fingerprint differs from the baseline's: chunking changed?)"
    assert not failures, "eval gate failed:\n" + "\n".join(failures) + note


def test_gate_message_is_informative_when_a_metric_drops(runs: dict[str, Any]) -> None:
    run: EvalRun = runs["first"]
    baseline = load_baseline(BASELINE_PATH)
    lowered = copy.deepcopy(run.summary)
    old = baseline["metrics"]["key_fact_accuracy"]
    lowered["metrics"]["overall"]["key_fact_accuracy"] = round(old - 0.1, 4)
    failures = compare(
        lowered, baseline["metrics"], baseline["floors"], baseline["tolerance"], items=run.records
    )
    message = next(f for f in failures if f.startswith("key_fact_accuracy:"))
    assert f"{old:.4f} (baseline) -> {old - 0.1:.4f} (now)" in message
    assert "tolerance" in message
    missed = [r for r in run.records if r["metrics"]["key_fact_accuracy"] == 0.0]
    assert missed, "expected at least one item missing a key fact"
    assert missed[0]["id"] in message and missed[0]["question"] in message


# --------------------------------------------------------------------------- metrics that fail

FACT = EvalItem(
    id="fact",
    type="fact",
    question="How many activated parameters per token does DeepSeek-V3 have?",
    answer="37B",
    gold_titles=["DeepSeek-V3 Technical Report"],
    key_facts=["37B"],
)


def _doctored(engine: Engine, doctor: Callable[[Answer], None]) -> Engine:
    """The engine, with every answer changed by ``doctor`` after it was validated."""

    class Doctored(Engine):
        def ask(self, question: str, top_k: int | None = None) -> Answer:
            answer = super().ask(question, top_k)
            doctor(answer)
            return answer

    return Doctored(**{f.name: getattr(engine, f.name) for f in dataclasses.fields(engine)})


def _alter_the_quote(answer: Answer) -> None:
    assert " strong " in answer.answer
    answer.answer = answer.answer.replace(" strong ", " weak ")


def _cite_another_chunk(answer: Answer) -> None:
    """Marker [1] now names a chunk of another paper; the text the answer shows is unchanged."""
    cited = answer.sources[0]
    other = next(h for h in answer.sources if h.doc_id != cited.doc_id)
    answer.sources[0] = dataclasses.replace(cited, chunk_id=other.chunk_id)


def _grounding(engine: Engine) -> tuple[float | None, float | None]:
    (record,) = run_eval(engine, [FACT], progress=False).records
    return record["metrics"]["faithfulness"], record["metrics"]["citation_precision"]


@pytest.mark.parametrize("doctor", [_alter_the_quote, _cite_another_chunk])
def test_faithfulness_and_citation_precision_drop_for_a_doctored_answer(
    eval_engine: Engine, doctor: Callable[[Answer], None]
) -> None:
    """They judge the answer against the chunks as stored, by a rule of evals' own: a quote
    with a word changed (the validator's 60% coverage still passes it), or a citation naming
    another chunk than the text the answer carries, is not grounded."""
    assert _grounding(eval_engine) == (1.0, 1.0)
    assert _grounding(_doctored(eval_engine, doctor)) == (0.0, 0.0)

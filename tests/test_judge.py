"""The LLM judge against an OpenAI-compatible server: structured output as the server accepts
it, and its failures counted in the reports instead of hidden (a scripted fake server here;
tests/test_real_llm.py runs a real llama.cpp server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from citeqa.config import Settings
from evals.cli import _judge_verdict
from evals.dataset import load_dataset
from evals.judge import (
    JUDGEMENT_SCHEMA,
    NOT_A_JUDGEMENT,
    NOT_JSON,
    LLMJudge,
)
from evals.runner import format_report, run_eval
from service.answering.engine import Engine
from tests.fakes.openai_server import Error, FakeOpenAIServer, Reply
from tests.paths import REPO_ROOT

SOURCES = [{"n": 1, "title": "A paper", "text": "The model has 7B parameters."}]
VALID = json.dumps({"claims": [{"claim": "The model has 7B parameters.", "supported": True}]})
ECHO = "You are checking whether an answer is faithful to the sources it cites. Step 1."


def _settings(srv: FakeOpenAIServer, tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": tmp_path / "unused",
            "llm_base_url": srv.base_url,
            "llm_model": "judge-model",
            "llm_timeout_s": 5,
        }
    )


def test_the_schema_sent_is_plain_json_schema_of_the_judgement() -> None:
    """What grammar-constrained servers take: no $ref, no titles, no extra properties."""
    claim = {
        "type": "object",
        "properties": {"claim": {"type": "string"}, "supported": {"type": "boolean"}},
        "required": ["claim", "supported"],
        "additionalProperties": False,
    }
    assert {
        "type": "object",
        "properties": {"claims": {"type": "array", "items": claim}},
        "required": ["claims"],
        "additionalProperties": False,
    } == JUDGEMENT_SCHEMA


def test_the_judge_asks_for_a_json_schema_and_steps_down_when_refused(tmp_path: Path) -> None:
    with FakeOpenAIServer() as srv:
        srv.enqueue(Error(400, "Unrecognized response_format type"), Reply(VALID), Reply(VALID))
        judge = LLMJudge(_settings(srv, tmp_path), cache_dir=tmp_path / "cache")
        assert judge.judge("The model has 7B parameters [1].", SOURCES).faithfulness == 1.0
        assert judge.judge("It has 7B parameters [1].", SOURCES).faithfulness == 1.0
        sent = [r.body.get("response_format") for r in srv.history]
    assert sent[0]["type"] == "json_schema"
    assert sent[0]["json_schema"]["schema"] == JUDGEMENT_SCHEMA
    # refused once: the next form, and for the rest of the run
    assert sent[1] == sent[2] == {"type": "json_object", "schema": JUDGEMENT_SCHEMA}
    assert judge.response_format == "json_object+schema"


def test_a_server_that_refuses_every_form_gets_plain_text(tmp_path: Path) -> None:
    with FakeOpenAIServer() as srv:
        srv.enqueue(*[Error(400, "no") for _ in range(3)], Reply(f"Sure: {VALID}"))
        judge = LLMJudge(_settings(srv, tmp_path), cache_dir=tmp_path / "cache")
        assert judge.judge("The model has 7B parameters [1].", SOURCES).claims
        assert "response_format" not in srv.history[-1].body
    assert judge.response_format == "text"


@pytest.fixture(scope="module")
def items() -> list[Any]:
    return load_dataset(REPO_ROOT / "evals" / "datasets" / "dev.jsonl")[:8]


def test_a_judge_that_fails_on_every_item_says_so_and_fails_the_run(
    engine: Engine, items: list[Any], tmp_path: Path
) -> None:
    """The 270M model echoed the prompt on all 8 items; the summary showed `-`, the mark of a
    metric that applies to nothing. Now the counts and the reason are in summary and report."""
    with FakeOpenAIServer(default_reply=ECHO) as srv:
        judge = LLMJudge(_settings(srv, tmp_path), cache_dir=tmp_path / "cache")
        run = run_eval(engine, items, progress=False, judge=judge)
    health = run.summary["judge_health"]
    answered = sum(not r["refused"] for r in run.records)
    assert answered > 0
    assert health["judged"] == 0 and health["failed"] == answered
    assert health["not_applicable"] == len(items) - answered
    assert health["failure_reasons"] == {NOT_JSON: answered}
    assert health["failed_share"] == 1.0
    report = format_report(run)
    assert f"LLM judge: judged 0, failed {answered} ({answered} {NOT_JSON})" in report
    assert _judge_verdict(health, max_failed_share=0.1) == 1
    assert _judge_verdict(health, max_failed_share=1.0) == 0


def test_judge_health_counts_each_kind_of_failure(
    engine: Engine, items: list[Any], tmp_path: Path
) -> None:
    wrong_shape = json.dumps({"claims": [{"claim": "x"}]})  # no "supported"
    with FakeOpenAIServer(default_reply=VALID) as srv:
        srv.enqueue(Reply(wrong_shape), Reply(ECHO))
        judge = LLMJudge(_settings(srv, tmp_path), cache_dir=tmp_path / "cache")
        run = run_eval(engine, items, progress=False, judge=judge)
    health = run.summary["judge_health"]
    assert health["failure_reasons"] == {NOT_A_JUDGEMENT: 1, NOT_JSON: 1}
    assert health["failed"] == 2 and health["judged"] >= 1
    assert health["failed_share"] == round(2 / (2 + health["judged"]), 4)
    judged = [r for r in run.records if r["judge"]["status"] == "judged"]
    assert all(r["metrics"]["faithfulness_llm"] == 1.0 for r in judged)
    assert _judge_verdict(health, max_failed_share=0.1) == 1

"""Unit tests of the eval metrics, runner aggregation and output, LLM judge cache and gate.

No engine: hand-built records only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from citeqa.config import Settings
from evals import metrics as m
from evals.gate import DEFAULT_FLOORS, check, compare, write_baseline
from evals.judge import (
    JudgeError,
    LLMJudge,
    ResponseCache,
    cited_sources,
    parse_judgement,
    render_prompt,
)
from evals.runner import EvalRun, format_report, format_table, summarise, worst_items
from tests.fakes.openai_server import FakeOpenAIServer, Reply

PAPER = "ImageNet-21K Pretraining for the Masses"
OTHER = "DeepStack: Deeply Stacking Visual Tokens"
BODY = (
    "We use WordNet hierarchical structure and a novel training scheme called semantic softmax. "
    "The dataset has 2,990 classes and training is 7x faster."
)


def source(title: str, text: str) -> dict[str, Any]:
    return {"title": title, "text": text}


SOURCES = [source(PAPER, BODY), source(OTHER, "DeepStack stacks visual tokens in layers.")]


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2,990", "2990"),
        ("1,234,567 tokens", "1234567 tokens"),
        ("values 1,2", "values 1,2"),
        ("7x", "7x"),
        ("7×", "7x"),
        ("7 x", "7x"),
        ("7 times faster", "7x faster"),
        ("7-fold", "7x"),
        ("7 fold", "7x"),
        ("4.5X", "4.5x"),
        ("45%", "45%"),
        ("45 %", "45%"),
        ("45 percent", "45%"),
        ("45 per cent", "45%"),
        ("  Semantic\n  SOFTMAX ", "semantic softmax"),
        ("GPT–4 − 3", "gpt-4 - 3"),
    ],
)
def test_normalise_text(raw: str, expected: str) -> None:
    assert m.normalise_text(raw) == expected


def test_normalise_text_leaves_words_with_x_alone() -> None:
    assert m.normalise_text("3 xl models and 5 examples") == "3 xl models and 5 examples"


@pytest.mark.parametrize(
    ("fact", "text", "found"),
    [
        ("2,990", "It has 2990 classes.", True),
        ("2990", "It has 2,990 classes.", True),
        ("7x", "seven: 7 times cheaper", True),
        ("7×", "a 7-fold speed-up", True),
        ("7 times", "7x", True),
        ("45%", "reaches 45 percent", True),
        ("45 percent", "reaches 45%", True),
        ("WordNet", "uses wordnet", True),
        ("2.7", "improves by 12.7 points", False),
        ("2.7", "improves by 2.75 points", False),
        ("2.7", "improves by 2.7.", True),
        ("2.7", "by 2.7B tokens", True),
        ("semantic softmax", "semantic soft-max", False),
    ],
)
def test_fact_in_text(fact: str, text: str, found: bool) -> None:
    assert m.fact_in_text(fact, text) is found


# --------------------------------------------------------------------------- retrieval


def test_hit_at_k_and_mrr() -> None:
    retrieved = [OTHER, OTHER, PAPER, "x", "y", "z"]
    assert m.hit_at_k(retrieved, [PAPER], 1) == 0.0
    assert m.hit_at_k(retrieved, [PAPER], 5) == 1.0
    assert m.hit_at_k(retrieved, [PAPER], 2) == 0.0
    assert m.reciprocal_rank(retrieved, [PAPER]) == pytest.approx(1 / 3)
    assert m.reciprocal_rank(retrieved, ["absent"]) == 0.0
    assert m.hit_at_k(retrieved, [], 5) is None
    assert m.reciprocal_rank(retrieved, []) is None
    # titles match ignoring case and whitespace
    assert m.hit_at_k(["imagenet-21k  pretraining for the masses"], [PAPER], 1) == 1.0


def test_all_gold_at_k() -> None:
    assert m.all_gold_at_k([PAPER, "x", OTHER], [PAPER, OTHER], 5) == 1.0
    assert m.all_gold_at_k([PAPER, "a", "b", "c", "d", OTHER], [PAPER, OTHER], 5) == 0.0
    assert m.all_gold_at_k([PAPER], [PAPER], 5) is None


# --------------------------------------------------------------------------- answers


def test_citation_hit() -> None:
    assert m.citation_hit([OTHER, PAPER], [PAPER]) == 1.0
    assert m.citation_hit([OTHER], [PAPER]) == 0.0
    assert m.citation_hit([], [PAPER]) == 0.0  # a refusal cites nothing
    assert m.citation_hit([PAPER], []) is None


def test_key_fact_accuracy_and_recall() -> None:
    answer = "It uses semantic softmax over 2990 classes [1]."
    assert m.key_fact_accuracy(answer, ["semantic softmax", "2,990"]) == 1.0
    assert m.key_fact_accuracy(answer, ["semantic softmax", "WordNet"]) == 0.0
    assert m.key_fact_recall(answer, ["semantic softmax", "WordNet"]) == 0.5
    # a refusal scores 0 even when a closest-source title happens to contain the fact
    refusal = f"The corpus does not contain an answer. Closest sources: [1] {PAPER}."
    assert m.key_fact_accuracy(refusal, ["ImageNet-21K"], refused=True) == 0.0
    assert m.key_fact_recall(refusal, ["ImageNet-21K"], refused=True) == 0.0
    assert m.key_fact_accuracy(answer, []) is None
    # markers are not part of the text: "[1]" does not make fact "1" present
    assert m.key_fact_accuracy("Nothing here [1].", ["1"]) == 0.0


def test_answer_sentences_paragraphs_and_markers() -> None:
    answer = "It uses semantic softmax [1].\n\nDeepStack stacks visual tokens [2][1]. [3]"
    sentences = m.answer_sentences(answer)
    assert [s.cited for s in sentences] == [(1,), (2, 1, 3)]  # a trailing marker cites it too
    assert sentences[0].claim == "It uses semantic softmax."


def test_a_word_that_starts_with_a_dot_keeps_its_space() -> None:
    """Only the space a marker leaves before punctuation goes: "The .zoo part" is the
    document's text, and "The.zoo part" would not be grounded in it (rvb3-053)."""
    answer = "The .zoo part must be written out [1]. Files have suffix .stan [1]."
    first, second = m.answer_sentences(answer)
    assert first.claim == "The .zoo part must be written out."
    assert second.claim == "Files have suffix .stan."
    assert (
        m.faithfulness(answer, ["The .zoo part must be written out. Files have suffix .stan."])
        == 1.0
    )


# What the markers point at, as read from the store: each chunk's title line and body.
TEXTS = [f"{PAPER}\n{BODY}", f"{OTHER}\nDeepStack stacks visual tokens in layers."]
STORED = {PAPER: TEXTS[0], OTHER: TEXTS[1]}  # by chunk id (answer_public: the title)
QUOTE = "We use WordNet hierarchical structure and a novel training scheme called semantic softmax."


def test_a_verbatim_quote_is_grounded_in_the_chunk_it_cites() -> None:
    answer = f"\u201c{PAPER}\u201d: {QUOTE[:-1]} [1]. The dataset has 2,990 classes [1]."
    assert m.faithfulness(answer, TEXTS) == 1.0
    assert m.citation_precision(answer, TEXTS) == 1.0
    # its words kept, differently ordered or written: "2990" is "2,990", "uses" "use"
    assert m.faithfulness("It uses semantic softmax and 2990 classes [1].", TEXTS) == 1.0


@pytest.mark.parametrize(
    "doctored",
    [
        QUOTE.replace("WordNet", "ConceptNet"),  # a word changed
        QUOTE.replace("a novel", "no novel"),  # a negation added
        "The dataset has 2,991 classes.",  # a number changed
        "The dataset has 2,990 classes and training is 8x faster.",
        "Training is 7x slower.",  # most words kept, the claim reversed
    ],
)
def test_an_altered_quote_is_not_grounded(doctored: str) -> None:
    """The validator's rule (60% of the stemmed terms) kept most of these."""
    answer = f"{doctored[:-1]} [1]."
    assert m.faithfulness(answer, TEXTS) == 0.0
    assert m.citation_precision(answer, TEXTS) == 0.0


def test_a_quote_citing_another_chunk_is_not_grounded() -> None:
    answer = f"{QUOTE[:-1]} [2]. DeepStack stacks visual tokens in layers [2]."
    assert m.faithfulness(answer, TEXTS) == 0.5
    assert m.citation_precision(answer, TEXTS) == 0.5
    # the marker names a chunk the store does not hold, or no source at all
    assert m.faithfulness(f"{QUOTE[:-1]} [1].", [None, TEXTS[1]]) == 0.0
    assert m.faithfulness(f"{QUOTE[:-1]} [7].", TEXTS) == 0.0


def test_markers_after_a_closing_parenthesis_cite_the_sentence_before() -> None:
    """The generator writes the marker after a sentence ending in ".)" (rvd-009)."""
    answer = "It uses semantic softmax (a novel scheme.) [1] DeepStack stacks visual tokens [2]."
    first, second = m.answer_sentences(answer)
    assert (first.cited, second.cited) == ((1,), (2,))
    assert m.faithfulness(answer, TEXTS) == m.citation_precision(answer, TEXTS) == 1.0


def test_a_sentence_without_citation_is_not_grounded() -> None:
    answer = "It uses semantic softmax [1]. The dataset has 2990 classes."
    assert m.faithfulness(answer, TEXTS) == 0.5
    assert m.citation_precision(answer, TEXTS) == 1.0  # pairs only: the one marker is right


def test_the_generators_own_lead_is_no_claim_of_the_source() -> None:
    answer = f"The sources differ; \u201c{PAPER}\u201d: The dataset has 2,990 classes [1]."
    assert m.faithfulness(answer, TEXTS) == 1.0


def test_faithfulness_refused_or_empty_is_none() -> None:
    assert m.faithfulness("The corpus does not contain an answer.", TEXTS, refused=True) is None
    assert m.faithfulness("", TEXTS) is None


def test_citation_precision_counts_each_marker() -> None:
    # sentence 1 cites [1] (grounds it) and [2] (does not); sentence 2 cites [2] (grounds it)
    answer = "It uses semantic softmax [1][2]. DeepStack stacks visual tokens in layers [2]."
    assert m.faithfulness(answer, TEXTS) == 1.0
    assert m.citation_precision(answer, TEXTS) == pytest.approx(2 / 3)
    assert m.citation_precision("No markers at all.", TEXTS) is None
    assert m.citation_precision(answer, TEXTS, refused=True) is None


def test_cited_texts_are_read_by_chunk_id() -> None:
    sources = [{"chunk_id": "a", "text": "what the answer says"}, {"chunk_id": "gone"}]
    assert m.cited_texts(sources, {"a": "stored"}) == ["stored", None]


# --------------------------------------------------------------------------- refusals


def test_refusal_precision_recall_math() -> None:
    # 4 unanswerable (3 refused), 6 answerable (1 refused)
    unanswerable = [True] * 4 + [False] * 6
    refused = [True, True, True, False, True, False, False, False, False, False]
    scores = m.refusal_scores(refused, unanswerable)
    assert scores["refusal_precision"] == pytest.approx(3 / 4)
    assert scores["refusal_recall"] == pytest.approx(3 / 4)
    assert scores["false_refusal_rate"] == pytest.approx(1 / 6)


def test_refusal_scores_undefined_cases() -> None:
    scores = m.refusal_scores([False, False], [False, False])
    assert scores == {"refusal_precision": None, "refusal_recall": None, "false_refusal_rate": 0.0}
    assert m.refusal_scores([True], [True])["false_refusal_rate"] is None
    with pytest.raises(ValueError):
        m.refusal_scores([True], [True, False])


# --------------------------------------------------------------------------- aggregation


def test_mean_and_aggregate_exclude_none() -> None:
    assert m.mean([1.0, None, 0.0, None]) == 0.5
    assert m.mean([None, None]) is None
    records: list[dict[str, float | None]] = [
        {"a": 1.0, "b": None},
        {"a": 0.0, "b": None},
        {"a": None, "b": None},
    ]
    assert m.aggregate(records, ["a", "b"]) == {"a": 0.5, "b": None}
    assert m.applicable_counts(records, ["a", "b"]) == {"a": 2, "b": 0}
    assert m.aggregate([{"a": 1 / 3}], ["a"]) == {"a": 0.3333}


def test_percentile_and_latency() -> None:
    assert m.percentile([], 50) is None
    assert m.percentile([10.0], 95) == 10.0
    assert m.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert m.percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
    stats = m.latency_stats([100.0, 10.0, 20.0])
    assert stats["p50_ms"] == 20.0
    assert stats["count"] == 3


def answer_public(
    text: str, refused: bool, cited: list[str], retrieved: list[str]
) -> dict[str, Any]:
    return {
        "answer": text,
        "refused": refused,
        "citations": [{"n": i + 1, "title": t} for i, t in enumerate(cited)],
        "sources": [
            dict(source(t, BODY if t == PAPER else "DeepStack stacks visual tokens."), chunk_id=t)
            for t in retrieved
        ],
    }


def test_item_metrics_unanswerable_and_answerable() -> None:
    refusal = answer_public("The corpus does not contain an answer.", True, [], [OTHER])
    scores = m.item_metrics(item_type="unanswerable", gold_titles=[], key_facts=[], answer=refusal)
    assert scores["refusal_recall"] == 1.0
    assert scores["refusal_precision"] == 1.0
    assert scores["false_refusal_rate"] is None
    assert scores["hit_at_5"] is None and scores["faithfulness"] is None

    good = answer_public("It uses semantic softmax [1].", False, [PAPER], [PAPER, OTHER])
    item = {"item_type": "fact", "gold_titles": [PAPER], "key_facts": ["semantic softmax"]}
    scores = m.item_metrics(**item, answer=good, stored=STORED)
    assert scores["hit_at_1"] == scores["citation_hit"] == scores["key_fact_accuracy"] == 1.0
    assert scores["faithfulness"] == scores["citation_precision"] == 1.0
    # the store is the evidence: the chunk stored under the cited id says something else
    doctored = m.item_metrics(**item, answer=good, stored={PAPER: TEXTS[1]})
    assert doctored["faithfulness"] == doctored["citation_precision"] == 0.0
    # without the store, the answer's own copy of its sources proves nothing
    unread = m.item_metrics(**item, answer=good)
    assert unread["faithfulness"] is None and unread["citation_precision"] is None
    assert scores["false_refusal_rate"] == 0.0
    assert scores["refusal_precision"] is None and scores["refusal_recall"] is None
    assert scores["all_gold_at_5"] is None  # only for multi items


# --------------------------------------------------------------------------- runner (no engine)


def record(
    item_id: str,
    item_type: str,
    answer: dict[str, Any],
    gold: list[str],
    facts: list[str],
    total: float,
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": item_type,
        "question": f"question {item_id}?",
        "expected": {"answer": "", "gold_titles": gold, "key_facts": facts},
        "answer": answer["answer"],
        "refused": answer["refused"],
        "citations": answer["citations"],
        "retrieved": [s["title"] for s in answer["sources"]],
        "metrics": m.item_metrics(
            item_type=item_type, gold_titles=gold, key_facts=facts, answer=answer, stored=STORED
        ),
        "timings_ms": {"total": total},
    }


def sample_records() -> list[dict[str, Any]]:
    good = answer_public("It uses semantic softmax [1].", False, [PAPER], [PAPER, OTHER])
    wrong = answer_public("DeepStack stacks visual tokens [1].", False, [OTHER], [OTHER])
    refusal = answer_public("The corpus does not contain an answer.", True, [], [OTHER])
    return [
        record("q1", "fact", good, [PAPER], ["semantic softmax"], 10.0),
        record("q2", "fact", wrong, [PAPER], ["semantic softmax"], 20.0),
        record("q3", "paraphrase", refusal, [PAPER], ["WordNet"], 30.0),
        record("q4", "unanswerable", refusal, [], [], 40.0),
        record("q5", "unanswerable", wrong, [], [], 50.0),
    ]


def test_summarise_overall_and_per_type() -> None:
    summary = summarise(sample_records())
    overall = summary["metrics"]["overall"]
    assert overall["hit_at_5"] == pytest.approx(round(1 / 3, 4))  # only q1 retrieves it
    assert overall["key_fact_accuracy"] == pytest.approx(round(1 / 3, 4))
    assert overall["refusal_recall"] == 0.5
    assert overall["refusal_precision"] == 0.5
    assert overall["false_refusal_rate"] == pytest.approx(round(1 / 3, 4))
    assert overall["all_gold_at_5"] is None
    by_type = summary["metrics"]["by_type"]
    assert set(by_type) == {"fact", "paraphrase", "unanswerable"}
    assert by_type["fact"]["key_fact_accuracy"] == 0.5
    assert by_type["paraphrase"]["false_refusal_rate"] == 1.0
    assert by_type["unanswerable"]["hit_at_5"] is None
    assert summary["counts"]["applicable"]["faithfulness"] == 3
    assert summary["latency"]["overall"]["p50_ms"] == 30.0
    assert "latency" not in summary["metrics"]


def test_format_table_and_report() -> None:
    records = sample_records()
    summary = summarise(records)
    summary.update(
        dataset={"path": "d.jsonl", "sha256": "ab" * 32, "items": 5},
        corpus={"fingerprint": "cd" * 32, "chunks": 3},
        generator="extractive",
        judge="none",
        top_k=5,
        package_version="0+unknown",
    )
    table = format_table(summary)
    assert table.splitlines()[0].split() == [
        "metric",
        "overall",
        "fact",
        "paraphrase",
        "unanswerable",
    ]
    assert "false_refusal_rate (lower is better)" in table
    assert "latency p95_ms" in table
    worst = worst_items(records)
    assert [r["id"] for r in worst][:2] == ["q3", "q5"]
    assert "q1" not in [r["id"] for r in worst]  # a perfect item is never listed
    report = format_report(EvalRun(records=records, summary=summary))
    assert "## Worst items" in report and "question q3?" in report and "`WordNet`" in report


# --------------------------------------------------------------------------- judge


def judge_settings(srv: FakeOpenAIServer) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": Path("unused"),
            "llm_base_url": srv.base_url,
            "llm_model": "judge-model",
            "llm_timeout_s": 5,
        }
    )


def test_judge_prompt_is_strict_and_delimited(tmp_path: Path) -> None:
    from jinja2 import UndefinedError

    text = render_prompt("It uses semantic softmax [1].", [{"n": 1, "title": PAPER, "text": BODY}])
    assert f'<source n="1" title="{PAPER}">' in text and "</source>" in text
    assert "<answer>\nIt uses semantic softmax [1].\n</answer>" in text
    with pytest.raises(UndefinedError):
        render_prompt("x", [{"n": 1, "title": PAPER}])  # no "text": strict


def test_judge_prompt_from_the_prompts_dir_setting(tmp_path: Path) -> None:
    (tmp_path / "judge_claims.md").write_text("Mine: {{ answer }}", encoding="utf-8")
    settings = Settings.model_validate({"data_dir": "unused", "prompts_dir": tmp_path})
    judge = LLMJudge(settings, cache_dir=tmp_path / "cache")
    assert judge.messages("It is 37B.", [])[1]["content"] == "Mine: It is 37B."


def test_judge_cache_hit_does_not_call_network(tmp_path: Path) -> None:
    reply = json.dumps(
        {
            "claims": [
                {"claim": "It uses semantic softmax.", "supported": True},
                {"claim": "It has 3500 classes.", "supported": False},
            ]
        }
    )
    answer = {
        "answer": "It uses semantic softmax, with 3500 classes [1].",
        "refused": False,
        "sources": SOURCES,
    }
    with FakeOpenAIServer() as srv:
        srv.enqueue(Reply(reply))
        judge = LLMJudge(judge_settings(srv), cache_dir=tmp_path / "cache")
        first = judge.judge_answer(answer)
        assert first is not None and not first.cached
        assert first.faithfulness == 0.5
        assert srv.requests_count == 1
        sent = srv.history[0].body
        assert sent["model"] == "judge-model" and sent["temperature"] == 0

        files = list((tmp_path / "cache").glob("*.json"))
        assert len(files) == 1
        stored = json.loads(files[0].read_text())
        assert set(stored) == {"model", "messages", "response"}
        assert stored["response"] == reply
        assert files[0].stem == ResponseCache.key("judge-model", stored["messages"])

    # the server is closed: a second judge with a fresh client must not touch the network
    with FakeOpenAIServer() as srv2:
        again = LLMJudge(judge_settings(srv2), cache_dir=tmp_path / "cache").judge_answer(answer)
        assert srv2.requests_count == 0
    assert again is not None and again.cached and again.claims == first.claims


def test_judge_cache_key_covers_model_and_prompt(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    msgs = [{"role": "user", "content": "a"}]
    cache.put("m1", msgs, "r")
    assert cache.get("m1", msgs) == "r"
    assert cache.get("m2", msgs) is None
    assert cache.get("m1", [{"role": "user", "content": "b"}]) is None


def test_judge_invalid_reply_is_not_cached(tmp_path: Path) -> None:
    answer = {"answer": "It uses semantic softmax [1].", "refused": False, "sources": SOURCES}
    with FakeOpenAIServer() as srv:
        srv.enqueue(Reply("I think it is fine."))
        judge = LLMJudge(judge_settings(srv), cache_dir=tmp_path)
        with pytest.raises(JudgeError):
            judge.judge_answer(answer)
    assert not list(tmp_path.glob("*.json"))


def test_parse_judgement_variants() -> None:
    fenced = '```json\n{"claims": [{"claim": "a", "supported": "true"}]}\n```'
    assert parse_judgement(fenced)[0].supported is True
    prose = 'Here: {"claims": [{"claim": "a", "supported": false}]} done'
    assert parse_judgement(prose)[0].supported is False
    assert parse_judgement('{"claims": []}') == []
    for bad in ('{"claims": [{"claim": "a"}]}', '{"x": 1}', "nope"):
        with pytest.raises(JudgeError):
            parse_judgement(bad)


def test_cited_sources_and_refusal_skip() -> None:
    answer = {"answer": "A [2]. B [1][2]. C [9].", "refused": False, "sources": SOURCES}
    assert [s["n"] for s in cited_sources(answer)] == [2, 1]
    judge = LLMJudge(Settings.model_validate({"data_dir": "unused"}), cache_dir=Path("unused"))
    assert judge.judge_answer({"answer": "x", "refused": True, "sources": SOURCES}) is None


# --------------------------------------------------------------------------- gate


BASE = {
    "hit_at_5": 0.99,
    "citation_hit": 0.95,
    "key_fact_accuracy": 0.90,
    "faithfulness": 1.0,
    "citation_precision": 1.0,
    "refusal_recall": 0.80,
    "false_refusal_rate": 0.02,
    "mrr": 0.97,
}


def summary_of(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": {"overall": metrics, "by_type": {}}, "latency": {"overall": {"p50_ms": 1.0}}}


def test_gate_passes_within_tolerance() -> None:
    new = dict(BASE, key_fact_accuracy=0.885, false_refusal_rate=0.035)
    assert compare(summary_of(new), BASE, DEFAULT_FLOORS, 0.02) == []


def test_gate_fails_below_baseline_tolerance_naming_metric_values_and_items() -> None:
    new = dict(BASE, key_fact_accuracy=0.85)
    items = [
        {
            "id": "dev-001",
            "question": "Good one?",
            "refused": False,
            "metrics": {"key_fact_accuracy": 1.0},
        },
        {
            "id": "dev-002",
            "question": "Which scheme?",
            "refused": False,
            "metrics": {"key_fact_accuracy": 0.0},
        },
        {
            "id": "dev-003",
            "question": "Refused one?",
            "refused": True,
            "metrics": {"key_fact_accuracy": 0.0},
        },
    ]
    failures = compare(summary_of(new), {"metrics": BASE}, DEFAULT_FLOORS, 0.02, items=items)
    assert len(failures) == 1
    message = failures[0]
    assert message.startswith("key_fact_accuracy: 0.9000 (baseline) -> 0.8500 (now)")
    assert "tolerance 0.0200 below the baseline" in message
    assert "dev-002" in message and "Which scheme?" in message and "dev-003" in message
    assert "(refused)" in message
    assert "dev-001" not in message


def test_gate_floor_and_lower_is_better() -> None:
    base = dict(BASE, hit_at_5=0.951)
    new = dict(base, hit_at_5=0.94, false_refusal_rate=0.06)
    failures = compare(summary_of(new), base, DEFAULT_FLOORS, 0.02)
    text = "\n".join(failures)
    assert "hit_at_5: 0.9510 (baseline) -> 0.9400 (now): below the floor 0.9500" in text
    assert "false_refusal_rate: 0.0200 (baseline) -> 0.0600 (now): above the ceiling 0.0500" in text
    assert "more than the tolerance 0.0200 above the baseline" in text
    # an improvement of a lower-is-better metric is not a failure
    assert compare(summary_of(dict(BASE, false_refusal_rate=0.0)), BASE, DEFAULT_FLOORS, 0.02) == []


def test_gate_missing_metric_and_latency_ignored() -> None:
    new = dict(BASE, refusal_recall=None)
    failures = compare(summary_of(new), BASE, DEFAULT_FLOORS, 0.02)
    assert failures == [
        "refusal_recall: 0.8000 (baseline) -> n/a (now): "
        "could not be computed (no applicable items)"
    ]


def test_write_baseline_keeps_floors_and_tolerance(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    write_baseline(summary_of(dict(BASE, faithfulness_llm=0.9)), path)
    first = json.loads(path.read_text())
    assert first["floors"] == DEFAULT_FLOORS and first["tolerance"] == 0.02
    assert "faithfulness_llm" not in first["metrics"]
    first["floors"]["hit_at_5"] = 0.5
    first["tolerance"] = 0.05
    first["floors_note"] = "why the floors are these"
    path.write_text(json.dumps(first))
    write_baseline(summary_of(dict(BASE, mrr=0.5)), path)
    second = json.loads(path.read_text())
    assert second["floors"]["hit_at_5"] == 0.5 and second["tolerance"] == 0.05
    assert second["floors_note"] == "why the floors are these"
    assert second["metrics"]["mrr"] == 0.5
    assert check(summary_of(dict(BASE, mrr=0.5)), path) == []
    assert check(summary_of(dict(BASE, mrr=0.4)), path)[0].startswith("mrr: 0.5000")


def test_answer_sentences_keep_a_quoted_title_whole() -> None:
    answer = "\u201cIs Your Model an All-around Player?\u201d: It proposes MMBench [1]."
    (sentence,) = m.answer_sentences(answer)
    assert sentence.cited == (1,)


# --------------------------------------------------------------------------- answer hygiene

V3 = {"title": "DeepSeek-V3 Technical Report", "text": "DeepSeek-V3 has 671B parameters."}
VL2 = {
    "title": "DeepSeek-VL2",
    "text": "DeepSeek-VL2 has 1.0B and 2.8B activated parameters respectively.",
}


def test_answer_hygiene_counts_what_a_weak_model_writes() -> None:
    """What the validator let through before issue 15: each kind is counted."""
    answer = (
        "Sources: [1]\n</source> [1]\nDeepSeek-V3 Technical Report [1]\n"
        "DeepSeek-V3 has 671B parameters [1]. DeepSeek-V3 has 671B parameters [1].\n"
        "We present DeepSeek-V3 with 1.0B and 2.8B activated parameters [2]."
    )
    assert m.answer_hygiene(answer, [V3, VL2]) == {
        "empty_lines": 3,
        "repeated_sentences": 1,
        "unsupported_names": 1,
    }


def test_answer_hygiene_of_a_clean_answer_or_a_refusal_is_zero() -> None:
    clean = "DeepSeek-V3 has 671B parameters [1].\n\nDeepSeek-VL2 has 2.8B activated [2]."
    zero = {"empty_lines": 0, "repeated_sentences": 0, "unsupported_names": 0}
    assert m.answer_hygiene(clean, [V3, VL2]) == zero
    assert m.answer_hygiene("Sources: [1]", [V3], refused=True) == zero

"""Unit tests of the eval's document-level schema and metrics and of its CI tools (gate options,
JUnit, compare, draft sentences): hand-built items, answers and run folders, no engine."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from citeqa.config import Settings
from evals import metrics as m
from evals.cli import UsageError, _baseline, parse_fail_under
from evals.compare import (
    bootstrap_ci,
    flipped,
    load_run,
    metric_rows,
    paired_delta_ci,
    write_compare,
)
from evals.corpus import Document, Sentence, collection_for
from evals.dataset import EvalItem, grounding_form, same_source, validate_against_corpus
from evals.draft import (
    Fact,
    LLMQuestionWriter,
    _name_fact,
    _number_fact,
    acceptable,
    draft_items,
    facts_of,
    gives_away,
    is_prose,
    parse_question,
)
from evals.junit import junit_xml
from evals.runner import item_failures, summarise
from tests.fakes.openai_server import FakeOpenAIServer, Reply

DOC = "lme4-PLSvGLS.pdf"


def _item(**overrides: Any) -> EvalItem:
    base: dict[str, Any] = {
        "id": "rv-1",
        "type": "fact",
        "question": "How many subjects?",
        "answer": "18 subjects.",
        "key_facts": ["18"],
        "gold_docs": [DOC],
        "gold_pages": {DOC: [3]},
        "tags": ["lme4"],
    }
    base.update(overrides)
    return EvalItem.model_validate(base)


# --------------------------------------------------------------------------- dataset schema


def test_gold_docs_alone_make_an_answerable_item() -> None:
    item = _item()
    assert item.gold_titles == [] and item.gold_docs == [DOC] and item.tags == ["lme4"]
    assert _item(gold_pages={DOC: []}).gold_pages == {DOC: []}  # a document without pages


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gold_docs": [], "gold_pages": {}}, "gold title or gold doc"),
        ({"gold_pages": {"other.pdf": [1]}}, "not in gold_docs"),
        ({"gold_pages": {DOC: [0]}}, "1-based"),
        ({"type": "unanswerable", "key_facts": [], "gold_pages": {}}, "unanswerable items"),
        ({"type": "multi"}, "two distinct"),
    ],
)
def test_bad_document_gold_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _item(**overrides)


def test_key_facts_are_grounded_in_gold_documents_as_extracted() -> None:
    """Ligatures, soft hyphens, line-break hyphenation and spacing are folded for every item
    alike; a fact the document does not state is still reported."""
    text = "The e\ufb03cient estima-\ntion used 18   subjects and the pro\u00adﬁle likelihood."
    items = [
        _item(key_facts=["efficient estimation", "18 subjects", "profile likelihood"]),
        _item(id="rv-2", key_facts=["19 subjects"]),
        _item(id="rv-3", gold_docs=["missing.pdf"], gold_pages={}),
    ]
    problems = validate_against_corpus(items, {}, {"sub/" + DOC: text})
    assert problems == [
        "rv-2: key fact not found in gold documents: '19 subjects'",
        "rv-3: gold doc not in corpus: 'missing.pdf'",
        "rv-3: key fact not found in gold documents: '18'",
    ]


def test_grounding_form_keeps_real_hyphens() -> None:
    assert grounding_form("well-known  model") == "well-known model"
    assert grounding_form("estima-\ntion") == "estimation"


def test_same_source_matches_paths_and_bare_names() -> None:
    assert same_source("papers/lme4-PLSvGLS.pdf", DOC)
    assert same_source("./LME4-plsvgls.pdf", DOC)
    assert not same_source("other-lme4-PLSvGLS.pdf", DOC)


def test_collection_for_is_stable_and_valid(tmp_path: Path) -> None:
    folder = tmp_path / "R Vignettes!"
    assert collection_for(folder) == "corpus-r-vignettes" == collection_for(folder / ".")
    long = collection_for(tmp_path / ("x" * 80))
    assert long.startswith("corpus-x") and len(long) <= 48
    assert collection_for(tmp_path / "___").startswith("corpus-")


# --------------------------------------------------------------------------- metrics


def _answer(citations: list[dict[str, Any]], sources: list[str], refused: bool = False) -> dict:
    return {
        "answer": "It used 18 subjects [1].",
        "refused": refused,
        "citations": citations,
        "sources": [{"title": s, "text": "18 subjects", "source": s} for s in sources],
    }


def _cite(source: str, page: int | None, page_end: int | None = None) -> dict[str, Any]:
    return {
        "n": 1,
        "title": source,
        "quote": "q",
        "source": source,
        "page": page,
        "page_end": page_end,
    }


def test_document_metrics_of_one_answer() -> None:
    answer = _answer([_cite("x/" + DOC, 2, 3)], ["a.pdf", "b.pdf", "c.pdf", "d.pdf", DOC])
    scores = m.item_metrics(
        item_type="fact",
        gold_titles=[],
        key_facts=["18"],
        answer=answer,
        gold_docs=[DOC],
        gold_pages={DOC: [3]},
    )
    assert scores["gold_doc_at_5"] == 1.0 and scores["gold_doc_cited"] == 1.0
    assert scores["page_accuracy"] == 1.0  # pages 2..3 hold page 3
    assert scores["hit_at_5"] is None  # no gold titles


@pytest.mark.parametrize(
    ("citations", "expected"),
    [
        ([_cite(DOC, 4)], 0.0),  # the gold document, another page
        ([_cite("other.pdf", 3)], 0.0),  # the gold page of another document
        ([_cite(DOC, None)], 0.0),  # no page known
        ([_cite(DOC, 4), _cite(DOC, 1, 3)], 1.0),  # one of its citations spans it
        ([], 0.0),  # nothing cited
    ],
)
def test_page_accuracy(citations: list[dict[str, Any]], expected: float) -> None:
    assert m.page_accuracy(citations, {DOC: [3]}) == expected


def test_page_accuracy_applies_only_with_gold_pages() -> None:
    assert m.page_accuracy([_cite(DOC, 3)], {}) is None
    scores = m.item_metrics(
        item_type="unanswerable",
        gold_titles=[],
        key_facts=[],
        answer=_answer([], [DOC], refused=True),
    )
    assert scores["page_accuracy"] is None and scores["gold_doc_cited"] is None


def test_gold_doc_at_5_looks_at_the_first_five_only() -> None:
    assert m.gold_doc_at_k(["a", "b", "c", "d", "e", DOC], [DOC]) == 0.0
    assert m.gold_doc_cited([], [DOC]) == 0.0


def _record(rid: str, kind: str, tags: list[str], **metrics: float | None) -> dict[str, Any]:
    refused = bool(metrics.pop("refused", 0))
    return {
        "id": rid,
        "type": kind,
        "tags": tags,
        "question": f"question {rid}?",
        "answer": "It used 18 subjects [1]." if not refused else "The corpus does not contain it.",
        "refused": refused,
        "expected": {
            "answer": "",
            "gold_titles": [],
            "key_facts": ["18"] if kind != "unanswerable" else [],
        },
        "citations": [],
        "retrieved": [],
        "answerability": 0.5,
        "metrics": {name: metrics.get(name) for name in m.QUALITY_METRICS},
        "timings_ms": {"total": 10.0 + len(rid)},
    }


def test_summary_breaks_metrics_down_by_tag() -> None:
    records = [
        _record("1", "fact", ["lme4", "pdf"], key_fact_accuracy=1.0),
        _record("2", "fact", ["pdf"], key_fact_accuracy=0.0),
        _record("3", "fact", [], key_fact_accuracy=0.0),
    ]
    summary = summarise(records)
    assert summary["metrics"]["by_tag"]["lme4"]["key_fact_accuracy"] == 1.0
    assert summary["metrics"]["by_tag"]["pdf"]["key_fact_accuracy"] == 0.5
    assert summary["counts"]["by_tag"] == {"lme4": 1, "pdf": 2}
    assert "by_tag" not in summarise(records[2:])["metrics"]


def test_item_failures_say_why() -> None:
    ok = _record("1", "fact", [], key_fact_accuracy=1.0, gold_doc_cited=1.0, page_accuracy=1.0)
    wrong_page = _record(
        "2", "fact", [], key_fact_accuracy=1.0, gold_doc_cited=1.0, page_accuracy=0.0
    )
    missing = _record("3", "fact", [], key_fact_accuracy=0.0, citation_hit=0.0)
    missing["answer"] = "Something else [1]."
    answered = _record("4", "unanswerable", [])
    assert item_failures(ok) == []
    assert item_failures(wrong_page) == ["no citation on a gold page"]
    assert item_failures(missing) == ["key facts missing: '18'", "no citation of a gold document"]
    assert item_failures(answered) == ["answered a question the documents do not answer"]
    assert item_failures(_record("5", "fact", [], refused=1)) == [
        "refused a question the documents answer"
    ]


# --------------------------------------------------------------------------- gate options


def test_fail_under_parses_floors_and_refuses_mistakes() -> None:
    assert parse_fail_under(["key_fact_accuracy=0.6", "false_refusal_rate=0.05"]) == {
        "key_fact_accuracy": 0.6,
        "false_refusal_rate": 0.05,
    }
    for bad in ("key_fact_accuracy", "nonsense=1", "page_accuracy=high"):
        with pytest.raises(UsageError, match="--fail-under"):
            parse_fail_under([bad])


def test_a_run_folder_is_a_baseline_without_floors(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(
        json.dumps({"metrics": {"overall": {"key_fact_accuracy": 0.7}, "by_type": {}}}),
        encoding="utf-8",
    )
    assert _baseline(tmp_path) == {
        "metrics": {"key_fact_accuracy": 0.7},
        "floors": {},
        "tolerance": 0.02,
    }
    (tmp_path / "bad.json").write_text("[1]", encoding="utf-8")
    with pytest.raises(UsageError, match="neither a baseline"):
        _baseline(tmp_path / "bad.json")


# --------------------------------------------------------------------------- JUnit


def test_junit_has_one_case_per_item_and_failures_carry_the_item() -> None:
    good = _record("1", "fact", [], key_fact_accuracy=1.0, citation_hit=1.0)
    bad = _record("2", "unanswerable", [])
    bad["answer"] = "An answer with a form feed \x0c [1]."
    bad["citations"] = [{"n": 1, "title": "T", "quote": "q <b>", "source": DOC, "page": 2}]
    root = junit_xml([good, bad], "dev").getroot()
    xml_text = ET.tostring(root, encoding="unicode")
    ET.fromstring(xml_text)  # well-formed, the form feed dropped
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.find("failure") is None for c in cases] == [True, False]
    failure = cases[1].find("failure")
    assert failure is not None and failure.text is not None
    assert failure.get("message") == "answered a question the documents do not answer"
    assert "question 2?" in failure.text and "An answer with a form feed" in failure.text
    assert f"({DOC}, p. 2): q <b>" in failure.text


# --------------------------------------------------------------------------- compare


def _write_run(folder: Path, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    summary = summarise(records)
    summary["refusal_threshold"] = 0.5
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with (folder / "items.jsonl").open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return folder


def _runs(tmp_path: Path) -> tuple[Path, Path]:
    before, after = [], []
    for i in range(40):
        good = dict(key_fact_accuracy=1.0, citation_hit=1.0)
        before.append(_record(f"q{i}", "fact", ["t"], **good))
        # the last 10 items lose their key fact in B; "<script>" is escaped in the HTML
        after.append(
            _record(
                f"q{i}",
                "fact",
                ["t"],
                **(good if i < 30 else dict(key_fact_accuracy=0.0, citation_hit=1.0)),
            )
        )
    after[-1]["question"] = "<script>alert(1)</script>?"
    after[-1]["answer"] = "nothing [1]."
    return _write_run(tmp_path / "a", before), _write_run(tmp_path / "b", after)


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean() -> None:
    values = [1.0] * 30 + [0.0] * 10
    low, high = bootstrap_ci(values) or (0.0, 0.0)
    assert bootstrap_ci(values) == (low, high)
    assert low < 0.75 < high and low > 0.5 and high < 0.95
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0) and bootstrap_ci([]) is None


def test_compare_finds_the_regression_and_the_flipped_items(tmp_path: Path) -> None:
    run_a, run_b = _runs(tmp_path)
    a, b = load_run(run_a), load_run(run_b)
    rows = {row.name: row for row in metric_rows(a, b)}
    kfa = rows["key_fact_accuracy"]
    assert (kfa.a, kfa.b) == (1.0, 0.75) and kfa.verdict == "worse"
    assert rows["citation_hit"].verdict == "same"
    flips = flipped(a, b)
    assert [f.id for f in flips] == [f"q{i}" for i in range(30, 40)]
    assert not any(f.fixed for f in flips)
    assert flipped(b, a)[0].fixed


def test_compare_writes_markdown_and_self_contained_html(tmp_path: Path) -> None:
    run_a, run_b = _runs(tmp_path)
    paths = write_compare(run_a, run_b, tmp_path / "out")
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "| key_fact_accuracy | 1.000 [1.000, 1.000] | 0.750 [" in markdown
    assert "**worse**" in markdown and "10 regressed, 0 fixed" in markdown
    assert "... and" not in markdown or "more in report.html" in markdown
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert page.count("<svg") >= 3 and 'class="threshold"' in page and 'class="cdf"' in page
    assert (
        write_compare(run_a, run_b, tmp_path / "again")["html"].read_text(encoding="utf-8") == page
    )


# --------------------------------------------------------------------------- draft


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The sleep study followed 18 subjects over ten days of deprivation.", True),
        ("Short sentence with 18 words.", False),
        ("fit <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy) is the call here.", False),
        ("See Bates et al. (2015) for the details of the penalized least squares method.", False),
        ("the sentence starts in lower case and so it is probably a fragment of text.", False),
    ],
)
def test_is_prose(text: str, expected: bool) -> None:
    assert is_prose(text) is expected


def test_number_facts_skip_years_references_and_repeats() -> None:
    fact, body = _number_fact("The sleep study followed 18 subjects over ten days.") or ("", "")
    assert fact == "18" and body == "The sleep study followed how many subjects over ten days."
    assert _number_fact("The share was 45% of all fits in the study.") == (
        "45%",
        "The share was what percentage of all fits in the study.",
    )
    assert _number_fact("As shown in Table 12 the method was introduced in 2015.") is None
    assert _number_fact("It has 18 subjects and 18 days.") is None
    assert _number_fact("It has 18 subjects and 20 days.") is None  # two numbers: ambiguous


def test_name_facts_are_not_in_the_title() -> None:
    assert _name_fact("The models are fitted with the package glmmTMB here.", "lme4 paper") == (
        "glmmTMB",
        "The models are fitted with which package here.",
    )
    assert _name_fact("A single routine aeqSurv() handles ties in every function.", "x") == (
        "aeqSurv",
        "which routine handles ties in every function.",
    )
    assert _name_fact("Estimators that are consistent (HAC) are used.", "x") == (
        "HAC",
        "Estimators that are consistent (what abbreviation) are used.",
    )
    assert _name_fact("The models are fitted with glmmTMB in this comparison.", "x") is None
    assert _name_fact("The models are fitted with lme4 here.", "The lme4 package") is None


def test_llm_questions_are_parsed_and_checked() -> None:
    assert parse_question('Sure: {"question": "How many  subjects were followed?"}') == (
        "How many subjects were followed?"
    )
    assert parse_question('{"question": "no question mark"}') is None
    assert parse_question("not json") is None
    assert gives_away("Were 18 subjects followed?", "18")
    assert not gives_away("How many subjects were followed?", "18")


def _documents() -> list[Document]:
    sentences = [
        Sentence("The sleep study followed 18 subjects over ten days of deprivation.", 3),
        Sentence(
            "The new code uses a single routine aeqSurv to deal with ties in all functions.", 4
        ),
        Sentence("The estimates were computed on 250 bootstrap samples of the data set.", 5),
    ]
    text = " ".join(s.text for s in sentences)
    return [Document("file:" + DOC, DOC, "Mixed models in lme4", text, sentences)]


def test_the_llm_words_questions_and_each_is_checked_against_its_source(tmp_path: Path) -> None:
    """A good LLM question is kept; one that states its answer, one about something else and a
    reply without JSON fall back to the offline wording."""
    replies = [
        json.dumps({"question": "How many subjects took part in the lme4 sleep study?"}),
        json.dumps({"question": "Does the aeqSurv routine deal with ties?"}),  # gives it away
        "I cannot help with that.",  # no JSON
    ]
    with FakeOpenAIServer() as srv:
        srv.enqueue(*(Reply(r) for r in replies))
        settings = Settings(llm_base_url=srv.base_url, llm_api_key="test", data_dir=tmp_path)
        drafted = draft_items(_documents(), 4, writer=LLMQuestionWriter(settings))
        prompts = [r.messages[0]["content"] for r in srv.history]
    assert (drafted.llm_written, drafted.llm_rejected, drafted.facts) == (1, 2, 3)
    by_fact = {item.key_facts[0]: item for item in drafted.items if item.type == "fact"}
    assert drafted.near_misses == len(drafted.items) - 3
    assert by_fact["18"].question == "How many subjects took part in the lme4 sleep study?"
    assert "llm" in by_fact["18"].tags and by_fact["18"].gold_pages == {DOC: [3]}
    assert by_fact["aeqSurv"].question.startswith("According to Mixed models")
    assert "offline" in by_fact["aeqSurv"].tags
    assert any('"The sleep study followed 18 subjects' in p for p in prompts)
    assert not acceptable("What is the capital of France, in lme4?", _facts()[0])


def _facts() -> list[Fact]:
    return list(facts_of(_documents()[0]))


def test_offline_draft_asks_for_each_fact_once_with_its_page() -> None:
    facts = _facts()
    assert [(f.fact, f.sentence.page) for f in facts] == [("18", 3), ("aeqSurv", 4), ("250", 5)]
    assert facts[2].question == (
        "According to Mixed models in lme4, the estimates were computed on how many bootstrap "
        "samples of the data set?"
    )


def test_a_document_that_mentions_every_asked_name_scores_exactly_one() -> None:
    """Found in a cross-process rerun of the flow test: the share of names summed a set (order
    set by the process's hash seed) over a list, so 0.6000000000000001 / 0.6 fell below 1.0 in
    some processes and the answerability of one item changed from run to run."""
    from itertools import permutations

    from service.answering.features import NameMatch

    weights = {"Alpha": 0.1, "Beta": 0.2, "Gamma": 0.3}
    for asked in permutations(weights):
        match = NameMatch(list(asked), {n: weights[n] for n in asked}, {"doc": set(weights)})
        assert match.share("doc") == 1.0, asked


def test_compare_reports_the_judges_health(tmp_path: Path) -> None:
    run_a, run_b = _runs(tmp_path)
    summary = json.loads((run_b / "summary.json").read_text(encoding="utf-8"))
    summary["judge_health"] = {
        "judged": 30,
        "failed": 10,
        "not_applicable": 0,
        "failed_share": 0.25,
        "failure_reasons": {"the reply is not JSON": 10},
        "response_format": "json_schema",
    }
    (run_b / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    paths = write_compare(run_a, run_b, tmp_path / "out")
    line = "LLM judge B: judged 30, failed 10 (10 the reply is not JSON), not applicable 0"
    assert line in paths["markdown"].read_text(encoding="utf-8")
    assert line in paths["html"].read_text(encoding="utf-8")
    assert "LLM judge A" not in paths["markdown"].read_text(encoding="utf-8")


def test_the_difference_interval_holds_when_the_runs_score_different_items() -> None:
    """Refusal precision applies to refused items only: A refused items 1 and 3 rightly, B
    items 1 and 2, one wrongly. Pairing only items both runs scored gave Δ [0, 0] for a
    difference of -0.5 (seen comparing rv-dev at top_k 5 and 10)."""
    pairs: list[tuple[float | None, float | None]] = [(1.0, 1.0), (None, 0.0), (1.0, None)] * 10
    low, high = paired_delta_ci(pairs) or (0.0, 0.0)
    assert low <= -0.5 <= high and high < 0
    assert paired_delta_ci([(None, 1.0)]) is None


def test_all_gold_at_5_of_a_multi_item_counts_its_gold_documents() -> None:
    """rv-dev's multi items name their documents by file; their titles as written need not be
    the titles extracted, so the figure goes by gold_docs when the item has them."""
    answer = _answer([], ["a.pdf", DOC, "b.pdf", "c.pdf", "d.pdf", "other.pdf"])
    multi = {
        "item_type": "multi",
        "gold_titles": ["Not The Extracted Title", "Other"],
        "key_facts": ["18"],
        "answer": answer,
    }
    assert m.item_metrics(**multi, gold_docs=[DOC, "b.pdf"])["all_gold_at_5"] == 1.0
    assert m.item_metrics(**multi, gold_docs=[DOC, "other.pdf"])["all_gold_at_5"] == 0.0
    assert m.item_metrics(**multi)["all_gold_at_5"] == 0.0  # by titles, as before

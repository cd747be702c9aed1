"""The user's eval flow end to end, with the real ``citeqa`` command in subprocesses.

A folder of real documents (tests/data/r-vignettes) is ingested by ``citeqa eval draft
--corpus``, which drafts a dataset; the dataset is evaluated (with JUnit), evaluated again and
gated against the first run (passes: same figures), the pytest plugin answers from the same
collection, then a gold document is deleted from the folder (the change), the next run's
incremental ingest drops it and the gate against the first run fails naming the metric; ``citeqa
eval compare`` writes compare.md (also into $GITHUB_STEP_SUMMARY) and report.html, which headless
Chromium renders with its plots (screenshot kept in tests/artifacts/eval-compare.png).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from evals.dataset import load_dataset
from tests.paths import REPO_ROOT
from tests.test_browser import CHROMIUM, browser  # noqa: F401 (the headless Chromium fixture)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

VIGNETTES = REPO_ROOT / "tests" / "data" / "r-vignettes"
EXAMPLE = REPO_ROOT / "docs" / "examples" / "test_my_documents.py"
ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_S = 600


def _env(root: Path, store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITEQA_", "OPENAI_"))}
    env.update(
        CITEQA_DATA_DIR=str(store),
        CITEQA_GENERATOR="extractive",
        HF_HUB_OFFLINE="1",
        GITHUB_STEP_SUMMARY=str(root / "step-summary.md"),
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


def _run(args: list[str], root: Path, store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=root, env=_env(root, store), capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _citeqa(root: Path, *args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "cli", *args], root, store or root / "store")


def _summary(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "summary.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("eval-flow")
    corpus = root / "r-vignettes"
    shutil.copytree(VIGNETTES, corpus, ignore=shutil.ignore_patterns("README.md"))
    out: dict[str, Any] = {"root": root, "corpus": corpus}
    draft = root / "draft.jsonl"
    out["draft"] = _citeqa(
        root, "eval", "draft", "--corpus", str(corpus), "-n", "16", "--out", str(draft)
    )
    assert out["draft"].returncode == 0, out["draft"].stderr
    out["items"] = load_dataset(draft)
    common = ["eval", "--corpus", str(corpus), "--dataset", str(draft)]
    out["a"] = _citeqa(root, *common, "--out", "run-a", "--junit", "run-a/junit.xml")
    out["a2"] = _citeqa(
        root, *common, "--out", "run-a2", "--baseline", "run-a", "--fail-under", "gold_doc_at_5=0.5"
    )
    # The plugin answers from the collection `citeqa eval --corpus` made.
    tests = root / "plugin"
    tests.mkdir()
    shutil.copy(EXAMPLE, tests / EXAMPLE.name)
    (tests / "test_failing.py").write_text(
        "def test_wrong_fact(assert_answer):\n"
        "    assert_answer('How is tied survival time handled?', contains='no such phrase xyz')\n",
        encoding="utf-8",
    )
    (tests / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    out["plugin"] = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "evals.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "--citeqa-corpus",
            str(corpus),
            "-q",
            str(tests),
        ],
        tests,
        root / "store",
    )
    # The change: the most asked-about gold document leaves the folder.
    asked = Counter(doc for item in out["items"] for doc in item.gold_docs)
    out["removed"] = asked.most_common(1)[0][0]
    (corpus / out["removed"]).unlink()
    out["b"] = _citeqa(root, *common, "--out", "run-b", "--baseline", "run-a")
    out["compare"] = _citeqa(root, "eval", "compare", "run-a", "run-b")
    return out


def test_draft_writes_reviewable_items_with_gold_documents_and_pages(flow: dict[str, Any]) -> None:
    items = flow["items"]
    kinds = Counter(item.type for item in items)
    assert kinds["fact"] >= 4 and kinds["unanswerable"] >= 2, kinds
    facts = [item for item in items if item.type == "fact"]
    assert all(item.gold_docs and item.key_facts for item in facts)
    assert len({item.gold_docs[0] for item in facts}) >= 2  # spread over the documents
    pdf = [item for item in facts if item.gold_docs[0].endswith(".pdf")]
    assert pdf and all(item.gold_pages.get(item.gold_docs[0]) for item in pdf)
    assert all(not any(f in item.question for f in item.key_facts) for item in facts)
    assert "review" in flow["draft"].stdout


def test_eval_over_a_corpus_folder_writes_outputs_and_junit(flow: dict[str, Any]) -> None:
    result = flow["a"]
    assert result.returncode == 0, result.stderr
    run_a = flow["root"] / "run-a"
    summary = _summary(run_a)
    assert summary["settings"]["collection"] == "corpus-r-vignettes"
    overall = summary["metrics"]["overall"]
    assert overall["gold_doc_at_5"] is not None and overall["page_accuracy"] is not None
    assert "drafted" in summary["metrics"]["by_tag"]
    suite = ET.parse(run_a / "junit.xml").getroot().find("testsuite")
    assert suite is not None and int(suite.get("tests", "0")) == len(flow["items"])
    failures = suite.findall("testcase/failure")
    assert int(suite.get("failures", "-1")) == len(failures)
    for failure in failures:
        assert "question:" in (failure.text or "") and "expected:" in (failure.text or "")


def test_a_second_run_gives_the_same_figures_and_the_gate_passes(flow: dict[str, Any]) -> None:
    result = flow["a2"]
    assert result.returncode == 0, result.stderr
    assert "gate passed" in result.stdout
    assert "re-embedded" not in result.stderr
    a, a2 = _summary(flow["root"] / "run-a"), _summary(flow["root"] / "run-a2")
    assert a["metrics"] == a2["metrics"] and a["counts"] == a2["counts"]
    items = [
        (flow["root"] / r / "items.jsonl").read_text(encoding="utf-8") for r in ("run-a", "run-a2")
    ]
    strip = [
        [
            {k: v for k, v in json.loads(line).items() if k != "timings_ms"}
            for line in text.splitlines()
        ]
        for text in items
    ]
    assert strip[0] == strip[1]


def test_the_gate_fails_on_a_forced_regression_naming_the_metric(flow: dict[str, Any]) -> None:
    before = _summary(flow["root"] / "run-a")["metrics"]["overall"]["gold_doc_cited"]
    assert before and before > 0.1, "the drafted items must cite their documents at first"
    result = flow["b"]
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"gold doc not in corpus: {flow['removed']!r}" in result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("FAIL gold_doc_cited"))
    assert f"{before:.4f} (baseline) ->" in line and "tolerance" in line
    assert "worst items on gold_doc_cited" in result.stderr
    assert "gate failed" in result.stderr


def test_usage_errors_exit_2(flow: dict[str, Any]) -> None:
    root = flow["root"]
    draft = str(root / "draft.jsonl")
    for args, message in [
        (
            [
                "eval",
                "--dataset",
                str(root / "missing.jsonl"),
                "--collection",
                "corpus-r-vignettes",
            ],
            "missing.jsonl",
        ),
        (["eval", "--dataset", draft, "--collection", "no-such-collection"], "does not exist"),
        (
            [
                "eval",
                "--dataset",
                draft,
                "--collection",
                "corpus-r-vignettes",
                "--fail-under",
                "nonsense=1",
            ],
            "--fail-under",
        ),
        (["eval", "compare", "run-a", str(root / "nowhere")], "not an eval output folder"),
        (["eval", "--corpus", str(root / "nowhere"), "--dataset", draft], "not a folder"),
        (["eval", "--dataset", draft, "--collection", "a__b"], "invalid collection name"),
    ]:
        result = _citeqa(root, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr


def test_compare_writes_the_step_summary_and_a_report(flow: dict[str, Any]) -> None:
    result = flow["compare"]
    assert result.returncode == 0, result.stderr
    root = flow["root"]
    markdown = (root / "run-b" / "compare.md").read_text(encoding="utf-8")
    assert markdown in (root / "step-summary.md").read_text(encoding="utf-8")
    assert "| gold_doc_cited |" in markdown and "regressed" in markdown
    page = (root / "run-b" / "report.html").read_text(encoding="utf-8")
    assert "Flipped items" in page and "<svg" in page


def test_the_pytest_plugin_answers_from_the_collection(flow: dict[str, Any]) -> None:
    result = flow["plugin"]
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # the example passes, the deliberate failure fails
    assert "1 failed" in output and "3 passed" in output, output
    assert "question: How is tied survival time handled?" in output
    assert "the answer does not contain 'no such phrase xyz'" in output
    assert "citations:" in output


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian Chromium is not installed")
def test_the_report_renders_offline_with_its_plots(
    flow: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """No network: the browser fixture sends every host but loopback to a closed port."""
    from selenium.webdriver.common.by import By

    chromium = request.getfixturevalue("browser")
    chromium.set_window_size(1280, 2400)
    report = flow["root"] / "run-b" / "report.html"
    chromium.get(report.as_uri())
    figures = chromium.find_elements(By.CSS_SELECTOR, ".plots svg")
    assert len(figures) >= 3
    assert all(f.size["width"] > 300 and f.size["height"] > 100 for f in figures)
    assert chromium.find_elements(By.CSS_SELECTOR, "svg rect.bar")
    assert chromium.find_elements(By.CSS_SELECTOR, "svg circle.dot")
    assert chromium.find_elements(By.CSS_SELECTOR, "svg polyline.cdf")
    assert chromium.find_elements(By.CSS_SELECTOR, ".flip")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "eval-compare.png"
    assert chromium.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000

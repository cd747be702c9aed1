"""The refusal policy and its per-collection model: who may refuse before an LLM call, the
evidence builder's per-request state, the model stored with the collection, and rules that
hold of English questions in general."""

from __future__ import annotations

import dataclasses
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.text import idf_table
from evals.calibrate import PRIOR, PRIOR_DATASET, calibrate, load_prior, material, prior_collection
from evals.dataset import load_dataset
from ingest.run import ingest_paths
from service.answering import answerability
from service.answering.answerability import FALLBACK, AnswerabilityModel
from service.answering.corpus import CorpusStats, abbreviations
from service.answering.engine import Engine, build_engine
from service.answering.evidence import quotable
from service.answering.question import Question, expects_number, stated_numbers
from service.answering.refusal import missing_answer_type
from tests.evidence_parts import candidate, titled_hit
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.topics import write_topic_documents

VIGNETTES = Path(__file__).parent / "data" / "r-vignettes"
NEAR_MISS = "How many TPU chips were used to train ViT-22B?"
UNKNOWN_NAME = "What top-1 accuracy does EfficientNet-B7 reach on Places365?"


@pytest.fixture
def llm_engine(
    corpus_settings: Settings, embedder: Embedder, engine: Engine, fake_llm: FakeOpenAIServer
) -> Engine:
    settings = corpus_settings.model_copy(
        update={"generator": "llm", "llm_base_url": fake_llm.base_url, "llm_max_attempts": 1}
    )
    return build_engine(settings, embedder=embedder, index=engine.index)


@pytest.mark.integration
def test_with_an_llm_only_retrieval_level_signals_refuse_before_the_call(
    engine: Engine, llm_engine: Engine, fake_llm: FakeOpenAIServer
) -> None:
    """The extractive engine refuses the near miss by its own model and rules; with an LLM
    the prompt decides it (the fake is asked, and its cannot-answer reply is the refusal),
    while a name no document mentions is refused without a call."""
    assert not engine.prepare(NEAR_MISS).answerable
    fake_llm.enqueue(Reply("The provided sources do not contain the answer."))
    asked = llm_engine.ask(NEAR_MISS)
    assert len(fake_llm.history) == 1, "the LLM decides what retrieval cannot"
    assert asked.refused

    refused = llm_engine.ask(UNKNOWN_NAME)
    assert refused.refused and "Places365" in refused.answer
    assert len(fake_llm.history) == 1, "nothing relevant retrieved: no call"


def test_concurrent_builds_keep_their_own_statistics(engine: Engine) -> None:
    """The threadpool shares one EvidenceBuilder: each build scores with the statistics of
    the snapshot its own retrieval came from (here: two collections), and leaves nothing of
    the request on the builder."""
    questions = [
        "What learning rate was used to train DeepSeek-V3?",
        "What is DeepNet?",
        "Which optimizer does the Lion paper propose?",
        NEAR_MISS,
    ]
    texts = ["Kettles boil water in three minutes.", "A kettle has a lid and a spout."]
    other = CorpusStats.build(texts, ["k1", "k2"])
    retrievals = [engine.retriever.retrieve_hits(Question.parse(q), 5) for q in questions]
    retrievals += [dataclasses.replace(r, stats=other) for r in retrievals]
    builder = engine.evidence
    state = dict(vars(builder))

    def features(i: int) -> dict[str, float]:
        return builder.build(retrievals[i % len(retrievals)], model=FALLBACK).features

    expected = [features(i) for i in range(len(retrievals))]
    assert expected[0] != expected[len(questions)], "the two collections score apart"
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(features, range(len(retrievals) * 10)))
    assert got == expected * 10
    assert vars(builder).keys() == state.keys()


def test_the_model_is_stored_with_the_collection_and_read_by_another_engine(
    fresh_settings: Settings, embedder: Embedder
) -> None:
    first = build_engine(fresh_settings, embedder=embedder)
    assert not first.evidence.model().fitted  # no fit yet: the fallback
    model = AnswerabilityModel({"bias": 9.0}, 0.42, True, {"documents": 7})
    answerability.store(first.index.chunks, model)
    replica = build_engine(fresh_settings, embedder=embedder)  # another process, say
    assert replica.evidence.model() == model
    assert first.index.chunks.metadata.get("embed_model") == embedder.name  # kept beside it


def test_a_refit_follows_material_changes_only() -> None:
    fitted = AnswerabilityModel({}, 0.3, True, {"documents": 100})
    assert material(FALLBACK, 100, 0)  # no fit yet
    assert not material(fitted, 100, 3)
    assert material(fitted, 100, 10)
    assert material(fitted, 120, 0)  # grown by others since


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The function takes one argument.", {"1"}),
        ("Twenty datasets and 3 models.", {"20", "3"}),
        ("No number here.", set()),
        ("One of them can do it; one can see that.", set()),  # no count: a stop word follows
    ],
)
def test_number_words_are_numbers(text: str, expected: set[str]) -> None:
    assert stated_numbers(text) == expected


@pytest.mark.parametrize(
    ("question", "numeric"),
    [
        ("How many arguments does the function take?", True),
        ("What percentage of the variance is explained?", True),
        ("What are the steps to reset the router?", False),
        ("What error does the parser raise?", False),
    ],
)
def test_a_number_is_expected_only_where_english_asks_for_one(question: str, numeric: bool) -> None:
    assert expects_number(question) == numeric


def test_abbreviations_the_corpus_defines_are_spellings_of_one_name() -> None:
    texts = [
        "The General Data Protection Regulation (GDPR) applies to all processors.",
        "We fit generalized linear mixed models (GLMMs) with lme4.",
        "This led to an algorithm which I call the not-safe-type-three (NSTT).",
        "A long short-term memory (LSTM) network and a Mixture-of-Depths (MoD) layer.",
        "The cost-effective (CE) plan (Smith et al.) and the bad-plan (XY) fail.",
    ]
    found = abbreviations(texts)
    assert found["gdpr"] == {"general data protection regulation"}
    assert found["glmms"] == {"generalized linear mixed models"}
    # the parts of a hyphenated word count as words
    assert found["nstt"] == {"not-safe-type-three"}
    assert found["lstm"] == {"long short-term memory"}
    assert found["mod"] == {"mixture-of-depths"}
    assert found["ce"] == {"cost-effective"}
    assert "xy" not in found and "smith" not in found
    stats = CorpusStats.build(texts, ["a", "b", "c", "d", "e"])
    assert stats.mentions("the general data protection regulation says so", "GDPR")
    assert not stats.mentions("the data says so", "GDPR")
    assert (stats.idf, stats.default_idf) == idf_table(texts)  # BM25's IDF, read in one pass
    assert stats.documents == 5 and stats.name_documents("lme4") == 1


@pytest.mark.integration
def test_an_ingest_that_changes_the_collection_fits_and_stores_its_model(
    fresh_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    from ingest.run import ingest_paths

    folder = write_topic_documents(tmp_path / "docs")
    ingest_paths(fresh_settings, [folder], embedder=embedder, calibrate=True)
    engine = build_engine(fresh_settings, embedder=embedder)
    model = engine.evidence.model()
    assert model.fitted and model.figures["documents"] == 6
    assert model.figures["generated_answerable"] > 0 and model.figures["generated_near_miss"] > 0
    assert 0.0 <= model.figures["cross_validated_refusal_recall"] <= 1.0
    # unchanged: no refit (the stored model stays as it is)
    answerability.store(engine.index.chunks, dataclasses.replace(model, threshold=0.123))
    ingest_paths(fresh_settings, [folder], embedder=embedder, calibrate=True)
    assert answerability.load(engine.index.chunks).threshold == 0.123


@pytest.fixture(scope="module")
def tied_times(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    """A real store of one r-vignettes PDF ("Roundoff error and Tied Times", survival)."""
    folder = tmp_path_factory.mktemp("tied-times")
    shutil.copy(VIGNETTES / "survival-tiedtimes.pdf", folder)
    settings = Settings(data_dir=tmp_path_factory.mktemp("store"), generator="extractive")
    [summary] = ingest_paths(settings, [folder], embedder=embedder)
    assert summary.added == 1
    return build_engine(settings, embedder=embedder)


@pytest.mark.parametrize(
    ("question", "missing"),
    [
        # the vignette names the argument and SAS, but no default of it and no SAS release
        ("What is the default value of the timefix argument in coxph.control?", "default"),
        ("In which SAS release was the phreg round-off tied-times problem fixed?", "version"),
        # what it does state: what timefix is for, the survival version that addressed it
        ("What does the timefix argument of coxph.control do?", ""),
        ("In which survival version was the tied-times issue addressed for coxph?", ""),
    ],
)
def test_a_default_or_a_version_the_document_does_not_state_is_refused(
    tied_times: Engine, question: str, missing: str
) -> None:
    evidence = tied_times.prepare(question, 5)
    assert evidence.missing_answer_type == missing
    if missing:
        assert not evidence.answerable


def test_an_answer_may_quote_the_best_ones_neighbours_and_its_documents_best_sentences() -> None:
    """The default rule reads what an answer may quote: the default a vignette states two
    sentences before the example call that scores best ("the default is to take from =
    0.15") counts; a sentence of another document, or one of the same document that scores
    below its best three, does not."""
    hits = [titled_hit("a", "strucchange"), titled_hit("b", "other")]
    sentences = [
        candidate(0, "Fractions of the sample can be given; the default is from = 0.15.", 2.0),
        candidate(0, "These are the two trimming parameters.", 0.4),
        candidate(0, "> fs <- Fstats(model, from = c(1990, 1))", 3.0),
        candidate(0, "This returns an object of class Fstats.", 1.0),
        candidate(0, "A plot method draws the F statistics.", 0.9),
        candidate(1, "The default is from = 0.25.", 2.5),
    ]
    for position, sentence in enumerate(sentences[:5]):
        sentence.position = position
    near = quotable(sentences, hits, best=sentences[2])
    assert near == [sentences[i].text for i in (1, 2, 3, 0)]
    assert Question.parse("Fstats default from value?").defaulted == "from"
    question = Question.parse("What is the default from value in Fstats?")
    assert missing_answer_type(question, "", sentences[2].text, "", near) == ""
    assert missing_answer_type(question, "", sentences[2].text, "", near[:3]) == "default"


@pytest.mark.integration
def test_citeqa_ingest_reports_the_fit_after_the_summary_and_only_when_material(
    fresh_settings: Settings,
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`citeqa ingest` fits as a stage of its own, after the ingest's summary, and prints
    the fit's cross-validated figures and time, with the shipped prior's labelled questions;
    without a material change, or with --no-calibrate, nothing is fit."""
    from cli.main import main

    monkeypatch.setenv("CITEQA_DATA_DIR", str(fresh_settings.data_dir))
    folder = write_topic_documents(tmp_path / "docs")
    assert main(["ingest", str(folder)]) == 0
    printed = capsys.readouterr().out
    summary, fit = printed.index("added 6"), printed.index("answerability fit on 6 documents")
    assert summary < fit and "cross-validated near misses refused" in printed[fit:], printed
    assert re.search(r"\(\d+\.\d s\)", printed[fit:]), printed
    engine = build_engine(fresh_settings, embedder=embedder)
    model = answerability.load(engine.index.chunks)
    assert model.fitted and model.figures["documents"] == 6
    assert model.figures["labelled"] == len(load_dataset(PRIOR_DATASET))  # the prior
    # nothing changed: no refit, the stored model stays as it is
    answerability.store(engine.index.chunks, dataclasses.replace(model, threshold=0.123))
    assert main(["ingest", str(folder)]) == 0
    assert "answerability" not in capsys.readouterr().out
    assert answerability.load(engine.index.chunks).threshold == 0.123
    # a material change with --no-calibrate: no refit either
    (folder / "kettles.md").write_text("# Kettle Notes\n\nKettles whistle when water boils.\n")
    (folder / "lamps.md").unlink()
    assert main(["ingest", "--no-calibrate", str(folder)]) == 0
    assert "answerability" not in capsys.readouterr().out
    assert answerability.load(engine.index.chunks).threshold == 0.123


def test_the_shipped_prior_is_the_development_set_over_the_current_features() -> None:
    """The prior every fit adds holds a row per question of the development set, over the
    features the engine computes now: features changed without `python -m evals.calibrate
    --write-prior` leave it unused (this test fails first)."""
    names = [n for n in FALLBACK.weights if n != "bias"]
    prior = load_prior(names, PRIOR)
    assert prior is not None, "citeqa/assets/answerability-prior.json is stale: --write-prior"
    dataset = load_dataset(PRIOR_DATASET)
    assert len(prior.y) == len(dataset)
    assert prior.y.tolist() == [float(item.type != "unanswerable") for item in dataset]
    reordered = load_prior(names[::-1], PRIOR)  # columns follow the names asked for
    assert reordered is not None and (reordered.x == prior.x[:, ::-1]).all()
    assert load_prior([*names[1:], "another_feature"], PRIOR) is None  # not used


def test_the_prior_s_own_collection_keeps_the_default_model(
    engine: Engine, tied_times: Engine
) -> None:
    """The bundled corpus, whose labelled questions the prior is, keeps the default model (its
    fit on them); another collection is not taken for it."""
    assert prior_collection(engine)
    assert calibrate(engine) is None
    assert not prior_collection(tied_times)

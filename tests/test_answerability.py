"""The pieces of the refusal decision: names in a question, answer types, generated near-miss
questions and the calibration that fits the answerability model."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from citeqa.embedding import Embedder
from citeqa.text import mentions, name_keys, names, term_set
from evals.calibrate import (
    Features,
    class_weights,
    cross_validate,
    fit_model,
    fit_with,
    predict,
    threshold_for,
)
from evals.nearmiss import (
    COUNT_TEMPLATE,
    DETAIL_TEMPLATES,
    Paper,
    answerable_questions,
    near_miss_questions,
    paper_name,
    reworded_questions,
)
from evals.paraphrase import Thesaurus
from service.answering.corpus import CorpusStats
from service.answering.engine import Engine
from service.answering.features import NameMatch, counts_stated, numbers_next_to
from service.answering.question import Question, counted_things, focus_phrase
from service.answering.refusal import missing_answer_type
from service.answering.retrieval import Hit


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How many TPU chips were used to train ViT-22B?", ["TPU", "ViT-22B"]),
        ("What FVD does it reach on Kinetics-700?", ["FVD", "Kinetics-700"]),
        ("How much time did DeepSeek's 671B-parameter model take?", ["DeepSeek"]),
        ("What accuracy on the 21k-class set with 8-bit weights?", []),
        ("On how many hours of audio was OpenAI's Whisper trained?", ["OpenAI", "Whisper"]),
        ("Which method is best? Dropout or not?", []),  # capitals that start sentences
    ],
)
def test_names_finds_what_a_question_names(question: str, expected: list[str]) -> None:
    assert names(question) == expected


def test_mentions_matches_whole_names_and_hyphenated_parts() -> None:
    lowered = "we evaluate on kinetics-400 and train deepseek-v3 with next blocks.".lower()
    assert mentions(lowered, "Kinetics-400")
    assert mentions(lowered, "deepseek-v3")
    assert mentions(lowered, "Next-Block")  # its parts, as words
    assert not mentions(lowered, "Kinetics-700")
    assert not mentions(lowered, "DeepSeek-V")  # not a prefix of a longer name
    assert not mentions("deepnets-1m is a dataset", "DeepNet")


@pytest.mark.parametrize(
    ("question", "document", "missing"),
    [
        ("In what year was EfficientNet published?", "EfficientNet scales depth.", "year"),
        ("In what year was EfficientNet published?", "Presented at ICML 2019.", ""),
        ("When was GLM-130B released?", "GLM-130B is a bilingual model.", "year"),
        # who wrote it: no rule (a PDF names its authors without the word "author")
        ("Who are the authors of the Switch Transformers paper?", "Switch is sparse.", ""),
        ("Who wrote it?", "Written by Ada Lovelace.", ""),
        ("What accuracy does it reach?", "It reaches 84.3%.", ""),
        ("How many videos does VNBench hold?", "VNBench probes long videos.", "number"),
        ("How many videos does VNBench hold?", "VNBench holds 1,350 videos.", ""),
        # several things: the count may be in any sentence, but it must be there
        ("Compare: how many layers do both use?", "They use 152 and 1,001 layers. Both.", ""),
        ("Compare: how many layers do both use?", "Both are deep.", "number"),
        ("Under which license is X released?", "Code is at https://github.com/x.", "license"),
        ("Under which license is X released?", "X is released under the MIT License.", ""),
        ("What baseline MLLM did the MVBench authors build?", "They build VideoChat2.", ""),
        # a unit asked for, and a number written in it
        ("What latency (in milliseconds) does X reach?", "X runs at 12 ms per frame.", ""),
        ("What latency (in milliseconds) does X reach?", "X is 2.5x faster than Y.", "unit"),
        # ... in another unit of the same measure: "0.3 seconds" is 300 ms
        ("How long does X take, in milliseconds?", "X makes a map in 0.3 seconds.", ""),
        ("How many hours of video does X hold?", "X holds 76.34 minutes of video.", ""),
        ("How much memory in GB does X need?", "X needs 512 MB of memory.", ""),
        ("How much memory in GB does X need?", "X needs 40 A100 GPUs.", "unit"),
        ("How many GPU hours did X take?", "X took 2.788M H800 GPU hours.", ""),
        ("How many dB does X gain?", "X gains 1.5 dB PSNR.", ""),
        ("What PSNR gain in dB does X report?", "X improves PSNR by 3%.", "unit"),
        # "how long did it take" asks for a duration, not any number
        ("How long did X's training take?", "X needs 2.788M H800 GPU hours in all.", ""),
        ("How long did X's training take?", "X is trained on 14.8 trillion tokens.", "unit"),
        ("How long is X's context window?", "X reads 128K tokens.", ""),  # a length
        # a kind of thing is no longer a rule of its own: the model weighs it
        ("Which GPUs was Dyn-Perceiver timed on?", "Dyn-Perceiver is fast on GPUs.", ""),
        # "which one performed best" is answered by a name the question does not give
        ("Which method performed best on X?", "We evaluate 16 methods on X.", "name"),
        ("Which method performed best on X?", "FOSTER performs best on X.", ""),
        ("Which model scored highest?", "Results are at https://github.com/Org/X.", "name"),
        # a count in words: "one argument"
        ("How many arguments does f take?", "The function f takes one argument.", ""),
        # the asked size, variant, setting or year: stated, in any writing, or not at all
        ("What FVD does a one-billion-parameter X get?", "X scales from 700M to 3B.", "qualifier"),
        ("What FVD does a one-billion-parameter X get?", "The 1B X gets FVD 60.", ""),
        ("What FVD does the 3B-parameter X get?", "X scales from 700M to 3 billion.", ""),
        ("What AUC does the ResNet-50 baseline reach?", "A ResNet-18 reaches 0.95.", "qualifier"),
        ("What top-1 does a depth of only six reach?", "A depth of 12 reaches 80%.", "qualifier"),
        ("What top-1 does a depth of only six reach?", "With six layers it is 75%.", ""),
        ("How many packages used zoo in 2020?", "In 2019, 40 packages used zoo.", "qualifier"),
        # a number the question offers as a bound is no qualifier
        ("Does X reach more than 50% accuracy?", "X reaches 61% accuracy.", ""),
        # a version of what is asked about
        ("In which SAS release was it fixed?", "Fixed in survival version 2.40.", "version"),
        ("In which SAS release was it fixed?", "SAS fixed it in release 9.4.", ""),
        ("Since which version can glmnet fit it?", "Since version 4.1 glmnet fits it.", ""),
        # a default is said to be one
        ("What is the default of timefix?", "The timefix argument fixes ties.", "default"),
        ("What is the default of timefix?", "timefix defaults to TRUE.", ""),
        # ... of the thing asked about, not of another one
        (
            "What is the default threshold thresh?",
            "epsnr: threshold; factory default 1e-8.",
            "default",
        ),
        ("What is the default threshold thresh?", "thresh: threshold; default 1e-7.", ""),
    ],
)
def test_missing_answer_type(question: str, document: str, missing: str) -> None:
    # the document's one sentence is the best sentence here
    assert missing_answer_type(Question.parse(question), document, document) == missing


CORPUS = [
    Paper("FooNet: Fast Nets", "FooNet reaches 80% on ImageNet with a learning rate of 0.1."),
    Paper("BarFormer: Long Context", "BarFormer is trained on 300 GPUs and scores 70 on MMLU."),
    Paper("Baz: A Study", "Baz improves MMLU and ImageNet results over the authors' baseline."),
]


def test_generated_questions_ask_what_the_document_states_or_never_mentions() -> None:
    near = near_miss_questions(CORPUS, per_paper=30)
    assert near == near_miss_questions(CORPUS, per_paper=30)  # deterministic
    assert {q.type for q in near} == {"unanswerable"}
    for paper in CORPUS:
        name = paper_name(paper.title)
        known = term_set(f"{paper.title} {paper.text}")
        for item in near:
            if f" {name} " in item.question or item.question.endswith(f"{name}?"):
                asked = item.question.replace(name, "")
                detail = term_set(asked, drop_question_words=True) - term_set(
                    " ".join((*DETAIL_TEMPLATES, COUNT_TEMPLATE))
                )
                assert not detail & known or "report on" in item.question, item.question
    assert "What does FooNet report on MMLU?" in [q.question for q in near]
    assert not any("Baz report on" in q.question for q in near), "Baz mentions both"
    answerable = answerable_questions(CORPUS, per_paper=30)
    assert {q.type for q in answerable} == {"fact"}
    assert any("FooNet" in q.question and "learning rate" in q.question for q in answerable)
    for item in answerable:
        paper = next(p for p in CORPUS if p.title in item.gold_titles)
        assert term_set(item.key_facts[0]) <= term_set(paper.text)


VALUES = [
    Paper("FooNet: Fast Nets", "FooNet uses a learning rate of 0.1 and evaluates on Kinetics-600."),
    Paper("BarFormer: Long", "BarFormer is trained with a batch size of 256 on 8 GPUs."),
    Paper("Baz: A Study", "Baz tunes the learning rate and the batch size; it needs 4 GPUs."),
]


def test_near_misses_ask_for_values_never_stated_and_names_never_mentioned() -> None:
    """Near misses like real ones: a setting the document mentions but gives no value for
    (while it states other numbers), and a neighbouring version of a name it mentions; the
    answerable twin asks for a value the document states."""
    near = [q.question for q in near_miss_questions(VALUES, per_paper=5)]
    assert "What learning rate does Baz use?" in near  # mentioned, no number next to it
    assert "What batch size does Baz use?" not in near  # "batch size; it needs 4 GPUs"
    assert any(q.startswith("What does FooNet report on Kinetics-") for q in near)
    assert "What does FooNet report on Kinetics-600?" not in near
    answerable = answerable_questions(VALUES, per_paper=5)
    asked = {q.question: q.key_facts for q in answerable}
    assert asked["What learning rate does FooNet use?"] == ["0.1"]
    assert asked["What batch size does BarFormer use?"] == ["256"]


def test_paper_name_is_how_a_question_would_name_the_paper() -> None:
    assert paper_name("DeepSeek-V3 Technical Report") == "DeepSeek-V3 Technical Report"
    assert paper_name("FooNet: Fast Nets") == "FooNet"
    assert paper_name("Scaling Vision Transformers to 22 Billion Parameters (ViT-22B)") == (
        "ViT-22B"
    )
    assert paper_name("Deep Networks with Stochastic Depth and More") == (
        'the document "Deep Networks with Stochastic Depth and More"'
    )


def test_class_weights_balance_the_classes_and_the_generated_share() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    generated = np.array([False, False, False, False, True, True, True])
    weight = class_weights(y, generated, share=0.25)
    assert weight[y == 1].sum() == pytest.approx(0.5)
    assert weight[generated].sum() == pytest.approx(0.125)
    assert weight[(y == 0) & ~generated].sum() == pytest.approx(0.375)


def test_calibration_separates_separable_data_and_cross_validates_it() -> None:
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(1.0, 0.2, (60, 2)), rng.normal(-1.0, 0.2, (20, 2))]
    y = np.r_[np.ones(60), np.zeros(20)]
    gx = rng.normal(-1.0, 0.2, (40, 2))
    w = fit_with(x, y, gx, share=0.5, steps=3000)
    p = predict(w, x)
    threshold = threshold_for(p, y, 0.05)
    assert np.mean(p[y == 0] < threshold) == 1.0
    assert np.mean(p[y == 1] < threshold) <= 0.05
    xs, ys = np.vstack([x, gx]), np.r_[y, np.zeros(len(gx))]
    generated = np.r_[np.zeros(len(y), dtype=bool), np.ones(len(gx), dtype=bool)]
    recall, false_refusal = cross_validate(xs, ys, generated, 0.5, 0.05, folds=4, repeats=2)
    assert recall == 1.0 and false_refusal <= 0.05


def test_questions_a_rule_refuses_leave_the_threshold_its_own_budget() -> None:
    """A tenth of the answerable questions refused by a rule (as a generated question can
    be) must not drive the threshold to zero: the model still refuses the near misses it
    separates, at few false refusals of the questions no rule refuses."""
    rng = np.random.default_rng(2)
    x = np.r_[rng.normal(1.0, 0.2, (80, 2)), rng.normal(-1.0, 0.2, (60, 2))]
    y = np.r_[np.ones(80), np.zeros(60)]
    ruled = np.zeros(len(y), dtype=bool)
    ruled[:8] = True  # answerable, refused by a rule whatever the model says
    model = fit_model(Features(["a", "b"], x, y, ruled), np.ones(len(y), dtype=bool))
    assert model.figures["in_sample_refusal_recall"] >= 0.9
    assert model.figures["cross_validated_refusal_recall"] >= 0.9
    assert model.figures["cross_validated_false_refusal"] <= 0.2  # the rules' 0.1 included


def test_a_named_thing_the_corpus_never_mentions_is_refused(engine: Engine) -> None:
    """The same question about a benchmark the corpus has and one it never mentions."""
    known = engine.prepare("What top-1 accuracy does EfficientNet-B7 reach on ImageNet?", 5)
    unknown = engine.prepare("What top-1 accuracy does EfficientNet-B7 reach on Places365?", 5)
    assert known.features["names_missing_all"] == 0.0
    assert unknown.features["names_missing_all"] == 1.0
    assert known.unknown_names == [] and known.answerable
    assert unknown.unknown_names == ["Places365"] and not unknown.answerable
    answer = engine.ask("What top-1 accuracy does EfficientNet-B7 reach on Places365?")
    assert answer.refused and "No document mentions Places365." in answer.answer


@pytest.mark.parametrize(
    ("question", "read_as", "fact"),
    [
        ("How many videos were filmed for the Perseption Test?", "Perception", "11.6k"),
        ("How many chaptered videos does VidChapetrs-7M hold?", "VidChapters-7M", "817K"),
    ],
)
def test_a_slip_in_a_long_name_is_read_as_the_name_the_corpus_writes(
    engine: Engine, question: str, read_as: str, fact: str
) -> None:
    evidence = engine.prepare(question, 5)
    assert evidence.unknown_names == [] and read_as in evidence.question.text
    answer = engine.ask(question)
    assert not answer.refused and fact in answer.answer


@pytest.mark.parametrize(
    ("question", "unknown"),
    [
        ("What top-1 accuracy does EfficientNet-B9 reach?", ["EfficientNet-B9"]),  # a digit
        ("What box AP does EfficientDet reach on COCO?", ["EfficientDet"]),  # a capital
        ("How does Mixtral score on MMLU?", ["Mixtral", "MMLU"]),  # short: "MMMU" is another
    ],
)
def test_a_name_a_digit_or_a_short_name_away_is_not_a_slip(
    engine: Engine, question: str, unknown: list[str]
) -> None:
    evidence = engine.prepare(question, 5)
    assert evidence.unknown_names == unknown and evidence.question.text == question
    assert not evidence.answerable


RETINOPATHY = "referable diabetic retinopathy reach on the combined test set"


@pytest.mark.parametrize(
    ("question", "missing"),
    [
        # near misses: the paper reports another size, variant or setting than the asked one
        ("What FVD does a one-billion-parameter Next-Block Prediction model reach?", "qualifier"),
        (f"What AUC did the ResNet-50 baseline for {RETINOPATHY}?", "qualifier"),
        ("How much does FastV cut the FLOPs of LLaVA-1.5-7B?", "qualifier"),
        (
            "With a depth of only six, what ImageNet top-1 does a non-deep network reach?",
            "qualifier",
        ),
        ("For a 70B model, how much does InstInfer improve throughput over FlexGen?", "qualifier"),
        # the paper's sentence states the number of a sibling variant (Apollo-3B) only
        ("What score does Apollo-7B get on LongVideoBench?", "qualifier"),
        # the same questions about what the papers report, in their own or other writing
        ("What FVD does the 3-billion-parameter Next-Block Prediction model reach?", ""),
        (f"What AUC did the ResNet18 baseline for {RETINOPATHY}?", ""),
        ("With a depth of just 12, what ImageNet top-1 does a non-deep network reach?", ""),
        ("For a 13B model, how much does InstInfer improve throughput over FlexGen?", ""),
        ("What score does Apollo-3B get on LongVideoBench?", ""),
        ("What score does Apollo-7B get on MLVU?", ""),
        # a number offered as a bound is not asked to be stated
        ("Does InstInfer improve throughput by more than 5 times over FlexGen?", ""),
    ],
)
def test_a_question_about_a_size_or_variant_the_paper_does_not_report_is_refused(
    engine: Engine, question: str, missing: str
) -> None:
    evidence = engine.prepare(question, 5)
    assert evidence.missing_answer_type == missing
    assert evidence.answerable is not bool(missing)


@pytest.mark.parametrize(
    ("question", "unknown"),
    [
        ("What does the nnetar() function of Dyn-Perceiver fit?", ["nnetar()"]),
        ("Which backbone does model.predict_exits of Dyn-Perceiver use?", ["model.predict_exits"]),
        ("How is the `stochastic_exit` flag of Dyn-Perceiver set?", ["stochastic_exit"]),
        ("Where is the Dynamic_Perceiver code released?", []),  # the corpus links to it
    ],
)
def test_an_identifier_the_corpus_never_mentions_is_refused(
    engine: Engine, question: str, unknown: list[str]
) -> None:
    """Names written as code (a call, a dotted or snake_case name, a word quoted as code)
    are looked up like any other name."""
    evidence = engine.prepare(question, 5)
    assert evidence.unknown_names == unknown
    if unknown:
        assert not evidence.answerable


@pytest.mark.parametrize(
    "question",
    [
        "How does the Human Eval benchmark score DeepSeek-Coder?",  # "Human-Eval" in the corpus
        "How many A100s does the improved LLaVA baseline train on?",  # a plural of "A100"
        "Which ResNet-based baseline detects diabetic retinopathy?",  # "based" is a word
    ],
)
def test_names_spelled_differently_from_the_corpus_are_known(engine: Engine, question: str) -> None:
    assert engine.retriever.unknown_names(Question.parse(question)) == []


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("Kinetics-700", ["kinetics700"]),  # a version is part of the name
        ("English-to-German", ["english", "german"]),
        ("dilated-ResNet", ["resnet"]),
        ("T3-enhanced", []),  # too short to tell
        ("Human-Eval", ["human", "eval"]),
    ],
)
def test_name_keys(name: str, keys: list[str]) -> None:
    assert name_keys(name) == keys


@pytest.mark.parametrize(
    ("question", "things"),
    [
        ("How many TPU chips were used to train ViT-22B?", ["TPU chips"]),
        ("How many GPUs, and of which type, were used, and for how many days?", ["GPUs", "days"]),
        ("On how many tokens was Falcon2-11B trained?", ["tokens"]),
        ("How many times fewer parameters does it need?", []),  # a ratio, not a count
        ("DeepNet: number of warmup steps?", ["warmup steps"]),
        ("What is the number of layers with learnable weights?", ["layers"]),
        ("It uses a number of tricks. Which ones?", []),
        ("As the number of entries shrinks with depth, how much faster is it?", []),
        ("What is the total number of GPUs used?", ["GPUs"]),
        ("How much memory does it save?", []),
    ],
)
def test_counted_things(question: str, things: list[str]) -> None:
    assert counted_things(question) == things


def test_a_count_must_stand_next_to_what_it_counts() -> None:
    assert counts_stated(["TPU chips"], "ViT-22B was trained on 6,144 TPU v4 chips.")
    assert counts_stated(["attention heads"], "Each layer has 128 heads.")
    assert not counts_stated(["attention heads"], "A single layer is 3.1x faster on a CPU.")
    assert counts_stated([], "No count is asked.")
    # the model states numbers, none of them a count of chips: refused by rule
    question = "How many TPU chips were used to train ViT-22B?"
    document = "ViT-22B has 22B parameters and reaches 89.5% on ImageNet."
    assert missing_answer_type(Question.parse(question), document, document) == "number"


def _stats(**held: int) -> CorpusStats:
    """Statistics of a collection of 100 documents, ``held[term]`` of which hold the term
    (and each of its terms: "video-mme" stands for "video", "mme" too)."""
    freq = {term: n for name, n in held.items() for term in term_set(name)}
    idf = {t: math.log(1 + (100 - n + 0.5) / (n + 0.5)) for t, n in freq.items()}
    return CorpusStats(idf, math.log(1 + 100.5 / 0.5), freq, 100)


def _hit(doc_id: str, text: str) -> Hit:
    return Hit(
        chunk_id=doc_id, doc_id=doc_id, title=doc_id, text=text, score=1.0, url="", metadata={}
    )


def test_name_match_weighs_rare_names_and_spots_an_answer_about_another_paper() -> None:
    hits = [
        _hit("glm", "GLM-130B runs inference on 8 GPUs."),
        _hit("tinyvit", "TinyViT reaches 84.8% with 21M parameters."),
        _hit("other", "Training used 64 GPUs for a week."),
    ]
    match = NameMatch.find(
        Question.parse("How many GPUs were used to train TinyViT?"),
        hits,
        _stats(gpus=60, tinyvit=1),
    )
    assert match.asked == ["GPUs", "TinyViT"]
    assert match.share("tinyvit") > 0.5 > match.share("glm") > 0
    assert match.elsewhere("glm") and not match.elsewhere("tinyvit")
    assert match.unmentioned() == []
    nothing = NameMatch.find(Question.parse("What is dropout?"), hits, _stats())
    assert nothing.share("glm") == 1.0 and not nothing.elsewhere("glm")
    # TinyViT is rare: an answer from the GLM paper is about another paper
    assert match.rare_elsewhere("glm") and not match.rare_elsewhere("tinyvit")


def test_names_split_between_papers_make_a_question_about_several() -> None:
    hits = [
        _hit("apollo", "Apollo-7B reaches 63.3 on Video-MME."),
        _hit("t3", "T3 lifts LongVA-7B to 49.7 on Video-MME."),
    ]
    stats = _stats(**{"video-mme": 4, "apollo-7b": 1, "longva-7b": 1})
    question = "What Video-MME numbers are reported for Apollo-7B and for LongVA-7B?"
    match = NameMatch.find(Question.parse(question), hits, stats)
    assert match.split()
    assert match.elsewhere("t3") and not match.rare_elsewhere("t3")  # both papers are asked
    one = NameMatch.find(Question.parse("What does Apollo-7B reach?"), hits, stats)
    assert not one.split() and one.rare_elsewhere("t3")


def test_numbers_next_to_what_a_question_asks_about() -> None:
    """The sentence scoring's bonus for numeric questions: of two sentences with numbers, the
    one that states a number next to the asked detail ("samples")."""
    asked = term_set("How large is MEGA-Bench in samples?", drop_question_words=True)
    assert numbers_next_to(asked, "We collected 505 tasks with over 8,000 samples.")
    assert not numbers_next_to(asked, "We developed over 40 metrics to evaluate these tasks.")
    assert not numbers_next_to(asked, "Samples were collected by experts.")  # no number at all


@pytest.mark.parametrize(
    ("question", "focus"),
    [
        ("What peak learning rate was used to pre-train DeepSeek-V3?", "peak learning rate"),
        ("On which dataset were the NFNets pre-trained?", "dataset"),  # asks
        # "in which" opens a relative clause; the question is asked after it
        ("For the LLM in which every layer keeps fewer tokens, what share of compute?", "share"),
    ],
)
def test_focus_phrase_is_what_the_question_asks(question: str, focus: str) -> None:
    assert focus_phrase(question) == focus


def test_a_yes_no_question_needs_its_names_in_the_answering_paper() -> None:
    hits = [
        _hit("easter", "EASTER uses 1-D convolutions without recurrence."),
        _hit("returnn", "RETURNN trains CTC models."),
    ]
    match = NameMatch.find(
        Question.parse("Does EASTER use CTC loss?"), hits, _stats(easter=1, ctc=2)
    )
    assert match.unconfirmed("easter") == ["CTC"]
    assert match.unconfirmed("returnn") == ["EASTER"]


def test_reword_swaps_words_for_their_neighbours_and_drops_the_rarest() -> None:
    thesaurus = Thesaurus(
        neighbours={"fitting": "estimation", "models": "networks", "count": "number"},
        idf={"fitting": 1.0, "models": 0.5, "count": 1.2, "zero-inflated": 3.0},
    )
    rng = random.Random(0)
    phrase = "fitting zero-inflated count models"
    reworded = [thesaurus.reword(phrase, rng) for _ in range(20)]
    for text in reworded:
        assert "zero-inflated" not in text  # the rarest word: a paraphrase leaves it out
        kept = set(text.split())
        assert len(kept & {"estimation", "networks", "number"}) >= 1
        assert len(kept) == 3  # one word dropped, the others kept or swapped
    assert len(set(reworded)) > 1  # which words are swapped varies
    for _ in range(5):  # kept, it stays as written: a near miss keeps what it asks about
        assert "zero-inflated" in thesaurus.reword(phrase, rng, drop_rarest=False).split()


TOPICS = [
    Paper(
        "Kettle Notes",
        "Electric kettles boil water quickly in most kitchens. A kettle has a heating element "
        "under the steel base plate. The thermostat switch stops boiling when steam reaches it. "
        "Descaling with vinegar removes the white mineral deposits from hard water.",
    ),
    Paper(
        "Bicycle Notes",
        "Road bicycles use narrow tyres for lower rolling resistance on asphalt. A derailleur "
        "moves the chain between rear sprockets while pedalling. Hydraulic disc brakes stop "
        "reliably in heavy rain and mud. Carbon racing frames weigh under eight kilograms.",
    ),
    Paper(
        "Garden Notes",
        "Raised garden beds drain well after spring rain showers. Compost improves heavy clay "
        "soils for vegetable growing. Tomato seedlings need warm nights before planting "
        "outside. Straw mulch keeps moisture in the soil during dry summer weeks.",
    ),
]


def test_reworded_questions_ask_in_every_form_what_the_document_does_or_does_not_state(
    embedder: Embedder,
) -> None:
    texts = [f"{p.title} {p.text}" for p in TOPICS]
    thesaurus = Thesaurus.build(texts, embedder)
    items = reworded_questions(TOPICS, thesaurus, per_paper=2)
    assert items == reworded_questions(TOPICS, thesaurus, per_paper=2)  # deterministic
    answerable = [i for i in items if i.type == "fact"]
    near = [i for i in items if i.type == "unanswerable"]
    assert answerable and near
    # both kinds take the same forms: two things at once, a sentence of context first
    for kind in (answerable, near):
        assert any(", and about " in i.question for i in kind)
        assert any(". What does it say about " in i.question for i in kind)
    # a near miss asks its document about a stretch of another's sentence whose rarest word
    # it never uses; an answerable one asks about a stretch of one of its own sentences
    for item in near:
        paper = next((p for p in TOPICS if paper_name(p.title) in item.question), None)
        if paper is None:
            continue  # described, not named ("the document on ...")
        asked = item.question.split("about ")[-1]
        known = term_set(f"{paper.title} {paper.text}")
        assert not term_set(asked, drop_question_words=True) <= known, item.question

"""The offline follow-up rewrite: conversations in, standalone questions out."""

from __future__ import annotations

import pytest

from service.answering.answer import REFUSAL_TEXT
from service.answering.followup import named_entities, numbered_sources, standalone_question

DEEPSEEK_ANSWER = (
    "We present DeepSeek-V3, a strong Mixture-of-Experts (MoE) language model with 671B total "
    "parameters with 37B activated for each token [4]."
)
FASTV_ANSWER = (
    "FastV prunes visual tokens after layer 2 [1].\n\nSources:\n"
    "[1] An Image is Worth 1/2 Tokens After Layer 2: Plug-and-Play Inference Acceleration\n"
    "[3] DeepStack: Deeply Stacking Visual Tokens is Surprisingly Simple"
)
REFUSAL = (
    f"{REFUSAL_TEXT} Closest sources: [1] Falcon2-11B Technical Report; "
    "[2] VidChapters-7M: Video Chapters at Scale; [3] Depth Pro: Sharp Monocular Metric Depth."
)


def conversation(*turns: str) -> list[dict[str, str]]:
    """User and assistant turns alternating, starting with the user."""
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]


def rewrite(*turns: str) -> str:
    return standalone_question(conversation(*turns))


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        # the brief's example: a pronoun carries the subject of the previous question
        (
            ("How many parameters does DeepSeek-V3 have?", DEEPSEEK_ANSWER, "and how fast is it?"),
            "How fast is DeepSeek-V3?",
        ),
        # a possessive, in a "what about" ellipsis
        (
            ("How many parameters does DeepSeek-V3 have?", DEEPSEEK_ANSWER, "What about its cost?"),
            "What is DeepSeek-V3's cost?",
        ),
        # "what about <new name>": the same question about another subject
        (
            ("How many parameters does DeepSeek-V3 have?", DEEPSEEK_ANSWER, "What about Mixtral?"),
            "How many parameters does Mixtral have?",
        ),
        (("How many layers does DeepNet reach?", "...", "And GLM-130B?"), None),
        # an elliptical detail gets the subject
        (
            (
                "How many parameters does DeepSeek-V3 have?",
                DEEPSEEK_ANSWER,
                "And the learning rate?",
            ),
            "What is the learning rate of DeepSeek-V3?",
        ),
        (
            ("How does FastV prune visual tokens?", "...", "How many layers?"),
            "How many layers in FastV?",
        ),
        (
            ("How does FastV prune visual tokens?", "...", "Which datasets were used?"),
            "Which datasets were used in FastV?",
        ),
        (
            ("How many layers does DeepNet reach?", "...", "What is the learning rate?"),
            "What is the learning rate in DeepNet?",
        ),
        # a definite reference ("the paper", "this model") is the subject
        (
            ("What does the GLM-130B paper report?", "...", "Who wrote the paper?"),
            "Who wrote GLM-130B?",
        ),
        # "the second one": the n-th name of the previous question ...
        (
            ("Compare FastV and DeepStack.", "...", "What does the second one propose?"),
            "What does DeepStack propose?",
        ),
        # ... or the n-th entry of the numbered source list the assistant turn carries
        (
            (
                "Which method prunes visual tokens in LLaVA-1.5?",
                FASTV_ANSWER,
                "What does the second paper stack?",
            ),
            "What does DeepStack stack?",
        ),
        # "which method...?" is answered by a title: it becomes the subject
        (
            (
                "Which method prunes visual tokens in LLaVA-1.5?",
                FASTV_ANSWER,
                "How much faster is it?",
            ),
            "How much faster is An Image is Worth 1/2 Tokens After Layer 2?",
        ),
        # a refusal's "Closest sources" list serves ordinals, not the subject
        (
            ("What is the capital of France?", REFUSAL, "What is the third paper about?"),
            "What is Depth Pro about?",
        ),
        # no name anywhere: the noun phrase the previous question asked about
        (
            ("What is speculative decoding?", "...", "Who proposed it?"),
            "Who proposed speculative decoding?",
        ),
        # a demonstrative points at the answer: the previous question is kept as context
        (
            ("How many parameters does DeepSeek-V3 have?", DEEPSEEK_ANSWER, "Why is that?"),
            "How many parameters does DeepSeek-V3 have? Why is that?",
        ),
        (
            ("How many parameters does DeepSeek-V3 have?", DEEPSEEK_ANSWER, "Why?"),
            "How many parameters does DeepSeek-V3 have? Why?",
        ),
        # a chain of follow-ups keeps its subject
        (
            (
                "How many parameters does DeepSeek-V3 have?",
                DEEPSEEK_ANSWER,
                "and how fast is it?",
                "It needs 2.788M H800 GPU hours [1].",
                "what about its training data?",
            ),
            "What is DeepSeek-V3's training data?",
        ),
        # a name of the subject that contains a pronoun stays intact
        (
            ('What does "Lets keep it simple" propose?', "...", "How deep are its networks?"),
            "How deep are Lets keep it simple's networks?",
        ),
    ],
)
def test_follow_ups_become_standalone(turns: tuple[str, ...], expected: str | None) -> None:
    if expected is None:  # "And GLM-130B?" after a question about DeepNet
        expected = "How many layers does GLM-130B reach?"
    assert rewrite(*turns) == expected


@pytest.mark.parametrize(
    "question",
    [
        "How much does FastV reduce FLOPs for LLaVA-1.5-13B?",  # names its own subject
        "What is the capital of France?",
        "What is retrieval-augmented generation?",  # a definition: a new topic
        "How do I prepare a pizza?",  # short, but has its own subject
        "How does dropout work?",
        "What does FastV do with its attention?",  # "its" refers to FastV
        "Which paper scales Vision Transformers to 22 billion parameters?",
    ],
)
def test_standalone_questions_are_left_alone(question: str) -> None:
    assert rewrite("How many parameters does DeepSeek-V3 have?", DEEPSEEK_ANSWER, question) == (
        question
    )


def test_a_pronoun_next_to_a_new_name_still_refers_back() -> None:
    got = rewrite(
        "How many parameters does DeepSeek-V3 have?", "...", "How does it compare to FastV?"
    )
    assert got == "How does DeepSeek-V3 compare to FastV?"


def test_first_question_and_system_messages() -> None:
    assert rewrite("and how fast is it?") == "and how fast is it?"  # nothing to carry
    turns = ("How many parameters does DeepSeek-V3 have?", DEEPSEEK_ANSWER, "how fast is it?")
    messages = [{"role": "system", "content": "Be brief."}, *conversation(*turns)]
    assert standalone_question(messages) == "How fast is DeepSeek-V3?"
    assert standalone_question([]) == ""


def test_no_subject_found_keeps_the_previous_question_as_context() -> None:
    got = rewrite("how does this even work", "...", "and who made it?")
    assert got == "How does this even work? who made it?"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("How many parameters does DeepSeek-V3 have?", ["DeepSeek-V3"]),
        ("Does GLM-130B beat GPT-3 on LAMBADA?", ["GLM-130B", "GPT-3", "LAMBADA"]),
        ("What is the Curse of Depth about?", ["Curse of Depth"]),
        ("Which LLM uses MoE on GPUs?", []),  # generic acronyms are no subject
        ("Tell me about Vision Transformers.", ["Vision Transformers"]),
        ("DeepNet's depth?", ["DeepNet"]),
        ('Summarise "Attention Is All You Need" briefly', ["Attention Is All You Need"]),
        ("How much faster is it with 13B and 2.5x?", []),  # numbers with units are no names
    ],
)
def test_named_entities(text: str, names: list[str]) -> None:
    assert named_entities(text) == names


def test_numbered_sources_formats() -> None:
    assert numbered_sources(FASTV_ANSWER) == [
        (1, "An Image is Worth 1/2 Tokens After Layer 2: Plug-and-Play Inference Acceleration"),
        (3, "DeepStack: Deeply Stacking Visual Tokens is Surprisingly Simple"),
    ]
    assert [t for _, t in numbered_sources(REFUSAL)] == [
        "Falcon2-11B Technical Report",
        "VidChapters-7M: Video Chapters at Scale",
        "Depth Pro: Sharp Monocular Metric Depth",
    ]
    cli = "Answer [1].\n\n[1] DeepNet: Scaling Transformers <https://x.org>\n    “quote”"
    assert numbered_sources(cli) == [(1, "DeepNet: Scaling Transformers")]
    assert numbered_sources("An answer [1] with markers [2] only.") == []

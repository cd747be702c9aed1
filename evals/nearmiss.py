"""Generated near-miss questions: a paper of the corpus, asked a detail its text never states.

The development set has only a couple of dozen unanswerable questions, too few to fit the
answerability model (service/evidence.py) without it learning those questions by heart. This
module writes many more of the same kind from the ingested corpus itself: the paper's name plus
a detail papers often omit ("What learning rate was used to train DeepSeek-V3?"), kept only
when none of the detail's words occur in the paper's text, or a benchmark named by another paper
that this one never mentions ("What score does DeepStack achieve on MMLU?").

They are training data for :mod:`evals.calibrate`, never a measure of quality: the measures
are the development set (cross-validated) and the blind holdout.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from citeqa.store import Index, get_all, visible_chunks
from citeqa.text import names, term_set
from evals.dataset import EvalItem

# (the detail, the question): {X} is the paper's name.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("learning rate", "What learning rate was used to train {X}?"),
    ("batch size", "What batch size was used to train {X}?"),
    ("GPUs", "How many GPUs were used to train {X}?"),
    ("optimizer", "Which optimizer was used to train {X}?"),
    ("authors", "Who are the authors of {X}?"),
    ("year", "In what year was {X} published?"),
    ("license", "Under which license is {X} released?"),
    ("dropout", "What dropout rate does {X} use?"),
    ("epochs", "For how many epochs was {X} trained?"),
    ("weight decay", "What weight decay does {X} use?"),
    ("hardware", "On what hardware was {X} trained?"),
    ("days", "How many days did it take to train {X}?"),
    ("hidden dimension", "What is the hidden dimension of {X}?"),
    ("framework", "Which deep learning framework is {X} implemented in?"),
    ("warmup", "How many warmup steps does {X} use?"),
    ("funding", "Which organization funded the work on {X}?"),
    ("random seeds", "How many random seeds were used to evaluate {X}?"),
    ("vocabulary size", "What vocabulary size does {X} use?"),
    ("energy", "How much energy did training {X} consume?"),
    ("cost", "How much did it cost in dollars to train {X}?"),
    ("limitations", "What limitations of {X} do its authors acknowledge?"),
    ("conference", "At which conference was {X} published?"),
    ("ablation", "Which ablation study is reported for {X}?"),
    ("languages", "How many languages does {X} support?"),
)
SCORE_TEMPLATE = "What score does {X} achieve on {B}?"
_SHORT_HEAD = 4  # a title's part before ":" of at most this many words names the paper
_MIXED = re.compile(r"[a-z][A-Z]|[A-Z]{2}|[A-Za-z]\d")


@dataclass(frozen=True)
class Paper:
    title: str
    text: str


def papers(index: Index) -> list[Paper]:
    """The documents of the index, each with its title and the text of its chunks."""
    records = get_all(index.chunks, ["documents", "metadatas"])
    shown = visible_chunks(records.metadatas)
    texts: dict[str, list[tuple[int, str]]] = {}
    titles: dict[str, str] = {}
    for i in shown:
        meta = records.metadatas[i]
        doc_id = str(meta["doc_id"])
        titles[doc_id] = str(meta.get("title", ""))
        body = records.documents[i][int(meta.get("prefix_len", 0)) :]
        texts.setdefault(doc_id, []).append((int(meta.get("position", 0)), body))
    return [
        Paper(titles[d], " ".join(t for _, t in sorted(parts)))
        for d, parts in sorted(texts.items())
    ]


def paper_name(title: str) -> str:
    """How a question would name the paper: "DeepSeek-V3" for "DeepSeek-V3 Technical Report",
    the part before ":" when short, else its first mixed-case name, else the quoted title."""
    head = title.split(":")[0].strip()
    if len(head.split()) <= _SHORT_HEAD:
        return head
    mixed = [n for n in names(title) if _MIXED.search(n)]
    return mixed[0] if mixed else f'the paper "{title}"'


def benchmarks(corpus: Sequence[Paper]) -> list[str]:
    """Names written in capitals or mixed case ("MMLU", "HumanEval") that papers mention."""
    found: dict[str, int] = {}
    for paper in corpus:
        for name in set(names(paper.text)):
            if _MIXED.search(name) and len(name) >= 4:
                found[name] = found.get(name, 0) + 1
    return sorted(n for n, count in found.items() if count >= 2)


def near_miss_questions(
    corpus: Sequence[Paper], per_paper: int = 2, seed: int = 0
) -> list[EvalItem]:
    """Up to ``per_paper`` questions per paper about details it never states, plus one about a
    benchmark it never mentions; deterministic for a seed."""
    rng = random.Random(seed)
    common = benchmarks(corpus)
    items: list[EvalItem] = []
    for paper in corpus:
        name = paper_name(paper.title)
        known = term_set(f"{paper.title} {paper.text}")
        lowered = f"{paper.title} {paper.text}".lower()
        options = [q.format(X=name) for detail, q in TEMPLATES if not term_set(detail) & known]
        chosen = rng.sample(options, min(per_paper, len(options)))
        absent = [b for b in common if b.lower() not in lowered]
        if absent:  # a result on a benchmark the paper never mentions: the commonest near miss
            chosen.append(SCORE_TEMPLATE.format(X=name, B=rng.choice(absent)))
        for question in chosen:
            items.append(
                EvalItem(
                    id=f"near-miss-{len(items) + 1:04d}",
                    type="unanswerable",
                    question=question,
                    answer="The corpus does not contain this.",
                    gold_titles=[],
                    key_facts=[],
                )
            )
    return items

"""``citeqa eval draft``: candidate dataset items from the documents of a collection.

A user who ingested their own folder has no labelled questions to start from. This drafts
some, for a person to review (never to use unread):

* **fact questions** from sentences that state a number or a named thing: the sentence with
  that fact asked for ("According to lme4, the sleep study followed how many subjects?"), the
  fact as the key fact, the document as gold (``gold_titles``, ``gold_docs``) and the page the
  sentence starts on as ``gold_pages``. Sentences are taken round-robin over the documents, so
  every document gets some. Sentences that look like code, formulas, references or table rows
  are left out;
* **near misses** as :mod:`evals.nearmiss` makes them (a document's name and a detail it never
  states), about a quarter of the items.

With an LLM configured, the LLM rewrites each fact question in natural words from its
sentence. Every item is checked against its source before it is written: the key fact must be
in the sentence and in the document's text (:func:`evals.dataset.validate_against_corpus`), and
the question must not give the key fact away; an LLM question that fails the check is replaced
by the offline one.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeqa.text import stopwords, term_set
from evals.corpus import Document, Sentence
from evals.dataset import EvalItem, grounding_form, validate_against_corpus
from evals.nearmiss import Paper, near_miss_questions, paper_name

if TYPE_CHECKING:
    from citeqa.config import Settings

NEAR_MISS_SHARE = 0.25
MIN_WORDS, MAX_WORDS = 8, 40
_NUMBER_RE = re.compile(r"(?<![\w.,/+\u2013-])(\d+(?:\.\d+)?)(%?)(?![\w/\u2013-]|\.\d|,\d)")
_REFERENCE_WORDS = re.compile(
    r"\b(?:section|sections|table|tables|figure|figures|fig|eq|equation|equations|chapter|"
    r"page|pages|pp|p|vol|no|version|appendix|step|line|lines|model|models|example|column|"
    r"columns|row|rows|item|items|faq)\.?\s*(?:\d+\s*(?:and|or|,|to)\s*)?\(?$",
    re.IGNORECASE,
)
_NOT_PROSE = re.compile(
    r"https?:|www\.|doi|<-|==|\bR>|[{}\[\]=<>|\\~^_$@#]|\b(?:1[89]|20)\d\d[a-z]?\)|\bet al\b"
)
_NAME_RE = re.compile(
    r"(?<![\w-])([A-Za-z][A-Za-z0-9]*(?:[a-z][A-Z]|[A-Z]{2}|[A-Za-z]\d)[A-Za-z0-9]*)(?![\w-])"
)
_NOT_NOUNS = frozenset(
    [
        "with",
        "from",
        "than",
        "that",
        "this",
        "these",
        "those",
        "when",
        "where",
        "which",
        "while",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "using",
        "uses",
        "used",
        "like",
        "such",
        "between",
        "after",
        "before",
        "also",
        "only",
        "then",
        "thus",
        "both",
        "either",
        "each",
        "their",
        "there",
        "other",
    ]
)
_LEAD_RE = re.compile(
    r"^(?:therefore|hence|thus|however|moreover|furthermore|also|in addition|similarly|"
    r"consequently|finally|first|second|then|here|now|again|indeed|instead|in contrast|"
    r"in particular|for example|for instance|of course|that is|on the other hand|in fact|"
    r"more precisely|in practice|in general|by default|note that),?\s+",
    re.IGNORECASE,
)
# An entry of a reference list or a caption: "Journal of ... 61, 459–477.", "Figure 1: ...".
_REFERENCE_ENTRY = re.compile(
    r"\bjournal\b|\bproceedings\b|working paper|technical report|\(\d+\):|"
    r"\d+\s*[\u2013-]\s*\d+\.?$|^(?:figure|table)\s+\d+[.:]",
    re.IGNORECASE,
)
_COMMON_STARTS = frozenset(["according", "each", "every", "one", "some", "many", "most", "all"])
_LEANING_RE = re.compile(
    r"(?:this|that|these|those|it|its|they|such|here|there|both|the latter|the former)\b",
    re.IGNORECASE,
)


@dataclass
class Drafted:
    """The drafted items and how they were made."""

    items: list[EvalItem]
    facts: int = 0
    near_misses: int = 0
    llm_written: int = 0
    llm_rejected: int = 0
    rejected: list[str] = field(default_factory=list)  # offline candidates the check refused

    def describe(self) -> str:
        line = f"drafted {len(self.items)} items: {self.facts} fact, {self.near_misses} near miss"
        if self.llm_written or self.llm_rejected:
            line += (
                f"; the LLM wrote {self.llm_written} questions, {self.llm_rejected} failed the "
                "check against their source and kept the offline wording"
            )
        return line


@dataclass(frozen=True)
class Fact:
    """A sentence, the fact it states, and the question asking for it."""

    document: Document
    sentence: Sentence
    fact: str
    kind: str  # "number" or "name"
    question: str


# --------------------------------------------------------------------------- sentences


def is_prose(text: str) -> bool:
    """A sentence a question can be made of: MIN_WORDS..MAX_WORDS words, starts with a capital
    and ends with a full stop, mostly letters, no code, formula, link or reference, and does
    not lean on the sentence before ("This shows...", "Here is...")."""
    if _LEANING_RE.match(_LEAD_RE.sub("", text)):
        return False
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or not text[0].isupper() or not text.endswith("."):
        return False
    if _NOT_PROSE.search(text) or _REFERENCE_ENTRY.search(text):
        return False
    if any(0x370 <= ord(c) <= 0x3FF or (ord(c) >= 0x2030 and c not in "\u2212") for c in text):
        return False  # Greek letters, arrows, math: a formula in prose
    visible = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in visible) >= 0.75 * len(visible)


def _number_fact(text: str) -> tuple[str, str] | None:
    """(fact, question body) for the one number of ``text`` worth asking, if any: not a year,
    not a reference ("Table 2"), not a lone single digit, stated once."""
    found = [m for m in _NUMBER_RE.finditer(text)]
    usable = []
    for m in found:
        value, percent = m.group(1), m.group(2)
        if _REFERENCE_WORDS.search(text[: m.start()]):
            continue
        if text[: m.start()].endswith("(") and text[m.end() :].startswith(")"):
            continue  # "(14)": an equation's number
        if not percent and "." not in value and (len(value) < 2 or 1800 <= int(value) <= 2100):
            continue
        usable.append(m)
    if len(usable) != 1 or sum(m.group(0) == usable[0].group(0) for m in found) != 1:
        return None
    m = usable[0]
    fact = m.group(0)
    after = text[m.end() :]
    noun = re.match(r"\s+((?:[a-z]+\s+)?[a-z]+s)\b", after)
    if m.group(2):
        asked = "what percentage"
    elif noun and "." not in m.group(1):
        asked, after = f"how many {noun.group(1)}", after[noun.end() :]
    else:
        asked = "what value"
    return fact, text[: m.start()] + asked + after


def _name_fact(text: str, title: str) -> tuple[str, str] | None:
    """(fact, question body) for a name in ``text`` ("aeqSurv", "glmmTMB", "HAC") that is not
    in the document's title, appears once and follows the common noun it names ("the routine
    aeqSurv" asks "which routine"), or is an abbreviation in parentheses ("what abbreviation")."""
    candidates = [
        m for m in _NAME_RE.finditer(text) if m.group(1).lower() not in title.lower() and m.start()
    ]
    if len(candidates) != 1 or text.count(candidates[0].group(1)) != 1:
        return None
    m = candidates[0]
    before, after = text[: m.start()], text[m.end() :]
    if before.endswith("(") and after.startswith(")"):
        return m.group(1), before[:-1] + "(what abbreviation)" + after[1:]
    if re.fullmatch(r"[a-z]{4,}\d{1,2}", m.group(1)):
        return None  # a word with its footnote mark ("functions1")
    noun = re.search(
        r"\b(?:[Aa]|[Aa]n|[Tt]he|[Ii]ts|[Tt]his)\s+(?:[a-z]+\s+)?([a-z]{4,})\s$", before
    )
    if noun is None or noun.group(1) in _NOT_NOUNS:
        return None
    return m.group(1), before[: noun.start()] + f"which {noun.group(1)}" + after.removeprefix("()")


def _question(doc_name: str, body: str) -> str:
    """ "According to <document>, <the sentence asking for its fact>?"; the sentence's first
    word in lower case unless it is a name ("Stan uses..." stays)."""
    body = _LEAD_RE.sub("", body.rstrip(".").strip())
    first = body.split(" ", 1)[0]
    if first.lower() in stopwords() or first.lower() in _COMMON_STARTS:
        body = first.lower() + body[len(first) :]
    return f"According to {doc_name}, {body}?"


def facts_of(document: Document) -> Iterator[Fact]:
    """The fact questions one document offers, in document order."""
    name = paper_name(document.title)
    seen: set[str] = set()
    asked: set[str] = set()  # one question per fact and document
    for sentence in document.sentences:
        text = " ".join(sentence.text.split())
        if sentence.page is None and document.sentences[0].page is not None:
            continue
        if not is_prose(text) or text in seen:
            continue
        seen.add(text)
        found = _number_fact(text)
        kind = "number"
        if found is None:
            found, kind = _name_fact(text, document.title), "name"
        if found is None:
            continue
        fact, body = found
        if fact in asked:
            continue
        asked.add(fact)
        yield Fact(document, Sentence(text, sentence.page), fact, kind, _question(name, body))


def _round_robin(per_doc: Sequence[list[Fact]], n: int) -> list[Fact]:
    out: list[Fact] = []
    queues = [list(facts) for facts in per_doc if facts]
    while queues and len(out) < n:
        for queue in list(queues):
            if len(out) >= n:
                break
            out.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
    return out


# --------------------------------------------------------------------------- items


def _item(fact: Fact, question: str, number: int, tags: Sequence[str]) -> EvalItem:
    doc = fact.document
    return EvalItem(
        id=f"draft-{number:03d}",
        type="fact",
        question=question,
        answer=fact.sentence.text,
        gold_titles=[doc.title] if doc.title else [],
        gold_docs=[doc.source],
        gold_pages={doc.source: [fact.sentence.page]} if fact.sentence.page else {},
        key_facts=[fact.fact],
        tags=["drafted", fact.kind, *tags],
    )


def gives_away(question: str, fact: str) -> bool:
    """Whether ``question`` states the key fact it asks for."""
    return grounding_form(fact) in grounding_form(question)


def acceptable(question: str, fact: Fact) -> bool:
    """An LLM's question passes when it does not state its answer and asks about its sentence:
    at least two of the sentence's content terms besides the fact."""
    shared = term_set(question) & (term_set(fact.sentence.text) - term_set(fact.fact))
    return not gives_away(question, fact.fact) and len(shared) >= 2


def draft_items(
    docs: Sequence[Document], n: int, seed: int = 0, writer: LLMQuestionWriter | None = None
) -> Drafted:
    """About ``n`` items over ``docs`` (:func:`evals.corpus.documents` of a collection); with
    ``writer``, the LLM words the fact questions."""
    rng = random.Random(seed)
    n_near = max(1, round(n * NEAR_MISS_SHARE)) if n > 1 else 0
    per_doc = []
    for doc in docs:
        facts = list(facts_of(doc))
        rng.shuffle(facts)
        per_doc.append(facts)
    chosen = _round_robin(per_doc, n - n_near)
    drafted = Drafted(items=[])
    texts = {doc.source: doc.text for doc in docs}
    titles = {doc.title: doc.text for doc in docs}
    for fact in chosen:
        question, tags = fact.question, ["offline"]
        if writer is not None:
            written = writer.write(fact)
            if written is not None and acceptable(written, fact):
                question, tags = written, ["llm"]
                drafted.llm_written += 1
            else:
                drafted.llm_rejected += 1
        item = _item(fact, question, len(drafted.items) + 1, tags)
        problems = validate_against_corpus([item], titles, texts)
        if problems or gives_away(item.question, fact.fact):
            drafted.rejected.extend(problems or [f"{item.id}: the question states its answer"])
            continue
        drafted.items.append(item)
        drafted.facts += 1
    papers = [Paper(doc.title, doc.text) for doc in docs]
    near = near_miss_questions(papers, per_paper=1, seed=seed)
    for item in rng.sample(near, min(n_near, len(near))):
        drafted.items.append(
            item.model_copy(
                update={
                    "id": f"draft-{len(drafted.items) + 1:03d}",
                    "tags": ["drafted", "near-miss"],
                }
            )
        )
        drafted.near_misses += 1
    return drafted


def write_draft(items: Sequence[EvalItem], path: Path) -> Path:
    """The items as JSONL (the dataset format of :mod:`evals.dataset`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item.model_dump(), ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------- LLM wording

LLM_PROMPT = """You write one exam question about a document.
Document: {title}
Sentence from the document: "{sentence}"
The answer is: {fact}
Write a natural question, answerable from that sentence alone, whose answer is exactly the answer
above. Name the document's subject so the question makes sense on its own; do not state the
answer in the question. Reply with JSON only: {{"question": "..."}}"""


class LLMQuestionWriter:
    """Asks the configured OpenAI-compatible LLM to word a fact question."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self._client = client

    def client(self) -> Any:
        if self._client is None:
            from evals.judge import openai_client

            self._client = openai_client(self.settings)
        return self._client

    def write(self, fact: Fact) -> str | None:
        """The LLM's question, or None when the reply holds no usable question."""
        import openai

        prompt = LLM_PROMPT.format(
            title=fact.document.title, sentence=fact.sentence.text, fact=fact.fact
        )
        try:
            completion = self.client().chat.completions.create(
                model=self.settings.llm_model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=200,
            )
        except openai.APIError:
            return None
        return parse_question(completion.choices[0].message.content or "")


def parse_question(reply: str) -> str | None:
    """The ``question`` of the first JSON object in ``reply``, if it is one question."""
    match = re.search(r"\{.*\}", reply, re.DOTALL)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    question = data.get("question") if isinstance(data, dict) else None
    if not isinstance(question, str):
        return None
    question = " ".join(question.split())
    if not question.endswith("?") or not 4 <= len(question.split()) <= 60:
        return None
    return question

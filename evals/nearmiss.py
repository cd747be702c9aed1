"""Generated questions about a collection's own documents, to fit its answerability model.

A near miss names a document of the collection and asks about something its text never
mentions; an answerable question names it and asks about something one of its sentences
states. Both come from the collection itself and are written the same way, so the fit learns
what tells them apart (the asked detail is, or is not, in the named document) and not how one
kind of question is phrased:

* the asked detail is a phrase of two or three content words of a sentence: of the named
  document's own sentences (answerable), or of another document's, none of whose words the
  named document uses (near miss);
* a count: "How many <things> ...?" where a sentence of the document states a number next
  to the things (answerable), or things counted in another document and never mentioned in
  this one (near miss);
* a name another document mentions and this one never does: "What does X report on B?"
  (near miss);
* the value of a setting ("What learning rate does X use?", "How many subjects does X
  report?"): stated next to the setting's words in the document (answerable), or asked of a
  document that mentions the setting but states no number next to it (a near miss: the
  number the question wants is not there, while numbers of other things are);
* a neighbour of a name the document mentions, that the collection never does: another
  version or size ("Kinetics-700" for "Kinetics-600", "lme5" for "lme4") (near miss).

No word list of one field: the details are the collection's own words. They are training
data for :mod:`evals.calibrate`, never a measure of quality.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from citeqa.store import Index, get_all, visible_chunks
from citeqa.text import names, sentence_spans, squashed, stopwords, term_set, words
from evals.dataset import EvalItem
from evals.paraphrase import Thesaurus, content_words

# (the question, with {X} the document's name and {D} the asked detail)
DETAIL_TEMPLATES: tuple[str, ...] = (
    "What does {X} say about {D}?",
    "What is the {D} in {X}?",
    "How does {X} handle {D}?",
    "Which {D} does {X} describe?",
    "What {D} is used in {X}?",
)
COUNT_TEMPLATE = "How many {D} does {X} report?"
NAME_TEMPLATE = "What does {X} report on {B}?"
SETTING_TEMPLATE = "What {D} does {X} use?"
_SHORT_HEAD = 4  # a title's part before ":" of at most this many words names the document
_MIXED = re.compile(r"[a-z][A-Z]|[A-Z]{2}|[A-Za-z]\d")
# "12 subjects", "3 random effects": a count of two or more, then a plural (maybe led by one
# more word).
_COUNT = re.compile(
    r"(?<![\w.,])(?:[2-9]|[1-9]\d{1,2}(?:,\d{3})*)\s+((?:[a-z][a-z\-]{2,}\s+)?[a-z][a-z\-]{2,}s)\b"
    # not a verb ending in -s: "Table 2 shows that", "model 3 gives the"
    r"(?!\s+(?:that|the|a|an|how|us|what|which|this|these|those|it|its|their|to|is|are)\b)"
)
# "a learning rate of 0.1", "batch size = 256", "nAGQ set to 1": a setting and its value
_SETTING = re.compile(
    r"(?<![\w\-])((?:[a-z][a-z\-]{2,}\s+)?[a-z][a-zA-Z\-]{2,})\s+"
    r"(?:of|=|:|is|was|set to|equal to)\s+(\d[\d.,]*\d|\d)(?![\w.])"
)
_DIGITS = re.compile(r"\d+")
MAX_SENTENCES = 400  # sentences of one document looked at for details
NUMBER_WINDOW = 5  # words either side of a number that may say what it counts


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
    """How a question would name the document: "DeepSeek-V3" for "DeepSeek-V3 Technical
    Report", the part before ":" when short, else its first mixed-case name, else the quoted
    title."""
    head = title.split(":")[0].strip()
    if len(head.split()) <= _SHORT_HEAD:
        return head
    mixed = [n for n in names(title) if _MIXED.search(n)]
    return mixed[0] if mixed else f'the document "{title}"'


def details(text: str, limit: int = MAX_SENTENCES) -> list[str]:
    """Phrases of two or three lower-case content words that a sentence of ``text`` holds
    ("zero-inflated count models"): what a question may ask a document about."""
    stop = stopwords()
    found: dict[str, None] = {}
    for start, end in sentence_spans(text)[:limit]:
        run: list[str] = []
        for word in [*words(text[start:end]), ""]:
            plain = word.isascii() and word.replace("-", "").isalpha() and word.islower()
            if plain and len(word) >= 4 and word not in stop:
                run.append(word)
                continue
            if len(run) >= 2:
                found[" ".join(run[-3:])] = None
            run = []
    return list(found)


def counted(text: str) -> list[str]:
    """What ``text`` counts with a number: "12 subjects" -> "subjects"."""
    stop = stopwords()
    return list(
        dict.fromkeys(
            m.group(1) for m in _COUNT.finditer(text) if not set(m.group(1).split()) & stop
        )
    )


def settings(text: str) -> dict[str, str]:
    """Settings ``text`` states a value for: "a learning rate of 0.1" -> {"learning rate":
    "0.1"} (the first value stated for each)."""
    stop = stopwords()
    found: dict[str, str] = {}
    for match in _SETTING.finditer(text):
        setting = " ".join(w for w in match.group(1).split() if w.lower() not in stop)
        if setting and len(setting) >= 4:
            found.setdefault(setting, match.group(2).rstrip(".,"))
    return found


def terms_near_numbers(text: str, window: int = NUMBER_WINDOW) -> set[str]:
    """The terms within ``window`` words of a number in ``text``: what its numbers may
    count or set."""
    tokens = words(text)
    near: set[str] = set()
    for i, token in enumerate(tokens):
        if any(ch.isdigit() for ch in token) and not names(token):
            near |= term_set(" ".join(tokens[max(0, i - window) : i + window + 1]))
    return near


def unstated_values(paper: Paper, asked: Sequence[str]) -> list[str]:
    """Of the settings or counted things ``asked`` (of other documents), those the paper
    mentions, every word, but states no number next to: asking it for their value is a near
    miss that shares its words."""
    known = term_set(f"{paper.title} {paper.text}")
    near = terms_near_numbers(paper.text)
    return [a for a in asked if (t := term_set(a)) and t <= known and not t & near]


def neighbour_names(text: str, mentioned: str, rng: random.Random) -> list[str]:
    """Names of ``text`` with a number ("Kinetics-600", "lme4", "Falcon2-11B") turned into a
    neighbour the collection (``mentioned``: all its text, squashed) never mentions: another
    version or size ("Kinetics-601" or "Kinetics-1200")."""
    found: dict[str, None] = {}
    for name in dict.fromkeys(names(text)):
        digits = list(_DIGITS.finditer(name))
        if not digits or len(name) < 3:
            continue
        last = digits[-1]
        value = int(last.group())
        other = rng.choice([value + 1, value * 2 or 2])
        neighbour = f"{name[: last.start()]}{other}{name[last.end() :]}"
        if squashed(neighbour) not in mentioned and len(squashed(neighbour)) >= 3:
            found[neighbour] = None
    return list(found)


def _shared_names(corpus: Sequence[Paper]) -> list[str]:
    """Names written in capitals or mixed case ("MMLU", "lme4") that two documents mention."""
    found: dict[str, int] = {}
    for paper in corpus:
        for name in set(names(paper.text)):
            if _MIXED.search(name) and len(name) >= 4:
                found[name] = found.get(name, 0) + 1
    return sorted(n for n, count in found.items() if count >= 2)


def _item(number: int, question: str, title: str = "", fact: str = "", form: str = "") -> EvalItem:
    """A near miss, or with the ``title`` of the document that states ``fact`` a fact;
    ``form`` tells generated forms apart in the ids."""
    kind = "answerable" if title else "near-miss"
    return EvalItem(
        id=f"generated-{form + '-' if form else ''}{kind}-{number:04d}",
        type="fact" if title else "unanswerable",
        question=question,
        answer="" if title else "The corpus does not contain this.",
        gold_titles=[title] if title else [],
        key_facts=[fact] if title else [],
    )


def near_miss_questions(
    corpus: Sequence[Paper], per_paper: int = 2, seed: int = 0
) -> list[EvalItem]:
    """Up to ``per_paper`` questions per document about details other documents state and it
    never mentions, plus one about a count, and one about a name it never mentions;
    deterministic for a seed."""
    rng = random.Random(seed)
    shared = _shared_names(corpus)
    by_paper = [(p, details(p.text), counted(p.text)) for p in corpus]
    stated = {id(p): list(settings(p.text)) for p in corpus}
    mentioned = "|".join(squashed(f"{p.title} {p.text}") for p in corpus)
    items: list[EvalItem] = []
    for paper, _, _ in by_paper:
        name = paper_name(paper.title)
        known = term_set(f"{paper.title} {paper.text}")
        lowered = f"{paper.title} {paper.text}".lower()
        foreign = [d for other, ds, _ in by_paper if other is not paper for d in ds]
        absent = [d for d in rng.sample(foreign, min(len(foreign), 200)) if not term_set(d) & known]
        questions = [
            rng.choice(DETAIL_TEMPLATES).format(X=name, D=d)
            for d in rng.sample(absent, min(per_paper, len(absent)))
        ]
        things = [t for other, _, ts in by_paper if other is not paper for t in ts]
        things = [t for t in things if not term_set(t) & known]
        if things:
            questions.append(COUNT_TEMPLATE.format(X=name, D=rng.choice(things)))
        unnamed = [b for b in shared if b.lower() not in lowered]
        if unnamed:
            questions.append(NAME_TEMPLATE.format(X=name, B=rng.choice(unnamed)))
        others = [p for p in corpus if p is not paper]
        unset = unstated_values(paper, sorted({s for p in others for s in stated[id(p)]}))
        if unset:
            questions.append(SETTING_TEMPLATE.format(X=name, D=rng.choice(unset)))
        uncounted = unstated_values(
            paper, sorted({t for o, _, ts in by_paper if o is not paper for t in ts})
        )
        if uncounted:
            questions.append(COUNT_TEMPLATE.format(X=name, D=rng.choice(uncounted)))
        neighbours = neighbour_names(paper.text, mentioned, rng)
        if neighbours:
            questions.append(NAME_TEMPLATE.format(X=name, B=rng.choice(neighbours)))
        items.extend(_item(len(items) + 1, q) for q in questions)
    return items


def answerable_questions(
    corpus: Sequence[Paper], per_paper: int = 2, seed: int = 0
) -> list[EvalItem]:
    """Up to ``per_paper`` questions per document about details one of its sentences states,
    plus one about a count it states; deterministic for a seed."""
    rng = random.Random(seed)
    items: list[EvalItem] = []
    for paper in corpus:
        name = paper_name(paper.title)
        title_terms = term_set(paper.title)
        own = [d for d in details(paper.text) if not term_set(d) <= title_terms]
        asked = [
            (rng.choice(DETAIL_TEMPLATES), d) for d in rng.sample(own, min(per_paper, len(own)))
        ]
        things = counted(paper.text)
        if things:
            asked.append((COUNT_TEMPLATE, rng.choice(things)))
        for template, detail in asked:
            question = template.format(X=name, D=detail)
            items.append(_item(len(items) + 1, question, paper.title, detail))
        values = settings(paper.text)
        if values:
            setting = rng.choice(sorted(values))
            question = SETTING_TEMPLATE.format(X=name, D=setting)
            items.append(_item(len(items) + 1, question, paper.title, values[setting]))
    return items


# Questions as users write them: about a stretch of a sentence, reworded (evals.paraphrase),
# terse, two facts at once, or after a sentence of context. Both kinds take every form, so
# the form tells the fit nothing; only whether the named document states the asked thing does.
CLAIM_TEMPLATES: tuple[str, ...] = (
    "What does {X} say about {W}?",
    "According to {X}, what about {W}?",
    "{X}: {W}?",
    "In {X}, what is known about {W}?",
    "What do we learn from {X} about {W}?",
)
BOTH_TEMPLATE = "What does {X} say about {W}, and about {V}?"
CONTEXT_TEMPLATE = "{X} {C}. What does it say about {W}?"
DEFINE_TEMPLATE = "What is {B}?"
DESCRIBED_TEMPLATE = "the document on {T}"
DESCRIBED_SHARE = 0.3  # questions that describe the document instead of naming it
STRETCH = (5, 10)  # words of a sentence a question asks about
MIN_CONTENT = 4  # content words a sentence needs to be asked about
MAX_WORDS = 60  # longer "sentences" are tables or lists run together


def _sentences(text: str, limit: int = MAX_SENTENCES) -> list[str]:
    """The sentences of ``text`` that state something in words (not a table or a list)."""
    found = []
    for start, end in sentence_spans(text)[:limit]:
        sentence = text[start:end]
        if len(words(sentence)) <= MAX_WORDS and len(content_words(sentence)) >= MIN_CONTENT:
            found.append(sentence)
    return found


def stretch(sentence: str, rng: random.Random) -> str:
    """A run of a few words of ``sentence``, its numbers left out (what a question asks
    for, not what it says), with at least two content words; "" when it has none."""
    tokens = [w for w in words(sentence) if not any(ch.isdigit() for ch in w)]
    for _ in range(4):
        length = rng.randint(*STRETCH)
        start = rng.randrange(max(1, len(tokens) - length + 1))
        run = " ".join(tokens[start : start + length])
        if len(content_words(run)) >= 2:
            return run
    return ""


def _subject(paper: Paper, thesaurus: Thesaurus, rng: random.Random) -> str:
    """How a question names the document: its name, or now and then a description of it in
    other words ("the document on mixed models fitting")."""
    described = content_words(paper.title.lower())[:4]
    if described and rng.random() < DESCRIBED_SHARE:
        words_ = thesaurus.reword(" ".join(described), rng, drop_rarest=False)
        return DESCRIBED_TEMPLATE.format(T=words_)
    return paper_name(paper.title)


def _unstated(run: str, known: set[str], idf: dict[str, float]) -> bool:
    """A stretch of another document's sentence that the document (its terms ``known``)
    does not state: its rarest content word and half its content words are missing."""
    plain = content_words(run)
    missing = [w for w in plain if not term_set(w) <= known]
    rarest = max(plain, key=lambda w: idf.get(w, 0.0), default="")
    return bool(rarest) and rarest in missing and 2 * len(missing) >= len(plain)


def _unique_names(corpus: Sequence[Paper]) -> list[list[str]]:
    """For each document, the names in capitals or mixed case ("GLMMadaptive") that no other
    document mentions: what a "What is B?" asks about."""
    mentioned = [{n.lower() for n in names(p.text)} for p in corpus]
    held: dict[str, int] = {}
    for found in mentioned:
        for name in found:
            held[name] = held.get(name, 0) + 1
    return [
        sorted(
            n
            for n in dict.fromkeys(names(p.text))
            if _MIXED.search(n) and len(n) >= 3 and held.get(n.lower()) == 1
        )
        for p in corpus
    ]


def reworded_questions(
    corpus: Sequence[Paper], thesaurus: Thesaurus, per_paper: int = 2, seed: int = 0
) -> list[EvalItem]:
    """Questions in the forms users write (see :data:`CLAIM_TEMPLATES`), reworded: per
    document, ``per_paper`` about stretches of its sentences, one about two of them, one
    after a sentence of context and one "What is B?" for a name only it mentions
    (answerable); ``per_paper`` about stretches of other documents' sentences it does not
    state, one about two of them and one after a sentence of its own (near misses);
    deterministic for a seed."""
    rng = random.Random(seed)
    own = [_sentences(p.text) for p in corpus]
    unique = _unique_names(corpus)
    answerable: list[EvalItem] = []
    near: list[EvalItem] = []

    def add(items: list[EvalItem], question: str, title: str = "") -> None:
        items.append(_item(len(items) + 1, question, title, question, "reworded"))

    def mine(i: int, drop: bool = True) -> str:
        run = stretch(rng.choice(own[i]), rng)
        return thesaurus.reword(run, rng, drop_rarest=drop and rng.random() < 0.5) if run else ""

    for i, paper in enumerate(corpus):
        if not own[i]:
            continue
        known = term_set(f"{paper.title} {paper.text}")
        others = [j for j in range(len(corpus)) if j != i and own[j]]
        foreign: list[str] = []
        for _ in range(20 * per_paper):
            if len(foreign) >= per_paper + 2 or not others:
                break
            run = stretch(rng.choice(own[rng.choice(others)]), rng)
            if run and _unstated(run, known, thesaurus.idf):
                foreign.append(thesaurus.reword(run, rng, drop_rarest=False))

        for _ in range(per_paper):
            if w := mine(i):
                add(
                    answerable,
                    rng.choice(CLAIM_TEMPLATES).format(X=_subject(paper, thesaurus, rng), W=w),
                    paper.title,
                )
        w, v = mine(i), mine(i)
        if w and v:
            add(
                answerable,
                BOTH_TEMPLATE.format(X=_subject(paper, thesaurus, rng), W=w, V=v),
                paper.title,
            )
        context, w = mine(i, drop=False), mine(i)
        if context and w:
            add(
                answerable,
                CONTEXT_TEMPLATE.format(X=paper_name(paper.title), C=context, W=w),
                paper.title,
            )
        if unique[i]:
            add(answerable, DEFINE_TEMPLATE.format(B=rng.choice(unique[i])), paper.title)
        for _ in range(per_paper):  # what it says, about a rare word it never uses
            if w := thesaurus.rekey(mine(i, drop=False), known, rng):
                question = rng.choice(CLAIM_TEMPLATES).format(
                    X=_subject(paper, thesaurus, rng), W=w
                )
                add(near, question)
        if (context := mine(i, drop=False)) and (
            w := thesaurus.rekey(mine(i, drop=False), known, rng)
        ):
            add(near, CONTEXT_TEMPLATE.format(X=paper_name(paper.title), C=context, W=w))
        for w in foreign[:per_paper]:
            add(near, rng.choice(CLAIM_TEMPLATES).format(X=_subject(paper, thesaurus, rng), W=w))
        if len(foreign) >= per_paper + 2:
            w, v = foreign[per_paper], foreign[per_paper + 1]
            add(near, BOTH_TEMPLATE.format(X=_subject(paper, thesaurus, rng), W=w, V=v))
        if foreign and (context := mine(i, drop=False)):
            add(near, CONTEXT_TEMPLATE.format(X=paper_name(paper.title), C=context, W=foreign[0]))
    return answerable + near

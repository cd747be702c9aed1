"""The extractive generator: answers with verbatim sentences of the sources, no LLM needed.

It picks the best-scoring candidate sentence (see :mod:`service.answering.evidence`), adds the
next best of its document when that one scores nearly as well (facts often span two
sentences) and the sentence a chosen one announces with a colon, and, for
questions that span papers, the best sentence of each other document that scores nearly as
well. When another paper states a different value for the number asked of the same subject
(:func:`disagreeing`), its statement is quoted too: the answer shows that the sources differ
instead of picking one silently. Every sentence is quoted verbatim and followed by the number
of its source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from citeqa.text import answer_sentence_spans, mentions, squashed, words
from service.answering.answer import Draft
from service.answering.citations import claim_with_markers
from service.answering.evidence import Candidate, Evidence
from service.answering.features import NUMBER_WINDOW, number_windows, stated_values
from service.answering.overview import one_per_document
from service.answering.parts import described_documents, own_name, part_answers
from service.answering.question import Question
from service.answering.refusal import KIND_OF_THING, names_new

MAX_SENTENCES = 5
RUNNER_UP_RATIO = 0.85  # a second sentence of the best one's document scoring this close is kept
MIN_RATIO = 0.6  # an added sentence scores at least this share of the best one
MIN_GAIN = 0.12  # ... and covers at least this (IDF-weighted) share of the question anew
SOURCES_DIFFER = "The sources differ; "  # leads the paper that states another value


class ExtractiveGenerator:
    name = "extractive"
    judges_answerability = False  # it quotes the best sentence, however poor
    reads_further = True  # more passages are more sentences to choose from, nothing to pay

    def generate(self, evidence: Evidence) -> Draft:
        chosen = select_sentences(evidence)
        if not chosen:
            return Draft(text="", refused=True)
        other = disagreeing(evidence)
        if other is not None and other not in chosen:
            chosen.append(other)
        return Draft(text=render(evidence, chosen, other))

    def stream(self, evidence: Evidence) -> Iterator[str]:
        """The same draft, in word-sized pieces (for streaming APIs)."""
        draft = self.generate(evidence)
        yield from re.findall(r"\S+\s*", draft.text)


def render(evidence: Evidence, chosen: list[Candidate], other: Candidate | None = None) -> str:
    """One paragraph per paper, led by its quoted title so the reader sees where each quote
    is from. With a disagreeing statement (:func:`disagreeing`), the later of the two
    papers' paragraphs opens with :data:`SOURCES_DIFFER`."""
    paragraphs: dict[str, list[str]] = {}
    leads: dict[str, str] = {}
    for cand in chosen:
        hit = evidence.hits[cand.hit_index]
        leads.setdefault(hit.doc_id, f"\u201c{hit.title}\u201d: ")
        paragraphs.setdefault(hit.doc_id, []).append(
            claim_with_markers(cand.text, [cand.hit_index + 1])
        )
    best = evidence.best()
    if other is not None and best is not None:
        differing = {evidence.hits[c.hit_index].doc_id for c in (best, other)}
        later = [doc for doc in paragraphs if doc in differing][-1]
        leads[later] = SOURCES_DIFFER + leads[later]
    return "\n".join(leads[doc] + _joined(p) for doc, p in paragraphs.items())


def _joined(quotes: list[str]) -> str:
    """The quotes of one paragraph, joined by a space where the sentence splitter the
    citation validator (and any reader of the answer) uses ends a sentence between them, else
    by a line break: a quoted code line or URL without a full stop would otherwise run into
    the next quote, and the two, cited from two chunks, would read as one claim."""
    text = quotes[0] if quotes else ""
    for quote in quotes[1:]:
        spaced = f"{text} {quote}"
        starts = {start for start, _ in answer_sentence_spans(spaced)}
        text = spaced if len(text) + 1 in starts else f"{text}\n{quote}"
    return text


def disagreeing(evidence: Evidence) -> Candidate | None:
    """A statement of another paper that gives another value for the fact asked, or None.

    The same fact: the question asks a number about one subject, named by distinctive names
    (ones few documents mention: "DeepSeek-V3", not "ImageNet") that the title of one of the
    two papers bears (the subject is what that paper is about; a benchmark both papers report
    on, "CIFAR-10", is not); the best sentence and this one both state a number next to a
    term of the asked focus ("5 parameters", "671B total parameters") and state it of the
    subject (:func:`_states_of`); this one scores at least :data:`MIN_RATIO` of the best.
    Another value: no number the two papers state next to the focus, in their titles or
    retrieved sentences, is common to both (a title's "1,000 Layers" agrees with "1,000
    layers" anywhere). A question about several papers expects several values: None."""
    best = evidence.best()
    names = evidence.names
    subject = names.distinctive()
    if best is None or not evidence.question.expects_number or not subject:
        return None
    if names.split() or evidence.question.asks_several:
        return None
    best_hit = evidence.hits[best.hit_index]
    if not _states_of(subject, best_hit.title, best.text, stated_values(evidence, best.text)):
        return None
    values = _values_by_doc(evidence)
    for cand in sorted(evidence.candidates, key=lambda c: -c.score):
        if cand.score < MIN_RATIO * best.score:
            return None
        hit = evidence.hits[cand.hit_index]
        if hit.doc_id == best_hit.doc_id or values[hit.doc_id] & values[best_hit.doc_id]:
            continue
        if not (_titled(subject, hit.title) or _titled(subject, best_hit.title)):
            continue
        if _states_of(subject, hit.title, cand.text, stated_values(evidence, cand.text)):
            return cand
    return None


def _values_by_doc(evidence: Evidence) -> dict[str, set[str]]:
    """doc id -> the numbers its title and retrieved sentences state next to the focus."""
    values: dict[str, set[str]] = {}
    for hit in evidence.hits:
        values.setdefault(hit.doc_id, stated_values(evidence, hit.title))
    for cand in evidence.candidates:
        values[evidence.hits[cand.hit_index].doc_id] |= stated_values(evidence, cand.text)
    return values


def _titled(subject: list[str], title: str) -> bool:
    return all(mentions(title.lower(), name) for name in subject)


def _states_of(subject: list[str], title: str, sentence: str, stated: set[str]) -> bool:
    """The sentence states one of the ``stated`` numbers of the subject: its paper's title
    names the subject, or the number stands a few words from the name itself ("DeepSeek-V3
    has 5 parameters"; "LLaVA-HR" is not "LLaVA")."""
    if not stated:
        return False
    if _titled(subject, title):
        return True
    keys = {squashed(name) for name in subject}
    return any(
        found & stated and keys <= {squashed(w) for w in words(near)}
        for found, _, near in number_windows(sentence, NUMBER_WINDOW)
    )


MAX_DOCUMENTS = 3


_ENTITY = re.compile(r"\b[\w\-\.]*(?:[a-z][A-Z]|[A-Z]{2}|\d)[\w\-\.]*\b")


def is_multi_part(question: Question, titles: list[str] | None = None) -> bool:
    """The question asks about several things at once: "both", "each", "compare", two joined
    questions, or names (like "EMOv2", "GLM-130B") that appear in the titles of different
    retrieved papers."""
    if question.asks_several:
        return True
    names = {m.group(0).lower() for m in _ENTITY.finditer(question.text)}
    named = {t for t in titles or [] if any(n in t.lower() for n in names)}
    return len(named) >= 2


def _best_of_other_documents(
    evidence: Evidence, chosen: list[Candidate], best_score: float
) -> list[Candidate]:
    """The best sentence of each further document that scores close enough to the best, and
    of each document that alone mentions a name the question asks about ("... of Apollo-7B
    and of LongVA-7B"), however it scores: that part of the question is about that paper."""
    doc_of = [hit.doc_id for hit in evidence.hits]
    used = {doc_of[c.hit_index] for c in chosen}
    added: list[Candidate] = []
    named = evidence.names.distinctive_by_doc()
    covered = set().union(*(named.get(d, set()) for d in used))
    for cand in sorted(evidence.candidates, key=lambda c: -c.score):
        doc = doc_of[cand.hit_index]
        if len(used) >= MAX_DOCUMENTS or doc in used:
            continue
        if cand.score >= MIN_RATIO * best_score or named.get(doc, set()) - covered:
            used.add(doc)
            covered |= named.get(doc, set())
            added.append(cand)
    return added


def _runners_up(evidence: Evidence, chosen: list[Candidate]) -> list[Candidate]:
    """For a question about several papers, each paper's second sentence when it scores
    nearly as well as its first: each part of the question may be answered by another one."""
    added: list[Candidate] = []
    for first in list(chosen):
        doc = evidence.hits[first.hit_index].doc_id
        same_doc = [c for c in evidence.candidates if evidence.hits[c.hit_index].doc_id == doc]
        second = _runner_up(first, same_doc, chosen + added)
        if second is not None:
            added.append(second)
    return added


def _runner_up(first: Candidate, pool: list[Candidate], taken: list[Candidate]) -> Candidate | None:
    """The best sentence of ``pool`` not yet taken, when it scores nearly as well as
    ``first``."""
    second = max((c for c in pool if c not in taken), key=lambda c: c.score, default=None)
    return second if second is not None and second.score >= RUNNER_UP_RATIO * first.score else None


def select_sentences(evidence: Evidence) -> list[Candidate]:
    """The best sentence, then greedily those that cover question terms it leaves uncovered.

    Compound questions ("what error, and which competition?") and questions spanning papers
    ("what speedup does each report?") need several sentences; a sentence is added only when it
    scores close to the best and covers a meaningful share of the question that the sentences
    chosen so far do not. A question a list of documents answers gets each matching document's
    best sentence (:func:`one_per_document`), and at most one sentence more.
    """
    best = evidence.best()
    if best is None:
        return []
    several = bool(evidence.names.split()) or is_multi_part(
        evidence.question, list({h.title for h in evidence.hits})
    )
    if evidence.question.lists_documents:
        chosen = one_per_document(evidence, best)
        limit = len(chosen) + 1
    else:
        chosen, limit = _for_the_question(evidence, best, several), MAX_SENTENCES
        chosen.extend(part_answers(evidence, chosen, MIN_RATIO))
        chosen.extend(_each_described(evidence, chosen))
    _cover_the_rest(evidence, chosen, best, limit)
    naming = _naming(evidence, chosen)
    if naming is not None:
        chosen.append(naming)
    if several:
        chosen.extend(_each_named(evidence, chosen))
    dense = _dense_choice(evidence, chosen)
    if dense is not None:
        chosen.append(dense)
    chosen.extend(_announced(evidence, chosen))
    closer = _closer_in_meaning(evidence, chosen)
    if closer is not None:
        chosen.append(closer)
    return sorted(chosen, key=lambda c: (c.hit_index, c.position))


def _naming(evidence: Evidence, chosen: list[Candidate]) -> Candidate | None:
    """For a question asking which thing ("Which system moves the KV cache to storage?"),
    which a name may answer: when no chosen sentence names anything the question does not,
    the best sentence of the best one's document that does ("We propose InstInfer, ...")."""
    question, best = evidence.question, evidence.best()
    if best is None or not question.asks_which or question.lists_documents:
        return None
    if question.offers_alternatives or any(names_new(question, c.text) for c in chosen):
        return None
    doc = evidence.hits[best.hit_index].doc_id
    naming = [
        c
        for c in evidence.candidates
        if evidence.hits[c.hit_index].doc_id == doc and names_new(question, c.text)
    ]
    return max(naming, key=lambda c: c.score, default=None)


def _closer_in_meaning(evidence: Evidence, chosen: list[Candidate]) -> Candidate | None:
    """The sentence of the best one's document that the sentence embeddings put closest to
    the question, when it is closer than the best one and no chosen sentence: the best one
    may win on the question's words ("lme4 provides tools for ... diagnostic plots (with the
    exception of those incorporating influence measures, e.g., Cook's distance ...)") where
    the closer one paraphrases the answer ("... these are available in the dependent packages
    HLMdiag and influence.ME"). The answer shows both, as :func:`_dense_choice` does across
    documents, instead of silently keeping the lexical choice. It scores at least
    :data:`MIN_RATIO` of the best; a list of documents keeps to one sentence each."""
    best = evidence.best()
    if best is None or evidence.question.lists_documents:
        return None
    doc = evidence.hits[best.hit_index].doc_id
    own = [c for c in evidence.candidates if evidence.hits[c.hit_index].doc_id == doc]
    closest = max(own, key=lambda c: c.similarity)
    if closest in chosen or closest.similarity <= best.similarity:
        return None
    return closest if closest.score >= MIN_RATIO * best.score else None


def _announced(evidence: Evidence, chosen: list[Candidate]) -> list[Candidate]:
    """The sentence after each chosen one that hands over to it: one that ends with a colon
    ("... via a call to glmnet.control with the itrace argument:") announces what follows,
    and a question (a FAQ's "Why does lag give different results ...?") is answered by what
    follows, not by itself. And the sentence after that continues it, opening by referring
    back to it ("... whether the matrix should be fixed to be positive semi-definite." "This
    is achieved by converting any negative eigenvalues to zero."): the two state one thing.
    A list of documents keeps to one sentence each: there a sentence shows what a document
    is about, not a fact to complete."""
    place = {(c.hit_index, c.position): c for c in evidence.candidates}
    continued = not evidence.question.lists_documents
    added: list[Candidate] = []
    for cand in chosen:
        after = place.get((cand.hit_index, cand.position + 1))
        if after is None or after in chosen + added:
            continue
        if _hands_over(cand.text) or (continued and after.refers_back):
            added.append(after)
    return added


def _hands_over(sentence: str) -> bool:
    return sentence.rstrip().endswith((":", "?"))


def _each_named(evidence: Evidence, chosen: list[Candidate]) -> list[Candidate]:
    """For a question about several things ("compare A, B and C"): for each distinctive
    coined name ("MLVU", "Apollo-7B"; not "Depth", which any paper may bear, nor a kind of
    thing like "LVLMs"), the best sentence of a retrieved document whose title names it (else
    the best sentence that names it) when no chosen sentence is one of those. Each named
    thing is quoted from its own paper, not one of them thrice."""
    names = [
        n
        for n in evidence.names.distinctive()
        if _ENTITY.fullmatch(n) and not KIND_OF_THING.fullmatch(n)
    ]
    if len(names) < 2:
        return []
    stats, hits = evidence.stats, evidence.hits
    added: list[Candidate] = []
    ranked = sorted(evidence.candidates, key=lambda c: -c.score)
    for name in names:
        titled = [c for c in ranked if stats.mentions(own_name(hits[c.hit_index].title), name)]
        naming = [c for c in ranked if stats.mentions(c.text.lower(), name)]
        wanted = titled or naming  # the paper about it, else any sentence that names it
        if wanted and not any(c in wanted for c in chosen + added):
            added.append(wanted[0])
    return added


def _each_described(evidence: Evidence, chosen: list[Candidate]) -> list[Candidate]:
    """The best sentence of each document the question describes ("the original residual
    learning paper", :func:`~service.answering.parts.described_documents`) that no chosen
    sentence is from: what the question asks of it is in that document."""
    quoted = {evidence.hits[c.hit_index].doc_id for c in chosen}
    added = []
    for doc in described_documents(evidence, evidence.question.text) - quoted:
        own = [c for c in evidence.candidates if evidence.hits[c.hit_index].doc_id == doc]
        best = max(own, key=lambda c: c.score, default=None)
        if best is not None:
            added.append(best)
    return added


def _dense_choice(evidence: Evidence, chosen: list[Candidate]) -> Candidate | None:
    """The best sentence of the document both dense rankings (chunks and sentences) put
    first, when no chosen sentence is from it: the lexical features of the sentence score
    may prefer another document (a heavily paraphrased question shares few words with the
    right one), and the answer shows both instead of silently keeping the lexical choice.
    None when the question names something that document does not mention."""
    dense_first = {h.doc_id for h in evidence.hits if h.ranks.get("dense") == 1}
    sentence_first = {h.doc_id for h in evidence.hits if h.ranks.get("sentence") == 1}
    if len(dense_first) != 1 or dense_first != sentence_first:
        return None
    (doc,) = dense_first
    if doc in {evidence.hits[c.hit_index].doc_id for c in chosen}:
        return None
    if evidence.names.share(doc) < 1.0:
        return None
    own = [c for c in evidence.candidates if evidence.hits[c.hit_index].doc_id == doc]
    return max(own, key=lambda c: c.score, default=None)


def _for_the_question(evidence: Evidence, best: Candidate, several: bool) -> list[Candidate]:
    """The best sentence, the next best of its document when it scores nearly as well (of
    any of its retrieved chunks: where a chunk ends is no boundary of what a document says),
    and for a question about several papers the best sentences of the others."""
    chosen = [best]
    doc = evidence.hits[best.hit_index].doc_id
    same_doc = [c for c in evidence.candidates if evidence.hits[c.hit_index].doc_id == doc]
    runner_up = _runner_up(best, same_doc, chosen)
    if runner_up is not None:
        chosen.append(runner_up)  # facts often run over two sentences
    if several:
        chosen.extend(_best_of_other_documents(evidence, chosen, best.score))
        if len({evidence.hits[c.hit_index].doc_id for c in chosen}) > 1:
            chosen.extend(_runners_up(evidence, chosen)[: MAX_SENTENCES - len(chosen)])
    return chosen


def _cover_the_rest(
    evidence: Evidence, chosen: list[Candidate], best: Candidate, limit: int
) -> None:
    """Adds to ``chosen``, up to ``limit`` sentences, those scoring close to the best that
    cover a meaningful share of the question the chosen ones do not."""
    covered = set().union(*(c.matched for c in chosen))
    total = sum(evidence.term_weights.values()) or 1.0
    while len(chosen) < limit:
        pool = [
            c for c in evidence.candidates if c not in chosen and c.score >= MIN_RATIO * best.score
        ]
        gains = [
            (sum(evidence.term_weights.get(t, 0.0) for t in c.matched - covered) / total, c)
            for c in pool
        ]
        gain, pick = max(gains, key=lambda g: (g[0], g[1].score), default=(0.0, None))
        if pick is None or gain < MIN_GAIN:
            break
        chosen.append(pick)
        covered |= pick.matched

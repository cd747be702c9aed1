"""Follow-up questions rewritten into standalone questions, offline and deterministically.

Retrieval sees one question, not a conversation: "and how fast is it?" retrieved on its own finds
whatever is fast in the corpus (llama_index #8911). :func:`standalone_question` rewrites the last
user message with the subject of the earlier turns, so ``["How many parameters does DeepSeek-V3
have?", <answer>, "and how fast is it?"]`` becomes "How fast is DeepSeek-V3?". With an LLM
configured the chat service asks the LLM instead (``prompts/condense.md``); this module is the
offline path and the fallback.

The conversation is stateless: clients echo back only the text of earlier turns, so the subject
comes from the user's own earlier questions, rewritten in order (a chain of follow-ups keeps its
subject). The subject of a turn is, in order of preference:

1. for "the second paper", "the latter", "[2]", "source 2": that entry of a numbered source
   list (``[n] Title`` lines, or "Sources: [1] A; [2] B") in the previous assistant message,
   else that named entity of the previous question ("Compare FastV and DeepStack");
2. when the previous question asked *which* paper, method or model ("Which method prunes visual
   tokens in LLaVA-1.5?") and the previous assistant turn lists the sources it cited (the web
   page and ``citeqa chat`` append "Sources: [n] Title" lines to the turns they echo back), the
   first cited title: the answer, not the question, named the subject;
3. the named entities of the most recent earlier question that has any: capitalised, camel-case,
   hyphenated or alphanumeric names ("DeepSeek-V3", "FastV", "Vision Transformers") and quoted
   titles; generic acronyms (LLM, GPU, MoE) are no subject;
4. the first cited title of the previous answer;
5. the noun phrase the previous question asked about ("What is speculative decoding?").

A question is a follow-up when it refers back (it, its, they, this, that, the paper, the
model...), opens elliptically ("what about X?", "and X?", "how about X?", a bare "FastV?"), or is
short and lacks a subject (no verb: "How many layers?"; a copula before a definite detail or a
participle: "What is the learning rate?", "Which data was used?"). The rewrite then:

* replaces the references: "it", "the model" -> subject; "its", "their" -> subject's;
* "what about X?": X names a new subject -> the previous question about X instead ("What about
  Mixtral?" after "How many parameters does DeepSeek-V3 have?" -> "How many parameters does
  Mixtral have?"); X is a detail -> "What is the X of <subject>?";
* short elliptical questions get the subject appended ("How many layers in DeepNet?");
* "Why?", "Why is that?", "How was this measured?" are about the fact just answered, not about a
  name: the previous question is put in front ("How many parameters does DeepSeek-V3 have? Why
  is that?"), as it is when no subject can be found, so retrieval still sees the topic.

A question that names its own subject and refers back to nothing stands alone, unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from citeqa.text import QUESTION_WORDS, stopwords
from service.answering.answer import REFUSAL_TEXT


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Acronyms that name a kind of thing, not the subject of a conversation.
_GENERIC = _words(
    """llm llms lvlm lvlms mllm mllms lmm lmms vlm vlms gpu gpus tpu tpus cpu cpus ai ml nlp cv
    api apis cnn cnns rnn rnns moe flops flop sota kv qa rag ok i"""
)
_IMPERATIVES = _words(
    "compare tell explain describe list summarize summarise give name show please"
)
_AUX = _words("is are was were does do did has have had can could will would should may might")
_COPULA = _words("is are was were")
_PERSONAL = _words("i you we me us my your our")
_WH = _words("what which who whom whose when where why how")
_QUESTION_START = _WH | _AUX | _IMPERATIVES
_PREPOSITIONS = _words(
    "in for on with at during from by under over about of to into than against versus vs"
)
_DETERMINERS = _words("the a an its their his her this that these those my our your")
_PUNCT = "\"'“”‘’()[]{}<>,.;:?!"

_HEADS = (
    r"paper|papers|model|models|method|methods|approach|approaches|system|systems|architecture|"
    r"architectures|technique|techniques|framework|frameworks|report|article|study|studies"
)
_REFERENCE_NP = re.compile(rf"\b(?:the|this|that|these|those)\s+(?:{_HEADS})\b", re.IGNORECASE)
_ORDINAL_WORDS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3}
_ORDINAL_WORDS |= {"fourth": 4, "4th": 4, "fifth": 5, "5th": 5, "former": 1}
_ORDINAL = re.compile(
    r"\bthe\s+(?:(?P<pos>first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last)\s+"
    rf"(?:one|source|reference|document|result|{_HEADS})|(?P<bare>former|latter))\b",
    re.IGNORECASE,
)
_NUMBERED = re.compile(
    r"\b(?:source|paper|reference|document)\s*\[?(?P<n>\d{1,2})\]?|\[(?P<m>\d{1,2})\]",
    re.IGNORECASE,
)
_ITS = re.compile(r"\b(?:its|their)\b", re.IGNORECASE)
_IT_IS = re.compile(r"\bit['’]s\b", re.IGNORECASE)
_PRONOUN = re.compile(r"\b(?:it|they|them|itself|themselves)\b", re.IGNORECASE)
_DEMONSTRATIVE = re.compile(r"\b(?:this|that|these|those)\b", re.IGNORECASE)
_OPENER = re.compile(
    r"^\s*(?P<conj>(?:(?:and|but|so|also|then|ok|okay|well)\b[\s,]*)*)"
    r"(?P<about>(?:what|how)\s+about\b|what\s+of\b)?[\s,]*",
    re.IGNORECASE,
)
_DEFINITION = re.compile(r"^(?:what|who)\s+(?:is|are|was|were)\s+(?!the\b|its\b|their\b)", re.I)
_COPULA_NP = re.compile(
    r"^(?:what|who)\s+(?:is|are|was|were)\s+(?:a\s+|an\s+|the\s+)?(?P<np>[^?]+?)\s*\??$", re.I
)
_ABOUT_NP = re.compile(
    r"^(?:tell\s+me\s+about|explain|describe|summari[sz]e)\s+(?:the\s+)?(?P<np>[^?.]+)", re.I
)
_ASKS_WHICH = re.compile(
    r"\b(?:which|what)\s+(?:(?!(?:is|are|was|were|does|do|did|has|have)\b)[\w-]+\s+){0,2}"
    rf"(?:{_HEADS}|scheme|schemes|work)\b",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[\"“]([^\"“”]{3,120})[\"”]")
_NUMERIC = re.compile(r"[\d.,/]+[A-Za-z%]{0,3}")
MAX_SHORT_TERMS = 3
_SUBJECT, _POSSESSIVE = "\x00", "\x01"
MAX_FRAGMENT_WORDS = 4  # "FastV?", "The learning rate?": no question word, a few words
HISTORY_QUESTIONS = 4  # earlier user questions the rewrite reads (the LLM's condense: 8 turns)
HISTORY_QUESTION_CHARS = 1000  # of each: the subject is named early; the rest is only work


@dataclass
class _Turn:
    question: str
    standalone: str
    reply: str = ""

    @cached_property
    def names(self) -> list[str]:
        """The named entities of the standalone question, found once: every later turn asks."""
        return named_entities(self.standalone)


def standalone_question(messages: Sequence[Mapping[str, Any]]) -> str:
    """The last user message of ``messages`` as a standalone question.

    ``messages`` are chat messages (``role``, ``content`` as text); system messages are ignored.
    Only the last :data:`HISTORY_QUESTIONS` earlier questions, each cut to
    :data:`HISTORY_QUESTION_CHARS`, are read: each rewritten question carries the subject
    forward, so older turns add nothing but work (a client may send 50 long messages).
    """
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return ""
    first = users[max(0, len(users) - 1 - HISTORY_QUESTIONS)]
    turns: list[_Turn] = []
    for i, message in enumerate(messages[first:], start=first):
        role, content = message.get("role"), str(message.get("content") or "").strip()
        if role == "user":
            if i != users[-1]:
                content = content[:HISTORY_QUESTION_CHARS]
            turns.append(_Turn(content, rewrite(content, turns)))
        elif role == "assistant" and turns:
            turns[-1].reply = content
    return turns[-1].standalone if turns else ""


def rewrite(question: str, history: Sequence[_Turn]) -> str:
    """``question`` made standalone with the subject of ``history`` (earlier turns)."""
    if not history or not question:
        return question
    opener = _OPENER.match(question)
    assert opener is not None  # the pattern matches the empty string
    rest = _strip_end(question[opener.end() :])
    if not rest:
        return question
    fragment = _first_word(rest) not in _QUESTION_START and (
        bool(opener.group("conj")) or len(rest.split()) <= MAX_FRAGMENT_WORDS
    )
    if opener.group("about") or fragment:
        return _finish(_what_about(rest, history))
    resolved = _resolve(rest, history)
    return question if resolved is None else _finish(resolved)


def _resolve(question: str, history: Sequence[_Turn]) -> str | None:
    """References replaced, or a short elliptical question completed; None if it stands alone."""
    previous = _strip_end(history[-1].standalone)
    replaced = _replace_ordinals(question, history[-1])
    subject = conversation_subject(history)
    if _points_at_answer(replaced) or (_refers_back(replaced) and subject is None):
        return f"{previous}? {replaced}"  # "Why is that?": about the answer, not a name
    if _refers_back(replaced):
        return _substitute(replaced, subject) if subject else None
    if replaced != question:
        return replaced
    if named_entities(question) or not _is_elliptical(question):
        return None
    if not _content_words(question):  # "Why?", "How so?"
        return f"{previous}? {question}"
    return None if subject is None else f"{question} in {subject}"


def _what_about(detail: str, history: Sequence[_Turn]) -> str:
    """ "What about X?" / "And X?": a new subject swapped in, or a detail of the old one."""
    previous = _strip_end(history[-1].standalone)
    own = named_entities(detail, fragment=True)
    subject = conversation_subject(history)
    if own and not _refers_back(detail):
        old = named_entities(previous)
        new = " and ".join(own)
        if not old:
            return f"{previous} for {new}"
        joined = " and ".join(old)
        target = joined if joined in previous else old[0]
        return previous.replace(target, new, 1)
    if _first_word(detail) in _PREPOSITIONS:  # "what about on video?"
        return f"{previous} {detail}"
    if subject is None:
        return f"{previous}? What about {detail}"
    detail = _substitute(detail, subject)
    verb = "are" if _plural(detail) else "is"
    if subject in detail:
        return f"What {verb} {detail}"
    article = "" if _first_word(detail) in _DETERMINERS else "the "
    return f"What {verb} {article}{detail} of {subject}"


# --------------------------------------------------------------------------- the subject


def conversation_subject(history: Sequence[_Turn]) -> str | None:
    """What the conversation is about, by the preferences of the module docstring."""
    previous = history[-1]
    cited = [] if previous.reply.startswith(REFUSAL_TEXT) else numbered_sources(previous.reply)
    if cited and _ASKS_WHICH.search(previous.standalone):  # the answer named the subject
        return short_title(cited[0][1])
    for turn in reversed(history):
        entities = turn.names
        if entities:
            return " and ".join(entities[:3])
    if cited:
        return short_title(cited[0][1])
    return _asked_noun_phrase(previous.standalone)


def named_entities(text: str, fragment: bool = False) -> list[str]:
    """Names in ``text``: quoted titles, then runs of capitalised / camel-case / alphanumeric
    words ("DeepSeek-V3", "Vision Transformers", "Mixture of Experts"), generic words dropped.

    A capitalised word that starts a sentence counts only if it looks like a name anyway
    ("DeepSeek-V3 uses..."), unless ``text`` is a ``fragment`` ("Mixtral", from "what about
    Mixtral?") rather than a sentence."""
    found = [q.strip() for q in _QUOTED.findall(text)]
    text = _QUOTED.sub(" , ", text)
    run: list[tuple[str, bool]] = []
    previous = ""  # the token before: a sentence starts after one ending in . ? ! or :
    for match in re.finditer(r"\S+", text):
        raw = match.group()
        word = re.sub(r"['’]s$", "", raw.strip(_PUNCT))
        initial = (match.start() == 0 and not fragment) or previous[-1:] in (".", "?", "!", ":")
        previous = raw
        if word and (_capitalised(word) or (word == "of" and run)):
            run.append((word, initial))
        else:
            _flush(run, found)
        if raw[-1] in ",;:?!.)":
            _flush(run, found)
    _flush(run, found)
    return list(dict.fromkeys(found))


def _flush(run: list[tuple[str, bool]], found: list[str]) -> None:
    words = list(run)
    run.clear()
    while words and (_weak(words[0]) or words[0][0].lower() in _skip_words()):
        words.pop(0)
    while words and words[-1][0].lower() in _skip_words():
        words.pop()
    if words and any(_strong(w) or not initial for w, initial in words):
        found.append(" ".join(w for w, _ in words))


def _weak(token: tuple[str, bool]) -> bool:
    word, initial = token
    return initial and not _strong(word)


def _capitalised(word: str) -> bool:
    return word.lower() not in _GENERIC and (word[0].isupper() or _strong(word))


def _strong(word: str) -> bool:
    """Camel case, all caps or letters with digits: a name even at the start of a sentence."""
    if word.lower() in _GENERIC or _NUMERIC.fullmatch(word):
        return False
    letters = [c for c in word if c.isalpha()]
    mixed = any(c.isdigit() for c in word) and bool(letters)
    return mixed or any(c.isupper() for c in word[1:])


@lru_cache(maxsize=1)
def _skip_words() -> frozenset[str]:
    return stopwords() | QUESTION_WORDS | _IMPERATIVES


def numbered_sources(reply: str) -> list[tuple[int, str]]:
    """``(n, title)`` of the numbered source list in an assistant message, distinct titles in
    order: ``[n] Title`` lines, or entries after "Sources:" ("[1] A; [2] B")."""
    label = re.search(r"sources:\s*", reply, re.IGNORECASE)
    if label:
        entries = re.finditer(r"\[(\d{1,2})\]\s*([^\[\n;]+)", reply[label.end() :])
    else:
        entries = re.finditer(r"(?m)^\s*\[(\d{1,2})\]\s+(.+)$", reply)
    seen: dict[str, int] = {}
    for entry in entries:
        title = re.sub(r"\s*<[^>]*>\s*$", "", entry.group(2)).strip().rstrip(".").strip()
        if title and title not in seen:
            seen[title] = int(entry.group(1))
    return [(n, title) for title, n in seen.items()]


def short_title(title: str) -> str:
    """The name part of a title ("DeepNet: Scaling Transformers..." -> "DeepNet")."""
    head = title.split(":", 1)[0].strip()
    return head if len(head) >= 2 else title


def _asked_noun_phrase(question: str) -> str | None:
    question = _strip_end(question)
    for pattern in (_COPULA_NP, _ABOUT_NP):
        match = pattern.match(question)
        if match and len(match.group("np").split()) <= 6:
            return match.group("np").strip()
    return None


# --------------------------------------------------------------------------- references


def _refers_back(question: str) -> bool:
    return bool(
        _REFERENCE_NP.search(question)
        or _IT_IS.search(question)
        or _PRONOUN.search(question)
        or _ITS.search(question)
    )


def _points_at_answer(question: str) -> bool:
    """ "Why is that?", "How was this measured?": a demonstrative pronoun refers to the fact
    just answered, so the previous question is the context to keep."""
    return any(_is_demonstrative_pronoun(question, m) for m in _DEMONSTRATIVE.finditer(question))


def _substitute(question: str, subject: str) -> str:
    """Replace the references of ``question`` with ``subject``. A possessive after a name of the
    question's own ("What does FastV do with its cache?") refers to that name and is kept."""
    own = [question.find(e) for e in named_entities(question) if e in question]
    own_at = min(own, default=len(question))
    # Placeholders first, so that words of the subject ("Lets keep it simple") stay as they are.
    question = _REFERENCE_NP.sub(_SUBJECT, question)
    question = _IT_IS.sub(f"{_SUBJECT} is", question)
    question = _ITS.sub(lambda m: m.group() if m.start() > own_at else _POSSESSIVE, question)
    question = _PRONOUN.sub(_SUBJECT, question)
    possessive = subject + ("'" if subject.endswith("s") else "'s")
    return question.replace(_POSSESSIVE, possessive).replace(_SUBJECT, subject)


def _is_demonstrative_pronoun(question: str, match: re.Match[str]) -> bool:
    """ "Why is that?", "How was this measured?" but not "the model that uses..." (a relative
    pronoun) nor "this layer" (a determiner)."""
    before = question[: match.start()].split()
    following = re.match(r"\s*([A-Za-z][A-Za-z'-]*)", question[match.end() :])
    if following is None:  # "Why is that?"
        return True
    previous = before[-1].lower().strip(_PUNCT) if before else ""
    word = following.group(1).lower()
    starts_clause = not before or previous in _WH | _AUX | _PREPOSITIONS
    verb_follows = word in _AUX or word in stopwords() or word.endswith(("ed", "en"))
    return starts_clause and verb_follows


def _replace_ordinals(question: str, previous: _Turn) -> str:
    listed = numbered_sources(previous.reply)
    entities = previous.names

    def by_position(match: re.Match[str]) -> str:
        word = (match.group("pos") or match.group("bare")).lower()
        names = [short_title(t) for _, t in listed] or entities
        if not names:
            return match.group()
        index = len(names) - 1 if word in ("last", "latter") else _ORDINAL_WORDS[word] - 1
        return names[index] if index < len(names) else match.group()

    def by_number(match: re.Match[str]) -> str:
        n = int(match.group("n") or match.group("m"))
        titles = {number: title for number, title in listed}
        return short_title(titles[n]) if n in titles else match.group()

    return _NUMBERED.sub(by_number, _ORDINAL.sub(by_position, question))


# --------------------------------------------------------------------------- small helpers


def _is_elliptical(question: str) -> bool:
    """A short question missing its subject: no verb ("How many layers?"), or a copula before
    a definite detail or a participle ("What is the learning rate?", "What data was used?").
    A question with its own subject ("How do I cook pasta?", "How does dropout work?") or a
    definition ("What is speculative decoding?") is complete."""
    words = [w.strip(_PUNCT).lower() for w in question.split()]
    if len(_content_words(question)) > MAX_SHORT_TERMS or _DEFINITION.match(question):
        return False
    if any(w in _PERSONAL for w in words):
        return False
    verbs = [i for i, w in enumerate(words) if w in _AUX]
    if not verbs:
        return True
    after = words[verbs[0] + 1 :]
    if words[verbs[0]] not in _COPULA or not after:
        return False
    return after[0] == "the" or any(w.endswith(("ed", "en")) for w in after)


def _content_words(text: str) -> list[str]:
    words = (w.strip(_PUNCT).lower() for w in text.split())
    return [w for w in words if w and w not in _skip_words()]


def _plural(detail: str) -> bool:
    last = detail.split()[-1].lower() if detail.split() else ""
    return last.endswith("s") and not last.endswith(("ss", "'s", "us", "is"))


def _first_word(text: str) -> str:
    words = text.split()
    return words[0].lower().strip(_PUNCT) if words else ""


def _strip_end(text: str) -> str:
    return text.strip().rstrip("?.!").strip()


def _finish(question: str) -> str:
    question = _strip_end(question)
    if not question:
        return question
    return question[0].upper() + question[1:] + "?"

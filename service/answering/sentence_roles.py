"""What one sentence does for the sentences around it and for a question: whether it says
what the asked subject is (a definition: "X is a ...", "we propose X"), and whether it opens by
referring back to the sentence before it ("This is achieved by ..."), so that the two state one
thing. English, not one corpus: the patterns are of how sentences are written."""

from __future__ import annotations

import re

from citeqa.text import mentions
from service.answering.corpus import abbreviation_pairs

# A sentence that opens by referring back to the one before it ("This is achieved by ...",
# "It has, however, been ...", "The former case is ..."): it continues what that one says.
_REFERS_BACK = re.compile(
    r"^\W*(?:this|these|that|those|it|its|they|their|such|thus|hence|here|then|so|however|"
    r"therefore|instead|otherwise|the (?:former|latter|first|second|same)|in (?:this|that|"
    r"such a) case|for (?:example|instance))\b",
    re.IGNORECASE,
)


def refers_back(sentence: str) -> bool:
    """The sentence opens by referring back to the one before it: it continues that one."""
    return bool(_REFERS_BACK.match(sentence))


_DEFINING_VERB = re.compile(
    r"\b(propose|proposes|present|presents|introduce|introduces|called|named|dubbed|termed)\b",
    re.IGNORECASE,
)
# Without the name, only a verb that introduces the document's own subject ("In this paper, we
# propose ..."): "called" or "named" define only the name that follows them ("the arguments
# are named in the call" names no subject).
_INTRODUCING_VERB = re.compile(
    r"\b(propose|proposes|present|presents|introduce|introduces)\b", re.IGNORECASE
)
# What follows the subject in a sentence that says what it is: "X is a ...", "X (Y) are the
# ...", "X, which is ...", "X refers to / stands for / means / denotes / is defined as ...".
_COPULA = (
    r"\s*(?:\([^)]*\)\s*)?,?\s*(?:which\s+)?(?:(?:is|are|was|were)\s+(?:an?|the|defined|called|"
    r"known)\b|refers?\s+to\b|stands?\s+for\b|means\b|denotes\b)"
)


# The subject is what the verb introduces: a few words after it ("we propose a new benchmark,
# X", "a model called X"), not a name earlier in the sentence ("we explore the challenges X
# encounters and propose directions for future research").
_OBJECT_WORDS = r"(?:\W+[\w-]+){0,5}?\W+"


def defines(sentence: str, subject: str, title: str) -> bool:
    """The sentence says what the subject is: it names the subject (as a whole word: "DeepNet"
    is not "DeepNets-1M") and introduces it ("we propose FastV, ...": the name follows the
    verb), says what it is ("X is a ...", "X stands for ...") or spells it out ("the Receptance
    Weighted Key Value (RWKV) model ...", "RWKV (Receptance ...)", either way round: where a
    text first writes an abbreviation, it says what the abbreviation is); or its document is
    about the subject (the title names it) and the sentence introduces what the document
    proposes ("In this paper, we propose ...")."""
    lowered = sentence.lower()
    forms = [subject.lower()]
    if forms[0].endswith("s") and len(forms[0]) > 3:  # "Switch Transformers" -> "Transformer"
        forms.append(forms[0][:-1])
    named = [form for form in forms if mentions(lowered, form)]
    if not named:
        return _titled(title, forms) and bool(_INTRODUCING_VERB.search(sentence))
    if any(form in pair for pair in abbreviation_pairs(sentence) for form in named):
        return True
    return any(
        re.search(rf"{_DEFINING_VERB.pattern}{_OBJECT_WORDS}{re.escape(form)}(?![\w-])", lowered)
        or re.search(rf"(?<![\w-]){re.escape(form)}{_COPULA}", lowered)
        for form in named
    )


def _titled(title: str, forms: list[str]) -> bool:
    lowered = title.lower()
    return any(mentions(lowered, form) for form in forms)

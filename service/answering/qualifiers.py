"""Qualifiers: the numbers and numbered names a question pins its answer to, and whether a
text states them.

"What FVD does a one-billion-parameter model reach?", "... the ResNet-50 baseline ...",
"... with a rank of 16?", "How many packages depended on it in 2023?": the answer is about
that model size, that variant, that setting, that year. A document that states the asked
measure for another size ("700M to 3B parameters"), another variant ("ResNet-18") or another
setting ("a rank of 8") does not answer the question, however close it is. English writes
the same amount in several ways ("1B", "1 billion", "one-billion", "1,000M"): amounts are
compared by value.

Not qualifiers: a number the question offers as a bound or an estimate ("more than 50%",
"about 5M parameters", "ninety-something percent": the answer may differ from it), the
alternatives it offers ("A or B", "e.g. X"), a number word that counts what is asked ("which
two backbones").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from citeqa.text import normalise_number

# Number words count as numbers: "one argument", "twenty datasets", "a dozen".
NUMBER_WORDS: dict[str, str] = {
    word: str(value)
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "dozen": "12",
    "single": "1",
    "twice": "2",
    "double": "2",
    "triple": "3",
    "half": "0.5",
}
# Number words too common in other senses to pin an amount by themselves ("one of", "a single
# pass", "half the time"); with a scale word they do ("one billion").
_LOOSE_WORDS = frozenset(["zero", "one", "single", "twice", "double", "triple", "half", "dozen"])

_SCALES = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
    "t": 1e12,
    "trillion": 1e12,
}
_SCALE = r"k|m|b|bn|t|thousand|million|billion|trillion"
# An amount in digits, whole ("1,024", "2.6x", "70B", "3B-parameter", "100 billion"), not the
# digits of a name ("WMT14", "H100") nor a part of a longer number.
_DIGITS = re.compile(
    rf"(?<![A-Za-z0-9.,'’])(?P<number>\d+(?:[.,]\d+)*)(?:[\s-]?(?P<scale>{_SCALE})\b)?"
    r"(?![.,]?\d)",
    re.IGNORECASE,
)
# What a text may state an amount with: any digits, a name's too ("iPhone14", "INT8").
_ANY_DIGITS = re.compile(
    rf"(?<![0-9.,])(?P<number>\d+(?:[.,]\d+)*)(?:[\s-]?(?P<scale>{_SCALE})\b)?(?![.,]?\d)",
    re.IGNORECASE,
)
_TENS = r"twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_UNITS = r"one|two|three|four|five|six|seven|eight|nine"
_TENS_UNITS = rf"(?:{_TENS})[\s-](?:{_UNITS})"  # "twenty-two"
# Below a hundred: "six", "twelve", "twenty-two" (what counts hundreds, and what follows them).
_SMALL_WORDS = [w for w, v in NUMBER_WORDS.items() if v.isdigit() and 0 < int(v) < 100]
_SMALL = rf"{_TENS_UNITS}|{'|'.join(_SMALL_WORDS)}"
# Hundreds: "two hundred", "twelve hundred", "four hundred eighty-two", "a hundred and ten".
_HUNDREDS = rf"(?:(?:{_SMALL})[\s-]+)?hundred(?:(?:\s+and)?[\s-]+(?:{_SMALL}))?"
# A number in words: "six", "twenty-two", "two hundred", "one-billion", and on past its scale
# word, "seven thousand four hundred eighty-two".
_WORDS_RE = re.compile(
    rf"\b(?P<word>{_HUNDREDS}|{_TENS_UNITS}|{'|'.join(NUMBER_WORDS)})(?:[\s-]+"
    rf"(?P<scale>thousand|million|billion|trillion)(?:(?:\s+and)?[\s-]+(?P<rest>{_HUNDREDS}|"
    rf"{_SMALL}))?)?\b",
    re.IGNORECASE,
)


def _word_value(word: str) -> str:
    """ "six" -> "6", "twenty-two" -> "22", "twelve hundred" -> "1200", "four hundred
    eighty-two" -> "482"."""
    parts = [p for p in re.split(r"[\s-]+", word.lower()) if p != "and"]
    if len(parts) == 1:
        return NUMBER_WORDS[parts[0]]
    total = 0
    for part in parts:
        total = (total or 1) * 100 if part == "hundred" else total + int(NUMBER_WORDS[part])
    return str(total)


@dataclass(frozen=True)
class Amount:
    """A number as written ("70", "1.5"), and the scale word that multiplies it (1e9 for
    "70B", 1.0 without one)."""

    number: str
    scale: float = 1.0

    @property
    def value(self) -> float:
        """The amount ("70B" -> 7e10); NaN for a dotted version ("2.4.0"), compared as
        written."""
        try:
            return float(self.number) * self.scale
        except ValueError:
            return math.nan

    def same(self, other: Amount) -> bool:
        """The same amount: equal in value ("1B", "1,000M", "one billion"), or, where one of
        the two has no scale word, the same number ("70B" and "a 70 ... model")."""
        if math.isclose(self.value, other.value, rel_tol=1e-9):
            return True
        return (self.scale == 1.0 or other.scale == 1.0) and self.number == other.number


def _scaled(number: str, scale: str | None) -> Amount:
    return Amount(normalise_number(number), _SCALES[scale.lower()] if scale else 1.0)


def _in_words(match: re.Match[str]) -> Amount:
    """The amount a :data:`_WORDS_RE` match states: "seven thousand four hundred eighty-two"
    is 7482, one number, not 7000 and 482."""
    number, scale, rest = _word_value(match["word"]), match["scale"], match["rest"]
    if rest and number.isdigit():
        whole = int(number) * int(_SCALES[scale.lower()]) + int(_word_value(rest))
        return Amount(str(whole))
    return _scaled(number, scale)


def amounts(text: str) -> list[Amount]:
    """Every amount ``text`` states, in digits or in words, with its scale."""
    found = [_scaled(m.group("number"), m.group("scale")) for m in _ANY_DIGITS.finditer(text)]
    found += [_in_words(m) for m in _WORDS_RE.finditer(text)]
    return found


# Words that make a number a bound or an estimate, not a setting the answer is about.
_HEDGE = re.compile(
    r"(?:\b(?:more|less|fewer|greater|higher|lower|larger|smaller|better|worse|other)\s+than|"
    r"\b(?:over|above|below|under|beyond|exceeds?|exceeding|at\s+least|at\s+most|up\s+to|"
    r"about|around|roughly|approximately|nearly|almost|some|circa|ca\.)|[~<>≈≥≤])\s*$",
    re.IGNORECASE,
)
# ... or after it: "ninety-something percent", "a 30-odd layer net", "70ish", "5 or so".
_ROUGH = re.compile(r"(?:-?something|-odd|-?ish|\s+or\s+so)\b", re.IGNORECASE)
# Alternatives the question offers: "(e.g., Vicuna or LLaMA-2)", "Gaudi2, H100, or else"; and
# what it adds in parentheses, an aside ("low-bit (2-bit) LLMs", "(about 164K samples)").
_EXAMPLES = re.compile(r"\((?:e\.g\.|i\.e\.|such as|like)[^)]*\)", re.IGNORECASE)
_ASIDE = re.compile(r"\([^)]*\)")
_ALTERNATIVES = re.compile(r"[\w\-.]+(?:\s*,\s*[\w\-.]+)*,?\s+or\s+[\w\-.]+", re.IGNORECASE)
# A numbered name: its family and its number ("ResNet-" and "50", "LLaVA-1.5-" and "7B",
# "DeepSeek-V" and "3"); a plural "s" after the number goes ("A100s").
_NUMBERED = re.compile(r"(?P<family>.*[A-Za-z.\-\s_])(?P<number>\d[\d.]*[A-Za-z]{0,2}?)s?")
_SEPARATORS = re.compile(r"[\s\-_]+")


@dataclass(frozen=True)
class Qualifier:
    """A number or numbered name the question pins its answer to: ``text`` as the question
    writes it, and either the ``amount`` it states or the ``name`` ("ResNet-50") a text must
    mention."""

    text: str
    amount: Amount | None = None
    name: str = ""


def offers_alternatives(text: str) -> bool:
    """The question offers alternatives or examples: "A or B?", "(e.g. X)"."""
    return bool(_EXAMPLES.search(text) or _ALTERNATIVES.search(text))


def _offered(text: str) -> str:
    """``text`` with the alternatives, examples and asides it offers blanked out."""
    text = _ASIDE.sub(lambda m: " " * len(m.group()), text)
    return _ALTERNATIVES.sub(lambda m: " " * len(m.group()), text)


BEFORE = 40  # characters before a number that may make it a bound or a setting


def _before(text: str, start: int) -> str:
    """The few words before ``start``: what may hedge the number there ("more than")."""
    return text[max(0, start - BEFORE) : start]


def _inside_name(text: str, start: int) -> bool:
    """The digits at ``start`` continue a name: "ResNet-50", "LLaVA-1.5-7B"."""
    return (
        start >= 2
        and text[start - 1] == "-"
        and (text[start - 2].isalnum() or text[start - 2] == ".")
    )


def asked_qualifiers(question: str, asked_names: Sequence[str]) -> tuple[Qualifier, ...]:
    """The qualifiers of ``question``, once each, in order: amounts in digits ("1024 frames",
    "70B"), number words that state one ("a depth of six", "three layers", "one-billion"),
    and the names among ``asked_names`` (the question's) with digits ("ResNet-50",
    "LLaVA-1.5-7B", "Transformer V2")."""
    text = _offered(question)
    found: list[tuple[int, Qualifier]] = []
    taken: list[range] = []
    for m in _DIGITS.finditer(text):
        taken.append(range(m.start(), m.end()))
        amount = _scaled(m.group("number"), m.group("scale"))
        if amount.value in (0.0, 1.0):  # "lambda = 0", "step 1": a flag or an ordinal
            continue
        if _inside_name(text, m.start()) or _estimated(text, m.start(), m.end()):
            continue
        found.append((m.start(), Qualifier(m.group().strip(), amount=amount)))
    for m in _WORDS_RE.finditer(text):
        if any(m.start() in span for span in taken):  # the "billion" of "100-billion"
            continue
        word, scale = m.group("word").lower(), m.group("scale")
        before = _before(text, m.start())
        # A number word pins an amount with a scale word ("one-billion-parameter"), counting
        # hundreds ("two hundred layers", "four hundred eighty-two directions") or as the
        # value of a setting ("a depth of only six"); else it is as often a manner of speaking
        # ("any two blocks", "thousand-layer nets") as an amount.
        of = re.search(r"\bof\s+(?:only\s+|just\s+)?$", before, re.IGNORECASE)
        hundreds = "hundred" in word and word != "hundred"
        if (scale or hundreds or (of and word not in _LOOSE_WORDS)) and not _estimated(
            text, m.start(), m.end()
        ):
            amount = _in_words(m)
            found.append((m.start(), Qualifier(m.group(), amount=amount)))
    for name in asked_names:
        at = text.find(name)  # -1: an alternative the question offers
        if at >= 0 and any(ch.isdigit() for ch in name):
            found.append((at, Qualifier(name, name=name)))
    unique = {(q.text.lower(), q.name): q for _, q in sorted(found, key=lambda p: p[0])}
    return tuple(unique.values())


def _estimated(text: str, start: int, end: int) -> bool:
    """The amount at ``text[start:end]`` is offered as a bound or an estimate ("more than 50%",
    "about 5M", "ninety-something percent"): the answer may differ from it."""
    return bool(_HEDGE.search(_before(text, start)) or _ROUGH.match(text, end))


def _spelled(name: str) -> str:
    """A pattern for ``name`` in a lower-cased text, separators aside ("ResNet-50" is
    "resnet50", "resnet 50")."""
    parts = [re.escape(p) for p in _SEPARATORS.split(name.lower()) if p]
    return r"[\s\-_]?".join(parts)


def _other_number(name: str, text_lower: str) -> bool:
    """The text names ``name``'s family with another number, and never this one: "ResNet-18"
    for "ResNet-50", "LLaVA-1.5-13B" for "LLaVA-1.5-7B". A number listed with others counts as
    named ("EMO-1M/2M/5M")."""
    match = _NUMBERED.fullmatch(name)
    family = match.group("family").rstrip(" -_") if match else ""
    if len(re.sub(r"[^a-z]", "", family.lower())) < 2:  # "A100", "V2": no family to tell
        return False
    start = rf"(?<![a-z0-9]){_spelled(family)}[\s\-_]?"
    number = re.escape(match.group("number").lower()) if match else ""
    if re.search(rf"{start}(?:[\w.]+/)*{number}(?![a-z0-9])", text_lower):
        return False
    return re.search(rf"{start}\d", text_lower) is not None


def stated(qualifier: Qualifier, text: str, text_amounts: list[Amount] | None = None) -> bool:
    """Whether ``text`` states the qualifier: the same amount, in any writing
    (``text_amounts``: :func:`amounts` of the text, when already known); a numbered name
    unless the text names its family with another number only (:func:`_other_number`)."""
    if qualifier.amount is not None:
        told = amounts(text) if text_amounts is None else text_amounts
        return any(qualifier.amount.same(a) for a in told)
    return not _other_number(qualifier.name, text.lower())


def sibling_named(qualifiers: tuple[Qualifier, ...], sentence: str) -> bool:
    """The sentence names a numbered name of the question with another number only
    ("Apollo-3B ... 55.1 on LongVideoBench" for "Apollo-7B"): what it states is the sibling's."""
    lowered = sentence.lower()
    return any(q.name and _other_number(q.name, lowered) for q in qualifiers)


def unstated(qualifiers: tuple[Qualifier, ...], text: str) -> list[Qualifier]:
    """The qualifiers ``text`` does not state."""
    if not qualifiers:
        return []
    told = amounts(text)
    return [q for q in qualifiers if not stated(q, text, told)]

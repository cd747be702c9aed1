"""Rewording in the collection's own vocabulary: what a user who has not read a document's
sentence would write about it, for the generated questions of :mod:`evals.nearmiss`.

Real questions rarely repeat a sentence's words: they paraphrase ("how much bigger does the
model get" for "increases the parameter count by"), leave out the rare term the sentence uses
and name what they ask about by a near word. A :class:`Thesaurus` gives each content word of
the collection its nearest neighbour among the collection's other words, by the embedder's
cosine (a different stem, so the swap changes what a lexical match sees); :meth:`reword`
swaps some words of a phrase for their neighbours and drops its rarest word. Nothing here
comes from a word list: the words and their neighbours are the collection's own.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np

from citeqa.embedding import Embedder
from citeqa.text import bm25_idf, stem, stopwords, term_set, words

VOCABULARY = 2000  # the most widespread words of the collection: those given a neighbour
CANDIDATES = 10  # nearest words looked at for a neighbour of another stem
MIN_COSINE = 0.45  # a neighbour less similar than this is no paraphrase: the word stays
RARE_SHARE = 0.05  # a word at most this share of the documents use is rare
SWAP_SHARE = 0.5  # of a phrase's content words, about this share is swapped


def content_words(text: str) -> list[str]:
    """The plain lower-case content words of ``text``, in order ("zero-inflated", "counts")."""
    stop = stopwords()
    return [
        w
        for w in words(text)
        if w.isascii() and w.replace("-", "").isalpha() and w.islower() and len(w) >= 4
        if w not in stop
    ]


@dataclass
class Thesaurus:
    """Each known word's nearest other word of the collection, and each word's IDF."""

    neighbours: dict[str, str] = field(default_factory=dict)
    idf: dict[str, float] = field(default_factory=dict)
    rare: list[str] = field(default_factory=list)  # words of at most RARE_SHARE of the documents

    @classmethod
    def build(cls, texts: Sequence[str], embedder: Embedder) -> Thesaurus:
        """Neighbours among the :data:`VOCABULARY` content words most of ``texts`` (the
        documents) use, each word's IDF over them. Rarer words keep no neighbour: a
        paraphrase leaves them out (:meth:`reword` drops the rarest word)."""
        df: dict[str, int] = {}
        for text in texts:
            for word in set(content_words(text)):
                df[word] = df.get(word, 0) + 1
        n = max(1, len(texts))
        idf = {w: bm25_idf(c, n) for w, c in df.items()}
        few = max(2.0, RARE_SHARE * n)
        rare = sorted(w for w, c in df.items() if c <= few)
        vocabulary = sorted(df, key=lambda w: (-df[w], w))[:VOCABULARY]
        if len(vocabulary) < 2:
            return cls({}, idf, rare)
        vectors = embedder.embed(vocabulary)
        cosines = vectors @ vectors.T  # one product: many small ones are far slower
        nearest = np.argsort(-cosines, axis=1)[:, 1 : 1 + CANDIDATES]
        stems = [stem(v) for v in vocabulary]
        neighbours: dict[str, str] = {}
        for i, word in enumerate(vocabulary):
            for j in nearest[i]:
                if cosines[i, j] < MIN_COSINE:
                    break
                other = vocabulary[j]
                if stems[j] != stems[i] and other not in word and word not in other:
                    neighbours[word] = other
                    break
        return cls(neighbours, idf, rare)

    def reword(self, phrase: str, rng: random.Random, drop_rarest: bool = True) -> str:
        """``phrase`` with about :data:`SWAP_SHARE` of its content words (at least one that
        has a neighbour) swapped for their neighbours. Its rarest content word, what it is
        about, is left out when ``drop_rarest`` (a paraphrase that avoids the exact term)
        and it has three or more, else kept as written."""
        tokens = phrase.split()
        plain = [i for i, t in enumerate(tokens) if t in self.idf]
        rarest = max(plain, key=lambda i: self.idf[tokens[i]], default=-1)
        if drop_rarest and len(plain) >= 3:
            tokens[rarest] = ""
        swappable = [i for i, t in enumerate(tokens) if t in self.neighbours and i != rarest]
        if swappable:
            count = max(1, round(SWAP_SHARE * len(swappable)))
            for i in rng.sample(swappable, count):
                tokens[i] = self.neighbours[tokens[i]]
        return " ".join(t for t in tokens if t)

    def rekey(self, phrase: str, known: AbstractSet[str], rng: random.Random) -> str:
        """``phrase`` with one of its content words (not the rarest, when it has others)
        replaced by a rare word of the collection that ``known`` (a document's terms) lacks:
        the rest of what the document says, about something it never mentions; "" when
        there is none."""
        tokens = phrase.split()
        plain = [i for i, t in enumerate(tokens) if t in self.idf]
        if not plain or not self.rare:
            return ""
        rarest = max(plain, key=lambda i: self.idf[tokens[i]])
        key = rng.choice([i for i in plain if i != rarest] or [rarest])
        for word in rng.sample(self.rare, min(len(self.rare), 20)):
            if not term_set(word) & known:
                tokens[key] = word
                return " ".join(tokens)
        return ""

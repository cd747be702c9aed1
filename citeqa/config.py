"""Settings: the one place citeqa reads its configuration from.

Every field can be set from the environment with the prefix ``CITEQA_`` (``CITEQA_TOP_K=8``)
or from a ``.env`` file. The fields are flat, not nested, because the environment names users
are told about (``CITEQA_CHROMA_URL``, ``CITEQA_LLM_BASE_URL``) read better without ``__``
section separators; the field names are grouped by prefix instead (``chroma_*``, ``llm_*``).
``OPENAI_API_KEY`` is honoured as the LLM key when ``CITEQA_LLM_API_KEY`` is not set.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from citeqa.resources import BUNDLED_CORPUS

MIN_API_KEY_CHARS = 16
MAX_TOP_K = 50  # most sources per answer or search: the one bound of top_k everywhere
_API_KEY_RE = re.compile(rf"[\x21-\x7e]{{{MIN_API_KEY_CHARS},}}")


class Settings(BaseSettings):
    """citeqa configuration; see the README's configuration table (generated from this class)."""

    # hide_input_in_errors: a validation error must not echo a secret (api_keys, llm_api_key)
    model_config = SettingsConfigDict(
        env_prefix="CITEQA_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    # Store
    data_dir: Path = Field(
        Path(".citeqa"), description="Folder for the embedded Chroma store and caches."
    )
    chroma_url: str | None = Field(
        None,
        description="URL of a Chroma server (e.g. http://127.0.0.1:8001). Unset: embedded Chroma "
        "under data_dir.",
    )
    collection: str = Field("citeqa", description="Chroma collection holding the chunks.")
    corpus_path: Path = Field(
        BUNDLED_CORPUS, description="Corpus ingested by `citeqa serve` when the store is empty."
    )
    prompts_dir: Path | None = Field(
        None,
        description="Folder of your own prompt templates (Jinja2 `.md`, named as in `prompts/`); "
        "a template it lacks comes from the package.",
    )

    # Embeddings
    embed_backend: Literal["minilm-onnx", "openai"] = Field(
        "minilm-onnx",
        description="minilm-onnx: all-MiniLM-L6-v2 int8 shipped in a PyPI package (offline). "
        "openai: an OpenAI-compatible /v1/embeddings endpoint.",
    )
    embed_model: str = Field(
        "text-embedding-3-small", description="Embedding model name when embed_backend=openai."
    )
    embed_base_url: str | None = Field(
        None, description="Base URL for OpenAI-compatible embeddings (default: llm_base_url)."
    )
    embed_threads: int = Field(2, ge=1, le=64, description="ONNX threads for local embeddings.")
    embed_batch_size: int = Field(
        16,
        ge=1,
        le=2048,
        description="Texts per /v1/embeddings request when embed_backend=openai. Ingest embeds "
        "64 texts per call: 16 x embed_concurrency 4 keeps four requests in flight (TEI refuses "
        "more than its --max-client-batch-size, 32 by default).",
    )
    embed_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Most /v1/embeddings requests in flight at once for one embedding call "
        "(an ingest batch) when embed_backend=openai.",
    )
    embed_max_attempts: int = Field(
        4,
        ge=1,
        le=10,
        description="Attempts per /v1/embeddings request, first included (429, 5xx, timeouts "
        "and connection errors are retried; other 4xx are not).",
    )
    embed_timeout_s: float = Field(
        60.0, gt=0, description="Timeout of one /v1/embeddings HTTP attempt."
    )

    # Reading and chunking
    pdf_time_limit_s: float = Field(
        120.0, gt=0, description="Longest extraction of one PDF; a slower one is skipped."
    )
    chunk_max_tokens: int = Field(
        200, ge=32, le=512, description="Most word pieces in a chunk (title included)."
    )
    chunk_vectors: Literal["embed", "sentence-mean"] = Field(
        "embed",
        description="How ingest makes a chunk's vector. embed: a model pass over the chunk. "
        "sentence-mean: the normalised mean of the vectors of its sentences and of its title "
        "and section line, which ingest embeds anyway: no chunk pass, about half the "
        "embedding CPU of a folder, for fewer near misses refused (BENCHMARKS.md). Part of "
        "every chunk's version: changing it re-embeds the store on the next ingest.",
    )
    ingest_max_records_per_s: float | None = Field(
        None,
        gt=0,
        description="Most records (chunks and their sentences) an ingest writes to the store "
        "a second; unset: as fast as it takes them. On a machine the store shares with the "
        "API, a paced ingest leaves the cores to the searches (ingest/pacing.py).",
    )

    # Retrieval
    top_k: int = Field(
        5, ge=1, le=MAX_TOP_K, description="Sources returned per question by default."
    )
    candidate_k: int = Field(
        30, ge=5, le=200, description="Candidates taken from each retriever before fusion."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    lexical_index: Literal["tantivy", "snapshot"] = Field(
        "tantivy",
        description="BM25 index: `tantivy` (on disk under data_dir, follows the change log, "
        "updated in place; docs/lexical-index.md) or `snapshot` (bm25s, the whole collection "
        "in memory, rebuilt when it changes).",
    )
    lexical_build_workers: int | None = Field(
        None,
        ge=0,
        le=32,
        description="Processes a cold build of the `tantivy` index makes its chunks' tokens, "
        "stems and name keys in (a new replica's first build; docs/lexical-index.md). Unset: "
        "one per CPU from 20,000 chunks on; 0: in the API process.",
    )
    lexical_poll_s: float = Field(
        2.0,
        gt=0,
        description="How often (seconds) an API process looks for changes made through another "
        "process (a replica, `citeqa ingest`, `citeqa documents delete`): `tantivy` polls the "
        "change log, `snapshot` checks the collection. With the time to apply a change, the "
        "bound on how long replicas disagree; a process sees its own uploads and deletes at once.",
    )

    # Answering
    generator: Literal["auto", "extractive", "llm"] = Field(
        "auto",
        description="auto: the LLM when llm_base_url or an API key is set, else extractive.",
    )
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible base URL (vLLM, Ollama, llama.cpp server...)."
    )
    llm_api_key: SecretStr | None = Field(
        None, description="API key for the LLM endpoint (falls back to OPENAI_API_KEY)."
    )
    llm_model: str = Field("gpt-4o-mini", description="Chat model name sent to the endpoint.")
    llm_temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
    llm_max_tokens: int = Field(600, ge=16, le=8192, description="Most tokens in an answer.")
    llm_timeout_s: float = Field(30.0, gt=0, description="Timeout of one LLM HTTP attempt.")
    llm_max_attempts: int = Field(3, ge=1, le=10, description="LLM attempts, first included.")
    llm_max_wait_s: float = Field(
        20.0, ge=0, description="Longest wait between LLM attempts (caps Retry-After)."
    )
    llm_deadline_s: float = Field(
        90.0, gt=0, description="Total time budget of one LLM call, retries included."
    )
    llm_frequency_penalty: float = Field(
        0.3, ge=-2, le=2, description="Penalty on repeated tokens (dropped if the server refuses)."
    )
    llm_stop: list[str] = Field(
        ["<source", "</source>"],
        max_length=4,
        description="Stop sequences: an echoed source delimiter ends the answer (JSON list).",
    )
    judge_max_failed_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="`citeqa eval --judge llm` exits 1 when the judge fails (no valid judgement) "
        "on more than this share of the answers it had to judge.",
    )

    # API
    host: str = Field("127.0.0.1", description="Address `citeqa serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `citeqa serve` listens on.")
    max_question_chars: int = Field(
        2000, ge=1, description="Longest accepted question (ask, search, chat, the web page)."
    )
    sse_keepalive_s: float = Field(
        10.0, gt=0, description="Seconds between keep-alive comments on a quiet event stream."
    )

    # Security and observability
    api_keys: SecretStr | None = Field(
        None,
        description="Comma-separated API keys (16+ characters each). When set, every endpoint "
        "except /healthz, /readyz, /metrics, GET / and /static/* needs `Authorization: Bearer "
        "<key>`. Never logged.",
    )
    write_api_keys: SecretStr | None = Field(
        None,
        description="Comma-separated API keys (16+ characters each) that may also write: upload "
        "(POST /v1/documents) and delete documents. Keys of api_keys only read (403 on writes). "
        "When either setting is set, every write needs one of these. Never logged.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token (16+ characters) of the Prometheus scraper: when set, /metrics "
        "needs `Authorization: Bearer <token>` (client API keys do not open it; it spends no "
        "client's rate limit). Unset: /metrics is open when api_keys is unset, closed (403) when "
        "it is set. Never logged.",
    )
    rate_limit_per_min: int = Field(
        120,
        ge=0,
        description="Requests per minute per API key (token bucket; bursts up to this many). "
        "Only enforced when api_keys is set: without keys there is no client identity to limit "
        "(limit by IP in the reverse proxy). Per process. 0 disables.",
    )
    max_body_bytes: int = Field(
        512 * 1024,
        ge=1024,
        description="Largest accepted request body in bytes; larger bodies get 413 before "
        "parsing, with or without Content-Length.",
    )
    max_upload_file_bytes: int = Field(
        64 * 2**20,
        ge=1024,
        description="Largest file accepted by POST /v1/documents (413 above it).",
    )
    max_upload_bytes: int = Field(
        256 * 2**20,
        ge=1024,
        description="Largest POST /v1/documents request, all files together (413 above it).",
    )
    upload_sync_bytes: int = Field(
        2 * 2**20,
        ge=0,
        description="Uploads up to this size are ingested within the request (201); larger ones "
        "in the background (202 and a job to poll).",
    )
    calibrate_uploads: bool = Field(
        True,
        description="After an upload or a delete through the API changed the collection "
        "materially, fit its answerability model again, in the background (an upload's job "
        "says in `answerability` when it is done; a delete logs it; docs/answerability.md). "
        "`citeqa ingest` and `citeqa documents delete` do the same (`--no-calibrate`).",
    )
    upload_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Seconds a client has to send a whole upload (408 after it).",
    )
    body_timeout_s: float = Field(
        15.0,
        gt=0,
        description="Seconds a client has to send a whole request body; slower ones get 408 "
        "and the connection is closed (a body that never finishes holds no socket forever).",
    )
    log_format: Literal["json", "text"] = Field(
        "json",
        description="Server logs: json (one object per line with request_id) or text.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level of the server logs."
    )

    @model_validator(mode="after")
    def _key_from_openai_env(self) -> Settings:
        if self.llm_api_key is None and os.environ.get("OPENAI_API_KEY"):
            self.llm_api_key = SecretStr(os.environ["OPENAI_API_KEY"])
        return self

    @model_validator(mode="after")
    def _api_keys_usable(self) -> Settings:
        token = self.metrics_token.get_secret_value() if self.metrics_token else None
        if token is not None and not _API_KEY_RE.fullmatch(token):
            raise ValueError(
                f"CITEQA_METRICS_TOKEN needs {MIN_API_KEY_CHARS}+ visible ASCII characters"
            )
        for name, keys in (("API_KEYS", self.api_key_list), ("WRITE_API_KEYS", self.write_keys)):
            for key in keys:
                if _API_KEY_RE.fullmatch(key):
                    continue
                raise ValueError(
                    f"CITEQA_{name}: each key needs {MIN_API_KEY_CHARS}+ visible ASCII "
                    "characters (generate one with `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`)"
                )
        return self

    @property
    def api_key_list(self) -> list[str]:
        """The configured read keys (none, and no write keys: authentication is off)."""
        return _split_keys(self.api_keys)

    @property
    def write_keys(self) -> list[str]:
        """The configured write keys (they read too)."""
        return _split_keys(self.write_api_keys)

    @property
    def llm_configured(self) -> bool:
        """True when an LLM endpoint or key is configured."""
        return bool(self.llm_base_url or self.llm_api_key)

    @property
    def use_llm(self) -> bool:
        """Whether answers come from the LLM generator."""
        if self.generator == "auto":
            return self.llm_configured
        return self.generator == "llm"


def _split_keys(secret: SecretStr | None) -> list[str]:
    raw = secret.get_secret_value() if secret else ""
    return [key.strip() for key in raw.split(",") if key.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment (tests build their own ``Settings``)."""
    return Settings()

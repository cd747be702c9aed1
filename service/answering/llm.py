"""The LLM generator: any OpenAI-compatible Chat Completions endpoint, through the openai SDK.

:class:`ChatClient` is the one owner of retries for the LLM; the SDK's own retries are off so
the two do not multiply. Its policy is :mod:`citeqa.retry`'s: an attempt is retried on 429, 5xx,
timeouts, connection errors and malformed bodies, never on another 4xx; the wait honours
``Retry-After`` and otherwise backs off exponentially with full jitter, capped at
``llm_max_wait_s`` either way. A call stops after ``llm_max_attempts`` attempts or at
``llm_deadline_s``: no sleep reaches past the deadline and each attempt's timeout is cut to the
time left. A stream is retried only until its first token; once text has reached the caller a
retry would repeat it, so a broken stream raises instead.

:class:`LLMGenerator` renders ``prompts/answer_system.md`` and ``prompts/answer_user.md`` with
the retrieved chunks as numbered, delimited sources; the engine validates the citations of its
draft like those of any generator.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
from openai import Stream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from citeqa.config import Settings
from citeqa.errors import LLMCutOffError, LLMError, LLMTimeoutError
from citeqa.retry import (
    Backoff,
    MalformedReplyError,
    describe,
    is_retryable,
    is_timeout,
    log_retry,
    safe_url,
)
from service.answering.answer import Draft
from service.answering.evidence import Evidence
from service.answering.prompts import render
from service.answering.retrieval import Hit

log = logging.getLogger(__name__)

CANNOT_ANSWER = "I cannot answer this from the provided sources."
CONNECT_TIMEOUT_S = 5.0
CONDENSE_TURNS = 8  # latest chat messages shown to the condense prompt
CONDENSE_TURN_CHARS = 2000

Messages = list[ChatCompletionMessageParam]
T = TypeVar("T")

# Tags of our prompts that text from sources or users must not be able to close or open.
_PROMPT_TAG_RE = re.compile(r"<(/?)(source|conversation|follow_up)\b", re.IGNORECASE)
_NON_WORD_RE = re.compile(r"[\W_]+")


@dataclass
class Completion:
    text: str
    usage: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- client


@dataclass
class _OpenStream:
    response: Stream[ChatCompletionChunk]
    first: str
    chunks: Iterator[ChatCompletionChunk]


class ChatClient:
    """Chat completions with one retry policy; counters for metrics.

    ``requests``, ``retries``, ``failures`` (calls that raised), ``prompt_tokens`` and
    ``completion_tokens`` only grow; read them from any thread. An injected ``client`` must be
    built with ``max_retries=0``, or its retries multiply with these.
    """

    def __init__(self, settings: Settings, client: openai.OpenAI | None = None) -> None:
        self.model = settings.llm_model
        self.temperature = settings.llm_temperature
        self.max_tokens = settings.llm_max_tokens
        self.timeout_s = settings.llm_timeout_s
        self.max_attempts = settings.llm_max_attempts
        self.max_wait_s = settings.llm_max_wait_s
        self.deadline_s = settings.llm_deadline_s
        # sampling options a server may refuse; dropped for good after a refusal
        self.sampling: dict[str, Any] = {}
        if settings.llm_frequency_penalty:
            self.sampling["frequency_penalty"] = settings.llm_frequency_penalty
        if settings.llm_stop:
            self.sampling["stop"] = list(settings.llm_stop)
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
        self._openai = client or openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=key or "unused",  # local servers need none; the SDK insists on one
            max_retries=0,  # retries have one owner: this class
            timeout=httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)),
        )
        self.endpoint = safe_url(self._openai.base_url)
        self._wait = Backoff(self.max_wait_s, self.deadline_s)
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatClient:
        return cls(settings)

    def close(self) -> None:
        self._openai.close()

    # -- public calls ----------------------------------------------------------

    def complete(self, messages: Messages) -> Completion:
        """One chat completion, retried per the module's policy; raises :class:`LLMError`."""
        return self._call(lambda timeout: self._create(messages, timeout))

    def stream(self, messages: Messages) -> Generator[str, None, None]:
        """The completion as content deltas; retried only until the first delta."""
        started = time.monotonic()
        opened = self._call(lambda timeout: self._open_stream(messages, timeout))
        with contextlib.closing(opened.response):
            sent = len(opened.first)
            if opened.first:
                yield opened.first
            cut_off = False
            try:
                for chunk in opened.chunks:
                    delta = self._consume(chunk)
                    if delta:
                        sent += len(delta)
                        yield delta
                    cut_off = cut_off or _finish(chunk) == "length"
                    if time.monotonic() - started > self.deadline_s:
                        self._count(failures=1)
                        raise LLMTimeoutError(
                            f"LLM endpoint {self.endpoint}: stream exceeded the deadline of "
                            f"{self.deadline_s:g} s after {sent} characters"
                        )
            except (openai.OpenAIError, httpx.HTTPError, json.JSONDecodeError) as exc:
                self._count(failures=1)
                raise LLMError(
                    f"LLM endpoint {self.endpoint}: stream interrupted after {sent} characters "
                    f"({describe(exc)})"
                ) from exc
            if cut_off:
                raise LLMCutOffError(
                    f"LLM endpoint {self.endpoint}: the answer reached llm_max_tokens "
                    f"({self.max_tokens}) after {sent} characters"
                )

    # -- one attempt -----------------------------------------------------------

    def _request(self, **options: Any) -> Any:
        """A chat completion with the common options and :attr:`sampling`; when the server
        refuses the request (400/422) while sampling options were sent, they are dropped and the
        request is sent once more without them (as the eval judge does for response_format)."""
        create: Callable[..., Any] = self._openai.chat.completions.create
        common = {"model": self.model, "temperature": self.temperature, **options}
        sampling = self.sampling
        try:
            return create(max_tokens=self.max_tokens, **sampling, **common)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if not sampling:
                raise
            log.warning("LLM endpoint refused %s (%s); sent without", list(sampling), describe(exc))
            self.sampling = {}
            return create(max_tokens=self.max_tokens, **common)

    def _create(self, messages: Messages, timeout: httpx.Timeout) -> Completion:
        response = self._request(messages=messages, timeout=timeout)
        if not getattr(response, "choices", None):
            raise MalformedReplyError("the response has no choices")
        usage = _usage(response.usage)
        self._count(**usage)
        return Completion(text=response.choices[0].message.content or "", usage=usage)

    def _open_stream(self, messages: Messages, timeout: httpx.Timeout) -> _OpenStream:
        """Start a stream and read it up to its first content delta (the retried part)."""
        response = self._request(
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            timeout=timeout,
        )
        chunks = iter(response)
        try:
            for chunk in chunks:
                delta = self._consume(chunk)
                if delta:
                    return _OpenStream(response, delta, chunks)
        except BaseException:
            response.close()
            raise
        return _OpenStream(response, "", chunks)

    def _consume(self, chunk: ChatCompletionChunk) -> str | None:
        if chunk.usage is not None:
            self._count(**_usage(chunk.usage))
        return chunk.choices[0].delta.content if chunk.choices else None

    # -- retries ---------------------------------------------------------------

    def _call(self, attempt_once: Callable[[httpx.Timeout], T]) -> T:
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            wait=self._wait,
            # stop_before_delay also stops when the next wait would reach the deadline
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.deadline_s),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        started = time.monotonic()
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    self._count(requests=1)
                    return attempt_once(self._attempt_timeout(started))
        except (
            openai.OpenAIError,
            httpx.HTTPError,
            json.JSONDecodeError,
            MalformedReplyError,
        ) as exc:
            self._count(failures=1)
            raise self._give_up(exc, attempts) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _attempt_timeout(self, started: float) -> httpx.Timeout:
        """The per-attempt timeout, cut to what is left of the call's deadline."""
        left = self.deadline_s - (time.monotonic() - started)
        read = max(0.001, min(self.timeout_s, left))
        return httpx.Timeout(read, connect=min(CONNECT_TIMEOUT_S, read))

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        self._count(retries=1)
        log_retry(log, "LLM", self.max_attempts, retry_state)

    def _give_up(self, exc: BaseException, attempts: int) -> LLMError:
        plural = "" if attempts == 1 else "s"
        message = f"LLM endpoint {self.endpoint} failed after {attempts} attempt{plural}: "
        message += describe(exc)
        retryable = is_retryable(exc)
        out_of_time = retryable and attempts < self.max_attempts
        if out_of_time:
            message += f" (deadline of {self.deadline_s:g} s reached)"
        elif not retryable:
            message += " (not retried)"
        if out_of_time or is_timeout(exc):
            return LLMTimeoutError(message)
        return LLMError(message)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


def _finish(chunk: ChatCompletionChunk) -> str | None:
    return chunk.choices[0].finish_reason if chunk.choices else None


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    return {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
    }


# --------------------------------------------------------------------------- prompts


def escape_tags(text: str) -> str:
    """Neutralise our prompt's own tags inside data, so data cannot close its block."""
    return _PROMPT_TAG_RE.sub(r"&lt;\1\2", text)


def numbered_sources(hits: list[Hit]) -> list[dict[str, Any]]:
    """The hits as prompt sources, numbered from 1 in order (citation n is hits[n-1])."""
    return [
        {
            "n": n,
            "title": html.escape(hit.title, quote=True),
            "origin": html.escape(hit.source, quote=True),
            "text": escape_tags(hit.body),
        }
        for n, hit in enumerate(hits, start=1)
    ]


def answer_messages(question: str, hits: list[Hit], prompts_dir: Path | None = None) -> Messages:
    """The chat messages asking for an answer (templates of ``prompts_dir`` first, if set)."""
    return [
        {
            "role": "system",
            "content": render("answer_system", prompts_dir, cannot_answer=CANNOT_ANSWER),
        },
        {
            "role": "user",
            "content": render(
                "answer_user",
                prompts_dir,
                sources=numbered_sources(hits),
                question=question,
                cannot_answer=CANNOT_ANSWER,
            ),
        },
    ]


def _normalise(text: str) -> str:
    return _NON_WORD_RE.sub(" ", text.lower()).strip()


def is_cannot_answer(text: str) -> bool:
    """Whether the reply is the prompt's fixed cannot-answer sentence (or starts with it)."""
    return _normalise(text).startswith(_normalise(CANNOT_ANSWER))


def _content_text(content: Any) -> str:
    """A chat message's text, whether a string or a list of OpenAI content parts."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


# --------------------------------------------------------------------------- generator


class LLMGenerator:
    """Drafts answers with a chat model from the numbered sources; see the module docstring."""

    name = "llm"
    judges_answerability = True  # the prompt's cannot-answer rule
    reads_further = False  # its prompt holds the sources the caller asked for, no more

    def __init__(self, client: ChatClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMGenerator:
        return cls(ChatClient.from_settings(settings), settings)

    def messages(self, evidence: Evidence) -> Messages:
        return answer_messages(evidence.question.text, evidence.hits, self.settings.prompts_dir)

    def generate(self, evidence: Evidence) -> Draft:
        if not evidence.hits:  # nothing to answer from: do not ask the model to improvise
            return Draft(text="", refused=True)
        completion = self.client.complete(self.messages(evidence))
        if is_cannot_answer(completion.text):
            return Draft(text="", refused=True, usage=completion.usage)
        return Draft(text=completion.text.strip(), usage=completion.usage)

    def stream(self, evidence: Evidence) -> Iterator[str]:
        """The draft as deltas; nothing when the reply is the cannot-answer sentence (its start
        is held back until it differs from that sentence)."""
        if not evidence.hits:
            return
        held, deciding = "", True
        with contextlib.closing(self.client.stream(self.messages(evidence))) as deltas:
            for delta in deltas:
                if not deciding:
                    yield delta
                    continue
                held += delta
                if is_cannot_answer(held):
                    return
                if not _normalise(CANNOT_ANSWER).startswith(_normalise(held)):
                    deciding = False
                    yield held
        if deciding and held:
            yield held

    def condense(self, history: Sequence[Mapping[str, Any]], question: str) -> str:
        """A standalone version of the follow-up ``question`` given the chat ``history``.

        Falls back to ``question`` when the reply is empty or longer than a question may be.
        """
        turns = [
            {"role": str(t.get("role")), "content": _content_text(t.get("content")).strip()}
            for t in history
            if t.get("role") in ("user", "assistant")
        ]
        turns = [t for t in turns if t["content"]][-CONDENSE_TURNS:]
        if not turns:
            return question
        for turn in turns:
            turn["content"] = escape_tags(turn["content"][:CONDENSE_TURN_CHARS])
        prompt = render(
            "condense", self.settings.prompts_dir, history=turns, question=escape_tags(question)
        )
        reply = self.client.complete([{"role": "user", "content": prompt}]).text
        standalone = _standalone(reply)
        if not standalone or len(standalone) > self.settings.max_question_chars:
            return question
        return standalone


def _standalone(reply: str) -> str:
    """The question out of a condense reply: first non-empty line, without label or quotes."""
    line = next((x.strip() for x in reply.splitlines() if x.strip()), "")
    line = re.sub(r"^(standalone question|question)\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip("\"'“”").strip()

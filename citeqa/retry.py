"""The retry policy of the clients of OpenAI-compatible endpoints (chat and embeddings).

An attempt is retried on 429, 5xx, timeouts, connection errors and malformed bodies, never on
another 4xx (the same request would fail the same way). The wait honours ``Retry-After`` (or
``retry-after-ms``) and otherwise backs off exponentially with full jitter; :class:`Backoff`
caps it and keeps it inside a deadline. Failures are described without bodies or credentials.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
from datetime import UTC, datetime
from http import HTTPStatus

import httpx
import openai
from tenacity import RetryCallState, wait_random_exponential

BACKOFF_MULTIPLIER_S = 0.5  # the first backoff window; it doubles per attempt


class MalformedReplyError(Exception):
    """A 200 response without what was asked (a chat completion without ``choices``,
    embeddings of another count than the inputs)."""


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: 429, 5xx, timeouts, connections, malformed bodies."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(
        exc,
        openai.APIConnectionError  # includes APITimeoutError
        | openai.APIResponseValidationError
        | httpx.TransportError  # raised as is while a stream is read
        | json.JSONDecodeError
        | MalformedReplyError,
    )


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, openai.APITimeoutError | httpx.TimeoutException)


def retry_after_s(exc: BaseException | None) -> float | None:
    """The server's requested wait (``retry-after-ms``, ``Retry-After`` seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, httpx.Response):
        return None
    headers = response.headers
    with contextlib.suppress(ValueError):
        if "retry-after-ms" in headers:
            return _finite(float(headers["retry-after-ms"]) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return _finite(float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _finite(seconds: float) -> float | None:
    return max(0.0, seconds) if math.isfinite(seconds) else None


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a failed attempt (no bodies, no prompt text)."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        reason = exc.response.reason_phrase or _status_phrase(status)
        code = f" ({exc.code})" if isinstance(exc.code, str) and exc.code else ""
        return f"{status} {reason}{code}"
    if is_timeout(exc):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"connection error: {cause}" if cause else "connection error"
    if isinstance(
        exc, json.JSONDecodeError | openai.APIResponseValidationError | MalformedReplyError
    ):
        return "malformed response body"
    return f"{type(exc).__name__}: {exc}"[:300]


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def safe_url(url: httpx.URL) -> str:
    """The endpoint without credentials that could sit in its userinfo."""
    return str(url.copy_with(username=None, password=None)).rstrip("/")


class Backoff:
    """tenacity's ``wait``: the server's ``Retry-After`` when it sent one, else exponential
    backoff with full jitter; at most ``max_wait_s`` and never past ``deadline_s`` (counted
    from the first attempt)."""

    def __init__(self, max_wait_s: float, deadline_s: float = math.inf) -> None:
        self.max_wait_s = max_wait_s
        self.deadline_s = deadline_s
        self._jitter = wait_random_exponential(multiplier=BACKOFF_MULTIPLIER_S, max=max_wait_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        asked = retry_after_s(outcome.exception() if outcome else None)
        wait = self._jitter(retry_state) if asked is None else asked
        left = self.deadline_s - (retry_state.seconds_since_start or 0.0)
        return max(0.0, min(wait, self.max_wait_s, left))


def log_retry(log: logging.Logger, what: str, max_attempts: int, state: RetryCallState) -> None:
    """tenacity's ``before_sleep``: one warning line per failed attempt (no body, no secret)."""
    outcome = state.outcome
    exc = outcome.exception() if outcome else None
    log.warning(
        "%s attempt %d of %d failed (%s); retrying in %.2f s",
        what,
        state.attempt_number,
        max_attempts,
        describe(exc) if exc else "no outcome",
        state.upcoming_sleep,
    )

"""API keys, per-key rate limits and a request body cap, in one pure ASGI middleware.

Why middleware and not FastAPI dependencies: the checks must run before FastAPI reads and
parses a body (an unauthenticated or oversized request is refused before any JSON is decoded,
so a stranger gets 401, not 422), and they must cover every route, including routers that other
modules include. Middleware sits outside the app's exception handlers, so it writes its few
refusals itself, in the shape the clients of the path expect: the OpenAI error envelope under
``/v1/chat`` and ``/v1/models``, problem+json everywhere else.

Checks, in order:

1. **API key** (401) when ``api_keys`` or ``write_api_keys`` is set. Public: ``/healthz``,
   ``/readyz`` (it says ready or not and nothing else while keys are set), and ``GET``/``HEAD``
   of ``/`` and ``/static/*`` (the web page's assets; the page then sends the key its user
   types). ``/metrics`` has its own credential, ``metrics_token`` (the scraper's bearer token):
   with it set, only that token opens it; unset, it is open without keys and closed (403) with
   them. Probes and scrapers never spend a client's rate-limit budget.
   Keys are compared with :func:`hmac.compare_digest` against every configured key.
   A websocket without a key is closed with code 1008 (there is none today; a future one is
   covered too). **Write scope** (403): a POST or DELETE under ``/v1/documents`` needs a key of
   ``write_api_keys`` (they also read); keys of ``api_keys`` only read.
2. **Rate limit** (429 with ``Retry-After``): a token bucket per key holding
   ``rate_limit_per_min`` tokens, refilled continuously. Only with keys: without them there is
   no client identity worth trusting (behind a proxy every client shares one IP), so limit by IP
   in the proxy. Buckets live in this process: with several workers, each has its own.
3. **Body size** (413): a declared ``Content-Length`` over ``max_body_bytes`` is refused without
   reading; otherwise the body is buffered up to the limit (chunked bodies included) and replayed
   to the app, so nothing downstream ever sees more than the limit. The upload route
   (``POST /v1/documents``) is the exception: a declared length over ``max_upload_bytes`` is
   refused here, and otherwise its body goes to the route unbuffered, which streams it to disk
   under its own limits and time (:mod:`service.api.documents`).
4. **Body time** (408, then the connection is closed): the whole body must arrive within
   ``body_timeout_s``; a client that sends part of a body and stalls holds no socket and no
   worker beyond that. (The time to send the headers is the reverse proxy's to bound:
   OPERATIONS.md.)
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citeqa.config import Settings
from service.api.errors import error_response

DOCUMENTS_PATH = "/v1/documents"
_READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Refusal:
    """A request the middleware answers itself, with what both error shapes need."""

    status: int
    kind: str  # problem+json ``type``
    message: str
    openai_type: str
    openai_code: str | None
    headers: dict[str, str] = field(default_factory=dict)


METRICS_PATH = "/metrics"


def is_public(method: str, path: str) -> bool:
    """Endpoints served without a key: the probes and the static web page."""
    if path in ("/healthz", "/readyz"):
        return True
    return method in _READ_METHODS and (path == "/" or path.startswith("/static/"))


def refusal_response(path: str, refusal: Refusal) -> JSONResponse:
    """The refusal as the OpenAI envelope (OpenAI-compatible paths) or as problem+json."""
    openai = (refusal.openai_type, refusal.openai_code)
    return error_response(
        path, refusal.status, refusal.kind, refusal.message, refusal.headers, openai
    )


# --------------------------------------------------------------------------- keys


class KeyRing:
    """The configured API keys; :meth:`match` says which one a request carries."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def match(self, authorization: str | None) -> int | None:
        """Index of the key in a ``Bearer`` header, or None; compares against every key."""
        token = _bearer_token(authorization)
        if token is None:
            return None
        found = None
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(token, key):
                found = index
        return found


def _bearer_token(authorization: str | None) -> bytes | None:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("latin-1", errors="replace")


# --------------------------------------------------------------------------- rate limit


@dataclass
class TokenBucket:
    """``capacity`` tokens, refilled at ``per_second``; a request takes one."""

    capacity: float
    per_second: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token: 0 when granted, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


class RateLimiter:
    """One :class:`TokenBucket` per key index; ``per_minute`` 0 disables limiting."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[int, TokenBucket] = {}

    def wait_for(self, key: int) -> float:
        """Seconds the caller must wait (0: go ahead, a token was taken)."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            capacity = float(self.per_minute)
            bucket = TokenBucket(capacity, self.per_minute / 60, capacity, now)
            self._buckets[key] = bucket
        return bucket.take(now)


# --------------------------------------------------------------------------- middleware


def is_write(method: str, path: str) -> bool:
    """Requests that change the documents: they need a write key when keys are set."""
    return method in ("POST", "DELETE", "PUT", "PATCH") and path.startswith(DOCUMENTS_PATH)


def is_upload(method: str, path: str) -> bool:
    """The upload route reads (and limits) its own, large body."""
    return method == "POST" and path.rstrip("/") == DOCUMENTS_PATH


class SecurityMiddleware:
    """Auth, then rate limit, then body cap; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyRing,
        limiter: RateLimiter,
        max_body_bytes: int,
        metrics_token: KeyRing | None = None,
        body_timeout_s: float = 15.0,
        read_only_keys: int = 0,
        max_upload_bytes: int = 0,
    ) -> None:
        self.app = app
        self.keys = keys
        self.read_only_keys = read_only_keys  # keys[:read_only_keys] may not write
        self.max_upload_bytes = max_upload_bytes
        self.body_timeout_s = body_timeout_s
        self.metrics_token = metrics_token or KeyRing(())
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.check_access(scope) is not None:
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check_access(scope)
        if refusal is None and is_upload(scope["method"], scope["path"]):
            if not _declared_over(scope, self.max_upload_bytes):
                await self.app(scope, receive, send)
                return
            refusal = _too_large(self.max_upload_bytes)
        if refusal is None:
            body = None
            with anyio.move_on_after(self.body_timeout_s) as waited:
                body = await read_body(scope, receive, self.max_body_bytes)
            if body is not None:
                await self.app(scope, _replay(body, receive), send)
                return
            timed_out = waited.cancelled_caught
            refusal = (
                _too_slow(self.body_timeout_s) if timed_out else _too_large(self.max_body_bytes)
            )
        await refusal_response(scope["path"], refusal)(scope, receive, send)

    def check_access(self, scope: Scope) -> Refusal | None:
        """401, 403 or 429 for this request, or None to let it through."""
        if scope["path"] == METRICS_PATH:
            return self.check_scraper(scope)
        if not self.keys or is_public(scope.get("method", "GET"), scope["path"]):
            return None
        key = self.keys.match(Headers(scope=scope).get("authorization"))
        if key is None:
            return _unauthorized()
        if key < self.read_only_keys and is_write(scope.get("method", "GET"), scope["path"]):
            return _read_only()
        wait = self.limiter.wait_for(key)
        return _rate_limited(wait) if wait > 0 else None

    def check_scraper(self, scope: Scope) -> Refusal | None:
        """/metrics: the metrics token when one is set; else open without keys, closed with."""
        if self.metrics_token:
            found = self.metrics_token.match(Headers(scope=scope).get("authorization"))
            return None if found is not None else _unauthorized("metrics token")
        return _metrics_closed() if self.keys else None


async def read_body(scope: Scope, receive: Receive, limit: int) -> list[Message] | None:
    """The request's messages up to the end of its body, or None once it exceeds ``limit``."""
    if _declared_over(scope, limit):
        return None
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":  # the client went away; let the app see it
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            return messages


def _declared_over(scope: Scope, limit: int) -> bool:
    declared = Headers(scope=scope).get("content-length")
    return declared is not None and declared.isdigit() and int(declared) > limit


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered messages, then defers to the server's."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _unauthorized(credential: str = "API key") -> Refusal:
    return Refusal(
        status=401,
        kind="Unauthorized",
        message=f"a valid {credential} is required: send `Authorization: Bearer <key>`",
        openai_type="invalid_request_error",
        openai_code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _forbidden(message: str) -> Refusal:
    return Refusal(
        status=403,
        kind="Forbidden",
        message=message,
        openai_type="invalid_request_error",
        openai_code=None,
    )


def _metrics_closed() -> Refusal:
    return _forbidden(
        "/metrics is closed while API keys are set: give the scraper its own token "
        "(CITEQA_METRICS_TOKEN)"
    )


def _read_only() -> Refusal:
    return _forbidden(
        "this API key may only read: uploads and deletes need a write key (CITEQA_WRITE_API_KEYS)"
    )


def _rate_limited(wait_s: float) -> Refusal:
    retry_after = max(1, math.ceil(wait_s))
    return Refusal(
        status=429,
        kind="RateLimited",
        message=f"rate limit exceeded for this API key; retry in {retry_after} s",
        openai_type="requests",
        openai_code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after)},
    )


def _too_large(limit: int) -> Refusal:
    return Refusal(
        status=413,
        kind="PayloadTooLarge",
        message=f"the request body is larger than the limit of {limit} bytes",
        openai_type="invalid_request_error",
        openai_code="request_too_large",
        headers={"Connection": "close"},
    )


def _too_slow(limit_s: float) -> Refusal:
    return Refusal(
        status=408,
        kind="RequestTimeout",
        message=f"the request body did not arrive within {limit_s:g} s",
        openai_type="invalid_request_error",
        openai_code="request_timeout",
        headers={"Connection": "close"},
    )


def install_security(
    app: FastAPI, settings: Settings, clock: Callable[[], float] = time.monotonic
) -> None:
    """Add :class:`SecurityMiddleware` configured from ``settings``."""
    app.add_middleware(
        SecurityMiddleware,
        keys=KeyRing(settings.api_key_list + settings.write_keys),
        read_only_keys=len(settings.api_key_list),
        max_upload_bytes=settings.max_upload_bytes,
        limiter=RateLimiter(settings.rate_limit_per_min, clock),
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        metrics_token=KeyRing([settings.metrics_token.get_secret_value()])
        if settings.metrics_token
        else None,
    )

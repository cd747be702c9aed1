"""Errors as HTTP responses, in the two shapes of the API: problem+json on the native routes,
the OpenAI error envelope under :data:`OPENAI_PREFIXES` (``/v1/chat``, ``/v1/models``).

:func:`error_response` is the one place that picks the shape by path; the app's exception
handlers (:func:`install_error_handlers`), the security middleware's refusals and the error
events of a stream all build their bodies here. The handlers map :mod:`citeqa.errors` to HTTP,
with the cause of every 5xx in the log.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import httpx
from chromadb.errors import ChromaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from citeqa.errors import CiteqaError

log = logging.getLogger("citeqa.api")

OPENAI_PREFIXES = ("/v1/chat", "/v1/models")
PROBLEM_JSON = "application/problem+json"
_INPUT_ERRORS = ("InputError", "InvalidRequest")

OpenAIKind = tuple[str, str | None]  # the envelope's ``type`` and ``code``


def problem_body(status: int, kind: str, detail: str) -> dict[str, Any]:
    """An RFC 9457 problem; ``kind`` (an error class or kind) is its type and title."""
    return {"type": kind, "title": kind, "status": status, "detail": detail}


def openai_error_body(
    status: int, kind: str, message: str, openai: OpenAIKind | None = None
) -> dict[str, Any]:
    """The OpenAI error envelope for an error of class (or kind) ``kind``; ``openai`` gives its
    ``type`` and ``code`` when what the status and the kind say does not fit."""
    if openai is None:
        if status >= 500:
            error_type = "server_error"
        else:
            error_type = {401: "authentication_error", 403: "permission_error"}.get(
                status, "invalid_request_error"
            )
        openai = (error_type, _error_code(kind))
    error_type, code = openai
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _error_code(kind: str) -> str:
    """``StoreUnavailableError`` -> ``store_unavailable``; input errors -> ``invalid_request``."""
    if kind in _INPUT_ERRORS:
        return "invalid_request"
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", kind).lower().removesuffix("_error")


def error_response(
    path: str,
    status: int,
    kind: str,
    detail: str,
    headers: dict[str, str] | None = None,
    openai: OpenAIKind | None = None,
) -> JSONResponse:
    """problem+json, or the OpenAI error envelope under :data:`OPENAI_PREFIXES` (``openai``:
    its ``type`` and ``code`` when the defaults do not fit)."""
    if path.startswith(OPENAI_PREFIXES):
        body = openai_error_body(status, kind, detail, openai)
        return JSONResponse(body, status, headers=headers)
    return JSONResponse(
        problem_body(status, kind, detail), status, headers=headers, media_type=PROBLEM_JSON
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map exceptions to responses in the route's error shape."""

    @app.exception_handler(CiteqaError)
    async def citeqa_error(request: Request, exc: CiteqaError) -> JSONResponse:
        if exc.status >= 500:
            _log_failure(request, exc)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return error_response(
            request.url.path, exc.status, type(exc).__name__, exc.message, headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _body_not_json(request, exc):
            return error_response(request.url.path, 422, "InvalidRequest", _NOT_JSON)
        message = "; ".join(_describe(err) for err in exc.errors())
        return error_response(request.url.path, 422, "InvalidRequest", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unparsable = _unparsable_body(exc)
        if unparsable is not None:
            return error_response(request.url.path, 422, "InvalidRequest", unparsable)
        kind = HTTPStatus(exc.status_code).phrase.replace(" ", "")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers) if exc.headers else None
        return error_response(request.url.path, exc.status_code, kind, detail, headers)

    async def store_failure(request: Request, exc: Exception) -> JSONResponse:
        _log_failure(request, exc)
        detail = f"Chroma is unavailable: {type(exc).__name__}: {exc}"
        return error_response(
            request.url.path, 503, "StoreUnavailableError", detail, {"Retry-After": "5"}
        )

    # Handled by type, not by the catch-all below: Starlette runs that one in its outermost
    # middleware, after the exception has crossed the others, and re-raises it; with uvicorn the
    # client saw a reset connection instead of the 503 (tests/test_faults.py).
    for kind in STORE_FAILURES:
        app.add_exception_handler(kind, store_failure)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if _is_store_failure(exc):
            return await store_failure(request, exc)
        log.exception("unhandled error on %s", request.url.path)
        return error_response(
            request.url.path, 500, "InternalError", "internal error; see the server log"
        )


def _log_failure(request: Request, exc: Exception) -> None:
    """A server-side failure answered with a 5xx: its cause goes to the log (the client only
    sees the response; the operator needs the type and message to act)."""
    message = exc.message if isinstance(exc, CiteqaError) else str(exc)
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, message)


STORE_FAILURES: tuple[type[Exception], ...] = (httpx.HTTPError, ChromaError, ConnectionError)


def _is_store_failure(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("chromadb", "httpx", "httpcore")) or isinstance(exc, ConnectionError)


_NOT_JSON = "the body must be a JSON object sent with `Content-Type: application/json`"


def _body_not_json(request: Request, exc: RequestValidationError) -> bool:
    """FastAPI passes a body that is not declared JSON on as bytes, and the model then says
    "Input should be a valid dictionary": say what is wrong instead."""
    content_type = request.headers.get("content-type", "")
    declared_json = content_type.split(";")[0].strip().lower().endswith(("/json", "+json"))
    return not declared_json and any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())


def _unparsable_body(exc: StarletteHTTPException) -> str | None:
    """What is wrong with a body FastAPI could not parse (its 400 "There was an error parsing
    the body" keeps the cause in ``__cause__``), or None for any other HTTP error."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {cause.start}): send JSON encoded as UTF-8"
    if isinstance(cause, RecursionError):
        return "the body is not acceptable JSON: it is nested too deeply"
    return f"the body is not acceptable JSON: {str(cause).split(';')[0]}"  # not Python's advice


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{location or 'body'}: {error.get('msg', 'invalid')}"

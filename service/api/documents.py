"""The documents routes: upload, list, show, delete, the original file, and upload jobs.

``POST /v1/documents`` takes multipart parts named ``files`` or a JSON text. Uploaded files are
kept under ``<data_dir>/files/`` by content hash (:mod:`ingest.uploads`); an upload of at most
``upload_sync_bytes`` is ingested within the request (201), a larger one by the server's upload
worker (202, ``Location: /v1/jobs/{id}``). Limits: ``max_upload_file_bytes`` per file and
``max_upload_bytes`` per request (413); the security middleware lets this one route's body
through unbuffered and checks its declared length and the write key. Document ids contain ``:``
and ``/``: the routes take them as paths (clients may percent-encode them).
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, HttpUrl, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from citeqa.catalog import MAX_PAGE, Catalog, files_dir
from citeqa.config import Settings
from citeqa.errors import ClientGoneError, InputError, TooLargeError, TooSlowError
from citeqa.store import check_collection_name
from ingest.run import build_ingestor, refit
from ingest.uploads import Item, StoredFile, TextItem, store_file
from service.answering.engine import Engine
from service.api.engines import engine_for
from service.api.jobs import Job, UploadRunner, Work

MAX_FILES = 1000  # parts per upload request
T = TypeVar("T")
CollectionQuery = Annotated[
    str | None, Query(description="The collection (default: the server's own).")
]
documents_router = APIRouter()


class TextUpload(BaseModel):
    """A document posted as JSON."""

    title: str = Field(min_length=1, max_length=500)
    text: str = Field(min_length=1)
    metadata: dict[str, str] = Field(
        default_factory=dict, description='Only "url" (http or https): the citations link to it.'
    )

    def item(self) -> TextItem:
        unknown = sorted(set(self.metadata) - {"url"})
        if unknown:
            raise InputError(f"metadata: unsupported keys {unknown}; only 'url' is kept")
        url = self.metadata.get("url", "")
        if url:
            try:
                HttpUrl(url)
            except ValidationError:
                raise InputError(f"metadata.url is not an http(s) URL: {url!r}") from None
        if not self.text.strip() or not self.title.strip():
            raise InputError("title and text must not be blank")
        return TextItem(self.title.strip(), self.text, url)


def _catalog(request: Request, engine: Engine) -> Catalog:
    uploads = files_dir(request.app.state.settings.data_dir)
    return Catalog(engine.index, uploads, engine.retriever.listing)


@documents_router.post("/v1/documents", status_code=201, responses={202: {"description": "Job"}})
async def upload(request: Request, collection: CollectionQuery = None) -> JSONResponse:
    """Upload files (multipart parts ``files``) or a JSON ``{title, text, metadata}``."""
    settings: Settings = request.app.state.settings
    if collection is not None and collection != settings.collection:
        check_collection_name(collection)  # created below, once the body is known to be good
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        items: list[Item] = await _receive_files(request, settings)
        size = sum(i.size for i in items if isinstance(i, StoredFile))
    elif content_type == "application/json":
        limited = _limited(request, settings.max_upload_file_bytes)
        body = await _in_time(limited.body(), settings.upload_timeout_s)
        try:
            text = TextUpload.model_validate_json(body)
        except ValidationError as exc:  # the app's handler words it like any other 422
            raise RequestValidationError(exc.errors()) from None
        items, size = [text.item()], len(body)
    else:
        raise InputError(
            "send the files as multipart/form-data parts named `files`, or a JSON object "
            '{"title", "text"} with Content-Type: application/json'
        )
    engine = await engine_for(request, collection, create=True)
    runner: UploadRunner = request.app.state.uploads
    job = Job.new(engine.index.chunks.name, len(items))
    client = request.app.state.collections.client
    ingestor = build_ingestor(engine.settings, engine.embedder, engine.index, client)
    refit = (lambda done: _refit(engine, done)) if settings.calibrate_uploads else None
    work = Work(items, ingestor, lambda: _resnapshot(engine), refit)
    if size <= settings.upload_sync_bytes:
        done = await run_in_threadpool(runner.run, job, work)
        return JSONResponse(done.public(), status_code=201)
    await run_in_threadpool(runner.submit, job, work)
    return JSONResponse(job.public(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


async def _receive_files(request: Request, settings: Settings) -> list[Item]:
    """The ``files`` parts, kept under the files folder; nothing is kept on any error."""
    limited = _limited(request, settings.max_upload_bytes)
    form = await _in_time(
        limited.form(max_files=MAX_FILES, max_fields=MAX_FILES), settings.upload_timeout_s
    )
    try:
        parts = [p for p in form.getlist("files") if isinstance(p, UploadFile)]
        if not parts:
            raise InputError("no file: send each file as a multipart part named `files`")
        folder = files_dir(settings.data_dir)
        limit = settings.max_upload_file_bytes
        return [
            await run_in_threadpool(store_file, part.file, part.filename, folder, limit)
            for part in parts
        ]
    finally:
        await form.close()


async def _in_time(reading: Awaitable[T], seconds: float) -> T:
    """The body ``reading`` reads, within ``seconds`` (:class:`TooSlowError` after them)."""
    try:
        with anyio.fail_after(seconds):
            return await reading
    except ClientDisconnect:
        raise ClientGoneError("the client went away during the upload") from None
    except TimeoutError:
        raise TooSlowError(f"the upload did not arrive within {seconds:g} s") from None


def _limited(request: Request, limit: int) -> Request:
    """The request, reading whose body raises :class:`TooLargeError` past ``limit`` bytes."""
    received = 0
    receive: Receive = request.receive

    async def counting() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise TooLargeError(
                f"the upload is larger than the limit of {limit} bytes (CITEQA_MAX_UPLOAD_BYTES)"
            )
        return message

    return Request(request.scope, counting)


@documents_router.get("/v1/documents")
async def list_documents(
    request: Request,
    collection: CollectionQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    catalog = _catalog(request, await engine_for(request, collection))
    shown, next_cursor = await run_in_threadpool(catalog.page, limit, cursor)
    return {"data": [d.public() for d in shown], "next_cursor": next_cursor}


@documents_router.get("/v1/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    runner: UploadRunner = request.app.state.uploads
    job = await run_in_threadpool(runner.store.get, job_id)
    return job.public()


@documents_router.get("/v1/documents/{doc_id:path}/file")
async def document_file(
    request: Request, doc_id: str, collection: CollectionQuery = None
) -> FileResponse:
    catalog = _catalog(request, await engine_for(request, collection))
    path, media_type, name = await run_in_threadpool(catalog.original, doc_id)
    return FileResponse(
        path,
        media_type=media_type,
        filename=Path(name).name,
        content_disposition_type="inline",
        headers=_FILE_HEADERS.get(media_type, _NOSNIFF),
    )


_NOSNIFF = {"X-Content-Type-Options": "nosniff"}
# An uploaded page runs no script in the API's origin (where the web page keeps its key).
_FILE_HEADERS = {"text/html": {**_NOSNIFF, "Content-Security-Policy": "sandbox"}}


@documents_router.get("/v1/documents/{doc_id:path}")
async def get_document(
    request: Request, doc_id: str, collection: CollectionQuery = None
) -> dict[str, Any]:
    catalog = _catalog(request, await engine_for(request, collection))
    document = await run_in_threadpool(catalog.get, doc_id)
    return document.public()


@documents_router.delete("/v1/documents/{doc_id:path}", status_code=204)
async def delete_document(
    request: Request, doc_id: str, collection: CollectionQuery = None
) -> Response:
    engine = await engine_for(request, collection)
    catalog = _catalog(request, engine)
    client = request.app.state.collections.client
    await run_in_threadpool(catalog.delete, doc_id, client.get_max_batch_size())
    await run_in_threadpool(_resnapshot, engine)
    if request.app.state.settings.calibrate_uploads:
        runner: UploadRunner = request.app.state.uploads
        runner.refit_after_delete(lambda changed: _refit(engine, changed), doc_id)
    return Response(status_code=204)


def _refit(engine: Engine, changed: int) -> str | None:
    """Fit the collection's answerability model after an upload or a delete that changed
    ``changed`` documents, when that changed it materially (as `citeqa ingest` does); this
    replica reads the new model at once, the others within the model's refresh. What the fit
    measured, or None."""
    from evals.calibrate import describe

    model = refit(engine.settings, changed, engine.embedder, engine.index)
    if model is None:
        return None
    engine.evidence.forget_model()
    return describe(model)


def _resnapshot(engine: Engine) -> None:
    """Rebuild the engine's BM25 snapshot after this process changed its collection: the next
    search and listing see the change at once (other replicas within the snapshot's refresh)."""
    engine.retriever.refresh()
    engine.retriever.warm()

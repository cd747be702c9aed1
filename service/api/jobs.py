"""Upload jobs: their records, kept in Chroma, and the worker that runs them.

A job record lives in the small collection ``<server collection>__jobs`` (one record per job,
the job as JSON, a constant one-dimensional vector Chroma asks for), so with replicas sharing a
Chroma server, ``GET /v1/jobs/{id}`` answers the same on any of them. A job is saved when it
starts, every :data:`SAVE_EVERY_S` while it embeds, after each file and at its end. A job whose
server died stops being saved: once it has not been for :data:`STALE_AFTER_S`, it reads as
failed ("interrupted"); what it had not finished is not visible (ingest/uploads.py).

Jobs run one at a time per server, in one worker thread: ingest is CPU-bound (embedding), and
two at once would only share the same cores. A job that changed the collection then has the
collection's answerability model fit again (:func:`ingest.run.refit`, when the change is
material) in the same worker, after the job is done: its documents are searchable at once, the
job's ``answerability`` says "fitting" and then what the fit measured.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from citeqa.errors import CiteqaError, NotFoundError
from citeqa.store import JOBS_SUFFIX
from ingest.pipeline import Ingestor, IngestSummary
from ingest.run import changed as documents_changed
from ingest.uploads import Item, read_item

log = logging.getLogger("citeqa.jobs")

SAVE_EVERY_S = 0.5
STALE_AFTER_S = 900.0
_NO_VECTOR: Sequence[float] = [1.0]  # Chroma asks for one; jobs are found by id
State = Literal["queued", "running", "done", "failed"]
Refit = Callable[[int], str | None]  # documents changed -> what the fit measured, or None


@dataclass
class Job:
    """What ``GET /v1/jobs/{id}`` shows (``updated_at`` stays inside)."""

    id: str
    collection: str
    files_total: int
    state: State = "queued"
    files_done: int = 0
    texts_embedded: int = 0
    documents: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    # After the files: "" (no fit asked), "fitting", then the fit's figures, or why none was
    # made (:data:`NOT_REFIT`), or "failed: ..."
    answerability: str = ""
    updated_at: float = 0.0

    @classmethod
    def new(cls, collection: str, files_total: int) -> Job:
        return cls(id=uuid.uuid4().hex, collection=collection, files_total=files_total)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        del out["updated_at"]
        return out


class JobStore:
    """Job records in the Chroma collection ``<name>__jobs``."""

    def __init__(self, client: ClientAPI, name: str) -> None:
        self.client = client
        self.name = name + JOBS_SUFFIX
        self._collection: Collection | None = None

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            self._collection = self.client.get_or_create_collection(
                self.name, embedding_function=None
            )
        return self._collection

    def save(self, job: Job) -> None:
        job.updated_at = time.time()
        self.collection.upsert(
            ids=[job.id],
            embeddings=[_NO_VECTOR],
            documents=[json.dumps(asdict(job))],
            metadatas=[{"state": job.state, "collection": job.collection}],
        )

    def get(self, job_id: str) -> Job:
        got = self.collection.get(ids=[job_id], include=["documents"])
        if not got["ids"]:
            raise NotFoundError(f"job {job_id!r} does not exist")
        job = Job(**json.loads((got["documents"] or [""])[0]))
        stale = time.time() - job.updated_at > STALE_AFTER_S
        if job.state in ("queued", "running") and stale:
            job.state, job.error = "failed", "interrupted: the server running it stopped"
        if job.answerability == "fitting" and stale:
            job.answerability = "interrupted: the server fitting it stopped"
        return job


NOT_REFIT = "unchanged: the change is not material, or the collection is too small"


@dataclass(frozen=True)
class Work:
    """What a job ingests, into which index, and what to call once it ends (the engine
    rebuilds its BM25 snapshot there, so the next reader does not wait for it). ``refit``:
    fits the collection's answerability model after the job's ingests changed documents (how
    many), and says what it measured (None: no fit was needed)."""

    items: Sequence[Item]
    ingestor: Ingestor
    ended: Callable[[], None]
    refit: Refit | None = None


class UploadRunner:
    """Runs upload jobs: in the caller's thread (:meth:`run`) or in the background
    (:meth:`submit`, one job at a time)."""

    def __init__(self, store: JobStore, folder: Path) -> None:
        self.store = store
        self.folder = folder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citeqa-upload")

    def submit(self, job: Job, work: Work) -> None:
        self.store.save(job)
        self._executor.submit(self._run_logged, job, work)

    def run(self, job: Job, work: Work) -> Job:
        """Run the job to its end; a failure is recorded in the job, then raised."""
        job.state = "running"
        self.store.save(job)
        saved = time.monotonic()

        def on_batch(count: int) -> None:
            nonlocal saved
            job.texts_embedded += count
            if time.monotonic() - saved > SAVE_EVERY_S:
                self.store.save(job)
                saved = time.monotonic()

        summaries: list[IngestSummary] = []
        try:
            for item in work.items:
                read = read_item(item, self.folder)
                if read.documents:
                    summaries.append(work.ingestor.ingest(read, on_batch=on_batch))
                job.documents.extend(d.doc_id for d in read.documents)
                job.skipped.extend({"file": f, "reason": r} for f, r in read.skipped)
                job.files_done += 1
                self.store.save(job)
        except Exception as exc:
            message = (
                exc.message if isinstance(exc, CiteqaError) else f"{type(exc).__name__}: {exc}"
            )
            job.state, job.error = "failed", message
            self._save_quietly(job)
            raise
        finally:
            work.ended()
        job.state = "done"
        changed = documents_changed(summaries)
        if work.refit is not None and changed:
            job.answerability = "fitting"
            self._executor.submit(self._refit, job, work.refit, changed)
        self.store.save(job)
        return job

    def _refit(self, job: Job, refit: Refit, changed: int) -> None:
        try:
            job.answerability = refit(changed) or NOT_REFIT
        except Exception as exc:  # the documents are in; the collection keeps its model
            log.exception("answerability fit after upload job %s failed", job.id)
            job.answerability = f"failed: {type(exc).__name__}: {exc}"
        self._save_quietly(job)

    def refit_after_delete(self, refit: Refit, doc_id: str) -> None:
        """Fit the collection's model again after ``doc_id`` was deleted, when the deletes
        since its fit changed the collection materially: in the background, after the jobs
        before it; what it measured is logged."""
        self._executor.submit(self._refit_logged, refit, doc_id)

    @staticmethod
    def _refit_logged(refit: Refit, doc_id: str) -> None:
        try:
            log.info("after deleting %s: %s", doc_id, refit(1) or NOT_REFIT)
        except Exception:  # the delete is done; the collection keeps its model
            log.exception("answerability fit after deleting %s failed", doc_id)

    def _run_logged(self, job: Job, work: Work) -> None:
        try:
            self.run(job, work)
        except Exception:
            log.exception("upload job %s failed", job.id)

    def _save_quietly(self, job: Job) -> None:
        try:
            self.store.save(job)
        except Exception as exc:  # the store itself failed: the job reads as stale later
            log.warning("cannot record the failure of job %s: %s", job.id, exc)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

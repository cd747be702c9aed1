"""The lexical index that follows the collection: tantivy segments on local disk, kept up to date
from the change log (docs/lexical-index.md, issue 19).

A :class:`TantivyIndex` is one replica's index, in a folder of its own under the data dir. Its
first use builds it (cold build: the collection's ids listed once, its chunks read by id in
batches, never by offset nor by filter: :mod:`service.answering.lexical_build`); a background
thread then polls the log every ``poll_s`` seconds (reading it when its head moved), re-reads
each changed document and replaces it (delete by term, add), commits and reloads. A search
uses the :class:`TantivyView` it picked up: an immutable tantivy searcher, swapped in whole
after each commit, so no search waits on an update.

Tokens are bm25s' (service.answering.retrieval): the regex ``\\b\\w\\w+\\b``, lower case, bm25s'
English stop words and the Snowball English stemmer, in Rust, after :func:`with_compounds`.
Beside them each chunk indexes its stemmed terms (the IDF of :class:`CorpusStats`), and its
words, word parts and runs of two and three words squashed ("Human Eval" -> "humaneval"): a
name is known when its key, or a word it begins, is a term there (a dictionary lookup, not a
scan of the corpus). Each document also has a record in a second index (its terms, the
abbreviations it defines), for document counts and aliases.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import tantivy
from chromadb.api.types import GetResult, Where

from citeqa.changes import Change, Tail
from citeqa.config import Settings
from citeqa.errors import StoreNotReadyError
from citeqa.store import GET_PAGE, Index, backfill_log, batches, visible_chunks
from service.answering.lexical_build import Row, Versions, read_ahead
from service.answering.lexical_fields import Fielder, add
from service.answering.lexical_follow import Follower
from service.answering.lexical_views import LexicalIndex, SnapshotIndex
from service.answering.lexical_workers import fields_of, worker_count
from service.answering.tantivy_view import (
    TOKENS,
    TantivyView,
    chunk_schema,
    doc_schema,
    tokens_analyzer,
)

FORMAT = 8  # of the folder's index and state: another one is rebuilt
LOOKBACK_S = 30.0  # a change may land in the log this long after its logged_at (clock, latency)
BUILD_BATCH = 2500  # chunks per Chroma read of a cold build (by id)
COLD_HEAP = 128_000_000  # bytes of tantivy's indexing buffer for a cold build: fewer segments
# tantivy's indexing threads for a cold build's chunks: with the fields made by worker processes,
# one indexing thread (~220 us a chunk, the names field most of it) is what the build waits on
COLD_THREADS = 2
UPDATE_HEAP = 64_000_000  # ... for an update


def build_lexical(settings: Settings, index: Index) -> LexicalIndex:
    """The lexical index ``settings.lexical_index`` names, for ``index``."""
    if settings.lexical_index == "tantivy" and index.log is not None:
        return TantivyIndex(
            index,
            settings.data_dir / "lexical",
            settings.lexical_poll_s,
            build_workers=settings.lexical_build_workers,
        )
    # an index opened without its change log has nothing to follow
    return SnapshotIndex(index, settings.lexical_poll_s)


@dataclass
class _State:
    """What a folder's index holds: the collection it follows and the changes applied."""

    collection: str
    cursor: float = 0.0  # the newest logged_at applied
    seen: set[str] = field(
        default_factory=set
    )  # change ids applied, logged since cursor - LOOKBACK

    @classmethod
    def load(cls, path: Path, collection: str) -> _State | None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if raw.get("format") != FORMAT or raw.get("collection") != collection:
            return None
        return cls(collection, float(raw["cursor"]), set(raw["seen"]))

    def save(self, path: Path) -> None:
        raw = {"format": FORMAT, "collection": self.collection, "cursor": self.cursor}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({**raw, "seen": sorted(self.seen)}), encoding="utf-8")
        os.replace(temporary, path)


class TantivyIndex:
    """One replica's tantivy index of ``index`` (a :class:`LexicalIndex`), under ``root``.

    ``builds`` counts cold builds, ``applied`` the changes applied since. ``build_workers``:
    the processes a cold build makes chunks' fields in (lexical_workers.worker_count)."""

    def __init__(
        self, index: Index, root: Path, poll_s: float = 2.0, build_workers: int | None = None
    ) -> None:
        if index.log is None:
            raise StoreNotReadyError("the lexical index follows the change log: none is kept")
        self.index, self.changes, self.poll_s = index, index.log, poll_s
        self.builds = 0
        self.applied = 0
        self.schema, self.doc_schema = chunk_schema(), doc_schema()
        self._fielder = Fielder()
        self.build_workers = build_workers
        self.folder, self._slot_lock = _claim(root / index.chunks.name)
        self._state_path = self.folder / "state.json"
        self._view: TantivyView | None = None
        self._state: _State | None = None
        self._chunks: tantivy.Index | None = None
        self._docs: tantivy.Index | None = None
        self._kept: tuple[Any, Any] | None = None  # the updates' writers (_update_writers)
        self._update = threading.Lock()  # held by an update; searches never take it
        self._suspects: set[str] = set()  # chunk ids searches saw differ (stale())
        self.tail = Tail(index.log)  # what each poll reads of the log
        self._suspect_lock = threading.Lock()  # held for a set update only
        self._follower: Follower | None = None

    @property
    def warmed(self) -> bool:
        return self._view is not None

    def view(self) -> TantivyView:
        view = self._view
        if view is None:
            self.catch_up()
            self._start_following()
            view = self._view
            assert view is not None
        return view

    def refresh(self) -> None:
        self.catch_up()

    def stale(self, ids: Iterable[str] = ()) -> None:
        """Chunks a search saw that this index and Chroma disagree on: the next catch-up reads
        their documents again (a change whose log record was lost, a writer that died)."""
        with self._suspect_lock:
            self._suspects.update(ids)

    def close(self) -> None:
        """Stop following (the index stays on disk for the next start)."""
        if self._follower is not None:
            self._follower.stop()
        self._kept = None
        self._slot_lock.close()

    def catch_up(self) -> None:
        """Apply what the change log holds that this index does not (building it first)."""
        with self._update:
            if self._state is None:
                self._open()
            else:
                self._follow()

    # ------------------------------------------------------------------ updates

    def _open(self) -> None:
        self._kept = None  # a failed build's: it locks the folder about to be emptied
        collection = str(self.index.chunks.id)
        state = _State.load(self._state_path, collection)
        if state is not None and tantivy.Index.exists(str(self.folder / "chunks")):
            self._chunks, self._docs = self._indexes(create=False)
            self._state = state
            self._follow()
            return
        for child in self.folder.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
        self._chunks, self._docs = self._indexes(create=True)
        self._state = _State(collection)
        try:
            if not self.changes.complete:
                backfill_log(self.index)
            self._build()
        except BaseException:
            self._state = None  # the next catch-up builds again, from the start
            raise
        self.builds += 1
        self._follow()  # what changed while it was built

    def _build(self) -> None:
        """Cold build: every chunk Chroma shows, listed once and read by id in batches
        (lexical_build: a read filtered by ``where`` costs the whole collection), each
        document's newest complete version indexed. A change is logged once its chunks are
        written, so the listing holds every change logged before it; the follower applies the
        ones after (its cursor starts where the listing did)."""
        assert self._state is not None
        began = time.time()
        self.tail.mark()  # what the writers appended before the listing, the listing holds
        shown = self.changes.read(began - LOOKBACK_S)  # logged before the listing: it has them
        listed = self.index.chunks.get(include=[])["ids"]
        versions = Versions()
        writers = self._writers(COLD_HEAP, COLD_THREADS)
        read = read_ahead(self._read_ids, batches(listed, BUILD_BATCH))
        workers = worker_count(self.build_workers, len(listed))
        documents = (list(versions.add(got)) for _, got in read)
        for fields, again in fields_of(documents, workers, self._fielder):
            if again:  # a newer version of a document indexed earlier in the read
                _delete(fields.doc_id, *writers)
            add(fields, *writers)
        doubtful = dict.fromkeys(sorted(versions.doubtful), 1)
        for batch, got in read_ahead(self._read, _batches(doubtful, GET_PAGE // 2)):
            self._replace(batch, got, *writers)
        self._commit(*writers)
        del writers  # releases the writers' lock and threads
        self._state.cursor, self._state.seen = began, {c.id for c in shown}
        self._publish([])

    def _writers(self, heap: int, threads: int = 1) -> tuple[Any, Any]:
        assert self._chunks is not None and self._docs is not None
        chunk_writer = self._chunks.writer(heap_size=heap, num_threads=threads)
        return chunk_writer, self._docs.writer(heap_size=15_000_000, num_threads=1)

    def _read_ids(self, ids: list[str]) -> GetResult:
        return self.index.chunks.get(ids=ids, include=["documents", "metadatas"])

    def _indexes(self, create: bool) -> tuple[tantivy.Index, tantivy.Index]:
        opened = []
        for name, schema in (("chunks", self.schema), ("docs", self.doc_schema)):
            path = self.folder / name
            path.mkdir(exist_ok=True)
            index = tantivy.Index(schema, path=str(path), reuse=not create)
            index.register_tokenizer(TOKENS, tokens_analyzer())
            index.config_reader(reload_policy="manual")
            opened.append(index)
        return opened[0], opened[1]

    def _follow(self) -> None:
        """Apply the changes logged since the last poll: the log's records the writers' heads
        name, read by id (citeqa.changes.Tail: a filtered read of the log costs Chroma a pass
        over all of it, a wait for the searches behind it; docs/lexical-index.md, "Following
        at 1M"), and the documents searches found stale."""
        assert self._state is not None
        found = self.tail.new(self._state.cursor - LOOKBACK_S)
        fresh = [c for c in found if c.id not in self._state.seen]
        with self._suspect_lock:
            suspects, self._suspects = self._suspects, set()
        differ = self._differing(suspects) if suspects and self._view is not None else []
        if fresh or differ or self._view is None:
            self._apply(fresh, differ)

    def _differing(self, ids: set[str]) -> list[str]:
        """The documents of chunks ``ids`` whose visible chunks in Chroma are not the ones the
        view holds (not those of a version still being written, hidden from both)."""
        assert self._view is not None
        view = self._view
        held = view.chunks(sorted(ids))
        got = self.index.chunks.get(ids=sorted(ids), include=["metadatas"])
        in_chroma = dict(zip(got["ids"], got["metadatas"] or [], strict=True))
        docs = {str(m["doc_id"]) for i, m in in_chroma.items() if i not in held and m}
        docs |= {str(c.metadata["doc_id"]) for i, c in held.items() if i not in in_chroma}
        if not docs:
            return []
        where: Where = {"doc_id": {"$in": sorted(docs)}}  # type: ignore[dict-item]
        metadatas = self.index.chunks.get(where=where, include=["metadatas"])
        shown: dict[str, set[str]] = {d: set() for d in docs}
        rows = metadatas["metadatas"] or []
        for i in visible_chunks(rows):
            shown[str(rows[i]["doc_id"])].add(metadatas["ids"][i])
        return sorted(d for d in docs if shown[d] != view.doc_chunk_ids(d))

    def _apply(self, changes: list[Change], also: Iterable[str] = ()) -> None:
        """Replace every document ``changes`` name (and the documents ``also``) with what
        Chroma now shows of it, commit, and swap the view."""
        assert self._chunks is not None and self._docs is not None and self._state is not None
        newest = {c.doc_id: c for c in changes}  # sorted by id: the last one wins
        # Read by id where the record names its version's chunks (a read by doc_id costs Chroma
        # a pass over the collection); a document found otherwise is read by doc_id after.
        by_id = {d: c.chunk_ids for d, c in newest.items() if len(c.chunk_ids) == c.doc_chunks > 0}
        latest = {d: c.doc_chunks for d, c in newest.items() if d not in by_id}
        for doc_id in also:
            by_id.pop(doc_id, None)
            latest.setdefault(doc_id, 1)
        if latest or by_id:
            writers = self._update_writers()
            counts = {d: len(ids) for d, ids in by_id.items()}
            try:
                for batch, got in read_ahead(
                    lambda docs: self._read_ids([i for d in docs for i in by_id[d]]),
                    _batches(counts, GET_PAGE // 2),
                ):
                    latest.update(self._replace(batch, got, *writers, expected=counts))
                for batch, got in read_ahead(self._read, _batches(latest, GET_PAGE // 2)):
                    self._replace(batch, got, *writers)
                self._commit(*writers)
            except BaseException:
                self._kept = None  # dropped: what they held uncommitted is not committed later
                raise
        self._publish(changes)

    def _update_writers(self) -> tuple[Any, Any]:
        """The writers of updates, kept open from one to the next. tantivy merges the small
        segments each commit leaves in background threads, and a writer's drop cancels those
        merges: a writer per update left them undone and began them again after every commit
        (129 segments and merge threads busy all along, in a replica following a 10k ingest
        at 1M chunks). A kept writer finishes them."""
        if self._kept is None:
            self._kept = self._writers(UPDATE_HEAP)
        return self._kept

    def _publish(self, changes: list[Change]) -> None:
        """Swap in a view of the last commit; the state holds ``changes`` applied."""
        assert self._chunks is not None and self._docs is not None and self._state is not None
        self._chunks.reload()
        self._docs.reload()
        self._view = TantivyView(
            self._chunks.searcher(), self._docs.searcher(), self.schema, self.doc_schema
        )
        self.applied += len(changes)
        state = self._state
        state.cursor = max([state.cursor, *(c.logged_at for c in changes)])
        state.seen = {c.id for c in changes if c.logged_at >= state.cursor - LOOKBACK_S} | {
            i for i in state.seen if _logged_at(i) >= state.cursor - LOOKBACK_S
        }
        state.save(self._state_path)

    def _read(self, doc_ids: list[str]) -> GetResult:
        where: Where = {"doc_id": {"$in": doc_ids}}  # type: ignore[dict-item]
        return self.index.chunks.get(where=where, include=["documents", "metadatas"])

    def _replace(
        self,
        doc_ids: list[str],
        got: GetResult,
        chunk_writer: Any,
        doc_writer: Any,
        expected: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Replace the documents ``doc_ids`` with their visible chunks in ``got`` (_read).
        With ``expected`` (chunks by document: ``got`` read by id), a document found with
        another count (a newer version replaced those chunks) is left alone and returned."""
        texts, metadatas = got["documents"] or [], got["metadatas"] or []
        by_doc: dict[str, list[Row]] = {}
        for i in visible_chunks(metadatas):
            row = (got["ids"][i], texts[i], metadatas[i])
            by_doc.setdefault(str(metadatas[i]["doc_id"]), []).append(row)
        short = {}
        for doc_id in doc_ids:
            rows = by_doc.get(doc_id, [])
            if expected is not None and len(rows) != expected[doc_id]:
                short[doc_id] = expected[doc_id]
                continue
            self._index_document(doc_id, rows, chunk_writer, doc_writer)
        return short

    def _index_document(
        self, doc_id: str, rows: list[Row], chunk_writer: Any, doc_writer: Any
    ) -> None:
        """Index the chunks ``rows`` as the document ``doc_id`` (none: it is gone), in place
        of what the writers hold of it."""
        _delete(doc_id, chunk_writer, doc_writer)
        add(self._fielder.document(doc_id, rows), chunk_writer, doc_writer)

    def _commit(self, chunk_writer: Any, doc_writer: Any) -> None:
        """Commit both indexes (the chunks first: a document counted is always searchable)."""
        chunk_writer.commit()
        doc_writer.commit()

    # ------------------------------------------------------------------ following

    def _start_following(self) -> None:
        if self._follower is None and self.poll_s > 0:
            self._follower = Follower(self, self.poll_s, f"lexical-{self.index.chunks.name}")


def _delete(doc_id: str, chunk_writer: Any, doc_writer: Any) -> None:
    chunk_writer.delete_documents_by_term("doc_id", doc_id)
    doc_writer.delete_documents_by_term("doc_id", doc_id)


def _batches(latest: dict[str, int], budget: int) -> Iterable[list[str]]:
    """Doc ids in groups whose chunks (two versions at most, mid re-ingest) fit ``budget``."""
    group: list[str] = []
    size = 0
    for doc_id, chunks in latest.items():
        cost = 2 * max(chunks, 1)
        if group and size + cost > budget:
            yield group
            group, size = [], 0
        group.append(doc_id)
        size += cost
    if group:
        yield group


def _logged_at(change_id: str) -> float:
    return int(change_id.split("-", 1)[0]) / 1e9


def _claim(folder: Path) -> tuple[Path, IO[str]]:
    """The first slot ``folder/<n>`` no other live process holds, locked until the lock file
    is closed (or the process ends): replicas sharing a data dir each keep their own index,
    and a restarted one finds its index again."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        slot = folder / str(n)
        slot.mkdir(exist_ok=True)
        lock = (slot / "lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        return slot, lock
    raise AssertionError("unreachable")

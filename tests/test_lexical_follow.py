"""The change log and the tantivy lexical index that follows it (issue 19,
docs/lexical-index.md), on an in-memory Chroma with the real embedder."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

import citeqa.changes
from citeqa.catalog import Catalog
from citeqa.changes import GENESIS_ID, HEAD_ID, ChangeLog, Tail
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.store import Index, open_index
from citeqa.text import squashed, words
from ingest.chunker import SentenceChunker
from ingest.pipeline import Ingestor
from ingest.readers import read_source
from service.answering.lexical import TantivyIndex, build_lexical
from service.answering.lexical_fields import name_terms
from service.answering.lexical_views import LexicalView, SnapshotIndex
from service.answering.question import Question
from service.answering.retrieval import HybridRetriever, unknown_names
from service.answering.spelling import corrections
from tests.paths import REPO_ROOT

POLL_S = 0.3
BOUND_S = POLL_S + 10.0  # poll, then read, index and commit on a loaded 2-core machine

PAPERS = {
    "kettle.md": "# Kettle descaling\n\nThe Quokkatron kettle is descaled with citric acid. "
    "It boils water in ninety seconds on the Human Eval stove.",
    "rivers.md": "# River deltas\n\nSediment from the Zembrano river forms a wide delta. "
    "Tides move the sand along the coast every spring.",
}


@pytest.fixture
def index(embedder: Embedder) -> Index:
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    return open_index(client, f"lx{uuid.uuid4().hex[:12]}", embedder, create=True)


def ingestor(index: Index, embedder: Embedder) -> Ingestor:
    chunker = SentenceChunker(max_tokens=64, count_tokens=embedder.count_tokens)
    return Ingestor(index, embedder, chunker, max_batch=64)


def write(folder: Path, papers: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.name not in papers:
            old.unlink()
    for name, text in papers.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def corpus(tmp_path: Path, index: Index, embedder: Embedder) -> Path:
    folder = write(tmp_path / "docs", PAPERS)
    ingestor(index, embedder).ingest(read_source(folder))
    return folder


@pytest.fixture
def lexical(tmp_path: Path, index: Index, corpus: Path) -> Iterator[TantivyIndex]:
    follower = TantivyIndex(index, tmp_path / "lexical", poll_s=POLL_S)
    yield follower
    follower.close()


def found_docs(follower: TantivyIndex, question: str) -> set[str]:
    return {str(c.metadata["doc_id"]) for c in follower.view().search(question, 10)}


def unknown(view: LexicalView, question: str) -> list[str]:
    return unknown_names(view, Question.parse(question))


def wait_for(check: Any, bound: float = BOUND_S) -> float:
    """Seconds until ``check()`` held; fails after ``bound``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < bound, "not within the bound"
        time.sleep(0.05)
    return time.monotonic() - started


# ----------------------------------------------------------------------- the change log


def test_ingest_logs_each_changed_document_and_each_dropped_one(
    tmp_path: Path, index: Index, embedder: Embedder, corpus: Path
) -> None:
    assert index.log is not None and index.log.complete  # made with its collection
    first = index.log.read(0.0)
    assert sorted(c.doc_id for c in first) == ["file:kettle.md", "file:rivers.md"]
    assert all(c.doc_chunks > 0 and c.doc_hash for c in first)

    ingestor(index, embedder).ingest(read_source(corpus))  # unchanged: nothing logged
    assert index.log.read(0.0) == first

    write(corpus, {"rivers.md": PAPERS["rivers.md"] + " Herons nest there."})
    ingestor(index, embedder).ingest(read_source(corpus))
    later = [c for c in index.log.read(0.0) if c not in first]
    assert {(c.doc_id, c.doc_chunks > 0) for c in later} == {
        ("file:rivers.md", True),  # a new version
        ("file:kettle.md", False),  # its file is gone
    }
    assert [c.id for c in index.log.read(0.0)] == sorted(c.id for c in index.log.read(0.0))


def test_a_delete_through_the_catalog_is_logged(tmp_path: Path, index: Index, corpus: Path) -> None:
    assert index.log is not None
    Catalog(index, tmp_path).delete("file:kettle.md", max_batch=64)
    last = index.log.read(0.0)[-1]
    assert (last.doc_id, last.doc_chunks) == ("file:kettle.md", 0)


class NoOffsets:
    """A collection that fails any read by offset, and counts its reads."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.gets = 0

    def get(self, *args: Any, **kwargs: Any) -> Any:
        assert not kwargs.get("offset"), "read by offset"
        self.gets += 1
        return self._collection.get(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


def test_the_log_is_read_by_one_range_condition_in_pages(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``logged_at >= since`` condition (a range of two, ``$and``, cost Chroma ten times
    as much at 50,000 records); pages are offsets within the match."""
    assert index.log is not None
    monkeypatch.setattr(citeqa.changes, "PAGE", 4)  # 22 records and the genesis: six pages
    spy = Reads(index.log.collection)
    log = ChangeLog(spy, index.log.heads)  # type: ignore[arg-type]
    log.append((f"doc{n:02d}", "h", 1) for n in range(22))
    read = log.read(0.0)
    assert [c.doc_id for c in read] == [f"doc{n:02d}" for n in range(22)]
    assert len(spy.reads) == 6
    assert all(set(r["where"]) == {citeqa.changes.LOGGED_AT} for r in spy.reads)
    assert [c.doc_id for c in log.read(read[10].logged_at)] == [c.doc_id for c in read[10:]]
    until = log.read(read[10].logged_at, until=read[13].logged_at)
    assert [c.doc_id for c in until] == [c.doc_id for c in read[10:13]]


def test_a_read_paged_while_another_writer_appends_misses_nothing(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer's records land between the pages of a read: the pages (offsets within
    the match) still hold every record logged before the read, each once."""
    assert index.log is not None
    monkeypatch.setattr(citeqa.changes, "PAGE", 4)
    reader, other = another(index.log), another(index.log)
    reader.append((f"doc{n:02d}", "h", 1) for n in range(0, 22, 2))
    other.append((f"doc{n:02d}", "h", 1) for n in range(1, 22, 2))
    during = itertools.count(100)

    class Appending(Reads):
        def get(self, *args: Any, **kwargs: Any) -> Any:
            got = super().get(*args, **kwargs)
            other.append([(f"doc{next(during)}", "h", 1)])  # lands after this page
            return got

    reader.collection = Appending(index.log.collection)  # type: ignore[assignment]
    read = [c.doc_id for c in reader.read(0.0)]
    assert len(read) == len(set(read))
    assert set(read) >= {f"doc{n:02d}" for n in range(22)}


def another(log: ChangeLog) -> ChangeLog:
    """Another writer of the same log (another process, say)."""
    return ChangeLog(log.collection, log.heads)


def test_each_writer_s_head_names_its_own_records_so_writers_at_once_lose_none(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert index.log is not None
    monkeypatch.setattr(citeqa.changes, "RECENT", 3)
    first, second = another(index.log), another(index.log)
    tail = Tail(index.log)
    tail.mark()
    first.append([("doc-a", "h", 1)])
    second.append([("doc-b", "h", 2), ("doc-c", "", 0)])
    first.append([("doc-d", "h", 1)])
    heads = index.log.writers()
    read = first.read(0.0)
    assert heads[first.writer].appended == 2 and heads[second.writer].appended == 2
    assert heads[first.writer].recent == tuple(c.id for c in read if c.doc_id in ("doc-a", "doc-d"))
    assert tail.new(0.0) == read and tail.passes == 0  # by id
    assert tail.new(0.0) == []  # nothing since
    assert HEAD_ID not in {c.id for c in read}
    first.append([])  # nothing appended: the head stays
    assert index.log.writers()[first.writer] == heads[first.writer]
    second.append((f"doc-{n}", "h", 1) for n in range(4))  # more than its head names
    assert [c.doc_id for c in tail.new(0.0)][-4:] == [f"doc-{n}" for n in range(4)]
    assert tail.passes == 1  # read by logged_at


def test_a_head_unchanged_for_a_day_is_dropped_when_a_writer_starts(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert index.log is not None
    old, recent = another(index.log), another(index.log)
    old.append([("doc-a", "h", 1)])
    recent.append([("doc-b", "h", 1)])
    monkeypatch.setattr(citeqa.changes, "HEAD_RETAIN_S", 0.0)
    recent.append([("doc-c", "h", 1)])  # not its first append: drops nothing
    assert set(index.log.writers()) >= {old.writer, recent.writer}
    starting = another(index.log)
    starting.append([("doc-d", "h", 1)])
    assert set(index.log.writers()) == {starting.writer}


# ----------------------------------------------------------------------- the follower


def test_the_cold_build_reads_documents_by_id_never_by_offset(
    tmp_path: Path, index: Index, corpus: Path
) -> None:
    chunks = NoOffsets(index.chunks)
    follower = TantivyIndex(
        Index(chunks, index.sentences, index.log),  # type: ignore[arg-type]
        tmp_path / "lexical",
        poll_s=0,
    )
    assert found_docs(follower, "citric acid descaling") == {"file:kettle.md"}
    assert follower.builds == 1 and chunks.gets >= 1
    follower.close()


class Reads:
    """A collection that records the keyword arguments of each of its reads."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.reads: list[dict[str, Any]] = []

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.reads.append(kwargs)
        return self._collection.get(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


def test_the_cold_build_reads_chunks_by_id_not_by_filter(
    tmp_path: Path, index: Index, corpus: Path
) -> None:
    """A read filtered by ``where`` costs Chroma the whole collection (lexical_build)."""
    chunks = Reads(index.chunks)
    follower = TantivyIndex(
        Index(chunks, index.sentences, index.log),  # type: ignore[arg-type]
        tmp_path / "lexical",
        poll_s=0,
    )
    assert found_docs(follower, "citric acid descaling") == {"file:kettle.md"}
    assert follower.builds == 1
    assert [r for r in chunks.reads if "where" in r] == []
    assert any(r.get("ids") for r in chunks.reads)
    assert follower.view().stats.documents == 2
    follower.close()


def test_a_follower_reads_the_log_by_the_ids_the_writers_heads_name(
    tmp_path: Path, index: Index, embedder: Embedder, corpus: Path
) -> None:
    """A poll lists the writers' heads and reads the records they name by id: a filtered read
    or a count costs Chroma a pass over the whole log. A poll that finds nothing reads no
    record of the log."""
    follower = TantivyIndex(index, tmp_path / "lexical", poll_s=0)  # polled here, by hand
    follower.view()
    log = Reads(follower.changes.collection)
    follower.changes.collection = log  # type: ignore[assignment]
    for _ in range(3):
        follower.catch_up()
    assert log.reads == []
    write(corpus, {**PAPERS, "light.md": "# Lighthouse\n\nThe Marlowind lighthouse keeper."})
    ingestor(index, embedder).ingest(read_source(corpus))
    follower.catch_up()
    assert log.reads and all("where" not in r and r.get("ids") for r in log.reads)
    assert follower.tail.passes == 0
    assert "file:light.md" in found_docs(follower, "Marlowind lighthouse keeper")
    follower.close()


def test_a_follower_reads_a_changed_version_by_the_chunk_ids_its_record_names(
    tmp_path: Path, index: Index, embedder: Embedder, corpus: Path
) -> None:
    """An ingest's change record names its version's chunks: the follower reads them by id,
    never with a ``where`` filter (a pass over the whole collection in Chroma); a record whose
    chunks are gone (a newer version replaced them) sends that document to a read by doc_id."""
    chunks = Reads(index.chunks)
    follower = TantivyIndex(
        Index(chunks, index.sentences, index.log),  # type: ignore[arg-type]
        tmp_path / "lexical",
        poll_s=0,
    )
    follower.view()
    chunks.reads.clear()
    write(corpus, {**PAPERS, "light.md": "# Lighthouse\n\nThe Marlowind lighthouse keeper."})
    ingestor(index, embedder).ingest(read_source(corpus))
    follower.catch_up()
    assert "file:light.md" in found_docs(follower, "Marlowind lighthouse keeper")
    assert chunks.reads and all("where" not in r and r.get("ids") for r in chunks.reads)
    assert index.log is not None
    chunks.reads.clear()
    index.log.append([("file:kettle.md", "gone", 2)], chunk_ids={"file:kettle.md": ["x", "y"]})
    follower.catch_up()
    assert [r for r in chunks.reads if "where" in r]  # read again by doc_id
    assert found_docs(follower, "Quokkatron kettle") == {"file:kettle.md"}  # not dropped
    follower.close()


def test_records_no_head_names_are_caught_by_the_count(
    tmp_path: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer of an older version appends records without a head (so does one that dies
    between its records and its head): a follower counts the log every COUNT_EVERY_S and
    reads it by logged_at when records no head counts appeared."""
    assert index.log is not None
    follower = TantivyIndex(index, tmp_path / "lexical", poll_s=0)
    follower.view()
    another(index.log).append([("doc-x", "h", 1)])
    follower.catch_up()
    record = another(index.log)._record("file:kettle.md", "h2", 1)
    index.log.collection.upsert(  # as an older writer does: the record alone
        ids=[record.id], embeddings=[[1.0]], metadatas=[citeqa.changes._metadata(record)]
    )
    applied, passes = follower.applied, follower.tail.passes
    follower.catch_up()
    assert follower.applied == applied  # no head moved, the count was not due
    monkeypatch.setattr(citeqa.changes, "COUNT_EVERY_S", 0.0)
    follower.tail._count_due = 0.0
    follower.catch_up()
    assert follower.applied == applied + 1 and follower.tail.passes == passes + 1
    another(index.log).append([("doc-y", "h", 1)])
    follower.catch_up()  # counted again: the head explains the new record
    assert follower.applied == applied + 2 and follower.tail.passes == passes + 1
    follower.close()


def test_an_added_document_is_searchable_within_the_poll_bound_without_a_rebuild(
    index: Index, embedder: Embedder, corpus: Path, lexical: TantivyIndex
) -> None:
    assert found_docs(lexical, "Quokkatron kettle") == {"file:kettle.md"}
    assert unknown(lexical.view(), "Who keeps the Marlowind lighthouse?") == ["Marlowind"]
    write(corpus, {**PAPERS, "light.md": "# Lighthouse\n\nThe Marlowind lighthouse keeper."})
    ingestor(index, embedder).ingest(read_source(corpus))
    wait_for(lambda: "file:light.md" in found_docs(lexical, "Marlowind lighthouse keeper"))
    assert lexical.builds == 1  # applied in place: no cold build again
    assert unknown(lexical.view(), "Who keeps the Marlowind lighthouse?") == []
    assert lexical.view().stats.documents == 3


def test_a_deleted_document_is_never_returned_after_the_bound(
    tmp_path: Path, index: Index, embedder: Embedder, corpus: Path, lexical: TantivyIndex
) -> None:
    view = lexical.view()
    held = [c.id for c in view.search("Zembrano river delta", 10)]
    assert held
    Catalog(index, tmp_path).delete("file:rivers.md", max_batch=64)
    wait_for(lambda: not found_docs(lexical, "Zembrano river delta sediment tides"))
    after = lexical.view()
    assert after.chunks(held) == {}
    assert [d["doc_id"] for d in after.documents_after(None, 10)] == ["file:kettle.md"]
    assert after.document("file:rivers.md") is None
    assert unknown(after, "Where does the Zembrano river flow?") == ["Zembrano"]
    assert corrections(view, ["Zembrnao"]) == {"Zembrnao": "Zembrano"}
    assert corrections(after, ["Zembrnao"]) == {}  # its only document is gone
    # a folder re-ingest that drops a file deletes it too
    write(corpus, {})
    ingestor(index, embedder).ingest(read_source(corpus))
    wait_for(lambda: lexical.view().empty)
    assert lexical.builds == 1


class HeldCommit(TantivyIndex):
    """Stops in the middle of an update, writers open, until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holding = threading.Event()
        self.release = threading.Event()

    def _commit(self, chunk_writer: Any, doc_writer: Any) -> None:
        if self.warmed:
            self.holding.set()
            assert self.release.wait(60)
        super()._commit(chunk_writer, doc_writer)


def test_a_search_does_not_wait_for_an_update(
    tmp_path: Path, index: Index, embedder: Embedder, corpus: Path
) -> None:
    follower = HeldCommit(index, tmp_path / "lexical", poll_s=3600)
    assert found_docs(follower, "Quokkatron kettle") == {"file:kettle.md"}
    write(corpus, {**PAPERS, "light.md": "# Lighthouse\n\nThe Marlowind lighthouse keeper."})
    ingestor(index, embedder).ingest(read_source(corpus))
    update = threading.Thread(target=follower.catch_up)
    update.start()
    try:
        assert follower.holding.wait(30)
        started = time.monotonic()
        assert found_docs(follower, "Quokkatron kettle") == {"file:kettle.md"}
        assert "file:light.md" not in found_docs(follower, "Marlowind lighthouse keeper")
        assert time.monotonic() - started < 5.0  # answered from the view it had
        assert update.is_alive()  # the update still holds the writers
    finally:
        follower.release.set()
        update.join()
    assert "file:light.md" in found_docs(follower, "Marlowind lighthouse keeper")
    follower.close()


def test_a_document_whose_log_record_was_lost_is_read_again_once_a_search_meets_it(
    index: Index, embedder: Embedder, corpus: Path, lexical: TantivyIndex
) -> None:
    """A writer that died after writing a new document and before logging it: its next run
    finds the document whole and logs nothing. The dense search meets the chunks the view
    lacks, and the follower reads that document again."""
    retriever = HybridRetriever(index, embedder, lexical=lexical)
    assert lexical.view().stats.documents == 2
    write(corpus, {**PAPERS, "light.md": "# Lighthouse\n\nThe Marlowind lighthouse keeper."})
    unlogged = Index(index.chunks, index.sentences)  # writes, logs nothing
    ingestor(unlogged, embedder).ingest(read_source(corpus))
    time.sleep(3 * POLL_S)
    assert "file:light.md" not in found_docs(lexical, "Marlowind lighthouse keeper")
    question = Question.parse("Who keeps the Marlowind lighthouse?")

    def healed() -> bool:
        retriever.retrieve_hits(question, 5)
        return "file:light.md" in found_docs(lexical, "Marlowind lighthouse keeper")

    wait_for(healed)
    assert lexical.builds == 1


def test_names_are_looked_up_in_the_term_dictionary(corpus: Path, lexical: TantivyIndex) -> None:
    view = lexical.view()
    assert not hasattr(view, "squashed")  # no copy of the corpus to scan
    # "Human Eval" is written as two words: known as one name, as the snapshot's scan knew it
    assert unknown(view, "What is HumanEval?") == []
    assert unknown(view, "What is Quokkatrons?") == []  # a plural of a word it holds
    assert unknown(view, "What is Quokka?") == []  # the beginning of a word
    assert unknown(view, "What is Glimmerfax?") == ["Glimmerfax"]
    assert "quokkatron" in name_terms(PAPERS["kettle.md"])
    assert "humaneval" not in name_terms(PAPERS["kettle.md"])  # found as a phrase


@pytest.mark.parametrize("kind", ["snapshot", "tantivy"])
def test_a_slip_of_a_name_is_read_as_the_name_the_collection_holds(
    index: Index, lexical: TantivyIndex, kind: str
) -> None:
    """One small letter dropped, added, changed or swapped in a long name; never a digit or
    a capital, never a short name (one letter apart, short names are often two different
    things)."""
    view = SnapshotIndex(index).view() if kind == "snapshot" else lexical.view()
    assert corrections(view, ["Quokatron", "Zembrnao", "Quokkatronn", "Quokkatrom"]) == {
        "Quokatron": "Quokkatron",
        "Zembrnao": "Zembrano",
        "Quokkatronn": "Quokkatron",
        "Quokkatrom": "Quokkatron",
    }
    assert corrections(view, ["Quokkatron-9"]) == {}  # no name of the collection has a 9
    assert corrections(view, ["Zembdano"]) == {"Zembdano": "Zembrano"}
    assert corrections(view, ["ZembDano", "QuokDatron"]) == {}  # a capital differs: a name
    assert corrections(view, ["Kettel", "Glimmerfax"]) == {}  # short; nothing one slip away
    assert corrections(view, ["Quokatron-based"]) == {"Quokatron-based": "Quokkatron-based"}
    assert corrections(view, ["QUOKATRON"]) == {}  # written in capitals: an acronym


def test_a_name_in_two_or_three_words_is_a_key_exactly_when_the_words_are_in_a_row(
    lexical: TantivyIndex,
) -> None:
    """Names written in several words ("Human Eval") are not indexed as keys but looked up as
    phrases: a key is the beginning of a word or a run of two or three whole words of one
    text. Not words apart, nor a run whose last word is only begun ("interval2" is not
    "interval 2453"), nor words of two texts."""
    view = lexical.view()
    words_of = [[squashed(w) for w in words(text)] for text in PAPERS.values()]
    runs = set()
    for keys in words_of:
        runs |= {*map("".join, itertools.pairwise(keys))}
        runs |= {*map("".join, zip(keys, keys[1:], keys[2:], strict=False))}
    apart = {"".join(pair) for keys in words_of for pair in zip(keys, keys[2:], strict=False)}
    apart |= {r[:-1] for r in runs} | {r + "x" for r in runs} | {"stovesediment", "acidtides"}

    def is_key(key: str) -> bool:
        return key in runs or any(w.startswith(key) for keys in words_of for w in keys)

    assert [r for r in runs if not view.has_key(r)] == []
    assert {k for k in apart if view.has_key(k)} == {k for k in apart if is_key(k)}
    assert not view.has_key("humanevalstov") and view.has_key("humanevalstove")


def test_a_store_written_before_the_log_is_backfilled_once(
    tmp_path: Path, index: Index, corpus: Path
) -> None:
    assert index.log is not None
    index.log.collection.delete(ids=[GENESIS_ID])  # as a store older than the log
    follower = TantivyIndex(index, tmp_path / "lexical", poll_s=0)
    assert found_docs(follower, "Zembrano river") == {"file:rivers.md"}
    assert index.log.complete
    follower.close()


def test_the_tantivy_view_agrees_with_the_snapshot(index: Index, lexical: TantivyIndex) -> None:
    snapshot, view = SnapshotIndex(index).view(), lexical.view()
    assert sorted(snapshot.ids) == sorted(c.id for c in view.chunks(snapshot.ids).values())
    assert snapshot.documents_after(None, 10) == view.documents_after(None, 10)
    assert snapshot.sample(10) == view.sample(10)  # replicas overview the same documents
    assert view.sample(1) == view.sample(10)[:1]
    for question in ("citric acid kettle", "river delta tides", "the Human Eval stove"):
        assert [c.id for c in view.search(question, 10)] == [
            c.id for c in snapshot.search(question, 10)
        ]
    for term in ("kettl", "river", "absent"):
        assert view.stats.weight(term) == pytest.approx(snapshot.stats.weight(term))
    assert view.stats.documents == snapshot.stats.documents == 2


def test_a_restarted_replica_reopens_its_index_and_catches_up(
    tmp_path: Path, index: Index, embedder: Embedder, corpus: Path
) -> None:
    first = TantivyIndex(index, tmp_path / "lexical", poll_s=0)
    first.view()
    first.close()
    write(corpus, {**PAPERS, "light.md": "# Lighthouse\n\nThe Marlowind lighthouse keeper."})
    ingestor(index, embedder).ingest(read_source(corpus))
    again = TantivyIndex(index, tmp_path / "lexical", poll_s=0)
    assert again.folder == first.folder
    assert "file:light.md" in found_docs(again, "Marlowind lighthouse")
    assert again.builds == 0  # caught up from its cursor
    again.close()


def segments(follower: TantivyIndex) -> int:
    return len(json.loads((follower.folder / "chunks" / "meta.json").read_text())["segments"])


def test_the_segments_each_update_commits_are_merged(
    tmp_path: Path, index: Index, embedder: Embedder, corpus: Path
) -> None:
    """Each update commits a segment, which tantivy merges in the background with the writer
    that committed it: the segments stay few. (A writer dropped after its commit cancels the
    merges it began: a replica following a 10k ingest at 1M chunks held 129 segments. Merges
    as small as these finish before the drop, so this checks the bound, not the cancel:
    scripts/tantivy_merges_probe.py measures that.)"""
    follower = TantivyIndex(index, tmp_path / "lexical", poll_s=0)
    follower.view()
    updates, papers = 24, dict(PAPERS)
    for n in range(updates):
        papers[f"light{n}.md"] = f"# Lighthouse {n}\n\nKeeper number {n} of Marlowind."
        ingestor(index, embedder).ingest(read_source(write(corpus, papers)))
        follower.catch_up()
    assert len(found_docs(follower, "Marlowind lighthouse keeper")) == 10
    wait_for(lambda: segments(follower) <= updates // 2)  # 8 segments of a size make one
    assert follower.builds == 1
    follower.close()


def test_the_setting_chooses_the_index(tmp_path: Path, index: Index) -> None:
    settings = Settings(data_dir=tmp_path, lexical_index="tantivy", lexical_poll_s=5)
    chosen = build_lexical(settings, index)
    assert isinstance(chosen, TantivyIndex) and chosen.poll_s == 5
    assert chosen.folder.is_relative_to(tmp_path / "lexical")
    chosen.close()
    snapshot = Settings(data_dir=tmp_path, lexical_index="snapshot")
    assert isinstance(build_lexical(snapshot, index), SnapshotIndex)
    unlogged = Index(index.chunks, index.sentences)  # nothing to follow
    assert isinstance(build_lexical(settings, unlogged), SnapshotIndex)


def test_the_interpreter_exits_only_after_its_followers_have_stopped(tmp_path: Path) -> None:
    """A follower still inside a catch-up when the program ends is stopped and waited for
    (atexit): the interpreter would otherwise end its daemon thread where it stands, and one
    ended inside tantivy's or Chroma's native code crashed a test run after its last test.
    The catch-up here sleeps, so only a wait lets it write its file."""
    done = tmp_path / "done"
    program = textwrap.dedent(
        """
        import sys, threading, time
        from service.answering.lexical_follow import Follower

        started = threading.Event()

        class Slow:
            def catch_up(self):
                started.set()
                time.sleep(0.5)
                open(sys.argv[1], "w").write("finished")

        index = Slow()
        follower = Follower(index, 0.01, "slow")
        assert started.wait(30)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", program, str(done)], env=env, check=True, timeout=60)
    assert done.read_text() == "finished"

"""One process at a time on an embedded store: the lock file ``<data_dir>/citeqa.lock``.

Chroma's embedded ``PersistentClient`` is not safe across processes. A server keeps its
indexes in memory: an ingest from a second process left it answering 503 ``Error finding id``
and stale searches until a restart (issue 11). Reading is no exception: opening the store
writes to it (Chroma brings its HNSW files and SQLite up to date from its log; a plain
``citeqa search`` changed both, measured on chromadb 1.5.9).

So every command that opens the embedded store holds the data folder's lock, exclusively:
``citeqa serve`` for its lifetime, ``ingest``, ``search``, ``ask``, ``chat`` and ``eval`` while
they run. A second one is refused with a :class:`~citeqa.errors.StoreBusyError` that names the
holder (pid, command, address, from the lock file) and says what to do. It is a ``flock``: the
OS releases it when its process exits, however it exits, so a lock file left by a dead process
blocks nothing. With a Chroma server (``chroma_url``) nothing is locked: the server serialises
its clients, and several citeqa processes may share it (OPERATIONS.md).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from citeqa.errors import StoreBusyError

if TYPE_CHECKING:
    from citeqa.config import Settings

LOCK_FILE = "citeqa.lock"
SERVER_MODE = "or run Chroma as a server and set CITEQA_CHROMA_URL (OPERATIONS.md)"


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as its holder wrote it into the lock file."""

    pid: int
    command: str
    address: str | None = None


@contextmanager
def hold_store(settings: Settings, command: str, address: str | None = None) -> Iterator[None]:
    """Hold the embedded store's lock for the block; raise StoreBusyError if another has it.

    ``command`` is the citeqa command holding it; ``address`` the URL a server answers on.
    """
    if settings.chroma_url:
        yield
        return
    folder = settings.data_dir
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise StoreBusyError(busy_message(os.path.abspath(folder), holder, command)) from None
        _write_holder(fd, Holder(os.getpid(), command, address))
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the next reader finds no stale holder
    finally:
        os.close(fd)  # releases the flock


def _write_holder(fd: int, holder: Holder) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder.__dict__).encode(), 0)


def _read_holder(fd: int) -> Holder | None:
    """The holder recorded in the file; None while it has not written itself yet."""
    try:
        return Holder(**json.loads(os.pread(fd, 4096, 0)))
    except (ValueError, TypeError):
        return None


def busy_message(folder: str, holder: Holder | None, command: str) -> str:
    """Who holds the store in ``folder`` and what the user of ``command`` can do instead."""
    if holder is None:
        who = "another citeqa process"
    elif holder.command == "serve":
        who = f"a citeqa server (pid {holder.pid}, {holder.address})"
    else:
        who = f"`citeqa {holder.command}` (pid {holder.pid})"
    said = f"{who} is using the embedded store in {folder}, which takes one process at a time"
    if holder is None or holder.command != "serve":
        return f"{said}; wait for it to finish and try again, {SERVER_MODE}"
    if command == "serve":
        return f"{said}; it is already served at {holder.address}, or stop that server first"
    if command == "ingest":
        return (
            f"{said}; to ingest, stop the server, run `citeqa ingest` and start the server "
            f"again, {SERVER_MODE}"
        )
    if command == "documents":
        return (
            f"{said}; manage them through the server instead ({holder.address}/v1/documents), "
            f"or stop the server, {SERVER_MODE}"
        )
    return (
        f"{said}; ask the server instead (POST {holder.address}/v1/ask, GET "
        f"{holder.address}/v1/search), or stop the server, {SERVER_MODE}"
    )

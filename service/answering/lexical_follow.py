"""The thread that keeps a lexical index following its collection's change log.

A :class:`Follower` calls its index's ``catch_up`` every ``poll_s`` seconds in a daemon thread
until it is stopped or the index is gone (the thread holds the index weakly). Every follower
still running when the interpreter exits is stopped first (:func:`atexit`): the interpreter
ends daemon threads where they stand, and one ended inside tantivy's or Chroma's native code
took the whole process down with a segmentation fault after a test run had passed.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Protocol

log = logging.getLogger("citeqa.lexical")

EXIT_WAIT_S = 10.0  # at exit, the longest wait for the followers to finish their catch-ups


class Followed(Protocol):
    def catch_up(self) -> None: ...


class Follower:
    """``index.catch_up()`` every ``poll_s`` seconds, in a thread named ``name``."""

    def __init__(self, index: Followed, poll_s: float, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_follow, args=(weakref.ref(index), self._stop, poll_s), name=name, daemon=True
        )
        _running.add(self)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling, and wait (at most ``timeout`` seconds) for a catch-up under way."""
        self._stop.set()
        _running.discard(self)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


_running: weakref.WeakSet[Follower] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    followers = list(_running)
    for follower in followers:
        follower._stop.set()  # all at once, then wait for each
    deadline = time.monotonic() + EXIT_WAIT_S
    for follower in followers:
        follower.stop(max(0.0, deadline - time.monotonic()))


def _follow(ref: weakref.ref[Followed], stop: threading.Event, poll_s: float) -> None:
    failing = False
    while not stop.wait(poll_s):
        index = ref()
        if index is None:
            return
        try:
            index.catch_up()
            failing = False
        except Exception as exc:  # Chroma away for a while: the next poll tries again
            if not failing:  # once per outage, not every poll
                log.warning("lexical index: cannot catch up (%s: %s)", type(exc).__name__, exc)
            failing = True
        del index

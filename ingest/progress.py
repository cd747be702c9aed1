"""Progress of an ingest run: a bar on a terminal, a log line every few seconds elsewhere.

A run has two stages worth watching: chunking the documents, then embedding the texts (sentences
and chunks) that are missing - about a minute for the bundled corpus on 2 cores, during which
`citeqa serve` printed nothing (issue 11). The pipeline reports each stage through a
:data:`Reporter`: ``reporter(label, total, unit)`` returns a :class:`Meter` that is told how many
items are done and closed at the end.

* :func:`bars`: tqdm on stderr (count, rate, ETA), for a terminal;
* :class:`LogLines`: INFO lines on the ``ingest.progress`` logger, at the start, every
  :data:`LOG_EVERY_S` seconds and at the end, for a pipe, a file or a container's log.

:func:`for_stream` picks one for the stream the user watches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from tqdm import tqdm

LOG_EVERY_S = 5.0
log = logging.getLogger("ingest.progress")


class Meter(Protocol):
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


Reporter = Callable[[str, int, str], Meter]  # (label, total, unit) -> a meter of one stage


def bars(label: str, total: int, unit: str) -> Meter:
    """A tqdm bar: done/total, rate and ETA."""
    return tqdm(total=total, desc=label, unit=unit, dynamic_ncols=True)


class LogLines:
    """One log line at the start, then at most one per ``every`` seconds, and one at the end."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str,
        every: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit, self.every, self.clock = label, total, unit, every, clock
        self.done = 0
        self.started = self.last = clock()
        log.info("%s: %d %ss to do", label, total, unit)

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            log.info("%s", self.line(now))

    def close(self) -> None:
        took = self.clock() - self.started
        rate = self.done / max(took, 1e-9)
        done = f"{self.done}/{self.total} {self.unit}s in {took:.1f} s"
        log.info("%s: %s (%.1f %ss/s)", self.label, done, rate, self.unit)

    def line(self, now: float) -> str:
        """``label: done/total units (p%), r units/s, ETA m:ss``."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else float("inf")
        eta = f"{int(left // 60)}:{int(left % 60):02d}" if left != float("inf") else "?"
        percent = 100 * self.done / self.total if self.total else 100.0
        return (
            f"{self.label}: {self.done}/{self.total} {self.unit}s ({percent:.0f}%), "
            f"{rate:.1f} {self.unit}s/s, ETA {eta}"
        )


class _Silent:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def stage_meter(reporter: Reporter | None, label: str, total: int, unit: str) -> Meter:
    """A meter of ``reporter`` for one stage; a silent one without a reporter or work."""
    return reporter(label, total, unit) if reporter is not None and total else _Silent()


def for_stream(stream: TextIO) -> Reporter:
    """Bars when ``stream`` is a terminal, log lines otherwise."""
    return bars if stream.isatty() else LogLines

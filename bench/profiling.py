"""Profiles of missed targets with pyinstrument (the ``bench`` extra), as text for the report."""

from __future__ import annotations

from collections.abc import Callable

MAX_TREE_LINES = 45
MAX_FLAT_LINES = 14


def available() -> bool:
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return False
    return True


def profile(fn: Callable[[], object]) -> str:
    """Call tree (trimmed) and the functions with the most self time, of one call of ``fn``."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        fn()
    finally:
        profiler.stop()
    tree = _trim(profiler.output_text(unicode=False, color=False), MAX_TREE_LINES)
    flat = _trim(
        profiler.output_text(unicode=False, color=False, flat=True, time="percent_of_total"),
        MAX_FLAT_LINES,
    )
    return f"{tree}\n\nSelf time by function (share of the profiled wall time):\n{flat}"


def _trim(text: str, limit: int) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    body = [line for line in lines if line.strip() and not _is_banner(line)]
    if len(body) > limit:
        body = [*body[:limit], f"... ({len(body) - limit} more lines)"]
    return "\n".join(body)


def _is_banner(line: str) -> bool:
    markers = ("_     ._", "/_//_///", "/   _/ ", "Recorded:", "Duration:", "Profile at ")
    return any(marker in line for marker in markers)

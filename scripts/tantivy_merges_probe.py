"""Does a tantivy writer dropped right after its commit lose the merges that commit began?

The lexical index's follower (service.answering.lexical) commits one segment per update. tantivy
merges segments in background threads of the writer that committed them, and dropping the writer
kills its segment updater: a merge still running is finished by its thread and thrown away, and
the next writer begins it again. This probe commits 60 small updates over a 40,000-document
segment, three ways:

    .venv/bin/python scripts/tantivy_merges_probe.py drop   # a writer per update (before)
    .venv/bin/python scripts/tantivy_merges_probe.py keep   # one writer kept (the follower now)
    .venv/bin/python scripts/tantivy_merges_probe.py wait   # a writer per update, merges waited

and prints the segments left and the CPU the updates took (docs/lexical-index.md, session 22).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tantivy

UPDATES, PER_UPDATE = 60, 20


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "drop"
    if mode not in {"drop", "keep", "wait"}:
        sys.exit(f"mode: drop, keep or wait, not {mode!r}")
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", stored=True)
    folder = Path(tempfile.mkdtemp(prefix="merges-"))
    index = tantivy.Index(builder.build(), path=str(folder))
    writer = index.writer(heap_size=50_000_000, num_threads=1)
    for i in range(40_000):
        writer.add_document(tantivy.Document(body=f"word{i % 5000} text {i} " * 30))
    writer.commit()
    writer.wait_merging_threads()
    cpu, wall = time.process_time(), time.perf_counter()
    kept = index.writer(heap_size=15_000_000, num_threads=1) if mode == "keep" else None
    for update in range(UPDATES):
        writer = kept or index.writer(heap_size=15_000_000, num_threads=1)
        for j in range(PER_UPDATE):
            writer.add_document(tantivy.Document(body=f"new {update} {j} " * 30))
        writer.commit()
        if mode == "wait":
            writer.wait_merging_threads()
        del writer
        time.sleep(0.05)
    if kept is not None:
        kept.wait_merging_threads()
    time.sleep(1)
    sizes = sorted(s["max_doc"] for s in json.loads((folder / "meta.json").read_text())["segments"])
    print(
        f"{mode}: {len(sizes)} segments (largest {sizes[-3:]}), "
        f"CPU {time.process_time() - cpu:.2f} s, wall {time.perf_counter() - wall:.2f} s"
    )
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()

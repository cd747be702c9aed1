"""What the documents listing (``GET /v1/documents``, ``GET /v1/documents/{id}``:
citeqa.catalog.Catalog over the server's lexical view) costs at N chunks, by this tree and by
another one, each in a fresh process on the same store.

    # a store of N synthetic chunks, two per document (scripts/lexical_cold_build.py)
    .venv/bin/python scripts/lexical_cold_build.py store 400000 /tmp/cb/store
    # this tree, then OLD (e.g. `git archive <commit> | tar -x -C OLD`); prints JSON lines
    .venv/bin/python scripts/document_listing.py /tmp/cb/store [--old OLD]

Each process cold-builds its tantivy index (not timed here: scripts/lexical_cold_build.py
measures that), then times each request ``--repeat`` times: the first page of 50, the page
after a cursor in the middle of the ids, the last page, and one document by id; the median of
each, and the growth of the process' peak RSS over the listing. A tree from before the
document records (its views have ``visible()``, every chunk's metadata) is listed that way.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = 50


def measure(store: Path, tree: Path, repeat: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from lexical_cold_build import open_probe  # puts this tree first on the path: then ``tree``

    sys.path.insert(0, str(tree))
    from citeqa.catalog import Catalog
    from service.answering.lexical import TantivyIndex

    index = open_probe(store, None)
    chunks = index.chunks.count()
    documents = chunks // 2  # the probe store's: two chunks a document
    with tempfile.TemporaryDirectory() as folder:
        follower = TantivyIndex(index, Path(folder) / "lexical", poll_s=0)
        began = time.perf_counter()
        view = follower.view()
        built_s = time.perf_counter() - began
        if hasattr(view, "documents_after"):
            catalog = Catalog(index, Path(folder), follower.view)
        else:  # before the document records: every chunk's metadata, every listing
            catalog = Catalog(index, Path(folder), lambda: follower.view().visible())  # type: ignore[attr-defined]
        middle = f"synthetic-{documents // 2:08d}"
        last = f"synthetic-{documents - PAGE // 2:08d}"
        requests = {
            "first page": lambda: catalog.page(PAGE, None),
            "middle page": lambda: catalog.page(PAGE, _cursor(middle)),
            "last page": lambda: catalog.page(PAGE, _cursor(last)),
            "one document": lambda: catalog.get(middle),
        }
        rss_before = _peak_mb()
        timings = {name: _median_ms(request, repeat) for name, request in requests.items()}
        shown = [d.id for d in catalog.page(PAGE, _cursor(middle))[0]]
        follower.close()
    assert shown[0] == f"synthetic-{documents // 2 + 1:08d}", shown[:2]
    assert str(sys.modules["citeqa"].__file__).startswith(str(tree)), "another tree's code"
    return {
        "tree": str(tree),
        "chunks": chunks,
        "documents": documents,
        "cold_build_s": round(built_s, 1),
        "ms": timings,
        "peak_rss_growth_mb": round(_peak_mb() - rss_before),
    }


def _cursor(doc_id: str) -> str:
    """The listing's cursor of ``doc_id`` (what ``next_cursor`` holds after it)."""
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def _median_ms(request: Any, repeat: int) -> float:
    from bench.measure import latencies_ms  # this tree's: lexical_cold_build imported it

    return round(latencies_ms(lambda _: request(), [""] * repeat).median, 2)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--old", type=Path, help="another tree to measure after this one")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args()
    if args.tree:
        print(json.dumps(measure(args.store, args.tree, args.repeat)), flush=True)
        return
    for tree in [ROOT, *([args.old] if args.old else [])]:
        command = [sys.executable, __file__, str(args.store), "--tree", str(tree.resolve())]
        command += ["--repeat", str(args.repeat)]
        env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
        subprocess.run(command, check=True, env=env, cwd=tree)


if __name__ == "__main__":
    main()

"""What a cold build of the tantivy lexical index costs, and the same build by another tree.

A cold build is what a new replica does first (service.answering.lexical.TantivyIndex): read
the change log, read every logged document's chunks from Chroma, make each chunk's tokens,
stems and name keys, feed tantivy, commit. Issue 19 asks for <= 5 min at 1M chunks on 2 cores.

    # a store of N synthetic chunks (scripts/lexical_rebuild.py's texts and metadata, two
    # chunks per document, one change log record per document), lexical only: its vectors
    # are 2-dimensional and random, which a lexical build never reads
    .venv/bin/python scripts/lexical_cold_build.py store 100000 /tmp/cb/store
    # one cold build on it, through `chroma run` (--embedded: in process); prints JSON
    .venv/bin/python scripts/lexical_cold_build.py build /tmp/cb/store [--embedded]
    # builds by this tree and by OLD (e.g. `git archive main | tar -x -C OLD`), alternating,
    # each in a fresh process on the same server; checks both indexes hold the same content
    .venv/bin/python scripts/lexical_cold_build.py compare /tmp/cb/store OLD [--rounds 2]

``build --collection scale`` builds from another store's collection (the scale bench's,
through its ``chroma run``). ``build --profile`` adds the cProfile functions with the most own
time, ``--timeline`` the build process' RssAnon, RssFile and the summed RSS every 2 s and the
chunks read by then (does the build slow down as it goes?); ``--workers N`` sets
the new tree's ``build_workers`` (processes making the chunks' fields; unset: its default).
``peak_mb`` and ``cpu_s`` are the build process' own; ``tree_peak_mb`` and ``tree_cpu_s`` add the
processes it started during the build (the field workers and their fork server; not a Chroma
server), sampled every 0.2 s: the peak is of their summed RSS (``tree_pss_peak_mb``: of their
summed PSS, shared pages counted once).
"""

from __future__ import annotations

import argparse
import hashlib
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
sys.path.insert(0, str(ROOT))  # the sampler is this tree's, whichever tree's build it measures
from bench.measure import TreeSampler, cpu_s  # noqa: E402

COLLECTION = "lexprobe"
WRITE_BATCH = 5000


class ProbeEmbedder:
    """The store's embedder: a lexical build never embeds."""

    name, dim = "lexical-probe", 2

    def embed(self, texts: Any) -> Any:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def make_store(size: int, folder: Path) -> None:
    import chromadb
    import numpy as np
    from chromadb.config import Settings as ChromaSettings

    from citeqa.store import open_index

    ids, texts, metas = versioned(synthetic_of(size))
    client = chromadb.PersistentClient(str(folder), ChromaSettings(anonymized_telemetry=False))
    index = open_index(client, COLLECTION, ProbeEmbedder(), create=True)
    assert index.log is not None
    vectors = np.random.default_rng(19).normal(size=(size, 2)).astype(np.float32)
    for start in range(0, size, WRITE_BATCH):
        end = min(start + WRITE_BATCH, size)
        index.chunks.add(
            ids=ids[start:end],
            documents=texts[start:end],
            metadatas=metas[start:end],
            embeddings=vectors[start:end],
        )
        docs = {m["doc_id"]: (m["doc_hash"], m["doc_chunks"]) for m in metas[start:end]}
        index.log.append((d, *v) for d, v in docs.items())
        print(f"{end} chunks written", file=sys.stderr, flush=True)


def versioned(made: tuple[list[str], list[str], list[dict[str, Any]]]) -> Any:
    """scripts/lexical_rebuild.py's chunks with one version per document: its two chunks
    carry one ``doc_hash`` (each draws its own there, so no version would be complete)."""
    ids, texts, metas = made
    for meta in metas:
        meta["doc_hash"] = hashlib.sha1(str(meta["doc_id"]).encode()).hexdigest()[:16]
    return ids, texts, metas


def fix_store(folder: Path) -> None:
    """Give the chunks of a store made before :func:`versioned` their version."""
    index = open_probe(folder, None)
    ids, _, metas = versioned(synthetic_of(index.chunks.count()))
    for start in range(0, len(ids), WRITE_BATCH):
        index.chunks.update(
            ids=ids[start : start + WRITE_BATCH], metadatas=metas[start : start + WRITE_BATCH]
        )
        print(f"{start + WRITE_BATCH} chunks fixed", file=sys.stderr, flush=True)


def synthetic_of(size: int) -> Any:
    from lexical_rebuild import synthetic

    return synthetic(size)


def open_probe(store: Path, url: str | None, collection: str = COLLECTION) -> Any:
    """The store's collection ``collection`` (another store's, such as the scale bench's
    ``scale``, with a probe embedder named as the collection records)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from citeqa.store import open_index

    settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        host, port = url.removeprefix("http://").split(":")
        client = chromadb.HttpClient(host=host, port=int(port), settings=settings)
    else:
        client = chromadb.PersistentClient(str(store), settings)
    embedder = ProbeEmbedder()
    recorded = client.get_collection(collection).metadata or {}
    embedder.name = recorded.get("embed_model", embedder.name)
    embedder.dim = recorded.get("embed_dim", embedder.dim)
    return open_index(client, collection, embedder, create=False)


def digest(follower: Any) -> str:
    """A digest of what the built index holds: every chunk's stored fields, and the terms of
    every indexed field with their document counts, of both indexes."""
    import tantivy

    hasher = hashlib.sha256()
    assert follower._chunks is not None and follower._docs is not None
    chunks, docs = follower._chunks.searcher(), follower._docs.searcher()
    hits = chunks.search(tantivy.Query.all_query(), chunks.num_docs).hits
    rows = []
    for _, address in hits:
        doc = chunks.doc(address)
        record = json.dumps(json.loads(doc["record"][0]), sort_keys=True)  # Chroma's key order
        rows.append((doc["id"][0], doc["dl"][0], doc["tokens"][0], record))  # varies by read
    for row in sorted(rows):
        hasher.update(repr(row).encode())
    for searcher, fields in ((chunks, ("id", "terms", "stems", "names")), (docs, ("stems",))):
        for name in fields:
            for term, count in sorted(searcher.terms_with_prefix(name, "")):
                hasher.update(f"{name}\x00{term}\x00{count}\n".encode())
    aliases = docs.terms_with_prefix("aliases", "")
    hasher.update(repr(sorted(aliases)).encode())
    return hasher.hexdigest()[:16]


def build(
    store: Path,
    url: str | None,
    profile: bool,
    check: bool,
    workers: int | None,
    timeline: bool = False,
    collection: str = COLLECTION,
) -> dict[str, Any]:
    from service.answering.lexical import TantivyIndex

    index = open_probe(store, url, collection)
    root = Path(tempfile.mkdtemp(prefix="cold-build-", dir=os.environ.get("TMPDIR")))
    chosen = {} if workers is None else {"build_workers": workers}  # an old tree has none
    follower = TantivyIndex(index, root, poll_s=0, **chosen)
    reads: list[tuple[float, int]] = []  # when each batch of chunks was read, and its size
    read_ids = getattr(follower, "_read_ids", None)  # an old tree may have none
    if timeline and read_ids is not None:

        def timed(ids: list[str]) -> Any:
            got = read_ids(ids)
            reads.append((time.perf_counter(), len(ids)))
            return got

        follower._read_ids = timed  # type: ignore[method-assign]
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    begun, cpu = time.perf_counter(), time.process_time()
    with TreeSampler() as tree:
        tree_cpu = tree.cpu.get(os.getpid(), 0.0)
        follower.catch_up()
    build_s, cpu_s = time.perf_counter() - begun, time.process_time() - cpu
    out: dict[str, Any] = {
        "tree": sys.path[0],
        "chunks": follower._view.searcher.num_docs if follower._view else 0,
        "build_s": round(build_s, 1),
        "cpu_s": round(cpu_s, 1),  # this process' own: tantivy's threads included
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "tree_cpu_s": round(sum(tree.cpu.values()) - tree_cpu, 1),
        "tree_peak_mb": round(tree.peak_kb / 1024),
        "tree_pss_peak_mb": round(tree.pss_peak_kb / 1024),
        "own_peak_mb": {k: round(v / 1024) for k, v in tree.own_kb.items()},
        "workers": workers,
        "threads_cpu_s": tree.by_thread(),  # since the process began
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
    if profiler is not None:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler)
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:25]  # type: ignore[attr-defined]
        out["profile"] = [
            f"{own:7.2f}s own {total:7.2f}s total {name[2]} ({Path(name[0]).name}:{name[1]})"
            for name, (_, _, own, total, _) in rows
        ]
    if timeline:
        out["timeline"] = tree.timeline  # seconds, own RssAnon, own RssFile, summed RSS (MB)
        out["read"] = _read_by(reads, begun)  # seconds, chunks read by then (every 10 s)
    if check:
        out["digest"] = digest(follower)
    follower.close()
    subprocess.run(["rm", "-rf", str(root)], check=False)
    return out


def _read_by(reads: list[tuple[float, int]], begun: float) -> list[tuple[float, int]]:
    """The chunks read by every tenth second of the build."""
    out: list[tuple[float, int]] = []
    total = 0
    for at, count in reads:
        total += count
        if not out or at - begun - out[-1][0] >= 10.0:
            out.append((round(at - begun, 1), total))
    return out


def run_build(
    tree: Path, store: Path, url: str | None, check: bool, workers: int | None = None
) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "build", str(store)]
    command += ["--tree", str(tree)] + (["--url", url] if url else ["--embedded"])
    command += ["--check"] if check else []
    command += [] if workers is None else ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"build by {tree} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def cpu_of(server: Any) -> float:
    """CPU seconds the ``chroma run`` process has used (0 embedded: the build's own)."""
    if server is None or server.process is None:
        return 0.0
    return cpu_s(server.process.pid)


def compare(store: Path, old: Path, rounds: int, embedded: bool, workers: int | None) -> None:
    from tests.servers import ChromaServer

    server = None if embedded else ChromaServer(store).start(timeout=300)
    url = None if server is None else server.url
    try:
        results: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
        for turn in range(rounds):
            order = (
                (("old", old), ("new", ROOT)) if turn % 2 == 0 else (("new", ROOT), ("old", old))
            )
            for name, tree in order:
                before = cpu_of(server)
                chosen = workers if name == "new" else None
                result = run_build(tree, store, url, check=turn == 0, workers=chosen)
                result["server_cpu_s"] = round(cpu_of(server) - before, 1)  # Chroma's share
                results[name].append(result)
                print(json.dumps({"which": name, **result}), flush=True)
    finally:
        if server is not None:
            server.stop()
    old_s = sum(r["build_s"] for r in results["old"])
    new_s = sum(r["build_s"] for r in results["new"])
    old_cpu = sum(r["tree_cpu_s"] + r["server_cpu_s"] for r in results["old"])
    new_cpu = sum(r["tree_cpu_s"] + r["server_cpu_s"] for r in results["new"])
    same = results["old"][0].get("digest") == results["new"][0].get("digest")
    summary = {"old_s": round(old_s, 1), "new_s": round(new_s, 1), "ratio": round(old_s / new_s, 2)}
    summary |= {"old_cpu_s": round(old_cpu, 1), "new_cpu_s": round(new_cpu, 1)}
    summary |= {"cpu_ratio": round(old_cpu / new_cpu, 2), "same_index": same}
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    store = sub.add_parser("store")
    store.add_argument("size", type=int)
    store.add_argument("folder", type=Path)
    sub.add_parser("fix").add_argument("folder", type=Path)
    one = sub.add_parser("build")
    one.add_argument("folder", type=Path)
    one.add_argument("--tree", type=Path, default=ROOT)
    one.add_argument("--url")
    one.add_argument("--embedded", action="store_true")
    one.add_argument("--profile", action="store_true")
    one.add_argument("--check", action="store_true")
    one.add_argument("--workers", type=int)
    one.add_argument("--timeline", action="store_true")
    one.add_argument("--collection", default=COLLECTION)
    both = sub.add_parser("compare")
    both.add_argument("folder", type=Path)
    both.add_argument("old", type=Path)
    both.add_argument("--rounds", type=int, default=2)
    both.add_argument("--embedded", action="store_true")
    both.add_argument("--workers", type=int)
    args = parser.parse_args()
    if args.command == "store":
        sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
        make_store(args.size, args.folder)
    elif args.command == "fix":
        sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
        fix_store(args.folder)
    elif args.command == "build":
        sys.path.insert(0, str(args.tree))
        url = args.url
        server = None
        if url is None and not args.embedded:
            from tests.servers import ChromaServer

            server = ChromaServer(args.folder).start(timeout=300)
            url = server.url
        try:
            found = build(
                args.folder,
                url,
                args.profile,
                args.check,
                args.workers,
                args.timeline,
                args.collection,
            )
            print(json.dumps(found))
        finally:
            if server is not None:
                server.stop()
    else:
        sys.path.insert(0, str(ROOT))
        compare(args.folder, args.old, args.rounds, args.embedded, args.workers)


if __name__ == "__main__":
    main()

"""The `citeqa` command line: ingest, search, ask, documents, chat, serve, eval.

Errors print one line to stderr and exit non-zero; no traceback reaches the user
(set CITEQA_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from citeqa import __version__
from citeqa.config import MAX_TOP_K, Settings
from citeqa.errors import CiteqaError
from citeqa.layout import describe
from citeqa.lock import hold_store

if TYPE_CHECKING:
    from citeqa.embedding import Embedder
    from citeqa.store import Index

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    logging.getLogger("ingest.progress").setLevel(logging.INFO)  # seen when not on a terminal
    try:
        settings = Settings()
        if getattr(args, "collection", None):
            settings = settings.model_copy(update={"collection": args.collection})
        return int(args.handler(args, settings) or 0)
    except CiteqaError as exc:
        return _fail(exc.message)
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)
    except BrokenPipeError:  # `citeqa ask ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("CITEQA_DEBUG"):
            raise
        return _fail(f"{type(exc).__name__}: {exc}")


def _fail(message: str, code: int = 1) -> int:
    print(f"citeqa: error: {message}", file=sys.stderr)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citeqa", description="Question answering with verified citations."
    )
    parser.add_argument("--version", action="version", version=f"citeqa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add(sub, "ingest", cmd_ingest, "Ingest files or folders (default: the bundled corpus).")
    sub.choices["ingest"].add_argument("paths", nargs="*", type=Path)
    sub.choices["ingest"].add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="do not refit the collection's answerability model (by default it is refit, as "
        "a stage of its own after the ingest's summary, when the ingest changed it materially)",
    )
    _add(sub, "calibrate", cmd_calibrate, "Fit the collection's answerability model.")
    sub.choices["calibrate"].add_argument(
        "--dataset", type=Path, default=None, help="a labelled set (JSONL) to fit on as well"
    )
    _add(sub, "search", cmd_search, "Show the ranked sources for a query.")
    sub.choices["search"].add_argument("query")
    sub.choices["search"].add_argument(
        "-k", type=int, default=5, help=f"hits to show (1-{MAX_TOP_K})"
    )
    sub.choices["search"].add_argument("--json", action="store_true")
    _add(sub, "ask", cmd_ask, "Answer a question with citations.")
    sub.choices["ask"].add_argument("question")
    sub.choices["ask"].add_argument(
        "-k", "--top-k", type=int, default=None, help=f"sources to use (1-{MAX_TOP_K})"
    )
    sub.choices["ask"].add_argument("--json", action="store_true", help="print the /v1/ask JSON")
    _add(sub, "documents", cmd_documents, "List, show or delete the documents of a collection.")
    docs = sub.choices["documents"].add_subparsers(dest="action", required=True)
    docs.add_parser("list", help="every document: id, pages, chunks, title")
    docs.add_parser("show", help="one document, as JSON").add_argument("id")
    delete = docs.add_parser("delete", help="delete a document and its chunks")
    delete.add_argument("id")
    delete.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="do not refit the collection's answerability model (by default it is refit when "
        "the deletes since its fit changed the collection materially)",
    )
    for command in (*(sub.choices[n] for n in ("ingest", "search", "ask")), *docs.choices.values()):
        command.add_argument(
            "--collection", default=None, help="the collection (default: CITEQA_COLLECTION)"
        )
    _add(sub, "chat", cmd_chat, "Chat in the terminal: streamed, cited answers and follow-ups.")
    _add(
        sub,
        "serve",
        cmd_serve,
        "Run the HTTP API (ingests the bundled corpus if the store is empty).",
    )
    sub.choices["serve"].add_argument("--host", default=None)
    sub.choices["serve"].add_argument("--port", type=int, default=None)
    _add(sub, "eval", cmd_eval, "Score answers against a Q&A dataset; gate, compare, draft.")
    from evals.cli import configure_parser  # argparse only: the eval's imports come when run

    configure_parser(sub.choices["eval"])
    return parser


def _add(
    sub: argparse._SubParsersAction, name: str, handler: Callable[..., int], help_text: str
) -> None:
    command = sub.add_parser(name, help=help_text, description=help_text)
    command.set_defaults(handler=handler)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.store import check_collection_name
    from ingest.progress import for_stream
    from ingest.run import changed, default_embedder, ingest_paths

    paths = args.paths or [settings.corpus_path]
    if args.collection:
        check_collection_name(args.collection)
    with hold_store(settings, "ingest"):
        embedder = default_embedder(settings)
        summaries = ingest_paths(settings, paths, for_stream(sys.stderr), embedder)
        for summary in summaries:
            print(summary.line())
            for path, reason in summary.skipped:
                print(f"  skipped {path}: {reason}")
        if args.calibrate:
            _refit_after(settings, changed(summaries), embedder)
    return 0


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from evals.calibrate import describe, run

    with hold_store(settings, "calibrate"):
        print(describe(run(settings, args.dataset)))
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from service.answering.answer import public_sources
    from service.answering.engine import build_engine

    with hold_store(settings, "search"):
        _require_collection(settings, args.collection)
        hits = build_engine(settings).search(args.query, args.k)
    if args.json:
        print(json.dumps(public_sources(hits), indent=2))
        return 0
    for i, hit in enumerate(hits, start=1):
        place = describe(**hit.where())
        print(f"[{i}] {hit.score:.4f}  {hit.title}" + (f" ({place})" if place else ""))
        print(textwrap.indent(textwrap.shorten(hit.body, 240), "      "))
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from service.answering.engine import build_engine

    with hold_store(settings, "ask"):
        _require_collection(settings, args.collection)
        answer = build_engine(settings).ask(args.question, args.top_k)
    if args.json:
        print(json.dumps(answer.public(), indent=2, ensure_ascii=False))
        return 0
    for written, meant in answer.read_as.items():
        print(f"(read \u201c{written}\u201d as \u201c{meant}\u201d, as the documents write it)")
    print(answer.answer)
    print()
    for citation in answer.citations:
        link = f" <{citation.url}>" if citation.url else ""
        place = describe(
            citation.source, citation.page, citation.page_end, citation.section, citation.page_label
        )
        print(f"[{citation.n}] {citation.title}" + (f" ({place})" if place else "") + link)
        print(textwrap.indent(textwrap.fill(f"\u201c{citation.quote}\u201d", 96), "    "))
    return 0


def _require_collection(settings: Settings, name: str | None) -> None:
    """A collection named on the command line must exist (the default one is created)."""
    if name:
        from citeqa.store import connect, require_collection

        require_collection(connect(settings), name)


def cmd_documents(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.catalog import Catalog, files_dir
    from citeqa.embedding import build_embedder
    from citeqa.store import connect, open_index, require_collection

    with hold_store(settings, "documents"):
        client = connect(settings)
        require_collection(client, settings.collection)
        embedder = build_embedder(settings)
        index = open_index(client, settings.collection, embedder, create=False)
        catalog = Catalog(index, files_dir(settings.data_dir))
        if args.action == "list":
            for doc in catalog.documents():
                pages = f"{doc.pages} p." if doc.pages else doc.format
                print(f"{doc.id}\t{pages}\t{doc.chunks} chunks\t{doc.title}")
        elif args.action == "show":
            print(json.dumps(catalog.get(args.id).public(), indent=2, ensure_ascii=False))
        else:
            catalog.delete(args.id, client.get_max_batch_size())
            print(f"deleted {args.id} from collection {settings.collection}")
            if args.calibrate:
                _refit_after(settings, 1, embedder, index)
    return 0


def _refit_after(
    settings: Settings, changed: int, embedder: Embedder, index: Index | None = None
) -> None:
    """Refit the collection's answerability model after ``changed`` documents were added,
    updated or deleted, when that is material; print what the fit measured and its time."""
    from ingest.run import refit_report

    report = refit_report(settings, changed, embedder, index)
    if report is not None:
        print(report)


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from cli.chat import run_terminal_chat
    from service.answering.engine import build_engine

    with hold_store(settings, "chat"):
        engine = build_engine(settings)
        print("citeqa chat: ask about the corpus; /quit or Ctrl-D to leave.", file=sys.stderr)
        return run_terminal_chat(
            engine, sys.stdin, sys.stdout, sys.stderr, prompt=sys.stdin.isatty()
        )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    updates = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = settings.model_copy(update=updates)
    # The embedded store is this server's alone while it runs (citeqa.lock).
    with hold_store(settings, "serve", f"http://{settings.host}:{settings.port}"):
        return _serve(settings)


def _serve(settings: Settings) -> int:
    import uvicorn

    from citeqa.embedding import build_embedder
    from ingest.progress import for_stream
    from ingest.run import ensure_ingested
    from service.answering.engine import Engine, build_engine
    from service.api.app import create_app
    from service.api.observability import configure_logging

    # The first ingest's progress lines go out in the server's log format (the app's lifespan
    # configures logging again, once uvicorn has set up its own).
    configure_logging(settings)
    # One embedding model for the ingest check and the engine: a second one cost 30-60 MB of
    # RSS and 0.5 s of startup (BENCHMARKS.md).
    embedder = build_embedder(settings)
    summary = ensure_ingested(settings, progress=for_stream(sys.stderr), embedder=embedder)
    if summary:
        print(summary.line(), file=sys.stderr)

    def engine_factory(engine_settings: Settings) -> Engine:
        return build_engine(engine_settings, embedder=embedder)

    app = create_app(settings, engine_factory)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from evals.cli import run

    return run(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())

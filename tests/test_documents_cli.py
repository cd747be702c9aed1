"""`citeqa documents list|show|delete` and `--collection`: output and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from cli.main import main
from service.answering import answerability
from service.answering.engine import build_engine
from tests.topics import write_topic_documents

pytestmark = pytest.mark.integration


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_documents_of_a_collection_are_listed_shown_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITEQA_DATA_DIR", str(tmp_path / "store"))
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Ladder\n\nThe ladder is in the garage.\n")
    (folder / "sub" / "b.md").write_text("# Hose\n\nThe hose hangs on the wall.\n")
    assert run(capsys, "ingest", str(folder), "--collection", "notes")[0] == 0

    code, out, _ = run(capsys, "documents", "list", "--collection", "notes")
    assert code == 0
    assert [line.split("\t")[0] for line in out.splitlines()] == ["file:a.md", "file:sub/b.md"]
    code, out, _ = run(capsys, "documents", "show", "file:a.md", "--collection", "notes")
    shown = json.loads(out)
    assert shown["source"] == "a.md" and shown["format"] == "markdown"
    assert shown["bytes"] == (folder / "a.md").stat().st_size and shown["collection"] == "notes"
    assert run(capsys, "documents", "delete", "file:a.md", "--collection", "notes")[0] == 0
    _, out, _ = run(capsys, "documents", "list", "--collection", "notes")
    assert "file:a.md" not in out and "file:sub/b.md" in out
    code, out, _ = run(capsys, "search", "garden hose", "--collection", "notes", "--json")
    assert code == 0 and json.loads(out)[0]["doc_id"] == "file:sub/b.md"

    failures = {
        ("documents", "show", "file:a.md", "--collection", "notes"): "document 'file:a.md'",
        ("documents", "list", "--collection", "cellar"): "collection 'cellar' does not exist",
        ("ask", "where is the hose?", "--collection", "cellar"): "collection 'cellar'",
        ("ingest", str(folder), "--collection", "bad name"): "invalid collection name",
    }
    for argv, message in failures.items():
        code, _, err = run(capsys, *argv)
        assert code == 1 and message in err and "Traceback" not in err, (argv, err)
        assert err.startswith("citeqa: error: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as usage:
        main(["documents", "show"])
    assert usage.value.code == 2


def test_a_delete_refits_the_answerability_model_once_the_deletes_are_material(
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`citeqa documents delete` refits as `citeqa ingest` does, after the delete, when the
    deletes since the last fit changed the collection materially (`--no-calibrate`: never)."""
    settings = Settings(data_dir=tmp_path / "store", generator="extractive")
    monkeypatch.setenv("CITEQA_DATA_DIR", str(settings.data_dir))
    folder = write_topic_documents(tmp_path / "docs")
    (folder / "maps.md").write_text("# Maps Notes\n\nContour lines join points of equal height.\n")
    assert run(capsys, "ingest", str(folder))[1].count("answerability fit on 7 documents") == 1
    engine = build_engine(settings, embedder=embedder)
    assert answerability.load(engine.index.chunks).figures["documents"] == 7

    code, out, _ = run(capsys, "documents", "delete", "--no-calibrate", "file:maps.md")
    assert code == 0 and "answerability" not in out, out
    assert answerability.load(engine.index.chunks).figures["documents"] == 7
    code, out, _ = run(capsys, "documents", "delete", "file:lamps.md")
    assert code == 0 and "answerability fit on 5 documents" in out, out
    assert answerability.load(engine.index.chunks).figures["documents"] == 5


def test_eval_corpus_fits_the_answerability_model_as_ingest_does(
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`citeqa eval --corpus DIR` measures the engine a user of DIR gets: its ingest fits the
    collection's answerability model as `citeqa ingest` would (`--no-calibrate`: not)."""
    from evals.corpus import collection_for

    monkeypatch.setenv("CITEQA_DATA_DIR", str(tmp_path / "store"))
    folder = write_topic_documents(tmp_path / "docs")
    draft = ["eval", "draft", "--corpus", str(folder), "--no-llm", "-n", "2"]
    code, _, err = run(capsys, *draft, "--no-calibrate", "--out", str(tmp_path / "a.jsonl"))
    assert code == 0 and "answerability" not in err, err
    settings = Settings(data_dir=tmp_path / "store", collection=collection_for(folder))
    index = build_engine(settings, embedder=embedder).index
    assert not answerability.load(index.chunks).fitted

    code, _, err = run(capsys, *draft, "--out", str(tmp_path / "b.jsonl"))
    assert code == 0 and "answerability fit on 6 documents" in err, err
    assert answerability.load(index.chunks).figures["documents"] == 6

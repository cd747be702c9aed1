"""Readers: the bundled listing and a user's folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from citeqa.config import BUNDLED_CORPUS
from citeqa.errors import CorpusFormatError, InputError
from ingest.readers import listing_doc_id, read_folder, read_listing, read_source

HEADER = (
    "Get trending papers in your email inbox once a day!\n"
    "Get trending papers in your email inbox!\n"
)


def test_bundled_listing_has_154_papers_with_right_first_and_last_titles() -> None:
    docs = read_listing(BUNDLED_CORPUS).documents
    assert len(docs) == 154
    assert docs[0].metadata["title"] == "ImageNet-21K Pretraining for the Masses"
    assert docs[-1].metadata["title"].startswith("SAVEn-Vid: Synergistic Audio-Visual Integration")
    assert docs[0].metadata["url"] == "https://github.com/Alibaba-MIIL/ImageNet21K"
    assert len({d.doc_id for d in docs}) == 154


def test_doc_ids_depend_on_the_title_only() -> None:
    assert listing_doc_id("A Paper") == listing_doc_id("A Paper")
    assert listing_doc_id("A Paper") != listing_doc_id("A Paper 2")


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("SubscribeTitle one\nAbstract one.\nTitle two\n", 5, "no abstract"),
        ("SubscribeTitle one\n\nTitle two\nAbstract.\n", 4, "empty abstract"),
        ("SubscribeTitle one\nAbstract.\nTitle one\nAbstract again.\n", 5, "duplicate title"),
        ("SubscribeTitle one\nAbstract.\n\nAbstract?\n", 5, "expected a title"),
    ],
)
def test_malformed_listing_names_the_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = tmp_path / "listing.txt"
    path.write_text(HEADER + body, encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=rf"listing.txt:{line}: .*{words}"):
        read_listing(path)


def test_listing_without_papers_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(HEADER, encoding="utf-8")
    with pytest.raises(CorpusFormatError, match="no papers"):
        read_listing(path)


def _write_folder(root: Path, outside: Path) -> None:
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "attention.md").write_text("# Attention notes\n\nAttention is used.\n")
    (root / "plain_file.txt").write_text("No heading here. Just text.\n")
    records = [{"id": "a1", "title": "Record A", "text": "Alpha text."}]
    (root / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (root / "bad.jsonl").write_text('{"id": "x", "title": "T", "text": "ok"}\n{not json}\n')
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (root / "binary.txt").write_bytes(b"abc\x00def")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (outside / "secret.txt").write_text("outside the root\n")
    os.symlink(outside / "secret.txt", root / "link.txt")


def test_folder_reads_supported_files_and_lists_skipped_ones(tmp_path: Path) -> None:
    root, outside = tmp_path / "corpus", tmp_path / "elsewhere"
    outside.mkdir()
    _write_folder(root, outside)
    result = read_folder(root)
    titles = {d.metadata["title"]: d.doc_id for d in result.documents}
    assert titles == {
        "Attention notes": "file:notes/attention.md",
        "plain file": "file:plain_file.txt",
        "Record A": "jsonl:a1",
    }
    skipped = dict(result.skipped)
    assert skipped["image.png"].startswith("unsupported file type")
    assert skipped["binary.txt"] == "binary file"
    assert "not UTF-8" in skipped["latin1.txt"]
    assert "line 2: invalid JSON" in skipped["bad.jsonl"]
    assert "outside" in skipped["link.txt"] and "refused" in skipped["link.txt"]


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        read_source(tmp_path / "nope")

"""Readers of PDF, HTML, DOCX and Markdown on real files, and every kind of bad file.

The PDFs and the HTML are real documents nobody here wrote (tests/data/r-vignettes, with their
source and license); DOCX files and the bad files are made here.
"""

from __future__ import annotations

import io
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docx
import pypdf
import pytest

import ingest.formats.pdf as pdf_format
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.layout import location
from citeqa.text import sentence_spans
from ingest.chunker import SentenceChunker
from ingest.formats import Limits
from ingest.formats.docx import read_docx
from ingest.formats.html import read_html
from ingest.formats.pdf import read_pdf
from ingest.formats.sniff import MAX_UNZIPPED_BYTES
from ingest.formats.text import read_text
from ingest.readers import make_document, read_folder
from ingest.run import ingest_paths

DATA = Path(__file__).parent / "data" / "r-vignettes"
OOP = DATA / "sandwich-sandwich-OOP.pdf"
RUNNING_TITLE = "Object-Oriented Computation of Sandwich Estimators"


def _page_text(text: str, pages: list[tuple[int, int]], page: int) -> str:
    starts = [offset for offset, _ in pages] + [len(text)]
    i = [number for _, number in pages].index(page)
    return text[starts[i] : starts[i + 1]]


def test_pdf_pages_headers_hyphens_and_sections_of_a_real_paper() -> None:
    extracted = read_pdf(OOP.read_bytes())
    text, layout = extracted.text, extracted.layout
    assert extracted.page_count == 16
    assert extracted.title == RUNNING_TITLE
    assert [page for _, page in layout.pages] == list(range(1, 17))
    # Running headers ("2 Object-Oriented ...", "Achim Zeileis 3") and page numbers are gone:
    # the title is on page 1, and once more in the references (page 15), nowhere else.
    at = [layout.page_at(m.start()) for m in re.finditer(re.escape(RUNNING_TITLE), text)]
    assert at == [1, 15]
    assert "Achim Zeileis 3" not in text and "Achim Zeileis 7" not in text
    # Page 2 of the PDF hyphenates "es-timator" at a line break: joined.
    page2 = _page_text(text, layout.pages, 2)
    assert "estimator" in page2 and "es-timator" not in page2 and "\ufffe" not in text
    # A sentence running over the page break from page 1 to page 2 is one sentence.
    sentence = "a wide variety of meat fillings for sandwiches is provided."
    start = text.index(sentence)
    assert (
        layout.page_at(start) == 2
        and layout.page_at(text.rindex("The most important", 0, start)) == 1
    )
    spans = [(s, e) for s, e in sentence_spans(text) if s <= start < e]
    assert text[spans[0][0] :].startswith("The most important of these is a method")
    # Sub- and superscripts do not break a sentence; headings nest by their numbers.
    assert "the degrees of freedom." in text
    assert [s for _, s in layout.sections if s.startswith("4.")] == [
        "4. Covariance matrix estimators",
        "4. Covariance matrix estimators > 4.1. The bread",
        "4. Covariance matrix estimators > 4.2. The meat",
        "4. Covariance matrix estimators > 4.3. The sandwich",
    ]
    assert "\n" not in text[spans[0][0] : spans[0][1]]


def test_pdf_printed_page_labels_reach_the_citation_location() -> None:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(OOP.read_bytes()))
    writer.set_page_label(0, 1, style="/r")  # i, ii
    writer.set_page_label(2, 15, style="/D", start=1)  # 1, 2, ... from the third page
    buffer = io.BytesIO()
    writer.write(buffer)
    extracted = read_pdf(buffer.getvalue())
    labels = extracted.layout.labels
    assert labels[1] == "i" and labels[2] == "ii" and labels[3] == "1" and labels[16] == "14"
    [node] = [
        n
        for n in SentenceChunker(
            max_tokens=200, count_tokens=lambda t: len(t.split())
        ).chunk_document(make_document("d", "t", extracted.text, "s"), extracted.layout)
        if "model.matrix() method" in n.get_content()
    ]
    start = extracted.text.index("As for 1, the model matrix X")
    where = location(node.metadata, start, start + 20)
    assert (where["page"], where["page_label"]) == (7, "5")


def test_pdf_tex_ligatures_without_unicode_map_are_spelled_out() -> None:
    extracted = read_pdf((DATA / "survival-tiedtimes.pdf").read_bytes())
    assert extracted.title == "Roundoff error and Tied Times"
    assert "Roundoff" in extracted.text and "Roundo " not in extracted.text
    assert not any(0xFB00 <= ord(ch) <= 0xFB06 for ch in extracted.text)


def test_pdf_glyphs_without_unicode_are_dropped_not_quoted() -> None:
    """PDFium gives a glyph it cannot map as a control character, C0 or C1 (a bullet of one
    TeX font in survival-concordance.pdf is U+0088): no quote may show one."""
    assert pdf_format.clean_line("\x88 Uno et al recommend n/G2\x02") == "Uno et al recommend n/G2"
    assert pdf_format.clean_line("Roundo\x1b error\x7f") == "Roundoff error"
    assert pdf_format.clean_line("ﬁt  the\tmodel") == "fit the model"


def test_pdf_table_of_contents_is_dropped_and_the_text_it_lists_kept() -> None:
    """glmnet-relax.pdf opens with "Contents" and six entries ("Introduction . . . . 1"): they
    repeat the headings and would match a question about any section, so they go; the
    headings themselves and the sections' text stay."""
    extracted = read_pdf((DATA / "glmnet-relax.pdf").read_bytes())
    text, layout = extracted.text, extracted.layout
    assert not re.search(r"(\. ){4,}", text)
    assert "Contents" not in text
    assert [s for _, s in layout.sections][:2] == ["Introduction", "Simple relaxed fitting"]
    start = text.index("In this vignette, we describe how the glmnet package")
    assert layout.page_at(start) == 1
    assert layout.section_at(start) == "Introduction"


def test_pdf_leader_dots_without_words_are_no_table_of_contents() -> None:
    """A printed sparse matrix row ("[6,] . . . . . 1") ends like an entry but names nothing."""
    lines = [
        pdf_format.Line(1, text, 0.0, 700.0 - 12 * i, 10.0, False)
        for i, text in enumerate(["[6,] . . . . . 1", "Priors . . . . . . 7", "Body text."])
    ]
    pdf_format._mark_contents(lines)
    assert [line.furniture for line in lines] == [False, True, False]


def test_html_keeps_code_drops_scripts_styles_images_and_the_table_of_contents() -> None:
    data = (DATA / "rstan-stanfit-objects.html").read_bytes()
    extracted = read_html(data)
    text = extracted.text
    assert extracted.title == "Accessing the contents of a stanfit object"
    assert "list_of_draws <- extract(fit)" in text  # a <pre> code block
    assert "base64" in data.decode() or "<script" in data.decode()
    assert "base64" not in text and "<script" not in text and "white-space" not in text
    sections = [s for _, s in extracted.layout.sections]
    assert sections[:2] == ["Posterior draws", "Posterior draws > extract()"]
    # The pandoc table of contents lists the headings too: they occur once, as headings.
    assert text.count("Sampler diagnostics") == 1
    start = text.index("list_of_draws <- extract(fit)")
    assert extracted.layout.section_at(start) == "Posterior draws > extract()"


def test_html_in_the_charset_it_declares() -> None:
    page = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
        "<title>Café notes</title></head><body><h2>Dessert</h2><p>Crème brûlée.</p></body></html>"
    )
    extracted = read_html(page.encode("latin-1"))
    assert extracted.title == "Café notes" and "Crème brûlée." in extracted.text


def _docx_bytes(title: str | None = "Field notes") -> bytes:
    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_heading("Methods", level=1)
    document.add_paragraph("We sampled forty ponds in the spring.")
    document.add_heading("Priors", level=2)
    document.add_paragraph("The prior on the slope is normal with scale two.")
    table = document.add_table(rows=2, cols=2)
    for (r, c), value in {(0, 0): "pond", (0, 1): "depth", (1, 0): "A7", (1, 1): "3.2 m"}.items():
        table.cell(r, c).text = value
    document.add_heading("Results", level=1)
    document.add_paragraph("Depth predicted the count.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_headings_become_sections_and_tables_text() -> None:
    extracted = read_docx(_docx_bytes())
    text, layout = extracted.text, extracted.layout
    assert extracted.title == "Field notes"
    assert layout.section_at(text.index("The prior on the slope")) == "Methods > Priors"
    assert layout.section_at(text.index("Depth predicted")) == "Results"
    assert "pond | depth\n\nA7 | 3.2 m" in text
    assert read_docx(_docx_bytes(title=None)).title == "Methods"  # no core title: 1st heading


def test_markdown_headings_become_sections_and_wrapped_lines_one_sentence() -> None:
    extracted = read_text(
        "# Lab book\n\nIntro line one\nand line two.\n\n## Setup\n\n- first item\n- second\n\n"
        "```\nx <- 1\ny <- 2\n```\n\n### Details\n\nFine print.\n"
    )
    assert extracted.title == "Lab book"
    assert "Intro line one and line two." in extracted.text
    assert "x <- 1\ny <- 2" in extracted.text
    layout = extracted.layout
    assert layout.section_at(extracted.text.index("Fine print")) == "Setup > Details"
    assert layout.section_at(extracted.text.index("first item")) == "Setup"


# --- bad files: each is skipped with a reason, and the good file beside it is still read ---


def _minimal_pdf(content: bytes) -> bytes:
    """A one-page PDF whose page draws ``content`` (no fonts: no text layer)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _encrypted_pdf() -> bytes:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(OOP.read_bytes()))
    writer.encrypt(user_password="secret", owner_password="owner")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _zip_bomb() -> bytes:
    """A valid zip declaring more than the limit: one entry of zeros, written in pieces."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as entry,
    ):
        block = bytes(2**20)
        for _ in range(MAX_UNZIPPED_BYTES // 2**20 + 8):
            entry.write(block)
    return buffer.getvalue()


BAD_FILES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "scanned": ("scan.pdf", lambda: _minimal_pdf(b"0 0 m 150 150 l S"), "no text layer"),
    "unmapped fonts": (
        "plsvgls.pdf",
        lambda: (DATA / "lme4-PLSvGLS.pdf").read_bytes(),
        "text layer is unreadable",
    ),
    "encrypted": ("locked.pdf", _encrypted_pdf, "encrypted PDF"),
    "truncated": ("cut.pdf", lambda: OOP.read_bytes()[: OOP.stat().st_size // 2], "truncated"),
    "corrupt": (
        "junk.pdf",
        lambda: b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n",
        "damaged",
    ),
    "docx not a zip": (
        "half.docx",
        lambda: _docx_bytes()[:2000],
        "not a valid DOCX",
    ),
    "zip bomb": ("bomb.docx", _zip_bomb, "zip bomb"),
    "extension lies": ("report.pdf", _docx_bytes, "extension says .pdf but the content is a zip"),
    "text as docx": ("notes.docx", lambda: b"just some text\n", "extension says .docx"),
    "empty": ("empty.pdf", lambda: b"", "empty file"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_skipped_with_a_reason_and_the_rest_is_read(case: str, tmp_path: Path) -> None:
    name, make, reason = BAD_FILES[case]
    (tmp_path / name).write_bytes(make())
    shutil.copy(DATA / "survival-tiedtimes.pdf", tmp_path / "good.pdf")
    started = time.perf_counter()
    result = read_folder(tmp_path)
    assert time.perf_counter() - started < 30  # bounded: nothing is inflated or looped over
    assert [d.doc_id for d in result.documents] == ["file:good.pdf"]
    skipped = dict(result.skipped)
    assert list(skipped) == [name]
    assert reason in skipped[name], skipped[name]
    assert "Traceback" not in skipped[name]


# --- time and memory limits of one PDF ---


def test_a_pdf_over_its_time_limit_is_skipped_and_the_rest_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page of a long PDF is made slow (0.5 s); the short PDF beside it is not."""
    original = pdf_format._page_lines

    def slow_page(pdf: Any, index: int, budget: Any) -> Any:
        if len(pdf) > 10:
            time.sleep(0.5)
        return original(pdf, index, budget)

    monkeypatch.setattr(pdf_format, "_page_lines", slow_page)
    shutil.copy(OOP, tmp_path / "slow.pdf")  # 16 pages: 8 s and more
    shutil.copy(DATA / "survival-tiedtimes.pdf", tmp_path / "good.pdf")
    started = time.perf_counter()
    result = read_folder(tmp_path, limits=Limits(pdf_seconds=1.0))
    assert time.perf_counter() - started < 6, "extraction stops at the limit, not at the end"
    assert [d.doc_id for d in result.documents] == ["file:good.pdf"]
    reason = dict(result.skipped)["slow.pdf"]
    assert "longer than the limit of 1 s" in reason and "CITEQA_PDF_TIME_LIMIT_S" in reason
    assert re.search(r"at page \d+ of 16", reason), reason


def test_the_time_limit_comes_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Embedder
) -> None:
    monkeypatch.setattr(pdf_format, "time", _Clock())  # each look at the clock: 1 s later
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(OOP, folder / "paper.pdf")
    (folder / "notes.md").write_text("# Notes\n\nA short note.\n")
    settings = Settings(data_dir=tmp_path / "store", pdf_time_limit_s=30)
    (summary,) = ingest_paths(settings, [folder], embedder=embedder)
    assert summary.documents == 1 and "limit of 30 s" in dict(summary.skipped)["paper.pdf"]


class _Clock:
    """A stand-in for the time module whose monotonic clock moves 1 s per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def test_a_pdf_with_too_much_text_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(OOP, tmp_path / "long.pdf")
    monkeypatch.setattr(pdf_format, "MAX_TEXT_CHARS", 5_000)
    result = read_folder(tmp_path)
    reason = dict(result.skipped)["long.pdf"]
    assert "more than 5,000 characters of text" in reason

"""PDF text layer with pypdfium2 (PDFium: Apache-2.0/BSD; chosen by measurement, see
docs/pdf-extraction.md): page of every character, paragraphs, headings, no page furniture.

PDFium gives each page's characters in reading order with generated line breaks, marks a word
hyphenated across a line break with U+0002 (and joins the two halves), and already expands
ligatures. On top of that this reader, per document:

* drops *page furniture*: lines among the two top-most or bottom-most of a page whose text,
  digits masked, recurs on many pages (running headers and footers), and bare page numbers
  there;
* drops the entries of a table of contents (a line that ends in dot leaders and a page
  number, "3.2 Priors . . . . . 7", and under a "Contents" heading every line up to the first
  that does not end in a page number) and that heading: the headings they
  repeat are not text of the page, and they would match a question about any section;
* rebuilds paragraphs from line geometry: a new paragraph where the vertical gap to the previous
  line is clearly larger than the line pitch, the font size changes, the text moves up (a
  footnote, a new column) or a heading starts; a paragraph that runs over a page break goes on
  (the page map records where the new page starts, mid-paragraph);
* finds headings by font size (larger than the body text, and bold unless much larger); when
  the document numbers its headings ("3.2 Priors") only numbered ones (and unnumbered ones of a
  top-level size, like "References") count, and the numbering gives the level;
* takes the title from the metadata when it is meaningful, else the largest text of page 1.

Time and memory are bounded: extraction stops, and the file is skipped with the reason, once
it has run longer than its time limit (checked between lines, so even one huge page stops) or
holds more than :data:`~ingest.formats.sniff.MAX_TEXT_CHARS` characters.
"""

from __future__ import annotations

import ctypes
import math
import re
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from citeqa.errors import CorpusFormatError
from ingest.formats import PDF_SECONDS, Extracted, TextBuilder
from ingest.formats.sniff import MAX_TEXT_CHARS

HYPHEN = "\x02"  # PDFium's mark of a hyphen at a line break (the line break itself is gone)
FURNITURE_LINES = 2  # lines at the top and at the bottom of a page that may be furniture
FURNITURE_SHARE = 0.2  # ... when their masked text is on at least this share of pages (>= 3)
PARAGRAPH_GAP = 1.45  # baseline gap, in font sizes, above which a new paragraph starts
_BOLD = re.compile(r"bold|demi|heavy|black|BX|CMB", re.IGNORECASE)
_NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+\S")
_BARE_NUMBER = re.compile(r"^(?:page\s*)?[#ivxlc]+(?:\s*(?:/|of)\s*#)?$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?:;]['\")\]]*$")
_MEANINGLESS_TITLE = re.compile(r"^(untitled|microsoft word|.*\.(dvi|tex|pdf|docx?))", re.I)
# TeX fonts without a Unicode map give their ligature glyphs' codes: T1 (Cork) 0x1B-0x1F and
# OT1 0x0B-0x0F (but 0x0D, which PDFium cannot tell from a line break).
_TEX_LIGATURES = {
    **dict(zip("\x1b\x1c\x1d\x1e\x1f", ["ff", "fi", "fl", "ffi", "ffl"], strict=True)),
    **dict(zip("\x0b\x0c\x0e\x0f", ["ff", "fi", "ffi", "ffl"], strict=True)),
}
_LIGATURE_CODE = re.compile(
    r"(?<=[A-Za-z])[\x0b\x0c\x0e\x0f\x1b-\x1f]|[\x0b\x0c\x0e\x0f\x1b-\x1f](?=[a-z])"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TOC_HEADING = re.compile(r"^(table of )?contents$", re.IGNORECASE)
# "3.2 Priors . . . . . 7": words, dot leaders, a page number
_TOC_ENTRY = re.compile(r"[A-Za-z]{2}.*?(?:\.\s?){4,}\s*\d{1,4}$")
_ENDS_IN_PAGE = re.compile(r"\D\s\d{1,4}$")  # "2 Survival curves 9"
_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one document at a time per process


@dataclass
class Line:
    page: int  # 1-based
    text: str
    x: float
    y: float  # baseline, from the bottom of the page
    size: float
    bold: bool  # bold font, or a font without a name (unknown)
    hyphen_end: bool = False
    rows: int = 1  # physical lines: PDFium joins the halves of a hyphenated word into one
    furniture: bool = False
    heading: int = 0  # level, 0 for body text
    title: bool = False


class _Budget:
    """The time and characters one PDF's extraction may still spend."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.chars = MAX_TEXT_CHARS

    def spend(self, chars: int, page: int, pages: int) -> None:
        self.chars -= chars
        if self.chars < 0:
            raise CorpusFormatError(
                f"more than {MAX_TEXT_CHARS:,} characters of text (at page {page} of "
                f"{pages}); not read"
            )
        if time.monotonic() > self.deadline:
            raise CorpusFormatError(
                f"reading its text took longer than the limit of {self.seconds:g} s (at page "
                f"{page} of {pages}); skipped (CITEQA_PDF_TIME_LIMIT_S sets the limit)"
            )


def read_pdf(data: bytes, seconds: float = PDF_SECONDS) -> Extracted:
    """The text of a PDF; CorpusFormatError for encrypted, damaged or image-only files, and
    for one whose extraction takes longer than ``seconds`` (waiting for another PDF's
    extraction to finish not counted) or holds too much text."""
    if b"%%EOF" not in data[-2048:]:
        raise CorpusFormatError("truncated or damaged PDF (no end-of-file marker)")
    with _PDFIUM:
        pages, meta_title, labels = _read_lines(data, _Budget(seconds))
    lines = [line for page in pages for line in page]
    _check_text_layer("".join(line.text for line in lines))
    _mark_furniture(pages)
    body = [line for line in lines if not line.furniture]
    title = _mark_title(body)
    _mark_headings(body)  # a table of contents still ends the title page's front matter
    _mark_contents(body)
    builder = _assemble([line for line in body if not line.furniture])
    builder.layout.labels = labels
    clean_meta = " ".join(meta_title.split())
    if len(clean_meta) >= 4 and not _MEANINGLESS_TITLE.match(clean_meta):
        title = clean_meta
    return Extracted(title, builder.text(), builder.layout, page_count=len(pages))


def _read_lines(data: bytes, budget: _Budget) -> tuple[list[list[Line]], str, dict[int, str]]:
    """The lines of each page, the metadata title, and the printed page labels the PDF
    defines where they differ from the page numbers."""
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise CorpusFormatError("encrypted PDF (needs a password); not supported") from exc
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise CorpusFormatError("PDF with an unsupported security handler") from exc
        raise CorpusFormatError(f"damaged PDF that cannot be opened ({exc})") from exc
    try:
        pages = [_page_lines(pdf, i, budget) for i in range(len(pdf))]
        labels = {i + 1: pdf.get_page_label(i) for i in range(len(pdf))}
        labels = {page: label for page, label in labels.items() if label not in ("", str(page))}
        return pages, str(pdf.get_metadata_value("Title") or ""), labels
    finally:
        pdf.close()


def _check_text_layer(text: str) -> None:
    if sum(ch.isalnum() for ch in text) < 20:
        raise CorpusFormatError("no text layer; OCR is not supported")
    # Fonts without a Unicode map read as symbols or private-use characters.
    unmapped = sum(unicodedata.category(ch) in ("So", "Co") for ch in text)
    if unmapped > 0.3 * len(text.replace(" ", "")):
        raise CorpusFormatError(
            "the text layer is unreadable (its fonts map no characters to Unicode); "
            "OCR is not supported"
        )


def _page_lines(pdf: pdfium.PdfDocument, index: int, budget: _Budget) -> list[Line]:
    page = pdf[index]
    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        budget.spend(count, index + 1, len(pdf))
        chars = "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage, i)) for i in range(count))
        lines = []
        for match in re.finditer(r"[^\r\n]+", chars):
            budget.spend(0, index + 1, len(pdf))
            line = _line(textpage, index + 1, match.group(), match.start())
            if line:
                lines.append(line)
        return lines
    finally:
        textpage.close()
        page.close()


def clean_line(raw: str) -> str:
    """A line's text as PDFium gives it, made text: TeX ligature codes spelled out; hyphen
    marks and glyphs PDFium could not map to Unicode dropped (they come as control
    characters, C0 and C1: a bullet of one TeX font is U+0088); ligatures and other
    compatibility forms normalised (NFKC); runs of spaces made one."""
    text = _LIGATURE_CODE.sub(lambda m: _TEX_LIGATURES[m.group()], raw)
    text = "".join(ch for ch in text if ch == "\t" or not _CONTROL.match(ch))
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _line(textpage: pdfium.PdfTextPage, page: int, raw: str, start: int) -> Line | None:
    first = next((i for i, ch in enumerate(raw) if ch.isalnum()), None)
    if first is None:
        return None
    hyphen_end = raw.rstrip().endswith(HYPHEN)
    text = clean_line(raw)
    index = start + first
    x, y = ctypes.c_double(), ctypes.c_double()
    pdfium_c.FPDFText_GetCharOrigin(textpage, index, x, y)
    size = float(pdfium_c.FPDFText_GetFontSize(textpage, index))
    name = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()
    pdfium_c.FPDFText_GetFontInfo(textpage, index, name, 128, flags)
    font = name.value.decode("latin-1")
    bold = not font or bool(_BOLD.search(font))
    rows = 1 + raw.rstrip().rstrip(HYPHEN).count(HYPHEN)
    return Line(page, text, x.value, y.value, round(size, 1), bold, hyphen_end, rows)


def _furniture_key(text: str) -> str:
    return re.sub(r"\d+", "#", text.lower())


def _mark_furniture(pages: list[list[Line]]) -> None:
    """Running headers/footers: edge lines whose masked text recurs on many pages."""
    edges = []
    for lines in pages:
        by_height = sorted(lines, key=lambda line: -line.y)
        edge = by_height[:FURNITURE_LINES] + by_height[-FURNITURE_LINES:]
        edges.append(list({id(line): line for line in edge}.values()))
    counts = Counter(key for edge in edges for key in {_furniture_key(ln.text) for ln in edge})
    needed = max(3, math.ceil(FURNITURE_SHARE * len(pages)))
    for edge in edges:
        for line in edge:
            key = _furniture_key(line.text)
            if counts[key] >= needed or _BARE_NUMBER.match(key.replace(" ", "")):
                line.furniture = True


def _mark_contents(lines: list[Line]) -> None:
    """The entries of a table of contents (dot leaders and a page number anywhere; under a
    "Contents" heading, the lines in the type of its first entry up to the first that neither
    ends in a page number nor wraps onto one that does), and that heading when entries follow
    it."""
    heading: Line | None = None
    size = 0.0  # of the first entry under the heading
    for i, line in enumerate(lines):
        entry = _TOC_ENTRY.search(line.text)
        if (
            heading is not None
            and (not size or abs(line.size - size) <= 1)
            and any(_lists_a_page(n.text) for n in lines[i : i + 2])
        ):
            heading.furniture = line.furniture = True
            size = size or line.size
            continue
        heading = line if _TOC_HEADING.match(line.text) else None
        size = 0.0
        if entry:
            line.furniture = True


def _lists_a_page(text: str) -> bool:
    return bool(_TOC_ENTRY.search(text) or _ENDS_IN_PAGE.search(text))


def _body_size(lines: list[Line]) -> float:
    sizes: Counter[float] = Counter()
    for line in lines:
        sizes[line.size] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _mark_title(lines: list[Line]) -> str:
    """The largest text of page 1 (consecutive lines of that size), when larger than body."""
    if not lines:
        return ""
    first_page = [line for line in lines if line.page == lines[0].page]
    largest = max(line.size for line in first_page)
    if largest < _body_size(lines) + 1:
        return ""
    parts = []
    for line in first_page:
        if line.size == largest:
            line.title = True
            parts.append(line.text)
        elif parts:
            break
    return " ".join(parts)


def _mark_headings(lines: list[Line]) -> None:
    body = _body_size(lines)
    front = _front_matter(lines, body)
    candidates = [
        line
        for line in lines
        if not line.title
        and id(line) not in front
        and line.size >= body + 1
        and (line.bold or line.size >= body * 1.35)
        and len(line.text) <= 120
        and sum(ch.isalpha() for ch in line.text) >= 3
    ]
    numbered = [(line, _NUMBERED.match(line.text)) for line in candidates]
    if sum(1 for _, match in numbered if match) >= 2:
        top = {line.size for line, m in numbered if m and "." not in m.group(1)}
        for line, match in numbered:
            if match:
                line.heading = match.group(1).count(".") + 1
            elif line.size in top:
                line.heading = 1
    else:
        sizes = sorted({c.size for c in candidates}, reverse=True)
        for line in candidates:
            line.heading = sizes.index(line.size) + 1
    deepest = max((line.heading for line in candidates), default=0)
    for line in candidates:  # a table of contents is no parent of the sections after it
        if _TOC_HEADING.match(line.text):
            line.heading = deepest + 1


def _front_matter(lines: list[Line], body: float) -> set[int]:
    """Lines of the title page after the title and before the text starts (a numbered
    heading, or a long line of body-size text): authors, affiliations, dates, set in larger
    type but no headings."""
    found: set[int] = set()
    titled = False
    for line in lines:
        if line.page != lines[0].page:
            break
        if line.title:
            titled = True
        elif titled:
            starts = _NUMBERED.match(line.text) or (line.size <= body and len(line.text) >= 60)
            if starts:
                break
            found.add(id(line))
    return found


def _assemble(lines: list[Line]) -> TextBuilder:
    builder = TextBuilder()
    previous: Line | None = None
    anchor: Line | None = None  # the first piece of the visual line ``previous`` is on
    heading: list[Line] = []
    for line in lines:
        if heading and not (line.heading == heading[-1].heading and _same_block(heading[-1], line)):
            builder.heading(heading[0].heading, " ".join(h.text for h in heading), heading[0].page)
            heading = []
        if line.heading:
            heading.append(line)
        elif previous is not None and anchor is not None and _same_visual_line(previous, line):
            builder.continue_paragraph(line.text, line.page)  # after a sub- or superscript
            previous = line
            continue
        elif previous is None or previous.heading or not _continues(anchor or previous, line):
            builder.paragraph(line.text, line.page)
        else:
            joiner = "" if previous.hyphen_end else " "
            builder.continue_paragraph(line.text, line.page, joiner)
        previous = anchor = line
    if heading:
        builder.heading(heading[0].heading, " ".join(h.text for h in heading), heading[0].page)
    return builder


def _same_visual_line(previous: Line, line: Line) -> bool:
    """PDFium breaks a line at each sub- or superscript: the pieces go on rightwards with a
    baseline within a font size of each other."""
    return (
        line.page == previous.page
        and not previous.heading
        and line.x > previous.x
        and abs(line.y - previous.y) < 0.8 * max(line.size, previous.size)
    )


def _same_block(previous: Line, line: Line) -> bool:
    """``line`` follows ``previous`` closely on the same page in the same font size."""
    gap = previous.y - line.y
    return (
        line.page == previous.page
        and abs(line.size - previous.size) <= 1
        and 0 < gap <= PARAGRAPH_GAP * max(line.size, previous.size) * previous.rows
    )


def _continues(previous: Line, line: Line) -> bool:
    """Whether ``line`` goes on with the paragraph whose last visual line starts with
    ``previous``."""
    if previous.title or line.title:
        return previous.title and line.title
    if line.page != previous.page:  # a paragraph running over the page break
        return previous.hyphen_end or (
            not _SENTENCE_END.search(previous.text) and line.text[:1].islower()
        )
    return _same_block(previous, line)

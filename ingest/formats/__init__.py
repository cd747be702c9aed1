"""Readers of one file format each: bytes in, :class:`Extracted` text with its layout out.

Every reader raises :class:`~citeqa.errors.CorpusFormatError` with a message a user
understands when the file cannot be read; the folder reader skips that file and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citeqa.layout import Layout

PARAGRAPH = "\n\n"
# Bump when a reader's output for the same bytes changes (text, title, layout): a file the
# store holds is re-read only when its digest, which includes this, changes.
READER_VERSION = 3  # 2: PDF tables of contents dropped; 3: C1 control characters dropped
FILE_DIGEST = "file_digest"  # document and chunk metadata: see ingest.readers.file_digest
PDF_SECONDS = 120.0  # default time limit of one PDF's extraction


@dataclass(frozen=True)
class Limits:
    """Limits of one file's extraction (the size limits are fixed: ingest.formats.sniff)."""

    pdf_seconds: float = PDF_SECONDS


@dataclass
class Extracted:
    """The text of one document, its title (may be empty: the caller falls back to the file
    name), its layout, and how many pages it has (0 for formats without pages)."""

    title: str
    text: str
    layout: Layout = field(default_factory=Layout)
    page_count: int = 0


class TextBuilder:
    """Builds a document's text paragraph by paragraph, recording page and section starts.

    Paragraphs are separated by a blank line; a paragraph never holds a line break, so a
    sentence splitter that treats line breaks as boundaries never cuts a sentence in two.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.layout = Layout()
        self._trail: list[tuple[int, str]] = []  # (level, heading) of the current section
        self._page: int | None = None

    def paragraph(self, text: str, page: int | None = None) -> None:
        text = " ".join(text.split())
        if text:
            self._append(PARAGRAPH if self.parts else "", text, page)

    def continue_paragraph(self, text: str, page: int | None = None, joiner: str = " ") -> None:
        """Appends to the last paragraph (a line of it, or its continuation on a new page)."""
        text = " ".join(text.split())
        if text:
            self._append(joiner if self.parts else "", text, page)

    def block(self, text: str, page: int | None = None) -> None:
        """Preformatted text (code): its own paragraph, its line breaks kept."""
        lines = [line.rstrip() for line in text.strip("\n").split("\n")]
        body = "\n".join(line for line in lines if line.strip())
        if body.strip():
            self._append(PARAGRAPH if self.parts else "", body, page)

    def heading(self, level: int, text: str, page: int | None = None) -> None:
        """A heading: its own paragraph, and the start of a section nested under the
        headings of lower level before it."""
        text = " ".join(text.split())
        if not text:
            return
        self._trail = [(lvl, h) for lvl, h in self._trail if lvl < level] + [(level, text)]
        self.paragraph(text, page)
        trail = " > ".join(h for _, h in self._trail)
        start = self.length - len(text)
        if self.layout.sections and self.layout.sections[-1][0] == start:
            self.layout.sections[-1] = (start, trail)
        else:
            self.layout.sections.append((start, trail))

    def _append(self, joiner: str, text: str, page: int | None) -> None:
        self.parts.append(joiner)
        self.length += len(joiner)
        if page is not None and page != self._page:
            self.layout.pages.append((self.length, page))
            self._page = page
        self.parts.append(text)
        self.length += len(text)

    def text(self) -> str:
        return "".join(self.parts)

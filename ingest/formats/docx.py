"""Word documents (.docx) with python-docx: paragraphs, headings as sections, tables as text.

The archive is checked first (:func:`ingest.formats.sniff.check_zip`): a file that is no zip,
or that would unpack to more than the limit (a zip bomb), is refused before anything is
inflated. Headings are the paragraphs in the "Heading N" styles (and "Title", which gives
the title when the core properties have none); each table row is a line of its cells.
"""

from __future__ import annotations

import io
import re

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from citeqa.errors import CorpusFormatError
from ingest.formats import Extracted, TextBuilder
from ingest.formats.sniff import check_zip

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def read_docx(data: bytes) -> Extracted:
    names = check_zip(data, "DOCX")
    if "word/document.xml" not in names:
        raise CorpusFormatError("not a Word document (the archive has no word/document.xml)")
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors...
        raise CorpusFormatError(f"damaged Word document ({type(exc).__name__})") from exc
    builder = TextBuilder()
    title = " ".join((document.core_properties.title or "").split())
    first_heading = ""
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            _table(builder, block)
            continue
        text, level = _paragraph(block)
        if level is None:
            builder.paragraph(text)
        elif level == 0:  # the "Title" style
            title = title or " ".join(text.split())
            builder.paragraph(text)
        else:
            first_heading = first_heading or " ".join(text.split())
            builder.heading(level, text)
    return Extracted(title or first_heading, builder.text(), builder.layout)


def _paragraph(paragraph: Paragraph) -> tuple[str, int | None]:
    """The text, and the heading level: None for body text, 0 for the Title style."""
    style = paragraph.style.name if paragraph.style is not None else ""
    match = _HEADING_STYLE.match(style or "")
    if match:
        return paragraph.text, int(match.group(1))
    return paragraph.text, 0 if style == "Title" else None


def _table(builder: TextBuilder, table: Table) -> None:
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):  # merged cells repeat their text
                cells.append(text)
        builder.paragraph(" | ".join(cells))

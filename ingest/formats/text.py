"""Plain text and Markdown: paragraphs (blank-line separated), ATX headings as sections.

The lines of a paragraph are joined (a hard-wrapped sentence stays one sentence); list items
start paragraphs of their own; fenced code keeps its line breaks. The first heading, when the
file starts with one, is the title (and no section).
"""

from __future__ import annotations

import re

from ingest.formats import Extracted, TextBuilder

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_FENCE = re.compile(r"^\s*(```|~~~)")


def read_text(text: str) -> Extracted:
    builder = TextBuilder()
    title = ""
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    match = _HEADING.match(first)
    if match:
        title = match.group(2)
        lines = lines[lines.index(first) + 1 :]
    paragraph: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if paragraph:
            builder.paragraph(" ".join(paragraph))
            paragraph.clear()

    for line in lines:
        if code is not None:
            if _FENCE.match(line):
                builder.block("\n".join(code))
                code = None
            else:
                code.append(line)
            continue
        heading = _HEADING.match(line)
        if _FENCE.match(line):
            flush()
            code = []
        elif heading:
            flush()
            builder.heading(len(heading.group(1)), heading.group(2))
        elif not line.strip() or _LIST_ITEM.match(line):
            flush()
            if line.strip():
                paragraph.append(line)
        else:
            paragraph.append(line)
    flush()
    if code:
        builder.block("\n".join(code))
    return Extracted(title, builder.text(), builder.layout)

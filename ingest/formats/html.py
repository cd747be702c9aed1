"""HTML main content with selectolax (Lexbor): headings as sections, code kept.

Scripts, styles, navigation, headers and footers of the site, forms and images (base64 ones
included) go; the main content is ``<main>``, ``<article>`` or ``[role=main]`` when the page
marks one, else ``<body>``. ``<pre>`` blocks keep their line breaks and inline ``<code>`` its
text: rendered R Markdown vignettes carry much of their content in code. A document header's
title, author and date lines (``class="title"`` and so on, as pandoc writes them) are text, not
sections. Measured on the r-vignettes HTML: docs/pdf-extraction.md.
"""

from __future__ import annotations

import codecs
import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ingest.formats import Extracted, TextBuilder

_DROP = (
    "script, style, noscript, template, nav, header, footer, aside, form, button, iframe, "
    "#TOC, #toc, .toc, [role=navigation], "
    "svg, img, picture, video, audio, canvas, object, embed"
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "table",
    "thead", "tbody", "tfoot", "tr", "td", "th", "blockquote", "figure", "figcaption",
    "details", "summary", "hr", "br", "body", "center", "caption",
}  # fmt: skip
_HEADER_CLASSES = {"title", "subtitle", "author", "date"}
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def read_html(data: bytes) -> Extracted:
    tree = LexborHTMLParser(decode(data))
    for node in tree.css(_DROP):
        node.decompose()
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node else ""
    root = tree.css_first("main, article, [role=main]") or tree.body
    builder = TextBuilder()
    if root is not None:
        _Walker(builder, title).walk(root)
    if not title:
        first = root.css_first("h1") if root is not None else None
        title = " ".join(first.text().split()) if first else ""
    return Extracted(title, builder.text(), builder.layout)


def decode(data: bytes) -> str:
    """The page's text: by its byte-order mark, else its ``<meta charset>``, else UTF-8
    (Lexbor, given bytes, assumes UTF-8 whatever the page declares)."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    match = _CHARSET.search(data[:4096])
    encoding = match.group(1).decode("ascii") if match else "utf-8"
    try:
        return data.decode(encoding, errors="replace")
    except LookupError:  # an encoding Python does not know
        return data.decode("utf-8", errors="replace")


class _Walker:
    def __init__(self, builder: TextBuilder, title: str) -> None:
        self.builder = builder
        self.title = title
        self.inline: list[str] = []

    def walk(self, node: LexborNode) -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                self.inline.append(child.text_content or "")
            elif tag in _HEADINGS:
                self.flush()
                self._heading(child, _HEADINGS[tag])
            elif tag == "pre":
                self.flush()
                self.builder.block(child.text(deep=True))
            elif tag in _BLOCKS:
                self.flush()
                self.walk(child)
                self.flush()
            elif tag not in ("-comment", "head"):
                self.walk(child)  # inline: span, a, code, em, ... (may hold a block)
        # inline text left over is flushed by the enclosing block

    def flush(self) -> None:
        if self.inline:
            self.builder.paragraph("".join(self.inline))
            self.inline = []

    def _heading(self, node: LexborNode, level: int) -> None:
        text = " ".join(node.text(deep=True).split())
        classes = set((node.attributes.get("class") or "").split())
        if classes & _HEADER_CLASSES or (level == 1 and text == self.title):
            self.builder.paragraph(text)
        else:
            self.builder.heading(level, text)

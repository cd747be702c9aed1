"""What a file really is, from its first bytes, and the limits a file must stay within.

The extension says what the user expects; the bytes say what the file is. A mismatch (a
".pdf" that is a zip, a ".docx" that is text) is refused with both named, rather than fed
to a parser that would fail obscurely or, worse, read garbage.
"""

from __future__ import annotations

import io
import zipfile

from citeqa.errors import CorpusFormatError

MAX_FILE_BYTES = 256 * 2**20  # one file read whole into memory
MAX_UNZIPPED_BYTES = 256 * 2**20  # what an archive may declare it unpacks to, all entries
MAX_ZIP_ENTRIES = 10_000
MAX_TEXT_CHARS = 50_000_000  # characters of text one PDF may give (~25,000 pages)

KINDS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".md": "text",
    ".markdown": "text",
    ".jsonl": "jsonl",
}
_NAMES = {"pdf": "a PDF", "zip": "a zip archive", "binary": "binary data", "text": "text"}


def sniff(head: bytes) -> str:
    """ "pdf", "zip", "binary" or "text", from the first bytes of a file."""
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if b"\x00" in head:
        return "binary"
    return "text"


def check_kind(suffix: str, head: bytes) -> str:
    """The reader for a file with this extension and these first bytes; CorpusFormatError
    when the content is not what the extension says."""
    expected = KINDS[suffix]
    found = sniff(head)
    wanted = {"pdf": "pdf", "docx": "zip"}.get(expected, "text")
    if found != wanted:
        if expected == "text" and found == "binary":
            raise CorpusFormatError("binary file")
        raise CorpusFormatError(
            f"the extension says {suffix} but the content is {_NAMES[found]}; not read"
        )
    return expected


def check_zip(data: bytes, what: str) -> set[str]:
    """The member names of a zip archive, after checking what it declares it unpacks to:
    zipfile never inflates an entry past its declared size (the CRC check fails), so checking
    the declared sizes bounds memory and time."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise CorpusFormatError(f"not a valid {what} (not a zip archive: {exc})") from exc
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise CorpusFormatError(f"{what} archive with {len(infos)} entries; refused")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_UNZIPPED_BYTES:
        raise CorpusFormatError(
            f"{what} would unpack to {declared / 2**20:.0f} MB (limit "
            f"{MAX_UNZIPPED_BYTES / 2**20:.0f} MB): refused as a possible zip bomb"
        )
    return {info.filename for info in infos}

"""Plain text out of documents: text, Markdown, HTML and DOCX with the standard library, PDF with pypdf if installed."""

from __future__ import annotations

import io
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from ..errors import InvalidRequestError, MissingDependencyError, UnsupportedMediaError

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header",
           "footer", "blockquote", "pre", "table", "ul", "ol", "title"}


def document_format(media_type: str, name: str | None = None) -> str:
    """text, markdown, html, pdf or docx, from the media type or else the file name."""
    suffix = Path(name).suffix.lower() if name else ""
    if media_type == "application/pdf" or suffix == ".pdf":
        return "pdf"
    if media_type == DOCX or suffix == ".docx":
        return "docx"
    if media_type in ("text/html", "application/xhtml+xml") or suffix in (".html", ".htm", ".xhtml"):
        return "html"
    if media_type == "text/markdown" or suffix in (".md", ".markdown"):
        return "markdown"
    if media_type.startswith("text/") or suffix in (".txt", ".text", ".rst", ".csv"):
        return "text"
    raise UnsupportedMediaError(
        f"cannot read text from {name or 'a document'} ({media_type}): use text, Markdown, HTML, PDF or DOCX",
        param="document",
    )


def extract_text(data: bytes, media_type: str, name: str | None = None) -> tuple[str, str]:
    """(text, format) of a document."""
    fmt = document_format(media_type, name)
    if fmt in ("text", "markdown"):
        text = _decode(data)
    elif fmt == "html":
        text = html_text(_decode(data))
    elif fmt == "docx":
        text = docx_text(data)
    else:
        text = pdf_text(data)
    return re.sub(r"\n{3,}", "\n\n", text).strip(), fmt


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style", "head", "noscript", "template"):
            self._skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "noscript", "template"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def docx_text(data: bytes) -> str:
    """The paragraphs of word/document.xml, one per line."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            root = ElementTree.fromstring(z.read("word/document.xml"))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise InvalidRequestError(f"not a readable DOCX file: {exc}", param="document") from None
    paragraphs = []
    for p in root.iter(f"{_W}p"):
        pieces = [t.text or "" if t.tag == f"{_W}t" else "\t" for t in p.iter() if t.tag in (f"{_W}t", f"{_W}tab")]
        paragraphs.append("".join(pieces))
    return "\n".join(paragraphs)


def pdf_text(data: bytes) -> str:
    try:
        import pypdf
    except ImportError:
        raise MissingDependencyError(
            "reading PDF needs the 'pypdf' package, which is not installed: pip install pypdf", param="document"
        ) from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except pypdf.errors.PdfReadError as exc:
        raise InvalidRequestError(f"not a readable PDF file: {exc}", param="document") from None

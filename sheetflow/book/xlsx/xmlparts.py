"""XML parts of the package: the namespaces and relationship/content types the writer knows, one lxml parser
setup, and :class:`XmlPart`, a parsed part that writes back its own XML declaration byte for byte.

Namespaces are the Transitional ones of ECMA-376 Part 1 (SpreadsheetML main, officeDocument relationships)
and Part 2 (OPC package relationships, content types); Strict files (``purl.oclc.org/ooxml``) are recognised
so they can be refused by name. The parser keeps everything (comments, processing instructions, CDATA,
whitespace, unknown extension elements, ``mc:Ignorable`` prefixes) because a part we rewrite must lose
nothing Excel or an add-in put there; it resolves no entities and fetches nothing from the network (XXE).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from lxml import etree

from sheetflow.book.patch import PatchError


class RawRows(Protocol):
    """What a part needs of its rows kept as bytes (:class:`sheetflow.book.xlsx.rawrows.RawRows`)."""

    data: bytes


NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
NS_CT = "http://schemas.openxmlformats.org/package/2006/content-types"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
STRICT_MARK = "purl.oclc.org/ooxml"

REL_OFFICE_DOCUMENT = NS_R + "/officeDocument"
REL_WORKSHEET = NS_R + "/worksheet"
REL_STYLES = NS_R + "/styles"
REL_CALC_CHAIN = NS_R + "/calcChain"
REL_TABLE = NS_R + "/table"

CT_WORKSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
CT_STYLES = "application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"


STANDARD_HEAD = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
PARSER_OPTIONS = dict(
    remove_blank_text=False,
    remove_comments=False,
    remove_pis=False,
    strip_cdata=False,
    resolve_entities=False,
    huge_tree=True,
    no_network=True,
    ns_clean=False,
)
PARSER = etree.XMLParser(**PARSER_OPTIONS)  # for the main thread; lxml parsers must not be shared by threads
HEAD_RE = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*\?>\s*")


def qn(tag: str) -> str:
    """Clark name of a SpreadsheetML main-namespace element."""
    return f"{{{NS_MAIN}}}{tag}"


def true(value: str | None) -> bool:
    """OOXML booleans are "1"/"true" (and "on" in old files)."""
    return (value or "").strip().lower() in ("1", "true", "on")


@dataclass
class XmlPart:
    """A parsed part plus the exact bytes before its root element (XML declaration and line break).

    ``splices`` are (marker, content) pairs: ``marker`` is the serialised form of a processing instruction that
    stands in the tree for ``content``, XML text generated directly (the rows appended to a sheet), which
    replaces it on output. Building 100,000s of rows as text is many times faster than as lxml elements.
    ``rows``: for a big worksheet, the rows as bytes (the tree then holds everything but the rows; see RawRows).
    """

    tree: etree._ElementTree
    head: bytes
    splices: list[tuple[bytes, bytes | Callable[[], list[bytes | memoryview]]]] = field(default_factory=list)
    rows: RawRows | None = None

    @property
    def root(self) -> etree._Element:
        return self.tree.getroot()

    @classmethod
    def parse(cls, data: bytes, parser: etree.XMLParser = PARSER) -> XmlPart:
        m = HEAD_RE.match(data)
        head = m.group(0) if m else b""
        if head and re.search(rb"encoding=[\"'](?!utf-8)", head, re.I):
            head = STANDARD_HEAD  # we always serialise UTF-8, so the declaration must say so
        root = etree.fromstring(data, parser)
        return cls(root.getroottree(), head)

    @classmethod
    def new(cls, root: etree._Element) -> XmlPart:
        return cls(root.getroottree(), STANDARD_HEAD)

    def splice(self, parent: etree._Element, content: bytes | Callable[[], list[bytes | memoryview]]) -> None:
        """Output ``content`` (serialised XML, or a function that makes it in pieces) as the last children of
        ``parent``."""
        marker = etree.ProcessingInstruction(f"sheetflow-splice-{uuid.uuid4().hex}")
        parent.append(marker)
        self.splices.append((etree.tostring(marker, with_tail=False), content))

    def parse_fully(self) -> None:
        """Replace the tree without rows (see RawRows) by the full tree of the part."""
        full = XmlPart.parse(self.rows.data)  # type: ignore[union-attr]  # only called when rows were split off
        self.tree, self.head, self.splices, self.rows = full.tree, full.head, [], None

    def to_bytes(self) -> bytes:
        data = etree.tostring(self.tree, encoding="UTF-8", xml_declaration=False)
        pieces: list[bytes | memoryview] = [self.head]
        for marker, content in sorted(self.splices, key=lambda splice: data.find(splice[0])):
            before, found, data = data.partition(marker)
            if not found:
                raise PatchError("internal error: generated rows lost their place in the sheet")
            pieces.append(before)
            pieces += content() if callable(content) else (content,)
        pieces.append(data)
        return b"".join(pieces)  # one copy of what can be a 100 MB part

"""Write values into a user's .xlsx/.xlsm by patching the zip package instead of re-saving the workbook.

Why not openpyxl load + save: it silently drops form buttons, ActiveX controls, embedded objects, x14 data
validations and conditional formats, threaded comments and shapes (31 of the 67 real workbooks in the test
corpus lose something). sheetflow only puts values into a few sheets, so this module rewrites exactly

* the worksheet parts of the sheets it writes and the parts of the sheets it adds,
* the minimum of bookkeeping: ``workbook.xml``, its rels, ``[Content_Types].xml``, ``styles.xml`` (date and bold
  formats), ``calcChain.xml`` (entries of overwritten formulas) and table parts whose range grows,

and copies every other zip entry unchanged: same compressed bytes, same compression type, same order.
lxml keeps namespace prefixes, ``mc:Ignorable`` and unknown extension elements exactly as they were; each
rewritten part keeps its original XML declaration.

Things deliberately left alone: ``docProps/app.xml`` (its sheet list is not updated for new sheets; Excel does
not check it), ``sharedStrings.xml`` (strings are written inline, so it never needs to change).

Speed (a write can be a million cells into 100,000-row sheets): new cells are generated as XML text, byte for
byte what lxml would write for the elements; the rows of big existing sheets are changed as bytes instead of
being parsed into a tree (_RawRows, with the tree as the fallback and the reference); parsing, serialising and
compressing run in background threads (C code without the GIL) while Python code writes other sheets.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import functools
import itertools
import math
import numbers
import operator
import posixpath
import re
import struct
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from sheetflow.problems import SheetflowError

CellValue = str | int | float | bool | dt.datetime | dt.date | None

__all__ = [
    "CellValue",
    "NewSheet",
    "PatchError",
    "SheetPatch",
    "SheetLayout",
    "Validation",
    "date1904",
    "patch_workbook",
    "sheet_layouts",
]


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Validation:
    """A dropdown (list data validation) on a new sheet."""

    sqref: str  # "C2:C5000" (space-separated ranges allowed)
    options: list[str] | None = None  # literal dropdown list -> formula1 '"a,b,c"'
    source: str | None = None  # or a range like "Stages!$A$2:$A$200" (formula1 without '=')
    allow_other: bool = False  # True -> showErrorMessage="0" (the dropdown is only a suggestion)


@dataclass
class NewSheet:
    """How to create a sheet that does not exist yet (it is appended after the last sheet)."""

    state: str = "visible"  # "visible" | "hidden" | "veryHidden"
    freeze_rows: int = 0  # frozen header rows (pane)
    col_widths: dict[int, float] = field(default_factory=dict)  # 1-based col -> width in characters
    bold_rows: set[int] = field(default_factory=set)  # e.g. {1} for a header row
    validations: list[Validation] = field(default_factory=list)


@dataclass
class SheetPatch:
    """Values to write into one sheet."""

    sheet: str  # exact sheet name
    cells: dict[tuple[int, int], CellValue]  # (row, col), 1-based -> value; None = clear value, keep style
    new: NewSheet | None = None  # create this sheet; error if it exists
    replace: bool = False  # sheet fully owned by sheetflow: drop all existing rows first
    # rows to delete before writing (1-based sheet rows; rows below move up, as Excel's "Delete row" does).
    # ``cells`` are addressed after the deletion. Only for sheets without formulas (sheetflow's logs).
    delete_rows: tuple[int, ...] = ()
    # The record each patched row holds (row -> the value of its key column ``key_col``: id, key or run_id),
    # for backends whose rows can move while a run works (Google Sheets re-finds each record's row before it
    # writes). The file writers ignore them: a changed file is refused instead.
    keys: dict[int, str] = field(default_factory=dict)
    key_col: int = 0


class PatchError(SheetflowError):
    """The workbook cannot be written as asked; the message names the file, sheet or cell and what to do."""


def patch_workbook(src: str | Path, dst: str | Path, patches: list[SheetPatch]) -> None:
    """Write ``src`` + ``patches`` to ``dst`` (dst != src; the caller does temp-file + atomic replace).

    Nothing is written to ``dst`` unless every patch can be applied: all checks (protection, merged cells,
    shared/array formulas, table headers, names) run before the new package is written.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise PatchError(
            f"internal error: sheetflow must not write over {src.name} directly (use a temporary file)"
        )
    # Parsing, serialising and compressing big sheets is C code that runs without the GIL: background threads
    # do it while Python code writes other sheets (see _apply_patches and _Package.finish).
    with (
        _Package.open(src) as pkg,
        ThreadPoolExecutor(2, "sheetflow-xlsx") as pool,
        ThreadPoolExecutor(2, "sheetflow-deflate") as deflate_pool,
    ):
        pkg.pool, pkg.deflate_pool = (
            pool,
            deflate_pool,
        )  # two pools: jobs in `pool` wait for pieces in the other
        try:
            book = _Workbook(pkg)
            _apply_patches(pkg, book, _merge_patches(patches))
            pkg.write(dst)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # nothing left running on the zip file
            deflate_pool.shutdown(wait=True, cancel_futures=True)
            raise


def date1904(path: str | Path) -> bool:
    """True when the workbook uses the 1904 date system (Mac Excel's old default; serial 0 is 1904-01-01).

    Readers need this for any workbook they can open, so unlike :func:`patch_workbook` it does not refuse
    Strict Open XML files.
    """
    with _Package.open(Path(path)) as pkg:
        rels = pkg.rels("")
        docs = rels.of_type(REL_OFFICE_DOCUMENT)
        name = rels.target(docs[0]) if docs else None
        if name is None or not pkg.exists(name) or not name.lower().endswith(".xml"):
            return False
        root = pkg.xml(name).root
        pr = next(
            (el for el in root if isinstance(el.tag, str) and etree.QName(el).localname == "workbookPr"), None
        )
        return pr is not None and _true(pr.get("date1904"))


@dataclass
class SheetLayout:
    """What a reader needs besides cell values: which cells hold formulas, where the Excel tables are.

    ``formulas``: 1-based (row, col) of every cell with an ``<f>`` element (plain, shared or array formulas;
    their cached values are what readers see). ``tables``: (name, (r1, c1, r2, c2), header rows, totals rows)
    of each table (ListObject) on the sheet, bounds 1-based and inclusive.
    """

    formulas: set[tuple[int, int]] = field(default_factory=set)
    tables: list[tuple[str, tuple[int, int, int, int], int, int]] = field(default_factory=list)


# A cell whose first child is a formula (CT_Cell's children come in the order f, v, is, extLst: ECMA-376
# 18.3.1.4), any namespace prefix. Scanned as bytes: a 100k-row sheet is not parsed just to find formulas.
_FORMULA_CELL_RE = re.compile(
    rb'<(?:[A-Za-z_][\w.-]*:)?c\b[^>]*?\sr="\$?([A-Za-z]{1,3})\$?([0-9]{1,7})"[^>]*(?<!/)>\s*<(?:[A-Za-z_][\w.-]*:)?f[\s/>]'
)


def sheet_layouts(path: str | Path, names: Iterable[str]) -> dict[str, SheetLayout]:
    """Formula cells and Excel tables of the named worksheets (missing or unreadable parts: left out)."""
    wanted = set(names)
    out: dict[str, SheetLayout] = {}
    with _Package.open(Path(path)) as pkg:
        book = _Workbook(pkg)
        for info in book.sheets:
            if info.name not in wanted or info.part is None or not pkg.exists(info.part):
                continue
            layout = SheetLayout()
            data = pkg.read(info.part)
            if b"<f" in data or b":f" in data:
                for m in _FORMULA_CELL_RE.finditer(data):
                    layout.formulas.add((int(m.group(2)), col_number(m.group(1).decode("ascii"))))
            for table in _sheet_tables(pkg, info.part):
                layout.tables.append((table.name, table.bounds, table.header_rows, table.totals_rows))
            out[info.name] = layout
    return out


# --------------------------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------------------------

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

MAX_ROW = 1_048_576
MAX_COL = 16_384
MAX_TEXT = 32_767  # Excel's limit, in UTF-16 code units
MAX_LIST_FORMULA = 255  # Excel rejects longer literal dropdown lists
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
FIRST_CUSTOM_NUMFMT = 164
# Built-in number formats that show dates or times (ECMA-376 18.8.30).
BUILTIN_DATE_FORMATS = frozenset(range(14, 23)) | {45, 46, 47}

STANDARD_HEAD = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
_PARSER_OPTIONS = dict(
    remove_blank_text=False,
    remove_comments=False,
    remove_pis=False,
    strip_cdata=False,
    resolve_entities=False,
    huge_tree=True,
    no_network=True,
    ns_clean=False,
)
_PARSER = etree.XMLParser(
    **_PARSER_OPTIONS
)  # for the main thread; lxml parsers must not be shared by threads
_HEAD_RE = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*\?>\s*")
_ILLEGAL_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_ESCAPE_LIKE_RE = re.compile("_(x[0-9A-Fa-f]{4}_)")
_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")
_RANGE_ROWS_RE = re.compile(r"\$?[A-Za-z]{1,3}\$?([0-9]{1,7})(?::\$?[A-Za-z]{1,3}\$?([0-9]{1,7}))?$")
_BAD_SHEET_CHARS = set("[]:*?/\\")

EXCEL_EPOCH_1900 = dt.date(1899, 12, 30)
EXCEL_EPOCH_1904 = dt.date(1904, 1, 1)
EXCEL_LEAP_BUG_END = dt.date(1900, 3, 1)
_EPOCH_1900, _EPOCH_1904, _LEAP_BUG_END = (
    d.toordinal() for d in (EXCEL_EPOCH_1900, EXCEL_EPOCH_1904, EXCEL_LEAP_BUG_END)
)


def _q(tag: str) -> str:
    """Clark name of a SpreadsheetML main-namespace element."""
    return f"{{{NS_MAIN}}}{tag}"


def _true(value: str | None) -> bool:
    """OOXML booleans are "1"/"true" (and "on" in old files)."""
    return (value or "").strip().lower() in ("1", "true", "on")


# --------------------------------------------------------------------------------------------------------------
# A1 references
# --------------------------------------------------------------------------------------------------------------

_LETTERS: dict[int, str] = {}
_COL_NUMBERS: dict[str, int] = {}  # the reverse of _LETTERS: "AA" -> 27
_DIGITS = "0123456789"


def col_letter(col: int) -> str:
    """1 -> A, 27 -> AA (cached: called once per written cell)."""
    letters = _LETTERS.get(col)
    if letters is None:
        n, letters = col, ""
        while n > 0:
            n, rem = divmod(n - 1, 26)
            letters = chr(65 + rem) + letters
        _LETTERS[col] = letters
        _COL_NUMBERS[letters] = col
    return letters


def col_number(letters: str) -> int:
    """A -> 1, AA -> 27."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def parse_cell(ref: str) -> tuple[int, int]:
    """ "B4" / "$B$4" -> (4, 2); ValueError for anything else."""
    m = _CELL_RE.match(ref.strip())
    if not m:
        raise ValueError(ref)
    return int(m.group(2)), col_number(m.group(1))


def _ref_col(ref: str) -> int:
    """Column of a cell reference: parse_cell(ref)[1], without the regex for the usual "AB12" form."""
    letters = ref.rstrip(_DIGITS)
    col = _COL_NUMBERS.get(letters)
    if col is not None and 0 < len(ref) - len(letters) <= 7:
        return col
    col = parse_cell(ref)[1]
    col_letter(col)  # remember the letters (only the canonical upper-case form takes the fast path)
    return col


def parse_range(ref: str) -> tuple[int, int, int, int]:
    """ "A1:C5" -> (r1, c1, r2, c2); a single cell is a 1x1 range."""
    first, _, last = ref.strip().partition(":")
    r1, c1 = parse_cell(first)
    r2, c2 = parse_cell(last) if last else (r1, c1)
    return min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2)


def format_range(r1: int, c1: int, r2: int, c2: int) -> str:
    start = f"{col_letter(c1)}{r1}"
    return start if (r1, c1) == (r2, c2) else f"{start}:{col_letter(c2)}{r2}"


@functools.lru_cache(maxsize=64)
def _shown_sheet(sheet: str) -> str:
    return f"'{sheet}'" if re.search(r"[^A-Za-z0-9_.]", sheet) else sheet


def _where(sheet: str, row: int, col: int) -> str:
    """``Contacts!F2`` / ``'My Sheet'!F2``, the way Excel shows a reference in a formula."""
    return f"{_shown_sheet(sheet)}!{col_letter(col)}{row}"


# --------------------------------------------------------------------------------------------------------------
# XML parts
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _XmlPart:
    """A parsed part plus the exact bytes before its root element (XML declaration and line break).

    ``splices`` are (marker, content) pairs: ``marker`` is the serialised form of a processing instruction that
    stands in the tree for ``content``, XML text generated directly (the rows appended to a sheet), which
    replaces it on output. Building 100,000s of rows as text is many times faster than as lxml elements.
    ``rows``: for a big worksheet, the rows as bytes (the tree then holds everything but the rows; see _RawRows).
    """

    tree: etree._ElementTree
    head: bytes
    splices: list[tuple[bytes, bytes | Callable[[], list[bytes | memoryview]]]] = field(default_factory=list)
    rows: _RawRows | None = None

    @property
    def root(self) -> etree._Element:
        return self.tree.getroot()

    @classmethod
    def parse(cls, data: bytes, parser: etree.XMLParser = _PARSER) -> _XmlPart:
        m = _HEAD_RE.match(data)
        head = m.group(0) if m else b""
        if head and re.search(rb"encoding=[\"'](?!utf-8)", head, re.I):
            head = STANDARD_HEAD  # we always serialise UTF-8, so the declaration must say so
        root = etree.fromstring(data, parser)
        return cls(root.getroottree(), head)

    @classmethod
    def new(cls, root: etree._Element) -> _XmlPart:
        return cls(root.getroottree(), STANDARD_HEAD)

    def splice(self, parent: etree._Element, content: bytes | Callable[[], list[bytes | memoryview]]) -> None:
        """Output ``content`` (serialised XML, or a function that makes it in pieces) as the last children of
        ``parent``."""
        marker = etree.ProcessingInstruction(f"sheetflow-splice-{uuid.uuid4().hex}")
        parent.append(marker)
        self.splices.append((etree.tostring(marker, with_tail=False), content))

    def parse_fully(self) -> None:
        """Replace the tree without rows (see _RawRows) by the full tree of the part."""
        full = _XmlPart.parse(self.rows.data)
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


# --------------------------------------------------------------------------------------------------------------
# Big worksheets: the rows as bytes
# --------------------------------------------------------------------------------------------------------------

_RAW_ROWS_MIN_BYTES = 1 << 20  # smaller worksheets are parsed into a tree: fast enough, and the reference
_START_TAG_REST = rb"""((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(/?)>"""  # attributes, "/" if empty
_PLAIN_TAG_REST = _START_TAG_REST.replace(b'[^"]', b'[^"&]').replace(
    b"[^']", b"[^'&]"
)  # no character references
_SHEET_DATA_TAG_RE = re.compile(rb"<(?:([A-Za-z_][\w.\-]*):)?sheetData" + _START_TAG_REST)
_ATTR_RE = re.compile(rb"""([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_R_ATTR_RE = re.compile(rb"""\sr\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_XML_SPACE_CHARS = b" \t\r\n"
_NAME_END = frozenset(b" \t\r\n/>")
_COL_NUMBERS_B: dict[bytes, int] = {}  # b"AB" -> 28, filled as cells are read
_S_ATTR_RE = re.compile(rb"\ss\s*=")


class _NoTree:
    """An lxml parser target that builds nothing: checks that a part is well-formed XML, several times faster
    than parsing it into a tree."""

    def close(self) -> None:
        return None


def _attr_list(raw: bytes) -> list[list[bytes]]:
    """The attributes of a start tag as [name, quote, value as written] lists, in order."""
    return [
        [m.group(1), b'"', m.group(2)] if m.group(2) is not None else [m.group(1), b"'", m.group(3)]
        for m in _ATTR_RE.finditer(raw)
    ]


def _attr_get(attrs: list[list[bytes]], name: bytes) -> str | None:
    return next((value.decode() for key, _, value in attrs if key == name), None)


def _attr_set(attrs: list[list[bytes]], name: bytes, value: str) -> None:
    """Like lxml's set: in place if the attribute exists, else added last."""
    for attr in attrs:
        if attr[0] == name:
            attr[1], attr[2] = b'"', value.encode()
            return
    attrs.append([name, b'"', value.encode()])


def _attr_del(attrs: list[list[bytes]], name: bytes) -> None:
    attrs[:] = [attr for attr in attrs if attr[0] != name]


def _start_tag(name: bytes, attrs: list[list[bytes]], empty: bool = False) -> bytes:
    return b"".join(
        [
            b"<",
            name,
            *(b" %s=%s%s%s" % (key, q, value, q) for key, q, value in attrs),
            b"/>" if empty else b">",
        ]
    )


class _RawRows:
    """The rows of a big worksheet as they are in the file, and the changes to make to them.

    Parsing 100,000 rows into lxml elements and serialising them again takes seconds; changing the bytes of the
    rows that get values takes a fraction of that, and leaves every other row exactly as it was. Only for a
    sheetData that is plain: well-formed XML (checked by a SAX pass), no comments, CDATA sections, processing
    instructions or DOCTYPE in the part, no namespace declarations inside sheetData, no formulas, rows with
    increasing ``r`` and only white space between them. A row that gets values must have its cells (from the
    first column written on) in plain form too: ``r`` references in column order, no extension lists, no
    character references in the attributes that matter. Anything else: the part is parsed into a full tree
    after all. _SheetWriter does to these bytes what it does to elements (the tests compare both results,
    canonicalised).
    """

    def __init__(self, data: bytes, start: int, end: int, prefix: bytes) -> None:
        self.data, self.start, self.end, self.prefix = data, start, end, prefix  # rows: data[start:end]
        self.rows: dict[
            int, tuple[int, int, int, int]
        ] = {}  # r -> (start, end of start tag, end tag or -1, end)
        self.nums: list[int] = []
        self.edits: list[tuple[int, int, bytes]] = []  # (from, to, new bytes), in document order
        self.row_end_tag = b"</" + prefix + b"row>"
        self.cell_name, self.cell_end_tag = prefix + b"c", b"</" + prefix + b"c>"
        self._cell_start = b"<" + prefix + b"c"
        # group 1: the row number when r="12" is the first attribute (as every writer puts it)
        self._row_re = re.compile(
            b"<" + re.escape(prefix) + rb'row(?:\s+r="([0-9]{1,7})"(?=[\s/>]))?' + _PLAIN_TAG_REST
        )
        # group 1: the column letters when r="AB12" is the first attribute (as every writer puts it)
        self._cell_re = re.compile(
            b"<" + re.escape(prefix) + rb'c(?:\s+r="([A-Z]{1,3})[0-9]{1,7}"(?=[\s/>]))?' + _PLAIN_TAG_REST
        )

    @classmethod
    def split(cls, data: bytes, parser: etree.XMLParser) -> _XmlPart | None:
        """The part as a tree without rows plus its rows as bytes; None if its sheetData is not plain."""
        m = _HEAD_RE.match(data)
        head = m.group(0) if m else b""
        if (
            head
            and re.search(rb"encoding=[\"'](?!utf-8)", head, re.I)
            or data[:2] in (b"\xff\xfe", b"\xfe\xff")
        ):
            return None
        if b"<!" in data or data.find(b"<?", len(head)) >= 0 or data.count(b"sheetData") != 2:
            return None
        tag = _SHEET_DATA_TAG_RE.search(data)
        if tag is None or tag.group(3):
            return None
        prefix = tag.group(1) + b":" if tag.group(1) else b""
        start = tag.end()
        end = data.find(b"</" + prefix + b"sheetData>", start)
        if (
            end < 0
            or data.find(b"xmlns", start, end) >= 0
            or re.compile(b"<" + re.escape(prefix) + rb"f[\s/>]").search(data, start, end)
        ):
            return None
        etree.fromstring(
            data, etree.XMLParser(target=_NoTree(), **_PARSER_OPTIONS)
        )  # XMLSyntaxError if damaged
        part = _XmlPart.parse(data[:start] + data[end:], parser)
        sheet_data = part.root.find(_q("sheetData"))
        if (
            sheet_data is None
            or len(sheet_data)
            or sheet_data.text is not None
            or (sheet_data.prefix or "").encode() != (tag.group(1) or b"")
            or [key for key, uri in sheet_data.nsmap.items() if uri == NS_MAIN] != [sheet_data.prefix]
        ):
            return None
        rows = cls(data, start, end, prefix)
        if not rows.index():
            return None
        part.rows = rows
        part.splice(sheet_data, rows.content)
        return part

    def index(self) -> bool:
        """Find every row; False if they are not plain."""
        data, end, row_end_tag = self.data, self.end, self.row_end_tag
        rows, nums = self.rows, self.nums
        pos, previous = self.start, -1
        find = data.find
        for m in self._row_re.finditer(data, self.start, end):
            row_start, tag_end, number, empty = m.start(), m.end(), m.group(1), m.group(3)
            if row_start != pos and (row_start < pos or data[pos:row_start].strip(_XML_SPACE_CHARS)):
                return False
            if number is None:  # r is not the first attribute
                r = _R_ATTR_RE.search(m.group(0))
                number = r and (r.group(1) if r.group(1) is not None else r.group(2))
                if not number or not number.isdigit():
                    return False
            number = int(number)
            if number <= previous:
                return False
            if empty:
                close, pos = -1, tag_end
            else:
                close = find(row_end_tag, tag_end, end)
                if close < 0:
                    return False
                pos = close + len(row_end_tag)
            rows[number] = (row_start, tag_end, close, pos)
            nums.append(number)
            previous = number
        return not data[pos:end].strip(_XML_SPACE_CHARS)

    def is_empty(self) -> bool:
        data = self.data
        return not any(
            close > tag_end and data.find(b"<", tag_end, close) >= 0
            for _, tag_end, close, _ in self.rows.values()
        )

    def clear(self) -> None:
        """Drop every row (and the white space after each, which lxml removes with an element)."""
        if self.nums:
            self.edits.append((self.rows[self.nums[0]][0], self.end, b""))
        self.rows, self.nums = {}, []

    def cells(
        self, r: int, cols_written: list[int]
    ) -> tuple[list[int], dict[int, tuple[int, int, int, int]], bytes] | None:
        """The cells of row r from the first of ``cols_written`` on, plus the one before them (walking back
        from the end of the row): columns in order, col -> (start, end of start tag, end tag or -1, end), and
        the row's start tag. None if they are not plain. (Start tags with character references are not
        plain: the regular expressions do not match them.)"""
        row_start, tag_end, close, _ = self.rows[r]
        data = self.data
        tag = data[row_start:tag_end]
        if b"customFormat" in tag:  # what _SheetWriter._write_raw_row reads
            row_attrs = _attr_list(tag)
            try:
                if _true(_attr_get(row_attrs, b"customFormat")) and _attr_get(row_attrs, b"s"):
                    int(_attr_get(row_attrs, b"s"))
            except ValueError:
                return None
        first_col = cols_written[0]
        cols: list[int] = []
        cells: dict[int, tuple[int, int, int, int]] = {}
        if close < 0:
            return cols, cells, tag
        if data.find(b"extLst", tag_end, close) >= 0:
            return None
        name, end_tag, cell_re, col_numbers = (
            self._cell_start,
            self.cell_end_tag,
            self._cell_re,
            _COL_NUMBERS_B,
        )
        pos = close
        while True:
            i = data.rfind(name, tag_end, pos)
            while i >= 0 and data[i + len(name)] not in _NAME_END:
                i = data.rfind(name, tag_end, i)
            if i < 0:
                if tag_end != pos and data[tag_end:pos].strip(_XML_SPACE_CHARS):
                    return None
                break
            m = cell_re.match(data, i, pos)
            if m is None:
                return None
            cell_tag_end = m.end()
            if m.group(3):
                cell_close, cell_end = -1, cell_tag_end
            else:
                cell_close = data.find(end_tag, cell_tag_end, pos)
                if cell_close < 0:
                    return None
                cell_end = cell_close + len(end_tag)
            if cell_end != pos and data[cell_end:pos].strip(_XML_SPACE_CHARS):
                return None
            col = col_numbers.get(m.group(1)) if m.group(1) else None  # the usual <c r="AB12" ...>
            if col is None:
                ref = _R_ATTR_RE.search(m.group(0))
                ref = ref and (ref.group(1) if ref.group(1) is not None else ref.group(2))
                if not ref or not ref.isascii():
                    return None
                try:
                    col = _ref_col(ref.decode("ascii"))
                except ValueError:
                    return None
                _COL_NUMBERS_B[ref.rstrip(b"0123456789")] = col
            if col in cols_written and _S_ATTR_RE.search(data, i, cell_tag_end):
                try:  # what _SheetWriter._raw_cell reads
                    int(_attr_get(_attr_list(m.group(0)[len(name) :]), b"s") or 0)
                except ValueError:
                    return None
            if cols and col >= cols[-1]:
                return None
            cols.append(col)
            cells[col] = (i, cell_tag_end, cell_close, cell_end)
            pos = i
            if col < first_col:
                break
        cols.reverse()
        return cols, cells, tag

    def content(self) -> list[bytes | memoryview]:
        """The rows with every change made, in pieces."""
        view, pieces, pos = memoryview(self.data), [], self.start
        for start, end, new in self.edits:
            if start < pos:
                raise PatchError("internal error: overlapping changes to the rows of a sheet")
            pieces += (view[pos:start], new)
            pos = end
        pieces.append(view[pos : self.end])
        return pieces


# --------------------------------------------------------------------------------------------------------------
# Zip package: raw copy of untouched entries
# --------------------------------------------------------------------------------------------------------------

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_ZIP64_EXTRA = 0x0001
_FLAG_ENCRYPTED = 0x01
_FLAG_DATA_DESCRIPTOR = 0x08
_FLAG_UTF8 = 0x800
_LIMIT32 = 0xFFFFFFFF


def _strip_zip64(extra: bytes) -> bytes:
    """Drop zip64 extra fields: we write real 32-bit sizes, so a stale zip64 record would contradict them."""
    out, i = bytearray(), 0
    while i + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, i)
        if kind != _ZIP64_EXTRA:
            out += extra[i : i + 4 + size]
        i += 4 + size
    return bytes(out)


def _dos_time(date_time: tuple[int, ...]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time[:6]
    if year < 1980:
        year, month, day, hour, minute, second = 1980, 1, 1, 0, 0, 0
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


@dataclass
class _Entry:
    """One entry of the output zip: metadata plus the already-compressed bytes."""

    name_bytes: bytes
    flags: int
    method: int
    date_time: tuple[int, ...]
    crc: int
    size: int
    data: bytes  # compressed payload
    local_extra: bytes = b""
    central_extra: bytes = b""
    comment: bytes = b""
    create_version: int = 20
    create_system: int = 0
    extract_version: int = 20
    internal_attr: int = 0
    external_attr: int = 0


class _ZipWriter:
    """Minimal zip writer that can take pre-compressed data, so untouched entries keep their exact bytes."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._central: list[tuple[_Entry, int]] = []

    def add(self, entry: _Entry) -> None:
        offset = self._fh.tell()
        if offset > _LIMIT32 or len(entry.data) > _LIMIT32 or entry.size > _LIMIT32:
            raise PatchError("the workbook is too large (over 4 GB) for sheetflow to write")
        dostime, dosdate = _dos_time(entry.date_time)
        self._fh.write(
            _LOCAL.pack(
                b"PK\x03\x04",
                entry.extract_version,
                0,
                entry.flags,
                entry.method,
                dostime,
                dosdate,
                entry.crc,
                len(entry.data),
                entry.size,
                len(entry.name_bytes),
                len(entry.local_extra),
            )
        )
        self._fh.write(entry.name_bytes)
        self._fh.write(entry.local_extra)
        self._fh.write(entry.data)
        self._central.append((entry, offset))

    def finish(self, comment: bytes) -> None:
        start = self._fh.tell()
        for entry, offset in self._central:
            dostime, dosdate = _dos_time(entry.date_time)
            self._fh.write(
                _CENTRAL.pack(
                    b"PK\x01\x02",
                    entry.create_version,
                    entry.create_system,
                    entry.extract_version,
                    0,
                    entry.flags,
                    entry.method,
                    dostime,
                    dosdate,
                    entry.crc,
                    len(entry.data),
                    entry.size,
                    len(entry.name_bytes),
                    len(entry.central_extra),
                    len(entry.comment),
                    0,
                    entry.internal_attr,
                    entry.external_attr,
                    offset,
                )
            )
            self._fh.write(entry.name_bytes + entry.central_extra + entry.comment)
        size = self._fh.tell() - start
        count = len(self._central)
        if count > 0xFFFF or start > _LIMIT32:
            raise PatchError("the workbook has too many parts for sheetflow to write")
        self._fh.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, size, start, len(comment)) + comment)


def _name_bytes(info: zipfile.ZipInfo) -> bytes:
    if info.flag_bits & _FLAG_UTF8:
        return info.orig_filename.encode("utf-8")
    return info.orig_filename.encode("cp437")  # zipfile decoded it as cp437: this restores the original bytes


def _copied_entry(raw: BinaryIO, info: zipfile.ZipInfo) -> _Entry:
    """Read an entry's local header and compressed bytes exactly as stored."""
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL.size)
    if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    raw.seek(name_len, 1)
    local_extra = raw.read(extra_len)
    data = raw.read(info.compress_size)
    if len(data) != info.compress_size:
        raise zipfile.BadZipFile(f"truncated data for {info.filename}")
    return _Entry(
        name_bytes=_name_bytes(info),
        flags=info.flag_bits & ~_FLAG_DATA_DESCRIPTOR,
        method=info.compress_type,
        date_time=info.date_time,
        crc=info.CRC,
        size=info.file_size,
        data=data,
        local_extra=_strip_zip64(local_extra),
        central_extra=_strip_zip64(info.extra),
        comment=info.comment,
        create_version=info.create_version,
        create_system=info.create_system,
        extract_version=20 if info.extract_version == 45 else info.extract_version,
        internal_attr=info.internal_attr,
        external_attr=info.external_attr,
    )


_DEFLATE_CHUNK = 1 << 22  # big parts are compressed in pieces of this size, in parallel
_BIG_ENTRY = 1 << 16  # entries this big are inflated in one call (see _Package._inflate)
_DEFLATE_WINDOW = 1 << 15


def _deflate(data: memoryview, start: int, end: int, last: bool) -> bytes:
    """Raw deflate of data[start:end] as one piece of a longer stream: it may refer back to the 32 KB before
    ``start`` (which the reader has just decompressed) and, unless ``last``, ends on a byte boundary without
    ending the stream (Z_SYNC_FLUSH), so the pieces can simply be concatenated (as pigz does)."""
    if start:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=data[max(0, start - _DEFLATE_WINDOW) : start])
    else:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data[start:end]) + packer.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _compress(data: bytes, method: int, pool: ThreadPoolExecutor | None = None) -> bytes:
    if method == zipfile.ZIP_STORED:
        return data
    if pool is None or len(data) < 2 * _DEFLATE_CHUNK:
        return _deflate(memoryview(data), 0, len(data), last=True)
    view, size = memoryview(data), len(data)
    pieces = [
        pool.submit(_deflate, view, start, min(start + _DEFLATE_CHUNK, size), start + _DEFLATE_CHUNK >= size)
        for start in range(0, size, _DEFLATE_CHUNK)
    ]
    return b"".join(piece.result() for piece in pieces)


def _rewritten_entry(
    name: str, data: bytes, like: zipfile.ZipInfo | None, deflate_pool: ThreadPoolExecutor | None = None
) -> _Entry:
    """An entry with new content; it keeps the metadata (and compression type) of the entry it replaces."""
    method = (
        like.compress_type
        if like is not None and like.compress_type == zipfile.ZIP_STORED
        else zipfile.ZIP_DEFLATED
    )
    try:
        name_bytes, flags = name.encode("ascii"), 0
    except UnicodeEncodeError:
        name_bytes, flags = name.encode("utf-8"), _FLAG_UTF8
    entry = _Entry(
        name_bytes=name_bytes,
        flags=flags,
        method=method,
        date_time=time.localtime()[:6],
        crc=zlib.crc32(data),
        size=len(data),
        data=_compress(data, method, deflate_pool),
    )
    if like is not None:
        entry.name_bytes = _name_bytes(like)
        entry.flags = (
            (like.flag_bits & ~(_FLAG_DATA_DESCRIPTOR | 0x06))
            if method == zipfile.ZIP_DEFLATED
            else like.flag_bits & ~_FLAG_DATA_DESCRIPTOR
        )
        entry.date_time = like.date_time
        entry.local_extra, entry.central_extra = b"", _strip_zip64(like.extra)
        entry.comment, entry.create_version, entry.create_system = (
            like.comment,
            like.create_version,
            like.create_system,
        )
        entry.internal_attr, entry.external_attr = like.internal_attr, like.external_attr
    return entry


def _done(work: Callable[[], object]) -> Future:
    """A future holding the outcome of ``work``, run now."""
    future: Future = Future()
    try:
        future.set_result(work())
    except BaseException as exc:  # noqa: BLE001 - delivered by result(), like a background job's
        future.set_exception(exc)
    return future


def _load_sheet(data: bytes, parser: etree.XMLParser) -> _XmlPart:
    """A worksheet part: a big one with a plain sheetData as a tree without rows plus the rows as bytes
    (_RawRows), any other parsed into a full tree."""
    if len(data) >= _RAW_ROWS_MIN_BYTES:
        part = _RawRows.split(data, parser)
        if part is not None:
            return part
    return _XmlPart.parse(data, parser)


def _zip_failure(path: Path, exc: Exception) -> PatchError:
    return PatchError(
        f"{path.name} is damaged and cannot be read ({exc}). Open it in Excel, let Excel repair it, "
        f"and save it again as 'Excel Workbook (.xlsx)' or 'Excel Macro-Enabled Workbook (.xlsm)'"
    )


# --------------------------------------------------------------------------------------------------------------
# Package: parts, relationships, content types
# --------------------------------------------------------------------------------------------------------------


def _rels_name(part: str) -> str:
    folder, base = posixpath.split(part)
    return posixpath.join(folder, "_rels", base + ".rels")


class _Rels:
    """The relationships of one part (its ``_rels/*.rels`` file), created on demand."""

    def __init__(self, pkg: _Package, source: str) -> None:
        self._pkg, self.source = pkg, source
        self.name = _rels_name(source) if source else "_rels/.rels"
        self._base = posixpath.dirname(source)
        if pkg.exists(self.name):
            self.part: _XmlPart | None = pkg.xml(self.name)
        else:
            self.part = None

    def items(self) -> list[etree._Element]:
        if self.part is None:
            return []
        return [el for el in self.part.root if el.tag == f"{{{NS_PKG_REL}}}Relationship"]

    def target(self, rel: etree._Element) -> str | None:
        """Zip entry name the relationship points to (None for external targets)."""
        if rel.get("TargetMode") == "External":
            return None
        target = rel.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.join(self._base, target)
        return self._pkg.actual_name(posixpath.normpath(path))

    def by_id(self, rid: str) -> etree._Element | None:
        return next((el for el in self.items() if el.get("Id") == rid), None)

    def of_type(self, rel_type: str) -> list[etree._Element]:
        """Relationships of a type, transitional or strict (matched on the last path segment)."""
        suffix = "/" + rel_type.rsplit("/", 1)[-1]
        return [el for el in self.items() if el.get("Type", "").endswith(suffix)]

    def add(self, rel_type: str, target: str) -> str:
        if self.part is None:
            self.part = _XmlPart.new(
                etree.Element(f"{{{NS_PKG_REL}}}Relationships", nsmap={None: NS_PKG_REL})
            )
            self._pkg.add_part(self.name, self.part)
        used = {el.get("Id") for el in self.items()}
        numbers_used = [int(m.group(1)) for i in used if i and (m := re.fullmatch(r"rId(\d+)", i))]
        n = max(numbers_used, default=0) + 1
        while f"rId{n}" in used:
            n += 1
        rid = f"rId{n}"
        etree.SubElement(
            self.part.root, f"{{{NS_PKG_REL}}}Relationship", Id=rid, Type=rel_type, Target=target
        )
        self._pkg.touch(self.name)
        return rid

    def remove(self, rel: etree._Element) -> None:
        rel.getparent().remove(rel)
        self._pkg.touch(self.name)


class _Package:
    """The source zip, the parts parsed so far, and what changes in the output."""

    def __init__(self, path: Path, zf: zipfile.ZipFile) -> None:
        self.path, self.zf = path, zf
        self.infos = zf.infolist()
        self._by_lower = {info.filename.lower(): info.filename for info in self.infos}
        self._xml: dict[str, _XmlPart] = {}
        self._dirty: set[str] = set()
        self._added: dict[str, _XmlPart] = {}
        self._removed: set[str] = set()
        self._rels: dict[str, _Rels] = {}
        self.pool: ThreadPoolExecutor | None = None  # background work, when the caller provides threads
        self.deflate_pool: ThreadPoolExecutor | None = None  # pieces of big parts being compressed
        self._parsing: dict[str, Future[_XmlPart]] = {}  # parts being parsed in the background
        self._output: dict[str, Future[_Entry]] = {}  # finished parts being serialised and compressed
        self.row_deletions: dict[str, tuple[str, _RowMap]] = {}  # sheet part -> (sheet name, rows deleted)

    @classmethod
    def open(cls, path: Path) -> _Package:
        if not path.is_file():
            raise PatchError(f"cannot find the workbook {path}")
        try:
            with open(path, "rb") as fh:
                magic = fh.read(8)
        except OSError as exc:
            raise PatchError(
                f"cannot read {path.name} ({exc.strerror or exc}); is it open or locked by another program?"
            ) from None
        if magic.startswith(b"\xd0\xcf\x11\xe0"):
            raise PatchError(
                f"{path.name} is password-protected (encrypted) or is an old .xls file; sheetflow can "
                f"only write .xlsx/.xlsm files without a password to open. Save it in Excel as "
                f"'Excel Workbook (.xlsx)' without a password"
            )
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise PatchError(
                f"{path.name} is not a valid Excel workbook (.xlsx/.xlsm) or it is damaged ({exc}); "
                f"open it in Excel and save it again as 'Excel Workbook (.xlsx)'"
            ) from None
        pkg = cls(path, zf)
        for info in pkg.infos:
            if info.flag_bits & _FLAG_ENCRYPTED:
                zf.close()
                raise PatchError(f"{path.name} contains encrypted parts; remove the password in Excel first")
        return pkg

    def __enter__(self) -> _Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zf.close()

    # -- parts ----------------------------------------------------------------------------------------------
    def actual_name(self, name: str) -> str:
        """OPC part names are case-insensitive; zip names are not."""
        if name in self._added:
            return name
        return self._by_lower.get(name.lower(), name)

    def names(self) -> list[str]:
        """Every part name, existing and added."""
        return [info.filename for info in self.infos] + list(self._added)

    def exists(self, name: str) -> bool:
        name = self.actual_name(name)
        return name in self._added or (name.lower() in self._by_lower and name not in self._removed)

    def read(self, name: str) -> bytes:
        try:
            info = self.zf.getinfo(self.actual_name(name))
            if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size >= _BIG_ENTRY:
                return self._inflate(info)
            return self.zf.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, KeyError) as exc:
            raise _zip_failure(self.path, exc) from None

    def _inflate(self, info: zipfile.ZipInfo) -> bytes:
        """zf.read() in one zlib call: zipfile inflates in steps that each take the GIL again, which makes a
        background read crawl (and slows the main thread) while the main thread runs Python code."""
        with open(self.path, "rb") as raw:
            compressed = _copied_entry(raw, info).data
        data = zlib.decompress(compressed, -15, info.file_size)
        if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
        return data

    def prefetch_sheet(self, name: str) -> None:
        """Start reading and parsing a worksheet part in the background (a big sheet takes seconds)."""
        name = self.actual_name(name)
        if self.pool is None or name in self._added or name in self._xml or name in self._parsing:
            return
        self._parsing[name] = self.pool.submit(
            lambda: _load_sheet(self._sheet_bytes(name), etree.XMLParser(**_PARSER_OPTIONS))
        )

    def _sheet_bytes(self, name: str) -> bytes:
        """A worksheet part's bytes, with the rows deleted that a patch asks to delete (see row_deletions)."""
        data = self.read(name)
        deletion = self.row_deletions.get(name)
        return _delete_rows(data, deletion[1], deletion[0]) if deletion else data

    def parsed(self, name: str) -> bool:
        """Whether xml()/sheet_xml() would return at once."""
        name = self.actual_name(name)
        parsing = self._parsing.get(name)
        return name in self._added or name in self._xml or (parsing is not None and parsing.done())

    def sheet_xml(self, name: str) -> _XmlPart:
        """A worksheet part: like xml(), but a big one may come without its rows in the tree (see _RawRows)."""
        name = self.actual_name(name)
        if name not in self._added and name not in self._xml and name not in self._parsing:
            self._parsing[name] = _done(lambda: _load_sheet(self._sheet_bytes(name), _PARSER))
        return self.xml(name)

    def xml(self, name: str) -> _XmlPart:
        name = self.actual_name(name)
        part = self._added.get(name) or self._xml.get(name)
        if part is None:
            parsing = self._parsing.pop(name, None)
            try:
                part = parsing.result() if parsing is not None else _XmlPart.parse(self.read(name))
            except etree.XMLSyntaxError as exc:
                raise PatchError(
                    f"{self.path.name} is damaged: part {name} is not valid XML ({exc}). Open it in "
                    f"Excel, let Excel repair it, and save it again"
                ) from None
            self._xml[name] = part
        return part

    def touch(self, name: str) -> None:
        """Mark a parsed part as changed, so it is serialised into the output."""
        self._dirty.add(self.actual_name(name))

    def finish(self, name: str) -> None:
        """Nothing will change a changed or added part any more: serialise and compress it in the background
        while the caller goes on with other parts. Only for parts that are really final (a sheet after its
        patch): the background thread reads the tree."""
        name = self.actual_name(name)
        if self.pool is None or name in self._output:
            return
        if name in self._added:
            part, like = self._added[name], None
        elif name in self._dirty and name not in self._removed:
            infos = [info for info in self.infos if info.filename == name]
            if len(infos) != 1:
                return
            part, like = self._xml[name], infos[0]
        else:
            return
        self._output[name] = self.pool.submit(
            lambda: _rewritten_entry(name, part.to_bytes(), like, self.deflate_pool)
        )

    def add_part(self, name: str, part: _XmlPart) -> None:
        self._added[name] = part

    def remove(self, name: str) -> None:
        self._removed.add(self.actual_name(name))

    def rels(self, source: str) -> _Rels:
        if source not in self._rels:
            self._rels[source] = _Rels(self, source)
        return self._rels[source]

    # -- output ---------------------------------------------------------------------------------------------
    def write(self, dst: Path) -> None:
        """Write the new package; on failure no half-written file is left behind."""
        for name in [*self._dirty, *self._added]:
            self.finish(name)  # the rest of the changed parts, compressed in parallel too
        try:
            with open(dst, "wb") as out, open(self.path, "rb") as raw:
                writer = _ZipWriter(out)
                for info in self.infos:
                    if info.filename not in self._removed:
                        writer.add(self._output_entry(raw, info))
                for name, part in self._added.items():
                    output = self._output.get(name)
                    writer.add(output.result() if output else _rewritten_entry(name, part.to_bytes(), None))
                writer.finish(self.zf.comment)
        except OSError as exc:
            dst.unlink(missing_ok=True)
            raise PatchError(f"cannot write {dst} ({exc.strerror or exc})") from None
        except BaseException:
            dst.unlink(missing_ok=True)
            raise

    def _output_entry(self, raw: BinaryIO, info: zipfile.ZipInfo) -> _Entry:
        if info.filename in self._dirty:
            output = self._output.get(info.filename)
            if output is not None:
                return output.result()
            return _rewritten_entry(info.filename, self._xml[info.filename].to_bytes(), info)
        try:
            return _copied_entry(raw, info)
        except (zipfile.BadZipFile, OSError) as exc:
            raise _zip_failure(self.path, exc) from None


class _ContentTypes:
    """``[Content_Types].xml``: one Override per part we add or remove."""

    NAME = "[Content_Types].xml"

    def __init__(self, pkg: _Package) -> None:
        self._pkg = pkg
        self.part = pkg.xml(self.NAME)

    def add_override(self, part_name: str, content_type: str) -> None:
        etree.SubElement(
            self.part.root, f"{{{NS_CT}}}Override", PartName="/" + part_name, ContentType=content_type
        )
        self._pkg.touch(self.NAME)

    def remove_override(self, part_name: str) -> None:
        for el in list(self.part.root):
            if el.tag == f"{{{NS_CT}}}Override" and el.get("PartName", "").lower() == "/" + part_name.lower():
                self.part.root.remove(el)
                self._pkg.touch(self.NAME)


# --------------------------------------------------------------------------------------------------------------
# Workbook: sheets, date system, new sheets
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _SheetInfo:
    name: str
    element: etree._Element
    sheet_id: int
    state: str
    part: str | None  # zip entry of the sheet part
    kind: str  # "worksheet", "chartsheet", "dialogsheet", "xlMacrosheet", ...


class _Workbook:
    """workbook.xml and its relationships, as far as sheetflow needs them."""

    def __init__(self, pkg: _Package) -> None:
        self.pkg = pkg
        self.part_name = self._find_workbook_part()
        self.part = pkg.xml(self.part_name)
        root = self.part.root
        if STRICT_MARK in (etree.QName(root).namespace or ""):
            raise PatchError(
                f"{pkg.path.name} is saved as Strict Open XML; save it in Excel as 'Excel Workbook "
                f"(.xlsx)' (File > Save As) so sheetflow can write into it"
            )
        if etree.QName(root).namespace != NS_MAIN:
            raise PatchError(
                f"{pkg.path.name} does not look like an Excel workbook (unknown format "
                f"{etree.QName(root).namespace}); save it in Excel as 'Excel Workbook (.xlsx)'"
            )
        self.rels = pkg.rels(self.part_name)
        self.sheets_el = root.find(_q("sheets"))
        if self.sheets_el is None:
            raise PatchError(f"{pkg.path.name} is damaged: it lists no sheets")
        self.sheets = [self._sheet_info(el) for el in self.sheets_el if el.tag == _q("sheet")]
        pr = root.find(_q("workbookPr"))
        self.date1904 = pr is not None and _true(pr.get("date1904"))
        protection = root.find(_q("workbookProtection"))
        self.structure_locked = protection is not None and _true(protection.get("lockStructure"))

    def _find_workbook_part(self) -> str:
        rels = self.pkg.rels("")
        docs = rels.of_type(REL_OFFICE_DOCUMENT)
        if any(STRICT_MARK in el.get("Type", "") for el in docs):
            raise PatchError(
                f"{self.pkg.path.name} is saved as Strict Open XML; save it in Excel as 'Excel "
                f"Workbook (.xlsx)' (File > Save As) so sheetflow can write into it"
            )
        target = rels.target(docs[0]) if docs else None
        if target is None or not self.pkg.exists(target):
            raise PatchError(
                f"{self.pkg.path.name} is not an Excel workbook (no workbook part found); save it in "
                f"Excel as 'Excel Workbook (.xlsx)'"
            )
        if not target.lower().endswith(".xml"):
            raise PatchError(
                f"{self.pkg.path.name} is a binary workbook (.xlsb); save it in Excel as 'Excel "
                f"Workbook (.xlsx)' so sheetflow can write into it"
            )
        return target

    def _sheet_info(self, el: etree._Element) -> _SheetInfo:
        rel = self.rels.by_id(el.get(f"{{{NS_R}}}id", ""))
        part = self.rels.target(rel) if rel is not None else None
        kind = rel.get("Type", "").rsplit("/", 1)[-1] if rel is not None else "missing"
        return _SheetInfo(
            name=el.get("name", ""),
            element=el,
            sheet_id=int(el.get("sheetId", "0") or 0),
            state=el.get("state", "visible"),
            part=part,
            kind=kind,
        )

    def sheet(self, name: str) -> _SheetInfo | None:
        return next((s for s in self.sheets if s.name == name), None)

    def add_sheet(self, name: str, spec: NewSheet, content_types: _ContentTypes) -> _SheetInfo:
        """Create an empty worksheet part and register it (rels, workbook.xml, content types)."""
        _check_sheet_name(name)
        if spec.state not in ("visible", "hidden", "veryHidden"):
            raise PatchError(
                f'sheet "{name}": state must be "visible", "hidden" or "veryHidden", not "{spec.state}"'
            )
        if any(s.name.casefold() == name.casefold() for s in self.sheets):
            raise PatchError(f'a sheet named "{name}" already exists in {self.pkg.path.name}')
        if self.structure_locked:
            raise PatchError(
                f'cannot add sheet "{name}": the workbook structure is protected (Review > Protect '
                f"Workbook); unprotect it in Excel first"
            )
        part_name = self._free_sheet_part()
        self.pkg.add_part(part_name, _XmlPart.new(_new_sheet_root(name, spec)))
        target = posixpath.relpath(part_name, posixpath.dirname(self.part_name) or ".")
        rid = self.rels.add(REL_WORKSHEET, target)
        sheet_id = max((s.sheet_id for s in self.sheets), default=0) + 1
        el = etree.SubElement(
            self.sheets_el, _q("sheet"), nsmap=None if NS_R in self.part.root.nsmap.values() else {"r": NS_R}
        )
        el.set("name", name)
        el.set("sheetId", str(sheet_id))
        if spec.state != "visible":
            el.set("state", spec.state)
        el.set(f"{{{NS_R}}}id", rid)
        self.pkg.touch(self.part_name)
        content_types.add_override(part_name, CT_WORKSHEET)
        info = _SheetInfo(
            name=name, element=el, sheet_id=sheet_id, state=spec.state, part=part_name, kind="worksheet"
        )
        self.sheets.append(info)
        return info

    def _free_sheet_part(self) -> str:
        folder = posixpath.join(posixpath.dirname(self.part_name), "worksheets")
        pattern = re.compile(re.escape(folder.lower()) + r"/sheet(\d+)\.xml$")
        used = [int(m.group(1)) for name in self.pkg.names() if (m := pattern.match(name.lower()))]
        return f"{folder}/sheet{max(used, default=0) + 1}.xml"

    def request_full_calc(self) -> None:
        """Ask Excel to recalculate on open: formulas that depend on the values we wrote keep stale cached
        results otherwise, because Excel trusts cached values of an unchanged calc engine."""
        root = self.part.root
        calc = root.find(_q("calcPr"))
        if calc is None:
            anchor = None
            for tag in ("sheets", "functionGroups", "externalReferences", "definedNames"):
                found = root.find(_q(tag))
                anchor = found if found is not None else anchor
            calc = etree.SubElement(root, _q("calcPr"))
            anchor.addnext(calc)
        if not _true(calc.get("fullCalcOnLoad")):
            calc.set("fullCalcOnLoad", "1")
            self.pkg.touch(self.part_name)


def _check_sheet_name(name: str) -> None:
    """Excel's own rules for sheet names; a bad name makes Excel repair (and rename) the sheet."""
    if not isinstance(name, str) or not name.strip():
        raise PatchError("a sheet name cannot be empty")
    if len(name) > 31:
        raise PatchError(f'sheet name "{name}" is too long ({len(name)} characters); Excel allows at most 31')
    bad = sorted(set(name) & _BAD_SHEET_CHARS)
    if bad:
        raise PatchError(
            f'sheet name "{name}" contains {" ".join(bad)}; Excel does not allow [ ] : * ? / \\ in '
            f"sheet names"
        )
    if name.startswith("'") or name.endswith("'"):
        raise PatchError(f'sheet name "{name}" cannot start or end with an apostrophe')
    if _ILLEGAL_XML_RE.search(name) or any(ch in name for ch in "\t\r\n"):
        raise PatchError(f'sheet name "{name!r}" contains control characters')
    if name.casefold() == "history":
        raise PatchError('"History" is reserved by Excel and cannot be used as a sheet name')


def _new_sheet_root(name: str, spec: NewSheet) -> etree._Element:
    """A complete, schema-ordered worksheet with no cells yet."""
    root = etree.Element(_q("worksheet"), nsmap={None: NS_MAIN, "r": NS_R})
    etree.SubElement(root, _q("dimension"), ref="A1")
    view = etree.SubElement(etree.SubElement(root, _q("sheetViews")), _q("sheetView"), workbookViewId="0")
    if spec.freeze_rows:
        if not isinstance(spec.freeze_rows, int) or not 0 < spec.freeze_rows < MAX_ROW:
            raise PatchError(f'sheet "{name}": cannot freeze {spec.freeze_rows!r} rows')
        top = f"A{spec.freeze_rows + 1}"
        etree.SubElement(
            view,
            _q("pane"),
            ySplit=str(spec.freeze_rows),
            topLeftCell=top,
            activePane="bottomLeft",
            state="frozen",
        )
        etree.SubElement(view, _q("selection"), pane="bottomLeft", activeCell=top, sqref=top)
    etree.SubElement(root, _q("sheetFormatPr"), defaultRowHeight="15")
    if spec.col_widths:
        cols = etree.SubElement(root, _q("cols"))
        for col, width in sorted(spec.col_widths.items()):
            if not isinstance(col, int) or not 1 <= col <= MAX_COL:
                raise PatchError(f'sheet "{name}": column {col!r} does not exist')
            if not isinstance(width, (int, float)) or not 0 <= width <= 255:
                raise PatchError(f'sheet "{name}": column width {width!r} is not between 0 and 255')
            etree.SubElement(
                cols, _q("col"), min=str(col), max=str(col), width=repr(float(width)), customWidth="1"
            )
    etree.SubElement(root, _q("sheetData"))
    if spec.validations:
        dvs = etree.SubElement(root, _q("dataValidations"), count=str(len(spec.validations)))
        for validation in spec.validations:
            _add_validation(dvs, name, validation)
    etree.SubElement(
        root,
        _q("pageMargins"),
        left="0.7",
        right="0.7",
        top="0.75",
        bottom="0.75",
        header="0.3",
        footer="0.3",
    )
    return root


def _add_validation(parent: etree._Element, sheet: str, validation: Validation) -> None:
    sqref = " ".join(validation.sqref.replace("$", "").split())
    try:
        for ref in sqref.split(" "):
            r1, c1, r2, c2 = parse_range(ref)
            if r2 > MAX_ROW or c2 > MAX_COL or r1 < 1 or c1 < 1:
                raise ValueError(ref)
    except ValueError:
        raise PatchError(
            f'sheet "{sheet}": dropdown range "{validation.sqref}" is not a cell range like C2:C5000'
        ) from None
    if (validation.options is None) == (validation.source is None):
        raise PatchError(
            f'sheet "{sheet}": dropdown {sqref} needs either a list of options or a source range'
        )
    if validation.options is not None:
        items = [str(o) for o in validation.options]
        if any("," in o for o in items):
            raise PatchError(
                f'sheet "{sheet}": dropdown option {next(o for o in items if "," in o)!r} contains a '
                f"comma; Excel cannot show it in a list (put the options in cells and use a source "
                f"range)"
            )
        formula = '"' + ",".join(o.replace('"', '""') for o in items) + '"'
        if len(formula) > MAX_LIST_FORMULA:
            raise PatchError(
                f'sheet "{sheet}": the options of dropdown {sqref} are longer than Excel allows '
                f"({MAX_LIST_FORMULA} characters); put them in cells and use a source range"
            )
    else:
        formula = validation.source.strip().lstrip("=")
    el = etree.SubElement(
        parent,
        _q("dataValidation"),
        type="list",
        allowBlank="1",
        showErrorMessage="0" if validation.allow_other else "1",
        sqref=sqref,
    )
    etree.SubElement(el, _q("formula1")).text = _ILLEGAL_XML_RE.sub("", formula)


# --------------------------------------------------------------------------------------------------------------
# Styles: date formats and bold headers
# --------------------------------------------------------------------------------------------------------------


def _element_key(el: etree._Element) -> tuple:
    """Structural identity of a style element (attribute order and namespace declarations ignored), used to
    reuse an existing font/xf instead of appending a duplicate on every run."""
    children = tuple(_element_key(ch) for ch in el if isinstance(ch.tag, str))
    return el.tag, tuple(sorted(el.attrib.items())), (el.text or "").strip(), children


def is_date_format(code: str) -> bool:
    """True if an Excel number format shows a date or time (quoted text, escapes and [Red]/[$-409] ignored)."""
    text = re.sub(r'"[^"]*"', "", code)
    text = re.sub(r"\\.|_.|\*.", "", text)
    text = re.sub(r"\[(?![hms]+\])[^\]]*\]", "", text, flags=re.I)
    return bool(re.search(r"[dmyhs]", text.split(";")[0], re.I))


class _Styles:
    """styles.xml, parsed only when a value needs a date format or a bold header; reuses what already exists,
    so running sheetflow again and again does not grow the style table."""

    def __init__(self, pkg: _Package, book: _Workbook, content_types: _ContentTypes) -> None:
        self._pkg, self._book, self._ct = pkg, book, content_types
        self._loaded = False
        self._bold: int | None = None
        self._date_cache: dict[tuple[int, bool], int] = {}

    def _load(self) -> None:
        if self._loaded:
            return
        rels = self._book.rels.of_type(REL_STYLES)
        name = self._book.rels.target(rels[0]) if rels else None
        if name is None or not self._pkg.exists(name):
            name = self._create_part()
        self.name = name
        self.part = self._pkg.xml(name)
        root = self.part.root
        self.cell_xfs = self._child(
            root, "cellXfs", after=("numFmts", "fonts", "fills", "borders", "cellStyleXfs")
        )
        if len(self.cell_xfs) == 0:
            etree.SubElement(self.cell_xfs, _q("xf"), numFmtId="0", fontId="0", fillId="0", borderId="0")
        self.xfs = [el for el in self.cell_xfs if el.tag == _q("xf")]
        self.numfmts = {
            int(el.get("numFmtId", "-1")): el.get("formatCode", "")
            for el in root.iterfind(f"{_q('numFmts')}/{_q('numFmt')}")
        }
        self._xf_index = {}
        for i, xf in enumerate(self.xfs):
            self._xf_index.setdefault(_element_key(xf), i)
        self._loaded = True

    def _create_part(self) -> str:
        """Workbooks written by some tools have no styles part; make the smallest valid one."""
        folder = posixpath.dirname(self._book.part_name)
        name = posixpath.join(folder, "styles.xml")
        root = etree.fromstring(
            f'<styleSheet xmlns="{NS_MAIN}"><fonts count="1"><font><sz val="11"/><name val="Calibri"/></font>'
            f'</fonts><fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill '
            f'patternType="gray125"/></fill></fills><borders count="1"><border><left/><right/><top/><bottom/>'
            f'<diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" '
            f'borderId="0"/></cellStyleXfs><cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" '
            f'xfId="0"/></cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
            f"</cellStyles></styleSheet>"
        )
        self._pkg.add_part(name, _XmlPart.new(root))
        self._book.rels.add(REL_STYLES, posixpath.relpath(name, folder or "."))
        self._ct.add_override(name, CT_STYLES)
        return name

    def _child(self, root: etree._Element, tag: str, after: tuple[str, ...]) -> etree._Element:
        """The child element ``tag``, created in schema order (after the last of ``after`` present)."""
        el = root.find(_q(tag))
        if el is None:
            el = etree.SubElement(root, _q(tag))
            anchors = [a for a in (root.find(_q(t)) for t in after) if a is not None]
            if anchors:
                anchors[-1].addnext(el)
            else:
                root.insert(0, el)
        return el

    def _xf(self, style: int) -> etree._Element:
        return self.xfs[style] if 0 <= style < len(self.xfs) else self.xfs[0]

    def is_date_style(self, style: int) -> bool:
        self._load()
        fmt_id = int(self._xf(style).get("numFmtId", "0") or 0)
        if fmt_id in self.numfmts:
            return is_date_format(self.numfmts[fmt_id])
        return fmt_id in BUILTIN_DATE_FORMATS

    def date_style(self, style: int, with_time: bool) -> int:
        """``style`` itself when it already shows dates, else a clone of it with a yyyy-mm-dd[ hh:mm] format."""
        if self.is_date_style(style):
            return style
        key = (style, with_time)
        if key not in self._date_cache:
            xf = copy.deepcopy(self._xf(style))
            xf.set("numFmtId", str(self._numfmt(DATETIME_FORMAT if with_time else DATE_FORMAT)))
            xf.set("applyNumberFormat", "1")
            self._date_cache[key] = self._add_xf(xf)
        return self._date_cache[key]

    def bold(self) -> int:
        """An xf like the default one but with a bold font (for header rows of new sheets)."""
        if self._bold is None:
            self._load()
            fonts = self._child(self.part.root, "fonts", after=("numFmts",))
            font_list = [el for el in fonts if el.tag == _q("font")]
            font = copy.deepcopy(font_list[0]) if font_list else etree.Element(_q("font"))
            for old in font.findall(_q("b")):
                font.remove(old)
            font.insert(0, etree.SubElement(font, _q("b")))
            font_id = self._find_or_append(fonts, font_list, font)
            xf = copy.deepcopy(self.xfs[0])
            xf.set("fontId", str(font_id))
            xf.set("applyFont", "1")
            self._bold = self._add_xf(xf)
        return self._bold

    def _numfmt(self, code: str) -> int:
        for fmt_id, existing in self.numfmts.items():
            if existing == code:
                return fmt_id
        fmt_id = max([FIRST_CUSTOM_NUMFMT - 1, *self.numfmts]) + 1
        numfmts = self._child(self.part.root, "numFmts", after=())
        etree.SubElement(numfmts, _q("numFmt"), numFmtId=str(fmt_id), formatCode=code)
        numfmts.set("count", str(len(numfmts)))
        self.numfmts[fmt_id] = code
        self._pkg.touch(self.name)
        return fmt_id

    def _find_or_append(
        self, parent: etree._Element, existing: list[etree._Element], el: etree._Element
    ) -> int:
        key = _element_key(el)
        for i, other in enumerate(existing):
            if _element_key(other) == key:
                return i
        parent.append(el)
        parent.set("count", str(len(existing) + 1))
        self._pkg.touch(self.name)
        return len(existing)

    def _add_xf(self, xf: etree._Element) -> int:
        key = _element_key(xf)
        if key in self._xf_index:
            return self._xf_index[key]
        self.cell_xfs.append(xf)
        self.xfs.append(xf)
        self.cell_xfs.set("count", str(len(self.xfs)))
        self._xf_index[key] = len(self.xfs) - 1
        self._pkg.touch(self.name)
        return len(self.xfs) - 1


# --------------------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------------------

# A value as it goes into the cell XML: (kind, text, with_time); kind is "str" | "num" | "bool" | "date" | "none".
# A plain tuple: a million of them are made for a big write.
_Rendered = tuple[str, str, bool]
_NONE: _Rendered = ("none", "", False)

# Text that needs more than XML escaping of & < > (control characters, line breaks, lone surrogates).
_SPECIAL_TEXT_RE = re.compile("[\x00-\x1f&<>\ud800-\udfff\ufffe\uffff]")
# How libxml2 escapes element text (checked against lxml for every legal character in the tests).
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def _clean_text(text: str) -> str:
    """Characters XML 1.0 cannot hold are dropped; text longer than Excel's cell limit is cut; a literal
    ``_x0041_`` is escaped so Excel does not decode it as a character."""
    text = _ILLEGAL_XML_RE.sub("", text)
    if len(text) > MAX_TEXT // 2:  # only long strings can exceed the limit in UTF-16 units
        units = text.encode("utf-16-le")[: MAX_TEXT * 2]
        text = units.decode("utf-16-le", errors="ignore")  # a cut surrogate pair is dropped, not mangled
    return _ESCAPE_LIKE_RE.sub(r"_x005F_\1", text)


def excel_serial(value: dt.date | dt.datetime, is1904: bool, where: str = "") -> float | int:
    """Day number Excel stores for a date (with Excel's 1900 leap-year bug before 1900-03-01)."""
    if isinstance(value, dt.datetime):
        day = value.date()
        seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    else:
        day, seconds = value, 0.0
    if is1904:
        days = (day - EXCEL_EPOCH_1904).days
    else:
        days = (day - EXCEL_EPOCH_1900).days - (1 if day < EXCEL_LEAP_BUG_END else 0)
    if days < (0 if is1904 else 1):
        raise PatchError(
            f"{where}: Excel cannot store the date {value.isoformat()} (too early for this "
            f"workbook's date system)"
        )
    return days + seconds / 86400 if seconds else days


def _render(value: object, where: str, is1904: bool) -> _Rendered:
    """Validate and convert one Python value; errors name the cell."""
    kind = type(value)
    if kind is str:  # the exact built-in types first: the common case, and cheaper than isinstance
        return "str", _clean_text(value), False
    if value is None:
        return _NONE
    if kind is int:
        return "num", str(value), False
    if kind is float and value - value == 0:  # finite
        return "num", repr(value), False
    if isinstance(value, str):
        return "str", _clean_text(value), False
    if isinstance(value, bool):
        return "bool", "1" if value else "0", False
    if isinstance(value, (dt.datetime, dt.date)):
        if value != value:  # pandas NaT
            raise PatchError(f"{where}: cannot write an empty date (NaT); use None to clear a cell")
        with_time = isinstance(value, dt.datetime) and value.time() != dt.time(0)
        serial = excel_serial(value, is1904, where)
        return "date", str(serial) if isinstance(serial, int) else repr(serial), with_time
    if isinstance(value, numbers.Integral):
        return "num", str(int(value)), False
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise PatchError(f"{where}: cannot write {number} (not a finite number) into a cell")
        return "num", repr(number), False
    item = getattr(value, "item", None)
    if (
        callable(item) and type(value).__module__ == "numpy"
    ):  # numpy scalar (e.g. numpy.bool_): use the Python value
        return _render(item(), where, is1904)
    raise PatchError(f"{where}: cannot write a value of type {type(value).__name__} ({value!r}) into a cell")


def _text_xml(text: str) -> tuple[str, bool]:
    """Clean ``text`` (see _clean_text) and escape it for element content; also whether it needs
    ``xml:space="preserve"`` (surrounding white space or line breaks/tabs, which XML readers may drop)."""
    if len(text) > MAX_TEXT // 2 or _SPECIAL_TEXT_RE.search(text) is not None:
        text = _clean_text(text)
        preserve = text != text.strip() or "\n" in text or "\r" in text or "\t" in text
        return text.translate(_TEXT_ESCAPES), preserve
    if "_x" in text:
        text = _ESCAPE_LIKE_RE.sub(r"_x005F_\1", text)
    return text, text != text.strip()


# --------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Table:
    part_name: str
    part: _XmlPart
    name: str
    bounds: tuple[int, int, int, int]
    header_rows: int
    totals_rows: int
    columns: list[str]


def _unescape_x(text: str) -> str:
    """Decode Excel's ``_x000A_`` escapes (a line break in a table column name is stored that way)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def _sheet_tables(pkg: _Package, sheet_part: str) -> list[_Table]:
    tables = []
    rels = pkg.rels(sheet_part)
    for rel in rels.of_type(REL_TABLE):
        name = rels.target(rel)
        if name is None or not pkg.exists(name):
            continue
        part = pkg.xml(name)
        root = part.root
        try:
            bounds = parse_range(root.get("ref", ""))
        except ValueError:
            continue
        columns = [
            _unescape_x(el.get("name", ""))
            for el in root.iterfind(f"{_q('tableColumns')}/{_q('tableColumn')}")
        ]
        tables.append(
            _Table(
                name,
                part,
                root.get("displayName") or root.get("name", "?"),
                bounds,
                int(root.get("headerRowCount", "1") or 1),
                int(root.get("totalsRowCount", "0") or 0),
                columns,
            )
        )
    return tables


def _grow_tables(pkg: _Package, tables: list[_Table], written: dict[int, set[int]]) -> None:
    """Rows written directly below a table (within its columns) become part of it, as when typing in Excel."""
    for table in tables:
        r1, c1, r2, c2 = table.bounds
        if table.totals_rows:
            continue  # rows under a totals row are not table data
        end = r2
        while end < MAX_ROW and any(c1 <= c <= c2 for c in written.get(end + 1, ())):
            end += 1
        grown = (r1, c1, end, c2)
        if end == r2 or any(_overlap(grown, other.bounds) for other in tables if other is not table):
            continue
        table.part.root.set("ref", format_range(*grown))
        auto = table.part.root.find(_q("autoFilter"))
        if auto is not None and auto.get("ref"):
            a1, ac1, _, ac2 = parse_range(auto.get("ref"))
            auto.set("ref", format_range(a1, ac1, end, ac2))
        table.bounds = grown
        pkg.touch(table.part_name)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


# --------------------------------------------------------------------------------------------------------------
# Worksheet writing
# --------------------------------------------------------------------------------------------------------------

_Q_ROW, _Q_C, _Q_F, _Q_V, _Q_IS, _Q_T, _Q_EXT = (_q(t) for t in ("row", "c", "f", "v", "is", "t", "extLst"))
_PRESERVE = ' xml:space="preserve"'
_SIMPLE_TYPES = frozenset((str, int, bool, type(None)))  # values that are always writable
_ROW_OF = operator.itemgetter(0)
_COL_OF = operator.itemgetter(1)
_BEFORE, _AFTER, _AFTER_PREVIOUS, _FIRST = range(4)  # where a new cell goes in an existing row


def _plain_keys(keys: list) -> bool:
    """True when every key is a (row, col) tuple of ints inside the sheet: checked with a few C-level passes
    instead of a Python loop (the exact check, with its error message, runs only when this says no)."""
    try:
        if set(map(type, keys)) != {tuple} or set(map(len, keys)) != {2}:
            return False
        rows, cols = set(map(_ROW_OF, keys)), set(map(_COL_OF, keys))
        return (
            set(map(type, rows)) == {int} == set(map(type, cols))
            and 1 <= min(rows)
            and max(rows) <= MAX_ROW
            and 1 <= min(cols)
            and max(cols) <= MAX_COL
        )
    except Exception:  # noqa: BLE001 - anything odd: let the exact check decide
        return False


def _group(cells: Iterable[tuple[int, int]]) -> tuple[dict[int, list[int]], list[int]]:
    """Columns by row (in the order of ``cells``) and the sorted row numbers."""
    by_row: dict[int, list[int]] = {}
    for r, c in cells:
        by_row.setdefault(r, []).append(c)
    return by_row, sorted(by_row)


class _RowCells:
    """The ``<c>`` elements of one row, by column (built only for rows we write into)."""

    __slots__ = ("cols", "cells")

    def __init__(self, row: etree._Element) -> None:
        self.cols: list[int] = []
        self.cells: dict[int, etree._Element] = {}
        r = row.get("r")
        col = 0
        for c in row.iterchildren(_Q_C):
            ref = c.get("r")
            if ref:
                col = _ref_col(ref)
            else:  # the reference may be omitted: it is then the next column; make it explicit
                col += 1
                c.set("r", f"{col_letter(col)}{r}")
            self.cols.append(col)
            self.cells[col] = c
        if self.cols != sorted(self.cols):
            self.cols.sort()

    @classmethod
    def from_end(cls, row: etree._Element, first_col: int) -> _RowCells | None:
        """The cells from column ``first_col`` on plus the one before them: all that writing at ``first_col``
        and after needs, found walking back from the end of the row (rows can have thousands of cells). None
        when the row needs the full index: a cell without reference, or cells out of column order."""
        cols: list[int] = []
        cells: dict[int, etree._Element] = {}
        for c in row.iterchildren(_Q_C, reversed=True):
            ref = c.get("r")
            if not ref:
                return None
            col = _ref_col(ref)
            if cols and col >= cols[-1]:
                return None
            cols.append(col)
            cells[col] = c
            if col < first_col:
                break
        if cols and len(row) > cols[0]:  # more children than columns up to the last cell: not in order
            return None
        index = cls.__new__(cls)
        index.cols, index.cells = cols[::-1], cells
        return index


class _SheetWriter:
    """Writes values into one worksheet part; every check runs before the first change.

    Cells that exist are changed in place (they keep their style and everything else). New cells are written
    as XML text, exactly as lxml would serialise the elements, because building a million lxml elements one by
    one takes minutes:

    * rows below the last existing row (all rows of a new sheet, all rows after ``replace``) go into the output
      as that text (see _XmlPart.splice);
    * rows in a gap between existing rows, and new cells of existing rows, are parsed in one go and moved into
      place.

    For a big sheet whose rows are bytes (``raw``, see _RawRows) the same changes are made to the bytes
    (_write_raw); if a row to change turns out not to be plain, the part is parsed and the elements used.
    """

    def __init__(
        self, sheet: _SheetInfo, part: _XmlPart, styles: _Styles, is1904: bool, tables: list[_Table]
    ) -> None:
        self.name, self.sheet_id = sheet.name, sheet.sheet_id
        self.part = part
        self.root = part.root
        self.styles, self.is1904, self.tables = styles, is1904, tables
        self.removed_formulas: set[str] = set()
        sheet_data = self.root.find(_q("sheetData"))
        if sheet_data is None:
            raise PatchError(f'sheet "{self.name}" is damaged (it has no cell data section)')
        self.sheet_data = sheet_data
        self.raw = part.rows  # a big sheet's rows as bytes, or None: all in the tree
        self._cleared = False
        self._rows: dict[int, etree._Element] = {}  # the rows that exist before writing
        self._row_nums: list[int] = []
        self._row_cells: dict[int, _RowCells] = {}
        self._cells: dict[tuple[int, int], CellValue] = {}
        self._keys: list[tuple[int, int]] = []  # the keys of _cells in (row, column) order
        self._keys_in_order = True  # and _cells itself is in that order
        self._date_styles: dict[tuple[int, bool], int] = {}
        self._column_styles: dict[int, int] = {}
        # XML pieces of new cells by column: ('<c r="AB', style, string start, number start, bool start)
        self._new_cells: dict[int, tuple[str, int, str, str, str]] = {}
        self._bold_cells: dict[int, tuple[str, int, str, str, str]] = {}  # the same in bold rows
        self._last_date: tuple[object, int | float] = (None, 0)  # the last date written and its serial
        self._date_starts: dict[tuple[int, bool], str] = {}
        self._pending: list[
            tuple[int, etree._Element | None]
        ] = []  # where each new cell of an existing row goes
        self._pending_xml: list[str] = []  # and its XML
        self._index_rows()
        self._col_styles = self._read_col_styles()

    # -- indexes --------------------------------------------------------------------------------------------
    def _index_rows(self) -> None:
        if self.raw is not None:  # r -> where the row is in the bytes
            self._rows, self._row_nums = self.raw.rows, self.raw.nums  # type: ignore[assignment]
            return
        previous = 0
        for row in self.sheet_data.iterchildren(_Q_ROW):
            r = row.get("r")
            number = int(r) if r else previous + 1
            if not r:
                row.set("r", str(number))
            self._rows[number] = row
            self._row_nums.append(number)
            previous = number
        if any(a >= b for a, b in zip(self._row_nums, self._row_nums[1:])):
            self._row_nums.sort()

    def _read_col_styles(self) -> list[tuple[int, int, int]]:
        cols = self.root.find(_q("cols"))
        if cols is None:
            return []
        return [
            (int(c.get("min", "0")), int(c.get("max", "0")), int(c.get("style", "0")))
            for c in cols.iterchildren(_q("col"))
            if c.get("style") not in (None, "0")
        ]

    def _cells_of(self, r: int) -> _RowCells:
        cells = self._row_cells.get(r)
        if cells is None:
            cells = self._row_cells[r] = _RowCells(self._rows[r])
        return cells

    # -- checks ---------------------------------------------------------------------------------------------
    def prepare(self, cells: dict[tuple[int, int], CellValue], replace: bool) -> None:
        """Run every check and validate every value; raises PatchError before anything is changed."""
        self.check_writable(cells, replace)
        self._check_values(cells)
        self._cells = cells

    def _check_values(self, cells: dict[tuple[int, int], CellValue]) -> None:
        """Every value can be written (what _render refuses is refused here, in the order of ``cells``)."""
        if set(map(type, cells.values())) <= _SIMPLE_TYPES:
            return
        first_day = (EXCEL_EPOCH_1904 if self.is1904 else dt.date(1900, 1, 1)).toordinal()
        for key, value in cells.items():
            kind = type(value)
            if kind in _SIMPLE_TYPES:
                continue
            if kind is float:
                if value - value == 0:  # finite
                    continue
            elif kind is dt.datetime or kind is dt.date:
                if value.toordinal() >= first_day:
                    continue
            _render(value, _where(self.name, *key), self.is1904)

    def check_writable(self, cells: dict[tuple[int, int], CellValue], replace: bool) -> None:
        protection = self.root.find(_q("sheetProtection"))
        if protection is not None and _true(protection.get("sheet")):
            raise PatchError(
                f'sheet "{self.name}" is protected; unprotect it in Excel or let sheetflow write elsewhere'
            )
        keys = list(cells)
        if not _plain_keys(keys):
            for r, c in keys:
                if not (
                    isinstance(r, int) and isinstance(c, int) and 1 <= r <= MAX_ROW and 1 <= c <= MAX_COL
                ):
                    raise PatchError(
                        f'sheet "{self.name}": ({r!r}, {c!r}) is not a cell (rows 1-{MAX_ROW}, '
                        f"columns 1-{MAX_COL})"
                    )
        if replace and self.tables:
            raise PatchError(
                f'sheet "{self.name}" holds the Excel table "{self.tables[0].name}", so sheetflow will '
                f"not clear it; remove the table or let sheetflow use another sheet"
            )
        if not replace:  # clearing a cell (None) also deletes its formula: checked like any other write
            formulas = [
                f
                for f in self.sheet_data.iter(_Q_F)
                if f.get("ref") and f.get("t") in ("shared", "array", "dataTable")
            ]
            if formulas:
                self._check_formulas(formulas, *_group(cells))
        if self.root.find(_q("mergeCells")) is not None:
            # clearing a covered cell of a merged range is harmless
            self._check_merges(*_group(key for key, value in cells.items() if value is not None))
        self._check_table_headers(cells)
        self._keys_in_order = not any(map(operator.ge, keys, itertools.islice(keys, 1, None)))
        if not self._keys_in_order:
            keys.sort()
        self._keys = keys

    def _cells_in(
        self, bounds: tuple[int, int, int, int], by_row: dict[int, list[int]], rows: list[int]
    ) -> Iterator[tuple[int, int]]:
        r1, c1, r2, c2 = bounds
        for i in range(bisect.bisect_left(rows, r1), bisect.bisect_right(rows, r2)):
            for c in by_row[rows[i]]:
                if c1 <= c <= c2:
                    yield rows[i], c

    def _check_merges(self, by_row: dict[int, list[int]], rows: list[int]) -> None:
        merges = self.root.find(_q("mergeCells"))
        if merges is None:
            return
        for merge in merges.iterchildren(_q("mergeCell")):
            ref = merge.get("ref", "")
            m = _RANGE_ROWS_RE.match(ref)  # cheap row test first: sheets can have 50,000 merged ranges
            if m is None:
                continue
            top, bottom = sorted((int(m.group(1)), int(m.group(2) or m.group(1))))
            i = bisect.bisect_left(rows, top)
            if i == len(rows) or rows[i] > bottom:
                continue
            bounds = parse_range(ref)
            for r, c in self._cells_in(bounds, by_row, rows):
                if (r, c) != bounds[:2]:
                    raise PatchError(
                        f"{_where(self.name, r, c)} is inside the merged cells {format_range(*bounds)}; "
                        f"only its top-left cell {format_range(*bounds[:2], *bounds[:2])} can hold a "
                        f"value. Unmerge the cells in Excel or let sheetflow write elsewhere"
                    )

    def _check_formulas(
        self, formulas: list[etree._Element], by_row: dict[int, list[int]], rows: list[int]
    ) -> None:
        """``formulas``: the <f> elements of shared, array and data-table formulas with a range."""
        for f in formulas:
            kind, ref = f.get("t"), f.get("ref")
            cell = f.getparent()
            try:
                r, c = parse_cell(cell.get("r", ""))
                bounds = parse_range(ref)
            except ValueError:
                continue
            if kind == "shared":
                if c in by_row.get(r, ()):
                    raise PatchError(
                        f"{_where(self.name, r, c)} holds a shared formula that other cells use; "
                        f"sheetflow will not overwrite it"
                    )
                continue
            for wr, wc in self._cells_in(bounds, by_row, rows):
                what = "an array formula" if kind == "array" else "a what-if data table"
                raise PatchError(
                    f"{_where(self.name, wr, wc)} is part of {what} ({format_range(*bounds)}); "
                    f"sheetflow will not overwrite it"
                )

    def _check_table_headers(self, cells: dict[tuple[int, int], CellValue]) -> None:
        for table in self.tables:
            r1, c1, _, c2 = table.bounds
            if not table.header_rows:
                continue
            for c in range(c1, c2 + 1):
                if (r1, c) not in cells:
                    continue
                header = table.columns[c - c1] if c - c1 < len(table.columns) else None
                if cells[(r1, c)] != header:
                    raise PatchError(
                        f'{_where(self.name, r1, c)} is the header of column "{header}" of the Excel '
                        f'table "{table.name}"; sheetflow will not rename table columns'
                    )

    # -- writing --------------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Drop every row (replace=True): the sheet belongs to sheetflow."""
        self._cleared = True
        if self.raw is not None:
            self.raw.clear()
            self._rows, self._row_nums = self.raw.rows, self.raw.nums  # type: ignore[assignment]
            return
        for row in list(self.sheet_data.iterchildren(_Q_ROW)):
            for f in row.iter(_Q_F):
                self.removed_formulas.add(f.getparent().get("r", ""))
            self.sheet_data.remove(row)
        self._rows.clear()
        self._row_nums.clear()
        self._row_cells.clear()

    def write(self, bold_rows: Iterable[int] = ()) -> dict[int, list[int]]:
        """Write the prepared cells in (row, column) order; returns the columns that now hold a value, by row."""
        if not self._keys:
            return {}
        if self.raw is not None:
            return self._write_raw(bold_rows)
        bold = set(bold_rows)
        rows, cells = self._rows, self._cells
        last = self._row_nums[-1] if self._row_nums else 0
        p = self._prefix()
        written: dict[int, list[int]] = {}
        tail: list[str] = []  # new rows below the last existing row, as text
        gaps: list[str] = []  # new rows between existing rows, as text
        gap_rows: list[int] = []
        if self._keys[0][0] > last:  # only new rows below the existing ones (a new sheet, an appended log)
            self._rows_xml(self._items(), bold, p, tail, written)
        else:
            for r, keys in itertools.groupby(self._keys, _ROW_OF):
                row = rows.get(r)
                if row is not None:
                    done = self._write_row(r, row, list(keys), r in bold, p)
                    if done:
                        written[r] = done
                else:
                    self._rows_xml(
                        ((key, cells[key]) for key in keys), bold, p, tail if r > last else gaps, written
                    )
                    if r < last and r in written:
                        gap_rows.append(r)
        if self._pending:
            self._insert_cells(p)
        if gaps:
            self._insert_rows(gap_rows, gaps, p)
        if tail:
            self.part.splice(self.sheet_data, "".join(tail).encode("utf-8"))
        return written

    def _items(self) -> Iterable[tuple[tuple[int, int], CellValue]]:
        """The cells to write, in (row, column) order."""
        if self._keys_in_order:
            return self._cells.items()
        return zip(self._keys, map(self._cells.__getitem__, self._keys))

    # -- existing rows --------------------------------------------------------------------------------------
    def _write_row(
        self, r: int, row: etree._Element, keys: list[tuple[int, int]], bold_row: bool, p: str
    ) -> list[int]:
        """Overwrite existing cells in place; new cells are made as text and moved in by _insert_cells."""
        index = self._row_cells.get(r) or _RowCells.from_end(row, keys[0][1]) or self._cells_of(r)
        cols, by_col = index.cols, index.cells
        cells, pending, pending_xml = self._cells, self._pending, self._pending_xml
        done: list[int] = []
        added: list[int] = []
        chain = False  # the previous new cell went after every existing cell: the next one goes after it
        for key in keys:
            c = key[1]
            value = _render(cells[key], _where(self.name, r, c), self.is1904)
            cell = by_col.get(c)
            if value[0] == "none":
                if cell is not None:
                    ext = self._empty(cell)
                    if ext is not None:
                        cell.append(ext)
                continue
            base = self.styles.bold() if bold_row else None
            if cell is None:
                style = self._inherited_style(row, c) if base is None else base
                pending_xml.append(self._cell_xml(f'<{p}c r="{col_letter(c)}{r}"', style, value, p))
                if cols and c < cols[-1]:
                    pending.append((_BEFORE, by_col[cols[bisect.bisect_left(cols, c)]]))
                elif chain:
                    pending.append((_AFTER_PREVIOUS, None))
                elif cols:
                    pending.append((_AFTER, by_col[cols[-1]]))
                    chain = True
                else:
                    pending.append((_FIRST, row))
                    chain = True
                added.append(c)
            else:
                if base is not None:
                    cell.set("s", str(base))
                self._set_cell(cell, value)
            done.append(c)
        if added:
            self._widen_spans(row, added[0], added[-1])
        return done

    def _insert_cells(self, p: str) -> None:
        """Parse the new cells of existing rows (one parse for all) and put each one in its place."""
        previous = None
        for (how, anchor), cell in zip(self._pending, list(self._parse_fragment(self._pending_xml, p))):
            if how == _BEFORE:
                anchor.addprevious(cell)
            elif how == _AFTER:
                anchor.addnext(cell)
            elif how == _AFTER_PREVIOUS:
                previous.addnext(cell)
            else:
                anchor.insert(0, cell)
            previous = cell
        self._pending, self._pending_xml = [], []

    def _inherited_style(self, row: etree._Element, c: int) -> int:
        """A new cell shows the row's style (if the row is formatted) or the column's, as Excel does."""
        if row.get("customFormat") is not None and _true(row.get("customFormat")) and row.get("s"):
            return int(row.get("s"))
        return self._column_style(c)

    def _column_style(self, c: int) -> int:
        style = self._column_styles.get(c)
        if style is None:
            style = next((s for lo, hi, s in self._col_styles if lo <= c <= hi), 0)
            self._column_styles[c] = style
        return style

    @staticmethod
    def _widen_spans(row: etree._Element, lo: int, hi: int) -> None:
        """Make the row's ``spans`` hint cover the new cells in columns lo..hi."""
        spans = row.get("spans")
        if not spans:
            return
        m = re.fullmatch(r"(\d+):(\d+)", spans)
        if m is None:
            del row.attrib["spans"]  # an optimisation hint only; wrong is worse than absent
        elif lo < int(m.group(1)) or hi > int(m.group(2)):
            row.set("spans", f"{min(int(m.group(1)), lo)}:{max(int(m.group(2)), hi)}")

    def _empty(self, cell: etree._Element) -> etree._Element | None:
        """Remove the value and formula of a cell (keeping its style); returns a cell-level extLst, if any."""
        ext = None
        for child in list(cell):
            if child.tag == _Q_F:
                self.removed_formulas.add(cell.get("r", ""))
            if child.tag == _Q_EXT:
                ext = child
            cell.remove(child)
        for attr in ("t", "cm", "vm"):
            cell.attrib.pop(attr, None)
        return ext

    def _date_style(self, style: int, with_time: bool) -> int:
        key = (style, with_time)
        new_style = self._date_styles.get(key)
        if new_style is None:
            new_style = self._date_styles[key] = self.styles.date_style(style, with_time)
        return new_style

    def _set_cell(self, cell: etree._Element, value: _Rendered, fresh: bool = False) -> None:
        """Put a rendered value into a cell; ``fresh``: the cell was just created (nothing to remove)."""
        kind, text, with_time = value
        ext = None if fresh else self._empty(cell)
        if kind == "str":
            cell.set("t", "inlineStr")
            t = etree.SubElement(etree.SubElement(cell, _Q_IS), _Q_T)
            t.text = text
            if text != text.strip() or "\n" in text or "\r" in text or "\t" in text:
                t.set(XML_SPACE, "preserve")
        else:
            if kind == "bool":
                cell.set("t", "b")
            elif kind == "date":
                style = int(cell.get("s", "0") or 0)
                new_style = self._date_style(style, with_time)
                if new_style != style:
                    cell.set("s", str(new_style))
            etree.SubElement(cell, _Q_V).text = text
        if ext is not None:
            cell.append(ext)

    # -- new cells as XML text ------------------------------------------------------------------------------
    def _prefix(self) -> str:
        """The prefix lxml gives a new main-namespace element in sheetData: usually "", sometimes "x:"."""
        probe = etree.SubElement(self.sheet_data, _Q_ROW)
        prefix = probe.prefix
        self.sheet_data.remove(probe)
        return f"{prefix}:" if prefix else ""

    def _new_cell(self, c: int, bold: bool, p: str) -> tuple[str, int, str, str, str]:
        """The pieces of a new cell's XML in column c of a new row (bold header row or not)."""
        style = self.styles.bold() if bold else self._column_style(c)
        s_attr = f' s="{style}"' if style else ""
        pieces = (self._bold_cells if bold else self._new_cells)[c] = (
            f'<{p}c r="{col_letter(c)}',
            style,
            f'{s_attr} t="inlineStr"><{p}is><{p}t',
            f"{s_attr}><{p}v>",
            f'{s_attr} t="b"><{p}v>',
        )
        return pieces

    def _date_start(self, style: int, with_time: bool, p: str) -> str:
        key = (style, with_time)
        start = self._date_starts.get(key)
        if start is None:
            date_style = self._date_style(style, with_time)
            start = self._date_starts[key] = f' s="{date_style}"><{p}v>' if date_style else f"><{p}v>"
        return start

    def _rows_xml(
        self,
        items: Iterable[tuple[tuple[int, int], CellValue]],
        bold: set[int],
        p: str,
        out: list[str],
        written: dict[int, list[int]],
    ) -> None:
        """Append rows that do not exist yet to ``out`` as XML text: byte for byte what lxml writes for the
        elements _write_row would create (same attributes in the same order, same escaping). ``items``: their
        ((row, col), value) in order; a row of None values is not written at all. Adds the columns written to
        ``written``.

        This runs once per new cell, so the common cases are inlined: _text_xml for short plain text,
        excel_serial for dates (repeated dates, like a run's timestamp, reuse the previous cell's serial)."""
        is1904, half = self.is1904, MAX_TEXT // 2
        str_end, v_end, row_end = f"</{p}t></{p}is></{p}c>", f"</{p}v></{p}c>", f"</{p}row>"
        epoch = _EPOCH_1904 if is1904 else _EPOCH_1900
        last_date, last_serial = self._last_date
        current, rq, cols, new_cells, bold_row = None, "", [], self._new_cells, False
        for (r, c), value in items:
            if value is None:
                continue
            if r != current:
                bold_row = r in bold
                new_cells = self._bold_cells if bold_row else self._new_cells
            head, style, str_start, num_start, bool_start = new_cells.get(c) or self._new_cell(c, bold_row, p)
            rq_now = rq if r == current else f'{r}"'
            kind = type(value)
            if kind is str:
                if (
                    len(value) <= half
                    and value.isprintable()
                    and "&" not in value
                    and "<" not in value
                    and ">" not in value
                ):  # nothing to clean or escape but _x0041_-like text
                    if "_x" in value:
                        value = _ESCAPE_LIKE_RE.sub(r"_x005F_\1", value)
                    if value.strip() == value:
                        xml = f"{head}{rq_now}{str_start}>{value}{str_end}"
                    else:
                        xml = f"{head}{rq_now}{str_start}{_PRESERVE}>{value}{str_end}"
                else:
                    text, preserve = _text_xml(value)
                    xml = f"{head}{rq_now}{str_start}{_PRESERVE if preserve else ''}>{text}{str_end}"
            elif kind is int or (kind is float and value - value == 0):
                xml = f"{head}{rq_now}{num_start}{value!r}{v_end}"
            elif kind is dt.datetime or kind is dt.date:
                if value != last_date or type(value) is not type(last_date):
                    # excel_serial, inlined (the value was checked in prepare: not before the epoch)
                    ordinal = value.toordinal()
                    serial = ordinal - epoch if is1904 else ordinal - epoch - (ordinal < _LEAP_BUG_END)
                    if kind is dt.datetime:
                        seconds = (
                            value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
                        )
                        if seconds:
                            serial = serial + seconds / 86400
                    last_date, last_serial = value, serial
                serial = last_serial  # a float when there is a time of day
                xml = f"{head}{rq_now}{self._date_start(style, type(serial) is float, p)}{serial!r}{v_end}"
            elif kind is bool:
                xml = f"{head}{rq_now}{bool_start}{'1' if value else '0'}{v_end}"
            else:
                rendered = _render(value, _where(self.name, r, c), is1904)
                if rendered[0] == "none":
                    continue
                xml = self._cell_xml(f"{head}{rq_now}", style, rendered, p)
            if r != current:  # the first cell of a row
                if current is not None:
                    out.append(row_end)
                out.append(f'<{p}row r="{r}">')
                current, rq = r, rq_now
                cols = written[r] = []
            out.append(xml)
            cols.append(c)
        if current is not None:
            out.append(row_end)
        self._last_date = last_date, last_serial

    def _cell_xml(self, start: str, style: int, value: _Rendered, p: str) -> str:
        """A new cell as XML text, for any rendered value (``start``: '<c r="B7"'); the general form of what
        _row_xml inlines."""
        kind, text, with_time = value
        if kind == "date":
            style = self._date_style(style, with_time)
        s_attr = f' s="{style}"' if style else ""
        if kind == "str":
            preserve = text != text.strip() or "\n" in text or "\r" in text or "\t" in text
            return (
                f'{start}{s_attr} t="inlineStr"><{p}is><{p}t{_PRESERVE if preserve else ""}>'
                f"{text.translate(_TEXT_ESCAPES)}</{p}t></{p}is></{p}c>"
            )
        t_attr = ' t="b"' if kind == "bool" else ""
        return f"{start}{s_attr}{t_attr}><{p}v>{text}</{p}v></{p}c>"

    @staticmethod
    def _parse_fragment(pieces: list[str], p: str) -> etree._Element:
        """Parse generated elements in one go, inside a sheetData element that declares the main namespace."""
        xmlns = f"xmlns:{p[:-1]}" if p else "xmlns"
        text = f'<{p}sheetData {xmlns}="{NS_MAIN}">{"".join(pieces)}</{p}sheetData>'
        return etree.fromstring(text.encode("utf-8"), _PARSER)

    def _insert_rows(self, gap_rows: list[int], gaps: list[str], p: str) -> None:
        """Put the new rows that fall between existing rows before the next existing row."""
        for r, row in zip(gap_rows, list(self._parse_fragment(gaps, p))):
            following = self._row_nums[bisect.bisect_right(self._row_nums, r)]
            self._rows[following].addprevious(row)

    def update_dimension(self, written: dict[int, list[int]], replace: bool, was_empty: bool) -> None:
        dim = self.root.find(_q("dimension"))
        if dim is None:
            return
        if not written:
            if replace:
                dim.set("ref", "A1")
            return
        rows = list(written)
        box = [
            min(rows),
            min(min(cs) for cs in written.values()),
            max(rows),
            max(max(cs) for cs in written.values()),
        ]
        if not (replace or was_empty):
            try:
                old = parse_range(dim.get("ref", "A1"))
                box = [min(box[0], old[0]), min(box[1], old[1]), max(box[2], old[2]), max(box[3], old[3])]
            except ValueError:
                pass
        dim.set("ref", format_range(*box))

    @property
    def is_empty(self) -> bool:
        if self.raw is not None:
            return self.raw.is_empty()
        return not any(len(row) for row in self._rows.values())

    # -- big sheets: rows as bytes (_RawRows) ---------------------------------------------------------------
    def _to_tree(self) -> None:
        """The rows are not plain enough to change as bytes: parse the whole part and use the elements."""
        self.part.parse_fully()
        self.raw = None
        self.root = self.part.root
        self.sheet_data = self.root.find(_q("sheetData"))
        self._rows, self._row_nums, self._row_cells = {}, [], {}
        self._index_rows()
        if self._cleared:
            self.clear()

    def _write_raw(self, bold_rows: Iterable[int]) -> dict[int, list[int]]:
        """write() for a sheet whose rows are bytes: the same changes, made to the bytes."""
        bold = set(bold_rows)
        raw = self.raw
        p = self._prefix()
        rows, cells = raw.rows, self._cells
        last = raw.nums[-1] if raw.nums else 0
        written: dict[int, list[int]] = {}
        tail: list[str] = []
        groups = itertools.groupby(self._keys, _ROW_OF)
        if self._keys[0][0] > last:  # only new rows below the existing ones
            self._rows_xml(self._items(), bold, p, tail, written)
            groups = iter(())
        for r, keys in groups:
            if r in rows:
                keys = list(keys)
                plan = raw.cells(r, list(map(_COL_OF, keys))) if p.encode() == raw.prefix else None
                if plan is None:
                    # Not plain: use the tree. The bytes changed so far are dropped with the rest of the
                    # _RawRows; the styles asked for so far are asked for again in the same order (no change).
                    self._to_tree()
                    return self.write(bold_rows)
                done = self._write_raw_row(r, plan, keys, r in bold, p)
                if done:
                    written[r] = done
            elif r > last:
                self._rows_xml(((key, cells[key]) for key in keys), bold, p, tail, written)
            else:  # a new row between existing rows: before the next one
                out: list[str] = []
                self._rows_xml(((key, cells[key]) for key in keys), bold, p, out, written)
                if out:
                    at = rows[raw.nums[bisect.bisect_right(raw.nums, r)]][0]
                    raw.edits.append((at, at, "".join(out).encode("utf-8")))
        if tail:
            raw.edits.append((raw.end, raw.end, "".join(tail).encode("utf-8")))
        return written

    def _write_raw_row(
        self,
        r: int,
        plan: tuple[list[int], dict[int, tuple[int, int, int, int]], bytes],
        keys: list[tuple[int, int]],
        bold_row: bool,
        p: str,
    ) -> list[int]:
        """_write_row for a row as bytes (``plan``: its cells from _RawRows.cells)."""
        raw = self.raw
        row_start, tag_end, close, row_end = raw.rows[r]
        cols, cells, tag = plan
        edits = raw.edits
        mark = len(edits)  # a changed start tag of the row goes here, before the changes inside it
        row_attrs: list[list[bytes]] | None = None
        new_cells: list[bytes] = []  # for a row written as <row .../>: its new cells
        done: list[int] = []
        added: list[int] = []
        for key in keys:
            value, c = self._cells[key], key[1]
            value = (
                ("num", str(value), False)
                if type(value) is int
                else _render(value, _where(self.name, r, c), self.is1904)
            )
            cell = cells.get(c)
            if value[0] == "none":
                if cell is not None:
                    edits.append((cell[0], cell[3], self._raw_cell(cell, value, None, p)))
                continue
            base = self.styles.bold() if bold_row else None
            if cell is not None:
                edits.append((cell[0], cell[3], self._raw_cell(cell, value, base, p)))
                done.append(c)
                continue
            if base is not None:
                style = base
            elif b"customFormat" not in tag:
                style = self._column_style(c)
            else:  # _inherited_style
                if row_attrs is None:
                    row_attrs = _attr_list(tag)
                custom, own = _attr_get(row_attrs, b"customFormat"), _attr_get(row_attrs, b"s")
                style = int(own) if custom is not None and _true(custom) and own else self._column_style(c)
            xml = self._cell_xml(f'<{p}c r="{col_letter(c)}{r}"', style, value, p).encode("utf-8")
            if close < 0:
                new_cells.append(xml)
            else:  # where _insert_cells would put it
                if cols and c < cols[-1]:
                    at = cells[cols[bisect.bisect_left(cols, c)]][0]
                elif cols:
                    at = cells[cols[-1]][3]
                else:
                    at = close
                edits.append((at, at, xml))
            added.append(c)
            done.append(c)
        if added and (close < 0 or b"spans" in tag):
            if row_attrs is None:
                row_attrs = _attr_list(tag)
            spans = _attr_get(row_attrs, b"spans")
            changed = False
            if spans:  # as _widen_spans
                m = re.fullmatch(r"(\d+):(\d+)", spans)
                if m is None:
                    _attr_del(row_attrs, b"spans")
                    changed = True
                elif added[0] < int(m.group(1)) or added[-1] > int(m.group(2)):
                    _attr_set(
                        row_attrs,
                        b"spans",
                        f"{min(int(m.group(1)), added[0])}:{max(int(m.group(2)), added[-1])}",
                    )
                    changed = True
            name = raw.prefix + b"row"
            if close < 0:
                edits.insert(
                    mark,
                    (row_start, row_end, _start_tag(name, row_attrs) + b"".join(new_cells) + raw.row_end_tag),
                )
            elif changed:
                edits.insert(mark, (row_start, tag_end, _start_tag(name, row_attrs)))
        return done

    def _raw_cell(self, cell: tuple[int, int, int, int], value: _Rendered, base: int | None, p: str) -> bytes:
        """An existing cell with a new value, as bytes: what _set_cell (or clearing) does to the element."""
        raw = self.raw
        start, tag_end, close, _ = cell
        attrs = _attr_list(raw.data[start + len(raw.cell_name) + 1 : tag_end])
        if base is not None:
            _attr_set(attrs, b"s", str(base))
        for name in (b"t", b"cm", b"vm"):
            _attr_del(attrs, name)
        kind, text, with_time = value
        children = ""
        if kind == "str":
            _attr_set(attrs, b"t", "inlineStr")
            preserve = text != text.strip() or "\n" in text or "\r" in text or "\t" in text
            children = (
                f"<{p}is><{p}t{_PRESERVE if preserve else ''}>{text.translate(_TEXT_ESCAPES)}</{p}t></{p}is>"
            )
        elif kind != "none":
            if kind == "bool":
                _attr_set(attrs, b"t", "b")
            elif kind == "date":
                style = int(_attr_get(attrs, b"s") or 0)
                new_style = self._date_style(style, with_time)
                if new_style != style:
                    _attr_set(attrs, b"s", str(new_style))
            children = f"<{p}v>{text}</{p}v>"
        lead = b""  # the element's text before its first child stays
        if close >= 0:
            inner = raw.data[tag_end:close]
            lt = inner.find(b"<")
            lead = inner if lt < 0 else inner[:lt]
        if not (children or lead):
            return _start_tag(raw.cell_name, attrs, empty=True)
        return _start_tag(raw.cell_name, attrs) + lead + children.encode("utf-8") + raw.cell_end_tag


# --------------------------------------------------------------------------------------------------------------
# Deleting rows (sheetflow's log sheets: older rows go to an archive workbook)
# --------------------------------------------------------------------------------------------------------------


class _RowMap:
    """Where rows go when ``deleted`` rows are deleted and the rows below move up (Excel's "Delete row")."""

    def __init__(self, deleted: Iterable[int]) -> None:
        self.deleted = sorted(set(deleted))

    def __bool__(self) -> bool:
        return bool(self.deleted)

    def row(self, r: int) -> int | None:
        i = bisect.bisect_left(self.deleted, r)
        if i < len(self.deleted) and self.deleted[i] == r:
            return None
        return r - i

    def span(self, r1: int, r2: int) -> tuple[int, int] | None:
        """The rows r1..r2 that are left, renumbered; None if all of them are deleted."""
        lo = r1 - bisect.bisect_left(self.deleted, r1)
        hi = r2 - bisect.bisect_right(self.deleted, r2)
        return (lo, hi) if lo <= hi else None

    def ref(self, ref: str) -> str | None:
        """An A1 reference or range (``$`` kept, whole columns unchanged) after the deletion; None if gone."""
        m = _A1_RANGE_RE.fullmatch(ref)
        if m is None:
            return ref
        c1, d1, r1, c2, d2, r2 = m.groups()
        if r1 is None:
            return ref  # A:C, whole columns
        r1 = int(r1)
        end = int(r2) if r2 is not None else r1
        span = self.span(r1, end)
        if span is None:
            return None
        if r2 is None:
            return f"{c1}{d1}{span[0]}"
        return f"{c1}{d1}{span[0]}:{c2}{d2}{span[1]}"

    def sqref(self, sqref: str) -> str | None:
        kept = [r for r in (self.ref(part) for part in sqref.split()) if r is not None]
        return " ".join(kept) if kept else None


_A1_RANGE_RE = re.compile(r"(\$?[A-Za-z]{1,3})(\$?)([0-9]{1,7})?(?::(\$?[A-Za-z]{1,3})(\$?)([0-9]{1,7}))?")
_ROW_START_RE = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?row(?=[\s/>])[^>]*>")
_ROW_NUMBER_RE = re.compile(rb"""(\sr\s*=\s*["'])([0-9]{1,7})(["'])""")
_CELL_REF_RE = re.compile(
    rb"""(<(?:[A-Za-z_][\w.\-]*:)?c\s(?:[^>]*?\s)?r\s*=\s*["'])(\$?[A-Za-z]{1,3})([0-9]{1,7})(["'])"""
)
_FORMULA_RE = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?f[\s/>]")
_SHEET_DATA_RE = re.compile(rb"<(?:([A-Za-z_][\w.\-]*):)?sheetData(?=[\s/>])[^>]*?(/?)>")


def _delete_rows(data: bytes, rows: _RowMap, sheet: str) -> bytes:
    """The worksheet part with ``rows`` deleted and the rows below renumbered, as bytes (a log sheet can have
    a million rows: no tree is built). Refuses sheets with formulas, whose references would have to move."""
    m = _SHEET_DATA_RE.search(data)
    if m is None or m.group(2):
        return data
    prefix = m.group(1) + b":" if m.group(1) else b""
    start = m.end()
    end = data.find(b"</" + prefix + b"sheetData>", start)
    if end < 0:
        return data
    if _FORMULA_RE.search(data, start, end):
        raise PatchError(
            f'sheet "{sheet}" holds formulas, so sheetflow will not move its rows to the archive; '
            f"move the formulas to another sheet"
        )
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    deleted = rows.deleted
    previous, copy_from = 0, 0
    starts = [(row.start(), row.group(0)) for row in _ROW_START_RE.finditer(data, start, end)]
    for i, (row_start, tag) in enumerate(starts):
        row_end = starts[i + 1][0] if i + 1 < len(starts) else end
        number = _ROW_NUMBER_RE.search(tag)
        r = int(number.group(2)) if number else previous + 1
        previous = r
        shift = bisect.bisect_left(deleted, r)
        if shift < len(deleted) and deleted[shift] == r:  # deleted: leave it out
            if copy_from < row_start:
                pieces.append(view[copy_from:row_start])
            copy_from = row_end
            continue
        if shift == 0:  # above every deleted row: copied as it is
            continue
        if copy_from < row_start:
            pieces.append(view[copy_from:row_start])
        segment = data[row_start:row_end]
        if number:
            segment = _ROW_NUMBER_RE.sub(
                lambda n: b"%s%d%s" % (n.group(1), r - shift, n.group(3)), segment, 1
            )
        new = str(r - shift).encode()
        segment = _CELL_REF_RE.sub(
            lambda c: c.group(1) + c.group(2) + new + c.group(4) if int(c.group(3)) == r else c.group(0),
            segment,
        )
        pieces.append(segment)
        copy_from = row_end
    pieces.append(view[copy_from:])
    return b"".join(pieces)


_REF_ATTRS = ("ref", "sqref", "activeCell", "topLeftCell")
_KEEP_WHEN_GONE = {"dimension", "selection", "pane", "autoFilter", "sortState", "table"}


def _shift_refs(root: etree._Element, rows: _RowMap, skip: etree._Element | None = None) -> bool:
    """Move every cell reference of a part (outside ``skip``, the rows) after a row deletion; elements that
    only covered deleted rows go (a merged range, a validation, a hyperlink), the others shrink or move."""
    changed = False
    doomed: list[etree._Element] = []
    for el in root.iter():
        if el is skip or not isinstance(el.tag, str):
            continue
        local = etree.QName(el).localname
        if local == "sqref" and el.text:  # x14 extensions: <xm:sqref>A2:A9</xm:sqref>
            new = rows.sqref(el.text)
            if new != el.text:
                changed = True
                if new is None:
                    doomed.append(el.getparent())
                else:
                    el.text = new
            continue
        for attr in _REF_ATTRS:
            value = el.get(attr)
            if not value:
                continue
            new = rows.sqref(value) if attr == "sqref" else rows.ref(value)
            if new == value:
                continue
            changed = True
            if new is not None:
                el.set(attr, new)
            elif local in _KEEP_WHEN_GONE:
                el.set(attr, "A1" if local != "autoFilter" else value)
            else:
                doomed.append(el)
    for el in doomed:
        parent = el.getparent()
        if parent is None:
            continue
        parent.remove(el)
        if parent.get("count") is not None:
            parent.set("count", str(len(parent)))
        if len(parent) == 0 and etree.QName(parent).localname in (
            "mergeCells",
            "dataValidations",
            "hyperlinks",
        ):
            parent.getparent().remove(parent)
    return changed


_NAME_REF_RE = re.compile(
    r"((?:'(?:[^']|'')+'|[^\s!'(),=+\-*/&^<>:;{}\"\[\]]+))!"
    r"(\$?[A-Za-z]{1,3}\$?[0-9]{1,7}(?::\$?[A-Za-z]{1,3}\$?[0-9]{1,7})?)"
)


def _after_row_deletion(
    pkg: _Package, book: _Workbook, sheet: _SheetInfo, part: _XmlPart, rows: _RowMap
) -> None:
    """Everything outside the rows that names a row of the sheet: merged cells, conditional formats,
    validations, hyperlinks, the dimension, the sheet's Excel tables and the workbook's defined names."""
    sheet_data = part.root.find(_q("sheetData"))
    _shift_refs(part.root, rows, skip=sheet_data if part.rows is None else None)
    rels = pkg.rels(sheet.part)
    for rel in rels.of_type(REL_TABLE):
        name = rels.target(rel)
        if name is None or not pkg.exists(name):
            continue
        table = pkg.xml(name)
        root = table.root
        try:
            r1, c1, r2, c2 = parse_range(root.get("ref", ""))
        except ValueError:
            continue
        span = rows.span(r1, r2) or (r1, r1)
        header = int(root.get("headerRowCount", "1") or 1) + int(root.get("totalsRowCount", "0") or 0)
        bottom = max(span[1], span[0] + max(header, 1))  # a table keeps one data row, even an empty one
        _shift_refs(root, rows)
        root.set("ref", format_range(span[0], c1, bottom, c2))
        auto = root.find(_q("autoFilter"))
        if auto is not None and auto.get("ref"):
            a1, ac1, _, ac2 = parse_range(auto.get("ref"))
            auto.set("ref", format_range(a1, ac1, bottom, ac2))
        pkg.touch(name)
    names = book.part.root.find(_q("definedNames"))
    if names is None:
        return
    changed = False

    def move(m: re.Match[str]) -> str:
        target = m.group(1)
        shown = target[1:-1].replace("''", "'") if target.startswith("'") else target
        if shown != sheet.name:
            return m.group(0)
        new = rows.ref(m.group(2))
        return f"{target}!{new}" if new is not None else "#REF!"

    for dn in names.iterchildren(_q("definedName")):
        if dn.text and "!" in dn.text:
            text = _NAME_REF_RE.sub(move, dn.text)
            if text != dn.text:
                dn.text, changed = text, True
    if changed:
        pkg.touch(book.part_name)


# --------------------------------------------------------------------------------------------------------------
# calcChain
# --------------------------------------------------------------------------------------------------------------


def _prune_calc_chain(
    pkg: _Package, book: _Workbook, content_types: _ContentTypes, removed: dict[int, set[str]]
) -> None:
    """Drop calcChain entries of formulas we removed: Excel reports a corrupt file for entries without formula.
    In calcChain ``i`` is the sheetId and, when omitted, repeats the previous entry's."""
    if not any(removed.values()):
        return
    rels = book.rels.of_type(REL_CALC_CHAIN)
    name = book.rels.target(rels[0]) if rels else None
    if name is None or not pkg.exists(name):
        return
    part = pkg.xml(name)
    current, previous_kept = 0, None
    pending_level = False
    changed = False
    for entry in list(part.root.iterchildren(_q("c"))):
        current = int(entry.get("i") or current)
        if entry.get("r") in removed.get(current, ()):
            pending_level = pending_level or _true(entry.get("l"))
            part.root.remove(entry)
            changed = True
            continue
        if entry.get("i") is None and current and previous_kept != current:
            entry.set("i", str(current))
        if pending_level and entry.get("l") is None:
            entry.set("l", "1")
        pending_level = False
        previous_kept = current
    if not changed:
        return
    if len(part.root.findall(_q("c"))) == 0:
        pkg.remove(name)
        book.rels.remove(rels[0])
        content_types.remove_override(name)
    else:
        pkg.touch(name)


# --------------------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------------------


def _merge_patches(patches: list[SheetPatch]) -> list[SheetPatch]:
    """Several patches for one sheet become one (later values win)."""
    merged: dict[str, SheetPatch] = {}
    for patch in patches:
        if not isinstance(patch, SheetPatch):
            raise PatchError(f"internal error: expected SheetPatch, got {type(patch).__name__}")
        current = merged.get(patch.sheet)
        if current is None:
            merged[patch.sheet] = SheetPatch(
                patch.sheet, dict(patch.cells), patch.new, patch.replace, tuple(patch.delete_rows)
            )
            continue
        if patch.delete_rows or current.delete_rows:
            raise PatchError(f'internal error: rows of sheet "{patch.sheet}" are deleted by two patches')
        if patch.new is not None and current.new is not None:
            raise PatchError(f'sheet "{patch.sheet}" is created twice in one write')
        current.cells.update(patch.cells)
        current.new = current.new or patch.new
        current.replace = current.replace or patch.replace
    return list(merged.values())


def _target_sheet(book: _Workbook, patch: SheetPatch, content_types: _ContentTypes) -> _SheetInfo:
    if patch.new is not None:
        return book.add_sheet(patch.sheet, patch.new, content_types)
    sheet = book.sheet(patch.sheet)
    if sheet is None:
        names = ", ".join(f'"{s.name}"' for s in book.sheets)
        raise PatchError(f'there is no sheet "{patch.sheet}" in {book.pkg.path.name} (sheets: {names})')
    if sheet.kind != "worksheet":
        what = "a chart sheet" if sheet.kind == "chartsheet" else f"not a worksheet ({sheet.kind})"
        raise PatchError(f'sheet "{sheet.name}" is {what}; sheetflow can only write values into worksheets')
    if sheet.part is None or not book.pkg.exists(sheet.part):
        raise PatchError(f'{book.pkg.path.name} is damaged: the part of sheet "{sheet.name}" is missing')
    return sheet


def _prepare(
    pkg: _Package, book: _Workbook, styles: _Styles, patch: SheetPatch, sheet: _SheetInfo
) -> _SheetWriter:
    """All the checks of one patch (waits for its part if it is being parsed in the background)."""
    part = pkg.xml(sheet.part) if patch.new is not None else pkg.sheet_xml(sheet.part)
    if patch.delete_rows:
        _after_row_deletion(pkg, book, sheet, part, pkg.row_deletions[pkg.actual_name(sheet.part)][1])
    tables = [] if patch.new is not None else _sheet_tables(pkg, sheet.part)
    writer = _SheetWriter(sheet, part, styles, book.date1904, tables)
    writer.prepare(patch.cells, patch.replace)
    return writer


def _may_add_styles(patch: SheetPatch) -> bool:
    """Whether writing the patch can add to styles.xml (date formats, bold headers)."""
    return patch.new is not None or not set(map(type, patch.cells.values())) <= _SIMPLE_TYPES | {float}


def _write_patch(pkg: _Package, patch: SheetPatch, sheet: _SheetInfo, writer: _SheetWriter) -> None:
    if patch.replace:
        writer.clear()
    was_empty = writer.is_empty
    written = writer.write(patch.new.bold_rows if patch.new else ())
    writer.update_dimension(written, patch.replace, was_empty)
    _grow_tables(pkg, writer.tables, written)
    if patch.new is None and (patch.cells or patch.replace or patch.delete_rows):  # else: byte-identical
        pkg.touch(sheet.part)
    pkg.finish(sheet.part)  # nothing else changes a sheet part


def _apply_patches(pkg: _Package, book: _Workbook, patches: list[SheetPatch]) -> None:
    """Check every patch, then change the parsed parts in memory (the caller writes them out).

    Done one after the other this is: find sheet 1, check patch 1, find sheet 2, check patch 2, ..., then write
    every patch. Big existing sheets take seconds to parse, which happens in the background; meanwhile new sheets
    are checked and, when that changes nothing, written (styles.xml must get its new formats in the same order,
    so only when the sheets still being parsed get no dates). Nothing is written to the output unless every
    check passes, and the refusal reported is the first one in the sequential order."""
    content_types = _ContentTypes(pkg)
    styles = _Styles(pkg, book, content_types)
    refusals: list[tuple[int, PatchError]] = []  # (position in the sequential order, refusal)
    sheets: list[_SheetInfo] = []
    for i, patch in enumerate(patches):
        try:
            sheets.append(_target_sheet(book, patch, content_types))
        except PatchError as exc:
            refusals.append((2 * i, exc))
            break
        if patch.delete_rows:
            if patch.new is not None or patch.replace:
                raise PatchError(f'internal error: rows deleted from new or replaced sheet "{patch.sheet}"')
            pkg.row_deletions[pkg.actual_name(sheets[i].part)] = (patch.sheet, _RowMap(patch.delete_rows))
        if patch.new is None:
            pkg.prefetch_sheet(sheets[i].part)
    writers: list[_SheetWriter | None] = [None] * len(sheets)

    def prepare(i: int) -> None:
        try:
            writers[i] = _prepare(pkg, book, styles, patches[i], sheets[i])
        except PatchError as exc:
            refusals.append((2 * i + 1, exc))

    parsing = [i for i in range(len(sheets)) if patches[i].new is None]
    for i in range(len(sheets)):
        if patches[i].new is not None:
            prepare(i)
    written_ahead = set()
    if not refusals and not any(_may_add_styles(patches[i]) for i in parsing):
        # The existing sheets add no styles, so only the new sheets' order matters: write each existing sheet as
        # soon as it is parsed (its compression then runs while the next new sheet is written).
        for i in [i for i in range(len(sheets)) if patches[i].new is not None]:
            for j in [j for j in parsing if pkg.parsed(sheets[j].part)]:
                parsing.remove(j)
                prepare(j)
                if refusals:
                    break
                _write_patch(pkg, patches[j], sheets[j], writers[j])
                written_ahead.add(j)
            if refusals:
                break
            _write_patch(pkg, patches[i], sheets[i], writers[i])
            written_ahead.add(i)
    for i in parsing:
        prepare(i)
    if refusals:
        raise min(refusals, key=lambda refusal: refusal[0])[1]
    for i in range(len(sheets)):
        if i not in written_ahead:
            _write_patch(pkg, patches[i], sheets[i], writers[i])
    removed: dict[int, set[str]] = {}
    for sheet, writer in zip(sheets, writers):
        removed.setdefault(sheet.sheet_id, set()).update(writer.removed_formulas)
    touched_existing = any(
        patch.new is None and (patch.cells or patch.replace or patch.delete_rows) for patch in patches
    )
    had_calc_chain = bool(book.rels.of_type(REL_CALC_CHAIN))
    _prune_calc_chain(pkg, book, content_types, removed)
    if touched_existing and had_calc_chain:
        book.request_full_calc()

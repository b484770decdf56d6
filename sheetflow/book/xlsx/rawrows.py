"""Big worksheets as bytes: the ``<sheetData>`` rows of a large existing sheet are kept as the original bytes
and changed row by row (:class:`RawRows`), while the rest of the part (columns, merges, validations,
extensions) is parsed into an lxml tree as usual.

Why: parsing a 100,000-row sheet into elements and serialising it again costs seconds and a lot of memory,
and sheetflow changes only a few rows of it. The byte scanner follows the XML 1.0 grammar for start tags and
attributes (either quote, any namespace prefix, character references left as written) and the order of
CT_Row/CT_Cell (ECMA-376 Part 1, 18.3.1.73 and 18.3.1.4); anything it does not recognise falls back to the
tree (:meth:`~sheetflow.book.xlsx.xmlparts.XmlPart.parse_fully`), which stays the reference behaviour.
"""

from __future__ import annotations

import bisect
import re

from lxml import etree

from sheetflow.book.patch import PatchError
from sheetflow.book.xlsx.refs import RowMap, ref_col
from sheetflow.book.xlsx.xmlparts import HEAD_RE, NS_MAIN, PARSER_OPTIONS, XmlPart, qn, true

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


def sheet_data_span(data: bytes, tag: re.Match[bytes]) -> tuple[bytes, int, int]:
    """For the ``<sheetData>`` start tag ``tag`` (group 1: its namespace prefix): the prefix as written
    (``b"x:"`` or ``b""``), where the rows start, and where they end (the ``</sheetData>`` tag; -1 if none)."""
    prefix = tag.group(1) + b":" if tag.group(1) else b""
    start = tag.end()
    return prefix, start, data.find(b"</" + prefix + b"sheetData>", start)


class _NoTree:
    """An lxml parser target that builds nothing: checks that a part is well-formed XML, several times faster
    than parsing it into a tree."""

    def close(self) -> None:
        return None


def attr_list(raw: bytes) -> list[list[bytes]]:
    """The attributes of a start tag as [name, quote, value as written] lists, in order."""
    return [
        [m.group(1), b'"', m.group(2)] if m.group(2) is not None else [m.group(1), b"'", m.group(3)]
        for m in _ATTR_RE.finditer(raw)
    ]


def attr_get(attrs: list[list[bytes]], name: bytes) -> str | None:
    return next((value.decode() for key, _, value in attrs if key == name), None)


def attr_set(attrs: list[list[bytes]], name: bytes, value: str) -> None:
    """Like lxml's set: in place if the attribute exists, else added last."""
    for attr in attrs:
        if attr[0] == name:
            attr[1], attr[2] = b'"', value.encode()
            return
    attrs.append([name, b'"', value.encode()])


def attr_del(attrs: list[list[bytes]], name: bytes) -> None:
    attrs[:] = [attr for attr in attrs if attr[0] != name]


def start_tag(name: bytes, attrs: list[list[bytes]], empty: bool = False) -> bytes:
    return b"".join(
        [
            b"<",
            name,
            *(b" %s=%s%s%s" % (key, q, value, q) for key, q, value in attrs),
            b"/>" if empty else b">",
        ]
    )


class RawRows:
    """The rows of a big worksheet as they are in the file, and the changes to make to them.

    Parsing 100,000 rows into lxml elements and serialising them again takes seconds; changing the bytes of the
    rows that get values takes a fraction of that, and leaves every other row exactly as it was. Only for a
    sheetData that is plain: well-formed XML (checked by a SAX pass), no comments, CDATA sections, processing
    instructions or DOCTYPE in the part, no namespace declarations inside sheetData, no formulas, rows with
    increasing ``r`` and only white space between them. A row that gets values must have its cells (from the
    first column written on) in plain form too: ``r`` references in column order, no extension lists, no
    character references in the attributes that matter. Anything else: the part is parsed into a full tree
    after all. SheetWriter does to these bytes what it does to elements (the tests compare both results,
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
    def split(cls, data: bytes, parser: etree.XMLParser) -> XmlPart | None:
        """The part as a tree without rows plus its rows as bytes; None if its sheetData is not plain."""
        m = HEAD_RE.match(data)
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
        prefix, start, end = sheet_data_span(data, tag)
        if (
            end < 0
            or data.find(b"xmlns", start, end) >= 0
            or re.compile(b"<" + re.escape(prefix) + rb"f[\s/>]").search(data, start, end)
        ):
            return None
        etree.fromstring(
            data, etree.XMLParser(target=_NoTree(), **PARSER_OPTIONS)
        )  # XMLSyntaxError if damaged
        part = XmlPart.parse(data[:start] + data[end:], parser)
        sheet_data = part.root.find(qn("sheetData"))
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
        if b"customFormat" in tag:  # what SheetWriter._write_raw_row reads
            row_attrs = attr_list(tag)
            try:
                if true(attr_get(row_attrs, b"customFormat")) and attr_get(row_attrs, b"s"):
                    int(attr_get(row_attrs, b"s"))  # type: ignore[arg-type]  # non-empty: checked above
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
                found = _R_ATTR_RE.search(m.group(0))
                ref = found and (found.group(1) if found.group(1) is not None else found.group(2))
                if not ref or not ref.isascii():
                    return None
                try:
                    col = ref_col(ref.decode("ascii"))
                except ValueError:
                    return None
                _COL_NUMBERS_B[ref.rstrip(b"0123456789")] = col
            if col in cols_written and _S_ATTR_RE.search(data, i, cell_tag_end):
                try:  # what SheetWriter._raw_cell reads
                    int(attr_get(attr_list(m.group(0)[len(name) :]), b"s") or 0)
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
        view, pos = memoryview(self.data), self.start
        pieces: list[bytes | memoryview] = []
        for start, end, new in self.edits:
            if start < pos:
                raise PatchError("internal error: overlapping changes to the rows of a sheet")
            pieces += (view[pos:start], new)
            pos = end
        pieces.append(view[pos : self.end])
        return pieces


_ROW_START_RE = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?row(?=[\s/>])[^>]*>")
_ROW_NUMBER_RE = re.compile(rb"""(\sr\s*=\s*["'])([0-9]{1,7})(["'])""")
_CELL_REF_RE = re.compile(
    rb"""(<(?:[A-Za-z_][\w.\-]*:)?c\s(?:[^>]*?\s)?r\s*=\s*["'])(\$?[A-Za-z]{1,3})([0-9]{1,7})(["'])"""
)
_FORMULA_RE = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?f[\s/>]")
_SHEET_DATA_RE = re.compile(rb"<(?:([A-Za-z_][\w.\-]*):)?sheetData(?=[\s/>])[^>]*?(/?)>")


def delete_sheet_rows(data: bytes, rows: RowMap, sheet: str) -> bytes:
    """The worksheet part with ``rows`` deleted and the rows below renumbered, as bytes (a log sheet can have
    a million rows: no tree is built). Refuses sheets with formulas, whose references would have to move."""
    m = _SHEET_DATA_RE.search(data)
    if m is None or m.group(2):
        return data
    prefix, start, end = sheet_data_span(data, m)
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

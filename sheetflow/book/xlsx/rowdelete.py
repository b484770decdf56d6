"""Deleting rows, as Excel's "Delete row" does: the rows below move up, and every reference on the sheet
follows (cell refs, ``dimension``, merged cells, data validations and conditional formats' ``sqref``,
hyperlinks, selection and panes, tables, defined names pointing at the sheet).

Only used for sheetflow's log sheets (old rows go to an archive workbook), so sheets with formulas are
refused rather than rewritten: shifting formula text is Excel's job. References that lose all their rows
are dropped, except the elements Excel keeps with an empty range (dimension, selection, panes, autoFilter).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lxml import etree

from sheetflow.book.patch import PatchError
from sheetflow.book.xlsx.rawrows import sheet_data_span
from sheetflow.book.xlsx.tables import set_table_range, sheet_tables
from sheetflow.book.xlsx.xmlparts import qn

if TYPE_CHECKING:
    from sheetflow.book.xlsx.package import Package
    from sheetflow.book.xlsx.workbook import SheetInfo, Workbook
    from sheetflow.book.xlsx.xmlparts import XmlPart


class RowMap:
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


_REF_ATTRS = ("ref", "sqref", "activeCell", "topLeftCell")
_KEEP_WHEN_GONE = {"dimension", "selection", "pane", "autoFilter", "sortState", "table"}


def _shift_refs(root: etree._Element, rows: RowMap, skip: etree._Element | None = None) -> bool:
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


def after_row_deletion(pkg: Package, book: Workbook, sheet: SheetInfo, part: XmlPart, rows: RowMap) -> None:
    """Everything outside the rows that names a row of the sheet: merged cells, conditional formats,
    validations, hyperlinks, the dimension, the sheet's Excel tables and the workbook's defined names."""
    sheet_data = part.root.find(qn("sheetData"))
    _shift_refs(part.root, rows, skip=sheet_data if part.rows is None else None)
    for table in sheet_tables(pkg, sheet.part):  # type: ignore[arg-type]  # a worksheet has a part
        r1, c1, r2, c2 = table.bounds
        span = rows.span(r1, r2) or (r1, r1)
        header = table.header_rows + table.totals_rows
        bottom = max(span[1], span[0] + max(header, 1))  # a table keeps one data row, even an empty one
        _shift_refs(table.part.root, rows)
        set_table_range(pkg, table, (span[0], c1, bottom, c2))
    names = book.part.root.find(qn("definedNames"))
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

    for dn in names.iterchildren(qn("definedName")):
        if dn.text and "!" in dn.text:
            text = _NAME_REF_RE.sub(move, dn.text)
            if text != dn.text:
                dn.text, changed = text, True
    if changed:
        pkg.touch(book.part_name)

"""Deleting rows, as Excel's "Delete row" does: the rows below move up, and every reference on the sheet
follows (cell refs, ``dimension``, merged cells, data validations and conditional formats' ``sqref``,
hyperlinks, selection and panes, tables, defined names pointing at the sheet).

Only used for sheetflow's log sheets (old rows go to an archive workbook), so sheets with formulas are
refused rather than rewritten: shifting formula text is Excel's job. References that lose all their rows
are dropped, except the elements Excel keeps with an empty range (dimension, selection, panes, autoFilter).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lxml import etree

from sheetflow.book.xlsx.refs import RowMap
from sheetflow.book.xlsx.tables import set_table_range, sheet_tables
from sheetflow.book.xlsx.xmlparts import qn

if TYPE_CHECKING:
    from sheetflow.book.xlsx.package import Package
    from sheetflow.book.xlsx.workbook import SheetInfo, Workbook
    from sheetflow.book.xlsx.xmlparts import XmlPart


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

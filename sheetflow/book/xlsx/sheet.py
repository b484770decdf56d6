"""The worksheet writer (``xl/worksheets/sheetN.xml``, ECMA-376 Part 1 18.3): puts cell values into an
existing or new sheet and refuses what would lose data, before anything is written.

* Cells go into their row in column order (CT_Row/CT_Cell, 18.3.1.73/18.3.1.4), keeping the cell's style,
  else the row's, else the column's (as Excel does when you type into an empty cell); dates get a date
  format; ``spans`` and ``dimension`` are widened.
* Refused: writing into a merged range other than its top-left cell, over a formula (sheetflow never
  overwrites formulas), into part of a shared or array formula (18.3.1.40), into table header cells with
  a different name, into protected sheets.
* New rows are generated as XML text (:meth:`~sheetflow.book.xlsx.xmlparts.XmlPart.splice`), byte for byte
  what lxml would write; big existing sheets are changed as bytes (:mod:`.rawrows`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import operator
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from lxml import etree

from sheetflow.book.patch import PatchError
from sheetflow.book.xlsx.cells import ESCAPE_LIKE_RE, TEXT_ESCAPES, render, text_xml
from sheetflow.book.xlsx.rawrows import attr_del, attr_get, attr_list, attr_set, start_tag
from sheetflow.book.xlsx.refs import (
    EPOCH_1900,
    EPOCH_1904,
    EXCEL_EPOCH_1904,
    LEAP_BUG_END,
    MAX_COL,
    MAX_ROW,
    MAX_TEXT,
    RANGE_ROWS_RE,
    cell_label,
    col_letter,
    format_range,
    parse_cell,
    parse_range,
    ref_col,
)
from sheetflow.book.xlsx.xmlparts import NS_MAIN, PARSER, XML_SPACE, qn, true

if TYPE_CHECKING:
    from sheetflow.book.patch import CellValue
    from sheetflow.book.xlsx.cells import Rendered
    from sheetflow.book.xlsx.styles import Styles
    from sheetflow.book.xlsx.tables import Table
    from sheetflow.book.xlsx.workbook import SheetInfo
    from sheetflow.book.xlsx.xmlparts import XmlPart


_Q_ROW, _Q_C, _Q_F, _Q_V, _Q_IS, _Q_T, _Q_EXT = (qn(t) for t in ("row", "c", "f", "v", "is", "t", "extLst"))
_PRESERVE = ' xml:space="preserve"'
SIMPLE_TYPES = frozenset((str, int, bool, type(None)))  # values that are always writable
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
                col = ref_col(ref)
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
            col = ref_col(ref)
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


class SheetWriter:
    """Writes values into one worksheet part; every check runs before the first change.

    Cells that exist are changed in place (they keep their style and everything else). New cells are written
    as XML text, exactly as lxml would serialise the elements, because building a million lxml elements one by
    one takes minutes:

    * rows below the last existing row (all rows of a new sheet, all rows after ``replace``) go into the output
      as that text (see XmlPart.splice);
    * rows in a gap between existing rows, and new cells of existing rows, are parsed in one go and moved into
      place.

    For a big sheet whose rows are bytes (``raw``, see RawRows) the same changes are made to the bytes
    (_write_raw); if a row to change turns out not to be plain, the part is parsed and the elements used.
    """

    def __init__(
        self, sheet: SheetInfo, part: XmlPart, styles: Styles, is1904: bool, tables: list[Table]
    ) -> None:
        self.name, self.sheet_id = sheet.name, sheet.sheet_id
        self.part = part
        self.root = part.root
        self.styles, self.is1904, self.tables = styles, is1904, tables
        self.removed_formulas: set[str] = set()
        sheet_data = self.root.find(qn("sheetData"))
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
        cols = self.root.find(qn("cols"))
        if cols is None:
            return []
        return [
            (int(c.get("min", "0")), int(c.get("max", "0")), int(c.get("style", "0")))
            for c in cols.iterchildren(qn("col"))
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
        """Every value can be written (what render refuses is refused here, in the order of ``cells``)."""
        if set(map(type, cells.values())) <= SIMPLE_TYPES:
            return
        first_day = (EXCEL_EPOCH_1904 if self.is1904 else dt.date(1900, 1, 1)).toordinal()
        for key, value in cells.items():
            kind = type(value)
            if kind in SIMPLE_TYPES:
                continue
            if kind is float:
                if value - value == 0:  # finite
                    continue
            elif kind is dt.datetime or kind is dt.date:
                if value.toordinal() >= first_day:
                    continue
            render(value, cell_label(self.name, *key), self.is1904)

    def check_writable(self, cells: dict[tuple[int, int], CellValue], replace: bool) -> None:
        protection = self.root.find(qn("sheetProtection"))
        if protection is not None and true(protection.get("sheet")):
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
        if self.root.find(qn("mergeCells")) is not None:
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
        merges = self.root.find(qn("mergeCells"))
        if merges is None:
            return
        for merge in merges.iterchildren(qn("mergeCell")):
            ref = merge.get("ref", "")
            m = RANGE_ROWS_RE.match(ref)  # cheap row test first: sheets can have 50,000 merged ranges
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
                        f"{cell_label(self.name, r, c)} is inside the merged cells {format_range(*bounds)}; "
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
                        f"{cell_label(self.name, r, c)} holds a shared formula that other cells use; "
                        f"sheetflow will not overwrite it"
                    )
                continue
            for wr, wc in self._cells_in(bounds, by_row, rows):
                what = "an array formula" if kind == "array" else "a what-if data table"
                raise PatchError(
                    f"{cell_label(self.name, wr, wc)} is part of {what} ({format_range(*bounds)}); "
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
                        f'{cell_label(self.name, r1, c)} is the header of column "{header}" of the Excel '
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
            value = render(cells[key], cell_label(self.name, r, c), self.is1904)
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
        if row.get("customFormat") is not None and true(row.get("customFormat")) and row.get("s"):
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

    def _set_cell(self, cell: etree._Element, value: Rendered, fresh: bool = False) -> None:
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

        This runs once per new cell, so the common cases are inlined: text_xml for short plain text,
        excel_serial for dates (repeated dates, like a run's timestamp, reuse the previous cell's serial)."""
        is1904, half = self.is1904, MAX_TEXT // 2
        str_end, v_end, row_end = f"</{p}t></{p}is></{p}c>", f"</{p}v></{p}c>", f"</{p}row>"
        epoch = EPOCH_1904 if is1904 else EPOCH_1900
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
                        value = ESCAPE_LIKE_RE.sub(r"_x005F_\1", value)
                    if value.strip() == value:
                        xml = f"{head}{rq_now}{str_start}>{value}{str_end}"
                    else:
                        xml = f"{head}{rq_now}{str_start}{_PRESERVE}>{value}{str_end}"
                else:
                    text, preserve = text_xml(value)
                    xml = f"{head}{rq_now}{str_start}{_PRESERVE if preserve else ''}>{text}{str_end}"
            elif kind is int or (kind is float and value - value == 0):
                xml = f"{head}{rq_now}{num_start}{value!r}{v_end}"
            elif kind is dt.datetime or kind is dt.date:
                if value != last_date or type(value) is not type(last_date):
                    # excel_serial, inlined (the value was checked in prepare: not before the epoch)
                    ordinal = value.toordinal()
                    serial = ordinal - epoch if is1904 else ordinal - epoch - (ordinal < LEAP_BUG_END)
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
                rendered = render(value, cell_label(self.name, r, c), is1904)
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

    def _cell_xml(self, start: str, style: int, value: Rendered, p: str) -> str:
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
                f"{text.translate(TEXT_ESCAPES)}</{p}t></{p}is></{p}c>"
            )
        t_attr = ' t="b"' if kind == "bool" else ""
        return f"{start}{s_attr}{t_attr}><{p}v>{text}</{p}v></{p}c>"

    @staticmethod
    def _parse_fragment(pieces: list[str], p: str) -> etree._Element:
        """Parse generated elements in one go, inside a sheetData element that declares the main namespace."""
        xmlns = f"xmlns:{p[:-1]}" if p else "xmlns"
        text = f'<{p}sheetData {xmlns}="{NS_MAIN}">{"".join(pieces)}</{p}sheetData>'
        return etree.fromstring(text.encode("utf-8"), PARSER)

    def _insert_rows(self, gap_rows: list[int], gaps: list[str], p: str) -> None:
        """Put the new rows that fall between existing rows before the next existing row."""
        for r, row in zip(gap_rows, list(self._parse_fragment(gaps, p))):
            following = self._row_nums[bisect.bisect_right(self._row_nums, r)]
            self._rows[following].addprevious(row)

    def update_dimension(self, written: dict[int, list[int]], replace: bool, was_empty: bool) -> None:
        dim = self.root.find(qn("dimension"))
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

    # -- big sheets: rows as bytes (RawRows) ---------------------------------------------------------------
    def _to_tree(self) -> None:
        """The rows are not plain enough to change as bytes: parse the whole part and use the elements."""
        self.part.parse_fully()
        self.raw = None
        self.root = self.part.root
        self.sheet_data = self.root.find(qn("sheetData"))
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
                    # RawRows; the styles asked for so far are asked for again in the same order (no change).
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
        """_write_row for a row as bytes (``plan``: its cells from RawRows.cells)."""
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
                else render(value, cell_label(self.name, r, c), self.is1904)
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
                    row_attrs = attr_list(tag)
                custom, own = attr_get(row_attrs, b"customFormat"), attr_get(row_attrs, b"s")
                style = int(own) if custom is not None and true(custom) and own else self._column_style(c)
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
                row_attrs = attr_list(tag)
            spans = attr_get(row_attrs, b"spans")
            changed = False
            if spans:  # as _widen_spans
                m = re.fullmatch(r"(\d+):(\d+)", spans)
                if m is None:
                    attr_del(row_attrs, b"spans")
                    changed = True
                elif added[0] < int(m.group(1)) or added[-1] > int(m.group(2)):
                    attr_set(
                        row_attrs,
                        b"spans",
                        f"{min(int(m.group(1)), added[0])}:{max(int(m.group(2)), added[-1])}",
                    )
                    changed = True
            name = raw.prefix + b"row"
            if close < 0:
                edits.insert(
                    mark,
                    (row_start, row_end, start_tag(name, row_attrs) + b"".join(new_cells) + raw.row_end_tag),
                )
            elif changed:
                edits.insert(mark, (row_start, tag_end, start_tag(name, row_attrs)))
        return done

    def _raw_cell(self, cell: tuple[int, int, int, int], value: Rendered, base: int | None, p: str) -> bytes:
        """An existing cell with a new value, as bytes: what _set_cell (or clearing) does to the element."""
        raw = self.raw
        start, tag_end, close, _ = cell
        attrs = attr_list(raw.data[start + len(raw.cell_name) + 1 : tag_end])
        if base is not None:
            attr_set(attrs, b"s", str(base))
        for name in (b"t", b"cm", b"vm"):
            attr_del(attrs, name)
        kind, text, with_time = value
        children = ""
        if kind == "str":
            attr_set(attrs, b"t", "inlineStr")
            preserve = text != text.strip() or "\n" in text or "\r" in text or "\t" in text
            children = (
                f"<{p}is><{p}t{_PRESERVE if preserve else ''}>{text.translate(TEXT_ESCAPES)}</{p}t></{p}is>"
            )
        elif kind != "none":
            if kind == "bool":
                attr_set(attrs, b"t", "b")
            elif kind == "date":
                style = int(attr_get(attrs, b"s") or 0)
                new_style = self._date_style(style, with_time)
                if new_style != style:
                    attr_set(attrs, b"s", str(new_style))
            children = f"<{p}v>{text}</{p}v>"
        lead = b""  # the element's text before its first child stays
        if close >= 0:
            inner = raw.data[tag_end:close]
            lt = inner.find(b"<")
            lead = inner if lt < 0 else inner[:lt]
        if not (children or lead):
            return start_tag(raw.cell_name, attrs, empty=True)
        return start_tag(raw.cell_name, attrs) + lead + children.encode("utf-8") + raw.cell_end_tag

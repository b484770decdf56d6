"""Excel tables (ListObjects, ``xl/tables/tableN.xml``, ECMA-376 Part 1 18.5): finding the tables of a sheet
and growing a table's range when rows are appended directly below it, as Excel does when you type under
a table (its ``ref`` and ``autoFilter`` follow; header and totals rows are respected).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sheetflow.book.xlsx.refs import MAX_ROW, format_range, parse_range
from sheetflow.book.xlsx.xmlparts import REL_TABLE, qn

if TYPE_CHECKING:
    from sheetflow.book.xlsx.package import Package
    from sheetflow.book.xlsx.xmlparts import XmlPart


@dataclass
class Table:
    part_name: str
    part: XmlPart
    name: str
    bounds: tuple[int, int, int, int]
    header_rows: int
    totals_rows: int
    columns: list[str]


def _unescape_x(text: str) -> str:
    """Decode Excel's ``_x000A_`` escapes (a line break in a table column name is stored that way)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def sheet_tables(pkg: Package, sheet_part: str) -> list[Table]:
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
            for el in root.iterfind(f"{qn('tableColumns')}/{qn('tableColumn')}")
        ]
        tables.append(
            Table(
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


def grow_tables(pkg: Package, tables: list[Table], written: dict[int, set[int]]) -> None:
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
        set_table_range(pkg, table, grown)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def set_table_range(pkg: Package, table: Table, bounds: tuple[int, int, int, int]) -> None:
    """Give ``table`` the range ``bounds`` (1-based, inclusive); its autoFilter ends on the same row."""
    table.part.root.set("ref", format_range(*bounds))
    auto = table.part.root.find(qn("autoFilter"))
    if auto is not None and auto.get("ref"):
        a1, ac1, _, ac2 = parse_range(auto.get("ref"))
        auto.set("ref", format_range(a1, ac1, bounds[2], ac2))
    table.bounds = bounds
    pkg.touch(table.part_name)

"""Applying a batch of patches to a workbook file: :func:`patch_workbook` orchestrates the other modules, and
the two read-side helpers the xlsx backend needs (:func:`date1904`, :func:`sheet_layouts`).

Order: open the package, parse the workbook, check every patch (sheet exists, names, protection, merges,
formulas, tables), then write; nothing reaches ``dst`` unless every check passes, and the refusal
reported is the first one in patch order. Big sheets are parsed and compressed in background threads
while Python code writes other sheets. ``dst`` must not be ``src``: the caller writes a temporary file and
replaces the workbook atomically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from sheetflow.book.patch import PatchError, SheetPatch, merge_patches
from sheetflow.book.xlsx.package import ContentTypes, Package
from sheetflow.book.xlsx.refs import col_number
from sheetflow.book.xlsx.rowdelete import RowMap, after_row_deletion
from sheetflow.book.xlsx.sheet import SIMPLE_TYPES, SheetWriter
from sheetflow.book.xlsx.styles import Styles
from sheetflow.book.xlsx.tables import grow_tables, sheet_tables
from sheetflow.book.xlsx.workbook import Workbook, prune_calc_chain
from sheetflow.book.xlsx.xmlparts import REL_CALC_CHAIN, REL_OFFICE_DOCUMENT, true

if TYPE_CHECKING:
    from sheetflow.book.xlsx.workbook import SheetInfo


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
    # do it while Python code writes other sheets (see _apply_patches and Package.finish).
    with (
        Package.open(src) as pkg,
        ThreadPoolExecutor(2, "sheetflow-xlsx") as pool,
        ThreadPoolExecutor(2, "sheetflow-deflate") as deflate_pool,
    ):
        pkg.pool, pkg.deflate_pool = (
            pool,
            deflate_pool,
        )  # two pools: jobs in `pool` wait for pieces in the other
        try:
            book = Workbook(pkg)
            _apply_patches(pkg, book, merge_patches(patches))
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
    with Package.open(Path(path)) as pkg:
        rels = pkg.rels("")
        docs = rels.of_type(REL_OFFICE_DOCUMENT)
        name = rels.target(docs[0]) if docs else None
        if name is None or not pkg.exists(name) or not name.lower().endswith(".xml"):
            return False
        root = pkg.xml(name).root
        pr = next(
            (el for el in root if isinstance(el.tag, str) and etree.QName(el).localname == "workbookPr"), None
        )
        return pr is not None and true(pr.get("date1904"))


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
    with Package.open(Path(path)) as pkg:
        book = Workbook(pkg)
        for info in book.sheets:
            if info.name not in wanted or info.part is None or not pkg.exists(info.part):
                continue
            layout = SheetLayout()
            data = pkg.read(info.part)
            if b"<f" in data or b":f" in data:
                for m in _FORMULA_CELL_RE.finditer(data):
                    layout.formulas.add((int(m.group(2)), col_number(m.group(1).decode("ascii"))))
            for table in sheet_tables(pkg, info.part):
                layout.tables.append((table.name, table.bounds, table.header_rows, table.totals_rows))
            out[info.name] = layout
    return out


def _target_sheet(book: Workbook, patch: SheetPatch, content_types: ContentTypes) -> SheetInfo:
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
    pkg: Package, book: Workbook, styles: Styles, patch: SheetPatch, sheet: SheetInfo
) -> SheetWriter:
    """All the checks of one patch (waits for its part if it is being parsed in the background)."""
    part = pkg.xml(sheet.part) if patch.new is not None else pkg.sheet_xml(sheet.part)
    if patch.delete_rows:
        after_row_deletion(pkg, book, sheet, part, pkg.row_deletions[pkg.actual_name(sheet.part)][1])
    tables = [] if patch.new is not None else sheet_tables(pkg, sheet.part)
    writer = SheetWriter(sheet, part, styles, book.date1904, tables)
    writer.prepare(patch.cells, patch.replace)
    return writer


def _may_add_styles(patch: SheetPatch) -> bool:
    """Whether writing the patch can add to styles.xml (date formats, bold headers)."""
    return patch.new is not None or not set(map(type, patch.cells.values())) <= SIMPLE_TYPES | {float}


def _write_patch(pkg: Package, patch: SheetPatch, sheet: SheetInfo, writer: SheetWriter) -> None:
    if patch.replace:
        writer.clear()
    was_empty = writer.is_empty
    written = writer.write(patch.new.bold_rows if patch.new else ())
    writer.update_dimension(written, patch.replace, was_empty)
    grow_tables(pkg, writer.tables, written)
    if patch.new is None and (patch.cells or patch.replace or patch.delete_rows):  # else: byte-identical
        pkg.touch(sheet.part)
    pkg.finish(sheet.part)  # nothing else changes a sheet part


def _apply_patches(pkg: Package, book: Workbook, patches: list[SheetPatch]) -> None:
    """Check every patch, then change the parsed parts in memory (the caller writes them out).

    Done one after the other this is: find sheet 1, check patch 1, find sheet 2, check patch 2, ..., then write
    every patch. Big existing sheets take seconds to parse, which happens in the background; meanwhile new sheets
    are checked and, when that changes nothing, written (styles.xml must get its new formats in the same order,
    so only when the sheets still being parsed get no dates). Nothing is written to the output unless every
    check passes, and the refusal reported is the first one in the sequential order."""
    content_types = ContentTypes(pkg)
    styles = Styles(pkg, book, content_types)
    refusals: list[tuple[int, PatchError]] = []  # (position in the sequential order, refusal)
    sheets: list[SheetInfo] = []
    for i, patch in enumerate(patches):
        try:
            sheets.append(_target_sheet(book, patch, content_types))
        except PatchError as exc:
            refusals.append((2 * i, exc))
            break
        if patch.delete_rows:
            if patch.new is not None or patch.replace:
                raise PatchError(f'internal error: rows deleted from new or replaced sheet "{patch.sheet}"')
            pkg.row_deletions[pkg.actual_name(sheets[i].part)] = (patch.sheet, RowMap(patch.delete_rows))
        if patch.new is None:
            pkg.prefetch_sheet(sheets[i].part)
    writers: list[SheetWriter | None] = [None] * len(sheets)

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
    prune_calc_chain(pkg, book, content_types, removed)
    if touched_existing and had_calc_chain:
        book.request_full_calc()

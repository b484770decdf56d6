"""The workbook part (``xl/workbook.xml``, ECMA-376 Part 1 18.2): the list of sheets with their parts and
state, the date system, defined names, workbook protection, and adding a sheet.

Refusals happen here, before anything is written: Strict Open XML, structure protection when a sheet must
be added, sheet names Excel would reject (more than 31 characters, any of ``[]:*?/\\``, a name already used,
ignoring case).
A new sheet's part is built by :func:`new_sheet_root` (frozen header rows, column widths, list data
validations as Excel writes them: ``formula1`` of a literal list at most 255 characters).
:func:`check_sheet_name` and :func:`new_sheet_root` are also the rules the in-memory and live-Excel
backends apply, so every backend refuses the same batches.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from sheetflow.book.patch import PatchError
from sheetflow.book.xlsx.cells import ILLEGAL_XML_RE
from sheetflow.book.xlsx.refs import MAX_COL, MAX_ROW, parse_range
from sheetflow.book.xlsx.xmlparts import (
    CT_WORKSHEET,
    NS_MAIN,
    NS_R,
    REL_CALC_CHAIN,
    REL_OFFICE_DOCUMENT,
    REL_WORKSHEET,
    STRICT_MARK,
    XmlPart,
    qn,
    true,
)

if TYPE_CHECKING:
    from sheetflow.book.patch import NewSheet, Validation
    from sheetflow.book.xlsx.package import ContentTypes, Package


MAX_LIST_FORMULA = 255  # Excel rejects longer literal dropdown lists


_BAD_SHEET_CHARS = set("[]:*?/\\")


@dataclass
class SheetInfo:
    name: str
    element: etree._Element
    sheet_id: int
    state: str
    part: str | None  # zip entry of the sheet part
    kind: str  # "worksheet", "chartsheet", "dialogsheet", "xlMacrosheet", ...


class Workbook:
    """workbook.xml and its relationships, as far as sheetflow needs them."""

    def __init__(self, pkg: Package) -> None:
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
        self.sheets_el = root.find(qn("sheets"))
        if self.sheets_el is None:
            raise PatchError(f"{pkg.path.name} is damaged: it lists no sheets")
        self.sheets = [self._sheet_info(el) for el in self.sheets_el if el.tag == qn("sheet")]
        pr = root.find(qn("workbookPr"))
        self.date1904 = pr is not None and true(pr.get("date1904"))
        protection = root.find(qn("workbookProtection"))
        self.structure_locked = protection is not None and true(protection.get("lockStructure"))

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

    def _sheet_info(self, el: etree._Element) -> SheetInfo:
        rel = self.rels.by_id(el.get(f"{{{NS_R}}}id", ""))
        part = self.rels.target(rel) if rel is not None else None
        kind = rel.get("Type", "").rsplit("/", 1)[-1] if rel is not None else "missing"
        return SheetInfo(
            name=el.get("name", ""),
            element=el,
            sheet_id=int(el.get("sheetId", "0") or 0),
            state=el.get("state", "visible"),
            part=part,
            kind=kind,
        )

    def sheet(self, name: str) -> SheetInfo | None:
        return next((s for s in self.sheets if s.name == name), None)

    def add_sheet(self, name: str, spec: NewSheet, content_types: ContentTypes) -> SheetInfo:
        """Create an empty worksheet part and register it (rels, workbook.xml, content types)."""
        check_sheet_name(name)
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
        self.pkg.add_part(part_name, XmlPart.new(new_sheet_root(name, spec)))
        target = posixpath.relpath(part_name, posixpath.dirname(self.part_name) or ".")
        rid = self.rels.add(REL_WORKSHEET, target)
        sheet_id = max((s.sheet_id for s in self.sheets), default=0) + 1
        el = etree.SubElement(
            self.sheets_el, qn("sheet"), nsmap=None if NS_R in self.part.root.nsmap.values() else {"r": NS_R}
        )
        el.set("name", name)
        el.set("sheetId", str(sheet_id))
        if spec.state != "visible":
            el.set("state", spec.state)
        el.set(f"{{{NS_R}}}id", rid)
        self.pkg.touch(self.part_name)
        content_types.add_override(part_name, CT_WORKSHEET)
        info = SheetInfo(
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
        calc = root.find(qn("calcPr"))
        if calc is None:
            anchor = None
            for tag in ("sheets", "functionGroups", "externalReferences", "definedNames"):
                found = root.find(qn(tag))
                anchor = found if found is not None else anchor
            calc = etree.SubElement(root, qn("calcPr"))
            anchor.addnext(calc)  # type: ignore[union-attr]  # workbook.xml always has <sheets>
        if not true(calc.get("fullCalcOnLoad")):
            calc.set("fullCalcOnLoad", "1")
            self.pkg.touch(self.part_name)


def check_sheet_name(name: str) -> None:
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
    if ILLEGAL_XML_RE.search(name) or any(ch in name for ch in "\t\r\n"):
        raise PatchError(f'sheet name "{name!r}" contains control characters')
    if name.casefold() == "history":
        raise PatchError('"History" is reserved by Excel and cannot be used as a sheet name')


def new_sheet_root(name: str, spec: NewSheet) -> etree._Element:
    """A complete, schema-ordered worksheet with no cells yet."""
    root = etree.Element(qn("worksheet"), nsmap={None: NS_MAIN, "r": NS_R})
    etree.SubElement(root, qn("dimension"), ref="A1")
    view = etree.SubElement(etree.SubElement(root, qn("sheetViews")), qn("sheetView"), workbookViewId="0")
    if spec.freeze_rows:
        if not isinstance(spec.freeze_rows, int) or not 0 < spec.freeze_rows < MAX_ROW:
            raise PatchError(f'sheet "{name}": cannot freeze {spec.freeze_rows!r} rows')
        top = f"A{spec.freeze_rows + 1}"
        etree.SubElement(
            view,
            qn("pane"),
            ySplit=str(spec.freeze_rows),
            topLeftCell=top,
            activePane="bottomLeft",
            state="frozen",
        )
        etree.SubElement(view, qn("selection"), pane="bottomLeft", activeCell=top, sqref=top)
    etree.SubElement(root, qn("sheetFormatPr"), defaultRowHeight="15")
    if spec.col_widths:
        cols = etree.SubElement(root, qn("cols"))
        for col, width in sorted(spec.col_widths.items()):
            if not isinstance(col, int) or not 1 <= col <= MAX_COL:
                raise PatchError(f'sheet "{name}": column {col!r} does not exist')
            if not isinstance(width, (int, float)) or not 0 <= width <= 255:
                raise PatchError(f'sheet "{name}": column width {width!r} is not between 0 and 255')
            etree.SubElement(
                cols, qn("col"), min=str(col), max=str(col), width=repr(float(width)), customWidth="1"
            )
    etree.SubElement(root, qn("sheetData"))
    if spec.validations:
        dvs = etree.SubElement(root, qn("dataValidations"), count=str(len(spec.validations)))
        for validation in spec.validations:
            _add_validation(dvs, name, validation)
    etree.SubElement(
        root,
        qn("pageMargins"),
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
        formula = validation.source.strip().lstrip("=")  # type: ignore[union-attr]  # options or a source
    el = etree.SubElement(
        parent,
        qn("dataValidation"),
        type="list",
        allowBlank="1",
        showErrorMessage="0" if validation.allow_other else "1",
        sqref=sqref,
    )
    etree.SubElement(el, qn("formula1")).text = ILLEGAL_XML_RE.sub("", formula)


def prune_calc_chain(
    pkg: Package, book: Workbook, content_types: ContentTypes, removed: dict[int, set[str]]
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
    for entry in list(part.root.iterchildren(qn("c"))):
        current = int(entry.get("i") or current)
        if entry.get("r") in removed.get(current, ()):
            pending_level = pending_level or true(entry.get("l"))
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
    if len(part.root.findall(qn("c"))) == 0:
        pkg.remove(name)
        book.rels.remove(rels[0])
        content_types.remove_override(name)
    else:
        pkg.touch(name)

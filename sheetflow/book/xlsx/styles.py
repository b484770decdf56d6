"""Styles (``xl/styles.xml``, ECMA-376 Part 1 18.8): the cell formats the writer may need to add, a date
format (``yyyy-mm-dd``, with `` hh:mm`` for times) and a bold font for header rows, reused when an
equal one exists.

Built-in number formats 14-22 and 45-47 are dates or times (18.8.30); a custom format is a date when it has
date/time codes outside quotes, brackets and escapes (:func:`is_date_format`), which is how Excel decides
whether a serial number is shown as a date. New formats are appended (ids from 164, new ``xf`` at the end)
so every existing style index keeps its meaning.
"""

from __future__ import annotations

import copy
import posixpath
import re
from typing import TYPE_CHECKING

from lxml import etree

from sheetflow.book.xlsx.xmlparts import CT_STYLES, NS_MAIN, REL_STYLES, XmlPart, qn

if TYPE_CHECKING:
    from sheetflow.book.xlsx.package import ContentTypes, Package
    from sheetflow.book.xlsx.workbook import Workbook


DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
FIRST_CUSTOM_NUMFMT = 164
# Built-in number formats that show dates or times (ECMA-376 18.8.30).
BUILTIN_DATE_FORMATS = frozenset(range(14, 23)) | {45, 46, 47}


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


class Styles:
    """styles.xml, parsed only when a value needs a date format or a bold header; reuses what already exists,
    so running sheetflow again and again does not grow the style table."""

    def __init__(self, pkg: Package, book: Workbook, content_types: ContentTypes) -> None:
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
            etree.SubElement(self.cell_xfs, qn("xf"), numFmtId="0", fontId="0", fillId="0", borderId="0")
        self.xfs = [el for el in self.cell_xfs if el.tag == qn("xf")]
        self.numfmts = {
            int(el.get("numFmtId", "-1")): el.get("formatCode", "")
            for el in root.iterfind(f"{qn('numFmts')}/{qn('numFmt')}")
        }
        self._xf_index: dict = {}
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
        self._pkg.add_part(name, XmlPart.new(root))
        self._book.rels.add(REL_STYLES, posixpath.relpath(name, folder or "."))
        self._ct.add_override(name, CT_STYLES)
        return name

    def _child(self, root: etree._Element, tag: str, after: tuple[str, ...]) -> etree._Element:
        """The child element ``tag``, created in schema order (after the last of ``after`` present)."""
        el = root.find(qn(tag))
        if el is None:
            el = etree.SubElement(root, qn(tag))
            anchors = [a for a in (root.find(qn(t)) for t in after) if a is not None]
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
            font_list = [el for el in fonts if el.tag == qn("font")]
            font = copy.deepcopy(font_list[0]) if font_list else etree.Element(qn("font"))
            for old in font.findall(qn("b")):
                font.remove(old)
            font.insert(0, etree.SubElement(font, qn("b")))
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
        etree.SubElement(numfmts, qn("numFmt"), numFmtId=str(fmt_id), formatCode=code)
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

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
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import math
import numbers
import posixpath
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from sheetflow.problems import SheetflowError

CellValue = str | int | float | bool | dt.datetime | dt.date | None

__all__ = ["CellValue", "NewSheet", "PatchError", "SheetPatch", "Validation", "date1904", "patch_workbook"]


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Validation:
    """A dropdown (list data validation) on a new sheet."""

    sqref: str                          # "C2:C5000" (space-separated ranges allowed)
    options: list[str] | None = None    # literal dropdown list -> formula1 '"a,b,c"'
    source: str | None = None           # or a range like "Stages!$A$2:$A$200" (formula1 without '=')
    allow_other: bool = False           # True -> showErrorMessage="0" (the dropdown is only a suggestion)


@dataclass
class NewSheet:
    """How to create a sheet that does not exist yet (it is appended after the last sheet)."""

    state: str = "visible"              # "visible" | "hidden" | "veryHidden"
    freeze_rows: int = 0                # frozen header rows (pane)
    col_widths: dict[int, float] = field(default_factory=dict)   # 1-based col -> width in characters
    bold_rows: set[int] = field(default_factory=set)              # e.g. {1} for a header row
    validations: list[Validation] = field(default_factory=list)


@dataclass
class SheetPatch:
    """Values to write into one sheet."""

    sheet: str                                    # exact sheet name
    cells: dict[tuple[int, int], CellValue]       # (row, col), 1-based -> value; None = clear value, keep style
    new: NewSheet | None = None                   # create this sheet; error if it exists
    replace: bool = False                         # sheet fully owned by sheetflow: drop all existing rows first


class PatchError(SheetflowError):
    """The workbook cannot be written as asked; the message names the file, sheet or cell and what to do."""


def patch_workbook(src: str | Path, dst: str | Path, patches: list[SheetPatch]) -> None:
    """Write ``src`` + ``patches`` to ``dst`` (dst != src; the caller does temp-file + atomic replace).

    Nothing is written to ``dst`` unless every patch can be applied: all checks (protection, merged cells,
    shared/array formulas, table headers, names) run before the new package is written.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise PatchError(f"internal error: sheetflow must not write over {src.name} directly (use a temporary file)")
    with _Package.open(src) as pkg:
        book = _Workbook(pkg)
        _apply_patches(pkg, book, _merge_patches(patches))
        pkg.write(dst)


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
        pr = next((el for el in root if isinstance(el.tag, str) and etree.QName(el).localname == "workbookPr"),
                  None)
        return pr is not None and _true(pr.get("date1904"))


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
MAX_TEXT = 32_767            # Excel's limit, in UTF-16 code units
MAX_LIST_FORMULA = 255       # Excel rejects longer literal dropdown lists
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
FIRST_CUSTOM_NUMFMT = 164
# Built-in number formats that show dates or times (ECMA-376 18.8.30).
BUILTIN_DATE_FORMATS = frozenset(range(14, 23)) | {45, 46, 47}

STANDARD_HEAD = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
_PARSER = etree.XMLParser(remove_blank_text=False, remove_comments=False, remove_pis=False, strip_cdata=False,
                          resolve_entities=False, huge_tree=True, no_network=True, ns_clean=False)
_HEAD_RE = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*\?>\s*")
_ILLEGAL_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_ESCAPE_LIKE_RE = re.compile("_(x[0-9A-Fa-f]{4}_)")
_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")
_RANGE_ROWS_RE = re.compile(r"\$?[A-Za-z]{1,3}\$?([0-9]{1,7})(?::\$?[A-Za-z]{1,3}\$?([0-9]{1,7}))?$")
_BAD_SHEET_CHARS = set("[]:*?/\\")

EXCEL_EPOCH_1900 = dt.date(1899, 12, 30)
EXCEL_EPOCH_1904 = dt.date(1904, 1, 1)
EXCEL_LEAP_BUG_END = dt.date(1900, 3, 1)


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


def col_letter(col: int) -> str:
    """1 -> A, 27 -> AA (cached: called once per written cell)."""
    letters = _LETTERS.get(col)
    if letters is None:
        n, letters = col, ""
        while n > 0:
            n, rem = divmod(n - 1, 26)
            letters = chr(65 + rem) + letters
        _LETTERS[col] = letters
    return letters


def col_number(letters: str) -> int:
    """A -> 1, AA -> 27."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def parse_cell(ref: str) -> tuple[int, int]:
    """"B4" / "$B$4" -> (4, 2); ValueError for anything else."""
    m = _CELL_RE.match(ref.strip())
    if not m:
        raise ValueError(ref)
    return int(m.group(2)), col_number(m.group(1))


def parse_range(ref: str) -> tuple[int, int, int, int]:
    """"A1:C5" -> (r1, c1, r2, c2); a single cell is a 1x1 range."""
    first, _, last = ref.strip().partition(":")
    r1, c1 = parse_cell(first)
    r2, c2 = parse_cell(last) if last else (r1, c1)
    return min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2)


def format_range(r1: int, c1: int, r2: int, c2: int) -> str:
    start = f"{col_letter(c1)}{r1}"
    return start if (r1, c1) == (r2, c2) else f"{start}:{col_letter(c2)}{r2}"


def _where(sheet: str, row: int, col: int) -> str:
    """``Contacts!F2`` / ``'My Sheet'!F2``, the way Excel shows a reference in a formula."""
    shown = f"'{sheet}'" if re.search(r"[^A-Za-z0-9_.]", sheet) else sheet
    return f"{shown}!{col_letter(col)}{row}"


# --------------------------------------------------------------------------------------------------------------
# XML parts
# --------------------------------------------------------------------------------------------------------------

@dataclass
class _XmlPart:
    """A parsed part plus the exact bytes before its root element (XML declaration and line break)."""

    tree: etree._ElementTree
    head: bytes

    @property
    def root(self) -> etree._Element:
        return self.tree.getroot()

    @classmethod
    def parse(cls, data: bytes) -> _XmlPart:
        m = _HEAD_RE.match(data)
        head = m.group(0) if m else b""
        if head and re.search(rb"encoding=[\"'](?!utf-8)", head, re.I):
            head = STANDARD_HEAD  # we always serialise UTF-8, so the declaration must say so
        root = etree.fromstring(data, _PARSER)
        return cls(root.getroottree(), head)

    @classmethod
    def new(cls, root: etree._Element) -> _XmlPart:
        return cls(root.getroottree(), STANDARD_HEAD)

    def to_bytes(self) -> bytes:
        return self.head + etree.tostring(self.tree, encoding="UTF-8", xml_declaration=False)


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
            out += extra[i:i + 4 + size]
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
    data: bytes                   # compressed payload
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
        self._fh.write(_LOCAL.pack(b"PK\x03\x04", entry.extract_version, 0, entry.flags, entry.method, dostime,
                                   dosdate, entry.crc, len(entry.data), entry.size, len(entry.name_bytes),
                                   len(entry.local_extra)))
        self._fh.write(entry.name_bytes)
        self._fh.write(entry.local_extra)
        self._fh.write(entry.data)
        self._central.append((entry, offset))

    def finish(self, comment: bytes) -> None:
        start = self._fh.tell()
        for entry, offset in self._central:
            dostime, dosdate = _dos_time(entry.date_time)
            self._fh.write(_CENTRAL.pack(b"PK\x01\x02", entry.create_version, entry.create_system,
                                         entry.extract_version, 0, entry.flags, entry.method, dostime, dosdate,
                                         entry.crc, len(entry.data), entry.size, len(entry.name_bytes),
                                         len(entry.central_extra), len(entry.comment), 0, entry.internal_attr,
                                         entry.external_attr, offset))
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
    return _Entry(name_bytes=_name_bytes(info), flags=info.flag_bits & ~_FLAG_DATA_DESCRIPTOR,
                  method=info.compress_type, date_time=info.date_time, crc=info.CRC, size=info.file_size,
                  data=data, local_extra=_strip_zip64(local_extra), central_extra=_strip_zip64(info.extra),
                  comment=info.comment, create_version=info.create_version, create_system=info.create_system,
                  extract_version=20 if info.extract_version == 45 else info.extract_version,
                  internal_attr=info.internal_attr, external_attr=info.external_attr)


def _compress(data: bytes, method: int) -> bytes:
    if method == zipfile.ZIP_STORED:
        return data
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def _rewritten_entry(name: str, data: bytes, like: zipfile.ZipInfo | None) -> _Entry:
    """An entry with new content; it keeps the metadata (and compression type) of the entry it replaces."""
    method = like.compress_type if like is not None and like.compress_type == zipfile.ZIP_STORED \
        else zipfile.ZIP_DEFLATED
    try:
        name_bytes, flags = name.encode("ascii"), 0
    except UnicodeEncodeError:
        name_bytes, flags = name.encode("utf-8"), _FLAG_UTF8
    entry = _Entry(name_bytes=name_bytes, flags=flags, method=method, date_time=time.localtime()[:6],
                   crc=zlib.crc32(data), size=len(data), data=_compress(data, method))
    if like is not None:
        entry.name_bytes = _name_bytes(like)
        entry.flags = (like.flag_bits & ~(_FLAG_DATA_DESCRIPTOR | 0x06)) if method == zipfile.ZIP_DEFLATED \
            else like.flag_bits & ~_FLAG_DATA_DESCRIPTOR
        entry.date_time = like.date_time
        entry.local_extra, entry.central_extra = b"", _strip_zip64(like.extra)
        entry.comment, entry.create_version, entry.create_system = like.comment, like.create_version, like.create_system
        entry.internal_attr, entry.external_attr = like.internal_attr, like.external_attr
    return entry


def _zip_failure(path: Path, exc: Exception) -> PatchError:
    return PatchError(f"{path.name} is damaged and cannot be read ({exc}). Open it in Excel, let Excel repair it, "
                      f"and save it again as 'Excel Workbook (.xlsx)' or 'Excel Macro-Enabled Workbook (.xlsm)'")


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
            self.part = _XmlPart.new(etree.Element(f"{{{NS_PKG_REL}}}Relationships", nsmap={None: NS_PKG_REL}))
            self._pkg.add_part(self.name, self.part)
        used = {el.get("Id") for el in self.items()}
        numbers_used = [int(m.group(1)) for i in used if i and (m := re.fullmatch(r"rId(\d+)", i))]
        n = max(numbers_used, default=0) + 1
        while f"rId{n}" in used:
            n += 1
        rid = f"rId{n}"
        etree.SubElement(self.part.root, f"{{{NS_PKG_REL}}}Relationship", Id=rid, Type=rel_type, Target=target)
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

    @classmethod
    def open(cls, path: Path) -> _Package:
        if not path.is_file():
            raise PatchError(f"cannot find the workbook {path}")
        try:
            with open(path, "rb") as fh:
                magic = fh.read(8)
        except OSError as exc:
            raise PatchError(f"cannot read {path.name} ({exc.strerror or exc}); is it open or locked by another "
                             f"program?") from None
        if magic.startswith(b"\xd0\xcf\x11\xe0"):
            raise PatchError(f"{path.name} is password-protected (encrypted) or is an old .xls file; sheetflow can "
                             f"only write .xlsx/.xlsm files without a password to open. Save it in Excel as "
                             f"'Excel Workbook (.xlsx)' without a password")
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise PatchError(f"{path.name} is not a valid Excel workbook (.xlsx/.xlsm) or it is damaged ({exc}); "
                             f"open it in Excel and save it again as 'Excel Workbook (.xlsx)'") from None
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
            return self.zf.read(self.actual_name(name))
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, KeyError) as exc:
            raise _zip_failure(self.path, exc) from None

    def xml(self, name: str) -> _XmlPart:
        name = self.actual_name(name)
        part = self._added.get(name) or self._xml.get(name)
        if part is None:
            try:
                part = _XmlPart.parse(self.read(name))
            except etree.XMLSyntaxError as exc:
                raise PatchError(f"{self.path.name} is damaged: part {name} is not valid XML ({exc}). Open it in "
                                 f"Excel, let Excel repair it, and save it again") from None
            self._xml[name] = part
        return part

    def touch(self, name: str) -> None:
        """Mark a parsed part as changed, so it is serialised into the output."""
        self._dirty.add(self.actual_name(name))

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
        try:
            with open(dst, "wb") as out, open(self.path, "rb") as raw:
                writer = _ZipWriter(out)
                for info in self.infos:
                    if info.filename not in self._removed:
                        writer.add(self._output_entry(raw, info))
                for name, part in self._added.items():
                    writer.add(_rewritten_entry(name, part.to_bytes(), None))
                writer.finish(self.zf.comment)
        except OSError as exc:
            dst.unlink(missing_ok=True)
            raise PatchError(f"cannot write {dst} ({exc.strerror or exc})") from None
        except BaseException:
            dst.unlink(missing_ok=True)
            raise

    def _output_entry(self, raw: BinaryIO, info: zipfile.ZipInfo) -> _Entry:
        if info.filename in self._dirty:
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
        etree.SubElement(self.part.root, f"{{{NS_CT}}}Override", PartName="/" + part_name, ContentType=content_type)
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
    part: str | None        # zip entry of the sheet part
    kind: str               # "worksheet", "chartsheet", "dialogsheet", "xlMacrosheet", ...


class _Workbook:
    """workbook.xml and its relationships, as far as sheetflow needs them."""

    def __init__(self, pkg: _Package) -> None:
        self.pkg = pkg
        self.part_name = self._find_workbook_part()
        self.part = pkg.xml(self.part_name)
        root = self.part.root
        if STRICT_MARK in (etree.QName(root).namespace or ""):
            raise PatchError(f"{pkg.path.name} is saved as Strict Open XML; save it in Excel as 'Excel Workbook "
                             f"(.xlsx)' (File > Save As) so sheetflow can write into it")
        if etree.QName(root).namespace != NS_MAIN:
            raise PatchError(f"{pkg.path.name} does not look like an Excel workbook (unknown format "
                             f"{etree.QName(root).namespace}); save it in Excel as 'Excel Workbook (.xlsx)'")
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
            raise PatchError(f"{self.pkg.path.name} is saved as Strict Open XML; save it in Excel as 'Excel "
                             f"Workbook (.xlsx)' (File > Save As) so sheetflow can write into it")
        target = rels.target(docs[0]) if docs else None
        if target is None or not self.pkg.exists(target):
            raise PatchError(f"{self.pkg.path.name} is not an Excel workbook (no workbook part found); save it in "
                             f"Excel as 'Excel Workbook (.xlsx)'")
        if not target.lower().endswith(".xml"):
            raise PatchError(f"{self.pkg.path.name} is a binary workbook (.xlsb); save it in Excel as 'Excel "
                             f"Workbook (.xlsx)' so sheetflow can write into it")
        return target

    def _sheet_info(self, el: etree._Element) -> _SheetInfo:
        rel = self.rels.by_id(el.get(f"{{{NS_R}}}id", ""))
        part = self.rels.target(rel) if rel is not None else None
        kind = rel.get("Type", "").rsplit("/", 1)[-1] if rel is not None else "missing"
        return _SheetInfo(name=el.get("name", ""), element=el, sheet_id=int(el.get("sheetId", "0") or 0),
                          state=el.get("state", "visible"), part=part, kind=kind)

    def sheet(self, name: str) -> _SheetInfo | None:
        return next((s for s in self.sheets if s.name == name), None)

    def add_sheet(self, name: str, spec: NewSheet, content_types: _ContentTypes) -> _SheetInfo:
        """Create an empty worksheet part and register it (rels, workbook.xml, content types)."""
        _check_sheet_name(name)
        if spec.state not in ("visible", "hidden", "veryHidden"):
            raise PatchError(f'sheet "{name}": state must be "visible", "hidden" or "veryHidden", not "{spec.state}"')
        if any(s.name.casefold() == name.casefold() for s in self.sheets):
            raise PatchError(f'a sheet named "{name}" already exists in {self.pkg.path.name}')
        if self.structure_locked:
            raise PatchError(f'cannot add sheet "{name}": the workbook structure is protected (Review > Protect '
                             f'Workbook); unprotect it in Excel first')
        part_name = self._free_sheet_part()
        self.pkg.add_part(part_name, _XmlPart.new(_new_sheet_root(name, spec)))
        target = posixpath.relpath(part_name, posixpath.dirname(self.part_name) or ".")
        rid = self.rels.add(REL_WORKSHEET, target)
        sheet_id = max((s.sheet_id for s in self.sheets), default=0) + 1
        el = etree.SubElement(self.sheets_el, _q("sheet"), nsmap=None if NS_R in self.part.root.nsmap.values()
                              else {"r": NS_R})
        el.set("name", name)
        el.set("sheetId", str(sheet_id))
        if spec.state != "visible":
            el.set("state", spec.state)
        el.set(f"{{{NS_R}}}id", rid)
        self.pkg.touch(self.part_name)
        content_types.add_override(part_name, CT_WORKSHEET)
        info = _SheetInfo(name=name, element=el, sheet_id=sheet_id, state=spec.state, part=part_name,
                          kind="worksheet")
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
        raise PatchError(f'sheet name "{name}" contains {" ".join(bad)}; Excel does not allow [ ] : * ? / \\ in '
                         f'sheet names')
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
        etree.SubElement(view, _q("pane"), ySplit=str(spec.freeze_rows), topLeftCell=top, activePane="bottomLeft",
                         state="frozen")
        etree.SubElement(view, _q("selection"), pane="bottomLeft", activeCell=top, sqref=top)
    etree.SubElement(root, _q("sheetFormatPr"), defaultRowHeight="15")
    if spec.col_widths:
        cols = etree.SubElement(root, _q("cols"))
        for col, width in sorted(spec.col_widths.items()):
            if not isinstance(col, int) or not 1 <= col <= MAX_COL:
                raise PatchError(f'sheet "{name}": column {col!r} does not exist')
            if not isinstance(width, (int, float)) or not 0 <= width <= 255:
                raise PatchError(f'sheet "{name}": column width {width!r} is not between 0 and 255')
            etree.SubElement(cols, _q("col"), min=str(col), max=str(col), width=repr(float(width)),
                             customWidth="1")
    etree.SubElement(root, _q("sheetData"))
    if spec.validations:
        dvs = etree.SubElement(root, _q("dataValidations"), count=str(len(spec.validations)))
        for validation in spec.validations:
            _add_validation(dvs, name, validation)
    etree.SubElement(root, _q("pageMargins"), left="0.7", right="0.7", top="0.75", bottom="0.75", header="0.3",
                     footer="0.3")
    return root


def _add_validation(parent: etree._Element, sheet: str, validation: Validation) -> None:
    sqref = " ".join(validation.sqref.replace("$", "").split())
    try:
        for ref in sqref.split(" "):
            r1, c1, r2, c2 = parse_range(ref)
            if r2 > MAX_ROW or c2 > MAX_COL or r1 < 1 or c1 < 1:
                raise ValueError(ref)
    except ValueError:
        raise PatchError(f'sheet "{sheet}": dropdown range "{validation.sqref}" is not a cell range like '
                         f'C2:C5000') from None
    if (validation.options is None) == (validation.source is None):
        raise PatchError(f'sheet "{sheet}": dropdown {sqref} needs either a list of options or a source range')
    if validation.options is not None:
        items = [str(o) for o in validation.options]
        if any("," in o for o in items):
            raise PatchError(f'sheet "{sheet}": dropdown option {next(o for o in items if "," in o)!r} contains a '
                             f'comma; Excel cannot show it in a list (put the options in cells and use a source '
                             f'range)')
        formula = '"' + ",".join(o.replace('"', '""') for o in items) + '"'
        if len(formula) > MAX_LIST_FORMULA:
            raise PatchError(f'sheet "{sheet}": the options of dropdown {sqref} are longer than Excel allows '
                             f'({MAX_LIST_FORMULA} characters); put them in cells and use a source range')
    else:
        formula = validation.source.strip().lstrip("=")
    el = etree.SubElement(parent, _q("dataValidation"), type="list", allowBlank="1",
                          showErrorMessage="0" if validation.allow_other else "1", sqref=sqref)
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
        self.cell_xfs = self._child(root, "cellXfs", after=("numFmts", "fonts", "fills", "borders", "cellStyleXfs"))
        if len(self.cell_xfs) == 0:
            etree.SubElement(self.cell_xfs, _q("xf"), numFmtId="0", fontId="0", fillId="0", borderId="0")
        self.xfs = [el for el in self.cell_xfs if el.tag == _q("xf")]
        self.numfmts = {int(el.get("numFmtId", "-1")): el.get("formatCode", "")
                        for el in root.iterfind(f"{_q('numFmts')}/{_q('numFmt')}")}
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
            f'</cellStyles></styleSheet>')
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

    def _find_or_append(self, parent: etree._Element, existing: list[etree._Element], el: etree._Element) -> int:
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

@dataclass(frozen=True)
class _Rendered:
    """A value as it goes into the cell XML."""

    kind: str               # "str" | "num" | "bool" | "date" | "none"
    text: str = ""
    with_time: bool = False


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
        raise PatchError(f"{where}: Excel cannot store the date {value.isoformat()} (too early for this "
                         f"workbook's date system)")
    return days + seconds / 86400 if seconds else days


def _render(value: object, where: str, is1904: bool) -> _Rendered:
    """Validate and convert one Python value; errors name the cell."""
    if value is None:
        return _Rendered("none")
    if isinstance(value, str):
        return _Rendered("str", _clean_text(value))
    if isinstance(value, bool):
        return _Rendered("bool", "1" if value else "0")
    if isinstance(value, (dt.datetime, dt.date)):
        if value != value:  # pandas NaT
            raise PatchError(f"{where}: cannot write an empty date (NaT); use None to clear a cell")
        with_time = isinstance(value, dt.datetime) and value.time() != dt.time(0)
        serial = excel_serial(value, is1904, where)
        return _Rendered("date", str(serial) if isinstance(serial, int) else repr(serial), with_time)
    if isinstance(value, numbers.Integral):
        return _Rendered("num", str(int(value)))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise PatchError(f"{where}: cannot write {number} (not a finite number) into a cell")
        return _Rendered("num", repr(number))
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":  # numpy scalar (e.g. numpy.bool_): use the Python value
        return _render(item(), where, is1904)
    raise PatchError(f"{where}: cannot write a value of type {type(value).__name__} ({value!r}) into a cell")


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
        columns = [_unescape_x(el.get("name", ""))
                   for el in root.iterfind(f"{_q('tableColumns')}/{_q('tableColumn')}")]
        tables.append(_Table(name, part, root.get("displayName") or root.get("name", "?"), bounds,
                             int(root.get("headerRowCount", "1") or 1), int(root.get("totalsRowCount", "0") or 0),
                             columns))
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

class _RowCells:
    """The ``<c>`` elements of one row, by column (built only for rows we write into)."""

    __slots__ = ("cols", "cells")

    def __init__(self, row: etree._Element) -> None:
        self.cols: list[int] = []
        self.cells: dict[int, etree._Element] = {}
        r = row.get("r")
        col = 0
        for c in row.iterchildren(_q("c")):
            ref = c.get("r")
            if ref:
                col = parse_cell(ref)[1]
            else:  # the reference may be omitted: it is then the next column; make it explicit
                col += 1
                c.set("r", f"{col_letter(col)}{r}")
            self.cols.append(col)
            self.cells[col] = c
        if self.cols != sorted(self.cols):
            self.cols.sort()


class _SheetWriter:
    """Writes values into one worksheet part; every check runs before the first change."""

    def __init__(self, sheet: _SheetInfo, part: _XmlPart, styles: _Styles, is1904: bool,
                 tables: list[_Table]) -> None:
        self.name, self.sheet_id = sheet.name, sheet.sheet_id
        self.root = part.root
        self.styles, self.is1904, self.tables = styles, is1904, tables
        self.removed_formulas: set[str] = set()
        sheet_data = self.root.find(_q("sheetData"))
        if sheet_data is None:
            raise PatchError(f'sheet "{self.name}" is damaged (it has no cell data section)')
        self.sheet_data = sheet_data
        self._rows: dict[int, etree._Element] = {}
        self._row_nums: list[int] = []
        self._row_cells: dict[int, _RowCells] = {}
        self._rendered: dict[tuple[int, int], _Rendered] = {}
        self._index_rows()
        self._col_styles = self._read_col_styles()

    # -- indexes --------------------------------------------------------------------------------------------
    def _index_rows(self) -> None:
        previous = 0
        for row in self.sheet_data.iterchildren(_q("row")):
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
        return [(int(c.get("min", "0")), int(c.get("max", "0")), int(c.get("style", "0")))
                for c in cols.iterchildren(_q("col")) if c.get("style") not in (None, "0")]

    def _cells_of(self, r: int) -> _RowCells:
        cells = self._row_cells.get(r)
        if cells is None:
            cells = self._row_cells[r] = _RowCells(self._rows[r])
        return cells

    # -- checks ---------------------------------------------------------------------------------------------
    def prepare(self, cells: dict[tuple[int, int], CellValue], replace: bool) -> None:
        """Run every check and convert every value; raises PatchError before anything is changed."""
        self.check_writable(cells, replace)
        self._rendered = {key: _render(value, _where(self.name, *key), self.is1904) for key, value in cells.items()}

    def check_writable(self, cells: dict[tuple[int, int], CellValue], replace: bool) -> None:
        protection = self.root.find(_q("sheetProtection"))
        if protection is not None and _true(protection.get("sheet")):
            raise PatchError(f'sheet "{self.name}" is protected; unprotect it in Excel or let sheetflow write '
                             f'elsewhere')
        for (r, c) in cells:
            if not (isinstance(r, int) and isinstance(c, int) and 1 <= r <= MAX_ROW and 1 <= c <= MAX_COL):
                raise PatchError(f'sheet "{self.name}": ({r!r}, {c!r}) is not a cell (rows 1-{MAX_ROW}, '
                                 f'columns 1-{MAX_COL})')
        if replace and self.tables:
            raise PatchError(f'sheet "{self.name}" holds the Excel table "{self.tables[0].name}", so sheetflow will '
                             f'not clear it; remove the table or let sheetflow use another sheet')
        by_row: dict[int, list[int]] = {}
        for (r, c) in cells:
            by_row.setdefault(r, []).append(c)
        rows = sorted(by_row)
        if not replace:  # clearing a cell (None) also deletes its formula: checked like any other write
            self._check_formulas(by_row, rows)
        valued: dict[int, list[int]] = {}
        for (r, c), value in cells.items():
            if value is not None:  # clearing a covered cell of a merged range is harmless
                valued.setdefault(r, []).append(c)
        self._check_merges(valued, sorted(valued))
        self._check_table_headers(cells)

    def _cells_in(self, bounds: tuple[int, int, int, int], by_row: dict[int, list[int]],
                  rows: list[int]) -> Iterator[tuple[int, int]]:
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
                    raise PatchError(f"{_where(self.name, r, c)} is inside the merged cells {format_range(*bounds)}; "
                                     f"only its top-left cell {format_range(*bounds[:2], *bounds[:2])} can hold a "
                                     f"value. Unmerge the cells in Excel or let sheetflow write elsewhere")

    def _check_formulas(self, by_row: dict[int, list[int]], rows: list[int]) -> None:
        for f in self.sheet_data.iter(_q("f")):
            kind, ref = f.get("t"), f.get("ref")
            if not ref or kind not in ("shared", "array", "dataTable"):
                continue
            cell = f.getparent()
            try:
                r, c = parse_cell(cell.get("r", ""))
                bounds = parse_range(ref)
            except ValueError:
                continue
            if kind == "shared":
                if c in by_row.get(r, ()):
                    raise PatchError(f"{_where(self.name, r, c)} holds a shared formula that other cells use; "
                                     f"sheetflow will not overwrite it")
                continue
            for wr, wc in self._cells_in(bounds, by_row, rows):
                what = "an array formula" if kind == "array" else "a what-if data table"
                raise PatchError(f"{_where(self.name, wr, wc)} is part of {what} ({format_range(*bounds)}); "
                                 f"sheetflow will not overwrite it")

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
                    raise PatchError(f'{_where(self.name, r1, c)} is the header of column "{header}" of the Excel '
                                     f'table "{table.name}"; sheetflow will not rename table columns')

    # -- writing --------------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Drop every row (replace=True): the sheet belongs to sheetflow."""
        for row in list(self.sheet_data.iterchildren(_q("row"))):
            for f in row.iter(_q("f")):
                self.removed_formulas.add(f.getparent().get("r", ""))
            self.sheet_data.remove(row)
        self._rows.clear()
        self._row_nums.clear()
        self._row_cells.clear()

    def write(self, bold_rows: Iterable[int] = ()) -> dict[int, set[int]]:
        """Write the prepared cells in (row, column) order, so appending below the last row is O(1);
        returns the cells that now hold a value, by row."""
        bold = set(bold_rows)
        written: dict[int, set[int]] = {}
        rendered = self._rendered
        for (r, c) in sorted(rendered):
            value = rendered[(r, c)]
            if value.kind == "none":
                self._clear_cell(r, c)
                continue
            base = self.styles.bold() if r in bold else None
            self._set_cell(self._cell(r, c, base), value)
            written.setdefault(r, set()).add(c)
        return written

    def _new_row(self, r: int) -> etree._Element:
        row = etree.SubElement(self.sheet_data, _q("row"), r=str(r))
        if self._row_nums and r < self._row_nums[-1]:
            i = bisect.bisect_left(self._row_nums, r)
            self._rows[self._row_nums[i]].addprevious(row)
            self._row_nums.insert(i, r)
        else:
            self._row_nums.append(r)
        self._rows[r] = row
        self._row_cells[r] = _RowCells(row)
        return row

    def _inherited_style(self, row: etree._Element, c: int) -> int:
        """A new cell shows the row's style (if the row is formatted) or the column's, as Excel does."""
        if _true(row.get("customFormat")) and row.get("s"):
            return int(row.get("s"))
        for lo, hi, style in self._col_styles:
            if lo <= c <= hi:
                return style
        return 0

    def _cell(self, r: int, c: int, base_style: int | None) -> etree._Element:
        row = self._rows.get(r)
        if row is None:
            row = self._new_row(r)
        cells = self._cells_of(r)
        cell = cells.cells.get(c)
        if cell is None:
            cell = etree.SubElement(row, _q("c"), r=f"{col_letter(c)}{r}")
            if cells.cols and c < cells.cols[-1]:
                i = bisect.bisect_left(cells.cols, c)
                cells.cells[cells.cols[i]].addprevious(cell)
                cells.cols.insert(i, c)
            else:  # the common case: a new last cell (a row-level extLst, if any, stays last)
                if cells.cols:
                    cells.cells[cells.cols[-1]].addnext(cell)
                else:
                    row.insert(0, cell)
                cells.cols.append(c)
            cells.cells[c] = cell
            style = self._inherited_style(row, c) if base_style is None else base_style
            if style:
                cell.set("s", str(style))
            self._widen_spans(row, c)
        elif base_style is not None:
            cell.set("s", str(base_style))
        return cell

    @staticmethod
    def _widen_spans(row: etree._Element, c: int) -> None:
        spans = row.get("spans")
        if not spans:
            return
        m = re.fullmatch(r"(\d+):(\d+)", spans)
        if m is None:
            del row.attrib["spans"]  # an optimisation hint only; wrong is worse than absent
        elif not int(m.group(1)) <= c <= int(m.group(2)):
            row.set("spans", f"{min(int(m.group(1)), c)}:{max(int(m.group(2)), c)}")

    def _empty(self, cell: etree._Element) -> etree._Element | None:
        """Remove the value and formula of a cell (keeping its style); returns a cell-level extLst, if any."""
        ext = None
        for child in list(cell):
            if child.tag == _q("f"):
                self.removed_formulas.add(cell.get("r", ""))
            if child.tag == _q("extLst"):
                ext = child
            cell.remove(child)
        for attr in ("t", "cm", "vm"):
            cell.attrib.pop(attr, None)
        return ext

    def _clear_cell(self, r: int, c: int) -> None:
        if r in self._rows:
            cell = self._cells_of(r).cells.get(c)
            if cell is not None:
                ext = self._empty(cell)
                if ext is not None:
                    cell.append(ext)

    def _set_cell(self, cell: etree._Element, value: _Rendered) -> None:
        ext = self._empty(cell)
        if value.kind == "str":
            cell.set("t", "inlineStr")
            t = etree.SubElement(etree.SubElement(cell, _q("is")), _q("t"))
            t.text = value.text
            if value.text != value.text.strip() or any(ch in value.text for ch in "\n\r\t"):
                t.set(XML_SPACE, "preserve")
        else:
            if value.kind == "bool":
                cell.set("t", "b")
            elif value.kind == "date":
                style = int(cell.get("s", "0") or 0)
                new_style = self.styles.date_style(style, value.with_time)
                if new_style != style:
                    cell.set("s", str(new_style))
            etree.SubElement(cell, _q("v")).text = value.text
        if ext is not None:
            cell.append(ext)

    def update_dimension(self, written: dict[int, set[int]], replace: bool, was_empty: bool) -> None:
        dim = self.root.find(_q("dimension"))
        if dim is None:
            return
        if not written:
            if replace:
                dim.set("ref", "A1")
            return
        rows = list(written)
        box = [min(rows), min(min(cs) for cs in written.values()), max(rows), max(max(cs) for cs in written.values())]
        if not (replace or was_empty):
            try:
                old = parse_range(dim.get("ref", "A1"))
                box = [min(box[0], old[0]), min(box[1], old[1]), max(box[2], old[2]), max(box[3], old[3])]
            except ValueError:
                pass
        dim.set("ref", format_range(*box))

    @property
    def is_empty(self) -> bool:
        return not any(len(row) for row in self._rows.values())


# --------------------------------------------------------------------------------------------------------------
# calcChain
# --------------------------------------------------------------------------------------------------------------

def _prune_calc_chain(pkg: _Package, book: _Workbook, content_types: _ContentTypes,
                      removed: dict[int, set[str]]) -> None:
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
            merged[patch.sheet] = SheetPatch(patch.sheet, dict(patch.cells), patch.new, patch.replace)
            continue
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


def _apply_patches(pkg: _Package, book: _Workbook, patches: list[SheetPatch]) -> None:
    """Check every patch, then change the parsed parts in memory (the caller writes them out)."""
    content_types = _ContentTypes(pkg)
    styles = _Styles(pkg, book, content_types)
    removed: dict[int, set[str]] = {}
    jobs = []
    for patch in patches:  # all checks first: nothing is changed if any patch is refused
        sheet = _target_sheet(book, patch, content_types)
        part = pkg.xml(sheet.part)
        tables = [] if patch.new is not None else _sheet_tables(pkg, sheet.part)
        writer = _SheetWriter(sheet, part, styles, book.date1904, tables)
        writer.prepare(patch.cells, patch.replace)
        jobs.append((patch, sheet, writer))
    touched_existing = False
    for patch, sheet, writer in jobs:
        if patch.replace:
            writer.clear()
        was_empty = writer.is_empty
        written = writer.write(patch.new.bold_rows if patch.new else ())
        writer.update_dimension(written, patch.replace, was_empty)
        _grow_tables(pkg, writer.tables, written)
        if patch.new is None and (patch.cells or patch.replace):  # an empty patch leaves the part byte-identical
            pkg.touch(sheet.part)
            touched_existing = True
        removed.setdefault(sheet.sheet_id, set()).update(writer.removed_formulas)
    had_calc_chain = bool(book.rels.of_type(REL_CALC_CHAIN))
    _prune_calc_chain(pkg, book, content_types, removed)
    if touched_existing and had_calc_chain:
        book.request_full_calc()

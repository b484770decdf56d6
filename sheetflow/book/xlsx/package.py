"""The OPC package (ECMA-376 Part 2): parts by name, their relationships (``_rels/*.rels``), content types
(``[Content_Types].xml``), and the calculation chain (``xl/calcChain.xml``, Part 1 18.6).

:class:`Package` hands out parsed parts (worksheets parsed in the background), tracks which parts changed,
and writes the new zip: changed parts serialised, all others copied unchanged (:mod:`.zipio`). Part names
are matched case-insensitively as OPC requires (Part 2, 9.1.1.1). ``calcChain.xml`` loses the entries of
formulas we overwrote (Excel reports a corrupt file otherwise) and is dropped when empty.
``docProps/app.xml`` is deliberately not updated for new sheets (its sheet list is informational; Excel does
not check it), and ``sharedStrings.xml`` never changes because the writer uses inline strings.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lxml import etree

from sheetflow.book.patch import PatchError
from sheetflow.book.xlsx.rawrows import delete_sheet_rows
from sheetflow.book.xlsx.refs import RowMap
from sheetflow.book.xlsx.xmlparts import (
    NS_CT,
    NS_PKG_REL,
    PARSER,
    PARSER_OPTIONS,
    XmlPart,
)
from sheetflow.book.xlsx.zipio import (
    BIG_ENTRY,
    FLAG_ENCRYPTED,
    ZipWriter,
    copied_entry,
    finished,
    load_sheet,
    rewritten_entry,
    zip_failure,
)

if TYPE_CHECKING:
    from sheetflow.book.xlsx.zipio import Entry


def _rels_name(part: str) -> str:
    folder, base = posixpath.split(part)
    return posixpath.join(folder, "_rels", base + ".rels")


class _Rels:
    """The relationships of one part (its ``_rels/*.rels`` file), created on demand."""

    def __init__(self, pkg: Package, source: str) -> None:
        self._pkg, self.source = pkg, source
        self.name = _rels_name(source) if source else "_rels/.rels"
        self._base = posixpath.dirname(source)
        if pkg.exists(self.name):
            self.part: XmlPart | None = pkg.xml(self.name)
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
            self.part = XmlPart.new(etree.Element(f"{{{NS_PKG_REL}}}Relationships", nsmap={None: NS_PKG_REL}))
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


class Package:
    """The source zip, the parts parsed so far, and what changes in the output."""

    def __init__(self, path: Path, zf: zipfile.ZipFile) -> None:
        self.path, self.zf = path, zf
        self.infos = zf.infolist()
        self._by_lower = {info.filename.lower(): info.filename for info in self.infos}
        self._xml: dict[str, XmlPart] = {}
        self._dirty: set[str] = set()
        self._added: dict[str, XmlPart] = {}
        self._removed: set[str] = set()
        self._rels: dict[str, _Rels] = {}
        self.pool: ThreadPoolExecutor | None = None  # background work, when the caller provides threads
        self.deflate_pool: ThreadPoolExecutor | None = None  # pieces of big parts being compressed
        self._parsing: dict[str, Future[XmlPart]] = {}  # parts being parsed in the background
        self._output: dict[str, Future[Entry]] = {}  # finished parts being serialised and compressed
        self.row_deletions: dict[str, tuple[str, RowMap]] = {}  # sheet part -> (sheet name, rows deleted)

    @classmethod
    def open(cls, path: Path) -> Package:
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
            if info.flag_bits & FLAG_ENCRYPTED:
                zf.close()
                raise PatchError(f"{path.name} contains encrypted parts; remove the password in Excel first")
        return pkg

    def __enter__(self) -> Package:
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
            if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size >= BIG_ENTRY:
                return self._inflate(info)
            return self.zf.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, KeyError) as exc:
            raise zip_failure(self.path, exc) from None

    def _inflate(self, info: zipfile.ZipInfo) -> bytes:
        """zf.read() in one zlib call: zipfile inflates in steps that each take the GIL again, which makes a
        background read crawl (and slows the main thread) while the main thread runs Python code."""
        with open(self.path, "rb") as raw:
            compressed = copied_entry(raw, info).data
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
            lambda: load_sheet(self._sheet_bytes(name), etree.XMLParser(**PARSER_OPTIONS))
        )

    def _sheet_bytes(self, name: str) -> bytes:
        """A worksheet part's bytes, with the rows deleted that a patch asks to delete (see row_deletions)."""
        data = self.read(name)
        deletion = self.row_deletions.get(name)
        return delete_sheet_rows(data, deletion[1], deletion[0]) if deletion else data

    def parsed(self, name: str) -> bool:
        """Whether xml()/sheet_xml() would return at once."""
        name = self.actual_name(name)
        parsing = self._parsing.get(name)
        return name in self._added or name in self._xml or (parsing is not None and parsing.done())

    def sheet_xml(self, name: str) -> XmlPart:
        """A worksheet part: like xml(), but a big one may come without its rows in the tree (see RawRows)."""
        name = self.actual_name(name)
        if name not in self._added and name not in self._xml and name not in self._parsing:
            self._parsing[name] = finished(lambda: load_sheet(self._sheet_bytes(name), PARSER))
        return self.xml(name)

    def xml(self, name: str) -> XmlPart:
        name = self.actual_name(name)
        part = self._added.get(name) or self._xml.get(name)
        if part is None:
            parsing = self._parsing.pop(name, None)
            try:
                part = parsing.result() if parsing is not None else XmlPart.parse(self.read(name))
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
            lambda: rewritten_entry(name, part.to_bytes(), like, self.deflate_pool)
        )

    def add_part(self, name: str, part: XmlPart) -> None:
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
                writer = ZipWriter(out)
                for info in self.infos:
                    if info.filename not in self._removed:
                        writer.add(self._output_entry(raw, info))
                for name, part in self._added.items():
                    output = self._output.get(name)
                    writer.add(output.result() if output else rewritten_entry(name, part.to_bytes(), None))
                writer.finish(self.zf.comment)
        except OSError as exc:
            dst.unlink(missing_ok=True)
            raise PatchError(f"cannot write {dst} ({exc.strerror or exc})") from None
        except BaseException:
            dst.unlink(missing_ok=True)
            raise

    def _output_entry(self, raw: BinaryIO, info: zipfile.ZipInfo) -> Entry:
        if info.filename in self._dirty:
            output = self._output.get(info.filename)
            if output is not None:
                return output.result()
            return rewritten_entry(info.filename, self._xml[info.filename].to_bytes(), info)
        try:
            return copied_entry(raw, info)
        except (zipfile.BadZipFile, OSError) as exc:
            raise zip_failure(self.path, exc) from None


class ContentTypes:
    """``[Content_Types].xml``: one Override per part we add or remove."""

    NAME = "[Content_Types].xml"

    def __init__(self, pkg: Package) -> None:
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

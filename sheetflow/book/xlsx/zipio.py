"""Zip I/O: reading the package's entries and writing the new package, where every entry we did not change is
copied as its original compressed bytes (same method, same flags, same order).

Follows PKWARE's APPNOTE (local file headers, central directory, ZIP64 extras, data descriptors) as far as
OPC packages use it (ECMA-376 Part 2, annex C: no encryption, deflate or stored). Rewritten parts are
compressed in background threads (zlib releases the GIL), big ones in independent deflate pieces joined
with sync flushes so several cores can work on one part; worksheets bigger than ``_RAW_ROWS_MIN_BYTES`` are
loaded as :class:`~sheetflow.book.xlsx.rawrows.RawRows`. The caller writes to a temporary file and
replaces the workbook atomically (:mod:`sheetflow.book.xlsx.book`).
"""

from __future__ import annotations

import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from sheetflow.book.patch import PatchError
from sheetflow.book.xlsx.rawrows import RawRows
from sheetflow.book.xlsx.xmlparts import XmlPart

_RAW_ROWS_MIN_BYTES = 1 << 20  # smaller worksheets are parsed into a tree: fast enough, and the reference


_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_ZIP64_EXTRA = 0x0001
FLAG_ENCRYPTED = 0x01
_FLAG_DATA_DESCRIPTOR = 0x08
_FLAG_UTF8 = 0x800
_LIMIT32 = 0xFFFFFFFF


def _strip_zip64(extra: bytes) -> bytes:
    """Drop zip64 extra fields: we write real 32-bit sizes, so a stale zip64 record would contradict them."""
    out, i = bytearray(), 0
    while i + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, i)
        if kind != _ZIP64_EXTRA:
            out += extra[i : i + 4 + size]
        i += 4 + size
    return bytes(out)


def _dos_time(date_time: tuple[int, ...]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time[:6]
    if year < 1980:
        year, month, day, hour, minute, second = 1980, 1, 1, 0, 0, 0
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


@dataclass
class Entry:
    """One entry of the output zip: metadata plus the already-compressed bytes."""

    name_bytes: bytes
    flags: int
    method: int
    date_time: tuple[int, ...]
    crc: int
    size: int
    data: bytes  # compressed payload
    local_extra: bytes = b""
    central_extra: bytes = b""
    comment: bytes = b""
    create_version: int = 20
    create_system: int = 0
    extract_version: int = 20
    internal_attr: int = 0
    external_attr: int = 0


class ZipWriter:
    """Minimal zip writer that can take pre-compressed data, so untouched entries keep their exact bytes."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._central: list[tuple[Entry, int]] = []

    def add(self, entry: Entry) -> None:
        offset = self._fh.tell()
        if offset > _LIMIT32 or len(entry.data) > _LIMIT32 or entry.size > _LIMIT32:
            raise PatchError("the workbook is too large (over 4 GB) for sheetflow to write")
        dostime, dosdate = _dos_time(entry.date_time)
        self._fh.write(
            _LOCAL.pack(
                b"PK\x03\x04",
                entry.extract_version,
                0,
                entry.flags,
                entry.method,
                dostime,
                dosdate,
                entry.crc,
                len(entry.data),
                entry.size,
                len(entry.name_bytes),
                len(entry.local_extra),
            )
        )
        self._fh.write(entry.name_bytes)
        self._fh.write(entry.local_extra)
        self._fh.write(entry.data)
        self._central.append((entry, offset))

    def finish(self, comment: bytes) -> None:
        start = self._fh.tell()
        for entry, offset in self._central:
            dostime, dosdate = _dos_time(entry.date_time)
            self._fh.write(
                _CENTRAL.pack(
                    b"PK\x01\x02",
                    entry.create_version,
                    entry.create_system,
                    entry.extract_version,
                    0,
                    entry.flags,
                    entry.method,
                    dostime,
                    dosdate,
                    entry.crc,
                    len(entry.data),
                    entry.size,
                    len(entry.name_bytes),
                    len(entry.central_extra),
                    len(entry.comment),
                    0,
                    entry.internal_attr,
                    entry.external_attr,
                    offset,
                )
            )
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


def copied_entry(raw: BinaryIO, info: zipfile.ZipInfo) -> Entry:
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
    return Entry(
        name_bytes=_name_bytes(info),
        flags=info.flag_bits & ~_FLAG_DATA_DESCRIPTOR,
        method=info.compress_type,
        date_time=info.date_time,
        crc=info.CRC,
        size=info.file_size,
        data=data,
        local_extra=_strip_zip64(local_extra),
        central_extra=_strip_zip64(info.extra),
        comment=info.comment,
        create_version=info.create_version,
        create_system=info.create_system,
        extract_version=20 if info.extract_version == 45 else info.extract_version,
        internal_attr=info.internal_attr,
        external_attr=info.external_attr,
    )


_DEFLATE_CHUNK = 1 << 22  # big parts are compressed in pieces of this size, in parallel
BIG_ENTRY = 1 << 16  # entries this big are inflated in one call (see Package._inflate)
_DEFLATE_WINDOW = 1 << 15


def _deflate(data: memoryview, start: int, end: int, last: bool) -> bytes:
    """Raw deflate of data[start:end] as one piece of a longer stream: it may refer back to the 32 KB before
    ``start`` (which the reader has just decompressed) and, unless ``last``, ends on a byte boundary without
    ending the stream (Z_SYNC_FLUSH), so the pieces can simply be concatenated (as pigz does)."""
    if start:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=data[max(0, start - _DEFLATE_WINDOW) : start])
    else:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data[start:end]) + packer.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _compress(data: bytes, method: int, pool: ThreadPoolExecutor | None = None) -> bytes:
    if method == zipfile.ZIP_STORED:
        return data
    if pool is None or len(data) < 2 * _DEFLATE_CHUNK:
        return _deflate(memoryview(data), 0, len(data), last=True)
    view, size = memoryview(data), len(data)
    pieces = [
        pool.submit(_deflate, view, start, min(start + _DEFLATE_CHUNK, size), start + _DEFLATE_CHUNK >= size)
        for start in range(0, size, _DEFLATE_CHUNK)
    ]
    return b"".join(piece.result() for piece in pieces)


def rewritten_entry(
    name: str, data: bytes, like: zipfile.ZipInfo | None, deflate_pool: ThreadPoolExecutor | None = None
) -> Entry:
    """An entry with new content; it keeps the metadata (and compression type) of the entry it replaces."""
    method = (
        like.compress_type
        if like is not None and like.compress_type == zipfile.ZIP_STORED
        else zipfile.ZIP_DEFLATED
    )
    try:
        name_bytes, flags = name.encode("ascii"), 0
    except UnicodeEncodeError:
        name_bytes, flags = name.encode("utf-8"), _FLAG_UTF8
    entry = Entry(
        name_bytes=name_bytes,
        flags=flags,
        method=method,
        date_time=time.localtime()[:6],
        crc=zlib.crc32(data),
        size=len(data),
        data=_compress(data, method, deflate_pool),
    )
    if like is not None:
        entry.name_bytes = _name_bytes(like)
        entry.flags = (
            (like.flag_bits & ~(_FLAG_DATA_DESCRIPTOR | 0x06))
            if method == zipfile.ZIP_DEFLATED
            else like.flag_bits & ~_FLAG_DATA_DESCRIPTOR
        )
        entry.date_time = like.date_time
        entry.local_extra, entry.central_extra = b"", _strip_zip64(like.extra)
        entry.comment, entry.create_version, entry.create_system = (
            like.comment,
            like.create_version,
            like.create_system,
        )
        entry.internal_attr, entry.external_attr = like.internal_attr, like.external_attr
    return entry


def finished(work: Callable[[], object]) -> Future:
    """A future holding the outcome of ``work``, run now."""
    future: Future = Future()
    try:
        future.set_result(work())
    except BaseException as exc:  # noqa: BLE001 - delivered by result(), like a background job's
        future.set_exception(exc)
    return future


def load_sheet(data: bytes, parser: etree.XMLParser) -> XmlPart:
    """A worksheet part: a big one with a plain sheetData as a tree without rows plus the rows as bytes
    (RawRows), any other parsed into a full tree."""
    if len(data) >= _RAW_ROWS_MIN_BYTES:
        part = RawRows.split(data, parser)
        if part is not None:
            return part
    return XmlPart.parse(data, parser)


def zip_failure(path: Path, exc: Exception) -> PatchError:
    return PatchError(
        f"{path.name} is damaged and cannot be read ({exc}). Open it in Excel, let Excel repair it, "
        f"and save it again as 'Excel Workbook (.xlsx)' or 'Excel Macro-Enabled Workbook (.xlsm)'"
    )

"""One factory per workbook backend for the conformance suite (``test_conformance.py``).

A factory builds a workbook with given contents through a path independent of the backend under test (the
way a person or another program would), opens it as a :class:`~sheetflow.book.base.Book`, opens it a second
time, and changes it behind the Book's back. A new backend (gsheets, excel) is one more class here and one
more entry in ``BACKENDS``; the suite then runs on it unchanged.

Seed values: str, numbers, bool, dates, None (empty), :class:`Formula` (a formula with its last computed
number) and :class:`ErrorValue` (a formula error like ``#N/A``).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from openpyxl import Workbook, load_workbook
from openpyxl.utils import get_column_letter

from sheetflow.book import Book
from sheetflow.book.memory import ErrorValue, Formula, MemoryBook
from sheetflow.book.xlsx import XlsxBook

Sheets = Mapping[str, list[list[Any]]]


class Backend(Protocol):
    name: str

    def make(self, sheets: Sheets, states: Mapping[str, str] | None = None) -> Book:
        """A new workbook with these sheets (rows of seed values from A1, in order) and sheet states."""

    def reopen(self, book: Book) -> Book:
        """The same workbook opened a second time (another runner)."""

    def change_behind(self, book: Book, sheet: str, row: int, col: int, value: Any) -> None:
        """A person changes one cell of the workbook, not through ``book``."""


class XlsxBackend:
    name = "xlsx"

    def __init__(self, tmp_path: Path):
        self.path = tmp_path / "crm.xlsx"

    def make(self, sheets: Sheets, states: Mapping[str, str] | None = None) -> Book:
        wb = Workbook()
        wb.remove(wb.active)
        cached: dict[tuple[int, str], object] = {}
        for index, (name, rows) in enumerate(sheets.items()):
            ws = wb.create_sheet(name)
            ws.sheet_state = (states or {}).get(name, "visible")
            for r, row in enumerate(rows, start=1):
                for c, value in enumerate(row, start=1):
                    if value is None:
                        continue
                    cell = ws.cell(r, c)
                    if isinstance(value, ErrorValue):
                        cell.value, cell.data_type = value.code, "e"
                    elif isinstance(value, Formula):
                        cell.value = value.text
                        cached[(index, f"{get_column_letter(c)}{r}")] = value.value
                    else:
                        cell.value = value
                        if isinstance(value, str):
                            cell.data_type = "s"  # openpyxl takes "=..." for a formula; a person typed text
        wb.save(self.path)
        if cached:
            _put_cached_values(self.path, cached)
        return XlsxBook(self.path)

    def reopen(self, book: Book) -> Book:
        return XlsxBook(self.path)

    def change_behind(self, book: Book, sheet: str, row: int, col: int, value: Any) -> None:
        wb = load_workbook(self.path)
        wb[sheet].cell(row, col).value = value
        wb.save(self.path)


def _put_cached_values(path: Path, cached: dict[tuple[int, str], object]) -> None:
    """openpyxl writes formulas without a computed value; put one in, as Excel would have saved it."""
    with zipfile.ZipFile(path) as zf:
        parts = {info.filename: zf.read(info.filename) for info in zf.infolist()}
    for (index, ref), value in cached.items():
        name = f"xl/worksheets/sheet{index + 1}.xml"
        xml = parts[name].decode("utf-8")
        xml, n = re.subn(
            rf'(<c r="{ref}"[^>]*>(?:<f>[^<]*</f>))<v\s*/?>(?:</v>)?', rf"\g<1><v>{value}</v>", xml
        )
        assert n == 1, (ref, xml)
        parts[name] = xml.encode("utf-8")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)


class MemoryBackend:
    name = "memory"

    def __init__(self, tmp_path: Path):
        self.workdir = tmp_path / ".sheetflow"

    def make(self, sheets: Sheets, states: Mapping[str, str] | None = None) -> Book:
        return MemoryBook(sheets, name="crm", states=states, workdir=self.workdir)

    def reopen(self, book: Book) -> Book:
        assert isinstance(book, MemoryBook)
        return book.handle()

    def change_behind(self, book: Book, sheet: str, row: int, col: int, value: Any) -> None:
        assert isinstance(book, MemoryBook)
        book.edit(sheet, {(row, col): value})


class ExcelBackend:
    """The live-workbook backend (sheetflow/book/excel.py) on the xlwings stand-in: the workbook "open in
    Excel" is a stand-in Book; a second handle is a second ExcelBook on it; a person's change is typed in."""

    name = "excel"

    def __init__(self, tmp_path: Path):
        self.fullname = str(tmp_path / "crm.xlsx")

    def make(self, sheets: Sheets, states: Mapping[str, str] | None = None) -> Book:
        from sheetflow.book.excel import ExcelBook
        from sheetflow.testing import xlwings_standin as xw

        return ExcelBook(xw.Book(dict(sheets), fullname=self.fullname, states=dict(states or {})))

    def reopen(self, book: Book) -> Book:
        from sheetflow.book.excel import ExcelBook

        return ExcelBook(book.xl)

    def change_behind(self, book: Book, sheet: str, row: int, col: int, value: Any) -> None:
        book.xl.edit(sheet, f"{get_column_letter(col)}{row}", value)


BACKENDS: dict[str, Callable[[Path], Backend]] = {
    "xlsx": XlsxBackend,
    "memory": MemoryBackend,
    "excel": ExcelBackend,
}


# ---------------------------------------------------------------- Google Sheets, through the local emulator

_EMULATOR = None


def emulator():
    """One emulator server for the test session (started on first use, stopped at exit)."""
    global _EMULATOR
    if _EMULATOR is None:
        import atexit

        from sheetflow.testing.sheets_emulator import start

        _EMULATOR = start()
        atexit.register(_EMULATOR.stop)
    return _EMULATOR


def seed_cell(value: Any):
    """A seed value as the emulator stores it: formulas and error values here, the rest as
    :func:`sheetflow.testing.seed.seed_cell` (dates as serials with a date format, like Google)."""
    from sheetflow.testing.seed import seed_cell as plain
    from sheetflow.testing.sheets_emulator import Cell

    if isinstance(value, Formula):
        return Cell(None, value.text)
    if isinstance(value, ErrorValue):
        return value.code  # the emulator keeps "#N/A" and friends as error values
    return plain(value)


def seed_spreadsheet(emu, sheets: Sheets, states: Mapping[str, str] | None = None, **kw) -> str:
    """A new spreadsheet in the emulator holding ``sheets`` as a person would have typed them."""
    specs = [
        {
            "title": name,
            "values": [],
            "hidden": (states or {}).get(name, "visible") != "visible",
            "rowCount": max(1000, len(rows)),
            "columnCount": max([26, *(len(r) for r in rows)]),
        }
        for name, rows in sheets.items()
    ]
    sid = emu.create_spreadsheet(specs or None, **kw)
    book = emu.spreadsheets[sid]
    for name, rows in sheets.items():
        sheet = book.sheet_by_title(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                stored = seed_cell(value)
                if stored is not None:
                    sheet.put(r, c, stored)
    return sid


class GSheetsBackend:
    """A spreadsheet in the local emulator, opened with a real gspread client (as ``gsheets:ID``)."""

    name = "gsheets"
    tolerates_edits = True  # people edit a shared spreadsheet: a change is re-found by id, not refused
    states = {
        "veryHidden": "hidden"
    }  # Google has one hidden state; sheetflow's _system sheets read veryHidden

    def __init__(self, tmp_path: Path):
        self.emu = emulator()
        self.workdir = tmp_path / ".sheetflow"
        self.sid = ""

    def open(self, **kwargs) -> Book:
        from sheetflow.book.gsheets import GSheetsBook
        from sheetflow.testing.sheets_emulator import emulator_client

        return GSheetsBook(
            f"gsheets:{self.sid}",
            client=emulator_client(self.emu.base_url, timeout=5),
            workdir=self.workdir,
            settle=0,
            **kwargs,
        )

    def make(self, sheets: Sheets, states: Mapping[str, str] | None = None) -> Book:
        self.sid = seed_spreadsheet(self.emu, sheets, states)
        return self.open()

    def reopen(self, book: Book) -> Book:
        return self.open()

    def change_behind(self, book: Book, sheet: str, row: int, col: int, value: Any) -> None:
        import time

        from sheetflow.testing.sheets_emulator import col_letters

        time.sleep(0.002)  # Drive's modifiedTime has millisecond resolution
        self.emu.set_values(self.sid, f"'{sheet}'!{col_letters(col - 1)}{row}", [[value]], "RAW")


BACKENDS["gsheets"] = GSheetsBackend

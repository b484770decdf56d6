"""Book adapters: one per backend, all with the same small interface (:class:`Book`, in :mod:`.base`).

A Book reads every sheet a run needs in one go, writes a batch of patches (cell updates and appended
rows, per sheet) in one go, and hands out a run lease so two runners never work on one workbook at
once. Addresses: a path (``crm.xlsx``/``crm.xlsm``) is a local file; ``gsheets:SPREADSHEET_ID`` or the
sheet's URL a Google spreadsheet (:mod:`.gsheets`); ``excel:`` the live workbook that called us. :mod:`.memory`
holds a workbook in memory (tests, simulations, and the reference implementation of the interface).
"""

from __future__ import annotations

from pathlib import Path

from sheetflow.book.base import LOGS, Book
from sheetflow.book.patch import NewSheet, PatchError, SheetPatch, Validation
from sheetflow.book.raw import RawSheet
from sheetflow.problems import UsageError

__all__ = ["LOGS", "Book", "NewSheet", "PatchError", "RawSheet", "SheetPatch", "Validation", "open_book"]


def open_book(address: str | Path) -> Book:
    text = str(address)
    if text.startswith("excel:"):
        from sheetflow.book.excel import caller

        book = caller()
        wanted = text[len("excel:") :].strip()
        if wanted and wanted.lower() not in (book.xl.name.lower(), book.identity.lower()):
            raise UsageError(
                f'the workbook open in Excel is "{book.xl.name}", not "{wanted}"; activate it in Excel, or '
                'use "excel:" for whichever workbook is active'
            )
        return book
    if text.startswith("gsheets:") or "docs.google.com/spreadsheets/" in text:
        from sheetflow.book.gsheets import GSheetsBook

        return GSheetsBook(text)
    from sheetflow.book.xlsx import XlsxBook

    return XlsxBook(Path(text))

"""Book adapters: one per backend, all with the same small interface.

A Book reads every sheet a run needs in one go, writes a batch of patches (cell updates and appended
rows, per sheet) in one go, and hands out a run lease so two runners never work on one workbook at
once. Addresses: a path (``crm.xlsx``/``crm.xlsm``) is a local file; later backends add
``gsheets:SPREADSHEET_ID`` and ``excel:`` (the live workbook that called us).
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from ..problems import UsageError
from ..tables import RawSheet
from .xlsxpatch import NewSheet, SheetPatch, Validation

__all__ = ["Book", "open_book", "NewSheet", "SheetPatch", "Validation"]


class Book(Protocol):
    address: str

    def read(self, *, full: Collection[str] = ()) -> dict[str, RawSheet]:
        """Every worksheet that may belong to the contract, by its actual name, in workbook order.
        The append-only logs (Activity, Runs, Tasks) come as header + last row unless named in ``full``."""

    def write(self, patches: list[SheetPatch], *, backups: int = 10) -> None:
        """Apply all patches in one save; raises WorkbookBusy if the workbook changed since read()."""

    def lease(self) -> AbstractContextManager[None]:
        """Exclusive right to run on this workbook; raises WorkbookBusy if someone else holds it."""


def open_book(address: str | Path) -> Book:
    text = str(address)
    if text.startswith(("gsheets:", "excel:")):
        raise UsageError(
            f'"{text.split(":")[0]}:" workbooks are not supported yet; use a .xlsx or .xlsm file'
        )
    from .xlsx import XlsxBook

    return XlsxBook(Path(text))

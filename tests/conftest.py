"""Shared fixtures: real .xlsx files on disk in a temp dir, built the way users build them."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

ROOT = Path(__file__).resolve().parent.parent
# The shared test corpus (real workbooks, CRM exports) sits beside the repository in CI and on developers'
# machines; SHEETFLOW_CORPUS points elsewhere. A plain clone has none: the tests that need it skip, saying so.
CORPUS = Path(os.environ.get("SHEETFLOW_CORPUS") or ROOT.parent / "shared" / "corpus")
NO_CORPUS = (
    f"test corpus not found at {CORPUS} (put the shared corpus beside the repository or set SHEETFLOW_CORPUS)"
)
sys.path.insert(0, str(ROOT))
# Test modules import these helpers as ``tests.conftest``; the old flat name ``conftest`` stays an alias of the
# same module (one copy of the constants) for test files written before the move into folders.
sys.modules.setdefault("conftest", sys.modules[__name__])


def needs_corpus(*parts: str) -> Path:
    """``CORPUS/parts...``, or skip the calling test with the reason when the corpus is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(NO_CORPUS if not CORPUS.is_dir() else f"{path} not in the test corpus")
    return path


NOW = dt.datetime(2026, 11, 23, 10, 0)  # naive: workbook time


def make_book(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    """A workbook with the given sheets (rows of values), written with openpyxl like a user's file."""
    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def read_sheet(path: Path, name: str) -> list[list[Any]]:
    """A sheet's cells as python-calamine reads them (an independent reader, not sheetflow's)."""
    import python_calamine as pc

    book = pc.CalamineWorkbook.from_path(str(path))
    try:
        return book.get_sheet_by_name(name).to_python()
    finally:
        book.close()


@pytest.fixture
def book(tmp_path: Path):
    def _make(sheets: dict[str, list[list[Any]]], name: str = "crm.xlsx") -> Path:
        return make_book(tmp_path / name, sheets)

    return _make

"""What a backend is asked to write: one batch of :class:`SheetPatch` objects (cell values, new sheets with
their layout and dropdowns, whole-sheet replacement, row deletion), and the error every backend raises when a
batch cannot be written.

These are the words of the :class:`~sheetflow.book.base.Book` interface, not of one file format: the xlsx
writer (:mod:`sheetflow.book.xlsx`), the in-memory book and the live-Excel book all take the same objects
and refuse the same batches with :class:`PatchError` (held to that by ``tests/book/test_conformance.py``).
Cell addresses are 1-based (row, column), as in A1 references.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sheetflow.problems import SheetflowError

CellValue = str | int | float | bool | dt.datetime | dt.date | None


@dataclass
class Validation:
    """A dropdown (list data validation) on a new sheet."""

    sqref: str  # "C2:C5000" (space-separated ranges allowed)
    options: list[str] | None = None  # literal dropdown list -> formula1 '"a,b,c"'
    source: str | None = None  # or a range like "Stages!$A$2:$A$200" (formula1 without '=')
    allow_other: bool = False  # True -> showErrorMessage="0" (the dropdown is only a suggestion)


@dataclass
class NewSheet:
    """How to create a sheet that does not exist yet (it is appended after the last sheet)."""

    state: str = "visible"  # "visible" | "hidden" | "veryHidden"
    freeze_rows: int = 0  # frozen header rows (pane)
    col_widths: dict[int, float] = field(default_factory=dict)  # 1-based col -> width in characters
    bold_rows: set[int] = field(default_factory=set)  # e.g. {1} for a header row
    validations: list[Validation] = field(default_factory=list)


@dataclass
class SheetPatch:
    """Values to write into one sheet."""

    sheet: str  # exact sheet name
    cells: dict[tuple[int, int], CellValue]  # (row, col), 1-based -> value; None = clear value, keep style
    new: NewSheet | None = None  # create this sheet; error if it exists
    replace: bool = False  # sheet fully owned by sheetflow: drop all existing rows first
    # rows to delete before writing (1-based sheet rows; rows below move up, as Excel's "Delete row" does).
    # ``cells`` are addressed after the deletion. Only for sheets without formulas (sheetflow's logs).
    delete_rows: tuple[int, ...] = ()
    # The record each patched row holds (row -> the value of its key column ``key_col``: id, key or run_id),
    # for backends whose rows can move while a run works (Google Sheets re-finds each record's row before it
    # writes). The file writers ignore them: a changed file is refused instead.
    keys: dict[int, str] = field(default_factory=dict)
    key_col: int = 0


class PatchError(SheetflowError):
    """The workbook cannot be written as asked; the message names the file, sheet or cell and what to do."""


def merge_patches(patches: list[SheetPatch]) -> list[SheetPatch]:
    """Several patches for one sheet become one (later values win), in first-seen order: every backend
    applies the same batch the same way. Raises PatchError for a batch no backend can apply."""
    merged: dict[str, SheetPatch] = {}
    for patch in patches:
        if not isinstance(patch, SheetPatch):
            raise PatchError(f"internal error: expected SheetPatch, got {type(patch).__name__}")
        current = merged.get(patch.sheet)
        if current is None:
            merged[patch.sheet] = SheetPatch(
                patch.sheet,
                dict(patch.cells),
                patch.new,
                patch.replace,
                tuple(patch.delete_rows),
                keys=dict(patch.keys),
                key_col=patch.key_col,
            )
            continue
        if patch.delete_rows or current.delete_rows:
            raise PatchError(f'internal error: rows of sheet "{patch.sheet}" are deleted by two patches')
        if patch.new is not None and current.new is not None:
            raise PatchError(f'sheet "{patch.sheet}" is created twice in one write')
        current.cells.update(patch.cells)
        current.new = current.new or patch.new
        current.replace = current.replace or patch.replace
        current.keys.update(patch.keys)
        current.key_col = current.key_col or patch.key_col
    return list(merged.values())

"""A1 references, Excel's grid limits and serial dates: the arithmetic every other part of the writer uses.

* Grid: 1,048,576 rows x 16,384 columns (A..XFD) and 32,767 UTF-16 code units of text per cell, Excel's
  "Specifications and limits"; references are ``$?COL$?ROW`` as in ECMA-376 Part 1, 18.17 (formulas) and
  the ``ref``/``sqref`` attributes (ST_Ref, ST_Sqref, 18.18.62/76).
* Serial dates: days since 1899-12-30 (the 1900 date system, with Lotus 1-2-3's phantom 1900-02-29, so
  dates before 1900-03-01 are one off) or since 1904-01-01 (``workbookPr/@date1904``, 18.2.28); ECMA-376 Part 1, 18.17.4.1.
  Dates before the first day of the workbook's date system are refused: Excel cannot store them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import re
from collections.abc import Iterable

from sheetflow.book.patch import PatchError

MAX_ROW = 1_048_576
MAX_COL = 16_384
MAX_TEXT = 32_767  # Excel's limit, in UTF-16 code units


_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")
RANGE_ROWS_RE = re.compile(r"\$?[A-Za-z]{1,3}\$?([0-9]{1,7})(?::\$?[A-Za-z]{1,3}\$?([0-9]{1,7}))?$")


EXCEL_EPOCH_1900 = dt.date(1899, 12, 30)
EXCEL_EPOCH_1904 = dt.date(1904, 1, 1)
EXCEL_LEAP_BUG_END = dt.date(1900, 3, 1)
EPOCH_1900, EPOCH_1904, LEAP_BUG_END = (
    d.toordinal() for d in (EXCEL_EPOCH_1900, EXCEL_EPOCH_1904, EXCEL_LEAP_BUG_END)
)


_LETTERS: dict[int, str] = {}
_COL_NUMBERS: dict[str, int] = {}  # the reverse of _LETTERS: "AA" -> 27
_DIGITS = "0123456789"


def col_letter(col: int) -> str:
    """1 -> A, 27 -> AA (cached: called once per written cell)."""
    letters = _LETTERS.get(col)
    if letters is None:
        n, letters = col, ""
        while n > 0:
            n, rem = divmod(n - 1, 26)
            letters = chr(65 + rem) + letters
        _LETTERS[col] = letters
        _COL_NUMBERS[letters] = col
    return letters


def col_number(letters: str) -> int:
    """A -> 1, AA -> 27."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def parse_cell(ref: str) -> tuple[int, int]:
    """ "B4" / "$B$4" -> (4, 2); ValueError for anything else."""
    m = _CELL_RE.match(ref.strip())
    if not m:
        raise ValueError(ref)
    return int(m.group(2)), col_number(m.group(1))


def ref_col(ref: str) -> int:
    """Column of a cell reference: parse_cell(ref)[1], without the regex for the usual "AB12" form."""
    letters = ref.rstrip(_DIGITS)
    col = _COL_NUMBERS.get(letters)
    if col is not None and 0 < len(ref) - len(letters) <= 7:
        return col
    col = parse_cell(ref)[1]
    col_letter(col)  # remember the letters (only the canonical upper-case form takes the fast path)
    return col


def parse_range(ref: str) -> tuple[int, int, int, int]:
    """ "A1:C5" -> (r1, c1, r2, c2); a single cell is a 1x1 range."""
    first, _, last = ref.strip().partition(":")
    r1, c1 = parse_cell(first)
    r2, c2 = parse_cell(last) if last else (r1, c1)
    return min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2)


def format_range(r1: int, c1: int, r2: int, c2: int) -> str:
    start = f"{col_letter(c1)}{r1}"
    return start if (r1, c1) == (r2, c2) else f"{start}:{col_letter(c2)}{r2}"


@functools.lru_cache(maxsize=64)
def _shown_sheet(sheet: str) -> str:
    return f"'{sheet}'" if re.search(r"[^A-Za-z0-9_.]", sheet) else sheet


def cell_label(sheet: str, row: int, col: int) -> str:
    """``Contacts!F2`` / ``'My Sheet'!F2``, the way Excel shows a reference in a formula."""
    return f"{_shown_sheet(sheet)}!{col_letter(col)}{row}"


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
        raise PatchError(
            f"{where}: Excel cannot store the date {value.isoformat()} (too early for this "
            f"workbook's date system)"
        )
    return days + seconds / 86400 if seconds else days


_A1_RANGE_RE = re.compile(r"(\$?[A-Za-z]{1,3})(\$?)([0-9]{1,7})?(?::(\$?[A-Za-z]{1,3})(\$?)([0-9]{1,7}))?")


class RowMap:
    """Where rows go when ``deleted`` rows are deleted and the rows below move up (Excel's "Delete row")."""

    def __init__(self, deleted: Iterable[int]) -> None:
        self.deleted = sorted(set(deleted))

    def __bool__(self) -> bool:
        return bool(self.deleted)

    def row(self, r: int) -> int | None:
        i = bisect.bisect_left(self.deleted, r)
        if i < len(self.deleted) and self.deleted[i] == r:
            return None
        return r - i

    def span(self, r1: int, r2: int) -> tuple[int, int] | None:
        """The rows r1..r2 that are left, renumbered; None if all of them are deleted."""
        lo = r1 - bisect.bisect_left(self.deleted, r1)
        hi = r2 - bisect.bisect_right(self.deleted, r2)
        return (lo, hi) if lo <= hi else None

    def ref(self, ref: str) -> str | None:
        """An A1 reference or range (``$`` kept, whole columns unchanged) after the deletion; None if gone."""
        m = _A1_RANGE_RE.fullmatch(ref)
        if m is None:
            return ref
        c1, d1, r1, c2, d2, r2 = m.groups()
        if r1 is None:
            return ref  # A:C, whole columns
        r1 = int(r1)
        end = int(r2) if r2 is not None else r1
        span = self.span(r1, end)
        if span is None:
            return None
        if r2 is None:
            return f"{c1}{d1}{span[0]}"
        return f"{c1}{d1}{span[0]}:{c2}{d2}{span[1]}"

    def sqref(self, sqref: str) -> str | None:
        kept = [r for r in (self.ref(part) for part in sqref.split()) if r is not None]
        return " ".join(kept) if kept else None

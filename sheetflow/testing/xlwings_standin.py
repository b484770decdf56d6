"""An in-memory stand-in for exactly the xlwings surface :mod:`sheetflow.book.excel` uses, with Excel's own
way of taking values, so tests of the live-workbook backend and of the button run without Excel.

The surface (xlwings' documented API; nothing else exists here, so using more fails loudly in tests)::

    Book.caller()  books.active  book.fullname  book.name  book.app  book.sheets
    sheets: iterate, [name], .add(name, after=)
    sheet.name  sheet.visible  sheet.api.Visible (Windows only)  sheet.used_range  sheet.range(cell_or_address)  sheet.range(a, b)
    range.address  range.value (get/set)  range.formula (get)  range.number_format (get/set)
    range.options(ndim=2)  range.delete(shift="up")
    app.screen_updating  app.calculation  app.status_bar

What Excel does and this stand-in copies:

* ``range.value`` returns a scalar for one cell and a list (1 row or column) or a list of lists (more) unless
  ``options(ndim=2)``; ``None`` for empty cells and error values; numbers as ``float``; date cells as
  ``datetime`` (xlwings converts them), booleans as ``bool``.
* Setting a value parses text as if it were typed (``Range.Value = "..."``): ``=...``, ``+...``, ``-x``,
  ``@...`` become formulas (their value unknown here: ``None``), ``"00123"`` and ``"1e3"`` numbers,
  ``"TRUE"`` a boolean, ``"2026-03-01"`` a date; a leading apostrophe keeps the rest as text (and is not part
  of the value), and so does the text number format ``@``. A ``datetime`` set into a cell without a date
  format gets Excel's default ``m/d/yyyy h:mm`` (``m/d/yyyy`` at midnight).
* ``used_range`` covers A1-based rectangles from the first to the last cell holding a value or a formula
  (Excel's is at least as big; never smaller).

Test hooks (not xlwings): :func:`set_caller`, :meth:`Book.edit` (a person typing while a run works),
:attr:`Book.calls` (how many value reads/writes went to "Excel"), :attr:`App.history` (settings over time),
``Book(..., fail_on_write=...)`` to make a write fail halfway.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["App", "Book", "Range", "Sheet", "Sheets", "books", "set_caller"]

_CELL = re.compile(r"^\$?([A-Za-z]{1,3})\$?(\d+)$")
_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_ISO_DATE = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?\s*$")


def _col_number(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def _col_letters(n: int) -> str:
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _parse_cell(text: str) -> tuple[int, int]:
    m = _CELL.match(text.strip())
    if not m:
        raise ValueError(f"not a cell address: {text!r}")
    return int(m.group(2)), _col_number(m.group(1))


def _addr(r: int, c: int) -> str:
    return f"${_col_letters(c)}${r}"


@dataclass
class _Cell:
    value: object = None  # what Excel holds: str, float, bool, datetime (None = empty)
    formula: str | None = None
    number_format: str = "General"


class App:
    """``book.app``: the Excel application (one per stand-in book here)."""

    def __init__(self) -> None:
        self._screen_updating = True
        self._calculation = "automatic"
        self._status_bar: str | bool = False
        self.history: list[tuple[str, object]] = []

    @property
    def screen_updating(self) -> bool:
        return self._screen_updating

    @screen_updating.setter
    def screen_updating(self, value: bool) -> None:
        self._screen_updating = bool(value)
        self.history.append(("screen_updating", bool(value)))

    @property
    def calculation(self) -> str:
        return self._calculation

    @calculation.setter
    def calculation(self, value: str) -> None:
        if value not in ("automatic", "manual", "semiautomatic"):
            raise ValueError(f"calculation must be automatic, manual or semiautomatic, not {value!r}")
        self._calculation = value
        self.history.append(("calculation", value))

    @property
    def status_bar(self) -> str | bool:
        return self._status_bar

    @status_bar.setter
    def status_bar(self, value: str | bool) -> None:
        self._status_bar = value
        self.history.append(("status_bar", value))


class Range:
    def __init__(self, sheet: Sheet, r1: int, c1: int, r2: int, c2: int, ndim: int | None = None):
        self.sheet = sheet
        self.r1, self.c1 = min(r1, r2), min(c1, c2)
        self.r2, self.c2 = max(r1, r2), max(c1, c2)
        self._ndim = ndim

    @property
    def address(self) -> str:
        first = _addr(self.r1, self.c1)
        return first if (self.r1, self.c1) == (self.r2, self.c2) else f"{first}:{_addr(self.r2, self.c2)}"

    def options(self, ndim: int | None = None, **_ignored) -> Range:
        return Range(self.sheet, self.r1, self.c1, self.r2, self.c2, ndim=ndim)

    def _shape(self, grid: list[list[object]]) -> object:
        if self._ndim == 2:
            return grid
        if len(grid) == 1 and len(grid[0]) == 1:
            return grid[0][0]
        if len(grid) == 1:
            return grid[0]
        if all(len(row) == 1 for row in grid):
            return [row[0] for row in grid]
        return grid

    def _cells(self) -> Iterator[tuple[int, int]]:
        for r in range(self.r1, self.r2 + 1):
            for c in range(self.c1, self.c2 + 1):
                yield r, c

    @property
    def value(self) -> object:
        book = self.sheet.book
        book.calls["read"] += 1
        grid = []
        for r in range(self.r1, self.r2 + 1):
            row = []
            for c in range(self.c1, self.c2 + 1):
                cell = self.sheet._cells.get((r, c))
                row.append(None if cell is None else cell.value)
            grid.append(row)
        return self._shape(grid)

    @value.setter
    def value(self, data: object) -> None:
        book = self.sheet.book
        book.calls["write"] += 1
        if book.fail_on_write is not None and book.calls["write"] == book.fail_on_write:
            raise RuntimeError("stand-in: Excel refused the write (simulated COM error)")
        rows, cols = self.r2 - self.r1 + 1, self.c2 - self.c1 + 1
        if not isinstance(data, (list, tuple)):
            grid = [[data] * cols for _ in range(rows)]  # a scalar fills the range, as in Excel
        elif data and isinstance(data[0], (list, tuple)):
            grid = [list(row) for row in data]
        elif rows == 1:
            grid = [list(data)]
        else:
            grid = [[v] for v in data]
        if len(grid) != rows or any(len(row) != cols for row in grid):
            # xlwings expands from the top-left cell; the backend always passes the exact shape
            raise ValueError(f"stand-in: {len(grid)}x{len(grid[0]) if grid else 0} values for {self.address}")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                self.sheet._set(self.r1 + i, self.c1 + j, v)
        book._changed()

    @property
    def formula(self) -> object:
        grid = [
            [
                (
                    cell.formula
                    if cell.formula
                    else ("" if cell.value is None else _as_formula_text(cell.value))
                )
                if (cell := self.sheet._cells.get((r, c)))
                else ""
                for c in range(self.c1, self.c2 + 1)
            ]
            for r in range(self.r1, self.r2 + 1)
        ]
        self.sheet.book.calls["read"] += 1
        if len(grid) == 1 and len(grid[0]) == 1:
            return grid[0][0]
        return tuple(tuple(row) for row in grid)

    def delete(self, shift: str | None = None) -> None:
        """Delete the range's cells; with ``shift="up"`` the cells below (same columns) move up."""
        if shift not in ("up", None):
            raise ValueError("stand-in: only shift='up' is supported")
        sheet, n = self.sheet, self.r2 - self.r1 + 1
        sheet.book.calls["write"] += 1
        moved: dict[tuple[int, int], _Cell] = {}
        for (r, c), cell in sheet._cells.items():
            if not self.c1 <= c <= self.c2 or r < self.r1:
                moved[(r, c)] = cell
            elif r > self.r2:
                moved[(r - n, c)] = cell
        sheet._cells = moved
        sheet.book._changed()

    @property
    def number_format(self) -> str | None:
        formats = {self.sheet._cells.get(key, _Cell()).number_format for key in self._cells()}
        return formats.pop() if len(formats) == 1 else None

    @number_format.setter
    def number_format(self, code: str) -> None:
        self.sheet.book.calls["format"] += 1
        for key in self._cells():
            self.sheet._cells.setdefault(key, _Cell()).number_format = code
        self.sheet.book._changed()


def _as_formula_text(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    return str(value)


class _SheetApi:
    """``sheet.api`` on Windows (the COM Worksheet): only ``Visible`` (-1 visible, 0 hidden, 2 very hidden)."""

    def __init__(self, sheet: Sheet):
        self._sheet = sheet

    @property
    def Visible(self) -> int:  # noqa: N802 - the COM name
        return self._sheet._visibility

    @Visible.setter
    def Visible(self, value: int) -> None:  # noqa: N802
        self._sheet._visibility = {True: -1, False: 0}.get(value, value)  # type: ignore[call-overload]  # xlwings passes True/False or an XlSheetVisibility int
        self._sheet.book._changed()


class Sheet:
    def __init__(self, book: Book, name: str):
        self.book = book
        self._name = name
        self._cells: dict[tuple[int, int], _Cell] = {}
        self._visibility = -1
        self.api = _SheetApi(self)

    @property
    def visible(self) -> bool:
        return self._visibility == -1

    @visible.setter
    def visible(self, value: bool) -> None:
        self._visibility = -1 if value else 0
        self.book._changed()

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value
        self.book._changed()

    @property
    def used_range(self) -> Range:
        used = [k for k, cell in self._cells.items() if cell.value is not None or cell.formula]
        if not used:
            return Range(self, 1, 1, 1, 1)
        return Range(
            self,
            min(r for r, _ in used),
            min(c for _, c in used),
            max(r for r, _ in used),
            max(c for _, c in used),
        )

    def range(self, a: object, b: object = None) -> Range:
        def corner(x: object) -> tuple[int, int, int, int]:
            if isinstance(x, Range):
                return x.r1, x.c1, x.r2, x.c2
            if isinstance(x, tuple):
                return x[0], x[1], x[0], x[1]
            text = str(x)
            if ":" in text:
                (r1, c1), (r2, c2) = (_parse_cell(t) for t in text.split(":"))
                return r1, c1, r2, c2
            r, c = _parse_cell(text)
            return r, c, r, c

        r1, c1, r2, c2 = corner(a)
        if b is not None:
            _, _, r2, c2 = corner(b)
        for n in (r1, r2):
            if not 1 <= n <= 1_048_576:
                raise ValueError(f"row {n} is outside the sheet")
        return Range(self, r1, c1, r2, c2)

    def _seed(self, r: int, c: int, v: object) -> None:
        """A value as the workbook holds it (a file opened in Excel): text stays text; an object with
        ``text`` and ``value`` is a formula with its computed value, one with ``code`` an error value."""
        if v is None or v == "":
            return
        cell = self._cells.setdefault((r, c), _Cell())
        if hasattr(v, "code"):
            cell.formula, cell.value = "=NA()", None
        elif hasattr(v, "text") and hasattr(v, "value"):
            cell.formula = v.text
            cell.value = (
                None if v.value in (None, "") else (float(v.value) if isinstance(v.value, int) else v.value)
            )
        elif isinstance(v, str):
            cell.value = v
        elif isinstance(v, dt.time):
            cell.value, cell.number_format = dt.datetime(1899, 12, 30, v.hour, v.minute, v.second), "h:mm"
        else:
            self._set(r, c, v)

    def _set(self, r: int, c: int, v: object) -> None:
        cell = self._cells.setdefault((r, c), _Cell())
        cell.formula = None
        if v is None or v == "":
            cell.value = None
            return
        if isinstance(v, bool):
            cell.value = v
        elif isinstance(v, (int, float)):
            cell.value = float(v)
        elif isinstance(v, dt.datetime):
            cell.value = v
            if not _is_date_format(cell.number_format):
                cell.number_format = "m/d/yyyy h:mm" if v.time() != dt.time(0) else "m/d/yyyy"
        elif isinstance(v, dt.date):
            cell.value = dt.datetime(v.year, v.month, v.day)
            if not _is_date_format(cell.number_format):
                cell.number_format = "m/d/yyyy"
        elif isinstance(v, str):
            self._typed(cell, v)
        else:
            raise TypeError(f"stand-in: xlwings cannot write a {type(v).__name__}")

    @staticmethod
    def _typed(cell: _Cell, text: str) -> None:
        """What Excel makes of text put into a cell (as if typed)."""
        if text.startswith("'"):
            cell.value = text[1:] or None
            return
        if cell.number_format == "@":
            cell.value = text
            return
        if text[0] in "=+@" or (text[0] == "-" and not _NUMBER.match(text)):
            cell.formula = text if text[0] == "=" else "=" + text
            cell.value = None  # computed by Excel; unknown here
            return
        if _NUMBER.match(text):
            cell.value = float(text)
            return
        if text.strip().upper() in ("TRUE", "FALSE"):
            cell.value = text.strip().upper() == "TRUE"
            return
        m = _ISO_DATE.match(text)
        if m:
            y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
            cell.value = dt.datetime(y, mo, d, h, mi, s)
            if not _is_date_format(cell.number_format):
                cell.number_format = "m/d/yyyy h:mm" if (h or mi or s) else "m/d/yyyy"
            return
        cell.value = text

    # inspection (tests)
    def cell(self, r: int, c: int) -> _Cell:
        return self._cells.get((r, c), _Cell())


def _is_date_format(code: str) -> bool:
    text = re.sub(r'"[^"]*"|\\.|\[[^\]]*\]', "", code or "")
    return code not in ("General", "@") and bool(re.search(r"[dmyhs]", text, re.I))


class Sheets:
    def __init__(self, book: Book):
        self.book = book
        self._list: list[Sheet] = []

    def __iter__(self) -> Iterator[Sheet]:
        return iter(list(self._list))

    def __len__(self) -> int:
        return len(self._list)

    def __getitem__(self, key: int | str) -> Sheet:
        if isinstance(key, int):
            return self._list[key]
        for sheet in self._list:
            if sheet.name.lower() == key.lower():
                return sheet
        raise KeyError(key)

    def add(self, name: str | None = None, before: Sheet | None = None, after: Sheet | None = None) -> Sheet:
        name = name or f"Sheet{len(self._list) + 1}"
        if any(s.name.lower() == name.lower() for s in self._list):
            raise ValueError(f"stand-in: a sheet named {name!r} exists")
        sheet = Sheet(self.book, name)
        if after is not None:
            self._list.insert(self._list.index(after) + 1, sheet)
        elif before is not None:
            self._list.insert(self._list.index(before), sheet)
        else:
            self._list.insert(0, sheet)  # Excel adds before the active sheet; the first one here
        self.book._changed()
        return sheet


@dataclass
class Book:
    """An open workbook. ``sheets``: name -> rows of values from A1 (typed as by a person: text is parsed)."""

    seed: dict[str, list[list[object]]] = field(default_factory=dict)
    fullname: str = "/tmp/crm.xlsx"
    fail_on_write: int | None = None  # the Nth value write raises (simulated Excel error)

    states: dict[str, str] = field(default_factory=dict)  # sheet -> "hidden" / "veryHidden"

    def __post_init__(self) -> None:
        self.app = App()
        self.sheets = Sheets(self)
        self.calls = {"read": 0, "write": 0, "format": 0}
        self.changes = 0
        last = None
        for name, rows in self.seed.items():
            last = self.sheets.add(name, after=last)
            for r, row in enumerate(rows, start=1):
                for c, v in enumerate(row, start=1):
                    if v is not None:
                        last._seed(r, c, v)
        for name, state in self.states.items():
            self.sheets[name]._visibility = {"visible": -1, "hidden": 0, "veryHidden": 2}[state]
        self.calls = {"read": 0, "write": 0, "format": 0}
        self.changes = 0

    @property
    def name(self) -> str:
        return re.split(r"[\\/]", self.fullname)[-1]

    def _changed(self) -> None:
        self.changes += 1

    @classmethod
    def caller(cls) -> Book:
        if _state.caller is None:
            raise RuntimeError("stand-in: Book.caller() outside Excel (use set_caller in the test)")
        return _state.caller

    def edit(self, sheet: str, address: str, value: object) -> None:
        """A person types into the workbook (parsed as typed)."""
        target = self.sheets[sheet]
        r, c = _parse_cell(address)
        target._set(r, c, value)
        self._changed()


class _State:
    caller: Book | None = None


_state = _State()


class _Books:
    @property
    def active(self) -> Book:
        if _state.caller is None:
            raise RuntimeError("stand-in: no workbook is open")
        return _state.caller


books = _Books()


def set_caller(book: Book | None) -> None:
    """The workbook whose button was pressed (``Book.caller()``) and the active one (``books.active``)."""
    _state.caller = book

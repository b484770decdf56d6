"""A workbook held in memory: the reference implementation of the :class:`~sheetflow.book.base.Book` interface.

Uses: tests of the layers above without files, simulations (many runs over a workbook in milliseconds), and
the reference that ``tests/book/test_conformance.py`` holds every other backend to. It applies the same
:class:`SheetPatch`/:class:`NewSheet` objects with the same rules as the xlsx writer (:mod:`sheetflow.book.xlsx`, whose
checks it reuses): text stays text, numbers are stored as Excel stores them (doubles), dates keep a date
format, new sheets keep their layout, and every refusal names the sheet or cell and writes nothing.

What a person does to the workbook meanwhile is simulated with :meth:`MemoryBook.edit`,
:meth:`MemoryBook.insert_rows` and the :attr:`MemoryBook.before_write` hook (a change landing between a run's
read and its write); :meth:`MemoryBook.handle` opens the same workbook a second time, as a second runner would.

Seed values: ``str``, numbers, ``bool``, dates, ``None``/``""`` (empty), :class:`Formula` (a formula and its
last computed value) and :class:`ErrorValue` (``#N/A`` and friends).
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import re
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sheetflow import contract
from sheetflow.book.base import LOGS
from sheetflow.book.patch import NewSheet, PatchError, SheetPatch, merge_patches
from sheetflow.book.raw import RawSheet
from sheetflow.book.xlsx.cells import ILLEGAL_XML_RE, render
from sheetflow.book.xlsx.refs import MAX_COL, MAX_ROW, MAX_TEXT
from sheetflow.book.xlsx.workbook import check_sheet_name, new_sheet_root
from sheetflow.names import cell_ref
from sheetflow.problems import WorkbookBusy

__all__ = ["ErrorValue", "Formula", "MemoryBook"]

STATES = ("visible", "hidden", "veryHidden")


@dataclass(frozen=True)
class Formula:
    """A formula cell: its text (``=SUM(B2:C2)``) and the value it last computed (what readers see)."""

    text: str
    value: object = ""


@dataclass(frozen=True)
class ErrorValue:
    """An error a formula shows (``#N/A``, ``#REF!``, ``#DIV/0!``...); reads as empty, like in every backend."""

    code: str = "#N/A"


@dataclass
class _Sheet:
    name: str
    state: str = "visible"
    cells: dict[tuple[int, int], object] = field(default_factory=dict)  # (row, col) -> stored value
    formulas: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, col) -> formula text
    layout: NewSheet | None = None  # how a write created it (freeze, widths, bold rows, dropdowns)


class _Store:
    """The workbook itself, shared by every handle on it (as a file is shared by the processes opening it)."""

    def __init__(self) -> None:
        self.sheets: list[_Sheet] = []
        self.generation = 0  # bumped by every change: the fingerprint
        self.backups: list[list[_Sheet]] = []
        self.lock = threading.Condition()
        self.holder: object | None = None  # the lease

    def sheet(self, name: str) -> _Sheet | None:
        return next((s for s in self.sheets if s.name == name), None)


class MemoryBook:
    """A workbook in memory (see the module docstring; the interface is :class:`~sheetflow.book.base.Book`).

    ``sheets``: sheet name -> rows of seed values from A1, in workbook order; ``states``: sheet name ->
    "hidden"/"veryHidden" for sheets that are not visible. ``name`` gives ``address`` (``memory:NAME``) and
    ``identity``; ``workdir`` is the sidecar folder (default: a temporary folder, made when first asked for).
    """

    def __init__(
        self,
        sheets: Mapping[str, list[list[object]]] | None = None,
        *,
        name: str = "book",
        states: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        _store: _Store | None = None,
    ):
        self.name = name
        self.address = f"memory:{name}"
        self._workdir = workdir
        self._seen: int | None = None
        self.before_write: Callable[[MemoryBook], None] | None = None
        """Called at the start of every :meth:`write`, before the change check: a person's edit landing
        between a run's read and its write (e.g. ``lambda b: b.edit("Contacts", {(2, 2): "x"})``)."""
        if _store is not None:
            self._store = _store
            return
        self._store = _Store()
        states = dict(states or {})
        for sheet_name, rows in (sheets or {}).items():
            state = states.pop(sheet_name, "visible")
            if state not in STATES:
                raise ValueError(f'sheet "{sheet_name}": state must be one of {", ".join(STATES)}')
            sheet = _Sheet(sheet_name, state)
            for r, row in enumerate(rows, start=1):
                for c, value in enumerate(row, start=1):
                    _seed(sheet, (r, c), value)
            self._store.sheets.append(sheet)
        if states:
            raise ValueError(f"states given for sheets that do not exist: {', '.join(states)}")

    def handle(self, workdir: Path | None = None) -> MemoryBook:
        """The same workbook opened again (another runner): shares cells, lease and fingerprint; has its own
        read state. ``workdir``: its sidecar folder (default: this handle's; another machine has its own)."""
        return MemoryBook(name=self.name, workdir=workdir or self.workdir, _store=self._store)

    # ------------------------------------------------------------ identity
    @property
    def identity(self) -> str:
        return re.sub(r"[^\w.-]", "_", self.name) or "book"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="sheetflow-memory-")) / ".sheetflow"
        return self._workdir

    def fingerprint(self) -> str:
        """The workbook's change counter (any change, ours or a simulated person's, moves it)."""
        return f"memory:{id(self._store):x}:{self._store.generation}"

    # ------------------------------------------------------------ reading
    def read(self, *, full: Collection[str] = ()) -> dict[str, RawSheet]:
        with self._store.lock:
            self._seen = self._store.generation
            out: dict[str, RawSheet] = {}
            for sheet in self._store.sheets:
                spec = contract.sheet_spec(sheet.name)
                if spec is None:
                    out[sheet.name] = RawSheet(sheet.name, [], (1, 1), sheet.state)
                    continue
                raw = _grid(sheet)
                if spec.name in LOGS and spec.name not in full:
                    raw = _header_only(raw, spec)
                out[sheet.name] = raw
            return out

    # ------------------------------------------------------------ locking
    @contextmanager
    def lease(self, wait: float = 0.0) -> Iterator[None]:
        token = object()
        store = self._store
        deadline = time.monotonic() + max(0.0, wait)
        with store.lock:
            while store.holder is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkbookBusy(
                        f"another sheetflow run is working on {self.address}; try again when it has finished"
                    )
                store.lock.wait(left)
            store.holder = token
        try:
            yield
        finally:
            with store.lock:
                store.holder = None
                store.lock.notify_all()

    # ------------------------------------------------------------ writing
    def write(self, patches: list[SheetPatch], *, backups: int = 10) -> None:
        if self._seen is None:
            raise RuntimeError("read() must come before write()")
        if self.before_write is not None:
            self.before_write(self)
        store = self._store
        with store.lock:
            if store.generation != self._seen:
                raise WorkbookBusy(
                    f"{self.address} changed while sheetflow was working; nothing was written — run again "
                    "to use the new contents"
                )
            work = _checked(store, patches)  # every refusal before any change
            keep = max(0, backups)
            if keep:
                store.backups = [*store.backups, copy.deepcopy(store.sheets)][-keep:]
            for patch, values in work:
                if patch.new is not None:
                    sheet = _Sheet(patch.sheet, patch.new.state, layout=copy.deepcopy(patch.new))
                    store.sheets.append(sheet)
                else:
                    sheet = self._sheet(patch.sheet)  # exists: checked above
                if patch.replace:
                    sheet.cells.clear()
                    sheet.formulas.clear()
                if patch.delete_rows:  # rows below move up, as with Excel's "Delete row"
                    gone = sorted(set(patch.delete_rows))
                    sheet.cells = {
                        (r - bisect.bisect_left(gone, r), c): v
                        for (r, c), v in sheet.cells.items()
                        if bisect.bisect_left(gone, r) == len(gone) or gone[bisect.bisect_left(gone, r)] != r
                    }
                for key, value in values.items():
                    sheet.formulas.pop(key, None)
                    if value is None:
                        sheet.cells.pop(key, None)
                    else:
                        sheet.cells[key] = value
            store.generation += 1
            self._seen = store.generation

    # ------------------------------------------------------------ what a person does meanwhile
    def edit(self, sheet: str, cells: Mapping[tuple[int, int], object]) -> None:
        """A person types into the workbook now: (row, col) -> seed value (None clears). No lease, no checks."""
        with self._store.lock:
            target = self._sheet(sheet)
            for key, value in cells.items():
                target.formulas.pop(key, None)
                target.cells.pop(key, None)
                _seed(target, key, value)
            self._store.generation += 1

    def insert_rows(self, sheet: str, before: int, count: int = 1) -> None:
        """A person inserts ``count`` empty rows above row ``before`` (1-based): the rows below move down."""
        with self._store.lock:
            target = self._sheet(sheet)
            move = lambda d: {((r + count if r >= before else r), c): v for (r, c), v in d.items()}
            target.cells, target.formulas = move(target.cells), move(target.formulas)
            self._store.generation += 1

    def add_sheet(self, name: str, rows: Sequence[Sequence[object]] = (), state: str = "visible") -> None:
        """A person adds a sheet at the end."""
        with self._store.lock:
            if any(s.name.casefold() == name.casefold() for s in self._store.sheets) or state not in STATES:
                raise ValueError(
                    f'cannot add sheet "{name}" ({state}): the name is taken or the state unknown'
                )
            sheet = _Sheet(name, state)
            for r, row in enumerate(rows, start=1):
                for c, value in enumerate(row, start=1):
                    _seed(sheet, (r, c), value)
            self._store.sheets.append(sheet)
            self._store.generation += 1

    # ------------------------------------------------------------ inspection (tests, simulations)
    @property
    def sheet_names(self) -> list[str]:
        return [s.name for s in self._store.sheets]

    def state(self, sheet: str) -> str:
        return self._sheet(sheet).state

    def layout(self, sheet: str) -> NewSheet | None:
        """How a write created the sheet (None for a sheet that was there before)."""
        return self._sheet(sheet).layout

    def value(self, sheet: str, row: int, col: int) -> object:
        """What the cell holds (an ErrorValue as such; None when empty)."""
        return self._sheet(sheet).cells.get((row, col))

    def formula(self, sheet: str, row: int, col: int) -> str | None:
        return self._sheet(sheet).formulas.get((row, col))

    def backups(self) -> int:
        """How many earlier versions are kept (``backups`` of :meth:`write`)."""
        return len(self._store.backups)

    def _sheet(self, name: str) -> _Sheet:
        sheet = self._store.sheet(name)
        if sheet is None:
            raise KeyError(f'no sheet "{name}" in {self.address}')
        return sheet


# ---------------------------------------------------------------- values


def _seed(sheet: _Sheet, key: tuple[int, int], value: object) -> None:
    """Put a seed value as the workbook holds it (numbers as doubles, like Excel)."""
    if isinstance(value, Formula):
        sheet.formulas[key] = value.text
        value = value.value
    if value is None or value == "":
        if key in sheet.formulas:
            sheet.cells[key] = ""
        return
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    sheet.cells[key] = value


def _clean_text(text: str) -> str:
    """As the xlsx writer stores text: characters XML cannot hold dropped, cut at Excel's cell limit."""
    text = ILLEGAL_XML_RE.sub("", text)
    if len(text) > MAX_TEXT // 2:
        text = text.encode("utf-16-le")[: MAX_TEXT * 2].decode("utf-16-le", errors="ignore")
    return text


def _stored(value: Any, where: str) -> object:
    """A written value as the workbook then holds it; PatchError (naming the cell) for what the xlsx writer
    refuses: non-finite numbers, NaT, dates before 1900-01-01, unknown types."""
    if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)):
        value = value.item()
    kind, text, with_time = render(value, where, False)
    if kind == "none":
        return None
    if kind == "str":
        return _clean_text(str(value))
    if kind == "bool":
        return text == "1"
    if kind == "num":
        return float(text)  # what a reader gets from the digits the xlsx writer stores
    if not with_time:  # a date, or a datetime at midnight: the cell gets a date format and reads as a date
        return dt.date(value.year, value.month, value.day)
    return dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
    )


def _checked(
    store: _Store, patches: list[SheetPatch]
) -> list[tuple[SheetPatch, dict[tuple[int, int], object]]]:
    """The xlsx writer's checks, in its order, with every value converted; nothing is changed here."""
    merged = {p.sheet: p for p in merge_patches(patches)}
    names = [s.name for s in store.sheets]
    work = []
    for patch in merged.values():
        if patch.new is not None:
            check_sheet_name(patch.sheet)
            if patch.new.state not in STATES:
                raise PatchError(
                    f'sheet "{patch.sheet}": state must be "visible", "hidden" or "veryHidden", '
                    f'not "{patch.new.state}"'
                )
            if any(n.casefold() == patch.sheet.casefold() for n in names):
                raise PatchError(f'a sheet named "{patch.sheet}" already exists in the workbook')
            new_sheet_root(patch.sheet, patch.new)  # freeze rows, column widths, dropdowns
            names.append(patch.sheet)
        elif patch.sheet not in names:
            shown = ", ".join(f'"{n}"' for n in names)
            raise PatchError(f'there is no sheet "{patch.sheet}" in the workbook (sheets: {shown})')
        if patch.delete_rows:
            sheet = store.sheet(patch.sheet)
            if patch.new is not None or patch.replace or sheet is None:
                raise PatchError(f'internal error: rows deleted from new or replaced sheet "{patch.sheet}"')
            if sheet.formulas:
                raise PatchError(
                    f'sheet "{patch.sheet}" holds formulas, so sheetflow will not move its rows to the archive; '
                    f"move the formulas to another sheet"
                )
        values: dict[tuple[int, int], object] = {}
        for key, value in patch.cells.items():
            r, c = key if isinstance(key, tuple) and len(key) == 2 else (key, None)
            if not (
                type(r) is int and type(c) is int and 1 <= r <= MAX_ROW and 1 <= c <= MAX_COL
            ):  # bool is no row number
                raise PatchError(
                    f'sheet "{patch.sheet}": ({r!r}, {c!r}) is not a cell (rows 1-{MAX_ROW}, '
                    f"columns 1-{MAX_COL})"
                )
            values[key] = _stored(value, cell_ref(patch.sheet, r, c))
        work.append((patch, values))
    return work


# ---------------------------------------------------------------- reading


def _grid(sheet: _Sheet) -> RawSheet:
    """The used range as a reader returns it: from the first to the last used row and column."""
    used = set(sheet.cells) | set(sheet.formulas)
    if not used:
        return RawSheet(sheet.name, [], (1, 1), sheet.state)
    r0, c0 = min(r for r, _ in used), min(c for _, c in used)
    r1, c1 = max(r for r, _ in used), max(c for _, c in used)
    rows: list[list[object]] = [[""] * (c1 - c0 + 1) for _ in range(r1 - r0 + 1)]
    for (r, c), value in sheet.cells.items():
        if isinstance(value, ErrorValue):
            value = ""
        elif type(value) is dt.datetime and value.time() == dt.time(0):
            value = value.date()  # a whole day number reads as a date, whatever the cell's format
        rows[r - r0][c - c0] = value
    return RawSheet(sheet.name, rows, (r0, c0), sheet.state, formulas=set(sheet.formulas))


def _header_only(raw: RawSheet, spec: contract.SheetSpec) -> RawSheet:
    """A log sheet's rows down to its header (found as for any sheet: contract.find_header), and where it
    ends."""
    rows = raw.rows[: contract.HEADER_SEARCH_ROWS]
    h = contract.find_header(rows, spec)
    if h is None:  # no known column names: down to the first non-empty row (the loader reports the sheet)
        h = next((i for i, row in enumerate(rows) if any(v not in (None, "") for v in row)), len(rows) - 1)
    rows = rows[: h + 1]
    last = raw.last_row if rows and rows[-1] else 0
    return RawSheet(raw.name, rows, raw.origin, raw.state, last=last, formulas=raw.formulas)

"""The live-workbook backend (``excel:``): the workbook open in Excel whose button called sheetflow.

While Excel holds a workbook it is the only writer: the file on disk is never read or written here (the
file backend refuses an open workbook, see :mod:`.xlsx`). Everything goes through a small, documented part
of xlwings' API, so :mod:`sheetflow.testing.xlwings_standin` can stand in for Excel in tests::

    xw.Book.caller()  xw.books.active  book.fullname  book.name  book.app  book.sheets (iterate, [name],
    .add(name, after=))  sheet.name  sheet.visible  sheet.used_range  sheet.range(cell)  sheet.range(a, b)
    range.address  range.value  range.formula  range.number_format  range.options(ndim=2)
    range.delete(shift="up")  (log rows moved to the archive)
    app.screen_updating  app.calculation  app.status_bar

(``sheet.visible`` and ``range.formula`` go beyond issue 13's list: a run must not overwrite a formula, and a
hidden sheet must read as hidden; both are plain xlwings properties on Windows and macOS.)

Speed: every call crosses to Excel (COM on Windows, AppleScript on macOS: milliseconds each), so a read is
one ``used_range`` value call per contract sheet (plus one for its formulas), and a write is one call per
rectangular block of cells (an appended block of rows is one call). Screen updating and automatic
calculation are paused while writing and restored afterwards, also when a write fails.

Values written: text always stays text (Excel parses a value set from outside as if typed: ``=1+1`` would
become a formula, ``00123`` the number 123, ``TRUE`` a boolean, ``2026-03-01`` a date), so any text Excel
could take for something else gets a leading apostrophe, which Excel keeps out of the value; dates are
written as dates with ``yyyy-mm-dd`` (``yyyy-mm-dd hh:mm`` with a time) unless the cells already show a date
format; numbers as numbers; ``None`` clears the value and keeps the format.

Changes by a person while a run works (possible on macOS, where the button does not block Excel): before
writing, each sheet to be written is read again and compared with what the run read; any difference refuses
the write (WorkbookBusy), as the file backend does.

What this backend cannot do (xlwings has no portable API for them): keep backups (``backups`` is ignored:
Activity and ``undo`` are the way back), very-hide a sheet (it is hidden), freeze panes, dropdowns and column
widths on a sheet it creates (``sheetflow init`` makes them; the values are the same).

Sidecar files (lock, email journal) go beside the workbook in ``.sheetflow/``. A workbook opened from
OneDrive/SharePoint has an ``https://`` fullname and no folder on this computer: its sidecar files go to
``~/.sheetflow/workbooks/<identity>/`` of the user, and :attr:`ExcelBook.note` says so (the email journal is
then per user and computer: two people pressing the button on one cloud workbook could each send an email
the other already sent; let one person or the scheduler send).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from sheetflow import contract
from sheetflow.book.base import LOGS
from sheetflow.book.patch import PatchError, SheetPatch, merge_patches
from sheetflow.book.raw import RawSheet
from sheetflow.book.xlsx.cells import ILLEGAL_XML_RE, render
from sheetflow.book.xlsx.refs import MAX_COL, MAX_ROW, MAX_TEXT
from sheetflow.book.xlsx.styles import is_date_format
from sheetflow.book.xlsx.workbook import check_sheet_name, new_sheet_root
from sheetflow.names import cell_ref
from sheetflow.problems import SheetflowError, UsageError, WorkbookBusy

__all__ = ["ExcelBook", "caller"]

DATE = "yyyy-mm-dd"
DATE_TIME = "yyyy-mm-dd hh:mm"
HEADER_PROBE = 20  # rows read at first from a log sheet to find its header
_ADDRESS = re.compile(r"^\$?([A-Z]{1,3})\$?(\d+)(?::\$?([A-Z]{1,3})\$?(\d+))?$")
# text Excel would not keep as typed: formulas and signs, numbers/dates/times/percents/currency (any digit),
# booleans and error words, and a leading apostrophe of its own
_RISKY_TEXT = re.compile(r"^[=+\-@'#\s]|\d|^(true|false|verdadeiro|falso)$", re.IGNORECASE)
_locks = threading.Lock()
_held: set[str] = set()  # leases held in this process (the file lock alone is per process)
_writes: dict[str, int] = {}  # fullname -> writes by this process (part of the fingerprint)


def xlwings_module():  # noqa: ANN201 - the xlwings module or the stand-in put in its place
    try:
        import xlwings
    except ImportError:
        raise UsageError('the Excel button needs xlwings: pip install "sheetflow[excel]"') from None
    return xlwings


def caller(xw=None) -> ExcelBook:  # noqa: ANN001
    """The workbook whose button was pressed (``Book.caller()``), else the active workbook (run from a
    terminal while Excel is open). UsageError when Excel has no workbook open."""
    xw = xw or xlwings_module()
    try:
        book = xw.Book.caller()
    except Exception:  # noqa: BLE001 - xlwings raises several types when not called from Excel
        try:
            book = xw.books.active
        except Exception as e:  # noqa: BLE001
            raise UsageError(
                f"no workbook is open in Excel ({e}); open it and press the button again"
            ) from None
    if book is None:
        raise UsageError("no workbook is open in Excel; open it and press the button again")
    return ExcelBook(book)


def _column_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def _bounds(address: str) -> tuple[int, int, int, int]:
    m = _ADDRESS.match(address.replace("$", "").split("!")[-1].upper())
    if not m:
        raise SheetflowError(f"Excel gave an unexpected range address {address!r}")
    r1, c1 = int(m.group(2)), _column_number(m.group(1))
    if m.group(3):
        return r1, c1, int(m.group(4)), _column_number(m.group(3))
    return r1, c1, r1, c1


def _letters(n: int) -> str:
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _a1(r: int, c: int) -> str:
    return f"{_letters(c)}{r}"


class ExcelBook:
    """A live Excel workbook (see the module docstring); ``xl_book``: an xlwings ``Book`` or a stand-in."""

    live = True  # progress can be shown in the workbook while a run works (the button's status cell)

    def __init__(self, xl_book: Any):
        self.xl = xl_book
        self.fullname = str(xl_book.fullname)
        self.address = f"excel:{xl_book.name}"
        self._seen: dict[str, str] | None = None  # sheet name -> digest of what was read
        self._names: list[str] = []
        self.note = ""
        if self.remote:
            self.note = (
                f"{xl_book.name} is opened from the cloud ({self.fullname.split('?')[0]}); sheetflow keeps its "
                f"lock and email journal on this computer in {self.workdir}. Let one person (or the "
                "scheduler) send emails for this workbook, or an email could go out twice."
            )

    # ------------------------------------------------------------ identity
    @property
    def remote(self) -> bool:
        return bool(re.match(r"^[a-z][a-z0-9+.-]*://", self.fullname, re.I))

    @property
    def identity(self) -> str:
        stem = re.sub(r"\.(xlsx|xlsm|xlsb|xls)$", "", str(self.xl.name), flags=re.I)
        safe = re.sub(r"[^\w.-]", "_", stem) or "book"
        if self.remote:  # two cloud workbooks may share a name
            return f"{safe}-{hashlib.sha256(self.fullname.encode()).hexdigest()[:8]}"
        return safe

    @property
    def folder(self) -> Path:
        """Where sheetflow.toml and the email outbox are looked for: the workbook's folder (cloud: workdir)."""
        if self.remote or not Path(self.fullname).is_absolute():
            return self.workdir
        return Path(self.fullname).parent

    @property
    def workdir(self) -> Path:
        if self.remote or not Path(self.fullname).is_absolute():
            return Path.home() / ".sheetflow" / "workbooks" / self.identity
        return Path(self.fullname).parent / ".sheetflow"

    def fingerprint(self) -> str:
        """A digest of every sheet's name and of the values and formulas of every contract sheet (one read
        of each; costly on big workbooks: used by watchers, not by runs), and of how many writes this process
        made (Excel has no change counter: a value changed and changed back still gives a new fingerprint
        after a write of ours)."""
        digest = hashlib.sha256(f"{_writes.get(self.fullname, 0)}\0".encode())
        for sheet in self.xl.sheets:
            digest.update(sheet.name.encode() + b"\0")
            if contract.sheet_spec(sheet.name) is not None:
                digest.update(self._digest(sheet, full=True).encode())
        return digest.hexdigest()

    # ------------------------------------------------------------ reading
    def read(self, *, full: Collection[str] = ()) -> dict[str, RawSheet]:
        """Every worksheet in workbook order: contract sheets with values (logs: header and last row unless
        named in ``full``), other sheets by name and state only."""
        out: dict[str, RawSheet] = {}
        seen: dict[str, str] = {}
        try:
            for sheet in self.xl.sheets:
                name = sheet.name
                state = _state(sheet)
                spec = contract.sheet_spec(name)
                if spec is None:
                    out[name] = RawSheet(name, [], (1, 1), state)
                    continue
                header_only = spec.name in LOGS and spec.name not in full
                raw = self._read_sheet(sheet, state, header_only)
                out[name] = raw
                seen[name] = f"{int(header_only)}:{_digest_of(raw, header_only)}"
        except SheetflowError:
            raise
        except Exception as e:  # noqa: BLE001 - COM/AppleScript errors: Excel is busy (a cell in edit mode)
            raise WorkbookBusy(
                f"Excel did not answer while sheetflow read {self.xl.name} ({e}); finish editing the cell "
                "(press Enter or Esc) and press the button again"
            ) from None
        self._seen = seen
        self._names = list(out)
        return out

    def _read_sheet(self, sheet: Any, state: str, header_only: bool) -> RawSheet:
        used = sheet.used_range
        r1, c1, r2, c2 = _bounds(used.address)
        if header_only:
            last_probe = min(r2, r1 + HEADER_PROBE - 1)
            rng = sheet.range(_a1(r1, c1), _a1(last_probe, c2)).options(ndim=2)
            rows = [[_read_value(v) for v in row] for row in rng.value]
            for i, row in enumerate(rows):
                if any(v != "" for v in row):
                    rows = rows[: i + 1]
                    break
            else:
                if last_probe < r2:  # no header in the first rows: read the whole sheet
                    return self._read_sheet(sheet, state, header_only=False)
            empty = not any(v != "" for row in rows for v in row)
            return RawSheet(sheet.name, [] if empty else rows, (r1, c1), state, last=0 if empty else r2)
        values = used.options(ndim=2).value
        rows = [[_read_value(v) for v in row] for row in values]
        formulas = _formula_cells(used.formula, values, r1, c1)
        if not any(v != "" for row in rows for v in row) and not formulas:
            return RawSheet(sheet.name, [], (1, 1), state)
        return RawSheet(sheet.name, rows, (r1, c1), state, formulas=formulas)

    def _digest(self, sheet: Any, full: bool) -> str:
        spec = contract.sheet_spec(sheet.name)
        header_only = not full and spec is not None and spec.name in LOGS
        raw = self._read_sheet(sheet, _state(sheet), header_only)
        return _digest_of(raw, header_only)

    # ------------------------------------------------------------ locking
    @contextlib.contextmanager
    def lease(self, wait: float = 0.0) -> Iterator[None]:
        """One runner per workbook: a lock file in :attr:`workdir` (across processes: the button, a terminal,
        the scheduler on this computer) and within this process."""
        key = str(self.workdir / f"{self.identity}.lock")
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            with _locks:
                if key not in _held:
                    _held.add(key)
                    break
            if time.monotonic() >= deadline:
                raise WorkbookBusy(
                    f"another sheetflow run is working on {self.xl.name}; try again when it has finished"
                )
            time.sleep(0.05)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(key, timeout=max(0.0, deadline - time.monotonic()))
            try:
                lock.acquire()
            except Timeout:
                raise WorkbookBusy(
                    f"another sheetflow run is working on {self.xl.name}; try again when it has finished"
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            with _locks:
                _held.discard(key)

    # ------------------------------------------------------------ progress
    def status(self, text: str | None) -> None:
        """Excel's status bar (bottom left): ``sheetflow: writing… 70%``; None gives it back to Excel."""
        with contextlib.suppress(Exception):  # a status bar that cannot be set never stops a run
            self.xl.app.status_bar = False if text is None else text

    # ------------------------------------------------------------ writing
    def write(self, patches: list[SheetPatch], *, backups: int = 10) -> None:
        """Apply every patch; checks (sheet names, cells, values, unchanged workbook) come before any change.
        ``backups`` is ignored (see the module docstring). If Excel fails halfway, the cells written so far
        stay (Excel has no transaction): the error says so, and the next run plans from what is there."""
        if self._seen is None:
            raise RuntimeError("read() must come before write()")
        work = self._checked(patches)
        sheets = {s.name: s for s in self.xl.sheets}
        for patch, _values in work:
            if patch.new is None and _digest_now(self, sheets[patch.sheet], patch.sheet) != self._seen.get(
                patch.sheet, ""
            ):
                raise WorkbookBusy(
                    f"{self.xl.name} changed while sheetflow was working (sheet {patch.sheet}); nothing was "
                    "written — press the button again to use the new contents"
                )
        if [s.name for s in self.xl.sheets] != self._names:
            raise WorkbookBusy(
                f"sheets of {self.xl.name} were added, renamed or moved while sheetflow was working; nothing "
                "was written — press the button again"
            )
        app = self.xl.app
        screen, calculation = app.screen_updating, app.calculation
        try:
            app.screen_updating = False
            app.calculation = "manual"
            for patch, values in work:
                sheet = sheets.get(patch.sheet)
                if sheet is None:
                    sheet = self.xl.sheets.add(patch.sheet, after=list(self.xl.sheets)[-1])
                    if patch.new is not None and patch.new.state != "visible":
                        _hide(sheet, very=patch.new.state == "veryHidden")
                    sheets[patch.sheet] = sheet
                    self._names.append(patch.sheet)
                elif patch.replace:
                    used = sheet.used_range
                    used.value = None
                if patch.delete_rows:
                    _delete_rows(sheet, patch.delete_rows)
                _write_cells(sheet, values)
        except SheetflowError:
            raise
        except Exception as e:  # noqa: BLE001 - not "busy": part of the write may be done, so it is logged
            raise SheetflowError(
                f"Excel stopped sheetflow while it wrote {self.xl.name} ({e}); some cells may be written — "
                "see Activity, then press the button again (the next run continues from what is there)"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                app.calculation = calculation
            with contextlib.suppress(Exception):
                app.screen_updating = screen
        with _locks:
            _writes[self.fullname] = _writes.get(self.fullname, 0) + 1
        for patch, _values in work:  # what we wrote is what the next write compares with
            self._seen[patch.sheet] = _digest_now(self, sheets[patch.sheet], patch.sheet)

    def _checked(self, patches: list[SheetPatch]) -> list[tuple[SheetPatch, dict[tuple[int, int], object]]]:
        """The file writer's rules (names, cells, values), with every value as it will be written."""
        merged = {p.sheet: p for p in merge_patches(patches)}
        names = [s.name for s in self.xl.sheets]
        work = []
        for patch in merged.values():
            if patch.new is not None:
                check_sheet_name(patch.sheet)
                if patch.new.state not in ("visible", "hidden", "veryHidden"):
                    raise PatchError(
                        f'sheet "{patch.sheet}": state must be "visible", "hidden" or "veryHidden", '
                        f'not "{patch.new.state}"'
                    )
                new_sheet_root(patch.sheet, patch.new)  # the file writer's checks of dropdowns and layout
                if any(n.casefold() == patch.sheet.casefold() for n in names):
                    raise PatchError(f'a sheet named "{patch.sheet}" already exists in the workbook')
                names.append(patch.sheet)
            elif patch.sheet not in names:
                shown = ", ".join(f'"{n}"' for n in names)
                raise PatchError(f'there is no sheet "{patch.sheet}" in the workbook (sheets: {shown})')
            if patch.delete_rows:
                if patch.new is not None or patch.replace:
                    raise PatchError(
                        f'internal error: rows deleted from new or replaced sheet "{patch.sheet}"'
                    )
                sheet = next(x for x in self.xl.sheets if x.name == patch.sheet)
                if _formula_cells(sheet.used_range.formula, sheet.used_range.options(ndim=2).value, 1, 1):
                    raise PatchError(
                        f'sheet "{patch.sheet}" holds formulas, so sheetflow will not move its rows to the '
                        "archive; move the formulas to another sheet"
                    )
            values: dict[tuple[int, int], object] = {}
            for key, value in patch.cells.items():
                r, c = key if isinstance(key, tuple) and len(key) == 2 else (key, None)
                if not (type(r) is int and type(c) is int and 1 <= r <= MAX_ROW and 1 <= c <= MAX_COL):
                    raise PatchError(
                        f'sheet "{patch.sheet}": ({r!r}, {c!r}) is not a cell (rows 1-{MAX_ROW}, '
                        f"columns 1-{MAX_COL})"
                    )
                values[key] = _to_excel(value, cell_ref(patch.sheet, r, c))
            work.append((patch, values))
        return work


# ---------------------------------------------------------------- values


class _Date:
    """A date value to write, with the format its cells get (unless they already show a date)."""

    __slots__ = ("value", "fmt")

    def __init__(self, value: dt.datetime, fmt: str):
        self.value, self.fmt = value, fmt


def _to_excel(value: object, where: str) -> object:
    """A patch value as xlwings is given it; PatchError (naming the cell) for what the file writer refuses."""
    if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)):
        value = value.item()  # type: ignore[attr-defined]  # a numpy scalar, checked above
    kind, text, with_time = render(value, where, False)
    if kind == "none":
        return None
    if kind == "str":
        return _text(str(value))
    if kind == "bool":
        return text == "1"
    if kind == "num":
        return float(text)
    naive = value.replace(tzinfo=None) if isinstance(value, dt.datetime) else value
    if isinstance(naive, dt.datetime):
        stamp = naive.replace(microsecond=naive.microsecond // 1000 * 1000)
    else:
        stamp = dt.datetime(naive.year, naive.month, naive.day)  # type: ignore[attr-defined]  # _render said date
    return _Date(stamp, DATE_TIME if with_time else DATE)


def _text(text: str) -> str:
    """Text as Excel keeps it: characters XML cannot hold dropped, cut at Excel's limit, and an apostrophe
    in front when Excel would otherwise take it for a formula, number, date, boolean or error."""
    text = ILLEGAL_XML_RE.sub("", text)
    if len(text) > MAX_TEXT // 2:
        text = text.encode("utf-16-le")[: MAX_TEXT * 2].decode("utf-16-le", errors="ignore")
    if text and _RISKY_TEXT.search(text):
        return "'" + text
    return text


def _state(sheet: Any) -> str:
    """visible / hidden / veryHidden. Very hidden is known on Windows only (``sheet.api.Visible == 2``, the
    COM constant xlSheetVeryHidden); elsewhere such a sheet reads as hidden."""
    if sheet.visible:
        return "visible"
    try:
        return "veryHidden" if int(sheet.api.Visible) == 2 else "hidden"
    except Exception:  # noqa: BLE001 - macOS: no COM object
        return "hidden"


def _hide(sheet: Any, very: bool) -> None:
    if very:
        try:
            sheet.api.Visible = 2  # xlSheetVeryHidden (Windows)
            return
        except Exception:  # noqa: BLE001 - macOS: hidden is what is possible
            pass
    sheet.visible = False


def _read_value(value: object) -> object:
    """A value from xlwings as every backend returns it (see :class:`sheetflow.book.base.Book`)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=None)
        if value.date() in (dt.date(1899, 12, 30), dt.date(1899, 12, 31)):  # a time of day (serial < 1)
            return value.time()
        return value.date() if value.time() == dt.time(0) else value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _formula_cells(formulas: object, values: list[list[object]], r1: int, c1: int) -> set[tuple[int, int]]:
    """Cells holding a formula: their formula text starts with ``=`` and differs from their value (a text
    cell's formula is its text)."""
    if not isinstance(formulas, (list, tuple)):
        formulas = ((formulas,),)
    elif formulas and not isinstance(formulas[0], (list, tuple)):
        formulas = (tuple(formulas),)
    out = set()
    for i, row in enumerate(formulas):
        for j, f in enumerate(row):
            if isinstance(f, str) and f.startswith("="):
                v = values[i][j] if i < len(values) and j < len(values[i]) else None
                if v != f:
                    out.add((r1 + i, c1 + j))
    return out


def _digest_of(raw: RawSheet, header_only: bool) -> str:
    h = hashlib.sha256()
    h.update(repr((raw.origin, raw.last if header_only else None, sorted(raw.formulas))).encode())
    for row in raw.rows:
        h.update(repr(row).encode())
    return h.hexdigest()


def _digest_now(book: ExcelBook, sheet: Any, name: str) -> str:
    """The digest of a sheet now, read the way the last read read it (a log in full or header only)."""
    before = (book._seen or {}).get(name)
    if before is not None:
        header_only = before.startswith("1:")
    else:
        spec = contract.sheet_spec(name)
        header_only = spec is not None and spec.name in LOGS
    raw = book._read_sheet(sheet, _state(sheet), header_only)
    return f"{int(header_only)}:{_digest_of(raw, header_only)}"


# ---------------------------------------------------------------- blocks


def _blocks(cells: dict[tuple[int, int], object]) -> list[tuple[int, int, int, int]]:
    """Rectangles covering exactly the given cells: runs of columns per row, and rows with the same run
    merged downwards (appended rows become one block, a column of updates one block per contiguous run)."""
    by_row: dict[int, list[int]] = {}
    for r, c in cells:
        by_row.setdefault(r, []).append(c)
    runs: list[tuple[int, int, int]] = []  # (row, c1, c2)
    for r in sorted(by_row):
        cols = sorted(by_row[r])
        start = prev = cols[0]
        for c in cols[1:]:
            if c != prev + 1:
                runs.append((r, start, prev))
                start = c
            prev = c
        runs.append((r, start, prev))
    open_blocks: dict[tuple[int, int], list[int]] = {}  # (c1, c2) -> [r1, r2]
    out: list[tuple[int, int, int, int]] = []
    for r, c1, c2 in runs:
        block = open_blocks.get((c1, c2))
        if block is not None and block[1] == r - 1:
            block[1] = r
            continue
        if block is not None:
            out.append((block[0], c1, block[1], c2))
        open_blocks[(c1, c2)] = [r, r]
    out += [(r1, c1, r2, c2) for (c1, c2), (r1, r2) in open_blocks.items()]
    return out


def _delete_rows(sheet: Any, rows: tuple[int, ...]) -> None:
    """Delete rows (1-based) as Excel's "Delete row" does: rows below move up. One call per run of adjacent
    rows, bottom run first so the row numbers above stay valid; over the used columns (a log sheet's)."""
    last_col = max(_bounds(sheet.used_range.address)[3], 1)
    gone = sorted(set(rows))
    runs: list[list[int]] = []
    for r in gone:
        if runs and runs[-1][1] == r - 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    for r1, r2 in reversed(runs):
        sheet.range(_a1(r1, 1), _a1(r2, last_col)).delete(shift="up")


def _write_cells(sheet: Any, values: dict[tuple[int, int], object]) -> None:
    if not values:
        return
    for r1, c1, r2, c2 in _blocks(values):
        grid = [[values[(r, c)] for c in range(c1, c2 + 1)] for r in range(r1, r2 + 1)]
        _date_formats(sheet, grid, r1, c1)
        plain = [[v.value if isinstance(v, _Date) else v for v in row] for row in grid]
        rng = sheet.range(_a1(r1, c1), _a1(r2, c2))
        rng.value = plain if len(plain) > 1 or len(plain[0]) > 1 else plain[0][0]


def _date_formats(sheet: Any, grid: list[list[object]], r1: int, c1: int) -> None:
    """Give date cells a date format, one call per column run of dates, keeping a date format they have."""
    for j in range(len(grid[0])):
        i = 0
        while i < len(grid):
            v = grid[i][j]
            if not isinstance(v, _Date):
                i += 1
                continue
            start, fmt = i, v.fmt
            while i < len(grid) and isinstance(grid[i][j], _Date) and grid[i][j].fmt == fmt:  # type: ignore[attr-defined]  # isinstance does not narrow an index expression
                i += 1
            rng = sheet.range(_a1(r1 + start, c1 + j), _a1(r1 + i - 1, c1 + j))
            current = rng.number_format
            if not (current and current not in ("General", "@") and is_date_format(current)):
                rng.number_format = fmt

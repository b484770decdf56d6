"""A local Google Sheets API v4 emulator, for tests (Google ships none and no maintained fake exists).

Run it with ``python -m sheetflow.testing.sheets_emulator [--port N] [--data FILE]`` or, in tests::

    with start() as emu:                       # ThreadingHTTPServer on 127.0.0.1, a free port
        sid = emu.create_spreadsheet({"Contacts": [["id", "email"], ["c1", "a@x.org"]]})
        gc = emulator_client(emu.base_url)      # a real gspread.Client, no Google credentials
        gc.open_by_key(sid).sheet1.get_all_values()

What it implements is the part of Sheets API v4 that gspread 6.x and sheetflow use, checked against
Google's real responses recorded in gspread's cassettes (``tests/data/gspread-cassettes``):

- ``GET /v4/spreadsheets/{id}`` (metadata; ``fields`` masks, ``includeGridData``),
- ``values.get``/``values.batchGet`` (``majorDimension``, ``valueRenderOption`` FORMATTED_VALUE /
  UNFORMATTED_VALUE / FORMULA, ``dateTimeRenderOption`` SERIAL_NUMBER / FORMATTED_STRING), with Google's
  trimming of trailing empty rows and cells,
- ``values.update``/``values.batchUpdate``/``values.append``/``values.clear``/``values.batchClear``
  (``valueInputOption`` RAW keeps ``"=1+1"`` a string; USER_ENTERED parses formulas, numbers, percentages,
  booleans and dates roughly as Google does for the spreadsheet's locale, en_US and pt_BR),
- ``spreadsheets.batchUpdate``: addSheet, deleteSheet, updateSheetProperties, repeatCell, updateCells,
  appendDimension, insertDimension, deleteDimension, sortRange,
- the Drive calls gspread makes to create/delete/list spreadsheets (``/drive/v3/files``).

Google's behaviours reproduced: grid limits ("exceeds grid limits" on writes and on reads past the grid),
the 10,000,000-cell spreadsheet limit, 50,000 characters per cell, the 10 MiB request body limit
(``max_request_bytes``, lower it to test splitting), atomic batches (one bad request changes nothing),
proto3 JSON (empty lists and zero counts left out), error bodies
``{"error": {"code", "message", "status"}}`` for 404 NOT_FOUND, 403 PERMISSION_DENIED (caller not in a
spreadsheet's ``allowed_callers``; the Sheets API not enabled), 400 INVALID_ARGUMENT.

Test hooks (Python, and the ``/_emulator/...`` control endpoint): injectable faults (429 with
Retry-After, 500, 503, a delay longer than the client's timeout) matched by method, path pattern or
request kind; request counters per kind (read, write, metadata) and operation, with byte counts; hooks that
run between two requests (e.g. a person inserting or sorting rows right after the Nth request).

Not emulated: formatting beyond storing formats, conditional formats, named ranges, formula functions
other than arithmetic/SUM/cell references, recalculation order, Google's "table detection" quirks of
``values.append`` (sheetflow never appends that way).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "ENDPOINT_ENV",
    "MAX_CELLS",
    "MAX_CELL_CHARS",
    "MAX_REQUEST_BYTES",
    "ApiError",
    "Emulator",
    "EmulatorServer",
    "emulator_client",
    "emulator_session",
    "main",
    "start",
]

ENDPOINT_ENV = "SHEETFLOW_GSHEETS_ENDPOINT"
CALLER_HEADER = "X-Emulator-Caller"

# Google's limit per spreadsheet since March 2022 (workspaceupdates.googleblog.com, "ten million cells").
MAX_CELLS = 10_000_000
DEFAULT_ROWS, DEFAULT_COLS = 1000, 26  # a new Google sheet's grid
MAX_CELL_CHARS = 50_000  # Google's limit per cell (support.google.com/drive/answer/37603)
# Google's API front end refuses larger bodies: "Request payload size exceeds the limit: 10485760 bytes."
MAX_REQUEST_BYTES = 10_485_760
_EPOCH = _dt.datetime(1899, 12, 30)  # day 0 of Google's (and Lotus/Excel's) date serials

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_FAULT_MESSAGES = {
    429: "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user' "
    "of service 'sheets.googleapis.com' for consumer 'project_number:000000000000'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


class ApiError(Exception):
    """An error answered as Google does: HTTP ``code`` and body ``{"error": {code, message, status}}``."""

    def __init__(self, code: int, message: str, status: str | None = None, details: list | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS.get(code, "UNKNOWN")
        self.details = details

    def body(self) -> dict:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            err["details"] = self.details
        return {"error": err}


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


# --------------------------------------------------------------------------------------------- A1 notation


def col_letters(index: int) -> str:
    """0-based column index -> letters (0 -> A, 26 -> AA)."""
    s = ""
    n = index + 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def col_index(letters: str) -> int:
    """Letters -> 0-based column index."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


_PLAIN_TITLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CELLISH = re.compile(r"[A-Za-z]{1,3}[0-9]+|[Rr][0-9]*[Cc][0-9]*")


def quote_title(title: str) -> str:
    """A sheet title as Google writes it in a range: bare when plain (``Sheet1``), else quoted."""
    if _PLAIN_TITLE.fullmatch(title) and not _CELLISH.fullmatch(title):
        return title
    return "'" + title.replace("'", "''") + "'"


_CELLS = re.compile(r"^([A-Za-z]*)([0-9]*)(?::([A-Za-z]*)([0-9]*))?$")


def split_range(a1: str) -> tuple[str | None, str | None]:
    """``'It''s'!A1:B2`` -> (``It's``, ``A1:B2``); ``Sheet1`` -> (None, ``Sheet1``) (caller decides)."""
    a1 = a1.strip()
    if a1.startswith("'"):
        i, title = 1, []
        while i < len(a1):
            ch = a1[i]
            if ch == "'":
                if a1[i + 1 : i + 2] == "'":
                    title.append("'")
                    i += 2
                    continue
                rest = a1[i + 1 :]
                if rest == "":
                    return "".join(title), None
                if rest.startswith("!"):
                    return "".join(title), rest[1:] or None
                raise _bad(f"Unable to parse range: {a1}")
            title.append(ch)
            i += 1
        raise _bad(f"Unable to parse range: {a1}")
    if "!" in a1:
        name, _, cells = a1.rpartition("!")
        return name, cells or None
    return None, a1


class Grid:
    """A rectangle of one sheet, 0-based, end-exclusive; resolved against the sheet's grid size."""

    __slots__ = ("sheet", "r0", "r1", "c0", "c1", "explicit_end_row", "explicit_end_col")

    def __init__(self, sheet: Sheet, r0: int, r1: int, c0: int, c1: int, ex_r=True, ex_c=True):
        self.sheet, self.r0, self.r1, self.c0, self.c1 = sheet, r0, r1, c0, c1
        self.explicit_end_row, self.explicit_end_col = ex_r, ex_c

    def a1(self) -> str:
        start = f"{col_letters(self.c0)}{self.r0 + 1}"
        end = f"{col_letters(self.c1 - 1)}{self.r1}"
        cells = start if (self.r1 - self.r0, self.c1 - self.c0) == (1, 1) else f"{start}:{end}"
        return f"{quote_title(self.sheet.title)}!{cells}"

    def within_grid(self) -> bool:
        return self.r1 <= self.sheet.row_count and self.c1 <= self.sheet.col_count

    def clipped(self) -> Grid:
        s = self.sheet
        return Grid(s, self.r0, min(self.r1, s.row_count), self.c0, min(self.c1, s.col_count))


def _parse_cells(sheet: Sheet, cells: str, original: str) -> Grid:
    m = _CELLS.match(cells.replace("$", ""))
    if not m:
        raise _bad(f"Unable to parse range: {original}")
    c1s, r1s, c2s, r2s = m.groups()
    if not c1s and not r1s:
        raise _bad(f"Unable to parse range: {original}")
    rows, cols = sheet.row_count, sheet.col_count
    c0 = col_index(c1s) if c1s else 0
    r0 = int(r1s) - 1 if r1s else 0
    if r1s and int(r1s) < 1:
        raise _bad(f"Unable to parse range: {original}")
    if c2s is None and r2s is None:  # one cell, or a whole column/row ("A" / "3")
        if c1s and r1s:  # a single cell is also a start point: values may extend from it
            return Grid(sheet, r0, r0 + 1, c0, c0 + 1, ex_r=False, ex_c=False)
        if c1s:
            return Grid(sheet, 0, rows, c0, c0 + 1, ex_r=False)
        return Grid(sheet, r0, r0 + 1, 0, cols, ex_c=False)
    ex_r, ex_c = bool(r2s), bool(c2s)
    c_end = col_index(c2s) + 1 if c2s else cols
    r_end = int(r2s) if r2s else rows
    if not r1s and r2s:  # "A:B2" is not A1 notation Google accepts either
        raise _bad(f"Unable to parse range: {original}")
    if not c1s:  # "2:5"
        c0, c_end, ex_c = 0, cols, False
    if c_end <= c0 or r_end <= r0:  # "B2:A1": Google normalises the corners
        c0, c_end = min(c0, c_end - 1), max(c0 + 1, c_end)
        r0, r_end = min(r0, r_end - 1), max(r0 + 1, r_end)
    return Grid(sheet, r0, r_end, c0, c_end, ex_r, ex_c)


# ------------------------------------------------------------------------------------------------ cells


class Cell:
    """One stored cell with a formula or a format; treated as immutable so a batch snapshot is a shallow
    copy of the row lists. Rows hold None (empty), a plain value (str/int/float/bool: no formula, no
    format; most cells, kept small and fast) or a Cell; :meth:`Sheet.cell` always answers a Cell.

    ``value``: None, str, int/float, bool or :class:`FormulaError`-like str starting with ``#``;
    ``formula``: the entered formula text or None; ``fmt``: the userEnteredFormat dict or None.
    """

    __slots__ = ("value", "formula", "fmt")

    def __init__(self, value=None, formula=None, fmt=None):
        self.value, self.formula, self.fmt = value, formula, fmt

    def is_blank(self) -> bool:
        return self.value is None and self.formula is None

    def __repr__(self) -> str:
        return f"Cell({self.value!r}, {self.formula!r}, {self.fmt!r})"


class Sheet:
    def __init__(self, sheet_id: int, title: str, index: int, rows: int, cols: int):
        self.props: dict[str, Any] = {
            "sheetId": sheet_id,
            "title": title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": rows, "columnCount": cols},
        }
        self.rows: list[list[Cell | None]] = []

    # grid properties
    @property
    def title(self) -> str:
        return self.props["title"]

    @property
    def sheet_id(self) -> int:
        return self.props["sheetId"]

    @property
    def row_count(self) -> int:
        return self.props["gridProperties"].get("rowCount", 0)

    @property
    def col_count(self) -> int:
        return self.props["gridProperties"].get("columnCount", 0)

    def cell(self, r: int, c: int) -> Cell | None:
        if r < len(self.rows):
            row = self.rows[r]
            if c < len(row):
                x = row[c]
                return x if x is None or type(x) is Cell else Cell(x)
        return None

    def put(self, r: int, c: int, cell: Cell | None) -> None:
        while len(self.rows) <= r:
            self.rows.append([])
        row = self.rows[r]
        if len(row) <= c:
            if cell is None:
                return
            row.extend([None] * (c + 1 - len(row)))
        row[c] = cell

    def snapshot(self) -> tuple[dict, list[list[Cell | None]]]:
        return copy.deepcopy(self.props), [row[:] for row in self.rows]

    def restore(self, snap) -> None:
        self.props, self.rows = snap[0], snap[1]

    def truncate(self) -> None:
        """Drop stored cells outside the grid (after shrinking it)."""
        rc, cc = self.row_count, self.col_count
        del self.rows[rc:]
        for row in self.rows:
            del row[cc:]


class Spreadsheet:
    def __init__(self, spreadsheet_id: str, title: str, locale: str, time_zone: str):
        self.id = spreadsheet_id
        self.title = title
        self.locale = locale
        self.time_zone = time_zone
        self.sheets: list[Sheet] = []
        self.allowed_callers: set[str] | None = None  # None: anyone may call
        self.created = _dt.datetime.now(_dt.timezone.utc)
        self.modified = self.created

    def sheet_by_title(self, title: str) -> Sheet | None:
        for s in self.sheets:
            if s.title == title:
                return s
        for s in self.sheets:  # Google matches sheet names case-insensitively in ranges
            if s.title.lower() == title.lower():
                return s
        return None

    def sheet_by_id(self, sheet_id: int) -> Sheet | None:
        for s in self.sheets:
            if s.sheet_id == sheet_id:
                return s
        return None

    def reindex(self) -> None:
        for i, s in enumerate(sorted(self.sheets, key=lambda s: s.props["index"])):
            s.props["index"] = i
        self.sheets.sort(key=lambda s: s.props["index"])

    def total_cells(self) -> int:
        return sum(s.row_count * s.col_count for s in self.sheets)

    def grid(self, a1: str) -> Grid:
        """Parse an A1 range (``'Sheet name'!A1:C``, ``A:A``, ``2:5``, ``Sheet``) against this spreadsheet."""
        title, cells = split_range(a1)
        if title is None:
            sheet = self.sheet_by_title(cells or "")
            if sheet is not None:
                return Grid(sheet, 0, sheet.row_count, 0, sheet.col_count, False, False)
            visible = [s for s in self.sheets if not s.props.get("hidden")] or self.sheets
            if not visible:
                raise _bad(f"Unable to parse range: {a1}")
            return _parse_cells(visible[0], cells or "", a1)
        sheet = self.sheet_by_title(title)
        if sheet is None:
            raise _bad(f"Unable to parse range: {a1}")
        if cells is None:
            return Grid(sheet, 0, sheet.row_count, 0, sheet.col_count, False, False)
        return _parse_cells(sheet, cells, a1)

    def grid_range(self, gr: Mapping[str, Any], where: str) -> Grid:
        """A GridRange object (sheetId, start/end row/column indexes, unbounded when absent)."""
        sheet = self.sheet_by_id(int(gr.get("sheetId", 0)))
        if sheet is None:
            raise _bad(f"{where}: No grid with id: {gr.get('sheetId', 0)}")
        return Grid(
            sheet,
            int(gr.get("startRowIndex", 0)),
            int(gr.get("endRowIndex", sheet.row_count)),
            int(gr.get("startColumnIndex", 0)),
            int(gr.get("endColumnIndex", sheet.col_count)),
        )


# ------------------------------------------------------------------------------ values in and values out

_NUM_EN = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+-]?\d+)?$")
_NUM_PT = re.compile(r"^[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)?(?:,\d+)?(?:[eE][+-]?\d+)?$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_SLASH_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def _is_pt(locale: str) -> bool:
    return locale.lower().replace("-", "_").startswith("pt")


def to_serial(moment: _dt.datetime | _dt.date) -> float:
    if not isinstance(moment, _dt.datetime):
        moment = _dt.datetime(moment.year, moment.month, moment.day)
    delta = moment.replace(tzinfo=None) - _EPOCH
    return delta.days + delta.seconds / 86400


def from_serial(serial: float) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(days=float(serial))


def _num(v: float) -> int | float:
    """JSON numbers as Google writes them: 2 not 2.0."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return int(v)
    return v


def parse_user_entered(text: str, locale: str) -> tuple[Any, str | None, dict | None]:
    """Typed-in text as Google's USER_ENTERED reads it: (value, formula, numberFormat to set or None).

    Rough by design (Google's parser is not documented): formulas (``=``), a leading apostrophe forcing
    text, numbers with the locale's separators, percentages, TRUE/FALSE, ISO and locale slash dates and
    times. Everything else stays text.
    """
    if text == "":
        return None, None, None
    if text.startswith("="):
        return None, text, None
    if text.startswith("'"):
        return text[1:], None, None
    s = text.strip()
    pt = _is_pt(locale)
    up = s.upper()
    if up in ("TRUE", "FALSE") or (pt and up in ("VERDADEIRO", "FALSO")):
        return up in ("TRUE", "VERDADEIRO"), None, None
    pct = s.endswith("%")
    core = s[:-1].strip() if pct else s
    if core and any(ch.isdigit() for ch in core):
        if pt and _NUM_PT.match(core):
            n = float(core.replace(".", "").replace(",", "."))
        elif not pt and _NUM_EN.match(core):
            n = float(core.replace(",", ""))
        else:
            n = None
        if n is not None:
            if pct:
                pattern = "0.00%" if re.search(r"[.,]\d", core) else "0%"
                return _num(n / 100), None, {"type": "PERCENT", "pattern": pattern}
            return _num(n), None, None
    m = _ISO_DATE.match(s)
    if m:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        return _date_value(y, mo, d, m[4], m[5], m[6], "yyyy-mm-dd")
    m = _SLASH_DATE.match(s)
    if m:
        a, b, y = int(m[1]), int(m[2]), int(m[3])
        mo, d = (b, a) if pt else (a, b)
        return _date_value(y, mo, d, m[4], m[5], m[6], "dd/MM/yyyy" if pt else "M/d/yyyy")
    m = _TIME.match(s)
    if m and int(m[1]) < 24 and int(m[2]) < 60:
        secs = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)
        return _num(secs / 86400), None, {"type": "TIME", "pattern": "h:mm:ss am/pm"}
    return text, None, None


def _date_value(y, mo, d, hh, mi, ss, pattern):
    try:
        moment = _dt.datetime(y, mo, d, int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        return f"{y}-{mo}-{d}", None, None  # not a real date: Google keeps the text
    if hh is not None:
        return _num(to_serial(moment)), None, {"type": "DATE_TIME", "pattern": pattern + " H:mm:ss"}
    return _num(to_serial(moment)), None, {"type": "DATE", "pattern": pattern}


_DATE_TOKENS = re.compile(
    r"yyyy|yy|mmmm|mmm|MMMM|MMM|mm|m|MM|M|dddd|ddd|dd|d|HH|H|hh|h|ss|s|am/pm|AM/PM|\.000"
)


def format_date(serial: float, pattern: str) -> str:
    """Render a date serial with a Google date/time pattern (the common tokens only)."""
    moment = from_serial(serial)
    moment = _EPOCH + _dt.timedelta(seconds=round((moment - _EPOCH).total_seconds()))
    tokens = _DATE_TOKENS.findall(pattern)
    twelve = any(t.lower() == "am/pm" for t in tokens)
    out, pos, prev = [], 0, ""
    for m in _DATE_TOKENS.finditer(pattern):
        out.append(pattern[pos : m.start()])
        t = m.group()
        lower = t.lower()
        nxt = pattern[m.end() :].lstrip(":. ")
        minute = lower in ("m", "mm") and (prev in ("h", "hh") or nxt[:1].lower() == "s")
        if lower == "yyyy":
            out.append(f"{moment.year:04d}")
        elif lower == "yy":
            out.append(f"{moment.year % 100:02d}")
        elif minute:
            out.append(f"{moment.minute:02d}" if lower == "mm" else str(moment.minute))
        elif lower == "mmmm":
            out.append(moment.strftime("%B"))
        elif lower == "mmm":
            out.append(moment.strftime("%b"))
        elif lower == "mm":
            out.append(f"{moment.month:02d}")
        elif lower == "m":
            out.append(str(moment.month))
        elif lower == "dddd":
            out.append(moment.strftime("%A"))
        elif lower == "ddd":
            out.append(moment.strftime("%a"))
        elif lower == "dd":
            out.append(f"{moment.day:02d}")
        elif lower == "d":
            out.append(str(moment.day))
        elif lower in ("hh", "h"):
            h = moment.hour % 12 or 12 if twelve else moment.hour
            out.append(f"{h:02d}" if lower == "hh" else str(h))
        elif lower in ("ss", "s"):
            out.append(f"{moment.second:02d}" if lower == "ss" else str(moment.second))
        elif lower == "am/pm":
            out.append("AM" if moment.hour < 12 else "PM")
        elif t == ".000":
            out.append(".000")
        prev = lower if lower in ("h", "hh", "m", "mm") else prev if lower == "am/pm" else lower
        pos = m.end()
    out.append(pattern[pos:])
    return "".join(out)


def format_number(v: float, number_format: Mapping[str, Any] | None, locale: str) -> str:
    """FORMATTED_VALUE of a number: with its numberFormat pattern, else Google's automatic format."""
    pt = _is_pt(locale)
    nf = number_format or {}
    ftype, pattern = nf.get("type", ""), nf.get("pattern", "")
    if ftype in ("DATE", "TIME", "DATE_TIME") or (pattern and re.search(r"[yd]|h+:m", pattern, re.I)):
        if not pattern:
            pattern = {"DATE": "dd/MM/yyyy" if pt else "M/d/yyyy", "TIME": "h:mm:ss am/pm"}.get(
                ftype, "dd/MM/yyyy H:mm:ss" if pt else "M/d/yyyy H:mm:ss"
            )
        return format_date(v, pattern)
    if ftype == "TEXT" or pattern == "@":
        text = _general(v)
    elif pattern or ftype in ("PERCENT", "NUMBER", "CURRENCY", "SCIENTIFIC"):
        text = _patterned(v, pattern or {"PERCENT": "0%", "SCIENTIFIC": "0.00E+00"}.get(ftype, "0.00"))
    else:
        text = _general(v)
    if pt:  # swap separators: 1,234.5 -> 1.234,5
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def _general(v: float) -> str:
    if isinstance(v, int) or (float(v).is_integer() and abs(v) < 1e15):
        return str(int(v))
    text = f"{v:.15g}"
    if "e" in text:
        return text.upper().replace("E+", "E+")
    # Google shows at most ~10 decimals in the automatic format
    return f"{v:.10f}".rstrip("0").rstrip(".") if abs(v) < 1e5 else text


def _patterned(v: float, pattern: str) -> str:
    m = re.search(r"[#0][#0,]*(?:\.[0#]+)?(?:E\+0+)?%?", pattern)
    if not m:
        return _general(v)
    spec = m.group()
    prefix, suffix = pattern[: m.start()].replace('"', ""), pattern[m.end() :].replace('"', "")
    pct = spec.endswith("%")
    if pct:
        v = v * 100
        spec = spec[:-1]
    decimals = len(spec.split(".")[1].split("E")[0]) if "." in spec else 0
    if "E+" in spec:
        body = f"{v:.{decimals}E}"
        mant, _, exp = body.partition("E")
        body = f"{mant}E{exp[0]}{int(exp[1:]):02d}"
    else:
        body = f"{v:,.{decimals}f}" if "," in spec else f"{v:.{decimals}f}"
    return f"{prefix}{body}{'%' if pct else ''}{suffix}"


class _FormulaEval:
    """Evaluates the arithmetic subset of formulas: numbers, strings, + - * / ^ &, parentheses, cell
    references of the same sheet and SUM(range). Anything else is ``#NAME?``; never Python eval."""

    _TOKEN = re.compile(
        r"\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)|(\$?[A-Za-z]{1,3}\$?\d+(?::\$?[A-Za-z]{1,3}\$?\d+)?)"
        r'|([A-Za-z_][A-Za-z0-9_.]*)\s*\(|("(?:[^"]|"")*")|(<=|>=|<>|[-+*/^&(),=<>]))'
    )

    def __init__(self, sheet: Sheet, depth: int):
        self.sheet, self.depth = sheet, depth

    def run(self, formula: str) -> Any:
        self.toks: list[tuple[str, str]] = []
        pos, text = 0, formula[1:]
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                return "#ERROR!"
            idx = m.lastindex or 1
            kind = ("num", "ref", "fn", "str", "op")[idx - 1]
            self.toks.append((kind, m.group(idx)))
            pos = m.end()
        self.i = 0
        try:
            value = self.compare()
            if self.i != len(self.toks):
                return "#ERROR!"
            return value
        except ZeroDivisionError:
            return "#DIV/0!"
        except _FormulaFailure as e:
            return str(e)

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("", "")

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def compare(self):
        left = self.concat()
        while self.peek()[1] in ("=", "<", ">", "<=", ">=", "<>"):
            op = self.take()[1]
            right = self.concat()
            a, b = left, right
            left = {
                "=": a == b,
                "<>": a != b,
                "<": a < b,
                ">": a > b,
                "<=": a <= b,
                ">=": a >= b,
            }[op]
        return left

    def concat(self):
        left = self.additive()
        while self.peek()[1] == "&":
            self.take()
            left = _as_text(left) + _as_text(self.additive())
        return left

    def additive(self):
        left = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            right = self.term()
            left = _as_num(left) + _as_num(right) if op == "+" else _as_num(left) - _as_num(right)
        return left

    def term(self):
        left = self.power()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            right = self.power()
            left = _as_num(left) * _as_num(right) if op == "*" else _as_num(left) / _as_num(right)
        return left

    def power(self):
        left = self.unary()
        while self.peek()[1] == "^":
            self.take()
            left = _as_num(left) ** _as_num(self.unary())
        return left

    def unary(self):
        if self.peek()[1] in ("-", "+"):
            op = self.take()[1]
            v = _as_num(self.unary())
            return -v if op == "-" else v
        return self.atom()

    def atom(self):
        kind, text = self.take()
        if kind == "num":
            return _num(float(text))
        if kind == "str":
            return text[1:-1].replace('""', '"')
        if kind == "op" and text == "(":
            v = self.compare()
            if self.take()[1] != ")":
                raise _FormulaFailure("#ERROR!")
            return v
        if kind == "ref":
            if ":" in text:
                raise _FormulaFailure("#VALUE!")
            return self.ref_value(text)
        if kind == "fn":
            name = text.upper()
            args = []
            if self.peek()[1] != ")":
                while True:
                    if self.peek()[0] == "ref" and ":" in self.peek()[1]:
                        args.extend(self.range_values(self.take()[1]))
                    else:
                        args.append(self.compare())
                    if self.peek()[1] != ",":
                        break
                    self.take()
            if self.take()[1] != ")":
                raise _FormulaFailure("#ERROR!")
            if name == "SUM":
                return _num(float(sum(a for a in args if isinstance(a, (int, float)) and a is not True)))
            raise _FormulaFailure("#NAME?")
        raise _FormulaFailure("#ERROR!")

    def ref_value(self, ref: str):
        g = _parse_cells(self.sheet, ref, ref)
        cell = self.sheet.cell(g.r0, g.c0)
        return _effective(cell, self.sheet, self.depth + 1) if cell else 0

    def range_values(self, ref: str):
        g = _parse_cells(self.sheet, ref, ref)
        for r in range(g.r0, g.r1):
            for c in range(g.c0, g.c1):
                cell = self.sheet.cell(r, c)
                if cell is not None:
                    yield _effective(cell, self.sheet, self.depth + 1)


class _FormulaFailure(Exception):
    pass


def _as_num(v) -> float:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v
    if v is None or v == "":
        return 0
    if isinstance(v, str) and v.startswith("#"):
        raise _FormulaFailure(v)
    try:
        return _num(float(v))
    except ValueError:
        raise _FormulaFailure("#VALUE!") from None


def _as_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return _general(v)
    return str(v)


def _effective(cell: Any, sheet: Sheet, depth: int = 0) -> Any:
    if cell is None or type(cell) is not Cell:  # empty, or a plain stored value
        return cell
    if cell.formula is None:
        return cell.value
    if depth > 50:
        return "#REF!"
    v = _FormulaEval(sheet, depth).run(cell.formula)
    return _num(v) if isinstance(v, float) else v


def _number_format(cell: Cell) -> dict | None:
    return (cell.fmt or {}).get("numberFormat")


def _is_datetime_format(nf: Mapping | None) -> bool:
    return nf is not None and nf.get("type") in ("DATE", "TIME", "DATE_TIME")


def render(cell: Cell | None, sheet: Sheet, value_render: str, date_render: str, locale: str) -> Any:
    """One cell as values.get returns it (empty cells are "")."""
    if cell is None:
        return ""
    if type(cell) is not Cell:  # a plain stored value (no formula, no format): the common case, kept fast
        if value_render != "FORMATTED_VALUE" or isinstance(cell, str):
            return cell
        cell = Cell(cell)
    if value_render == "FORMULA" and cell.formula is not None:
        return cell.formula
    v = _effective(cell, sheet)
    if v is None:
        return ""
    nf = _number_format(cell)
    if value_render == "FORMATTED_VALUE":
        if isinstance(v, bool):
            if _is_pt(locale):
                return "VERDADEIRO" if v else "FALSO"
            return "TRUE" if v else "FALSE"
        if isinstance(v, (int, float)):
            return format_number(v, nf, locale)
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if date_render == "FORMATTED_STRING" and _is_datetime_format(nf):
            return format_number(v, nf, locale)
        return _num(v)
    return v


def trim(matrix: list[list[Any]]) -> list[list[Any]]:
    """Google drops trailing empty cells of each row and trailing empty rows."""
    out = []
    for row in matrix:
        end = len(row)
        while end and row[end - 1] == "":
            end -= 1
        out.append(row[:end])
    while out and not out[-1]:
        out.pop()
    return out


# -------------------------------------------------------------------------------------------- field masks


def _parse_fields(text: str) -> dict:
    """Google's partial-response syntax (``a.b,c(d,e/f)``) -> a nested dict of selected paths."""
    tree: dict = {}
    pos = 0

    def parse_list(node: dict, end: str | None) -> None:
        nonlocal pos
        while pos < len(text):
            m = re.match(r"\s*([A-Za-z0-9_*]+(?:[./][A-Za-z0-9_*]+)*)\s*", text[pos:])
            if not m:
                raise _bad(f"Invalid field selection {text}")
            pos += m.end()
            parts = re.split(r"[./]", m.group(1))
            cur = node
            for p in parts[:-1]:
                cur = cur.setdefault(p, {})
                if cur is True:
                    break
            if cur is True:
                pass
            elif pos < len(text) and text[pos] == "(":
                pos += 1
                sub = cur.setdefault(parts[-1], {})
                if sub is not True:
                    parse_list(sub, ")")
            else:
                cur[parts[-1]] = True
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == ")" and end == ")":
                pos += 1
                return
        return

    parse_list(tree, None)
    return tree


def _apply_fields(obj: Any, tree: Any) -> Any:
    if tree is True or "*" in tree:
        return obj
    if isinstance(obj, list):
        return [_apply_fields(x, tree) for x in obj]
    if not isinstance(obj, dict):
        return obj
    return {k: _apply_fields(obj[k], sub) for k, sub in tree.items() if k in obj}


def _set_by_mask(target: dict, source: Mapping, fields: str) -> None:
    """updateSheetProperties/repeatCell ``fields``: copy the masked paths from source into target."""
    if fields.strip() == "*":
        for k, v in source.items():
            target[k] = copy.deepcopy(v)
        return
    for path in fields.split(","):
        parts = [p for p in re.split(r"[./]", path.strip()) if p]
        if not parts:
            continue
        src: Any = source
        dst = target
        for p in parts[:-1]:
            src = src.get(p, {}) if isinstance(src, Mapping) else {}
            dst = dst.setdefault(p, {})
        last = parts[-1]
        if isinstance(src, Mapping) and last in src:
            dst[last] = copy.deepcopy(src[last])
        else:
            dst.pop(last, None)


# ---------------------------------------------------------------------------------------- the emulator


class _Fault:
    def __init__(self, status, times, method, path, kind, retry_after, delay, message):
        self.status, self.times, self.method = status, times, method
        self.path = re.compile(path) if path else None
        self.kind, self.retry_after, self.delay, self.message = kind, retry_after, delay, message

    def matches(self, method: str, path: str, kind: str) -> bool:
        if self.times <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.kind and self.kind != kind:
            return False
        return not (self.path and not self.path.search(path))


class _Hook:
    def __init__(self, fn, after, path, method, kind):
        self.fn, self.after, self.method, self.kind = fn, after, method, kind
        self.path = re.compile(path) if path else None
        self.done = False

    def due(self, number: int, method: str, path: str, kind: str) -> bool:
        if self.done or (self.after is not None and number < self.after):
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.kind and self.kind != kind:
            return False
        return not (self.path and not self.path.search(path))


class Emulator:
    """The emulated Google account: spreadsheets, faults, hooks and counters. Thread-safe (one lock:
    requests are applied one at a time, in arrival order, as Google serialises writes per spreadsheet).

    Counters: ``counts`` (per kind: ``read``, ``write``, ``metadata``, ``drive``), ``by_method`` (per
    method and kind, e.g. ``"POST write"``), ``ops`` (per operation, e.g. ``values.batchGet``),
    ``requests`` (all API requests), ``bytes_in``/``bytes_out`` (request and response bodies). Google's
    quota counts metadata reads as reads: ``counts["read"] + counts["metadata"]`` is its read count.
    """

    def __init__(self, *, api_disabled: bool = False, max_request_bytes: int = MAX_REQUEST_BYTES):
        self.lock = threading.RLock()
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.api_disabled = api_disabled
        self.max_request_bytes = max_request_bytes  # lower it in tests to exercise request splitting
        self._faults: list[_Fault] = []
        self._hooks: list[_Hook] = []
        self.log: list[dict] = []  # one entry per API request: number, method, path, kind, op, status
        self.reset_counts()

    # ---- counters
    def reset_counts(self) -> None:
        with getattr(self, "lock", threading.RLock()):
            self.counts: Counter[str] = Counter()
            self.by_method: Counter[str] = Counter()
            self.ops: Counter[str] = Counter()
            self.requests = 0
            self.bytes_in = 0
            self.bytes_out = 0
            self.log = []

    def stats(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "counts": dict(self.counts),
                "by_method": dict(self.by_method),
                "ops": dict(self.ops),
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
            }

    # ---- test set-up
    def create_spreadsheet(
        self,
        sheets: Mapping[str, Sequence[Sequence[Any]]] | Sequence[Mapping[str, Any]] | None = None,
        *,
        spreadsheet_id: str | None = None,
        title: str = "Untitled spreadsheet",
        locale: str = "en_US",
        time_zone: str = "Etc/GMT",
        rows: int = DEFAULT_ROWS,
        cols: int = DEFAULT_COLS,
        value_input: str = "RAW",
        allowed_callers: Iterable[str] | None = None,
    ) -> str:
        """Create a spreadsheet from Python data; returns its id.

        ``sheets``: ``{"Sheet title": [[row 1 values], ...]}`` or a list of dicts ``{"title", "values",
        "rowCount", "columnCount", "hidden", "frozenRowCount"}``; default one empty "Sheet1". Each grid
        is at least ``rows`` x ``cols`` (Google's 1000 x 26) and large enough for its values. Values
        are stored as written with ``value_input`` ("RAW": as given; "USER_ENTERED": typed in).
        ``allowed_callers``: if given, only requests whose caller (header ``X-Emulator-Caller`` or the
        Bearer token) is listed are served; others get 403 PERMISSION_DENIED ("not shared").
        """
        with self.lock:
            sid = spreadsheet_id or "1" + secrets.token_urlsafe(32)[:43]
            book = Spreadsheet(sid, title, locale, time_zone)
            if allowed_callers is not None:
                book.allowed_callers = set(allowed_callers)
            specs: list[dict]
            if sheets is None:
                specs = [{"title": "Sheet1"}]
            elif isinstance(sheets, Mapping):
                specs = [{"title": t, "values": v} for t, v in sheets.items()]
            else:
                specs = [dict(s) for s in sheets]
            for i, spec in enumerate(specs):
                values = [list(r) for r in spec.get("values") or []]
                width = max((len(r) for r in values), default=0)
                nrows = max(int(spec.get("rowCount", rows)), len(values))
                ncols = max(int(spec.get("columnCount", cols)), width)
                sheet = Sheet(
                    int(spec.get("sheetId", 0 if i == 0 else self._new_sheet_id(book))),
                    spec.get("title") or f"Sheet{i + 1}",
                    i,
                    nrows,
                    ncols,
                )
                if spec.get("hidden"):
                    sheet.props["hidden"] = True
                if spec.get("frozenRowCount"):
                    sheet.props["gridProperties"]["frozenRowCount"] = int(spec["frozenRowCount"])
                book.sheets.append(sheet)
                if values:
                    self._write(book, Grid(sheet, 0, len(values), 0, max(width, 1)), values, value_input)
            if book.total_cells() > MAX_CELLS:
                raise ValueError(f"more than {MAX_CELLS} cells")
            self.spreadsheets[sid] = book
            return sid

    def load(self, data: Mapping[str, Any] | str | os.PathLike) -> list[str]:
        """Load spreadsheets from a dict or JSON file ``{"spreadsheets": [{"id", "title", "locale",
        "timeZone", "sheets": {...} | [...], "allowedCallers"}]}``; returns their ids."""
        doc: Mapping[str, Any]
        if isinstance(data, Mapping):
            doc = data
        else:
            with open(data, encoding="utf-8") as fh:
                doc = json.load(fh)
        ids = []
        for spec in doc.get("spreadsheets", []):
            ids.append(
                self.create_spreadsheet(
                    spec.get("sheets"),
                    spreadsheet_id=spec.get("id"),
                    title=spec.get("title", "Untitled spreadsheet"),
                    locale=spec.get("locale", "en_US"),
                    time_zone=spec.get("timeZone", "Etc/GMT"),
                    value_input=spec.get("valueInputOption", "RAW"),
                    allowed_callers=spec.get("allowedCallers"),
                )
            )
        return ids

    def values(self, spreadsheet_id: str, a1: str, render: str = "UNFORMATTED_VALUE") -> list[list[Any]]:
        """A range's values as values.get returns them (trimmed), for assertions."""
        with self.lock:
            book = self._book(spreadsheet_id)
            return self._read(book, book.grid(a1), render, "SERIAL_NUMBER", "ROWS")[1]

    def cell(self, spreadsheet_id: str, a1: str) -> Cell | None:
        """The stored cell (value, formula, format) at a one-cell A1 reference."""
        with self.lock:
            g = self._book(spreadsheet_id).grid(a1)
            return g.sheet.cell(g.r0, g.c0)

    def metadata(self, spreadsheet_id: str) -> dict:
        with self.lock:
            return self._metadata(self._book(spreadsheet_id), {})

    # ---- faults and hooks
    def fail(
        self,
        status: int = 429,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        kind: str | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        message: str | None = None,
    ) -> None:
        """The next ``times`` API requests matching (method, path regex on the decoded path, kind) fail.

        ``status``: 429 (with ``Retry-After`` when ``retry_after`` is given), 500, 503, any other code;
        or 0 with ``delay``: the request is held ``delay`` seconds and then applied normally — longer
        than the client's timeout it looks like a timeout while the change still lands, as at Google.
        A non-zero ``status`` with ``delay`` waits and then fails without applying anything.
        """
        with self.lock:
            self._faults.append(_Fault(status, times, method, path, kind, retry_after, delay, message))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def after_request(
        self,
        fn: Callable[[Emulator], Any],
        *,
        after: int | None = None,
        path: str | None = None,
        method: str | None = None,
        kind: str | None = None,
    ) -> None:
        """Run ``fn(emulator)`` once, right after the first API request numbered >= ``after`` (1-based,
        counted since the last :meth:`reset_counts`) that matches method/path/kind — before the next
        request is served. Simulates a person editing the sheet between two requests of a run."""
        with self.lock:
            self._hooks.append(_Hook(fn, after, path, method, kind))

    def insert_rows(
        self,
        spreadsheet_id: str,
        sheet: str,
        at: int,
        count: int = 1,
        values: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        """As a person inserting ``count`` rows before 1-based row ``at`` (insertDimension semantics:
        the grid grows, rows below move down), then typing ``values`` into them."""
        with self.lock:
            book = self._book(spreadsheet_id)
            s = self._sheet(book, sheet)
            self._insert_dimension(s, "ROWS", at - 1, at - 1 + count, inherit_before=at > 1)
            if values:
                width = max(len(r) for r in values)
                self._write(book, Grid(s, at - 1, at - 1 + len(values), 0, width), values, "USER_ENTERED")
            book.modified = _dt.datetime.now(_dt.timezone.utc)

    def delete_rows(self, spreadsheet_id: str, sheet: str, at: int, count: int = 1) -> None:
        """As a person deleting ``count`` rows from 1-based row ``at``."""
        with self.lock:
            s = self._sheet(self._book(spreadsheet_id), sheet)
            del s.rows[at - 1 : at - 1 + count]
            s.props["gridProperties"]["rowCount"] -= min(count, max(0, s.row_count - (at - 1)))

    def sort_rows(
        self, spreadsheet_id: str, sheet: str, column: int | str, *, descending: bool = False, header: int = 1
    ) -> None:
        """As a person sorting the sheet's data (below ``header`` rows) by a column (0-based or letters)."""
        with self.lock:
            s = self._sheet(self._book(spreadsheet_id), sheet)
            col = col_index(column) if isinstance(column, str) else column
            self._sort(s, header, s.row_count, 0, s.col_count, [(col, descending)])

    def set_values(self, spreadsheet_id: str, a1: str, values, value_input: str = "USER_ENTERED") -> None:
        """As a person typing ``values`` at ``a1``."""
        with self.lock:
            book = self._book(spreadsheet_id)
            g = book.grid(a1)
            width = max((len(r) for r in values), default=1)
            self._write(
                book, Grid(g.sheet, g.r0, g.r0 + len(values), g.c0, g.c0 + width), values, value_input
            )

    # ---- HTTP entry point
    def handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Serve one HTTP request; returns (status, headers, body bytes)."""
        method = method.upper()
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        if path.startswith("/_emulator"):
            return self._control(method, path, query, body)
        kind, op = self._classify(method, path)
        fault = None
        with self.lock:
            self.requests += 1
            number = self.requests
            self.counts[kind] += 1
            self.by_method[f"{method} {kind}"] += 1
            self.ops[op] += 1
            self.bytes_in += len(body)
            for f in self._faults:
                if f.matches(method, unquote(path), kind):
                    f.times -= 1
                    fault = f
                    break
            self._faults = [f for f in self._faults if f.times > 0]
        extra: dict[str, str] = {}
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        with self.lock:
            if fault is not None and fault.status:
                text = fault.message or _FAULT_MESSAGES.get(fault.status, "Error")
                if fault.status == 429 and kind in ("read", "metadata") and not fault.message:
                    text = text.replace("Write requests", "Read requests")
                details = None
                if fault.status == 429:
                    metric = "read" if kind in ("read", "metadata") else "write"
                    details = [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "RATE_LIMIT_EXCEEDED",
                            "domain": "googleapis.com",
                            "metadata": {
                                "quota_metric": f"sheets.googleapis.com/{metric}_requests",
                                "quota_limit": f"{metric.capitalize()}RequestsPerMinutePerUser",
                                "service": "sheets.googleapis.com",
                            },
                        }
                    ]
                err = ApiError(fault.status, text, details=details)
                status, payload = err.code, err.body()
                if fault.retry_after is not None:
                    extra["Retry-After"] = str(
                        int(fault.retry_after) if float(fault.retry_after).is_integer() else fault.retry_after
                    )
            elif len(body) > self.max_request_bytes:
                err = ApiError(
                    400, f"Request payload size exceeds the limit: {self.max_request_bytes} bytes."
                )
                status, payload = err.code, err.body()
            else:
                try:
                    status, payload = self._dispatch(method, path, query, body, headers)
                except ApiError as e:
                    status, payload = e.code, e.body()
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    status, payload = 400, ApiError(400, f"Invalid request: {e}").body()
                except Exception:  # an emulator bug: answer as Google's 500 does, and say where
                    import traceback

                    traceback.print_exc()
                    status, payload = 500, ApiError(500, _FAULT_MESSAGES[500]).body()
            data = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.bytes_out += len(data)
            self.log.append(
                {
                    "n": number,
                    "method": method,
                    "path": unquote(path),
                    "kind": kind,
                    "op": op,
                    "status": status,
                }
            )
            for hook in self._hooks:
                if hook.due(number, method, unquote(path), kind):
                    hook.done = True
                    hook.fn(self)
            self._hooks = [h for h in self._hooks if not h.done]
        headers_out = {"Content-Type": "application/json; charset=UTF-8", **extra}
        return status, headers_out, data

    @staticmethod
    def _classify(method: str, path: str) -> tuple[str, str]:
        if path.startswith("/drive/"):
            return "drive", f"drive.{method.lower()}"
        if "/values" in path:
            tail = path.rsplit("/", 1)[-1]
            verb = next(
                (
                    v
                    for v in ("clear", "append", "batchGet", "batchUpdate", "batchClear")
                    if tail.endswith(":" + v)
                ),
                "get" if method == "GET" else "update",
            )
            return ("read" if method == "GET" else "write"), f"values.{verb}"
        if path.endswith(":batchUpdate"):
            return "write", "spreadsheets.batchUpdate"
        return "metadata", "spreadsheets.get"

    # ---- routing
    def _dispatch(self, method, path, query, body, headers):
        q = {k: v[-1] for k, v in query.items()}
        payload = json.loads(body.decode("utf-8")) if body else {}
        if path.startswith("/drive/v3/files"):
            return self._drive(method, path, q, payload)
        m = re.match(r"^/v4/spreadsheets/([^/:]+)(.*)$", path)
        if not m:
            raise ApiError(404, f"Method not found: {path}")
        if self.api_disabled:
            raise ApiError(
                403,
                "Google Sheets API has not been used in project 000000000000 before or it is disabled. "
                "Enable it by visiting https://console.developers.google.com/apis/api/sheets.googleapis.com"
                "/overview?project=000000000000 then retry.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "SERVICE_DISABLED",
                        "domain": "googleapis.com",
                    }
                ],
            )
        book = self._book(unquote(m.group(1)))
        caller = headers.get(CALLER_HEADER) or _bearer(headers.get("Authorization", ""))
        if book.allowed_callers is not None and caller not in book.allowed_callers:
            raise ApiError(403, "The caller does not have permission")
        rest = m.group(2)
        if rest == "" and method == "GET":
            return 200, self._get_spreadsheet(book, q, query)
        if rest == ":batchUpdate" and method == "POST":
            return 200, self._batch_update(book, payload)
        if rest == "/values:batchGet" and method == "GET":
            return 200, self._values_batch_get(book, query.get("ranges", []), q)
        if rest == "/values:batchUpdate" and method == "POST":
            return 200, self._values_batch_update(book, payload)
        if rest == "/values:batchClear" and method == "POST":
            return 200, self._values_batch_clear(book, payload.get("ranges", []))
        vm = re.match(r"^/values/([^/]*)$", rest)
        if vm:
            a1, verb = vm.group(1), None
            for known in (":clear", ":append"):
                if a1.endswith(known):
                    a1, verb = a1[: -len(known)], known[1:]
            a1 = unquote(a1)
            if verb is None and method == "GET":
                return 200, self._values_get(book, a1, q)
            if verb is None and method == "PUT":
                return 200, self._values_update(book, a1, q, payload)
            if verb == "clear" and method == "POST":
                return 200, self._values_clear(book, a1)
            if verb == "append" and method == "POST":
                return 200, self._values_append(book, a1, q, payload)
        raise ApiError(404, f"Method not found: {method} {path}")

    def _book(self, spreadsheet_id: str) -> Spreadsheet:
        book = self.spreadsheets.get(spreadsheet_id)
        if book is None:
            raise ApiError(404, "Requested entity was not found.")
        return book

    @staticmethod
    def _sheet(book: Spreadsheet, title: str) -> Sheet:
        s = book.sheet_by_title(title)
        if s is None:
            raise KeyError(f"no sheet {title!r}")
        return s

    @staticmethod
    def _new_sheet_id(book: Spreadsheet) -> int:
        used = {s.sheet_id for s in book.sheets}
        while True:
            n = secrets.randbelow(2_000_000_000) + 1
            if n not in used:
                return n

    # ---- spreadsheets.get
    def _metadata(self, book: Spreadsheet, q) -> dict:
        sheets = []
        for s in book.sheets:
            props = copy.deepcopy(s.props)
            gp = props["gridProperties"]
            for k in ("frozenRowCount", "frozenColumnCount"):
                if not gp.get(k):
                    gp.pop(k, None)
            if not props.get("hidden"):
                props.pop("hidden", None)
            sheets.append({"properties": props})
        return {
            "spreadsheetId": book.id,
            "properties": {
                "title": book.title,
                "locale": book.locale,
                "autoRecalc": "ON_CHANGE",
                "timeZone": book.time_zone,
                "defaultFormat": copy.deepcopy(_DEFAULT_FORMAT),
                "spreadsheetTheme": copy.deepcopy(_THEME),
            },
            "sheets": sheets,
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{book.id}/edit",
        }

    def _get_spreadsheet(self, book, q, query) -> dict:
        meta = self._metadata(book, q)
        if q.get("includeGridData", "false").lower() == "true":
            wanted = [book.grid(r) for r in query.get("ranges", [])]
            for s, entry in zip(book.sheets, meta["sheets"]):
                grids = (
                    [g for g in wanted if g.sheet is s]
                    if wanted
                    else [Grid(s, 0, s.row_count, 0, s.col_count)]
                )
                if wanted and not grids:
                    continue
                formatted = "fields" not in q or "formattedValue" in q["fields"] or "*" in q["fields"]
                entry["data"] = [self._grid_data(book, g.clipped(), formatted) for g in grids]
            if wanted:
                meta["sheets"] = [e for e in meta["sheets"] if "data" in e]
        if "fields" in q:
            meta = _apply_fields(meta, _parse_fields(q["fields"]))
        return meta

    def _grid_data(self, book, g: Grid, formatted: bool = True) -> dict:
        """GridData of ``g``; ``formatted=False`` when the field mask drops formattedValue (the slowest part
        to compute, and big sheets are read with such masks)."""
        rows = []
        for r in range(g.r0, g.r1):
            vals = []
            for c in range(g.c0, g.c1):
                cell = g.sheet.cell(r, c)
                data: dict[str, Any] = {}
                if cell is not None and not cell.is_blank():
                    data["userEnteredValue"] = _typed(cell.value, cell.formula)
                    eff = _effective(cell, g.sheet)
                    data["effectiveValue"] = _typed(eff, None)
                    if formatted:
                        data["formattedValue"] = render(cell, g.sheet, "FORMATTED_VALUE", "", book.locale)
                if cell is not None and cell.fmt:
                    data["userEnteredFormat"] = copy.deepcopy(cell.fmt)
                vals.append(data)
            while vals and not vals[-1]:
                vals.pop()
            rows.append({"values": vals} if vals else {})
        while rows and not rows[-1]:
            rows.pop()
        out: dict[str, Any] = {}
        if g.r0:
            out["startRow"] = g.r0
        if g.c0:
            out["startColumn"] = g.c0
        out["rowData"] = rows
        return out

    # ---- values: reading
    def _read(self, book, g: Grid, value_render: str, date_render: str, major: str):
        # Google refuses reads past the grid too (pygsheets#124/#416: get_all_values on a range computed
        # larger than the sheet); open-ended ranges (A:A, A2:C, 3:3, a sheet name) stop at the grid.
        if not g.within_grid():
            raise _bad(
                f"Range ({g.a1()}) exceeds grid limits. Max rows: {g.sheet.row_count}, "
                f"max columns: {g.sheet.col_count}"
            )
        g = g.clipped()
        s = g.sheet
        stored_rows = min(g.r1, len(s.rows))
        matrix = []
        for r in range(g.r0, stored_rows):
            row = s.rows[r]
            end = min(g.c1, len(row))
            matrix.append(
                [render(row[c], s, value_render, date_render, book.locale) for c in range(g.c0, end)]
            )
        if major == "COLUMNS":
            width = max((len(r) for r in matrix), default=0)
            matrix = [[r[c] if c < len(r) else "" for r in matrix] for c in range(width)]
        return g, trim(matrix)

    @staticmethod
    def _render_options(q) -> tuple[str, str, str]:
        vr = q.get("valueRenderOption", "FORMATTED_VALUE")
        dr = q.get("dateTimeRenderOption", "SERIAL_NUMBER")
        major = q.get("majorDimension", "ROWS")
        if vr not in ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"):
            raise _bad(f"Invalid value at 'value_render_option' ({vr})")
        if dr not in ("SERIAL_NUMBER", "FORMATTED_STRING"):
            raise _bad(f"Invalid value at 'date_time_render_option' ({dr})")
        if major not in ("ROWS", "COLUMNS", "DIMENSION_UNSPECIFIED"):
            raise _bad(f"Invalid value at 'major_dimension' ({major})")
        return vr, dr, "COLUMNS" if major == "COLUMNS" else "ROWS"

    def _value_range(self, book, a1, q) -> dict:
        vr, dr, major = self._render_options(q)
        g, values = self._read(book, book.grid(a1), vr, dr, major)
        out: dict[str, Any] = {"range": g.a1(), "majorDimension": major}
        if values:
            out["values"] = values
        return out

    def _values_get(self, book, a1, q) -> dict:
        return self._value_range(book, a1, q)

    def _values_batch_get(self, book, ranges, q) -> dict:
        out: dict[str, Any] = {"spreadsheetId": book.id}
        if ranges:  # proto3 JSON: empty lists and zero numbers are left out, as Google does
            out["valueRanges"] = [self._value_range(book, a1, q) for a1 in ranges]
        return out

    # ---- values: writing
    def _write(self, book, g: Grid, values, value_input: str, major: str = "ROWS") -> dict:
        """Write ``values`` from the top-left of ``g``; returns the UpdateValuesResponse fields."""
        if value_input not in ("RAW", "USER_ENTERED"):
            raise _bad(f"Invalid valueInputOption: {value_input!r}")
        if not isinstance(values, list) or any(not isinstance(r, list) for r in values):
            raise _bad("Invalid values: expected a list of lists")
        if major == "COLUMNS":
            width = max((len(r) for r in values), default=0)
            values = [[r[c] if c < len(r) else None for r in values] for c in range(width)]
        nrows = len(values)
        ncols = max((len(r) for r in values), default=0)
        s = g.sheet
        if nrows and g.explicit_end_row and nrows > g.r1 - g.r0:
            raise _bad(
                f"Requested writing within range [{g.a1()}], but tried writing to row [{g.r0 + nrows}]"
            )
        if ncols and g.explicit_end_col and ncols > g.c1 - g.c0:
            raise _bad(
                f"Requested writing within range [{g.a1()}], but tried writing to column "
                f"[{col_letters(g.c0 + ncols - 1)}]"
            )
        target = Grid(s, g.r0, g.r0 + max(nrows, 1), g.c0, g.c0 + max(ncols, 1))
        if not target.within_grid() or not g.within_grid():
            shown = target if nrows else g
            raise _bad(
                f"Range ({shown.a1()}) exceeds grid limits. Max rows: {s.row_count}, "
                f"max columns: {s.col_count}"
            )
        rows_touched, cols_touched, cells = set(), set(), 0
        locale, c0 = book.locale, g.c0
        for i, row in enumerate(values):
            r = g.r0 + i
            if not row:
                continue
            while len(s.rows) <= r:
                s.rows.append([])
            stored = s.rows[r]
            if len(stored) < c0 + len(row):
                stored.extend([None] * (c0 + len(row) - len(stored)))
            before = cells
            for j, v in enumerate(row):
                if v is None:
                    continue
                stored[c0 + j] = _new_cell(v, stored[c0 + j], value_input, locale)
                cols_touched.add(c0 + j)
                cells += 1
            if cells > before:
                rows_touched.add(r)
            while stored and stored[-1] is None:
                stored.pop()
        out: dict[str, Any] = {"spreadsheetId": book.id}
        out["updatedRange"] = (target if nrows else g).a1()
        if cells:
            out.update(updatedRows=len(rows_touched), updatedColumns=len(cols_touched), updatedCells=cells)
        out["_touched"] = (s.sheet_id, rows_touched, cols_touched)
        book.modified = _dt.datetime.now(_dt.timezone.utc)
        return out

    def _atomically(self, book: Spreadsheet, fn: Callable[[], Any]) -> Any:
        """Google applies a batch entirely or not at all: snapshot, run, restore on error."""
        snap = [(s, s.snapshot()) for s in book.sheets]
        order = list(book.sheets)
        try:
            return fn()
        except Exception:
            book.sheets = order
            for s, sn in snap:
                s.restore(sn)
            raise

    def _values_update(self, book, a1, q, payload) -> dict:
        def run():
            res = self._write(
                book,
                book.grid(a1),
                payload.get("values") or [],
                q.get("valueInputOption", ""),
                payload.get("majorDimension") or "ROWS",
            )
            res.pop("_touched")
            return res

        if "valueInputOption" not in q:
            raise _bad("'valueInputOption' is required but not specified")
        return self._atomically(book, run)

    def _values_batch_update(self, book, payload) -> dict:
        value_input = payload.get("valueInputOption", "")
        if not value_input:
            raise _bad("'valueInputOption' is required but not specified")

        def run():
            responses, rows, cols, sheets, cells = [], set(), set(), set(), 0
            for vr in payload.get("data", []):
                res = self._write(
                    book,
                    book.grid(vr["range"]),
                    vr.get("values") or [],
                    value_input,
                    vr.get("majorDimension") or "ROWS",
                )
                sheet_id, r_t, c_t = res.pop("_touched")
                rows |= {(sheet_id, r) for r in r_t}
                cols |= {(sheet_id, c) for c in c_t}
                if r_t:
                    sheets.add(sheet_id)
                cells += res.get("updatedCells", 0)
                responses.append(res)
            out: dict[str, Any] = {"spreadsheetId": book.id}
            if cells:
                out.update(
                    totalUpdatedRows=len(rows),
                    totalUpdatedColumns=len(cols),
                    totalUpdatedCells=cells,
                    totalUpdatedSheets=len(sheets),
                )
            if responses:
                out["responses"] = responses
            return out

        return self._atomically(book, run)

    def _clear(self, book, a1) -> str:
        g = book.grid(a1)
        if g.r0 >= g.sheet.row_count or g.c0 >= g.sheet.col_count:
            raise _bad(
                f"Range ({g.a1()}) exceeds grid limits. Max rows: {g.sheet.row_count}, "
                f"max columns: {g.sheet.col_count}"
            )
        g = g.clipped()
        s = g.sheet
        for r in range(g.r0, min(g.r1, len(s.rows))):
            row = s.rows[r]
            for c in range(g.c0, min(g.c1, len(row))):
                fmt = _fmt(row[c])
                row[c] = Cell(None, None, fmt) if fmt else None
        book.modified = _dt.datetime.now(_dt.timezone.utc)
        return g.a1()

    def _values_clear(self, book, a1) -> dict:
        return {
            "spreadsheetId": book.id,
            "clearedRange": self._atomically(book, lambda: self._clear(book, a1)),
        }

    def _values_batch_clear(self, book, ranges) -> dict:
        cleared = self._atomically(book, lambda: [self._clear(book, a1) for a1 in ranges])
        return {"spreadsheetId": book.id, "clearedRanges": cleared} if cleared else {"spreadsheetId": book.id}

    def _values_append(self, book, a1, q, payload) -> dict:
        """values.append with Google's table detection, as observed: the "table" is the run of non-empty
        cells ending at the last non-empty cell of the last non-empty row in the range, extended upwards
        while the rows above have data in those columns; values go to the next row, starting at the table's
        first column (so ``["a", "", "c"]`` appended twice lands the second row under ``c``, as Google
        does). The grid grows as needed; ``insertDataOption`` is ignored (OVERWRITE)."""
        if "valueInputOption" not in q:
            raise _bad("'valueInputOption' is required but not specified")
        g = book.grid(a1).clipped()
        s = g.sheet
        values = payload.get("values") or []

        def filled(r: int, c: int) -> bool:
            cell = s.cell(r, c)
            return cell is not None and not cell.is_blank()

        def run():
            last = -1
            for r in range(g.r0, min(g.r1, len(s.rows))):
                if any(filled(r, c) for c in range(g.c0, g.c1)):
                    last = r
            width = max((len(r) for r in values), default=1)
            out: dict[str, Any] = {"spreadsheetId": book.id}
            if last < 0:
                start, c0 = g.r0, g.c0
            else:
                ce = max(c for c in range(g.c0, g.c1) if filled(last, c)) + 1
                cs = ce - 1
                while cs > g.c0 and filled(last, cs - 1):
                    cs -= 1
                top = last
                while top > g.r0 and any(filled(top - 1, c) for c in range(cs, ce)):
                    top -= 1
                out["tableRange"] = Grid(s, top, last + 1, cs, ce).a1()
                start, c0 = last + 1, cs
            need_rows, need_cols = start + len(values), c0 + width
            gp = s.props["gridProperties"]
            if need_rows > s.row_count or need_cols > s.col_count:
                gp["rowCount"] = max(gp["rowCount"], need_rows)
                gp["columnCount"] = max(gp["columnCount"], need_cols)
                self._check_cells(book, "Invalid append")
            res = self._write(
                book, Grid(s, start, start + len(values), c0, need_cols), values, q["valueInputOption"]
            )
            res.pop("_touched")
            out["updates"] = res
            return out

        return self._atomically(book, run)

    # ---- spreadsheets.batchUpdate
    def _batch_update(self, book: Spreadsheet, payload) -> dict:
        requests = payload.get("requests")
        if not isinstance(requests, list):
            raise _bad("Invalid JSON payload: 'requests' must be a list")
        if not requests:
            raise _bad("Invalid requests: Must specify at least one request.")

        def run():
            replies = []
            for i, req in enumerate(requests):
                if not isinstance(req, dict) or len(req) != 1:
                    raise _bad(f"Invalid requests[{i}]: exactly one request kind per entry")
                ((name, body),) = req.items()
                where = f"Invalid requests[{i}].{name}"
                handler = getattr(self, f"_req_{name}", None)
                if handler is None:
                    raise _bad(f"{where}: request kind not supported by the emulator")
                replies.append(handler(book, body or {}, where) or {})
                self._check_cells(book, where)
            book.modified = _dt.datetime.now(_dt.timezone.utc)
            return {"spreadsheetId": book.id, "replies": replies}

        return self._atomically(book, run)

    @staticmethod
    def _check_cells(book: Spreadsheet, where: str) -> None:
        if book.total_cells() > MAX_CELLS:
            raise _bad(
                f"{where}: This action would increase the number of cells in the workbook above the limit "
                f"of {MAX_CELLS} cells."
            )

    def _req_addSheet(self, book, body, where):
        props = dict(body.get("properties") or {})
        title = props.get("title")
        if title is None:
            n = len(book.sheets) + 1
            while book.sheet_by_title(f"Sheet{n}"):
                n += 1
            title = f"Sheet{n}"
        if book.sheet_by_title(title):
            raise _bad(f'{where}: A sheet with the name "{title}" already exists. Please enter another name.')
        sheet_id = props.get("sheetId")
        if sheet_id is not None and book.sheet_by_id(int(sheet_id)):
            raise _bad(f"{where}: A sheet with the id {sheet_id} already exists.")
        gp = props.get("gridProperties") or {}
        index = int(props.get("index", len(book.sheets)))
        s = Sheet(
            int(sheet_id) if sheet_id is not None else self._new_sheet_id(book),
            title,
            index,
            int(gp.get("rowCount", DEFAULT_ROWS)),
            int(gp.get("columnCount", DEFAULT_COLS)),
        )
        for k in ("frozenRowCount", "frozenColumnCount"):
            if gp.get(k):
                s.props["gridProperties"][k] = int(gp[k])
        if props.get("hidden"):
            s.props["hidden"] = True
        for other in book.sheets:
            if other.props["index"] >= index:
                other.props["index"] += 1
        book.sheets.append(s)
        book.reindex()
        reply = copy.deepcopy(s.props)
        return {"addSheet": {"properties": reply}}

    def _req_deleteSheet(self, book, body, where):
        s = book.sheet_by_id(int(body.get("sheetId", -1)))
        if s is None:
            raise _bad(f"{where}: No grid with id: {body.get('sheetId')}")
        if len(book.sheets) == 1:
            raise _bad(f"{where}: You can't remove all the sheets in a document.")
        book.sheets.remove(s)
        book.reindex()

    def _req_updateSheetProperties(self, book, body, where):
        props = body.get("properties") or {}
        s = book.sheet_by_id(int(props.get("sheetId", 0)))
        if s is None:
            raise _bad(f"{where}: No grid with id: {props.get('sheetId', 0)}")
        fields = body.get("fields")
        if not fields:
            raise _bad(f"{where}: At least one field must be updated, but 'fields' is empty.")
        new_title = props.get("title")
        if new_title is not None and ("title" in fields or fields == "*"):
            other = book.sheet_by_title(new_title)
            if other is not None and other is not s:
                raise _bad(
                    f'{where}: A sheet with the name "{new_title}" already exists. Please enter another name.'
                )
        old_index = s.props["index"]
        _set_by_mask(s.props, props, fields)
        s.props["sheetId"] = s.sheet_id
        gp = s.props.setdefault("gridProperties", {})
        if gp.get("rowCount", 1) < 1 or gp.get("columnCount", 1) < 1:
            raise _bad(f"{where}: The grid must have at least one row and one column.")
        if s.props.get("index") != old_index:
            new = max(0, min(int(s.props["index"]), len(book.sheets) - 1))
            order = [o for o in book.sheets if o is not s]
            order.insert(new, s)
            for i, o in enumerate(order):
                o.props["index"] = i
            book.sheets[:] = order
        s.truncate()

    def _cells_in(self, g: Grid, where: str):
        if not g.within_grid():
            raise _bad(
                f"{where}: Range ({g.a1()}) exceeds grid limits. Max rows: {g.sheet.row_count}, "
                f"max columns: {g.sheet.col_count}"
            )
        for r in range(g.r0, g.r1):
            for c in range(g.c0, g.c1):
                yield r, c

    def _req_repeatCell(self, book, body, where):
        g = book.grid_range(body.get("range") or {}, where)
        fields = body.get("fields")
        if not fields:
            raise _bad(f"{where}: 'fields' is required")
        cell_data = body.get("cell") or {}
        for r, c in self._cells_in(g, where):
            g.sheet.put(r, c, _apply_cell_data(g.sheet.cell(r, c), cell_data, fields, book.locale, where))

    def _req_updateCells(self, book, body, where):
        fields = body.get("fields")
        if not fields:
            raise _bad(f"{where}: 'fields' is required")
        rows = body.get("rows") or []
        if "start" in body:
            st = body["start"]
            s = book.sheet_by_id(int(st.get("sheetId", 0)))
            if s is None:
                raise _bad(f"{where}: No grid with id: {st.get('sheetId', 0)}")
            r0, c0 = int(st.get("rowIndex", 0)), int(st.get("columnIndex", 0))
            width = max((len(r.get("values") or []) for r in rows), default=0)
            g = Grid(s, r0, r0 + len(rows), c0, c0 + max(width, 1))
        else:
            g = book.grid_range(body.get("range") or {}, where)
        if not g.within_grid():
            raise _bad(
                f"{where}: Range ({g.a1()}) exceeds grid limits. Max rows: {g.sheet.row_count}, "
                f"max columns: {g.sheet.col_count}"
            )
        covered = set()
        for i, row in enumerate(rows):
            for j, data in enumerate(row.get("values") or []):
                r, c = g.r0 + i, g.c0 + j
                if r >= g.r1 or c >= g.c1:
                    raise _bad(f"{where}: Attempting to write row: {r}, column: {c}, outside the range")
                covered.add((r, c))
                g.sheet.put(
                    r, c, _apply_cell_data(g.sheet.cell(r, c), data or {}, fields, book.locale, where)
                )
        if "start" not in body:
            # Google: "If the data in rows does not cover the entire requested range, the fields matching
            # those set in fields will be cleared" (UpdateCellsRequest, Sheets API v4 reference)
            g = g.clipped()
            for r in range(g.r0, min(g.r1, len(g.sheet.rows))):
                for c in range(g.c0, min(g.c1, len(g.sheet.rows[r]))):
                    if (r, c) not in covered and g.sheet.rows[r][c] is not None:
                        g.sheet.put(
                            r, c, _apply_cell_data(g.sheet.cell(r, c), {}, fields, book.locale, where)
                        )

    def _req_updateDimensionProperties(self, book, body, where):
        """Column widths / row heights: checked and kept in ``Sheet.sizes`` (not returned as metadata)."""
        s, dim, start, end = self._dimension_args(book, body, where)
        if not body.get("fields"):
            raise _bad(f"{where}: 'fields' is required")
        size = (body.get("properties") or {}).get("pixelSize")
        sizes = s.__dict__.setdefault("sizes", {})
        for i in range(start, end):
            sizes[(dim, i)] = size

    def _req_setDataValidation(self, book, body, where):
        """A dropdown: checked (range inside the grid, a known condition type) and kept in
        ``Sheet.validations`` as (range A1, rule); not enforced on writes (the API does not enforce it either)."""
        g = book.grid_range(body.get("range") or {}, where)
        if not g.within_grid():
            raise _bad(f"{where}: Range ({g.a1()}) exceeds grid limits.")
        rule = body.get("rule")
        kinds = (
            "ONE_OF_LIST",
            "ONE_OF_RANGE",
            "BOOLEAN",
            "NUMBER_BETWEEN",
            "TEXT_CONTAINS",
            "CUSTOM_FORMULA",
        )
        if rule is not None and (rule.get("condition") or {}).get("type") not in kinds:
            raise _bad(f"{where}: Invalid ConditionType")
        g.sheet.__dict__.setdefault("validations", []).append((g.a1(), rule))

    def _dimension_args(self, book, body, where):
        rng = body.get("range") or {}
        s = book.sheet_by_id(int(rng.get("sheetId", 0)))
        if s is None:
            raise _bad(f"{where}: No grid with id: {rng.get('sheetId', 0)}")
        dim = rng.get("dimension")
        if dim not in ("ROWS", "COLUMNS"):
            raise _bad(f"{where}: dimension must be ROWS or COLUMNS")
        start, end = int(rng.get("startIndex", 0)), int(rng.get("endIndex", 0))
        if end <= start:
            raise _bad(f"{where}: Invalid dimension range: startIndex must be less than endIndex")
        return s, dim, start, end

    def _req_insertDimension(self, book, body, where):
        s, dim, start, end = self._dimension_args(book, body, where)
        limit = s.row_count if dim == "ROWS" else s.col_count
        if start > limit:
            raise _bad(f"{where}: Cannot insert beyond the end of the grid ({limit}).")
        if start == 0 and body.get("inheritFromBefore"):
            raise _bad(f"{where}: Cannot inherit from before when inserting at the start.")
        self._insert_dimension(s, dim, start, end, bool(body.get("inheritFromBefore")))

    @staticmethod
    def _insert_dimension(s: Sheet, dim: str, start: int, end: int, inherit_before: bool) -> None:
        n = end - start
        gp = s.props["gridProperties"]
        if dim == "ROWS":
            gp["rowCount"] += n
            if start < len(s.rows):
                src = s.rows[start - 1] if inherit_before and start > 0 else s.rows[start]
                s.rows[start:start] = [_formats_only(src) for _ in range(n)]
        else:
            gp["columnCount"] += n
            for row in s.rows:
                if start < len(row):
                    near = row[start - 1] if inherit_before and start > 0 else row[start]
                    fmt_cell = Cell(None, None, _fmt(near)) if _fmt(near) else None
                    row[start:start] = [fmt_cell] * n

    def _req_deleteDimension(self, book, body, where):
        s, dim, start, end = self._dimension_args(book, body, where)
        gp = s.props["gridProperties"]
        if dim == "ROWS":
            if end > s.row_count:
                raise _bad(f"{where}: Range exceeds grid limits ({s.row_count} rows).")
            if end - start >= s.row_count:
                raise _bad(f"{where}: You can't delete all the rows on the sheet.")
            del s.rows[start:end]
            gp["rowCount"] -= end - start
        else:
            if end > s.col_count:
                raise _bad(f"{where}: Range exceeds grid limits ({s.col_count} columns).")
            if end - start >= s.col_count:
                raise _bad(f"{where}: You can't delete all the columns on the sheet.")
            for row in s.rows:
                del row[start:end]
            gp["columnCount"] -= end - start

    def _req_appendDimension(self, book, body, where):
        s = book.sheet_by_id(int(body.get("sheetId", 0)))
        if s is None:
            raise _bad(f"{where}: No grid with id: {body.get('sheetId', 0)}")
        dim, length = body.get("dimension"), int(body.get("length", 0))
        if dim not in ("ROWS", "COLUMNS") or length < 1:
            raise _bad(f"{where}: dimension must be ROWS or COLUMNS and length at least 1")
        key = "rowCount" if dim == "ROWS" else "columnCount"
        s.props["gridProperties"][key] += length

    def _req_sortRange(self, book, body, where):
        g = book.grid_range(body.get("range") or {}, where)
        specs = [
            (int(sp.get("dimensionIndex", 0)), sp.get("sortOrder") == "DESCENDING")
            for sp in body.get("sortSpecs") or []
        ]
        self._sort(g.sheet, g.r0, g.r1, g.c0, g.c1, specs)

    @staticmethod
    def _sort(s: Sheet, r0, r1, c0, c1, specs) -> None:
        r1 = min(r1, len(s.rows))
        if r1 - r0 < 2:
            return
        block = [s.rows[r][:] for r in range(r0, r1)]
        for row in block:
            row.extend([None] * (c1 - len(row)))

        def blank(row, col):
            return row[col] is None or _effective(row[col], s) in (None, "")

        def key_for(col):
            def key(row):
                v = _effective(row[col], s)
                if isinstance(v, bool):
                    return (2, int(v))
                if isinstance(v, (int, float)):
                    return (0, v)
                return (1, str(v).lower())

            return key

        for col, desc in reversed(specs):  # stable sorts, last key first; blanks always last
            filled = sorted((r for r in block if not blank(r, col)), key=key_for(col), reverse=desc)
            block = filled + [r for r in block if blank(r, col)]
        for i, row in enumerate(block):
            cur = s.rows[r0 + i]
            cur[c0:c1] = row[c0:c1]
            while cur and cur[-1] is None:
                cur.pop()

    # ---- drive (what gspread's create/open/del_spreadsheet use)
    def _drive(self, method, path, q, payload):
        m = re.match(r"^/drive/v3/files(?:/([^/]+))?$", path)
        if not m:
            raise ApiError(404, "Not Found")
        fid = unquote(m.group(1)) if m.group(1) else None
        if fid is None and method == "POST":
            sid = self.create_spreadsheet(title=payload.get("name", "Untitled spreadsheet"))
            return 200, {
                "kind": "drive#file",
                "id": sid,
                "name": self.spreadsheets[sid].title,
                "mimeType": "application/vnd.google-apps.spreadsheet",
            }
        if fid is None and method == "GET":
            files = list(self.spreadsheets.values())
            nm = re.search(r"name\s*=\s*[\"'](.*?)[\"']", q.get("q", ""))
            if nm:
                files = [b for b in files if b.title == nm.group(1)]
            return 200, {
                "kind": "drive#fileList",
                "incompleteSearch": False,
                "files": [_drive_file(b) for b in files],
            }
        book = self._book(fid or "")
        if method == "GET":
            return 200, _drive_file(book)
        if method == "DELETE":
            del self.spreadsheets[book.id]
            return 204, None
        raise ApiError(404, "Not Found")

    # ---- control endpoint (/_emulator/...) for tests outside this process
    def _control(self, method, path, query, body):
        try:
            payload = json.loads(body.decode("utf-8")) if body else {}
            parts = [unquote(p) for p in path.split("/")[2:] if p]
            result: Any
            if parts == ["stats"] and method == "GET":
                result = self.stats()
            elif parts == ["stats"] and method == "DELETE":
                self.reset_counts()
                result = {}
            elif parts == ["spreadsheets"] and method == "POST":
                result = {
                    "id": self.create_spreadsheet(
                        payload.get("sheets"),
                        spreadsheet_id=payload.get("id"),
                        title=payload.get("title", "Untitled spreadsheet"),
                        locale=payload.get("locale", "en_US"),
                        time_zone=payload.get("timeZone", "Etc/GMT"),
                        value_input=payload.get("valueInputOption", "RAW"),
                        allowed_callers=payload.get("allowedCallers"),
                    )
                }
            elif len(parts) == 4 and parts[0] == "spreadsheets" and parts[2] == "values" and method == "GET":
                render_opt = query.get("valueRenderOption", ["UNFORMATTED_VALUE"])[-1]
                result = {"values": self.values(parts[1], parts[3], render_opt)}
            elif parts == ["faults"] and method == "POST":
                self.fail(
                    int(payload.get("status", 429)),
                    times=int(payload.get("times", 1)),
                    method=payload.get("method"),
                    path=payload.get("path"),
                    kind=payload.get("kind"),
                    retry_after=payload.get("retryAfter"),
                    delay=float(payload.get("delay", 0)),
                    message=payload.get("message"),
                )
                result = {}
            elif parts == ["faults"] and method == "DELETE":
                self.clear_faults()
                result = {}
            elif parts == ["hooks"] and method == "POST":
                action = payload.get("action")
                sid, sheet = payload["spreadsheetId"], payload["sheet"]
                if action == "insertRows":

                    def fn(emu, a=payload):
                        emu.insert_rows(sid, sheet, int(a["at"]), int(a.get("count", 1)), a.get("values"))
                elif action == "deleteRows":

                    def fn(emu, a=payload):
                        emu.delete_rows(sid, sheet, int(a["at"]), int(a.get("count", 1)))
                elif action == "sortRows":

                    def fn(emu, a=payload):
                        emu.sort_rows(
                            sid,
                            sheet,
                            a["column"],
                            descending=bool(a.get("descending")),
                            header=int(a.get("header", 1)),
                        )
                else:
                    raise ValueError(f"unknown hook action {action!r}")
                self.after_request(
                    fn,
                    after=payload.get("after"),
                    path=payload.get("path"),
                    method=payload.get("method"),
                    kind=payload.get("kind"),
                )
                result = {}
            elif parts == ["reset"] and method == "POST":
                with self.lock:
                    self.spreadsheets.clear()
                    self._faults.clear()
                    self._hooks.clear()
                    self.reset_counts()
                result = {}
            else:
                return 404, {"Content-Type": "application/json"}, b'{"error": "unknown control endpoint"}'
            return 200, {"Content-Type": "application/json"}, json.dumps(result).encode("utf-8")
        except (ValueError, KeyError, TypeError) as e:
            return 400, {"Content-Type": "application/json"}, json.dumps({"error": str(e)}).encode("utf-8")


def _bearer(auth: str) -> str | None:
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _drive_file(book: Spreadsheet) -> dict:
    def stamp(t):
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    return {
        "id": book.id,
        "name": book.title,
        "createdTime": stamp(book.created),
        "modifiedTime": stamp(book.modified),
    }


def _typed(value, formula) -> dict:
    """ExtendedValue JSON of a stored value."""
    if formula is not None:
        return {"formulaValue": formula}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, (int, float)):
        return {"numberValue": value}
    if isinstance(value, str) and value.startswith("#") and value.endswith(("!", "?", "A")):
        return {"errorValue": {"type": "ERROR", "message": value}}
    return {"stringValue": "" if value is None else value}


def _formats_only(row: list[Cell | None]) -> list[Cell | None]:
    out = [Cell(None, None, _fmt(c)) if _fmt(c) else None for c in row]
    while out and out[-1] is None:
        out.pop()
    return out


def _fmt(stored: Any) -> dict | None:
    return stored.fmt if type(stored) is Cell else None


def _stored(value: Any, formula: str | None, fmt: dict | None) -> Any:
    """What a row keeps: None (empty), the plain value (no formula, no format), or a :class:`Cell`."""
    if formula is None and not fmt:
        return value
    return Cell(value, formula, fmt or None)


def _new_cell(v: Any, old: Any, value_input: str, locale: str) -> Any:
    fmt = _fmt(old)
    if type(v) is str and len(v) > MAX_CELL_CHARS:
        raise _bad(
            f"Your input contains more than the maximum of {MAX_CELL_CHARS} characters in a single cell."
        )
    if value_input == "RAW" and fmt is None and type(v) is str and v:  # the common case, kept fast
        return v
    if isinstance(v, str):
        if v == "":
            return _stored(None, None, fmt)
        if value_input == "RAW" or ((fmt or {}).get("numberFormat") or {}).get("type") == "TEXT":
            return _stored(v, None, fmt)
        value, formula, nf = parse_user_entered(v, locale)
        if nf and not (fmt or {}).get("numberFormat"):
            fmt = {**(fmt or {}), "numberFormat": nf}
        return _stored(value, formula, fmt)
    if isinstance(v, bool):
        return _stored(v, None, fmt)
    if isinstance(v, (int, float)):
        return _stored(_num(v), None, fmt)
    raise _bad(f"Invalid values: {json.dumps(v)[:80]} is not a string, number or boolean")


def _apply_cell_data(
    old: Cell | None, data: Mapping[str, Any], fields: str, locale: str, where: str
) -> Cell | None:
    """CellData (userEnteredValue/userEnteredFormat) applied through a ``fields`` mask."""
    value, formula = (old.value, old.formula) if old is not None else (None, None)
    fmt = copy.deepcopy(old.fmt) if old is not None and old.fmt else {}
    masks = [f.strip() for f in fields.split(",") if f.strip()]
    for mask in masks:
        head = re.split(r"[./]", mask, maxsplit=1)
        if mask == "*" or head[0] == "userEnteredValue":
            uev = data.get("userEnteredValue")
            if uev is None:
                value, formula = None, None
            elif "formulaValue" in uev:
                value, formula = None, uev["formulaValue"]
            elif "stringValue" in uev:
                value, formula = uev["stringValue"], None
            elif "numberValue" in uev:
                value, formula = _num(uev["numberValue"]), None
            elif "boolValue" in uev:
                value, formula = bool(uev["boolValue"]), None
            else:
                raise _bad(f"{where}: unsupported userEnteredValue {uev}")
        if mask == "*" or head[0] == "userEnteredFormat":
            src = {"userEnteredFormat": data.get("userEnteredFormat") or {}}
            holder = {"userEnteredFormat": fmt}
            _set_by_mask(holder, src, "userEnteredFormat" if mask == "*" else mask)
            fmt = holder.get("userEnteredFormat") or {}
        elif head[0] not in ("userEnteredValue", "note", "dataValidation", "textFormatRuns"):
            raise _bad(f"{where}: unsupported field {mask!r}")
    return _stored(value, formula, fmt)


_DEFAULT_FORMAT = {
    "backgroundColor": {"red": 1, "green": 1, "blue": 1},
    "padding": {"top": 2, "right": 3, "bottom": 2, "left": 3},
    "verticalAlignment": "BOTTOM",
    "wrapStrategy": "OVERFLOW_CELL",
    "textFormat": {
        "foregroundColor": {},
        "fontFamily": "arial,sans,sans-serif",
        "fontSize": 10,
        "bold": False,
        "italic": False,
        "strikethrough": False,
        "underline": False,
        "foregroundColorStyle": {"rgbColor": {}},
    },
    "backgroundColorStyle": {"rgbColor": {"red": 1, "green": 1, "blue": 1}},
}
_THEME = {
    "primaryFontFamily": "Arial",
    "themeColors": [
        {"colorType": "TEXT", "color": {"rgbColor": {}}},
        {"colorType": "BACKGROUND", "color": {"rgbColor": {"red": 1, "green": 1, "blue": 1}}},
    ],
}


# ------------------------------------------------------------------------------------------ HTTP server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' sessions use it
    # One write per response and no Nagle: otherwise headers and body go out in two segments and every
    # keep-alive request waits ~40 ms for a delayed ACK.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server_version = "ESF"
    emulator: Emulator

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, data = self.server.emulator.handle(self.command, self.path, self.headers, body)  # type: ignore[attr-defined]
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and went away
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet: tests read counters, not logs
        pass


class EmulatorServer:
    """The emulator served over HTTP on 127.0.0.1 in a background thread (context manager).

    ``base_url`` (e.g. ``http://127.0.0.1:53117``) is what ``SHEETFLOW_GSHEETS_ENDPOINT`` should hold.
    Attribute access falls through to the :class:`Emulator` (``server.create_spreadsheet(...)``).
    """

    def __init__(self, emulator: Emulator | None = None, port: int = 0):
        self.emulator = emulator or Emulator()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.emulator = self.emulator  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="sheets-emulator", daemon=True
            )
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.emulator, name)


def start(emulator: Emulator | None = None, port: int = 0) -> EmulatorServer:
    """Start an emulator server in a background thread; ``.base_url`` and ``.stop()`` on the result."""
    server = EmulatorServer(emulator, port)
    server.start()
    return server


# ------------------------------------------------------------------------------------- the gspread side

_GOOGLE_PREFIXES = ("https://sheets.googleapis.com", "https://www.googleapis.com")


def emulator_session(base_url: str | None = None, *, caller: str | None = None):
    """A ``requests.Session`` whose Google API URLs go to the emulator (default ``$SHEETFLOW_GSHEETS_ENDPOINT``).

    gspread builds every URL from the constants in ``gspread.urls`` (``https://sheets.googleapis.com/v4/
    spreadsheets/...``, ``https://www.googleapis.com/drive/v3/files``) and sends them through the session it
    is given (gspread 6.x ``Client(auth, session=...)`` -> ``HTTPClient``), so rewriting those two prefixes
    in the session is enough; nothing in gspread is patched. ``caller`` sets the identity the emulator
    checks against a spreadsheet's ``allowed_callers``. Raises ValueError when no address is known.
    """
    import requests

    base = (base_url or os.environ.get(ENDPOINT_ENV) or "").rstrip("/")
    if not base:
        raise ValueError(f"no emulator address: pass base_url or set {ENDPOINT_ENV}=http://127.0.0.1:PORT")

    class _RewritingSession(requests.Session):
        def request(self, method, url, *args, **kwargs):  # type: ignore[override]
            for prefix in _GOOGLE_PREFIXES:
                if isinstance(url, str) and url.startswith(prefix):
                    url = base + url[len(prefix) :]
                    break
            return super().request(method, url, *args, **kwargs)

    session = _RewritingSession()
    if caller:
        session.headers[CALLER_HEADER] = caller
    return session


def emulator_client(base_url: str | None = None, *, caller: str | None = None, timeout: float | None = 10.0):
    """A real ``gspread.Client`` talking to the emulator (see :func:`emulator_session`), no Google account.

    Credentials are google-auth's ``AnonymousCredentials`` (no token). The plain ``HTTPClient`` is used,
    never ``BackOffHTTPClient`` (it retries forever); ``timeout`` seconds per request.
    """
    import gspread
    from google.auth.credentials import AnonymousCredentials

    client = gspread.Client(auth=None, session=emulator_session(base_url, caller=caller))  # type: ignore[arg-type]
    client.http_client.auth = AnonymousCredentials()
    client.set_timeout(timeout)
    return client


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sheetflow.testing.sheets_emulator",
        description="Local Google Sheets API v4 emulator (127.0.0.1 only), for tests and demos.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--data", help='JSON file of spreadsheets to load: {"spreadsheets": [...]}')
    args = parser.parse_args(argv)
    server = EmulatorServer(port=args.port)
    if args.data:
        for sid in server.emulator.load(args.data):
            print(f"spreadsheet {sid}", flush=True)
    server.start()
    print(f"{ENDPOINT_ENV}={server.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

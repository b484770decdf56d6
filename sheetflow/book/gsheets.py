"""A Google spreadsheet as a :class:`~sheetflow.book.base.Book` (address ``gsheets:ID`` or the sheet's URL).

Built on gspread's authenticated HTTP client (service account or OAuth desktop flow, :func:`client_for`) with
sheetflow's own requests, because the request economy is the point (Google allows 60 reads and 60 writes per
minute per user, developers.google.com/sheets/api/limits):

- **read** = one ``spreadsheets.get`` with grid data and a field mask: metadata (sheet names, states, grid
  sizes, ``timeZone``, ``locale``) and every cell's effective value, formula and number-format type in one
  request. The effective value is what ``values.batchGet`` gives with ``UNFORMATTED_VALUE`` +
  ``SERIAL_NUMBER`` (numbers unformatted, dates as serial days from 1899-12-30 in the spreadsheet's time
  zone); the number-format type is what tells a date from a number, and the formula is what the Book
  contract lists in ``RawSheet.formulas`` — two more batchGets otherwise. Google trims trailing empty rows and
  cells; the grid is rebuilt from the used range.
- **write** = one ``values.batchGet`` of the target sheets' key columns (rows that moved under us, below;
  skipped when the read was less than ``fresh`` seconds ago, as for the e-mail write-back),
  at most one ``spreadsheets.batchUpdate`` (new sheets, their layout, date formats, grid growth with
  ``appendDimension``, rows deleted from logs, replaced sheets cleared) and one ``values.batchUpdate`` with
  ``RAW`` input and explicit ranges (``RAW`` keeps ``=1+1`` text; never ``values.append``, whose retries
  duplicate rows, never ``update_cell``, which forces ``USER_ENTERED``). Payloads over ~2 MB are split.
- **rows that move under us**: people edit a shared spreadsheet while a run works, so a change is not a
  refusal here (unlike a file). Each patched row carries the record's key (:attr:`SheetPatch.keys`); before
  writing, the key column is read again and every value goes to the row that holds that key now; a record
  whose key vanished is not written (a warning in :attr:`GSheetsBook.problems` names it); appended rows move
  down by as many rows as the sheet grew.
- **faults**: a bounded retry of our own (:func:`_call`): 429, 5xx and timeouts, exponential backoff with
  full jitter, ``Retry-After`` honoured, :data:`MAX_TRIES` tries of :data:`TIMEOUT` seconds each, then
  :class:`GoogleUnavailable`. gspread's ``BackOffHTTPClient`` retries forever without a timeout: never used.
- **lease**: a hidden ``_sheetflow`` sheet holds the holder and the expiry; taken by write + read-back,
  renewed by a background thread, cleared at the end; a second runner waits a bounded time, then
  :class:`~sheetflow.problems.WorkbookBusy` (exit 3).

``SHEETFLOW_GSHEETS_ENDPOINT=http://127.0.0.1:PORT`` sends every request to the local emulator
(:mod:`sheetflow.testing.sheets_emulator`) without Google credentials.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sheetflow import contract
from sheetflow.book.base import LOGS
from sheetflow.book.memory import ErrorValue, _grid, _header_only, _Sheet
from sheetflow.book.memory import _checked as _checked_like_the_writer
from sheetflow.book.patch import SheetPatch
from sheetflow.book.raw import RawSheet
from sheetflow.problems import Problem, SheetflowError, UsageError, WorkbookBusy, warning

__all__ = [
    "ENDPOINT_ENV",
    "GSheetsBook",
    "GoogleAccessError",
    "GoogleSheetsError",
    "GoogleUnavailable",
    "ReadResult",
    "client_for",
    "spreadsheet_id",
]

log = logging.getLogger("sheetflow.gsheets")

ENDPOINT_ENV = "SHEETFLOW_GSHEETS_ENDPOINT"
SHEETS_API = "https://sheets.googleapis.com/v4/spreadsheets"
DRIVE_API = "https://www.googleapis.com/drive/v3/files"
SCOPES = (
    "https://www.googleapis.com/auth/spreadsheets",
    "https://www.googleapis.com/auth/drive.metadata.readonly",
)
LEASE_SHEET = "_sheetflow"
LEASE_TTL = 120.0  # seconds a lease lives without renewal: a crashed runner blocks others this long at most
MAX_TRIES = 5  # per request; with backoff 1, 2, 4, 8 s (+ jitter) a request gives up after ~15-30 s
TIMEOUT = 60.0  # seconds per request; Google's own deadline for a Sheets call is 180 s
MAX_PAYLOAD = (
    2_000_000  # bytes per request body: Google recommends ≤ 2 MB (developers.google.com/sheets/api/limits)
)
EPOCH = dt.datetime(1899, 12, 30)  # day 0 of Google's (and Excel's) serial numbers
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
KEY_COLUMNS = ("id", "key", "run_id")  # the column that names a row's record, per sheet kind (see apply)

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{20,}$")
_URL_RE = re.compile(r"docs\.google\.com/spreadsheets/(?:u/\d+/)?d/([A-Za-z0-9_-]+)")

_READ_FIELDS = (
    "properties(title,locale,timeZone),"
    "sheets(properties(sheetId,title,index,hidden,gridProperties(rowCount,columnCount)),"
    "data(startRow,startColumn,rowData(values(effectiveValue,userEnteredValue/formulaValue,"
    "userEnteredFormat/numberFormat/type,effectiveFormat/numberFormat/type))))"
)
_DATE_FORMAT = {"type": "DATE", "pattern": "yyyy-mm-dd"}
_DATETIME_FORMAT = {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"}


class GoogleSheetsError(SheetflowError):
    """Google answered with an error sheetflow cannot work around (the message says what to do)."""


class GoogleAccessError(GoogleSheetsError):
    """No access: no credentials, the spreadsheet not shared with them, the API not enabled, a wrong id."""


class GoogleUnavailable(GoogleSheetsError):
    """Google kept failing (quota, server errors, timeouts) after :data:`MAX_TRIES` tries."""


class ReadResult(dict):
    """What :meth:`GSheetsBook.read` returns: sheets by name, plus ``defaults`` — Settings the spreadsheet
    itself answers when the Settings sheet does not (``timezone``, ``locale`` from its metadata)."""

    defaults: dict[str, str]


# ------------------------------------------------------------------------------------------- addresses


def spreadsheet_id(address: str) -> str | None:
    """The spreadsheet id of ``gsheets:ID``, ``gsheets:URL`` or a ``docs.google.com/spreadsheets/d/ID`` URL;
    None when the text is not a Google address. UsageError for a ``gsheets:`` address without an id."""
    text = address.strip()
    m = _URL_RE.search(text)
    if m:
        return m.group(1)
    if not text.startswith("gsheets:"):
        return None
    sid = text[len("gsheets:") :].strip().strip("/")
    if not _ID_RE.match(sid):
        raise UsageError(
            f'"{address}" names no Google spreadsheet: write gsheets:ID, where ID is the long part of the '
            "sheet's URL between /d/ and /edit (or give the whole URL)"
        )
    return sid


# ------------------------------------------------------------------------------------------- credentials


def _toml(folder: Path) -> dict:
    path = folder / "sheetflow.toml"
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh).get("google", {}) or {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{path}: cannot be read ({e})") from None


def client_for(folder: Path | None = None):
    """A gspread Client: ``$SHEETFLOW_GSHEETS_ENDPOINT`` (the emulator, no credentials), else a service account
    key from ``$GOOGLE_APPLICATION_CREDENTIALS``, ``[google] credentials`` in ``sheetflow.toml`` (in
    ``folder``, default the current folder) or gspread's default ``~/.config/gspread/service_account.json``;
    ``[google] oauth = true`` uses the OAuth desktop flow instead (``oauth_client``: the client secrets file,
    default gspread's ``credentials.json``; the token is kept in gspread's ``authorized_user.json``).
    Raises GoogleAccessError when there are no credentials."""
    import gspread

    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if endpoint:
        return endpoint_client(endpoint, timeout=TIMEOUT)
    conf = _toml(folder or Path.cwd())
    if conf.get("oauth"):
        secrets = Path(conf.get("oauth_client") or gspread.auth.DEFAULT_CREDENTIALS_FILENAME).expanduser()
        if not secrets.is_file():
            raise GoogleAccessError(
                f"OAuth is on in sheetflow.toml but there is no client secrets file at {secrets}: create an "
                "OAuth client (Desktop app) in Google Cloud Console, download its JSON there"
            )
        try:
            return gspread.oauth(scopes=list(SCOPES), credentials_filename=secrets)
        except Exception as e:  # the flow's own errors (browser, refused consent) are many types
            raise GoogleAccessError(f"Google sign-in did not complete: {e}") from None
    candidates = [
        ("GOOGLE_APPLICATION_CREDENTIALS", os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")),
        ("[google] credentials in sheetflow.toml", str(conf.get("credentials") or "")),
    ]
    for source, value in candidates:
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise GoogleAccessError(f"{source} names {path}, which is not a file")
            return _service_account(path)
    default = Path(gspread.auth.DEFAULT_SERVICE_ACCOUNT_FILENAME)
    if default.is_file():
        return _service_account(default)
    raise GoogleAccessError(
        "no Google credentials: create a service account key (README, 'Google Sheets'), then set "
        'GOOGLE_APPLICATION_CREDENTIALS=/path/key.json or put credentials = "/path/key.json" under [google] '
        f"in sheetflow.toml, or copy the key to {default}"
    )


def endpoint_client(base_url: str, *, timeout: float | None = TIMEOUT):
    """A gspread Client whose Google API URLs go to ``base_url`` (a local emulator), with no credentials:
    gspread builds every URL from ``https://sheets.googleapis.com`` / ``https://www.googleapis.com``, so a
    session that rewrites those prefixes is enough (the same as the emulator's ``emulator_client``)."""
    import gspread
    import requests
    from google.auth.credentials import AnonymousCredentials

    base = base_url.rstrip("/")
    prefixes = ("https://sheets.googleapis.com", "https://www.googleapis.com")

    class _Rewriting(requests.Session):
        def request(self, method, url, *args, **kwargs):  # type: ignore[override]
            for prefix in prefixes:
                if isinstance(url, str) and url.startswith(prefix):
                    url = base + url[len(prefix) :]
                    break
            return super().request(method, url, *args, **kwargs)

    client = gspread.Client(auth=None, session=_Rewriting())  # type: ignore[arg-type]
    client.http_client.auth = AnonymousCredentials()
    client.set_timeout(timeout)
    return client


def _service_account(path: Path):
    import gspread

    try:
        client = gspread.service_account(filename=path, scopes=list(SCOPES))
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise GoogleAccessError(f"{path} is not a service account key file ({e})") from None
    client.set_timeout(TIMEOUT)
    return client


def _account(client) -> str:
    """The address to share a spreadsheet with (a service account's email), or a description."""
    creds = getattr(getattr(client, "http_client", None), "auth", None)
    return getattr(creds, "service_account_email", None) or "the Google account sheetflow signs in with"


# ------------------------------------------------------------------------------------------- requests


class _Api:
    """Our requests through gspread's HTTP client, each bounded: :data:`MAX_TRIES` tries, backoff with full
    jitter (AWS architecture blog, "Exponential Backoff And Jitter"), ``Retry-After`` honoured."""

    def __init__(
        self, client, sid: str, *, sleep: Callable[[float], None] = time.sleep, base_delay: float = 1.0
    ):
        self.client = client
        self.sid = sid
        self.sleep = sleep
        self.base_delay = base_delay
        self.requests = 0

    def call(
        self, method: str, url: str, *, params=None, body=None, what: str = "", retry_ok=None, none_on=None
    ) -> dict | None:
        """One request, retried; its JSON answer. ``retry_ok(e)``: an error on a retry that means the first
        try landed (e.g. "already exists" after a timed-out addSheet); ``none_on(e)``: an error that means
        "not there" (None is returned)."""
        import requests
        from gspread.exceptions import APIError

        last = ""
        for attempt in range(1, MAX_TRIES + 1):
            self.requests += 1
            wait = None
            try:
                response = self.client.http_client.request(method, url, params=params, json=body)
                return response.json() if response.content else {}
            except APIError as e:
                status = e.response.status_code
                if status not in RETRY_STATUS:
                    if none_on is not None and none_on(e):
                        return None
                    if attempt > 1 and retry_ok is not None and retry_ok(e):
                        return {}
                    raise self._error(e, what) from None
                last = f"{status} {_message(e)}"
                after = e.response.headers.get("Retry-After")
                if after:
                    try:
                        wait = min(float(after), 120.0)
                    except ValueError:
                        wait = None
            except (requests.Timeout, requests.ConnectionError) as e:
                last = f"no answer ({type(e).__name__})"
            if attempt == MAX_TRIES:
                break
            if wait is None:
                wait = random.uniform(0, self.base_delay * 2 ** (attempt - 1))
            log.info("Google Sheets %s: %s; try %d of %d in %.1f s", what, last, attempt + 1, MAX_TRIES, wait)
            self.sleep(wait)
        raise GoogleUnavailable(
            f"Google Sheets did not complete {what or 'a request'} after {MAX_TRIES} tries (last: {last}); "
            "nothing more was written — run again in a few minutes"
        )

    def _error(self, e, what: str) -> SheetflowError:
        status = e.response.status_code
        text = _message(e)
        body = text.lower()
        if status == 404:
            return GoogleAccessError(
                f"there is no Google spreadsheet with id {self.sid} (or it was deleted): check the id — the long "
                "part of the sheet's URL between /d/ and /edit"
            )
        if status == 403 and ("has not been used" in body or "disabled" in body or "not enabled" in body):
            api, lib = ("Google Drive API", "drive") if "drive" in body else ("Google Sheets API", "sheets")
            return GoogleAccessError(
                f"the {api} is not enabled for the Google Cloud project of your credentials: enable it at "
                f"https://console.cloud.google.com/apis/library/{lib}.googleapis.com, wait a minute, run again "
                f"(Google says: {text})"
            )
        if status == 403:
            return GoogleAccessError(
                f"the spreadsheet {self.sid} is not shared with {_account(self.client)}: open it in Google "
                "Sheets, click Share and add that address as Editor"
            )
        if status == 401:
            return GoogleAccessError(
                f"Google refused the credentials ({text}): create a new key and try again"
            )
        return GoogleSheetsError(f"Google Sheets refused {what or 'a request'}: {text}")


def _message(e) -> str:
    try:
        return str(e.response.json()["error"]["message"])
    except Exception:
        return e.response.text[:300]


def _q(title: str) -> str:
    """A sheet title as A1 notation wants it."""
    return "'" + title.replace("'", "''") + "'"


def _col(n: int) -> str:
    """1-based column number -> letters."""
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def _a1(title: str, r0: int, c0: int, r1: int, c1: int) -> str:
    return f"{_q(title)}!{_col(c0)}{r0}:{_col(c1)}{r1}"


def _chunks(items: list, size: Callable[[Any], int], limit: int) -> Iterator[list]:
    """``items`` in order, split so each part's estimated JSON size stays under ``limit`` bytes."""
    part, used = [], 0  # type: ignore[var-annotated]  # filled below with request parts
    for item in items:
        n = size(item)
        if part and used + n > limit:
            yield part
            part, used = [], 0
        part.append(item)
        used += n
    if part:
        yield part


# ------------------------------------------------------------------------------------------- values


def _from_serial(serial: float, kind: str) -> object:
    moment = EPOCH + dt.timedelta(milliseconds=round(serial * 86_400_000))
    if kind == "DATE":
        return moment.date() if moment.time() == dt.time(0) else moment
    if kind == "TIME":
        if 0 <= serial < 1:
            return moment.time()
        return dt.timedelta(milliseconds=round(serial * 86_400_000))
    return moment  # DATE_TIME; a whole day reads as a date (memory._grid)


def _to_serial(value: dt.date | dt.datetime) -> float:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    delta = value - EPOCH
    return delta.days + (delta.seconds + delta.microseconds / 1e6) / 86_400


def _cell_value(data: dict) -> tuple[object, bool]:
    """(value as the Book contract reads it, is it a formula) of one CellData."""
    formula = "formulaValue" in (data.get("userEnteredValue") or {})
    eff = data.get("effectiveValue")
    if not eff:
        return "", formula
    if "errorValue" in eff:
        return ErrorValue(str((eff["errorValue"] or {}).get("message") or "#ERROR!")), formula
    if "stringValue" in eff:
        return eff["stringValue"], formula
    if "boolValue" in eff:
        return bool(eff["boolValue"]), formula
    number = eff.get("numberValue", 0)
    kind = _format_type(data)
    if kind in ("DATE", "DATE_TIME", "TIME") and isinstance(number, (int, float)) and math.isfinite(number):
        try:
            return _from_serial(float(number), kind), formula
        except OverflowError:
            pass
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
        number = int(number)
    return number, formula


def _format_type(data: dict) -> str | None:
    """The number format type of a CellData (DATE, DATE_TIME, TIME, NUMBER...), as set or as in effect."""
    return ((data.get("userEnteredFormat") or {}).get("numberFormat") or {}).get("type") or (
        (data.get("effectiveFormat") or {}).get("numberFormat") or {}
    ).get("type")


def _locale(google: str) -> str:
    """Google's ``pt_BR`` -> Settings' ``pt-BR``."""
    return google.replace("_", "-") if google else ""


# ------------------------------------------------------------------------------------------- the book


class _Meta:
    """What the last read (or our last write) knows about each sheet."""

    def __init__(self, props: dict):
        self.id = int(props.get("sheetId", 0))
        self.title = str(props.get("title", ""))
        self.hidden = bool(props.get("hidden"))
        grid = props.get("gridProperties") or {}
        self.rows = int(grid.get("rowCount", 0))
        self.cols = int(grid.get("columnCount", 0))
        self.formulas: set[tuple[int, int]] = set()
        self.dated: set[tuple[int, int]] = set()  # cells that have a date/time number format already
        self.columns: dict[int, list[object]] = {}  # 1-based column -> values down from row 1 (key columns)
        self.grid: list[list[object]] = []  # rows of values from A1 (for key columns)


class GSheetsBook:
    """A Google spreadsheet (see the module docstring). ``client``: a gspread Client (default
    :func:`client_for`); ``workdir``: the sidecar folder on this machine (default ``./.sheetflow``), where the
    email journal of this spreadsheet lives; ``sleep``/``base_delay``: the retry clock (tests);
    ``lease_ttl``/``settle``: lease expiry and the pause before the lease's read-back; ``fresh``: a write
    within this many seconds of a read does not read the id columns again (that re-read would race the
    same people in a window as wide; the e-mail write-back reads the whole workbook right before it
    writes)."""

    def __init__(
        self,
        address: str,
        *,
        client=None,
        workdir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        base_delay: float = 1.0,
        lease_ttl: float = LEASE_TTL,
        settle: float = 0.5,
        fresh: float = 1.0,
    ):
        sid = spreadsheet_id(address)
        if sid is None:
            raise UsageError(f'"{address}" is not a Google spreadsheet address (gsheets:ID or the sheet URL)')
        self.id = sid
        self.address = f"gsheets:{sid}"
        self._client = client
        self._workdir = workdir
        self._sleep = sleep
        self._base_delay = base_delay
        self._api: _Api | None = None
        self._meta: dict[str, _Meta] | None = None
        self._order: list[str] = []
        self.lease_ttl = lease_ttl
        self.settle = settle
        self.fresh = fresh
        self._read_at = -math.inf
        self.problems: list[Problem] = []
        """Warnings of the last write (records whose row vanished while the run worked)."""
        self.time_zone = ""
        self.locale = ""

    # ------------------------------------------------------------ identity
    @property
    def identity(self) -> str:
        return "gsheets-" + self.id

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path.cwd() / ".sheetflow"
        return self._workdir

    @property
    def api(self) -> _Api:
        if self._api is None:
            self._api = _Api(
                self._client or client_for(), self.id, sleep=self._sleep, base_delay=self._base_delay
            )
        return self._api

    def fingerprint(self) -> str:
        """Drive's ``modifiedTime`` of the spreadsheet (one Drive request, not counted in the Sheets quota)."""
        data = self.api.call(
            "GET",
            f"{DRIVE_API}/{self.id}",
            params={"fields": "modifiedTime", "supportsAllDrives": "true"},
            what="reading the spreadsheet's change time",
        )
        return f"gsheets:{self.id}:{data.get('modifiedTime', '')}"  # type: ignore[union-attr]  # the response of a successful request is a JSON object

    # ------------------------------------------------------------ reading
    def read(self, *, full: Collection[str] = ()) -> dict[str, RawSheet]:
        data = self.api.call(
            "GET",
            f"{SHEETS_API}/{self.id}",
            params={"includeGridData": "true", "fields": _READ_FIELDS},
            what="reading the spreadsheet",
        )
        props = data.get("properties") or {}  # type: ignore[union-attr]  # the response of a successful request is a JSON object
        self.time_zone = str(props.get("timeZone") or "")
        self.locale = _locale(str(props.get("locale") or ""))
        out = ReadResult()
        out.defaults = {k: v for k, v in (("timezone", self.time_zone), ("locale", self.locale)) if v}
        meta: dict[str, _Meta] = {}
        order = []
        for entry in sorted(
            data.get("sheets") or [],  # type: ignore[union-attr]  # the response of a successful request is a JSON object
            key=lambda s: (s.get("properties") or {}).get("index", 0),
        ):
            m = _Meta(entry.get("properties") or {})
            meta[m.title] = m
            order.append(m.title)
            cells: dict[tuple[int, int], object] = {}
            for block in entry.get("data") or []:
                r0, c0 = int(block.get("startRow", 0)), int(block.get("startColumn", 0))
                for i, row in enumerate(block.get("rowData") or []):
                    for j, cd in enumerate(row.get("values") or []):
                        if not cd:
                            continue
                        value, formula = _cell_value(cd)
                        key = (r0 + i + 1, c0 + j + 1)
                        if _format_type(cd) in ("DATE", "DATE_TIME", "TIME"):
                            m.dated.add(key)
                        if formula:
                            m.formulas.add(key)
                        if value != "" or formula:
                            cells[key] = value
            m.grid = _rows_from(cells)
            if m.title == LEASE_SHEET:
                continue  # the lease is the backend's own
            state = "visible" if not m.hidden else ("veryHidden" if m.title.startswith("_") else "hidden")
            spec = contract.sheet_spec(m.title)
            if spec is None:
                out[m.title] = RawSheet(m.title, [], (1, 1), state)
                continue
            sheet = _Sheet(m.title, state, {k: v for k, v in cells.items()}, {k: "" for k in m.formulas})
            raw = _grid(sheet)
            if spec.name in LOGS and spec.name not in full:
                raw = _header_only(raw, spec)
            out[m.title] = raw
        self._meta, self._order = meta, order
        self._read_at = time.monotonic()
        return out

    # ------------------------------------------------------------ writing
    def write(self, patches: list[SheetPatch], *, backups: int = 10) -> None:
        """``backups`` is not used: Google keeps the version history (File > Version history)."""
        if self._meta is None:
            raise RuntimeError("read() must come before write()")
        meta = self._meta
        store = _FakeStore(meta)
        # the xlsx writer's refusals, before any request (_FakeStore offers the read surface the check needs)
        work = _checked_like_the_writer(store, patches)  # type: ignore[arg-type]
        keys = _keys(patches)
        self.problems = []
        work = self._rebind(work, keys)
        structure, ids = self._structure(work)
        values = _value_ranges(work)
        if structure:
            added = {r["addSheet"]["properties"]["sheetId"] for r in structure if "addSheet" in r}
            for part in _chunks(structure, lambda r: len(json.dumps(r)), MAX_PAYLOAD):
                self.api.call(
                    "POST",
                    f"{SHEETS_API}/{self.id}:batchUpdate",
                    body={"requests": part},
                    what="adding sheets and formats",
                    retry_ok=lambda e, added=added: bool(added) and "already exists" in _message(e),
                )
        for part in _chunks(values, lambda v: 40 + len(json.dumps(v["values"], default=str)), MAX_PAYLOAD):
            self.api.call(
                "POST",
                f"{SHEETS_API}/{self.id}/values:batchUpdate",
                body={"valueInputOption": "RAW", "data": part},
                what="writing values",
            )
        self._remember(work, ids)
        self._read_at = -math.inf  # what we know now is our own write, not a read

    def _rebind(self, work, keys: dict[str, tuple[int, dict[int, str]]]):
        """Every patched row of an existing sheet to the row that holds its record's key now (one batchGet of
        the key columns); appended rows below what the sheet holds now."""
        meta = self._meta or {}
        targets = [
            (patch, values)
            for patch, values in work
            if patch.new is None
            and not patch.replace
            and not patch.delete_rows
            and values
            and patch.sheet in meta
        ]
        if not targets or time.monotonic() - self._read_at < self.fresh:
            return work
        cols = {patch.sheet: keys.get(patch.sheet, (1, {}))[0] or 1 for patch, _ in targets}
        ranges = []
        for sheet, c in cols.items():  # the key column, and the rows from the last one we know down
            m = meta[sheet]
            ranges.append(f"{_q(sheet)}!{_col(c)}:{_col(c)}")
            ranges.append(f"{_q(sheet)}!A{max(1, len(m.grid))}:{_col(max(1, m.cols))}")
        data = self.api.call(
            "GET",
            f"{SHEETS_API}/{self.id}/values:batchGet",
            params={
                "ranges": ranges,
                "valueRenderOption": "UNFORMATTED_VALUE",
                "dateTimeRenderOption": "SERIAL_NUMBER",
                "majorDimension": "COLUMNS",
            },
            what="reading the id columns again",
        )
        answers = data.get("valueRanges") or []  # type: ignore[union-attr]  # the response of a successful request is a JSON object
        now_cols, tails = {}, {}
        for i, sheet in enumerate(cols):
            column = ((answers[2 * i] if 2 * i < len(answers) else {}).get("values") or [[]])[0]
            now_cols[sheet] = [_key_text(v) for v in column]
            tail = (answers[2 * i + 1] if 2 * i + 1 < len(answers) else {}).get("values") or []
            tails[sheet] = max(0, max((len(c) for c in tail), default=0) - 1)  # rows below the last we knew
        out = []
        for patch, values in work:
            if not any(patch is p for p, _ in targets):
                out.append((patch, values))
                continue
            col = cols[patch.sheet]
            grid = meta[patch.sheet].grid
            last = len(grid)  # the last row the read saw: rows below it are this write's appends
            before = [_key_text(row[col - 1]) if col - 1 < len(row) else "" for row in grid]
            after = now_cols.get(patch.sheet, [])
            after = after + [""] * (len(before) - len(after))
            grown = tails[patch.sheet]
            if before == after[: len(before)] and not grown:
                out.append((patch, values))
                continue
            where: dict[str, int] = {}
            for i, k in enumerate(after):
                if k != "":
                    where.setdefault(k, i + 1)
            row_keys = keys.get(patch.sheet, (0, {}))[1]
            moved: dict[tuple[int, int], object] = {}
            gone: set[str] = set()
            lost: set[int] = set()
            for (r, c), v in values.items():
                if r in row_keys:
                    target = where.get(row_keys[r])
                    if target is None:
                        gone.add(row_keys[r])
                        continue
                elif r > last:
                    target = r + grown
                elif before[:r] == after[:r]:
                    target = (
                        r  # a row without a key (header, a record getting its id now): nothing moved above it
                    )
                else:
                    lost.add(r)  # it may have moved and nothing names it: never a value in the wrong row
                    continue
                moved[(target, c)] = v
            for r in sorted(lost):
                self.problems.append(
                    warning(
                        f"{patch.sheet}!{r}:{r}",
                        "rows above this one were inserted, deleted or sorted while sheetflow worked and the "
                        "row has no id to find it by; its changes were not written",
                        "the next run plans it again",
                    )
                )
            for k in sorted(gone):
                self.problems.append(
                    warning(
                        patch.sheet,
                        f'record "{k}" was deleted or its id changed while sheetflow worked; its changes '
                        "were not written",
                        "the next run plans it again",
                    )
                )
            out.append((patch, moved))
        return out

    def _structure(self, work) -> tuple[list[dict], dict[str, int]]:
        """The spreadsheets.batchUpdate requests: new sheets (with their layout), cleared replaced sheets,
        deleted log rows, grid growth, date formats."""
        meta = self._meta or {}
        requests: list[dict] = []
        used_ids = {m.id for m in meta.values()}
        ids: dict[str, int] = {}
        index = len(meta)
        for patch, values in work:
            rows = max((r for r, _ in values), default=1)
            cols = max((c for _, c in values), default=1)
            if patch.new is not None:
                sid = _new_id(used_ids)
                ids[patch.sheet] = sid
                new = patch.new
                requests.append(
                    {
                        "addSheet": {
                            "properties": {
                                "sheetId": sid,
                                "title": patch.sheet,
                                "index": index,
                                "hidden": new.state != "visible",
                                "gridProperties": {
                                    "rowCount": max(1000, rows + 100),  # what _remember assumes
                                    "columnCount": max(26, cols),
                                    **({"frozenRowCount": new.freeze_rows} if new.freeze_rows else {}),
                                },
                            }
                        }
                    }
                )
                index += 1
                for c, width in sorted(new.col_widths.items()):
                    requests.append(
                        {
                            "updateDimensionProperties": {
                                "range": {
                                    "sheetId": sid,
                                    "dimension": "COLUMNS",
                                    "startIndex": c - 1,
                                    "endIndex": c,
                                },
                                "properties": {"pixelSize": max(20, round(width * 7 + 5))},
                                "fields": "pixelSize",
                            }
                        }
                    )
                for r in sorted(new.bold_rows):
                    requests.append(
                        {
                            "repeatCell": {
                                "range": {"sheetId": sid, "startRowIndex": r - 1, "endRowIndex": r},
                                "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
                                "fields": "userEnteredFormat.textFormat.bold",
                            }
                        }
                    )
                for v in new.validations:
                    if v.options:
                        condition = {
                            "type": "ONE_OF_LIST",
                            "values": [{"userEnteredValue": str(o)} for o in v.options],
                        }
                    elif v.source:
                        condition = {"type": "ONE_OF_RANGE", "values": [{"userEnteredValue": "=" + v.source}]}
                    else:
                        continue
                    for ref in v.sqref.split():
                        rng = _grid_range(sid, ref)
                        if rng is not None:
                            requests.append(
                                {
                                    "setDataValidation": {
                                        "range": rng,
                                        "rule": {
                                            "condition": condition,
                                            "showCustomUi": True,
                                            "strict": not v.allow_other,
                                        },
                                    }
                                }
                            )
                continue
            m = meta[patch.sheet]
            ids[patch.sheet] = m.id
            if patch.replace:
                requests.append({"updateCells": {"range": {"sheetId": m.id}, "fields": "userEnteredValue"}})
            for r in sorted(set(patch.delete_rows), reverse=True):
                requests.append(
                    {
                        "deleteDimension": {
                            "range": {
                                "sheetId": m.id,
                                "dimension": "ROWS",
                                "startIndex": r - 1,
                                "endIndex": r,
                            }
                        }
                    }
                )
            grid_rows = m.rows - len(set(patch.delete_rows))
            if rows > grid_rows:
                requests.append(
                    {
                        "appendDimension": {
                            "sheetId": m.id,
                            "dimension": "ROWS",
                            "length": rows - grid_rows + 100,
                        }
                    }
                )
            if cols > m.cols:
                requests.append(
                    {"appendDimension": {"sheetId": m.id, "dimension": "COLUMNS", "length": cols - m.cols}}
                )
        for patch, values in work:
            m = meta.get(patch.sheet)  # type: ignore[assignment]  # checked for None just below
            dated = m.dated if m is not None and patch.new is None and not patch.replace else set()
            wanted = {k: v for k, v in values.items() if k not in dated}
            for (c, kind), spans in _date_spans(wanted, _date_columns(patch, values, m)).items():
                fmt = _DATETIME_FORMAT if kind == "DATE_TIME" else _DATE_FORMAT
                for r0, r1 in spans:
                    requests.append(
                        {
                            "repeatCell": {
                                "range": {
                                    "sheetId": ids[patch.sheet],
                                    "startRowIndex": r0 - 1,
                                    "endRowIndex": r1,
                                    "startColumnIndex": c - 1,
                                    "endColumnIndex": c,
                                },
                                "cell": {"userEnteredFormat": {"numberFormat": fmt}},
                                "fields": "userEnteredFormat.numberFormat",
                            }
                        }
                    )
        return requests, ids

    def _remember(self, work, ids: dict[str, int]) -> None:
        """What the spreadsheet holds after our write, so the next write needs no new read."""
        meta = self._meta or {}
        for patch, values in work:
            if patch.new is not None:
                m = _Meta(
                    {
                        "sheetId": ids[patch.sheet],
                        "title": patch.sheet,
                        "hidden": patch.new.state != "visible",
                    }
                )
                m.rows, m.cols = 1000, 26
                meta[patch.sheet] = m
                self._order.append(patch.sheet)
            m = meta[patch.sheet]
            if patch.replace:
                m.grid = []
            if patch.delete_rows:
                gone = set(patch.delete_rows)
                m.grid = [row for i, row in enumerate(m.grid, start=1) if i not in gone]
            cells = {
                (r, c): v
                for r, row in enumerate(m.grid, start=1)
                for c, v in enumerate(row, start=1)
                if v != ""
            }
            for key, v in values.items():
                if v is None or v == "":
                    cells.pop(key, None)
                else:
                    cells[key] = v
            for (c, _kind), spans in _date_spans(values, _date_columns(patch, values, m)).items():
                m.dated.update((r, c) for r0, r1 in spans for r in range(r0, r1 + 1))
            m.grid = _rows_from(cells)
            m.rows = max(m.rows, len(m.grid))
            m.cols = max(m.cols, max((len(r) for r in m.grid), default=0))
        self._meta = meta

    # ------------------------------------------------------------ the lease
    @contextmanager
    def lease(self, wait: float = 0.0) -> Iterator[None]:
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._take(token, wait)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(token, stop), name="sheetflow-lease", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=TIMEOUT)
            try:
                self._put_lease(["", "", ""])
            except SheetflowError as e:  # the lease then expires by itself
                log.warning("could not release the lease on %s: %s", self.address, e)

    _LEASE_RANGE = f"{_q(LEASE_SHEET)}!A2:C2"

    def _lease_row(self) -> list[object] | None:
        """The lease row, or None when the lease sheet does not exist yet."""
        data = self.api.call(
            "GET",
            f"{SHEETS_API}/{self.id}/values/{quote(self._LEASE_RANGE)}",
            params={"valueRenderOption": "UNFORMATTED_VALUE"},
            what="reading the lease",
            none_on=lambda e: e.response.status_code == 400 and "parse range" in _message(e).lower(),
        )
        if data is None:
            return None
        row = (data.get("values") or [[]])[0]
        return [*row, "", "", ""][:3]

    def _put_lease(self, row: list[object]) -> None:
        self.api.call(
            "PUT",
            f"{SHEETS_API}/{self.id}/values/{quote(self._LEASE_RANGE)}",
            params={"valueInputOption": "RAW"},
            body={"range": self._LEASE_RANGE, "majorDimension": "ROWS", "values": [row]},
            what="writing the lease",
        )

    def _create_lease_sheet(self) -> None:
        self.api.call(
            "POST",
            f"{SHEETS_API}/{self.id}:batchUpdate",
            body={
                "requests": [
                    {
                        "addSheet": {
                            "properties": {
                                "title": LEASE_SHEET,
                                "hidden": True,
                                "gridProperties": {"rowCount": 2, "columnCount": 3},
                            }
                        }
                    }
                ]
            },
            what="creating the lease sheet",
            retry_ok=lambda e: "already exists" in _message(e),
            none_on=lambda e: "already exists" in _message(e),  # another runner made it first
        )

    def _take(self, token: str, wait: float) -> None:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            row = self._lease_row()
            if row is None:
                try:
                    self._create_lease_sheet()
                except GoogleSheetsError as e:
                    if "already exists" not in str(e):
                        raise
                continue
            holder, expires = str(row[0] or ""), row[1]
            free = not holder or not isinstance(expires, (int, float)) or expires < time.time()
            if free:
                self._put_lease(
                    [token, time.time() + self.lease_ttl, "holder, expiry (Unix time), sheetflow"]
                )
                if self.settle:
                    time.sleep(self.settle)
                back = self._lease_row()
                if back is not None and back[0] == token:
                    return
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkbookBusy(
                    f"another sheetflow run ({holder.split(':')[0]}) is working on {self.address}; try again "
                    "when it has finished"
                )
            time.sleep(min(1.0, left))

    def _renew(self, token: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease_ttl / 3):
            try:
                self._put_lease(
                    [token, time.time() + self.lease_ttl, "holder, expiry (Unix time), sheetflow"]
                )
            except SheetflowError as e:
                log.warning("could not renew the lease on %s: %s", self.address, e)


class _FakeStore:
    """Enough of the memory store for the writer's checks (names, formulas of each sheet)."""

    def __init__(self, meta: dict[str, _Meta]):
        self.sheets = [_Sheet(m.title, formulas={k: "" for k in m.formulas}) for m in meta.values()]

    def sheet(self, name: str):
        return next((s for s in self.sheets if s.name == name), None)


def _rows_from(cells: dict[tuple[int, int], object]) -> list[list[object]]:
    if not cells:
        return []
    height = max(r for r, _ in cells)
    width = max(c for _, c in cells)
    rows: list[list[object]] = [[""] * width for _ in range(height)]
    for (r, c), v in cells.items():
        rows[r - 1][c - 1] = "" if isinstance(v, ErrorValue) else v
    return rows


def _key_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() if value not in (None, "") else ""


def _keys(patches: list[SheetPatch]) -> dict[str, tuple[int, dict[int, str]]]:
    """Sheet -> (key column, row -> record key) from the patches (later patches add to earlier ones)."""
    out: dict[str, tuple[int, dict[int, str]]] = {}
    for p in patches:
        col = getattr(p, "key_col", 0)
        rows = getattr(p, "keys", None) or {}
        if col and rows:
            prev = out.get(p.sheet, (col, {}))[1]
            out[p.sheet] = (col, {**prev, **{r: _key_text(k) for r, k in rows.items() if _key_text(k)}})
    return out


def _new_id(used: set[int]) -> int:
    while True:
        sid = random.randint(1, 2**31 - 1)
        if sid not in used:
            used.add(sid)
            return sid


def _grid_range(sheet_id: int, ref: str) -> dict | None:
    m = re.fullmatch(r"\$?([A-Z]+)\$?(\d+)(?::\$?([A-Z]+)\$?(\d+))?", ref.upper())
    if not m:
        return None

    def num(letters: str) -> int:
        n = 0
        for ch in letters:
            n = n * 26 + ord(ch) - 64
        return n

    c0, r0 = num(m.group(1)), int(m.group(2))
    c1, r1 = (num(m.group(3)), int(m.group(4))) if m.group(3) else (c0, r0)
    return {
        "sheetId": sheet_id,
        "startRowIndex": r0 - 1,
        "endRowIndex": r1,
        "startColumnIndex": c0 - 1,
        "endColumnIndex": c1,
    }


def _json_value(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, (dt.date, dt.datetime)):
        return _to_serial(v)
    return v


def _value_ranges(work) -> list[dict]:
    """values.batchUpdate data: per sheet, rectangles of contiguous cells (runs of columns repeated on
    consecutive rows), so 10,000 appended rows are one range, never 10,000."""
    data = []
    for patch, values in work:
        by_row: dict[int, dict[int, object]] = {}
        for (r, c), v in values.items():
            by_row.setdefault(r, {})[c] = v
        open_blocks: dict[tuple[int, int], tuple[int, list[list[object]]]] = {}  # (c0, c1) -> (r0, rows)
        last_row: dict[tuple[int, int], int] = {}

        def close(span, block, patch=patch):
            r0, rows = block
            data.append(
                {
                    "range": _a1(patch.sheet, r0, span[0], r0 + len(rows) - 1, span[1]),
                    "majorDimension": "ROWS",
                    "values": rows,
                }
            )

        for r in sorted(by_row):
            cols = sorted(by_row[r])
            runs: list[tuple[int, int]] = []
            for c in cols:
                if runs and c == runs[-1][1] + 1:
                    runs[-1] = (runs[-1][0], c)
                else:
                    runs.append((c, c))
            for span in runs:
                row = [_json_value(by_row[r][c]) for c in range(span[0], span[1] + 1)]
                if span in open_blocks and last_row[span] == r - 1:
                    open_blocks[span][1].append(row)
                else:
                    if span in open_blocks:
                        close(span, open_blocks.pop(span))
                    open_blocks[span] = (r, [row])
                last_row[span] = r
            for span in [s for s in open_blocks if last_row[s] < r]:
                close(span, open_blocks.pop(span))
        for span, block in open_blocks.items():
            close(span, block)
    return data


def _date_columns(patch: SheetPatch, values: dict, m: _Meta | None) -> dict[int, tuple[int, int]]:
    """Date columns of the contract (Emails ``sent_at``...) -> the rows this write appends, which get a date
    format now even where the value comes later (the e-mail write-back then needs no formatting request)."""
    spec = contract.sheet_spec(patch.sheet)
    if spec is None or not values:
        return {}
    grid = [list(r) for r in (m.grid if m is not None and patch.new is None and not patch.replace else [])]
    last = len(grid)
    for (r, c), v in values.items():
        if r <= contract.HEADER_SEARCH_ROWS and v not in (None, ""):
            while len(grid) < r:
                grid.append([])
            row = grid[r - 1]
            row.extend([""] * (c - len(row)))
            row[c - 1] = v
    h = contract.find_header(grid[: contract.HEADER_SEARCH_ROWS], spec)
    appended = [r for r, _ in values if r > max(last, (h or 0) + 1)]
    if h is None or not appended:
        return {}
    span = (min(appended), max(appended))
    out = {}
    for c, text in enumerate(grid[h], start=1):
        col = spec.column(str(text)) if isinstance(text, str) and text else None
        if col is not None and col.type is contract.D:
            out[c] = span
    return out


def _date_spans(
    values: dict[tuple[int, int], object], columns: dict[int, tuple[int, int]] | None = None
) -> dict[tuple[int, str], list[tuple[int, int]]]:
    """(column, format type) -> runs of consecutive rows holding dates (one repeatCell each); ``columns``:
    date columns whose whole appended span is formatted (see :func:`_date_columns`)."""
    cells: dict[tuple[int, str], set[int]] = {}
    for c, (r0, r1) in (columns or {}).items():
        cells.setdefault((c, "DATE_TIME"), set()).update(range(r0, r1 + 1))
    for (r, c), v in values.items():
        if isinstance(v, dt.datetime):
            kind = "DATE_TIME"
        elif isinstance(v, dt.date):
            kind = "DATE"
        else:
            continue
        if (c, "DATE_TIME") in cells and r in cells[(c, "DATE_TIME")]:
            if kind == "DATE":
                cells[(c, "DATE_TIME")].discard(r)
            else:
                continue
        cells.setdefault((c, kind), set()).add(r)
    out: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for key, found in cells.items():
        if not found:
            continue
        rows = sorted(found)
        spans = [(rows[0], rows[0])]
        for r in rows[1:]:
            if r == spans[-1][1] + 1:
                spans[-1] = (spans[-1][0], r)
            else:
                spans.append((r, r))
        out[key] = spans
    return out

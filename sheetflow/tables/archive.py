"""The log archive: older rows of the output logs, moved whole out of the workbook into ``.sheetflow/``.

Why: a log that only grows ends every automation. Excel stops at 1,048,576 rows per sheet (a run then fails
with ``(1048577, 1) is not a cell``) and Google Sheets at 10 million cells per spreadsheet; with 100,000
contacts whose scores move daily, Activity gets there in about ten runs. So each log (Activity, Emails,
Tasks, Runs, Enrollments) keeps at most ``log_max_rows`` rows (Settings; default 50,000). When a run would
go over, the oldest *finished* rows go to the archive until a tenth of the cap is free again (so the runs
after it only append): an Emails row still ``planned``/``sending``, a task not ``done`` and an enrollment
still running stay in the sheet.

Where: ``.sheetflow/<book>.archive-<year>.xlsx`` beside the workbook, one sheet per log with the log's
headers; a file holds at most 100,000 rows per sheet (``-<year>-2.xlsx`` and so on after that), so adding
to it stays as fast as the first time. Each write is atomic (temporary file, then rename) and happens
*before* the workbook is saved: a crash in between leaves the rows in both places, never in none, and the
next run does not archive them twice (every archived row is known by a hash of its sheet and values).

The index ``.sheetflow/<book>.archive.sqlite`` is a cache of the archive files, rebuilt from them when it is
missing or a file changed behind its back. It answers what a run needs without opening the archive:

* email keys ever archived: such a key is never planned again (an email is never sent twice), and the
  addresses of archived ``failed``/``bounced`` rows stay suppressed;
* which archive files hold a run's Activity rows: ``sheetflow undo BOOK RUN_ID`` finds them there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import python_calamine as pc

from sheetflow import contract
from sheetflow.book import NewSheet, SheetPatch
from sheetflow.book.xlsx.apply import patch_workbook
from sheetflow.coerce import Locale, as_text, to_cell
from sheetflow.names import normalize
from sheetflow.problems import SheetflowError
from sheetflow.tables.table import ArchivedLogs, RawSheet, Table, load_table

LOG_SHEETS = ("Activity", "Emails", "Tasks", "Runs", "Enrollments")
DEFAULT_CAP = 50_000
MIN_CAP = 10
MAX_CAP = 1_000_000  # Excel: 1,048,576 rows per sheet, less room for one big run
PART_ROWS = 100_000  # rows per log in one archive file: adding rewrites that sheet, so keep it small
BLOCKING = ("failed", "bounced")


@dataclass
class ArchiveBatch:
    """Rows of one log leaving the workbook in this run, oldest first.

    ``headers``: (canonical column, header text) in sheet column order; ``rows``: canonical column -> value.
    """

    canonical: str
    sheet: str  # the log's name in the workbook (the archive sheet gets it too)
    headers: list[tuple[str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)


def row_hash(canonical: str, row: dict[str, Any]) -> bytes:
    """Identity of an archived row: its log and the text of every non-empty cell (column order does not
    matter, so a column moved in the sheet changes nothing)."""
    parts = [canonical]
    for column in sorted(row):
        value = row[column]
        text = value if type(value) is str else as_text(to_cell(value))  # str: most cells, fast path
        if text and not text.isspace():
            parts.append(f"{column}\x1e{text}")
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16).digest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (name TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER);
CREATE TABLE IF NOT EXISTS sheets (
    file TEXT, canonical TEXT, sheet TEXT, rows INTEGER, headers TEXT, PRIMARY KEY (file, canonical)
);
CREATE TABLE IF NOT EXISTS rows (h BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS emails (key TEXT PRIMARY KEY, status TEXT, address TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS runs (run_id TEXT, file TEXT, PRIMARY KEY (run_id, file)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS undone (run_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""


class Archive:
    """The archive of one workbook (``workdir`` is its ``.sheetflow/`` folder)."""

    def __init__(self, workdir: Path, book_name: str):
        self.workdir = Path(workdir)
        self.book_name = book_name
        self.stem = Path(book_name).stem
        self.index_path = self.workdir / f"{book_name}.archive.sqlite"

    @classmethod
    def of(cls, book: Any) -> Archive:
        """The archive of a :class:`~sheetflow.book.base.Book`: in its ``workdir``, named after its identity."""
        identity = getattr(book, "identity", None) or Path(str(book.address)).name
        return cls(Path(book.workdir), identity)

    # ------------------------------------------------------------ files
    @property
    def folder(self) -> str:
        """How messages name the archive's folder: ``.sheetflow`` beside the workbook, else its path."""
        return ".sheetflow" if self.workdir.name == ".sheetflow" else str(self.workdir)

    def files(self) -> list[Path]:
        return sorted(self.workdir.glob(f"{self.stem}.archive-*.xlsx"))

    def exists(self) -> bool:
        return self.index_path.exists() or bool(self.files())

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.index_path)
        try:
            db.executescript(_SCHEMA)
            self._refresh(db)
            yield db
            db.commit()
        finally:
            db.close()

    def _refresh(self, db: sqlite3.Connection) -> None:
        """Index every archive file the index does not know as it is now (a crash after writing the file and
        before the index commit, a deleted index, a file copied in)."""
        known = {
            name: (size, mtime) for name, size, mtime in db.execute("SELECT name, size, mtime_ns FROM files")
        }
        for path in self.files():
            stat = path.stat()
            if known.get(path.name) == (stat.st_size, stat.st_mtime_ns):
                continue
            self._index_file(db, path)
        db.commit()

    def _index_file(self, db: sqlite3.Connection, path: Path) -> None:
        db.execute("DELETE FROM sheets WHERE file = ?", (path.name,))
        try:
            book = pc.CalamineWorkbook.from_path(str(path))
        except Exception as e:  # noqa: BLE001 - calamine raises several types for one cause
            raise SheetflowError(
                f"the log archive {path} cannot be read ({e}); move it out of .sheetflow/ and run again"
            ) from None
        try:
            for name in book.sheet_names:
                spec = contract.sheet_spec(name)
                if spec is None:
                    continue
                raw = RawSheet(name, book.get_sheet_by_name(name).to_python())  # type: ignore[arg-type]  # list invariance: calamine's typed rows are rows of objects
                table, _ = load_table(raw, spec, Locale())
                headers = [
                    (c, table.headers.get(c, c))
                    for c in sorted(table.col_index, key=table.col_index.get)  # type: ignore[arg-type]  # every key is in col_index
                ]
                rows = _table_rows(table)
                self._record(db, path.name, spec.name, name, headers, rows, raw.last_row or 1)
        finally:
            book.close()
        stat = path.stat()
        db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?)", (path.name, stat.st_size, stat.st_mtime_ns)
        )

    def _record(
        self,
        db: sqlite3.Connection,
        file: str,
        canonical: str,
        sheet: str,
        headers: list[tuple[str, str]],
        rows: list[dict[str, Any]],
        last_row: int,
        hashes: list[bytes] | None = None,
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO sheets VALUES (?, ?, ?, ?, ?)",
            (file, canonical, sheet, last_row, "\x1f".join(f"{c}\x1e{h}" for c, h in headers)),
        )
        if hashes is None:
            hashes = [row_hash(canonical, r) for r in rows]
        db.executemany("INSERT OR IGNORE INTO rows VALUES (?)", ((h,) for h in hashes))
        if canonical == "Emails":
            db.executemany(
                "INSERT OR REPLACE INTO emails VALUES (?, ?, ?, ?)",
                (
                    (
                        str(r["key"]).strip(),
                        _text(r.get("status")).lower(),
                        _text(r.get("to")).lower(),
                        _text(r.get("detail")),
                    )
                    for r in rows
                    if isinstance(r.get("key"), str) and r["key"].strip()
                ),
            )
        elif canonical == "Activity":
            run_ids = {_text(r.get("run_id")) for r in rows}
            db.executemany(
                "INSERT OR IGNORE INTO runs VALUES (?, ?)",
                ((rid, file) for rid in run_ids if isinstance(rid, str) and rid),
            )
            undone = {
                str(r["rule"])[5:].strip() for r in rows if str(r.get("rule") or "").startswith("undo ")
            }
            db.executemany("INSERT OR IGNORE INTO undone VALUES (?)", ((u,) for u in undone))

    # ------------------------------------------------------------ reading
    def facts(self) -> ArchivedLogs:
        """Email keys and suppressed addresses of the archived Emails rows (empty when there is no archive)."""
        if not self.exists():
            return ArchivedLogs()
        with self._db() as db:
            keys = frozenset(k for (k,) in db.execute("SELECT key FROM emails"))
            blocked = {
                address: f"{self.stem} archive: {status}" + (f": {detail[:120]}" if detail else "")
                for address, status, detail in db.execute(
                    "SELECT address, status, detail FROM emails WHERE status IN (?, ?) AND address != ''",
                    BLOCKING,
                )
            }
        return ArchivedLogs(keys, blocked)

    def activity_of(self, run_id: str) -> list[tuple[Table, list[int]]]:
        """The archived Activity rows of a run: per archive file, the table and the row positions."""
        if not self.exists():
            return []
        with self._db() as db:
            files = [
                f for (f,) in db.execute("SELECT file FROM runs WHERE run_id = ? ORDER BY file", (run_id,))
            ]
            sheets = dict(db.execute("SELECT file, sheet FROM sheets WHERE canonical = 'Activity'"))
        found = []
        for name in files:
            path = self.workdir / name
            if not path.exists() or name not in sheets:
                continue
            book = pc.CalamineWorkbook.from_path(str(path))
            try:
                raw = RawSheet(f"{name}: {sheets[name]}", book.get_sheet_by_name(sheets[name]).to_python())  # type: ignore[arg-type]  # list invariance: calamine's typed rows are rows of objects
            finally:
                book.close()
            table, _ = load_table(raw, contract.BY_NAME["Activity"], Locale())
            positions = [i for i, r in enumerate(table.df["run_id"].tolist()) if r == run_id]
            if positions:
                found.append((table, positions))
        return found

    def undone(self, run_id: str) -> bool:
        if not self.exists():
            return False
        with self._db() as db:
            return db.execute("SELECT 1 FROM undone WHERE run_id = ?", (run_id,)).fetchone() is not None

    # ------------------------------------------------------------ writing
    def store(self, batches: Iterable[ArchiveBatch], when: dt.datetime) -> dict[str, list[Path]]:
        """Append the batches to this year's archive file (atomically) and index them, before the workbook
        save. Rows already archived (same log, same values: a run that stopped after this step) are left
        out. Returns the files each log's rows went to, oldest rows' first."""
        batches = [b for b in batches if b.rows]
        if not batches:
            return {}
        where: dict[str, list[Path]] = {}
        with self._db() as db:
            year = f"{when.year:04d}"
            pending: dict[Path, list[tuple[ArchiveBatch, list[dict[str, Any]], list[bytes]]]] = {}
            planned: dict[tuple[str, str], int] = {}  # (file, log) -> rows after this run
            for batch in batches:
                fresh, hashes = _unseen(db, batch)
                while fresh:
                    path, room = self._part_for(db, year, batch.canonical, planned)
                    chunk, fresh = fresh[:room], fresh[room:]
                    chunk_hashes, hashes = hashes[:room], hashes[room:]
                    planned[(path.name, batch.canonical)] = PART_ROWS - room + len(chunk)
                    pending.setdefault(path, []).append((batch, chunk, chunk_hashes))
                    where.setdefault(batch.canonical, []).append(path)
            for path, items in pending.items():
                if not path.exists():
                    _new_workbook(path, [b.sheet for b, _, _ in items])
                    self._index_file(db, path)
                patches = []
                for batch, fresh, fresh_hashes in items:
                    info = db.execute(
                        "SELECT sheet, rows, headers FROM sheets WHERE file = ? AND canonical = ?",
                        (path.name, batch.canonical),
                    ).fetchone()
                    sheet, last, header_text = info if info else (batch.sheet, 0, "")
                    headers = (
                        [tuple(h.split("\x1e", 1)) for h in header_text.split("\x1f")] if header_text else []
                    )
                    columns = {c: i for i, (c, _) in enumerate(headers, start=1)}
                    cells: dict[tuple[int, int], Any] = {}
                    for column, label in batch.headers:
                        if column not in columns:
                            columns[column] = len(headers) + 1
                            headers.append((column, label))
                            cells[(1, columns[column])] = label
                    row = max(last, 1)
                    for values in fresh:
                        row += 1
                        for column, value in values.items():
                            if column not in columns:
                                columns[column] = len(headers) + 1
                                headers.append((column, column))
                                cells[(1, columns[column])] = column
                            value = to_cell(value)
                            if value is not None and value != "":
                                cells[(row, columns[column])] = value
                    new = None
                    if info is None:
                        new = NewSheet(
                            freeze_rows=1, bold_rows={1}, col_widths=_widths(batch.canonical, headers)
                        )
                    patches.append(SheetPatch(sheet, cells, new=new))
                    self._record(
                        db,
                        path.name,
                        batch.canonical,
                        sheet,
                        headers,
                        fresh,
                        row,
                        fresh_hashes,
                    )
                tmp = path.with_name(f".{path.name}.tmp")
                try:
                    patch_workbook(path, tmp, patches)
                    os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
                stat = path.stat()
                db.execute(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?)",
                    (path.name, stat.st_size, stat.st_mtime_ns),
                )
        return where

    def _part_for(
        self, db: sqlite3.Connection, year: str, canonical: str, planned: dict[tuple[str, str], int]
    ) -> tuple[Path, int]:
        """The archive file of ``year`` with room for the log's rows, and how many rows still fit there."""
        n = 1
        while True:
            name = f"{self.stem}.archive-{year}.xlsx" if n == 1 else f"{self.stem}.archive-{year}-{n}.xlsx"
            path = self.workdir / name
            used = planned.get((name, canonical))
            if used is None:
                row = db.execute(
                    "SELECT rows FROM sheets WHERE file = ? AND canonical = ?", (name, canonical)
                ).fetchone()
                used = max(row[0] - 1, 0) if row is not None and path.exists() else 0
            if used < PART_ROWS:
                return path, PART_ROWS - used
            n += 1


def _text(value: object) -> str:
    return (as_text(to_cell(value)) or "").strip()


def _unseen(db: sqlite3.Connection, batch: ArchiveBatch) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The rows of ``batch`` not archived yet (each once), and their hashes."""
    hashes = [row_hash(batch.canonical, r) for r in batch.rows]
    seen: set[bytes] = set()
    for i in range(0, len(hashes), 500):
        chunk = hashes[i : i + 500]
        marks = ",".join("?" * len(chunk))
        seen.update(h for (h,) in db.execute(f"SELECT h FROM rows WHERE h IN ({marks})", chunk))  # noqa: S608
    fresh, fresh_hashes, twice = [], [], set()
    for h, row in zip(hashes, batch.rows):
        if h in seen or h in twice:
            continue
        twice.add(h)
        fresh.append(row)
        fresh_hashes.append(h)
    return fresh, fresh_hashes


def _table_rows(table: Table) -> list[dict[str, Any]]:
    columns = list(table.col_index)
    data = {c: table.df[c].to_numpy(dtype=object).tolist() for c in columns}
    return [{c: data[c][i] for c in columns} for i in range(len(table))]


def _widths(canonical: str, headers: list[tuple[str, str]]) -> dict[int, float]:
    spec = contract.BY_NAME.get(canonical)
    out = {}
    for i, (column, _) in enumerate(headers, start=1):
        col = spec.column(column) if spec else None
        out[i] = col.width if col is not None else 14
    return out


def _new_workbook(path: Path, sheets: list[str]) -> None:
    """An empty archive workbook with the given (empty) sheets, written atomically."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = sheets[0]
    for name in sheets[1:]:
        wb.create_sheet(name)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        wb.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cap_of(settings: Any) -> int:
    """``log_max_rows`` from Settings, kept between MIN_CAP and MAX_CAP (a bad value is reported there)."""
    value = settings.number("log_max_rows")
    if value is None:
        return DEFAULT_CAP
    return int(min(max(value, MIN_CAP), MAX_CAP))


def header_label(table: Table, column: str, lang: str) -> str:
    if column in table.headers:
        return table.headers[column]
    spec = table.spec.column(column)
    return contract.label(spec, lang) if spec else column


__all__ = ["Archive", "ArchiveBatch", "LOG_SHEETS", "DEFAULT_CAP", "cap_of", "row_hash", "normalize"]

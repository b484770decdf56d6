"""The one interface every workbook backend implements (local file, memory; Google Sheets and live Excel next).

A run talks to its workbook in a handful of calls, whatever holds it::

    with book.lease():                        # one runner at a time
        raws = book.read()                    # every sheet the run needs, in one go
        ...                                   # plan (the layers above; they never see the backend)
        book.write(patches)                   # every change of the run, in one go, or nothing

Why so few calls: a Google spreadsheet allows 60 reads and 60 writes a minute (issue 12), a live Excel
workbook is slow per call (issue 13), and a file is rewritten whole on every save; so reads and writes are
batches, never per cell. Why ``fingerprint``: people keep editing the workbook while a run plans; a write
over a workbook that changed since it was read could put a value into the wrong row, so it is refused.

The behaviour every backend shares is pinned by ``tests/book/test_conformance.py``; a new backend is one
factory there. :class:`sheetflow.book.memory.MemoryBook` is the reference implementation.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from sheetflow.book.patch import SheetPatch
from sheetflow.book.raw import RawSheet

__all__ = ["LOGS", "Book"]

LOGS = ("Activity", "Runs", "Tasks")
"""The append-only log sheets (canonical names): a run only appends to them, so a read gives only their header
and where they end unless asked for in full (they grow by every run; reading them whole would make every run
slower than the last)."""


@runtime_checkable
class Book(Protocol):
    """A workbook, wherever it lives.

    Values read (in :attr:`RawSheet.rows`) are: ``str`` (text exactly as stored: leading zeros, leading
    ``=``/``+``/``-``/``@``, white space and line breaks kept), ``float`` or ``int`` for numbers (compare by
    value: ``42`` may read as ``42.0``), ``bool``, ``datetime.date`` for a date cell and
    ``datetime.datetime`` for a date-and-time cell (to the millisecond at best; a whole day, such as a
    datetime at midnight, reads back as ``datetime.date``), ``datetime.time`` for a time-of-day cell,
    ``datetime.timedelta`` for a duration (``[h]:mm``), and ``""`` for empty cells and error values
    (``#N/A``, ``#REF!``...). A formula cell reads as its last computed value and is listed in
    :attr:`RawSheet.formulas`.

    Values written (in :class:`SheetPatch` cells) follow the xlsx writer (:mod:`sheetflow.book.xlsx`), whatever the
    backend: text is always stored as text, never taken as a formula (``=1+1`` stays the four characters);
    characters XML cannot hold (control characters other than tab, CR, LF) are dropped and text is cut at
    Excel's 32,767-character limit, so a workbook reads the same after moving between backends; numbers
    must be finite; dates get a date format (``yyyy-mm-dd``, with `` hh:mm`` when there is a time of day);
    ``None`` clears a value (and its formula) and keeps the cell's format.

    Errors: :class:`~sheetflow.problems.UsageError` for an address that names no workbook,
    :class:`~sheetflow.problems.SheetflowError` for a workbook that cannot be read,
    :class:`~sheetflow.problems.WorkbookBusy` (exit code 3) when another runner holds the lease or the
    workbook changed or is being edited so that writing is not safe, and
    :class:`~sheetflow.book.patch.PatchError` for patches that cannot be applied (no such sheet, a sheet
    created twice, an invalid name or value); a refused write writes nothing.
    """

    address: str
    """What names the workbook to the user: ``crm.xlsx``, ``gsheets:ID``, ``excel:Book1``, ``memory:NAME``."""

    @property
    def identity(self) -> str:
        """A stable, file-name-safe name of this workbook: the sidecar files of ``workdir`` are named after it
        (``<identity>.lock``, ``<identity>.mail.sqlite``). The same workbook gives the same identity on every
        run (a file: its name; a Google spreadsheet: its id), so the email journal follows it."""
        ...

    @property
    def workdir(self) -> Path:
        """The folder for sidecar files (lock, email journal, backups): ``.sheetflow/`` beside a file, a local
        ``.sheetflow/`` for a workbook that is not a local file. Not created until something is put there."""
        ...

    def read(self, *, full: Collection[str] = ()) -> dict[str, RawSheet]:
        """Every worksheet, by its actual name, in workbook order, in one go.

        Sheets of the contract (:func:`sheetflow.contract.sheet_spec` knows the name, English or pt-BR) come
        with their values; other worksheets come empty (``rows == []``; their name and state only), since the
        run never reads them. The append-only logs (:data:`LOGS`) come as the rows down to their header, with
        :attr:`RawSheet.last` set to their last used row, unless their canonical name is in ``full``.

        Remembers the workbook's :meth:`fingerprint` for the next :meth:`write`.
        Raises UsageError (no such workbook) or SheetflowError (unreadable)."""
        ...

    def write(self, patches: list[SheetPatch], *, backups: int = 10) -> None:
        """Apply every patch (cell updates, appended rows, new sheets, replaced sheets, rows deleted from a log
        with :attr:`SheetPatch.delete_rows`: rows below move up, cells are addressed after the deletion) in one
        go: all of them or, on any error, none.

        Raises WorkbookBusy, writing nothing, if the workbook changed since the last :meth:`read` (or since our
        last write) or is being edited; RuntimeError if nothing was read first (a programming error). After a
        write the next write needs no new read. ``backups``: how many copies of the workbook as it was before
        a write to keep (where the backend can; the local file keeps them in ``workdir/backups``; 0 = none)."""
        ...

    def lease(self, wait: float = 0.0) -> AbstractContextManager[None]:
        """The exclusive right to run on this workbook, for the ``with`` block: a second runner (another process
        or machine, or another ``Book`` on the same workbook) is refused while it is held.

        ``wait``: seconds to wait for the holder to finish before giving up (0: give up at once); then raises
        WorkbookBusy. Released when the block ends, also on error."""
        ...

    def fingerprint(self) -> str:
        """An opaque text that stays the same while the workbook does not change and differs after any change
        to it (ours or anyone's). It may also change when the workbook is saved without changes (it errs on
        the side of "changed"). Used to tell that a workbook changed while a run worked, and by watchers."""
        ...

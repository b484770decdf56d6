"""``sheetflow undo BOOK [RUN_ID]``: put back the values a run changed, from its Activity journal.

Only cells that still hold what that run wrote are restored; a cell someone (or a later run) changed
since is left alone and reported, so an undo never destroys newer work. The undo is itself a run: it
writes Activity rows (rule ``undo RUN_ID``) and a Runs row (mode ``undo``), and can be undone in turn.
Saved trigger state is not rewound: the next run compares with what the undone run saw.

A run whose Activity rows were moved to the log archive (``log_max_rows``, :mod:`sheetflow.tables.archive`) is
undone the same way: ``sheetflow undo BOOK RUN_ID`` finds its rows in ``.sheetflow/`` (the index says which
archive file holds them); without RUN_ID the newest run still in the Activity sheet is undone.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from sheetflow import contract
from sheetflow.apply import LogTrim, build_patches
from sheetflow.book import Book, open_book
from sheetflow.coerce import Locale, Unreadable, as_text, parse_as, to_cell
from sheetflow.coltypes import ColumnType
from sheetflow.engine.plan import CellChange, Plan
from sheetflow.engine.run import new_run_id
from sheetflow.problems import Problem, SheetflowError, warning
from sheetflow.tables.archive import Archive, cap_of
from sheetflow.tables.loaded import load
from sheetflow.tables.table import Table


@dataclass
class UndoResult:
    run_id: str  # the run that was undone
    plan: Plan  # the undo's own changes
    skipped: list[Problem] = field(default_factory=list)
    written: bool = False


def undo(
    address: str | Path,
    run_id: str | None = None,
    *,
    now: dt.datetime | None = None,
    book: Book | None = None,
) -> UndoResult:
    book = book or open_book(address)
    started = time.monotonic()
    with book.lease():
        loaded = load(book.read(full=("Activity",)))
        archive = Archive.of(book)
        activity = loaded.tables["Activity"]
        df = activity.df if activity.exists else None
        run_ids = [r for r in df["run_id"].tolist() if isinstance(r, str)] if df is not None else []
        target = run_id or (_last_undoable(df) if df is not None and len(df) else None)
        archived = archive.activity_of(target) if target is not None else []
        if target is None or (target not in run_ids and not archived):
            if run_id:
                raise SheetflowError(f'no changes of run "{run_id}" in Activity or in its archive')
            raise SheetflowError(
                "the Activity sheet has no changes to undo"
                if not run_ids
                else "no run left to undo in Activity"
            )
        if (df is not None and (df["rule"] == f"undo {target}").any()) or archive.undone(target):
            raise SheetflowError(f"run {target} was already undone")
        now = now or dt.datetime.now(dt.timezone.utc)
        if now.tzinfo is None:
            now = now.replace(tzinfo=loaded.settings.timezone)
        local_now = loaded.settings.local_now(now)
        plan = Plan(new_run_id(local_now), now, local_now, "undo", "cli", state=loaded.state)
        result = UndoResult(target, plan)
        # newest first: the sheet's rows, then the rows that went to the archive
        in_sheet = [i for i, r in enumerate(df["run_id"].tolist()) if r == target] if df is not None else []
        sources = [(activity, in_sheet)]
        sources += list(reversed(archived))
        for table, positions in sources:
            for i in reversed(positions):
                _restore(loaded.tables, table, i, target, loaded.tables.locale, result)
        plan.problems += result.skipped
        if plan.changes:
            cap = cap_of(loaded.settings)
            trim = LogTrim(cap, lambda names: {})  # Activity is read in full; the other logs wait for a run
            patches = build_patches(
                plan,
                loaded.tables,
                write_state=False,
                elapsed=dt.timedelta(seconds=time.monotonic() - started),
                trim=trim,
            )
            plan.problems += trim.report(archive.store(trim.batches, local_now), archive.folder)
            book.write(patches, backups=int(loaded.settings.number("backups") or 10))
            result.written = True
        return result


def _last_undoable(df) -> str | None:
    undone = {r[5:] for r in df["rule"].tolist() if isinstance(r, str) and r.startswith("undo ")}
    for rid, rule in zip(reversed(df["run_id"].tolist()), reversed(df["rule"].tolist())):
        if (
            isinstance(rid, str)
            and rid not in undone
            and not (isinstance(rule, str) and rule.startswith("undo "))
        ):
            return rid
    return None


def _restore(tables, activity: Table, i: int, target: str, locale: Locale, result: UndoResult) -> None:
    row = activity.df.iloc[i]
    spec = contract.sheet_spec(str(row["table"]))
    where = activity.ref(i, "record_id")
    if spec is None or spec.name not in contract.RECORD_SHEETS:
        result.skipped.append(warning(where, f'unknown table "{row["table"]}"; not restored'))
        return
    table = tables[spec.name]
    column = str(row["column"])
    record = row["record_id"] if isinstance(row["record_id"], str) else ""
    matches = [p for p, v in enumerate(table.df["id"].tolist()) if isinstance(v, str) and v.strip() == record]
    if len(matches) != 1 or column not in table.df:
        result.skipped.append(warning(where, f"record {record} is no longer in {table.sheet}; not restored"))
        return
    pos = matches[0]
    current = as_text(to_cell(table.df[column].iloc[pos]))
    wrote = row["new"] if isinstance(row["new"], str) else None
    if (current or None) != (wrote or None):
        result.skipped.append(
            warning(
                table.ref(pos, column),
                f"changed since run {target} "
                f'(now "{current or ""}", the run wrote "{wrote or ""}"); left as it is',
            )
        )
        return
    old_text = row["old"] if isinstance(row["old"], str) else None
    try:
        old = parse_as(old_text, table.types.get(column, ColumnType.TEXT), locale)
    except Unreadable:
        old = old_text
    result.plan.changes.append(
        CellChange(
            spec.name,
            pos,
            record,
            column,
            to_cell(table.df[column].iloc[pos]),
            old,
            f"undo {target}",
            table.ref(pos, column),
        )
    )

"""Plan -> one batch of sheet patches -> one atomic save.

Every managed cell the plan changes is written, and each change also becomes one ``Activity`` row
(old, new, the rule that decided it). One ``Runs`` row records the run. Output sheets that do not
exist yet are created in the workbook's language; a managed column missing from a data sheet is added
after its last column. Nothing else in the workbook is touched.

A run whose plan changes nothing and found no errors writes nothing at all, so a schedule running
every few minutes never touches (or re-syncs) an unchanged file.

Emails of the plan become ``Emails`` rows here (new keys appended, rows of earlier runs updated in
place, see :mod:`sheetflow.mail.log`); the outcome of sending is written by a second save after the
transport has taken the messages (:mod:`sheetflow.mail.sender`).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sheetflow import contract
from sheetflow.book import NewSheet, SheetPatch
from sheetflow.coerce import as_text, to_cell
from sheetflow.engine.plan import Plan
from sheetflow.engine.sequences import diff_enrollments
from sheetflow.mail.log import add_to_patches
from sheetflow.mail.sender import DeliveryReport, Mailer, apply_outcomes, crash_point
from sheetflow.problems import Problem, note, warning
from sheetflow.tables.archive import LOG_SHEETS, ArchiveBatch, header_label
from sheetflow.tables.loaded import load
from sheetflow.tables.state import State
from sheetflow.tables.table import Table, Tables

MAX_ERRORS_IN_RUNS = 20


@dataclass
class _Target:
    """Where rows for one sheet go, allocating new columns and rows as the batch grows."""

    patch: SheetPatch
    table: Table | None
    header_row: int
    columns: dict[str, int]
    next_col: int
    next_row: int
    lang: str
    new_headers: dict[str, int] = field(default_factory=dict)
    start_row: int = 0  # the first row appended in this run

    def __post_init__(self) -> None:
        self.start_row = self.next_row

    def column(self, name: str) -> int:
        if name not in self.columns:
            col_spec = self.table.spec.column(name) if self.table is not None else None
            if self.table is not None and self.table.exists:
                col = self.table.column_number(name, reserve=True)  # where the plan said it goes
            else:
                col = self.next_col
            self.columns[name] = col
            self.next_col = max(self.next_col, col + 1)
            header = contract.label(col_spec, self.lang) if col_spec else name
            self.patch.cells[(self.header_row, col)] = header
        return self.columns[name]

    def append(self, values: dict[str, Any]) -> int:
        row = self.next_row
        self.next_row += 1
        for name, value in values.items():
            self.patch.cells[(row, self.column(name))] = value
        return row


class PatchBuilder:
    def __init__(self, tables: Tables):
        self.tables = tables
        self.lang = tables.language
        self.patches: dict[str, SheetPatch] = {}
        self.targets: dict[str, _Target] = {}

    def target(self, canonical: str) -> _Target:
        if canonical in self.targets:
            return self.targets[canonical]
        table = self.tables.get(canonical)
        spec = contract.BY_NAME[canonical]
        if table is not None and table.exists and not table.readable:
            # no header row was found: the problem is reported and nothing is written to that sheet
            target = _Target(SheetPatch(table.sheet, {}), None, 1, {}, 1, 2, self.lang)
            self.targets[canonical] = target
            return target
        if table is not None and table.exists:
            patch = self.patches.setdefault(table.sheet, SheetPatch(table.sheet, {}))
            header_row = table.header_row or 1
            target = _Target(
                patch,
                table,
                header_row,
                dict(table.col_index),
                max(table.last_col, max(table.col_index.values(), default=0)) + 1,
                max(table.last_row, header_row) + 1,
                self.lang,
            )
            if not table.header_row:  # an empty sheet: give it the contract header
                for col in spec.columns:
                    target.column(col.name)
        else:
            name = contract.label(spec, self.lang)
            widths = {i + 1: c.width for i, c in enumerate(spec.columns)}
            hidden = spec.kind is contract.Kind.SYSTEM
            patch = SheetPatch(
                name,
                {},
                new=NewSheet(
                    state="veryHidden" if hidden else "visible",
                    freeze_rows=0 if hidden else 1,
                    col_widths=widths,
                    bold_rows=set() if hidden else {1},
                ),
            )
            self.patches[name] = patch
            target = _Target(patch, table, 1, {}, 1, 2, self.lang)
            for col in spec.columns:
                target.column(col.name)
        self.targets[canonical] = target
        return target

    def set_cell(self, canonical: str, position: int, column: str, value: Any) -> None:
        """Write a managed cell of a record; a cell holding a formula is never written (the last guard:
        the engine already left such cells out and said so)."""
        target = self.target(canonical)
        if target.table is None or holds_formula(target.table, position, column):
            return
        row = int(target.table.rows[position])
        target.patch.cells[(row, target.column(column))] = value
        key = _row_key(target.table, position)
        if key is not None:
            target.patch.key_col, target.patch.keys[row] = key


KEY_COLUMNS = ("id", "key", "run_id")
"""The column that names a row's record (records, Emails/Enrollments, Runs): a backend whose rows can move
under a run (Google Sheets) finds each patched row again by it."""


def _row_key(table: Table, position: int) -> tuple[int, str] | None:
    """(sheet column, key text) of the record at df row ``position``, or None when the sheet has no key."""
    for name in KEY_COLUMNS:
        col = table.col_index.get(name)
        if col is not None and name in table.df.columns:
            value = table.df[name].iloc[position]
            if isinstance(value, str) and value.strip():
                return col, value.strip()
            return None
    return None


def build_patches(
    plan: Plan,
    tables: Tables,
    *,
    elapsed: dt.timedelta = dt.timedelta(0),
    write_state: bool = True,
    trim: LogTrim | None = None,
) -> list[SheetPatch]:
    """All writes of a run. ``elapsed`` (wall-clock time so far) dates the end of the run in Runs.
    ``trim``: keep the logs under the cap; the rows that leave them are in ``trim.batches`` afterwards (the
    caller archives them before it writes the patches)."""
    builder = PatchBuilder(tables)
    at = plan.local_now
    changes = [ch for ch in plan.changes if not holds_formula(tables[ch.table], ch.position, ch.column)]
    for ch in changes:
        builder.set_cell(ch.table, ch.position, ch.column, ch.new)
    if changes:
        activity = builder.target("Activity")
        for ch in changes:
            activity.append(
                {
                    "at": at,
                    "run_id": plan.run_id,
                    "table": ch.table,
                    "record_id": ch.record_id,
                    "column": ch.column,
                    "old": as_text(ch.old),
                    "new": as_text(ch.new),
                    "rule": ch.rule,
                }
            )
    for item in plan.appends:
        builder.target(item.sheet).append(item.values)
    if plan.enrollments is not None:
        enrollments_patch(builder, plan.enrollments)
    if plan.emails:
        add_to_patches(builder, plan)
    builder.target("Runs").append(runs_row(plan, at + elapsed))
    if plan.report:
        report_patch(builder, plan)
    if write_state:
        state_patch(builder, plan.state)
    if trim is not None:
        trim_logs(builder, trim)
        runs = builder.targets.get("Runs")
        if runs is not None:
            trim.runs_at = (runs.patch, runs.next_row - 1, runs.columns)
    return list(builder.patches.values())


def finish_runs_row(trim: LogTrim, plan: Plan) -> None:
    """Rewrite this run's Runs row (counts, notes) once the archive has been written: what moved there and
    the warnings that only the archiving knows are then in the row, with their counts (issue 10)."""
    if trim.runs_at is None:
        return
    patch, row, columns = trim.runs_at
    values = runs_row(plan, None)
    for name in ("counts", "errors"):
        col = columns.get(name)
        if col is not None:
            patch.cells[(row, col)] = values[name]


def enrollments_patch(builder: PatchBuilder, rows: list[dict[str, Any]]) -> None:
    """The Enrollments sheet: changed cells of existing rows, new enrollments appended (one bulk patch)."""
    added, updated = diff_enrollments(builder.tables.get("Enrollments"), rows)
    if not added and not updated:
        return
    target = builder.target("Enrollments")
    for pos, column, value in updated:
        builder.set_cell("Enrollments", pos, column, value)
    for row in added:
        target.append(row)


def holds_formula(table: Table, position: int, column: str) -> bool:
    mask = table.formulas.get(column)
    return mask is not None and 0 <= position < len(mask) and bool(mask[position])


def runs_row(plan: Plan, finished: Any) -> dict[str, Any]:
    errors = [str(p) for p in plan.errors]
    if len(errors) > MAX_ERRORS_IN_RUNS:
        errors = errors[:MAX_ERRORS_IN_RUNS] + [
            f"... and {len(errors) - MAX_ERRORS_IN_RUNS} more (run sheetflow check)"
        ]
    # the notes a person should read (baseline, dropped catch-ups, who left a sequence) are kept with
    # the run, not only printed (issue 10.2)
    notes = plan.notices[:MAX_ERRORS_IN_RUNS]
    if len(plan.notices) > len(notes):
        notes.append(f"... and {len(plan.notices) - len(notes)} more notes")
    errors += [f"note: {text}" for text in notes]
    return {
        "run_id": plan.run_id,
        "started_at": plan.local_now,
        "finished_at": finished,
        "mode": plan.mode,
        "trigger": plan.trigger,
        "counts": plan.summary(),
        "errors": "\n".join(errors),
    }


def report_patch(builder: PatchBuilder, plan: Plan) -> None:
    """The Report sheet, rebuilt: new cells written, cells of the previous report that are left cleared."""
    table = builder.tables.get("Report")
    cells: dict[tuple[int, int], Any] = {}
    if table is not None and table.exists:
        for r in range(1, table.last_row + 1):
            for c in range(1, table.last_col + 1):
                cells[(r, c)] = None
        patch = SheetPatch(table.sheet, cells)
    else:
        widths: dict[int, float] = {1: 30, 2: 18, 3: 22, 4: 14, 5: 14, 6: 12, 7: 18}
        patch = SheetPatch(
            contract.label(contract.BY_NAME["Report"], builder.lang),
            cells,
            new=NewSheet(col_widths=widths, bold_rows=set(plan.report_bold)),
        )
    for r, row in enumerate(plan.report, start=1):
        for c, value in enumerate(row, start=1):
            if value not in (None, ""):
                cells[(r, c)] = value
    builder.patches[patch.sheet] = patch


def state_patch(builder: PatchBuilder, state: State) -> None:
    """The whole state sheet, rewritten (it belongs to sheetflow)."""
    table = builder.tables.get(contract.STATE_SHEET)
    rows = state.rows()
    if table is not None and table.exists:
        patch = SheetPatch(table.sheet, {}, replace=True)
    else:
        patch = SheetPatch(contract.STATE_SHEET, {}, new=NewSheet(state="veryHidden"))
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            patch.cells[(r, c)] = value
    builder.patches[patch.sheet] = patch


def needs_write(plan: Plan, old_state: State) -> bool:
    """False when the run would only log itself: nothing changed, no errors, state as before.

    A first run always writes: it records the baseline (even of an empty sheet), so contacts typed
    after it are new (issue 10.1)."""
    if plan.changes or plan.appends or plan.errors or +plan.added or +plan.updates:
        return True
    if not old_state.has_history and plan.mode != "send" and "send" not in plan.stages:
        return True
    return plan.state is not old_state and plan.state_changed  # computed once by the engine


# ---------------------------------------------------------------- log cap (sheetflow.tables.archive)

OPEN_EMAIL = ("planned", "sending")
RUNNING_ENROLLMENT = ("active", "ativa", "ativo", "em andamento", "waiting", "aguardando")


@dataclass
class LogTrim:
    """Keeps each log at most ``cap`` rows while a run's patches are built (see :mod:`sheetflow.tables.archive`).

    ``full(names)`` reads logs in full (canonical -> Table); the builder's tables may hold only their header.
    After :func:`trim_logs`, ``batches`` holds the rows that leave the workbook; :meth:`report` says so.
    """

    cap: int
    full: Callable[[list[str]], dict[str, Table]]
    batches: list[ArchiveBatch] = field(default_factory=list)
    moved: list[tuple[str, str, int, int, int]] = field(
        default_factory=list
    )  # sheet, log, before, moved, left
    # rows the post-send save adds (an Activity row per email sent, for last_emailed_at): room is kept for
    # them here, so the cap holds after the whole run, not only after its first save (issue 10)
    reserve: dict[str, int] = field(default_factory=dict)
    runs_at: tuple[SheetPatch, int, dict[str, int]] | None = None  # this run's Runs row: patch, row, columns

    def report(self, files: dict[str, list[Path]], folder: str = ".sheetflow") -> list[Problem]:
        """What moved where, once the archive is written (``files``: log -> archive files it went to)."""
        out = []
        for sheet, canonical, before, moved, left in self.moved:
            names = [f"{folder}/{p.name}" for p in files.get(canonical, [])]
            where = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}" if names else "the archive"
            if not moved:
                pass
            elif before > self.cap:
                out.append(
                    warning(
                        sheet,
                        f"{before:,} rows, more than log_max_rows ({self.cap:,}): the {moved:,} oldest moved to "
                        f"{where}",
                        "nothing is lost: undo and the email log read the archive too",
                    )
                )
            else:
                out.append(
                    note(
                        sheet,
                        f"{moved:,} rows of {sheet} moved to {where} (the oldest; log_max_rows {self.cap:,})",
                    )
                )
            if left > self.cap:
                out.append(
                    warning(
                        sheet,
                        f"{left:,} rows stay, more than log_max_rows ({self.cap:,}): the others are not finished",
                        "mark done tasks as done; planned emails leave once they are sent",
                    )
                )
        return out


def over_cap(tables: Tables, cap: int) -> list[str]:
    """Logs that already hold more than ``cap`` rows (as read, before this run adds any)."""
    out = []
    for name in LOG_SHEETS:
        table = tables.get(name)
        if (
            table is not None
            and table.exists
            and table.header_row
            and table.last_row - table.header_row > cap
        ):
            out.append(name)
    return out


def _finished(canonical: str, values: dict[str, object]) -> bool:
    """Whether a log row may leave the sheet: its story is over (nobody works on it any more)."""
    if canonical == "Emails":
        status = values.get("status")
        return not (isinstance(status, str) and status.strip().lower() in OPEN_EMAIL)
    if canonical == "Tasks":
        return to_cell(values.get("done")) is True
    if canonical == "Enrollments":
        status = values.get("status")
        return (
            isinstance(status, str)
            and bool(status.strip())
            and status.strip().lower() not in RUNNING_ENROLLMENT
        )
    return True


def trim_logs(builder: PatchBuilder, trim: LogTrim) -> None:
    """Move the oldest finished rows of every log over the cap out of its patch into ``trim.batches``.

    A log over the cap keeps its newest rows: ``cap - cap // 10`` of them, so that the next runs only append
    until it is full again. Existing rows leave through the patch's ``delete_rows`` (rows below move up, as
    with Excel's "Delete row"); rows this run appends and that are already too old are not written at all.
    Rows this run updates (an Emails status) and unfinished rows stay, even if the log then stays over the cap.
    """
    cap, keep = trim.cap, trim.cap - trim.cap // 10
    for canonical in LOG_SHEETS:
        if canonical not in contract.BY_NAME:
            continue
        table = builder.tables.get(canonical)
        target = builder.targets.get(canonical)
        exists = table is not None and table.exists and bool(table.header_row)
        existing = (table.last_row - table.header_row) if exists else 0  # type: ignore[union-attr]  # exists implies a table
        new = (target.next_row - target.start_row) if target is not None else 0
        reserve = min(trim.reserve.get(canonical, 0), keep)
        if existing + new + reserve <= cap:
            continue
        if exists and existing and len(table) == 0:  # type: ignore[arg-type]  # exists implies a table; only the header was read: read the rows now
            full = trim.full([canonical]).get(canonical)
            if full is None or full.header_row != table.header_row or full.col_index != table.col_index:  # type: ignore[union-attr]  # exists implies a table
                continue
            table = full
        _trim_one(builder, trim, canonical, table if exists else None, target, keep - reserve)


def _trim_one(
    builder: PatchBuilder,
    trim: LogTrim,
    canonical: str,
    table: Table | None,
    target: _Target | None,
    keep: int,
) -> None:
    patch = (
        target.patch
        if target is not None
        else builder.patches.get(table.sheet)
        if table is not None
        else None
    )
    if patch is None:
        patch = builder.patches.setdefault(table.sheet, SheetPatch(table.sheet, {}))  # type: ignore[union-attr]  # the caller passes a table or a patch
    sheet = table.sheet if table is not None else patch.sheet
    positions = range(len(table)) if table is not None else range(0)
    rows = table.rows.tolist() if table is not None else []
    start = target.start_row if target is not None else (table.last_row + 1)  # type: ignore[union-attr]  # the caller passes a table or a target
    end = target.next_row if target is not None else start
    total = len(rows) + (end - start)
    drop = total - keep
    if drop <= 0:
        return
    touched = {r for r, _ in patch.cells if r < start}
    columns = dict(target.columns) if target is not None else dict(table.col_index)  # type: ignore[union-attr]  # the caller passes a table or a target
    by_col = {c: name for name, c in columns.items()}
    gone_old: list[int] = []  # positions in table
    gone_new: set[int] = set()  # sheet rows appended by this run
    if table is not None:
        data = {c: table.df[c].to_numpy(dtype=object) for c in table.col_index}
        always = canonical in ("Activity", "Runs")
        for pos in positions:
            if len(gone_old) == drop:
                break
            if rows[pos] in touched:
                continue
            if always or _finished(canonical, {c: data[c][pos] for c in ("status", "done") if c in data}):
                gone_old.append(pos)
    if len(gone_old) < drop and end > start:
        new_values: dict[int, dict[str, object]] = {}
        for (r, c), value in patch.cells.items():
            if r >= start and c in by_col:
                new_values.setdefault(r, {})[by_col[c]] = value
        for r in range(start, end):
            if len(gone_old) + len(gone_new) == drop:
                break
            if canonical == "Runs" and r == end - 1:
                continue  # this run's own row
            if _finished(canonical, new_values.get(r, {})):
                gone_new.add(r)
    if not gone_old and not gone_new:
        trim.moved.append((sheet, canonical, len(rows), 0, total))  # all unfinished: said by report()
        return
    header_row = table.header_row if table is not None else 1
    labels = [
        (
            name,
            header_label(table, name, builder.lang)
            if table is not None
            else _label(canonical, name, builder.lang),
        )
        for name, _ in sorted(columns.items(), key=lambda item: item[1])
    ]
    batch = ArchiveBatch(canonical, sheet, labels)
    if table is not None:
        for pos in gone_old:
            batch.rows.append({c: data[c][pos] for c in table.col_index})
    new_rows: dict[int, dict[str, object]] = {}
    for (r, c), value in patch.cells.items():
        if r in gone_new and c in by_col:
            new_rows.setdefault(r, {})[by_col[c]] = value
    batch.rows += [new_rows.get(r, {}) for r in sorted(gone_new)]
    trim.batches.append(batch)
    # what is left, renumbered: existing rows move up over the deleted ones, kept new rows follow them
    deleted = sorted(int(rows[pos]) for pos in gone_old)
    kept_new = [r for r in range(start, end) if r not in gone_new]
    first_new = start - len(deleted)
    new_row_of = {r: first_new + i for i, r in enumerate(kept_new)}
    cells: dict[tuple[int, int], Any] = {}
    for (r, c), value in patch.cells.items():
        if r >= start:
            if r in new_row_of:
                cells[(new_row_of[r], c)] = value
        elif r <= header_row:
            cells[(r, c)] = value
        else:
            cells[(r - bisect.bisect_left(deleted, r), c)] = value
    patch.cells = cells
    patch.delete_rows = tuple(deleted)
    if target is not None:
        target.next_row = first_new + len(kept_new)
    trim.moved.append(
        (sheet, canonical, len(rows), len(gone_old) + len(gone_new), total - len(gone_old) - len(gone_new))
    )


def _label(canonical: str, name: str, lang: str) -> str:
    col = contract.BY_NAME[canonical].column(name)
    return contract.label(col, lang) if col is not None else name


def write_back(mailer: Mailer, plan: Plan, report: DeliveryReport, *, backups: int = 0) -> None:
    """Workbook write #2 of a send (see :mod:`sheetflow.mail.sender`): re-read the workbook (write #1 may have
    added columns), update the Emails rows of this run by key."""
    crash_point("final-write")
    outcomes = [o for o in report.outcomes if o.status != "taken"]
    if not outcomes:
        return
    loaded = load(mailer.book.read(full=("Runs",)))
    builder = PatchBuilder(loaded.tables)
    apply_outcomes(builder, loaded.tables, plan, outcomes, mailer.local_now(plan), report)
    mailer.book.write(list(builder.patches.values()), backups=backups)
    report.written = True
    crash_point("done")

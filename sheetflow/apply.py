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

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from . import contract
from .book import NewSheet, SheetPatch
from .coerce import as_text
from .plan import Plan
from .state import State
from .tables import Table, Tables

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

    def column(self, name: str) -> int:
        if name not in self.columns:
            col_spec = self.table.spec.column(name) if self.table is not None else None
            self.columns[name] = self.next_col
            header = contract.label(col_spec, self.lang) if col_spec else name
            self.patch.cells[(self.header_row, self.next_col)] = header
            self.next_col += 1
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
        target = self.target(canonical)
        row = int(target.table.rows[position])
        target.patch.cells[(row, target.column(column))] = value


def build_patches(
    plan: Plan, tables: Tables, *, elapsed: dt.timedelta = dt.timedelta(0), write_state: bool = True
) -> list[SheetPatch]:
    """All writes of a run. ``elapsed`` (wall-clock time so far) dates the end of the run in Runs."""
    builder = PatchBuilder(tables)
    at = plan.local_now
    for ch in plan.changes:
        builder.set_cell(ch.table, ch.position, ch.column, ch.new)
    if plan.changes:
        activity = builder.target("Activity")
        for ch in plan.changes:
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
        from .mail.log import add_to_patches

        add_to_patches(builder, plan)
    builder.target("Runs").append(runs_row(plan, at + elapsed))
    if plan.report:
        report_patch(builder, plan)
    if write_state:
        state_patch(builder, plan.state)
    return list(builder.patches.values())


def enrollments_patch(builder: PatchBuilder, rows: list[dict[str, Any]]) -> None:
    """The Enrollments sheet: changed cells of existing rows, new enrollments appended (one bulk patch)."""
    from .sequences import diff_enrollments

    added, updated = diff_enrollments(builder.tables.get("Enrollments"), rows)
    if not added and not updated:
        return
    target = builder.target("Enrollments")
    for pos, column, value in updated:
        builder.set_cell("Enrollments", pos, column, value)
    for row in added:
        target.append(row)


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
        widths = {1: 30, 2: 18, 3: 22, 4: 14, 5: 14, 6: 12, 7: 18}
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
    return _records_rows(plan.state) != _records_rows(old_state)


def _records_rows(state: State) -> list[list[str]]:
    return [r for r in state.rows()[1:] if r[0] != "meta"]

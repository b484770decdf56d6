"""The run's context: what every stage of the engine reads (tables, settings, saved state) and writes
(the Plan). ``Context.change`` is the one way a stage changes a cell: it records the reason, skips
formula cells (the contract: sheetflow never overwrites a formula) and unreadable cells.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from sheetflow.coerce import as_text, to_cell
from sheetflow.engine.plan import CellChange, Plan, RowAppend
from sheetflow.problems import Problem, warning
from sheetflow.rules.expr import Frame
from sheetflow.tables.settings import Settings
from sheetflow.tables.state import State
from sheetflow.tables.table import Table, Tables

MAX_FORMULA_WARNINGS = 5  # per column: a column of formulas is one decision, not 10,000 warnings


@dataclass
class Context:
    """What a stage works on; ``tables`` hold the values as this run will leave them."""

    tables: Tables
    settings: Settings
    state: State  # what earlier runs saw: read it, never change it
    plan: Plan
    frames: dict[str, Frame] = field(default_factory=dict)
    memory: dict[str, dict[str, str]] = field(default_factory=dict)  # state sections this run leaves
    tracked: dict[str, set[str]] = field(default_factory=dict)  # extra columns to remember per table
    baseline_said: bool = False  # a stage already told people about this run's baseline
    # (table, column) -> refs of formula cells a stage wanted to write (reported once, see formula_problems)
    formula_cells: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, str]:
        """A state section (e.g. round-robin pointers) as this run will save it; starts as last run's."""
        if name not in self.memory:
            self.memory[name] = dict(self.state.sections.get(name, {}))
        return self.memory[name]

    def notice(self, en: str, pt: str) -> None:
        """Something a person should read after this run (baseline, dropped catch-ups, who left a
        sequence), in the workbook's language; ``run`` prints it and the Runs row keeps it."""
        text = pt if self.portuguese else en
        if text not in self.plan.notices:
            self.plan.notices.append(text)

    def append(self, sheet: str, values: dict[str, object], rule: str = "") -> None:
        """Append a row to an output sheet (Tasks, ...), values by canonical column."""
        self.plan.appends.append(RowAppend(sheet, values, rule))

    # "who gets a task when nobody owns it": one rule for assignment, automations and SLA
    @property
    def fallback_owner(self) -> str:
        """Settings ``fallback_owner``: the rep who answers for records nobody owns ("" when unset)."""
        return self.settings.text("fallback_owner").strip()

    def owner_of(self, table: Table, pos: int) -> str:
        """Who answers for a record: its ``owner``, else :attr:`fallback_owner` ("" when neither is set)."""
        owner = table.df["owner"].iloc[pos] if "owner" in table.df else None
        return owner.strip() if isinstance(owner, str) and owner.strip() else self.fallback_owner

    def task(
        self,
        owner: str,
        text: str,
        rule: str,
        *,
        table: str = "",
        record_id: object = "",
        due: object = None,
    ) -> None:
        """A row for the Tasks sheet, created now and due ``due`` (default: now), not done."""
        at = self.plan.local_now
        row = {"created_at": at, "due_at": at if due is None else due, "owner": owner, "table": table}
        row |= {"record_id": record_id, "text": text, "rule": rule, "done": False}
        self.append("Tasks", row, rule)

    @property
    def portuguese(self) -> bool:
        return self.tables.language == "pt-BR"

    def frame(self, table: str) -> Frame:
        frame = self.frames.get(table)
        if frame is None:
            frame = self.frames[table] = Frame(self.tables[table].df, self.plan.local_now.date())
        return frame

    def change(
        self,
        table: Table,
        positions: Iterable[int],
        column: str,
        values: Iterable[object],
        rules: Iterable[str],
    ) -> None:
        """Record changes and update the in-memory table so later stages see them."""
        positions = list(positions)
        new_values = list(values)
        rules = list(rules)
        kept = table.unreadable.get(column)
        if kept and any(p in kept for p in positions):  # never write over a cell we could not read
            keep = [i for i, p in enumerate(positions) if p not in kept]
            for i in (i for i, p in enumerate(positions) if p in kept):
                problem = warning(
                    table.ref(positions[i], column),
                    "holds a value sheetflow could not read; it is left as it is",
                    "fix or clear the cell so sheetflow can manage it",
                )
                if problem not in self.plan.problems:
                    self.plan.problems.append(problem)
            positions = [positions[i] for i in keep]
            new_values = [new_values[i] for i in keep]
            rules = [rules[i] for i in keep]
        if not positions:
            return
        formulas = table.formulas.get(column)
        if formulas is not None and formulas[positions].any():  # never overwrite a formula
            keep = [i for i, p in enumerate(positions) if not formulas[p]]
            left = self.formula_cells.setdefault((table.spec.name, column), [])
            left += [table.ref(p, column) for p in positions if formulas[p]]
            positions = [positions[i] for i in keep]
            new_values = [new_values[i] for i in keep]
            rules = [rules[i] for i in keep]
            if not positions:
                return
        df = table.df
        ids = new_values if column == "id" else df["id"].to_numpy(dtype=object)[positions]
        olds = df[column].to_numpy(dtype=object)[positions]
        refs = table.refs(positions, column)
        self.plan.changes.extend(
            CellChange(
                table.spec.name,
                pos,
                rid if isinstance(rid, str) else "",
                column,
                to_cell(old),
                to_cell(new),
                rule,
                ref,
            )
            for pos, rid, old, new, rule, ref in zip(positions, ids, olds, new_values, rules, refs)
        )
        col = df[column].copy()
        col.iloc[positions] = _storable(col, new_values)
        df[column] = col
        self.frames.pop(table.spec.name, None)


def skip_formulas(ctx: Context, table: Table, column: str, positions: Iterable[int]) -> list[int]:
    """``positions`` without the rows whose ``column`` cell holds a formula; those cells are reported
    (formula_problems). For stages that must know before acting (an escalation whose ``escalated_at`` is a
    formula is not sent, since sheetflow could not record it), so every skipped formula cell is said."""
    positions = list(positions)
    mask = table.formulas.get(column)
    if mask is None or not positions:
        return positions
    hit = [p for p in positions if mask[p]]
    if hit:
        ctx.formula_cells.setdefault((table.spec.name, column), []).extend(table.refs(hit, column))
    return [p for p in positions if not mask[p]]


def _late_formula_cells(ctx: Context) -> None:
    """Formula cells the plan reaches by another path than Context.change: changes stages append directly
    (an email settled from the journal sets last_emailed_at) and the ``last_emailed_at`` the mail
    write-back sets after a send (sheetflow/mail/sender.py skips formula cells)."""
    for ch in ctx.plan.changes:
        table = ctx.tables.get(ch.table)
        mask = table.formulas.get(ch.column) if table is not None else None
        if table is not None and mask is not None and 0 <= ch.position < len(mask) and mask[ch.position]:
            ctx.formula_cells.setdefault((ch.table, ch.column), []).append(table.ref(ch.position, ch.column))
    contacts = ctx.tables.get("Contacts")
    mask = contacts.formulas.get("last_emailed_at") if contacts is not None else None
    if contacts is None or mask is None or not mask.any() or not ctx.plan.emails:
        return
    ids = contacts.df["id"].to_numpy(dtype=object).tolist()
    where = {rid.strip(): p for p, rid in enumerate(ids) if isinstance(rid, str) and rid.strip()}
    for email in ctx.plan.emails:
        pos = where.get(email.contact_id) if email.contact_id else None
        if pos is not None and mask[pos] and email.status not in ("skipped", "failed", "bounced"):
            ctx.formula_cells.setdefault(("Contacts", "last_emailed_at"), []).append(
                contacts.ref(pos, "last_emailed_at")
            )


def formula_problems(ctx: Context) -> list[Problem]:
    """One warning per formula cell a stage wanted to write (at most ``MAX_FORMULA_WARNINGS`` per column,
    then one line with the rest): the contract says sheetflow never overwrites a formula."""
    _late_formula_cells(ctx)
    problems: list[Problem] = []
    pt = ctx.portuguese
    for (_table, _column), refs in ctx.formula_cells.items():
        refs = list(dict.fromkeys(refs))
        for ref in refs[:MAX_FORMULA_WARNINGS]:
            problems.append(
                warning(
                    ref,
                    "tem uma fórmula; o sheetflow não mexe nela"
                    if pt
                    else "holds a formula; sheetflow leaves it alone",
                    "apague-a se o sheetflow deve cuidar desta célula"
                    if pt
                    else "clear it if sheetflow should manage this cell",
                )
            )
        if len(refs) > MAX_FORMULA_WARNINGS:
            more = len(refs) - MAX_FORMULA_WARNINGS
            problems.append(
                warning(
                    refs[MAX_FORMULA_WARNINGS],
                    f"e mais {more} células desta coluna têm fórmulas; o sheetflow não mexe nelas"
                    if pt
                    else f"and {more} more cells of this column hold formulas; sheetflow leaves them alone",
                    "apague-as se o sheetflow deve cuidar dessas células"
                    if pt
                    else "clear them if sheetflow should manage these cells",
                )
            )
    return problems


def _storable(series: pd.Series, values: list[object]) -> list[object]:
    """Values as the in-memory column can hold them: the cell gets the typed value (a date written by
    ``set`` into a text column is a date cell), the text column its text, as the next run will read it."""
    if series.dtype.kind in ("O", "U", "T") or pd.api.types.is_string_dtype(series.dtype):
        return [v if v is None or isinstance(v, str) else as_text(v) for v in values]
    return values

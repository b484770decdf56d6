"""The engine: tables + rules + saved state + clock -> Plan. Pure: no files, no network, no clock reads.

Stages run in a fixed order, each seeing the previous stages' results (a score computed by
``scoring`` is what ``lifecycle`` compares with the thresholds). A stage that fails on user input
reports problems and the others still run. Later features register their stages in ``STAGES``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from . import contract
from .coerce import as_text, to_cell
from .expr import Frame
from .names import normalize
from .plan import CellChange, Plan, RowAppend
from .problems import Problem, UsageError, error, warning
from .rulesheets import load_scoring
from .settings import Settings
from .state import TRACKED, VERSION, State
from .tables import Table, Tables

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


def formula_problems(ctx: Context) -> list[Problem]:
    """One warning per formula cell a stage wanted to write (at most ``MAX_FORMULA_WARNINGS`` per column,
    then one line with the rest): the contract says sheetflow never overwrites a formula."""
    problems: list[Problem] = []
    for (_table, _column), refs in ctx.formula_cells.items():
        refs = list(dict.fromkeys(refs))
        for ref in refs[:MAX_FORMULA_WARNINGS]:
            problems.append(
                warning(
                    ref,
                    "holds a formula; sheetflow leaves it alone",
                    "clear it if sheetflow should manage this cell",
                )
            )
        if len(refs) > MAX_FORMULA_WARNINGS:
            problems.append(
                warning(
                    refs[MAX_FORMULA_WARNINGS],
                    f"and {len(refs) - MAX_FORMULA_WARNINGS} more cells of this column hold formulas; "
                    "sheetflow leaves them alone",
                    "clear them if sheetflow should manage these cells",
                )
            )
    return problems


def _storable(series: pd.Series, values: list[object]) -> list[object]:
    """Values as the in-memory column can hold them: the cell gets the typed value (a date written by
    ``set`` into a text column is a date cell), the text column its text, as the next run will read it."""
    if series.dtype.kind in ("O", "U", "T") or pd.api.types.is_string_dtype(series.dtype):
        return [v if v is None or isinstance(v, str) else as_text(v) for v in values]
    return values


# ---------------------------------------------------------------- ids

_SUFFIX = re.compile(r"^(.*?)(\d+)$")


def stage_ids(ctx: Context) -> None:
    """Give every record a stable unique id: prefix + next number after the largest one in use.

    Deterministic (the same sheet gets the same ids in a dry run and in the real run after it), and
    never reuses an id that is already in the sheet.
    """
    for name in contract.RECORD_SHEETS:
        table = ctx.tables[name]
        if not len(table):
            continue
        ids = table.df["id"]
        present = ids.dropna()
        dupes = present[present.str.strip().duplicated(keep=False)]
        first_seen: dict[str, int] = {}
        for pos, rid in dupes.items():
            if rid.strip() in first_seen:
                ctx.plan.problems.append(
                    warning(
                        table.ref(int(pos), "id"),
                        f'id "{rid}" is also used in {table.ref(first_seen[rid.strip()], "id")}',
                        "give each record its own id (or clear this cell and sheetflow fills it)",
                    )
                )
            else:
                first_seen[rid.strip()] = int(pos)
        blank = np.flatnonzero(ids.isna().to_numpy() | (ids.fillna("").str.strip() == "").to_numpy())
        if not len(blank):
            continue
        prefix = table.spec.id_prefix
        used = set(present.str.strip())
        highest = 0
        for rid in used:
            m = _SUFFIX.match(rid)
            if m and m.group(1) == prefix:
                highest = max(highest, int(m.group(2)))
        new_ids = []
        n = highest
        for _ in blank:
            n += 1
            while f"{prefix}{n:05d}" in used:
                n += 1
            new_ids.append(f"{prefix}{n:05d}")
        ctx.change(table, blank.tolist(), "id", new_ids, ["id: new record"] * len(new_ids))


# ---------------------------------------------------------------- scoring


def stage_scoring(ctx: Context) -> None:
    """Recompute every contact's score from scratch: the sum of the points of the rules that hold."""
    contacts = ctx.tables["Contacts"]
    rules, problems = load_scoring(ctx.tables)
    ctx.plan.problems += problems
    if not ctx.tables["Scoring"].exists or not len(contacts):
        return
    frame = ctx.frame("Contacts")
    masks = np.zeros((len(rules), len(contacts)), dtype=bool)
    for i, rule in enumerate(rules):
        try:
            masks[i] = rule.when.mask(frame)
        except Exception as e:  # noqa: BLE001 - a rule must never stop the run; report where it failed
            ctx.plan.problems.append(error(rule.where, f'rule "{rule.name}" could not be evaluated: {e}'))
    points = np.asarray([r.points for r in rules], dtype="float64")
    scores = points @ masks if len(rules) else np.zeros(len(contacts))
    old = contacts.df["score"].to_numpy(dtype="float64", na_value=np.nan)
    differs = np.flatnonzero(~np.isclose(old, scores, equal_nan=False) | np.isnan(old))
    if not len(differs):
        return
    # rows that matched the same rules share one explanation: compute it once per pattern
    patterns, inverse = np.unique(np.packbits(masks[:, differs], axis=0).T, axis=0, return_inverse=True)
    texts = []
    for packed in patterns:
        hits = np.flatnonzero(np.unpackbits(packed)[: len(rules)])
        text = ", ".join(f"{rules[j].name} ({rules[j].points:+g})" for j in hits) or "no rule matched"
        texts.append(f"Scoring: {text}"[:500])
    reasons = [texts[i] for i in np.asarray(inverse).ravel().tolist()]
    ctx.change(contacts, differs.tolist(), "score", [float(s) for s in scores[differs]], reasons)


# ---------------------------------------------------------------- lifecycle


def stage_lifecycle(ctx: Context) -> None:
    """Move contacts forward lead -> mql -> sql when their score reaches the Settings thresholds.

    Never backwards, never past sql: later stages are set by people and automations. A blank stage counts
    as lead; a stage we do not recognise is left alone.
    """
    contacts = ctx.tables["Contacts"]
    if not len(contacts):
        return
    mql, sql = ctx.settings.number("mql_threshold"), ctx.settings.number("sql_threshold")
    scores = contacts.df["score"].to_numpy(dtype="float64", na_value=np.nan)
    raw = contacts.df["lifecycle_stage"]
    known = {v: contract.lifecycle_value(v) for v in raw.dropna().unique()}
    stages = np.asarray(
        [
            known.get(v, "lead") if isinstance(v, str) and v.strip() else "lead"
            for v in raw.to_numpy(dtype=object)
        ],
        dtype=object,
    )
    lang = "pt" if ctx.portuguese else "en"
    with np.errstate(invalid="ignore"):
        to_sql = (stages == "lead") | (stages == "mql")
        to_sql &= (scores >= sql) if sql is not None else False
        to_mql = (stages == "lead") & ~to_sql
        to_mql &= (scores >= mql) if mql is not None else False
    positions, values, reasons = [], [], []
    for target, mask, threshold, key in (
        ("sql", to_sql, sql, "sql_threshold"),
        ("mql", to_mql, mql, "mql_threshold"),
    ):
        hits = np.flatnonzero(mask)
        positions += hits.tolist()
        values += [contract.lifecycle_label(target, lang)] * len(hits)
        reasons += [f"Lifecycle: score {scores[p]:g} reached Settings {key} = {threshold:g}" for p in hits]
    ctx.change(contacts, positions, "lifecycle_stage", values, reasons)


# ---------------------------------------------------------------- state


def remember(ctx: Context) -> State:
    """The state the next run will compare with: every record's tracked values as this run leaves them."""
    old = ctx.state
    sections = {k: dict(v) for k, v in old.sections.items()}
    sections.update({k: dict(v) for k, v in ctx.memory.items()})
    new = State(meta=dict(old.meta), sections=sections, gone={k: set(v) for k, v in old.gone.items()})
    for name, base in TRACKED.items():
        columns = tuple(dict.fromkeys((*base, *sorted(ctx.tracked.get(name, ())))))
        table = ctx.tables[name]
        seen = new.seen(name)
        previous = old.records.get(name, {})
        if not len(table):
            seen.update(previous)  # a sheet emptied or missing for a run: keep what was seen
            continue
        ids = table.df["id"].to_numpy(dtype=object)
        cols = {c: _json_column(table.df[c]) for c in columns if c in table.df}
        names = list(cols)
        rows = zip(*cols.values()) if names else ((),) * len(ids)
        for pos, values in enumerate(rows):
            rid = ids[pos]
            if isinstance(rid, str) and rid.strip():
                seen[rid.strip()] = dict(zip(names, values))
        # tombstones: ids seen before and no longer in the sheet are remembered (id only), so a row cut
        # and pasted back later is not "new" again; an id that is back leaves the tombstones
        gone = new.gone.setdefault(name, set())
        gone.update(rid for rid in previous if rid not in seen)
        gone.difference_update(seen)
        if not gone:
            del new.gone[name]
    new.meta.update(
        version=VERSION,
        last_run_id=ctx.plan.run_id,
        last_run_at=ctx.plan.local_now.isoformat(timespec="seconds"),
    )
    new.meta.setdefault("baseline_at", ctx.plan.local_now.isoformat(timespec="seconds"))
    return new


def _json_column(series: pd.Series) -> list[object]:
    """A column as JSON-ready Python values (fast paths: this runs over every record every run)."""
    if series.dtype.kind == "f":
        return [None if v != v else (int(v) if v.is_integer() else v) for v in series.tolist()]
    if series.dtype.kind == "M":
        return [None if v is None else v for v in series.dt.strftime("%Y-%m-%dT%H:%M:%S").tolist()]
    return [v if isinstance(v, (str, bool, int)) else None for v in series.to_numpy(dtype=object).tolist()]


# ---------------------------------------------------------------- the run

Stage = Callable[[Context], None]


def _later(module: str, function: str) -> Stage:
    """A stage defined in a module that itself imports the engine (imported when the stage runs)."""

    def stage(ctx: Context) -> None:
        getattr(importlib.import_module(f".{module}", __package__), function)(ctx)

    stage.__name__ = function
    return stage


STAGES: dict[str, Stage] = {
    "scoring": stage_scoring,
    "lifecycle": stage_lifecycle,
    "assignment": _later("assignment", "stage_assignment"),
    "pipeline": _later("automations", "stage_pipeline"),
    "sla": _later("sla", "stage_sla"),
    "automations": _later("automations", "stage_automations"),
    "sequences": _later("sequences", "stage_sequences"),
}


def new_run_id(now: dt.datetime) -> str:
    return f"R{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def plan_run(
    tables: Tables,
    settings: Settings,
    state: State,
    now: dt.datetime,
    *,
    mode: str = "run",
    only: Iterable[str] | None = None,
    trigger: str = "cli",
    run_id: str | None = None,
) -> Plan:
    """Decide everything this run will do. A naive ``now`` is wall-clock time in the workbook's timezone."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=settings.timezone)
    selected = list(STAGES)
    if only is not None:  # an empty list: no stage (ids are filled and the Report rebuilt, nothing else)
        wanted = [normalize(s) for s in only]
        unknown = [s for s in wanted if s not in STAGES]
        if unknown:
            raise UsageError(f"unknown stage {', '.join(unknown)}; choose from {', '.join(STAGES)}")
        selected = [s for s in STAGES if s in wanted]
    local_now = settings.local_now(now)
    plan = Plan(run_id or new_run_id(local_now), now, local_now, mode, trigger, stages=selected)
    # the engine works on its own copies: the caller's tables stay as read
    copies = replace(tables, by_name={k: _copy(t) for k, t in tables.by_name.items()})
    ctx = Context(copies, settings, state, plan)
    stage_ids(ctx)
    for name in selected:
        STAGES[name](ctx)
    plan.problems += formula_problems(ctx)
    plan.problems += [p for p in settings.problems if p not in plan.problems]
    from .report import build

    plan.report, plan.report_bold = build(ctx)
    plan.state = remember(ctx)
    plan.first_run = not state.has_history
    if plan.first_run and not ctx.baseline_said:
        _say_first_run(ctx)
    plan.state_changed = _remembered(plan.state) != _remembered(state)
    return plan


def _remembered(state: State) -> tuple:
    """What a state remembers, without the run bookkeeping (last run id/time change on every run).

    Compared as Python values, not as the sheet's JSON text: this runs on every run over every record."""
    return (
        {t: r for t, r in state.records.items() if r},
        {k: v for k, v in state.sections.items() if v},
        {t: g for t, g in state.gone.items() if g},
    )


def _say_first_run(ctx: Context) -> None:
    """The first run records what is there as the baseline; say it, with what it means for later runs."""
    en, pt = [], []
    for name in contract.RECORD_SHEETS:
        table = ctx.tables[name]
        if table.exists:
            n = sum(1 for v in table.df["id"].to_numpy(dtype=object) if isinstance(v, str) and v.strip())
            from .automations import count_of

            en.append(count_of(n, name, "en"))
            pt.append(count_of(n, name, "pt"))
    ctx.notice(
        f"first run: the baseline is recorded ({', '.join(en) or 'no records yet'}); rules with new, changed:, "
        "entered: or score_reached: triggers fire for what happens from now on",
        f"primeira execução: a base foi registrada ({', '.join(pt) or 'ainda sem registros'}); regras com "
        "gatilhos new, changed:, entered: ou score_reached: disparam para o que acontecer a partir de agora",
    )


def _copy(table: Table) -> Table:
    return replace(table, df=table.df.copy())

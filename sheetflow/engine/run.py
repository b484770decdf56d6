"""The engine: tables + rules + saved state + clock -> Plan. Pure: no files, no network, no clock reads.

Stages run in a fixed order (``STAGES``), each a function of the :class:`~sheetflow.engine.context.Context`.
A stage that fails on user input reports problems and the others still run.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable
from dataclasses import replace

import pandas as pd

from sheetflow import contract
from sheetflow.engine.assignment import stage_assignment
from sheetflow.engine.automations import count_of, stage_automations, stage_pipeline
from sheetflow.engine.context import Context, formula_problems
from sheetflow.engine.emails import mail_settings
from sheetflow.engine.plan import Plan
from sheetflow.engine.report import build
from sheetflow.engine.scoring import stage_ids, stage_lifecycle, stage_scoring
from sheetflow.engine.sequences import stage_sequences
from sheetflow.engine.sla import stage_sla
from sheetflow.names import normalize, text_key
from sheetflow.problems import UsageError
from sheetflow.tables.settings import Settings
from sheetflow.tables.state import TRACKED, VERSION, State
from sheetflow.tables.table import Table, Tables

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


STAGES: dict[str, Stage] = {
    "scoring": stage_scoring,
    "lifecycle": stage_lifecycle,
    "assignment": stage_assignment,
    "pipeline": stage_pipeline,
    "sla": stage_sla,
    "automations": stage_automations,
    "sequences": stage_sequences,
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
    _rep_spelling(ctx)
    plan.problems += formula_problems(ctx)
    settings.validate()  # every setting, whatever this run needed: check and run report the same
    mail_settings(settings, tables)
    plan.problems += [p for p in settings.problems if p not in plan.problems]
    plan.report, plan.report_bold = build(ctx)
    plan.state = remember(ctx)
    plan.first_run = not state.has_history
    if plan.first_run and not ctx.baseline_said:
        _say_first_run(ctx)
    plan.state_changed = _remembered(plan.state) != _remembered(state)
    return plan


def _rep_spelling(ctx: Context) -> None:
    """Tasks go to reps as the Reps sheet spells them: an owner typed ``JOAO`` or ``joão`` on a deal, or a
    fallback_owner ``maria  silva``, is written ``João`` / ``Maria Silva`` (matched with names.text_key,
    the one key for people's names). A name that is no rep stays as typed."""
    reps = ctx.tables.get("Reps")
    if reps is None or not len(reps) or "name" not in reps.df:
        return
    spelled: dict[str, str] = {}
    for name in reps.df["name"].to_numpy(dtype=object).tolist():
        if isinstance(name, str) and name.strip():
            spelled.setdefault(text_key(name), name.strip())
    for item in ctx.plan.appends:
        if item.sheet == "Tasks":
            owner = item.values.get("owner")
            if isinstance(owner, str) and owner.strip():
                item.values["owner"] = spelled.get(text_key(owner), owner)


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

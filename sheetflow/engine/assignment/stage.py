"""The assignment stage (blank owners of Contacts, Deals, Tickets), the Reps summary, and the ``assign``
action of automations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sheetflow import contract
from sheetflow.engine.assignment.assigner import AUTOMATION_KEY, Assigner
from sheetflow.engine.assignment.reps import blank_owner, load_roster, owner_indices
from sheetflow.engine.assignment.rules import AssignRule, load_rules, resolve_assign_to, rule_key
from sheetflow.engine.context import Context
from sheetflow.names import normalize, suggest
from sheetflow.problems import error
from sheetflow.rules.actions import ActionError
from sheetflow.rules.expr import compile_when
from sheetflow.rules.sheets import ASSIGN_METHODS, schema_for
from sheetflow.tables.records import open_mask
from sheetflow.tables.table import Table

_SPACES = re.compile(r"\s+")


# ---------------------------------------------------------------- the stage


def stage_assignment(ctx: Context) -> None:
    """Give blank-owner records an owner by the Assignment rules, and explain every choice."""
    if not ctx.tables["Assignment"].exists:
        return
    assigner = Assigner(ctx)
    rules, problems = load_rules(ctx.tables, assigner.roster)
    ctx.plan.problems += assigner.problems + problems
    for name in contract.RECORD_SHEETS:
        table_rules = [r for r in rules if r.table == name]
        if table_rules and len(ctx.tables[name]):
            _assign_table(ctx, assigner, name, table_rules)
    assigner.finish()
    if hasattr(ctx.plan, "reps"):  # the Reps summary, once Plan carries it (see the module's note)
        ctx.plan.reps = summarize(ctx)


def _assign_table(ctx: Context, assigner: Assigner, name: str, rules: list[AssignRule]) -> None:
    """Records in sheet order; each goes to its first matching rule that has someone eligible."""
    table = ctx.tables[name]
    frame = ctx.frame(name)
    blank = blank_owner(table)
    matches = np.zeros((len(rules), len(table)), dtype=bool)
    for i, rule in enumerate(rules):
        try:
            matches[i] = rule.when.mask(frame).to_numpy() & blank
        except Exception as e:  # noqa: BLE001 - a rule must never stop the run; report where it failed
            ctx.plan.problems.append(error(rule.where, f'rule "{rule.name}" could not be evaluated: {e}'))
    formula = table.formula_mask("owner")
    if formula.any():  # a rule would assign these, but their owner is a formula's decision: say so
        looks_blank = (table.df["owner"].fillna("").astype(str).str.strip() == "").to_numpy(dtype=bool)
        wanted = np.zeros(len(table), dtype=bool)
        for rule in rules:
            try:
                wanted |= rule.when.mask(frame).to_numpy(dtype=bool)
            except Exception:  # noqa: BLE001 - reported above
                pass
        hits = np.flatnonzero(formula & looks_blank & wanted).tolist()
        ctx.formula_cells.setdefault((name, "owner"), []).extend(table.refs(hits, "owner"))
    first = matches.argmax(axis=0).tolist()
    exhausted = [False] * len(rules)  # nobody eligible stays so for the rest of the run
    positions: list[int] = []
    owners: list[str] = []
    texts: list[str] = []
    for pos in np.flatnonzero(matches.any(axis=0)).tolist():
        tried: list[AssignRule] = []
        i = first[pos]
        while i < len(rules):
            choice = None if exhausted[i] else assigner.choose(rules[i], pos, note=_fell_through(tried))
            if choice is not None:
                positions.append(pos)
                owners.append(choice.rep.name)
                texts.append(choice.why)
                break
            exhausted[i] = True
            tried.append(rules[i])
            later = np.flatnonzero(matches[i + 1 :, pos])
            i = i + 1 + int(later[0]) if len(later) else len(rules)
        else:
            assigner.strand(tried, pos)
    ctx.change(table, positions, "owner", owners, texts)
    if "assigned_at" in table.spec.column_names:
        ctx.change(table, positions, "assigned_at", [ctx.plan.local_now] * len(positions), texts)


def _fell_through(tried: Iterable[AssignRule]) -> str:
    names = [f'"{r.name}"' for r in tried]
    return f"nobody eligible in {', '.join(names)}" if names else ""


# ---------------------------------------------------------------- the Reps summary


def summarize(ctx: Context) -> list[dict[str, Any]]:
    """One row per rep for the report: open load per table (after this run), capacity, assigned this run.

    "Assigned" counts every owner this run wrote for the rep (rules and ``assign`` actions alike).
    """
    roster, _ = load_roster(ctx.tables["Reps"], ctx.plan.local_now.date())
    assigned = dict.fromkeys(range(len(roster.reps)), 0)
    for ch in ctx.plan.changes:
        if ch.column == "owner" and (rep := roster.find(ch.new)):
            assigned[rep.index] += 1
    open_by_table: dict[str, np.ndarray] = {}
    for name in contract.RECORD_SHEETS:
        owners = owner_indices(ctx.tables[name], roster)
        mask = open_mask(ctx.tables, name) & (owners >= 0)
        open_by_table[name] = np.bincount(owners[mask], minlength=len(roster.reps))
    rows = []
    for rep in roster.reps:
        opened = {name: int(counts[rep.index]) for name, counts in open_by_table.items()}
        rows.append(
            {
                "rep": rep.name,
                "status": roster.unavailable.get(rep.index, "available"),
                "open": opened,
                "capacity": None if math.isinf(rep.capacity) else rep.capacity,
                "assigned": assigned[rep.index],
            }
        )
    return rows


# ---------------------------------------------------------------- the assign action (automations)


def reassign(
    ctx: Context, table: Table, positions: Sequence[int], params: dict[str, str], rule_name: str
) -> list[int]:
    """The ``assign`` automation action: give these records an owner by ``assign_to`` / ``method``.

    Unlike Assignment rules this is explicit, so a record that has an owner is reassigned (its old
    owner's load is released first). The rotation is kept per automation rule under ``auto:``. Returns
    the positions whose owner changed. Bad params raise ActionError (the caller names the cell).
    """
    assigner = Assigner(ctx)
    method = normalize(params.get("method") or "round_robin")
    if method not in ASSIGN_METHODS:
        hint = suggest(method, ASSIGN_METHODS)
        raise ActionError(
            f'unknown method "{method}"'
            + (f' — did you mean "{hint}"?' if hint else " — use " + ", ".join(ASSIGN_METHODS))
        )
    candidates, problems = resolve_assign_to(params.get("assign_to") or "all", assigner.roster, "")
    if problems:
        raise ActionError("; ".join(p.message + (f" — {p.hint}" if p.hint else "") for p in problems))
    name = table.spec.name
    rule = AssignRule(
        rule_name,
        name,
        compile_when("", schema_for(table)),
        candidates,
        method,
        "Automations",
        f"{AUTOMATION_KEY}{rule_key(name, rule_name)}",
        label="Automation",
    )
    state = assigner.table(name)
    changed, owners, texts = [], [], []
    for pos in positions:
        old = int(state.owners[pos])
        if old >= 0 and state.open[pos]:
            state.loads.counts[old] -= 1
            state.loads.version += 1  # the old owner may be below capacity again
        choice = assigner.choose(rule, pos)
        if choice is None:
            if old >= 0 and state.open[pos]:
                state.loads.counts[old] += 1
            assigner.strand([rule], pos)
        elif choice.rep.index == old:
            assigner.new[old].pop()  # same owner as before: nothing to tell them
        else:
            changed.append(pos)
            owners.append(choice.rep.name)
            texts.append(choice.why)
    ctx.change(table, changed, "owner", owners, texts)
    if "assigned_at" in table.spec.column_names:
        ctx.change(table, changed, "assigned_at", [ctx.plan.local_now] * len(changed), texts)
    assigner.finish(prune=False)
    return changed

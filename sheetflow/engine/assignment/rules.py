"""The Assignment sheet: its rules parsed and checked once (``when``, ``assign_to``, method), and rotation
keys.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sheetflow import contract
from sheetflow.engine.assignment.reps import Roster, load_roster
from sheetflow.names import normalize, suggest, text_key
from sheetflow.problems import Problem, error, warning
from sheetflow.rules.expr import CompiledWhen
from sheetflow.rules.sheets import (
    ASSIGN_METHODS,
    cell_text,
    compile_cell,
    is_enabled,
    rule_label,
    schema_for,
    target_table,
)
from sheetflow.tables.table import Tables

ALL_WORDS = frozenset({"all", "everyone", "todos", "todas"})
TERRITORY_WORDS = frozenset({"territory", "territorio", "regiao", "region"})


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class AssignRule:
    """One enabled, valid Assignment row (or an ``assign`` action's parameters, for automations)."""

    name: str
    table: str  # canonical: Contacts, Deals, Tickets
    when: CompiledWhen
    candidates: tuple[int, ...]  # rep indices in Reps order, no repeats
    method: str  # one of ASSIGN_METHODS
    where: str  # Assignment!A3: the rule's row, for messages
    key: str  # rotation key in the state section (see rule_key)
    label: str = "Assignment"  # how explanations start: Assignment "Brazil leads" round_robin: ...


def rule_key(table: str, name: str) -> str:
    """Rotations are keyed by table and rule name, so reordering rows keeps them (renaming restarts)."""
    return f"{table}:{normalize(name)}"


def resolve_assign_to(text: str, roster: Roster, where: str) -> tuple[tuple[int, ...], list[Problem]]:
    """``Ana, Bruno`` / ``territory:South`` / ``all`` -> rep indices in Reps order, or problems naming ``where``."""
    problems: list[Problem] = []
    chosen: set[int] = set()
    names = [r.name for r in roster.reps]
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        head, sep, rest = part.partition(":")
        if normalize(part) in ALL_WORDS:
            chosen.update(r.index for r in roster.reps)
            if not roster.reps:
                problems.append(
                    error(
                        where,
                        'assign_to is "all" but the Reps sheet lists no reps',
                        "add your reps (name, email, active, ...) to the Reps sheet",
                    )
                )
        elif sep and normalize(head) in TERRITORY_WORDS:
            wanted = text_key(rest)
            hits = [r.index for r in roster.reps if wanted in r.territories]
            if not hits:
                known = sorted({t for r in roster.reps for t in r.territories})
                hint = suggest(rest, known)
                problems.append(
                    error(
                        where,
                        f'no rep has territory "{rest.strip()}"',
                        f'did you mean "territory:{hint}"?'
                        if hint
                        else "fill the territory column of the Reps sheet",
                    )
                )
            chosen.update(hits)
        else:
            rep = roster.find(part)
            if rep is None:
                hint = suggest(part, names)
                problems.append(
                    error(
                        where,
                        f'unknown rep "{part}" in assign_to',
                        f'did you mean "{hint}"?'
                        if hint
                        else "use names from the Reps sheet, territory:X, or all"
                        if names
                        else "list your reps in a Reps sheet (name, email, active, ...)",
                    )
                )
            else:
                chosen.add(rep.index)
    return tuple(sorted(chosen)), problems


def load_rules(tables: Tables, roster: Roster) -> tuple[list[AssignRule], list[Problem]]:
    """Enabled Assignment rows that can run, top to bottom; every other row is a problem naming its cell."""
    sheet = tables["Assignment"]
    problems: list[Problem] = []
    rules: list[AssignRule] = []
    keys: dict[str, str] = {}
    for pos in range(len(sheet)):
        if not is_enabled(sheet, pos):
            continue
        target = target_table(sheet, pos, tables, problems)
        when = compile_cell(sheet, pos, "when", schema_for(target), problems) if target is not None else None
        method = normalize(cell_text(sheet, pos, "method") or "round_robin")
        if method not in ASSIGN_METHODS:
            hint = suggest(method, ASSIGN_METHODS)
            problems.append(
                error(
                    sheet.ref(pos, "method"),
                    f'unknown method "{method}"',
                    f'did you mean "{hint}"?' if hint else "use " + ", ".join(ASSIGN_METHODS),
                )
            )
            continue
        text = cell_text(sheet, pos, "assign_to")
        if not text:
            problems.append(
                error(
                    sheet.ref(pos, "assign_to"),
                    "assign_to is empty",
                    "name reps (Ana, Bruno), territory:South, or all",
                )
            )
            continue
        candidates, found = resolve_assign_to(text, roster, sheet.ref(pos, "assign_to"))
        problems += found
        if target is None or when is None or any(p.is_error for p in found):
            continue
        name = rule_label(sheet, pos)
        key = rule_key(target.spec.name, name)
        if key in keys:
            problems.append(
                warning(
                    sheet.ref(pos, "rule"),
                    f'another {target.spec.name} rule is also called "{name}" ({keys[key]})',
                    "give each rule its own name so each keeps its own rotation",
                )
            )
            n = 2
            while f"{key}#{n}" in keys:
                n += 1
            key = f"{key}#{n}"
        keys[key] = sheet.ref(pos, "rule")
        rules.append(
            AssignRule(name, target.spec.name, when, candidates, method, sheet.ref(pos, "rule"), key)
        )
    return rules, problems


def check_assignment(tables: Tables) -> list[Problem]:
    """What ``sheetflow check`` should add to rulesheets.check_other_rules: the Reps sheet and the names
    in ``assign_to`` (unknown reps and territories, with did-you-mean). Away dates play no part here."""
    roster, problems = load_roster(tables["Reps"], dt.date.min)
    sheet = tables["Assignment"]
    for pos in range(len(sheet)):
        text = cell_text(sheet, pos, "assign_to")
        if text:
            problems += resolve_assign_to(text, roster, sheet.ref(pos, "assign_to"))[1]
    return problems


def rule_keys(tables: Tables) -> set[str]:
    """The rotation keys of every Assignment row, enabled or not: rotations of other keys are dropped.

    A row whose table cell is unreadable keeps its rotation under every table, so a typo there never
    loses a rotation.
    """
    sheet = tables["Assignment"]
    keys: set[str] = set()
    for pos in range(len(sheet)):
        spec = contract.sheet_spec(cell_text(sheet, pos, "table") or "Contacts")
        names = (
            [spec.name]
            if spec is not None and spec.name in contract.RECORD_SHEETS
            else contract.RECORD_SHEETS
        )
        keys.update(rule_key(t, rule_label(sheet, pos)) for t in names)
    return keys

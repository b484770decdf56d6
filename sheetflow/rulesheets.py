"""Rule sheets (Scoring, Assignment, Automations, Sequences, Templates) -> compiled rules + problems.

Rules are compiled once per run. A rule that does not compile is reported with its cell and left
out; every other rule still runs. A blank ``enabled`` cell means enabled: only FALSE switches a rule off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from . import contract
from .coerce import MAX_SHIFT_DAYS
from .expr import CompiledWhen, Schema, WhenError, compile_when
from .names import normalize, suggest
from .problems import Problem, error, note
from .tables import Table, Tables

# Points per Scoring rule. A score is a sum of points, written to a cell: with this bound even 100,000
# rules sum to a finite number Excel can hold exactly enough (1e308 twice would be infinity).
MAX_POINTS = 1e9
ASSIGN_METHODS = ("round_robin", "weighted", "least_loaded", "sticky_account")


def schema_for(table: Table) -> Schema:
    return Schema(table.types, contract.column_aliases(table.spec), locale=table.locale)


@dataclass(frozen=True)
class ScoringRule:
    name: str
    when: CompiledWhen
    points: float
    where: str  # "Scoring!A4": the rule's row, for messages


def _enabled(table: Table, pos: int) -> bool:
    value = table.df["enabled"].iloc[pos] if "enabled" in table.df else None
    return value is None or value is pd.NA or bool(value)


def _text(table: Table, pos: int, column: str) -> str:
    value = table.df[column].iloc[pos] if column in table.df else None
    return value.strip() if isinstance(value, str) else ""


def _rule_name(table: Table, pos: int) -> str:
    return _text(table, pos, "rule") or f"row {int(table.rows[pos])}"


def _compile(
    table: Table, pos: int, column: str, schema: Schema, problems: list[Problem]
) -> CompiledWhen | None:
    try:
        return compile_when(_text(table, pos, column), schema)
    except WhenError as e:
        problems.append(error(table.ref(pos, column), str(e)))
        return None


def _target_table(rules: Table, pos: int, tables: Tables, problems: list[Problem]) -> Table | None:
    """The data table a rule row applies to (``table`` column; blank means Contacts)."""
    raw = _text(rules, pos, "table") or "Contacts"
    spec = contract.sheet_spec(raw)
    if spec is None or spec.name not in contract.RECORD_SHEETS:
        hint = suggest(raw, contract.RECORD_SHEETS)
        problems.append(
            error(
                rules.ref(pos, "table"),
                f'unknown table "{raw}"',
                f'did you mean "{hint}"?' if hint else "use Contacts, Deals or Tickets",
            )
        )
        return None
    return tables[spec.name]


def load_scoring(tables: Tables) -> tuple[list[ScoringRule], list[Problem]]:
    sheet, contacts = tables["Scoring"], tables["Contacts"]
    problems: list[Problem] = []
    rules: list[ScoringRule] = []
    if not sheet.exists:
        return rules, [note("Scoring", "no Scoring sheet: scores are left as they are")]
    schema = schema_for(contacts)
    for pos in range(len(sheet)):
        if not _enabled(sheet, pos):
            continue
        points = sheet.df["points"].iloc[pos]
        when = _compile(sheet, pos, "when", schema, problems)
        if points is None or (isinstance(points, float) and math.isnan(points)):
            problems.append(
                error(sheet.ref(pos, "points"), "points is empty", "enter a number of points, e.g. 10 or -5")
            )
            continue
        if not abs(float(points)) <= MAX_POINTS:
            problems.append(
                error(
                    sheet.ref(pos, "points"),
                    f"points {float(points):g} is out of range",
                    f"enter a number from {-MAX_POINTS:,.0f} to {MAX_POINTS:,.0f}",
                )
            )
            continue
        if when is not None:
            rules.append(ScoringRule(_rule_name(sheet, pos), when, float(points), sheet.ref(pos, "rule")))
    return rules, problems


def check_other_rules(tables: Tables) -> list[Problem]:
    """Checks a run does not make on every run: Assignment enumerations and every Sequences stop_when."""
    problems: list[Problem] = []
    assignment = tables["Assignment"]
    for pos in range(len(assignment)):
        target = _target_table(assignment, pos, tables, problems)
        if target is not None:
            _compile(assignment, pos, "when", schema_for(target), problems)
        method = normalize(_text(assignment, pos, "method") or "round_robin")
        if method not in ASSIGN_METHODS:
            hint = suggest(method, ASSIGN_METHODS)
            problems.append(
                error(
                    assignment.ref(pos, "method"),
                    f'unknown method "{method}"',
                    f'did you mean "{hint}"?' if hint else "use " + ", ".join(ASSIGN_METHODS),
                )
            )
        if not _text(assignment, pos, "assign_to"):
            problems.append(
                error(
                    assignment.ref(pos, "assign_to"),
                    "assign_to is empty",
                    "name reps (Ana, Bruno), territory:South, or all",
                )
            )
    sequences, contacts = tables["Sequences"], tables["Contacts"]
    for pos in range(len(sequences)):
        _compile(sequences, pos, "stop_when", schema_for(contacts), problems)
        delay = sequences.df["delay_days"].iloc[pos] if "delay_days" in sequences.df else None
        if delay is not None and delay == delay and not 0 <= float(delay) <= MAX_SHIFT_DAYS:
            problems.append(
                error(
                    sequences.ref(pos, "delay_days"),
                    f"delay_days {float(delay):g} is out of range",
                    f"enter a number of days from 0 to {MAX_SHIFT_DAYS}",
                )
            )
    return problems

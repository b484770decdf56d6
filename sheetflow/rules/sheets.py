"""Rule sheets (Scoring, Assignment, Automations, Sequences, Templates) -> compiled rules + problems.

Rules are compiled once per run. A rule that does not compile is reported with its cell and left
out; every other rule still runs. A blank ``enabled`` cell means enabled: only FALSE switches a rule off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from sheetflow import contract
from sheetflow.coerce import MAX_SHIFT_DAYS
from sheetflow.names import normalize, suggest, text_key
from sheetflow.problems import Problem, error, note, warning
from sheetflow.rules.expr import CompiledWhen, Schema, WhenError, compile_when
from sheetflow.tables.records import read_stages
from sheetflow.tables.table import Table, Tables

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


def is_enabled(table: Table, pos: int) -> bool:
    """Whether a rule row is on: a blank ``enabled`` cell (or no such column) means on, only FALSE is off."""
    value = table.df["enabled"].iloc[pos] if "enabled" in table.df else None
    return value is None or value is pd.NA or bool(value)


def cell_text(table: Table, pos: int, column: str) -> str:
    """A rule sheet cell as stripped text ("" for blank, a missing column or a non-text value)."""
    value = table.df[column].iloc[pos] if column in table.df else None
    return value.strip() if isinstance(value, str) else ""


def rule_label(table: Table, pos: int) -> str:
    """The name a rule row goes by in messages and keys: its ``rule`` cell, else ``row N`` (sheet row)."""
    return cell_text(table, pos, "rule") or f"row {int(table.rows[pos])}"


def compile_cell(
    table: Table, pos: int, column: str, schema: Schema, problems: list[Problem]
) -> CompiledWhen | None:
    """The ``when`` condition in ``column`` of a rule row, compiled; None (and an error naming the cell added
    to ``problems``) when it cannot be read."""
    try:
        return compile_when(cell_text(table, pos, column), schema)
    except WhenError as e:
        problems.append(error(table.ref(pos, column), str(e)))
        return None


def target_table(rules: Table, pos: int, tables: Tables, problems: list[Problem]) -> Table | None:
    """The data table a rule row applies to (``table`` column; blank means Contacts)."""
    raw = cell_text(rules, pos, "table") or "Contacts"
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
        if not is_enabled(sheet, pos):
            continue
        points = sheet.df["points"].iloc[pos]
        when = compile_cell(sheet, pos, "when", schema, problems)
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
            rules.append(ScoringRule(rule_label(sheet, pos), when, float(points), sheet.ref(pos, "rule")))
    return rules, problems


def check_other_rules(tables: Tables) -> list[Problem]:
    """Checks a run does not make on every run: Assignment enumerations and every Sequences stop_when."""
    problems: list[Problem] = []
    assignment = tables["Assignment"]
    for pos in range(len(assignment)):
        target = target_table(assignment, pos, tables, problems)
        if target is not None:
            compile_cell(assignment, pos, "when", schema_for(target), problems)
        method = normalize(cell_text(assignment, pos, "method") or "round_robin")
        if method not in ASSIGN_METHODS:
            hint = suggest(method, ASSIGN_METHODS)
            problems.append(
                error(
                    assignment.ref(pos, "method"),
                    f'unknown method "{method}"',
                    f'did you mean "{hint}"?' if hint else "use " + ", ".join(ASSIGN_METHODS),
                )
            )
        if not cell_text(assignment, pos, "assign_to"):
            problems.append(
                error(
                    assignment.ref(pos, "assign_to"),
                    "assign_to is empty",
                    "name reps (Ana, Bruno), territory:South, or all",
                )
            )
    sequences, contacts = tables["Sequences"], tables["Contacts"]
    for pos in range(len(sequences)):
        compile_cell(sequences, pos, "stop_when", schema_for(contacts), problems)
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


MAX_STAGE_WARNINGS = 5  # per sheet: a column of misspelt stages is one fix, not a page of warnings


def check_references(tables: Tables, settings) -> list[Problem]:  # noqa: ANN001 - settings.Settings
    """Names that must point at something: Settings ``fallback_owner`` at a rep, each deal's ``stage`` at a
    row of the Stages sheet (matched like every name, names.text_key), and the personal settings a blank
    ``init`` leaves empty (``sender_email``, ``fallback_owner``) said once as notes."""
    problems: list[Problem] = []
    pt = tables.language == "pt-BR"
    reps = tables["Reps"]
    rep_names = [n.strip() for n in reps.df["name"].dropna() if isinstance(n, str) and n.strip()]
    fallback = settings.text("fallback_owner").strip()
    fallback_cell = settings.cells.get("fallback_owner", "Settings")
    if not fallback:
        problems.append(
            note(
                fallback_cell,
                "responsavel_padrao (fallback_owner) está vazio: um registro que nenhum vendedor pode "
                "assumir não gera tarefa"
                if pt
                else "fallback_owner is empty: a record no rep can take gets no task",
                "preencha com o nome do vendedor que deve ser avisado desses registros"
                if pt
                else "fill it with the name of the rep who should hear about such records",
            )
        )
    elif rep_names and text_key(fallback) not in {text_key(n) for n in rep_names}:
        hint = suggest(fallback, rep_names)
        problems.append(
            warning(
                fallback_cell,
                f'responsavel_padrao (fallback_owner) "{fallback}" não está na aba {reps.sheet}'
                if pt
                else f'fallback_owner "{fallback}" is not a rep in the Reps sheet',
                (f'você quis dizer "{hint}"?' if pt else f'did you mean "{hint}"?')
                if hint
                else (
                    f"escreva o nome de um vendedor, ou inclua-o na aba {reps.sheet}"
                    if pt
                    else "name one of the reps, or add them to the Reps sheet"
                ),
            )
        )
    if not settings.text("sender_email").strip():
        problems.append(
            note(
                settings.cells.get("sender_email", "Settings"),
                "email_remetente (sender_email) está vazio: o sheetflow planeja e-mails mas não pode enviá-los"
                if pt
                else "sender_email is empty: sheetflow plans emails but cannot send them",
                "preencha com o endereço de onde saem os seus e-mails"
                if pt
                else "fill it with the address your emails come from",
            )
        )
    stages, deals = tables["Stages"], tables["Deals"]
    known = read_stages(tables).names
    if known and len(deals) and deals.has("stage"):
        bad = [
            (pos, v)
            for pos, v in enumerate(deals.df["stage"].to_numpy(dtype=object).tolist())
            if isinstance(v, str) and v.strip() and text_key(v) not in known
        ]
        for n, (pos, value) in enumerate(bad):
            if n == MAX_STAGE_WARNINGS:
                problems.append(
                    warning(
                        deals.ref(pos, "stage"),
                        f"e mais {len(bad) - n} negócios têm uma etapa que não está na aba {stages.sheet}"
                        if pt
                        else f"and {len(bad) - n} more deals have a stage that is not in the Stages sheet",
                    )
                )
                break
            hint = suggest(value, list(known.values()))
            problems.append(
                warning(
                    deals.ref(pos, "stage"),
                    f'a etapa "{value.strip()}" não está na aba {stages.sheet}'
                    if pt
                    else f'stage "{value.strip()}" is not in the {stages.sheet} sheet',
                    (f'você quis dizer "{hint}"?' if pt else f'did you mean "{hint}"?')
                    if hint
                    else (
                        f"inclua-a em {stages.sheet} ou corrija a grafia"
                        if pt
                        else f"add it to {stages.sheet} or fix the spelling"
                    ),
                )
            )
    return problems

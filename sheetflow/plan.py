"""The Plan: everything a run will do, decided before anything is done.

The engine produces a Plan from tables, rules, state and a clock, without I/O. ``--dry-run`` prints it;
``run`` applies it. Each item names the rule that caused it, so the Activity log and the dry-run table
can say why a cell changes. Later features add item kinds here (emails, tasks, notifications).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .problems import Problem
from .state import State


@dataclass(slots=True)
class CellChange:
    """Set one managed cell of a record."""

    table: str          # canonical table ("Contacts")
    position: int       # row position in the table's DataFrame
    record_id: str
    column: str         # canonical column
    old: Any
    new: Any
    rule: str           # why: "Scoring: Decision maker (+20), ..." / "id" / "Settings mql_threshold = 50"
    where: str = ""     # "Contacts!P12", for people reading the plan


@dataclass(slots=True)
class RowAppend:
    """Append one row to an output sheet (Tasks, Emails, ...); values by canonical column."""

    sheet: str
    values: dict[str, Any]
    rule: str = ""


@dataclass
class Plan:
    run_id: str
    now: dt.datetime                      # aware
    local_now: dt.datetime                # naive, workbook timezone: what cells show
    mode: str                             # "run" | "dry-run"
    trigger: str = "cli"                  # button | schedule | cli
    changes: list[CellChange] = field(default_factory=list)
    appends: list[RowAppend] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    state: State = field(default_factory=State)
    stages: list[str] = field(default_factory=list)   # what ran: scoring, lifecycle, ...

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def counts(self) -> Counter:
        c: Counter = Counter()
        for ch in self.changes:
            c[f"{ch.table}.{ch.column}"] += 1
        for ap in self.appends:
            c[ap.sheet] += 1
        return c

    def summary(self) -> str:
        """One line for the Runs sheet and the terminal."""
        parts = [f"{len(self.changes)} cell changes"]
        parts += [f"{k} {v}" for k, v in sorted(self.counts().items())]
        errors = len(self.errors)
        warnings = len(self.problems) - errors
        parts.append(f"{errors} errors, {warnings} warnings")
        return "; ".join(parts)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.appends

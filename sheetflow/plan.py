"""The Plan: everything a run will do, decided before anything is done.

The engine produces a Plan from tables, rules, state and a clock, without I/O. ``--dry-run`` prints it;
``run`` applies it. Each item names the rule that caused it, so the Activity log and the dry-run table
can say why a cell changes. Later features add item kinds here (emails, tasks, notifications).

Emails are :class:`PlannedEmail` items (``plan.emails``), rendered and checked at planning time by
:mod:`sheetflow.mail` so that ``--dry-run`` shows exactly what would be sent.
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

    table: str  # canonical table ("Contacts")
    position: int  # row position in the table's DataFrame
    record_id: str
    column: str  # canonical column
    old: Any
    new: Any
    rule: str  # why: "Scoring: Decision maker (+20), ..." / "id" / "Settings mql_threshold = 50"
    where: str = ""  # "Contacts!P12", for people reading the plan


@dataclass(slots=True)
class RowAppend:
    """Append one row to an output sheet (Tasks, Emails, ...); values by canonical column."""

    sheet: str
    values: dict[str, Any]
    rule: str = ""


@dataclass(slots=True)
class PlannedEmail:
    """One email of the run: rendered, with its deterministic key and what the run will do with it.

    ``status`` is what the Emails sheet will say after the planning write: ``planned`` (waits for a
    later run: outside the send window, daily limit), ``sending`` (``due``: this run sends it),
    ``skipped`` (suppressed, with the reason in ``detail``), or a final status restored from the
    journal (``sent``, ``unconfirmed``, ``failed``) when the workbook had not caught up with it.
    """

    key: str
    table: str  # Contacts | Deals | Tickets | Reps (notifications)
    record_id: str
    rule: str
    template: str
    to: str  # recipient address as it will be used (or as found, when invalid)
    subject: str = ""
    text: str = ""  # plain-text body (generated from the HTML for HTML templates)
    html: str | None = None
    status: str = "planned"
    detail: str = ""
    to_name: str = ""
    due: bool = False  # this run sends it
    message: bytes = b""  # the complete message (RFC 5322), when due or previewed
    message_id: str = ""
    contact_id: str = ""  # the contact whose last_emailed_at a send updates ("" if none)
    occurrence: str = ""
    kind: str = "email"  # email | notification
    log_position: int | None = None  # row position in the Emails table when planned by an earlier run
    queued_at: Any = None
    sent_at: Any = None


@dataclass
class Plan:
    run_id: str
    now: dt.datetime  # aware
    local_now: dt.datetime  # naive, workbook timezone: what cells show
    mode: str  # "run" | "dry-run"
    trigger: str = "cli"  # button | schedule | cli
    changes: list[CellChange] = field(default_factory=list)
    appends: list[RowAppend] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    state: State = field(default_factory=State)
    stages: list[str] = field(default_factory=list)  # what ran: scoring, lifecycle, ...
    emails: list[PlannedEmail] = field(default_factory=list)
    reps: list[dict[str, Any]] = field(default_factory=list)  # Reps summary (assignment.summarize)
    report: list[list[Any]] = field(default_factory=list)  # the Report sheet's rows (report.build)
    report_bold: set[int] = field(default_factory=set)
    mail: Any = field(default=None, repr=False, compare=False)  # the email planner's working state

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def counts(self) -> Counter:
        c: Counter = Counter()
        for ch in self.changes:
            c[f"{ch.table}.{ch.column}"] += 1
        for ap in self.appends:
            c[ap.sheet] += 1
        for email in self.emails:
            if email.log_position is None or email.due:
                c[f"emails {'due' if email.due else email.status}"] += 1
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
        return not self.changes and not self.appends and not self.emails

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

from sheetflow.problems import Problem
from sheetflow.tables.state import State


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
    content: dict[str, Any] = field(
        default_factory=dict
    )  # a notification digest: rep, items (kept while held)


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
    notices: list[str] = field(default_factory=list)  # plain words for people (baseline, ...), see Context
    first_run: bool = False  # no earlier run: this run records the baseline
    state_changed: bool = False  # the state sheet differs from what was read (set by the engine)
    enrollments: list[dict[str, Any]] | None = None  # the Enrollments sheet's rows (None: not planned)
    will_write: bool | None = None  # the pipeline's decision (None: not decided, e.g. a bare engine plan)
    updates: Counter = field(default_factory=Counter)  # sheet -> rows of earlier runs updated in place
    added: Counter = field(default_factory=Counter)  # sheet -> rows appended besides ``appends``

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

    @property
    def writes_anything(self) -> bool:
        if self.will_write is not None:
            return self.will_write
        return not self.empty or self.state_changed or self.first_run

    def writes(self) -> list[str]:
        """Everything this plan writes, in words: cells, rows appended and updated, emails, state.

        Issue 10.2: the summary never says "no changes" while something is written, and lists each
        kind of write, so the terminal, the Runs sheet and the file always agree. Empty when nothing
        at all is written.
        """
        if not self.writes_anything:
            return []
        parts: list[str] = []
        if self.changes:
            cells: Counter = Counter(f"{ch.table}.{ch.column}" for ch in self.changes)
            parts.append(
                f"{len(self.changes)} {'cell' if len(self.changes) == 1 else 'cells'} ("
                + ", ".join(f"{k} {v}" for k, v in sorted(cells.items()))
                + ")"
            )
        rows: Counter = Counter()
        if self.changes:
            rows["Activity"] += len(self.changes)
        for ap in self.appends:
            rows[ap.sheet] += 1
        new_emails = sum(1 for e in self.emails if e.log_position is None)
        if new_emails:
            rows["Emails"] += new_emails
        rows.update(self.added)
        rows["Runs"] += 1
        parts.append("rows added: " + ", ".join(f"{k} {v}" for k, v in sorted((+rows).items())))
        if +self.updates:
            parts.append("rows updated: " + ", ".join(f"{k} {v}" for k, v in sorted((+self.updates).items())))
        emails = self.email_counts()
        if emails:
            parts.append("emails: " + ", ".join(f"{v} {k}" for k, v in emails.items()))
        # the save after sending writes too (sheetflow.mail.sender.apply_outcomes): named here, so the
        # summary lists every write of the run, not only those of its first save (issue 10)
        emailed = len({e.contact_id for e in self.emails if e.due and e.contact_id})
        if emailed:
            parts.append(
                f"after sending: Contacts.last_emailed_at and an Activity row per contact emailed (up to {emailed})"
            )
        if self.first_run:
            parts.append("state: baseline recorded")
        elif self.state_changed:
            parts.append("state updated")
        if self.report:
            parts.append("Report rebuilt")
        return parts

    def email_counts(self) -> dict[str, int]:
        """Emails of this plan by what happens to them: sent now, left planned, skipped, settled."""
        c: Counter = Counter()
        for email in self.emails:
            if email.due:
                c["to send now"] += 1
            elif email.status == "planned":
                c["left planned"] += 1
            elif email.log_position is None or email.status == "skipped":
                c[email.status] += 1
        order = ("to send now", "left planned", "skipped")
        return {k: c[k] for k in (*order, *sorted(set(c) - set(order))) if c[k]}

    def summary(self) -> str:
        """One line for the Runs sheet and the terminal: every write (``no changes`` only when nothing
        at all is written), then the problem counts."""
        parts = self.writes() or ["no changes"]
        errors = len(self.errors)
        warnings = sum(1 for p in self.problems if p.severity.value == "warning")
        parts.append(f"{errors} errors, {warnings} warnings")
        return "; ".join(parts)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.appends and not self.emails

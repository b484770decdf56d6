"""The Emails sheet: one row per key, appended once, then its status cells updated in place.

Columns (contract): queued_at, sent_at, to, template, subject, table, record_id, rule, status, detail,
message_id, key. Statuses: ``planned`` (waits for a later run), ``sending`` (this run is sending it; a
row left ``sending`` means a run stopped: the next run settles it from the journal), ``sent``,
``unconfirmed`` (handed to the server when sheetflow stopped; never resent automatically),
``failed`` (permanent: the server's message is in ``detail``) and ``skipped`` (the reason is in
``detail``). A team may type ``bounced`` over a row when a bounce comes back: that address is then
suppressed like a failed one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sheetflow.coerce import as_text, to_cell
from sheetflow.engine.plan import PlannedEmail
from sheetflow.tables.table import Tables

UPDATABLE = ("status", "detail", "sent_at", "message_id", "subject", "to")


def new_row(email: PlannedEmail, local_now: dt.datetime) -> dict[str, Any]:
    return {
        "queued_at": email.queued_at or local_now,
        "sent_at": email.sent_at,
        "to": email.to,
        "template": email.template,
        "subject": email.subject,
        "table": email.table,
        "record_id": email.record_id,
        "rule": email.rule,
        "status": email.status,
        "detail": email.detail,
        "message_id": email.message_id if email.status != "skipped" else "",
        "key": email.key,
    }


def _same(old: object, new: object) -> bool:
    old, new = to_cell(old), to_cell(new)
    if isinstance(old, dt.datetime) and isinstance(new, dt.datetime):
        return abs((old - new).total_seconds()) < 1
    return (as_text(old) or "") == (as_text(new) or "")


def row_updates(tables: Tables, email: PlannedEmail) -> dict[str, Any]:
    """Cells of an existing Emails row that this plan changes (status, detail, ...)."""
    if email.log_position is None:
        return {}
    df = tables["Emails"].df
    pos = email.log_position
    wanted = {"status": email.status, "detail": email.detail}
    if email.sent_at is not None:
        wanted["sent_at"] = email.sent_at
    if email.message_id and email.status != "skipped":
        wanted["message_id"] = email.message_id
    if email.subject and email.status in ("sending", "planned"):
        wanted["subject"] = email.subject
    if email.to and email.status in ("sending", "planned"):  # a held email whose address is known now
        wanted["to"] = email.to
    return {
        col: value for col, value in wanted.items() if col not in df or not _same(df[col].iloc[pos], value)
    }


def needs_write(tables: Tables, emails: list[PlannedEmail]) -> bool:
    """True when the Emails sheet changes or an email is due (sending needs the planning write first)."""
    return any(e.due or e.log_position is None or row_updates(tables, e) for e in emails)


def add_to_patches(builder: Any, plan: Any) -> None:
    """Emails rows of a plan into a PatchBuilder (sheetflow.apply): appends and in-place updates."""
    tables: Tables = builder.tables
    target = None
    for email in plan.emails:
        if email.log_position is None:
            target = target or builder.target("Emails")
            target.append(new_row(email, plan.local_now))
        else:
            for col, value in row_updates(tables, email).items():
                builder.set_cell("Emails", email.log_position, col, value)


@dataclass
class Outcome:
    """What happened to one email in the send phase (for the final workbook write)."""

    key: str
    status: str  # sent | failed | unconfirmed | planned (temporary failure) | taken
    detail: str = ""
    sent_at: dt.datetime | None = None
    message_id: str = ""
    contact_id: str = ""
    rule: str = ""
    template: str = ""


def key_positions(tables: Tables) -> dict[str, int]:
    log = tables["Emails"]
    out: dict[str, int] = {}
    if len(log):
        for pos, key in enumerate(log.df["key"].to_numpy(dtype=object).tolist()):
            if isinstance(key, str) and key.strip():
                out.setdefault(key.strip(), pos)
    return out

"""Support SLAs: a due time for every ticket, counted in business hours, and one escalation when late.

``due_at`` = ``opened_at`` + Settings ``sla_hours_<severity>`` business hours (severity in English or
pt-BR: urgent/urgente, high/alta, normal, low/baixa), skipping time outside Settings ``business_hours`` (the weekly-hours syntax of
:mod:`sheetflow.rules.window`, shared with ``send_window``: ``Mon-Fri 09:00-12:00 14:00-18:00``,
``Seg-Sex 08:00-17:00; Sáb 09:00-12:00``, ``Mon-Sun 00:00-24:00``) and the dates of a ``Holidays`` sheet.
Hours are elapsed hours in the workbook's time zone: a span that contains a DST change counts the hours
that really pass. A ticket that
already has a due_at keeps it (a person may have agreed another deadline).

An open ticket (status not resolved/closed) past its due time is escalated once: ``escalated_at`` is
written, the owner (or Settings ``fallback_owner``) gets a task, and a notification is requested.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from sheetflow.coerce import to_cell
from sheetflow.engine.context import Context, skip_formulas
from sheetflow.engine.emails import request_notification
from sheetflow.names import normalize
from sheetflow.problems import error
from sheetflow.rules.window import Hours, holiday_dates, parse_window
from sheetflow.tables.records import open_mask

SEVERITY = {
    "urgent": "urgent",
    "urgente": "urgent",
    "critical": "urgent",
    "critica": "urgent",
    "high": "high",
    "alta": "high",
    "normal": "normal",
    "media": "normal",
    "medium": "normal",
    "low": "low",
    "baixa": "low",
}


class Schedule:
    """Business hours with holidays: the one weekly-hours syntax of :mod:`sheetflow.rules.window`."""

    @staticmethod
    def parse(text: str, holidays: set[dt.date]) -> Hours:
        """Settings ``business_hours`` -> :class:`~sheetflow.rules.window.Hours`; raises ValueError."""
        return parse_window(text).with_holidays(holidays)


def _holidays(ctx: Context) -> set[dt.date]:
    return holiday_dates(ctx.tables)


def stage_sla(ctx: Context) -> None:
    tickets = ctx.tables["Tickets"]
    if not len(tickets):
        return
    where = ctx.settings.cells.get("business_hours", "Settings")
    try:
        schedule = Schedule.parse(ctx.settings.text("business_hours"), _holidays(ctx))
    except ValueError as e:
        ctx.plan.problems.append(
            error(
                where,
                f"business_hours: {e}",
                "write it like Mon-Fri 09:00-18:00; no due_at is set until then",
            )
        )
        return
    if not schedule.always and not schedule.days:
        ctx.plan.problems.append(
            error(where, "business_hours has no open time", "write e.g. Mon-Fri 09:00-18:00")
        )
        return
    zone = ctx.settings.timezone
    df = tickets.df
    hours = {}
    for level in ("urgent", "high", "normal", "low"):
        hours[level] = ctx.settings.number(f"sla_hours_{level}")
    opened = df["opened_at"].to_numpy(dtype=object)
    due = df["due_at"].to_numpy(dtype=object)
    severity = df["severity"].to_numpy(dtype=object)
    positions, values, reasons = [], [], []
    for pos in range(len(df)):  # a formula due_at showing "" is reported and left by ctx.change
        if to_cell(due[pos]) is not None or to_cell(opened[pos]) is None:
            continue
        level = SEVERITY.get(
            normalize(severity[pos]) if isinstance(severity[pos], str) else "normal", "normal"
        )
        if hours.get(level) is None:
            continue
        start = to_cell(opened[pos])
        try:
            values.append(schedule.add(start, hours[level], zone))  # type: ignore[arg-type]  # opened is a date column; hours[level] checked above
        except (ValueError, OverflowError) as e:
            ctx.plan.problems.append(
                error(
                    tickets.ref(pos, "due_at"), f"no due time: {e}", f"sla_hours_{level} and business_hours"
                )
            )
            continue
        positions.append(pos)
        unit = "business hour" if hours[level] == 1 else "business hours"
        reasons.append(f"SLA: {level} = {hours[level]:g} {unit} from opened_at")
    ctx.change(tickets, positions, "due_at", values, reasons)
    _escalate_overdue(ctx)


def _escalate_overdue(ctx: Context) -> None:
    tickets = ctx.tables["Tickets"]
    df = tickets.df
    now = pd.Timestamp(ctx.plan.local_now)
    open_ = open_mask(ctx.tables, "Tickets")
    late = (df["due_at"] < now).fillna(False).to_numpy(dtype=bool)
    blank = df["escalated_at"].isna().to_numpy(dtype=bool).copy()
    unreadable = list(tickets.unreadable.get("escalated_at", ()))
    blank[unreadable] = False  # something is written there: never escalate (task, email) on every run
    # a formula escalated_at cannot record the escalation: no escalation (it would repeat), said once
    hits = skip_formulas(ctx, tickets, "escalated_at", np.flatnonzero(open_ & late & blank).tolist())
    if not hits:
        return
    ctx.change(
        tickets,
        hits,
        "escalated_at",
        [ctx.plan.local_now] * len(hits),
        ["SLA: overdue, escalated once"] * len(hits),
    )
    for pos in hits:
        row = df.iloc[pos]
        owner = ctx.owner_of(tickets, pos)
        due = to_cell(row["due_at"])
        text = escalation_text(ctx, tickets, pos, "SLA")
        ctx.task(owner, text, "SLA", table="Tickets", record_id=row["id"])
        if owner:
            subject = "Chamado atrasado" if ctx.portuguese else "Overdue ticket"
            request_notification(
                ctx,
                owner,
                f"{subject}: {row['id']}",
                [text],
                "SLA",
                f"sla:{row['id']}@{due:%Y-%m-%dT%H:%M}",
                record=f"Tickets {row['id']}",
            )


def escalation_text(ctx: Context, table, pos: int, rule: str) -> str:  # noqa: ANN001 - tables.Table
    """What an escalation says: what is overdue, since when, and what to do, in the workbook's language.

    ``Ticket T-1 "Printer down" (urgent, owner Ana) is overdue since 2026-03-05 09:00 (due_at). Contact the
    customer or reassign it now, and set its status to resolved when it is done. (rule: SLA)``
    """
    pt = ctx.portuguese
    df = table.df
    name = table.spec.name

    def field(column: str) -> str:
        if column not in df:
            return ""
        value = to_cell(df[column].iloc[pos])
        if isinstance(value, dt.datetime):
            return f"{value:%d/%m/%Y %H:%M}" if pt else f"{value:%Y-%m-%d %H:%M}"
        return str(value).strip() if value is not None else ""

    rid = field("id") or "?"
    title = field("subject") or field("name")
    facts = [f for f in (field("severity") or field("stage"), field("owner")) if f]
    if field("owner"):
        facts[-1] = ("responsável " if pt else "owner ") + facts[-1]
    noun = {
        "Tickets": ("Chamado", "Ticket"),
        "Deals": ("Negócio", "Deal"),
        "Contacts": ("Contato", "Contact"),
    }.get(name, (name, name))[0 if pt else 1]
    what = f"{noun} {rid}" + (f' "{title}"' if title else "") + (f" ({', '.join(facts)})" if facts else "")
    since, column = "", ""
    for column in ("due_at", "stage_changed_at", "last_activity_at", "opened_at", "created_at"):
        if field(column):
            since = field(column)
            break
    if name == "Tickets" and field("due_at"):
        state = f"está atrasado desde {since} (prazo)" if pt else f"is overdue since {since} (due_at)"
    elif since:
        state = f"precisa de atenção ({column}: {since})" if pt else f"needs attention ({column}: {since})"
    else:
        state = "precisa de atenção" if pt else "needs attention"
    if name == "Tickets":
        todo = (
            "Responda ao cliente ou reatribua o chamado agora e marque a situação como resolvido ao terminar."
            if pt
            else "Contact the customer or reassign it now, and set its status to resolved when it is done."
        )
    else:
        todo = (
            "Veja o registro agora e atualize-o ou reatribua-o."
            if pt
            else "Look at the record now and update or reassign it."
        )
    return f"{what} {state}. {todo} ({'regra' if pt else 'rule'}: {rule})"

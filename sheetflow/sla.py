"""Support SLAs: a due time for every ticket, counted in business hours, and one escalation when late.

``due_at`` = ``opened_at`` + Settings ``sla_hours_<severity>`` business hours (severity in English or
pt-BR: urgent/urgente, high/alta, normal, low/baixa), skipping time outside Settings ``business_hours``
(``Mon-Fri 09:00-18:00``; pt-BR day names work too) and the dates of a ``Holidays`` sheet. A ticket that
already has a due_at keeps it (a person may have agreed another deadline).

An open ticket (status not resolved/closed) past its due time is escalated once: ``escalated_at`` is
written, the owner (or Settings ``fallback_owner``) gets a task, and a notification is requested.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from .coerce import to_cell
from .engine import Context
from .names import normalize
from .problems import error

DAYS = {
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
    "seg": 0,
    "ter": 1,
    "qua": 2,
    "qui": 3,
    "sex": 4,
    "sab": 5,
    "dom": 6,
}
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
_HOURS = re.compile(
    r"^\s*([A-Za-zçáé]{3})\w*\s*-\s*([A-Za-zçáé]{3})\w*\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$"
)


class Schedule:
    """Business days and opening hours, plus holidays."""

    def __init__(self, days: set[int], opens: dt.time, closes: dt.time, holidays: set[dt.date]):
        self.days, self.opens, self.closes, self.holidays = days, opens, closes, holidays

    @classmethod
    def parse(cls, text: str, holidays: set[dt.date]) -> Schedule:
        m = _HOURS.match(text or "")
        if not m:
            raise ValueError(f'cannot read business hours "{text}" — write e.g. Mon-Fri 09:00-18:00')
        first, last = DAYS.get(normalize(m.group(1))[:3]), DAYS.get(normalize(m.group(2))[:3])
        if first is None or last is None:
            raise ValueError(f'unknown day in "{text}" — use Mon..Sun or Seg..Dom')
        days = {d % 7 for d in range(first, first + ((last - first) % 7) + 1)}
        opens = dt.time(int(m.group(3)), int(m.group(4)))
        closes = dt.time(int(m.group(5)), int(m.group(6)))
        if closes <= opens:
            raise ValueError(f'business hours "{text}" close before they open')
        return cls(days, opens, closes, holidays)

    def open_on(self, day: dt.date) -> bool:
        return day.weekday() in self.days and day not in self.holidays

    def add(self, start: dt.datetime, hours: float) -> dt.datetime:
        """``start`` + ``hours`` of business time."""
        remaining = dt.timedelta(hours=hours)
        current = start
        for _ in range(3660):  # ten years of days: a bound, not a limit anyone reaches
            day = current.date()
            opening = dt.datetime.combine(day, self.opens)
            closing = dt.datetime.combine(day, self.closes)
            if not self.open_on(day) or current >= closing:
                current = dt.datetime.combine(day + dt.timedelta(days=1), self.opens)
                continue
            current = max(current, opening)
            available = closing - current
            if remaining <= available:
                return current + remaining
            remaining -= available
            current = dt.datetime.combine(day + dt.timedelta(days=1), self.opens)
        raise ValueError("no business hours in the next ten years — check business_hours and Holidays")


def _holidays(ctx: Context) -> set[dt.date]:
    sheet = ctx.tables.get("Holidays")
    if sheet is None or not sheet.exists:
        return set()
    return {ts.date() for ts in sheet.df["date"].dropna()}


def stage_sla(ctx: Context) -> None:
    tickets = ctx.tables["Tickets"]
    if not len(tickets):
        return
    try:
        schedule = Schedule.parse(ctx.settings.text("business_hours"), _holidays(ctx))
    except ValueError as e:
        ctx.plan.problems.append(error(ctx.settings.cells.get("business_hours", "Settings"), str(e)))
        return
    df = tickets.df
    hours = {}
    for level in ("urgent", "high", "normal", "low"):
        hours[level] = ctx.settings.number(f"sla_hours_{level}")
    opened = df["opened_at"].to_numpy(dtype=object)
    due = df["due_at"].to_numpy(dtype=object)
    severity = df["severity"].to_numpy(dtype=object)
    positions, values, reasons = [], [], []
    for pos in range(len(df)):
        if to_cell(due[pos]) is not None or to_cell(opened[pos]) is None:
            continue
        level = SEVERITY.get(
            normalize(severity[pos]) if isinstance(severity[pos], str) else "normal", "normal"
        )
        if hours.get(level) is None:
            continue
        start = to_cell(opened[pos])
        values.append(schedule.add(start, hours[level]))
        positions.append(pos)
        reasons.append(f"SLA: {level} = {hours[level]:g} business hours from opened_at")
    ctx.change(tickets, positions, "due_at", values, reasons)
    _escalate_overdue(ctx)


def _escalate_overdue(ctx: Context) -> None:
    tickets = ctx.tables["Tickets"]
    df = tickets.df
    now = pd.Timestamp(ctx.plan.local_now)
    from .assignment import open_mask

    open_ = open_mask(ctx.tables, "Tickets")
    late = (df["due_at"] < now).fillna(False).to_numpy(dtype=bool)
    blank = df["escalated_at"].isna().to_numpy(dtype=bool)
    hits = np.flatnonzero(open_ & late & blank).tolist()
    if not hits:
        return
    ctx.change(
        tickets,
        hits,
        "escalated_at",
        [ctx.plan.local_now] * len(hits),
        ["SLA: overdue, escalated once"] * len(hits),
    )
    from .automations import _mail, _Unavailable

    fallback = ctx.settings.text("fallback_owner")
    for pos in hits:
        row = df.iloc[pos]
        owner = row["owner"] if isinstance(row["owner"], str) and row["owner"].strip() else fallback
        due = to_cell(row["due_at"])
        text = f'Ticket {row["id"]} "{row["subject"] if isinstance(row["subject"], str) else ""}" is overdue (due {due:%Y-%m-%d %H:%M})'
        ctx.append(
            "Tasks",
            {
                "created_at": ctx.plan.local_now,
                "due_at": ctx.plan.local_now,
                "owner": owner or "",
                "table": "Tickets",
                "record_id": row["id"],
                "text": text,
                "rule": "SLA",
                "done": False,
            },
            "SLA",
        )
        if owner:
            try:
                _mail("request_notification")(
                    ctx, owner, "Overdue ticket", [text], "SLA", f"sla:{row['id']}@{due:%Y-%m-%dT%H:%M}"
                )
            except _Unavailable:
                pass  # the task above already tells the owner

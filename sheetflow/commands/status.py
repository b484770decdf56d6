"""``sheetflow status BOOK``: what the runner did last, what it does next, and what is waiting, and why.

Read-only: one read of the workbook (the Runs log in full) plus the scheduler's record in ``.sheetflow/``;
nothing is written, no lease is kept (the lease is only tried, to say whether someone holds it).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sheetflow.book import open_book
from sheetflow.commands.schedule import UTC, JobState, Schedule, Workbook, read_holder
from sheetflow.problems import WorkbookBusy
from sheetflow.rules.window import holiday_dates, parse_window, sent_today
from sheetflow.tables import control
from sheetflow.tables.loaded import load


@dataclass
class Status:
    address: str
    zone: str
    schedule: str  # as typed, or "" (none)
    schedule_problem: str
    next_run: dt.datetime | None  # workbook-local wall-clock time
    last_run: dict | None  # the Runs sheet's last row: run_id, started_at, mode, trigger, counts, errors
    last_scheduled: dict | None  # the scheduler's record of its last run (status, summary, problems)
    emails_waiting: list[tuple[str, str, str]] = field(default_factory=list)  # (to, subject, why)
    pending: list[tuple[str, str, str]] = field(default_factory=list)  # (due, rule, record id)
    lease: str = ""  # "free" or who holds it
    runner: str = ""  # the scheduler serving this workbook on this machine, if any
    requests: list[tuple[int, str, str]] = field(default_factory=list)  # (row, action, status) not done

    def lines(self) -> list[str]:
        out = [f"workbook: {self.address} (time zone {self.zone})"]
        if self.last_run:
            r = self.last_run
            errors = [e for e in str(r.get("errors") or "").splitlines() if e and not e.startswith("note:")]
            text = f"last run: {r.get('started_at')} {r.get('mode', '')} ({r.get('trigger', '')}): {r.get('counts') or '-'}"
            out.append(text)
            out += [f"  problem: {e}" for e in errors[:5]]
            if len(errors) > 5:
                out.append(f"  ... and {len(errors) - 5} more problems (see the Runs sheet)")
        else:
            out.append("last run: none recorded in the Runs sheet")
        if self.last_scheduled:
            s = self.last_scheduled
            out.append(
                f"last scheduled run: {s.get('started', '?')} UTC: {s.get('status')}: {s.get('summary', '')}"
            )
        if self.schedule_problem:
            out.append(f"schedule: {self.schedule_problem}")
        elif self.schedule:
            when = f"{self.next_run:%Y-%m-%d %H:%M}" if self.next_run else "-"
            out.append(f"schedule: {self.schedule}; next run {when}")
        else:
            out.append("schedule: none (set Settings schedule, e.g. Mon-Fri 08:00, or pass --every/--at)")
        out.append(f"runner on this machine: {self.runner or 'none'}")
        out.append(f"run lease: {self.lease}")
        if self.emails_waiting:
            out.append(f"emails waiting: {len(self.emails_waiting)}")
            for to, subject, why in self.emails_waiting[:10]:
                out.append(f"  {to} — {subject}: {why}")
            if len(self.emails_waiting) > 10:
                out.append(f"  ... and {len(self.emails_waiting) - 10} more")
        else:
            out.append("emails waiting: none")
        if self.pending:
            out.append(f"delayed actions waiting: {len(self.pending)}")
            for due, rule, rid in self.pending[:10]:
                out.append(f"  due {due}: {rule} for {rid}")
        else:
            out.append("delayed actions waiting: none")
        for row, action, state in self.requests:
            out.append(f"Control request row {row}: {action} is {state}")
        return out


def status(address: str, override: Schedule | None = None, now: dt.datetime | None = None) -> Status:
    """Everything ``sheetflow status`` shows. Raises what opening/reading the workbook raises."""
    now = now or dt.datetime.now(UTC)
    book = open_book(address)
    raws = book.read(full=("Runs",))
    loaded = load(raws)
    settings = loaded.settings
    wb = Workbook(str(address), book, JobState.of(book), override)
    wb.refresh(force=True, raws=raws)
    local_now = settings.local_now(now)
    next_local = None
    if wb.spec is not None:
        due = wb.spec.due(wb.anchor(), now, wb.zone)
        moment = now if due is not None else wb.spec.next_after(now, wb.zone, wb.state.last_slot)
        next_local = moment.astimezone(wb.zone).replace(tzinfo=None)
    runs = loaded.tables.get("Runs")
    last_run = None
    if runs is not None and runs.exists and len(runs):
        last_run = {k: v for k, v in runs.df.iloc[-1].to_dict().items() if not _missing(v)}
    result = Status(
        str(address),
        getattr(wb.zone, "key", str(wb.zone)),
        wb.spec.text if wb.spec else "",
        wb.problem,
        next_local,
        last_run,
        wb.state.last,
    )
    # emails waiting, and why
    emails = loaded.tables.get("Emails")
    if emails is not None and emails.exists and len(emails):
        try:
            window = parse_window(settings.text("send_window")).with_holidays(holiday_dates(loaded.tables))
            closed = window.closed_reason(local_now)
        except ValueError as e:
            closed = f"send_window: {e}"
        limit = settings.number("daily_email_limit")
        sent = sent_today(loaded.tables, local_now)
        over = limit is not None and sent >= limit
        df = emails.df
        for pos in range(len(df)):
            state = str(df["status"].iloc[pos] or "").strip().lower()
            if state not in ("planned", "sending", "unconfirmed"):
                continue
            if state == "planned":
                detail = str(df["detail"].iloc[pos] or "").strip()
                if closed:
                    why = f"send window closed now ({closed})"
                elif over:
                    why = f"daily limit reached ({sent} of {limit:g} today)"
                else:
                    why = detail or "goes out with the next run"
            else:
                why = f"{state}: the next run checks the journal and confirms it (never sent twice)"
            result.emails_waiting.append(
                (str(df["to"].iloc[pos] or ""), str(df["subject"].iloc[pos] or ""), why)
            )
    for value in loaded.state.sections.get("pending", {}).values():
        item = json.loads(value)
        rule = item.get("name") or str(item.get("rule", "")).split(":", 1)[-1]
        result.pending.append((str(item.get("due", "")).replace("T", " "), rule, str(item.get("id", ""))))
    result.pending.sort()
    # who holds what
    info = book.workdir / f"{book.identity}.runner.json"
    result.runner = read_holder(info) if info.exists() else ""
    try:
        with book.lease(wait=0):
            result.lease = "free"
    except WorkbookBusy as e:
        result.lease = f"held: {e}" + (f" ({result.runner})" if result.runner else "")
    panel = control.read_control(raws)
    if panel is not None:
        result.requests = [
            (r.row, r.text, r.status) for r in panel.requests if r.status in ("waiting", "running")
        ]
    return result


def _missing(value: object) -> bool:
    return (
        value is None or value == "" or (isinstance(value, float) and value != value) or str(value) == "NaT"
    )

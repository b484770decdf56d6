"""``sheetflow demo``: a demo workbook with a few hundred contacts, run once, and a tour of the result.

The point is a two-minute first impression on a fresh machine: no account, no server. The demo
workbook is the ``init --example`` workbook with more contacts; the run is the real run, and it shows the
main job end to end (issue 10.6): contacts scored, assigned and emailed. Two settings differ from a
starter workbook, so the demo does the same on any day of the week:

- Settings ``send_window`` is ``always`` (a starter workbook sends Mon-Fri 09:00-18:00);
- the ``Welcome`` rule has ``include_existing=true`` and welcomes only contacts created in the last 30
  days, so the first run emails them instead of taking them as the baseline (a real first run on a
  full sheet should not email everyone; see README "The first run records a baseline").

The summary names every email written to the outbox and every email left planned, with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from openpyxl import load_workbook
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from sheetflow.commands.init import create_starter
from sheetflow.commands.run import run
from sheetflow.names import normalize

WELCOME_WHEN = "not unsubscribed and email is not empty and days_since(created_at) <= 30"


def prepare_demo_book(book: Path) -> None:
    """The demo's two settings (see the module docstring), on the file ``create_starter`` just made."""
    wb = load_workbook(book)
    settings = wb["Settings"]
    for row in settings.iter_rows(min_row=2):
        if normalize(row[0].value or "") == "send_window":
            row[1].value = "always"
    automations = wb["Automations"]
    header = [normalize(c.value or "") for c in automations[1]]
    col = {name: header.index(name) for name in ("rule", "when", "params")}
    for row in automations.iter_rows(min_row=2):
        if normalize(row[col["rule"]].value or "") == "welcome":
            row[col["when"]].value = WELCOME_WHEN
            row[col["params"]].value = "template=welcome; include_existing=true"
    wb.save(book)


def run_demo(
    folder: Path,
    *,
    contacts: int = 300,
    console: Console | None = None,
    now: dt.datetime | None = None,
    gsheets: bool = False,
    on_emulator=None,
) -> Path:
    """``gsheets``: copy the demo workbook into a freshly started local Sheets emulator and run on it there
    (the Google Sheets backend end to end, without a Google account); the emulator stops when the demo ends.
    ``on_emulator(book, folder, now, console)`` does that run (:func:`sheetflow.testing.gsheets_demo.run_on_emulator`;
    the emulator is test tooling, the top layer, so it is passed in by the caller)."""
    console = console or Console()
    folder.mkdir(parents=True, exist_ok=True)
    book = folder / "crm-demo.xlsx"
    today = (now or dt.datetime.now()).date()
    create_starter(book, example=True, force=True, contacts=contacts, today=today)
    prepare_demo_book(book)
    console.print(f"[green]created[/] {book} with {contacts} contacts, reps, deals, tickets and rules")
    if gsheets:
        result = on_emulator(book, folder, now, console)
    else:
        with console.status("running sheetflow on it"):
            result = run(book, now=now, trigger="cli", outbox=folder / "outbox")
    plan = result.plan
    by_column = Counter((ch.table, ch.column) for ch in plan.changes)
    stages = Counter(ch.new for ch in plan.changes if ch.column == "lifecycle_stage")
    scores = [ch.new for ch in plan.changes if ch.column == "score"]
    tasks = Counter(a.rule for a in plan.appends if a.sheet == "Tasks")
    sent = [e for e in plan.emails if e.due or e.status == "sent"]
    waiting = [e for e in plan.emails if not e.due and e.status == "planned"]
    skipped = [e for e in plan.emails if not e.due and e.status == "skipped"]
    table = RichTable(title="what the run did", header_style="bold")
    table.add_column("what")
    table.add_column("how many", justify="right")
    table.add_row("scores computed (Scoring sheet)", str(by_column.get(("Contacts", "score"), 0)))
    for stage, n in sorted(stages.items()):
        table.add_row(f"contacts promoted to {stage} (Settings thresholds)", str(n))
    for name in ("Contacts", "Deals", "Tickets"):
        if by_column.get((name, "owner")):
            table.add_row(
                f"{name.lower()} assigned to reps (Assignment sheet)", str(by_column[(name, "owner")])
            )
    if by_column.get(("Tickets", "due_at")):
        table.add_row(
            "ticket due dates from the SLA (Settings sla_hours_*)", str(by_column[("Tickets", "due_at")])
        )
    for rule, n in tasks.most_common():
        table.add_row(f'tasks: "{rule}"', str(n))
    for rule, n in Counter(e.rule for e in sent if e.kind != "notification").most_common():
        table.add_row(f'emails to contacts: "{rule}"', str(n))
    notifications = sum(1 for e in sent if e.kind == "notification")
    if notifications:
        table.add_row("emails to reps (assignment and automation digests)", str(notifications))
    table.add_row("emails left planned for a later run", str(len(waiting)))
    table.add_row("cells changed (each one logged in Activity)", str(len(plan.changes)))
    table.add_row("problems found", str(len(plan.errors)))
    console.print(table)
    if scores:
        console.print(f"scores range from {min(scores)} to {max(scores)}")
    console.print(f"\n[bold]emails written to {folder / 'outbox'}[/] ({len(sent)}):")
    for email in sent:
        console.print(f"  {escape(email.to)} — {escape(email.subject)} [dim]({escape(email.rule)})[/]")
    if waiting:
        console.print(
            f"[bold]emails left planned[/] ({len(waiting)}; the next run or sheetflow send sends them):"
        )
        for email in waiting:
            console.print(f"  {escape(email.to)} — {escape(email.subject)}: {escape(email.detail)}")
    else:
        console.print("no email was left planned")
    if skipped:
        console.print(f"[bold]emails not sent[/] ({len(skipped)}):")
        for email in skipped:
            console.print(f"  {escape(email.to or email.record_id)}: {escape(email.detail)}")
    for text in plan.notices:
        console.print(f"[cyan]note[/] {escape(text)}")
    if gsheets:
        console.print(
            f"the spreadsheet lived in the emulator, which stopped with the demo; {book} is the workbook it "
            "was copied from (unchanged). On a real spreadsheet: sheetflow run gsheets:ID (README, Google Sheets)"
        )
        return book
    console.print(f"""
[bold]where to look[/]
  {book}   open it: Contacts (score, lifecycle_stage, owner), Tasks, Emails, Activity (every change and why), Runs
  {folder / "outbox"}/   the emails, one .eml file each (nothing was sent: no SMTP server is configured)
  sheetflow run {book} --dry-run   a second run: nothing left to change
  sheetflow check {book}           validate the rules after you edit them
""")
    return book

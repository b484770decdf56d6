"""``sheetflow demo``: a demo workbook with a few hundred contacts, run once, and a tour of the result.

The point is a two-minute first impression on a fresh machine: no account, no server. The demo
workbook is the ``init --example`` workbook with more contacts; the run is the real run.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from .pipeline import run
from .starter import create_starter


def run_demo(
    folder: Path, *, contacts: int = 300, console: Console | None = None, now: dt.datetime | None = None
) -> Path:
    console = console or Console()
    folder.mkdir(parents=True, exist_ok=True)
    book = folder / "crm-demo.xlsx"
    today = (now or dt.datetime.now()).date()
    create_starter(book, example=True, force=True, contacts=contacts, today=today)
    console.print(f"[green]created[/] {book} with {contacts} contacts, reps, deals, tickets and rules")
    with console.status("running sheetflow on it"):
        result = run(book, now=now, trigger="cli")
    plan = result.plan
    by_column = Counter((ch.table, ch.column) for ch in plan.changes)
    stages = Counter(ch.new for ch in plan.changes if ch.column == "lifecycle_stage")
    scores = [ch.new for ch in plan.changes if ch.column == "score"]
    tasks = Counter(a.rule for a in plan.appends if a.sheet == "Tasks")
    emails = [e for e in plan.emails if e.due or e.status == "sent"]
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
    table.add_row("emails written to the outbox (rep notifications, ...)", str(len(emails)))
    table.add_row("cells changed (each one logged in Activity)", str(len(plan.changes)))
    table.add_row("problems found", str(len(plan.errors)))
    console.print(table)
    if scores:
        console.print(f"scores range from {min(scores)} to {max(scores)}")
    console.print(f"""
[bold]where to look[/]
  {book}   open it: Contacts (score, lifecycle_stage, owner), Tasks, Emails, Activity (every change and why), Runs
  {folder / "outbox"}/   the emails, one .eml file each (nothing was sent: no SMTP server is configured)
  sheetflow run {book} --dry-run   a second run: nothing left to change
  sheetflow check {book}           validate the rules after you edit them
""")
    return book

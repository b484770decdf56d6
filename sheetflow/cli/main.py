"""The ``sheetflow`` command: a thin layer over :mod:`sheetflow.commands.run` with readable output.

Exit codes: 0 ok, 1 a problem in the workbook (bad rule, unreadable file), 2 usage, 3 workbook busy
(open in Excel, another run, changed while we worked).

    sheetflow init crm.xlsx --example        # a starter workbook with example data and rules
    sheetflow check crm.xlsx                 # every problem, as Sheet!A1: what - what to do
    sheetflow run crm.xlsx --dry-run         # what would change, changing nothing
    sheetflow run crm.xlsx                   # do it (and send the emails it plans)
    sheetflow send crm.xlsx --dry-run        # the emails waiting in the Emails sheet, previewed
    sheetflow send crm.xlsx                  # send them
    sheetflow demo                           # a demo workbook with a few hundred contacts, run once
    sheetflow excel addin                    # sheetflow.xlam: a ribbon tab whose Run button runs the Control
    sheetflow excel setup crm.xlsx           #   sheet's action; or crm.xlsm + crm.py with the button inside
    sheetflow run excel:                     # the workbook open in Excel (xlwings), not the file
    sheetflow schedule crm.xlsx              # keep running: Settings schedule + Control-sheet requests
    sheetflow run-due crm.xlsx               # run what is due, then exit (cron, systemd timer, Task Scheduler)
    sheetflow status crm.xlsx                # last run, next run, what is waiting and why
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from sheetflow.coerce import as_text
from sheetflow.commands import schedule as scheduler
from sheetflow.commands.demo import run_demo
from sheetflow.commands.excel_addin import build_addin, setup_workbook
from sheetflow.commands.init import add_missing_sheets, create_starter, start_sheet_name
from sheetflow.commands.packs import add_pack, available, read_pack
from sheetflow.commands.run import check, run, send
from sheetflow.commands.schedule import ChildExecutor, run_due, schedule_from_flags
from sheetflow.commands.service import print_service
from sheetflow.commands.status import status
from sheetflow.commands.undo import undo
from sheetflow.engine.plan import Plan
from sheetflow.problems import QUOTE_LIMIT, Problem, Severity, SheetflowError, UsageError, printable

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.NOTE: "dim"}
LABEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sheetflow", description="CRM automation for a spreadsheet.")
    p.add_argument(
        "--version", action="version", version=f"sheetflow {version('sheetflow')}"
    )  # the installed one
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser(
        "init", help="create a starter workbook, or add the missing sheetflow sheets to yours"
    )
    init.add_argument("book", type=Path)
    init.add_argument("--lang", default="en", choices=["en", "pt-BR"], help="sheet and column language")
    init.add_argument("--example", action="store_true", help="add example contacts, deals, reps and rules")
    init.add_argument(
        "--force", action="store_true", help="replace an existing file with a new starter workbook"
    )

    check = sub.add_parser("check", help="validate sheets, headers, values, rules and templates")
    check.add_argument("book")

    run = sub.add_parser("run", help="score, assign and automate; write results back")
    run.add_argument("book")
    run.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    run.add_argument("--now", help="run as if it were this moment (ISO, e.g. 2026-03-01T09:00)")
    run.add_argument("--only", help="comma-separated stages, e.g. scoring,lifecycle")
    run.add_argument(
        "--trigger", default="cli", choices=["cli", "button", "schedule"], help=argparse.SUPPRESS
    )
    run.add_argument("--show", type=int, default=40, help="changes to list in the plan (0 = all)")
    run.add_argument(
        "--outbox", type=Path, help="folder for .eml files (files transport; with --dry-run: previews)"
    )

    send = sub.add_parser("send", help="send the emails earlier runs left planned in the Emails sheet")
    send.add_argument("book")
    send.add_argument("--dry-run", action="store_true", help="render and list the emails, send nothing")
    send.add_argument(
        "--outbox", type=Path, help="folder for .eml files (files transport; with --dry-run: previews)"
    )
    send.add_argument("--now", help="send as if it were this moment (ISO)")
    send.add_argument(
        "--trigger", default="cli", choices=["cli", "button", "schedule"], help=argparse.SUPPRESS
    )
    send.add_argument("--show", type=int, default=40, help="emails to list (0 = all)")

    rules = sub.add_parser("rules", help="starter rule packs: list them, add one to a workbook")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    rules_sub.add_parser("list", help="list the starter rule packs")
    add = rules_sub.add_parser("add", help="append a pack's rules and templates to a workbook")
    add.add_argument("pack")
    add.add_argument("book", type=Path)

    undo = sub.add_parser("undo", help="restore the values a run changed (only cells nobody changed since)")
    undo.add_argument("book")
    undo.add_argument("run_id", nargs="?", help="the run to undo (default: the last one)")

    _schedule_parsers(sub)
    excel = sub.add_parser("excel", help="the Excel button: build the add-in, or set up a workbook")
    excel_sub = excel.add_subparsers(dest="excel_command", required=True, metavar="ACTION")
    addin = excel_sub.add_parser("addin", help="write sheetflow.xlam (a ribbon tab with a Run button)")
    addin.add_argument("dir", nargs="?", type=Path, default=Path("."))
    addin.add_argument("--lang", default="en", choices=["en", "pt-BR"], help="ribbon labels")
    addin.add_argument(
        "--interpreter", help="python.exe (Windows) or python (macOS) the button runs (default: this one)"
    )
    setup = excel_sub.add_parser("setup", help="make BOOK.xlsm with a Run button and BOOK.py beside it")
    setup.add_argument("book", type=Path)
    setup.add_argument("--lang", choices=["en", "pt-BR"], help="language of an added Control sheet")
    setup.add_argument("--force", action="store_true", help="replace an existing BOOK.xlsm / BOOK.py")

    demo = sub.add_parser("demo", help="create a demo workbook, run it once, show what happened")
    demo.add_argument("dir", nargs="?", type=Path, default=Path("sheetflow-demo"))
    demo.add_argument("--contacts", type=int, default=300)
    demo.add_argument(
        "--gsheets",
        action="store_true",
        help="run the demo on a Google spreadsheet in a local Sheets emulator (no Google account needed)",
    )
    return p


def _schedule_parsers(sub) -> None:  # noqa: ANN001
    """schedule (watch mode, --print-service), run-due, status: see sheetflow.commands.schedule."""

    def when(p: argparse.ArgumentParser) -> None:
        p.add_argument("--every", help="run every interval (15m, 2h, 1d); overrides Settings schedule")
        p.add_argument("--at", help="run at these times (08:00 or 08:00,14:00); overrides Settings schedule")
        p.add_argument("--days", help="with --at: the days (mon-fri, seg-sex, sat)")

    def running(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timeout", type=float, default=1800, help="seconds a run may take (default 1800)")
        p.add_argument(
            "--lease-wait", type=float, default=120, help="seconds to wait for another run (default 120)"
        )
        p.add_argument("--no-requests", action="store_true", help="do not answer Control-sheet requests")

    sched = sub.add_parser("schedule", help="keep running: the workbook's schedule and its Control requests")
    sched.add_argument("books", nargs="+", metavar="BOOK")
    when(sched)
    running(sched)
    sched.add_argument("--max-runs", type=int, help="stop after this many scheduled runs")
    sched.add_argument(
        "--poll", type=float, default=30, help="seconds between Control-sheet polls (default 30)"
    )
    sched.add_argument(
        "--print-service",
        choices=["systemd", "windows", "cron"],
        help="print an OS scheduler recipe (runs run-due every 5 minutes) instead of running",
    )
    due = sub.add_parser("run-due", help="run what is due since the last recorded run, then exit (for cron)")
    due.add_argument("book")
    when(due)
    running(due)
    status = sub.add_parser(
        "status", help="last run, next run, emails and actions waiting, who holds the lease"
    )
    status.add_argument("book")
    when(status)


def main(argv: Sequence[str] | None = None) -> int:
    console = Console(highlight=False, soft_wrap=True)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    try:
        code = COMMANDS[args.command](args, console)
    except SheetflowError as e:
        console.print(f"[bold red]error:[/] {_escape(str(e), 1000)}")
        code = e.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; nothing was written[/]")
        code = 130
    return code


def cli() -> None:
    sys.exit(main())


# ---------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace, console: Console) -> int:
    path = args.book
    shown = _escape(str(path))
    if path.exists() and not args.force:
        added = add_missing_sheets(path, lang=args.lang, example=args.example)
        if added:
            console.print(
                f"[green]added[/] to {shown}: {_escape(', '.join(added))} (nothing else in it was changed)"
            )
        else:
            console.print(f"{shown} already has every sheetflow sheet; nothing was changed")
        # an existing workbook gets no 'Start here' sheet: point at what to do instead
        console.print(
            f"next: fill in Settings and your rules, then [bold]sheetflow check {shown}[/] "
            f"and [bold]sheetflow run {shown} --dry-run[/]"
        )
        return 0
    create_starter(path, lang=args.lang, example=args.example, force=args.force)
    console.print(f"[green]created[/] {shown}")
    console.print(
        f"next: open it, read the '{start_sheet_name(args.lang)}' sheet, then "
        f"[bold]sheetflow run {shown} --dry-run[/]"
    )
    return 0


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    problems = check(args.book)
    print_problems(console, problems, show_notes=True)
    errors = sum(p.is_error for p in problems)
    if errors:
        console.print(
            f"[bold red]{errors} error(s)[/]: fix them and run [bold]sheetflow check {args.book}[/] again"
        )
        return 1
    console.print("[green]no errors[/]")
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    now = _parse_now(args.now)
    only = [s for s in (args.only or "").split(",") if s.strip()] or None
    with steps(console, ["reading", "planning", "writing", "sending emails"]) as progress:
        result = run(
            args.book,
            dry_run=args.dry_run,
            now=now,
            only=only,
            trigger=args.trigger,
            progress=progress,
            outbox=args.outbox,
        )
    plan = result.plan
    print_problems(console, plan.problems)
    print_plan(console, plan, limit=args.show)
    print_reps(console, plan)
    return _finish(console, result, args)


def cmd_send(args: argparse.Namespace, console: Console) -> int:
    with steps(console, ["reading", "planning", "writing", "sending emails"]) as progress:
        result = send(
            args.book,
            dry_run=args.dry_run,
            now=_parse_now(args.now),
            trigger=args.trigger,
            progress=progress,
            outbox=args.outbox,
        )
    print_problems(console, result.plan.problems)
    if not result.plan.emails:
        console.print("no emails are waiting in the Emails sheet")
    print_emails(console, result.plan, limit=args.show)
    return _finish(console, result, args)


def _finish(console: Console, result, args: argparse.Namespace) -> int:  # noqa: ANN001
    plan = result.plan
    if result.previews:
        console.print(f"[cyan]previews:[/] {len(result.previews)} .eml files in {args.outbox}")
    if args.dry_run:
        console.print("[cyan]dry run:[/] nothing was written and no email was sent")
    elif result.written:
        console.print(
            f"[green]written[/] to {result.address} (run {plan.run_id}; see the Activity and Runs sheets)"
        )
    else:
        console.print("nothing to change; the workbook was not touched")
    if result.emails is not None:
        console.print(
            f"[green]{result.emails.summary()}[/] via {result.emails.transport} (see the Emails sheet)"
        )
    if result.busy_after_send:
        return 3
    return 1 if plan.errors else 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:

    if args.gsheets:  # the emulator is test tooling (the top layer): run as its own module
        argv = [
            sys.executable,
            "-m",
            "sheetflow.testing.gsheets_demo",
            str(args.dir),
            "--contacts",
            str(args.contacts),
        ]
        return subprocess.call(argv)
    run_demo(args.dir, contacts=args.contacts, console=console)
    return 0


def cmd_undo(args: argparse.Namespace, console: Console) -> int:
    result = undo(args.book, args.run_id)
    print_problems(console, result.skipped)
    console.print(
        f"[green]undid[/] run {result.run_id}: {len(result.plan.changes)} cells restored, "
        f"{len(result.skipped)} left as they are"
        if result.written
        else f"run {result.run_id}: nothing could be restored; the workbook was not touched"
    )
    return 0


def cmd_rules(args: argparse.Namespace, console: Console) -> int:
    if args.rules_command == "list":
        for pack in available():
            rules = sum(
                len(read_pack(pack, s)) for s in ("Scoring", "Assignment", "Automations", "Sequences")
            )
            console.print(f"[bold]{pack}[/]  {rules} rules")
        return 0
    added = add_pack(args.book, args.pack)
    if added:
        console.print(
            f"[green]added[/] {args.pack} to {args.book}: "
            + ", ".join(f"{n} {sheet} rows" for sheet, n in added.items())
        )
    else:
        console.print(f"{args.book} already has every rule of {args.pack}; nothing was changed")
    return 0


def _when_flags(args: argparse.Namespace) -> tuple:
    flags = []
    for name in ("every", "at", "days"):
        if getattr(args, name, None):
            flags += [f"--{name}", getattr(args, name)]
    return schedule_from_flags(args.every, args.at, args.days), flags


def cmd_schedule(args: argparse.Namespace, console: Console) -> int:
    override, flags = _when_flags(args)
    if args.print_service:
        print(print_service(args.print_service, args.books, flags), end="")
        return 0
    if args.max_runs is not None and args.max_runs < 1:
        raise UsageError("--max-runs must be 1 or more")
    with contextlib.ExitStack() as stack:
        workbooks = []
        for address in args.books:
            wb = scheduler.Workbook.open(address, override)
            scheduler.file_logging(wb.book)
            stack.enter_context(scheduler.runner_lock(wb.book, "schedule"))
            workbooks.append(wb)
        runner = scheduler.Runner(
            workbooks,
            executor=scheduler.ChildExecutor(timeout=args.timeout, lease_wait=args.lease_wait),
            max_runs=args.max_runs,
            poll=args.poll,
            say=lambda text: console.print(_escape(text, 4000)),
            requests=not args.no_requests,
        )
        runner.install_signals()
        if not any(wb.spec for wb in workbooks) and args.no_requests:
            raise UsageError("no schedule: set Settings schedule (e.g. Mon-Fri 08:00) or pass --every / --at")
        with (
            console.status("waiting for the next run", spinner="dots")
            if console.is_terminal
            else (contextlib.nullcontext())
        ):
            runs = runner.serve()
    console.print(f"stopped after {runs} scheduled run(s)")
    return 0


def cmd_run_due(args: argparse.Namespace, console: Console) -> int:
    override, _ = _when_flags(args)
    outcomes = run_due(
        args.book,
        override=override,
        executor=ChildExecutor(timeout=args.timeout, lease_wait=args.lease_wait),
        requests=not args.no_requests,
        say=lambda text: console.print(_escape(text, 4000)),
    )
    if not outcomes:
        console.print("nothing is due")
    if any(o.status == "skipped" for o in outcomes):
        return 3
    return 0 if all(o.ok for o in outcomes) else 1


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    override, _ = _when_flags(args)
    for line in status(args.book, override).lines():
        console.print(_escape(line))
    return 0


def cmd_excel(args: argparse.Namespace, console: Console) -> int:
    if args.excel_command == "addin":
        path = build_addin(args.dir, lang=args.lang, interpreter=args.interpreter)
        console.print(f"[green]created[/] {path}")
        console.print(
            "next: in Excel, File > Options > Add-ins > Manage Excel Add-ins > Browse, pick it; the "
            "'sheetflow' tab's Run button runs the Control sheet's action on the active workbook"
        )
        return 0
    result = setup_workbook(args.book, lang=args.lang, force=args.force)
    if result.renamed:
        console.print(
            f"[yellow]note:[/] named {result.workbook.name}: xlwings imports the workbook's name as a Python "
            "module, so it must be a Python name"
        )
    console.print(f"[green]created[/] {result.workbook} and {result.module.name} (keep them together)")
    if result.added_control:
        console.print("added the Control sheet (choose the action there, then press its button)")
    if not result.button:
        console.print(
            "[yellow]note:[/] the Control sheet already has comments or form controls, so no button was added: "
            "in Excel, Developer > Insert > Button, assign the macro SampleCall (or use the sheetflow add-in)"
        )
    console.print(
        f"{args.book} was not changed; work in {result.workbook.name} from now on. The button needs the "
        "xlwings add-in: xlwings addin install (see README, Excel button)"
    )
    return 0


COMMANDS = {
    "schedule": cmd_schedule,
    "run-due": cmd_run_due,
    "status": cmd_status,
    "init": cmd_init,
    "excel": cmd_excel,
    "rules": cmd_rules,
    "check": cmd_check,
    "run": cmd_run,
    "send": cmd_send,
    "undo": cmd_undo,
    "demo": cmd_demo,
}


# ---------------------------------------------------------------- output


@contextlib.contextmanager
def steps(console: Console, names: list[str]):
    """A progress bar over a run's steps (read, plan, write, send); yields the pipeline's progress callback.
    Hidden when the output is not a terminal (schedulers, CI), so logs stay clean."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with bar:
        task = bar.add_task("starting", total=len(names))

        def progress(step: str) -> None:
            done = names.index(step) if step in names else bar.tasks[0].completed
            bar.update(task, description=f"{step} ...", completed=done)

        yield progress
        bar.update(task, completed=len(names))


def _parse_now(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f'--now "{text}" is not an ISO date-time; write e.g. 2026-03-01T09:00') from None


def print_problems(
    console: Console, problems: Sequence[Problem], *, show_notes: bool = False, limit: int = 200
) -> None:
    shown = [p for p in problems if show_notes or p.severity is not Severity.NOTE]
    for p in shown[:limit]:
        console.print(f"[{STYLE[p.severity]}]{LABEL[p.severity]}[/] {_escape(str(p), None)}")
    if len(shown) > limit:
        console.print(f"... and {len(shown) - limit} more")


def print_reps(console: Console, plan: Plan) -> None:
    """The Reps summary of a run that assigned records: who is available, open load, assigned now."""
    if not any(r["assigned"] for r in plan.reps):
        return
    table = RichTable(title="Reps", show_lines=False, header_style="bold")
    for column in (
        "rep",
        "status",
        "open contacts",
        "open deals",
        "open tickets",
        "capacity",
        "assigned now",
    ):
        table.add_column(column, overflow="fold")
    for r in plan.reps:
        capacity = "" if r["capacity"] is None else f"{r['capacity']:g}"
        table.add_row(
            _escape(r["rep"]),
            _escape(r["status"]),
            *(str(r["open"][t]) for t in ("Contacts", "Deals", "Tickets")),
            capacity,
            str(r["assigned"]),
        )
    console.print(table)


def print_plan(console: Console, plan: Plan, *, limit: int = 40) -> None:
    """The plan: one line naming every write (never "no changes" when something is written), the
    changed cells, new rows, emails and delayed actions, then the notes a person should read."""
    writes = plan.writes()
    if not writes:
        console.print("[green]plan:[/] no changes")
        print_emails(console, plan, limit=limit)  # emails still waiting (outside the send window, ...)
        print_pending(console, plan, limit=limit)
        print_notices(console, plan)
        return
    console.print(
        f"[bold]plan[/] ({plan.mode}, run {plan.run_id}, now {plan.local_now:%Y-%m-%d %H:%M}): "
        + _escape("; ".join(writes))
    )
    table = RichTable(show_lines=False, header_style="bold")
    for column in ("cell", "record", "column", "from", "to", "rule"):
        table.add_column(column, overflow="fold")
    changes = plan.changes if limit <= 0 else plan.changes[:limit]
    for ch in changes:
        table.add_row(
            _escape(ch.where),
            _escape(ch.record_id),
            _escape(ch.column),
            _show(ch.old),
            _show(ch.new),
            _escape(ch.rule),
        )
    if plan.changes:
        console.print(table)
    if limit > 0 and len(plan.changes) > limit:
        console.print(f"... and {len(plan.changes) - limit} more changes (--show 0 lists all)")
    print_rows(console, plan, limit=limit)
    print_emails(console, plan, limit=limit)
    print_pending(console, plan, limit=limit)
    print_notices(console, plan)


def print_notices(console: Console, plan: Plan) -> None:
    """What a person should know about this run (baseline, dropped catch-ups, who left a sequence)."""
    for text in plan.notices:
        console.print(f"[cyan]note[/] {_escape(text)}")


def print_rows(console: Console, plan: Plan, *, limit: int = 40) -> None:
    """Rows the plan appends to output sheets other than the logs (tasks, ...)."""
    rows = [a for a in plan.appends if a.sheet not in ("Activity", "Runs", "Emails")]
    if not rows:
        return
    console.print(f"[bold]new rows[/] ({len(rows)}):")
    for item in rows if limit <= 0 else rows[:limit]:
        v = item.values
        due = v.get("due_at")
        record = " ".join(w for w in (str(v.get("table") or ""), str(v.get("record_id") or "")) if w.strip())
        origin = ", ".join(w for w in (item.rule, record) if w)  # a fallback task has no single record
        console.print(
            f"  {item.sheet}: {_escape(str(v.get('text', '')))} [dim]({_escape(str(v.get('owner') or ''))}"
            f"{', due ' + format(due, '%Y-%m-%d %H:%M') if hasattr(due, 'strftime') else ''}; "
            f"{_escape(origin)})[/]"
        )
    if limit > 0 and len(rows) > limit:
        console.print(f"  ... and {len(rows) - limit} more")


def print_pending(console: Console, plan: Plan, *, limit: int = 40) -> None:
    """Delayed actions waiting in the state, with their due time (the run keeps them for later runs)."""
    import json

    pending = [json.loads(v) for v in plan.state.sections.get("pending", {}).values()]
    if not pending:
        return
    pending.sort(key=lambda p: p["due"])
    console.print(f"[bold]delayed actions waiting[/] ({len(pending)}):")
    for item in pending if limit <= 0 else pending[:limit]:
        rule = item.get("name") or item["rule"].split(":", 1)[-1]
        console.print(f"  due {item['due'].replace('T', ' ')}: {_escape(rule)} for {_escape(item['id'])}")
    if limit > 0 and len(pending) > limit:
        console.print(f"  ... and {len(pending) - limit} more")


def print_emails(console: Console, plan: Plan, *, limit: int = 40, lines: int = 3) -> None:
    """Each email of the plan: to, subject, what happens to it, and the first lines of its text."""
    if not plan.emails:
        return
    shown = plan.emails if limit <= 0 else plan.emails[:limit]
    console.print(f"[bold]emails[/] ({len(plan.emails)}):")
    for email in shown:
        state = "send now" if email.due else email.status
        console.print(
            f"  [bold]{_escape(email.to or '(no address)')}[/] — {_escape(email.subject)} "
            f"[dim]({state}; {_escape(email.rule)}, {_escape(email.template)}, {_escape(email.key)})[/]"
        )
        if email.detail:
            console.print(f"    [yellow]{_escape(email.detail)}[/]")
        if email.status not in ("skipped",) and email.text:
            for line in [t for t in email.text.splitlines() if t.strip()][:lines]:
                console.print(f"    [dim]|[/] {_escape(line[:100])}")
    if limit > 0 and len(plan.emails) > limit:
        console.print(f"  ... and {len(plan.emails) - limit} more emails (--show 0 lists all)")


def _show(value: object) -> str:
    text = as_text(value)
    return "" if text is None else _escape(text, QUOTE_LIMIT)


def _escape(text: object, limit: int | None = 500) -> str:
    """Cell text for the terminal: controls escaped, long text shortened (problems.printable), and rich
    markup (``[bold]``) shown as typed."""
    from rich.markup import escape

    return escape(printable(text, limit))

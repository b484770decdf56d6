"""The library API the CLI, the Excel button and the scheduler all call: check and run a workbook.

    from sheetflow.commands.run import run
    result = run("crm.xlsx", dry_run=True)
    print(result.plan.summary())

One run is read -> tables -> plan (pure engine) -> apply (one atomic save) -> result. Progress goes to
an optional callback so the terminal can show bars and the workbook's status cell can be updated by
backends that are live.

A run that sends emails saves twice: once with the plan (Emails rows ``sending``), then, after the
transport has taken the messages, with the outcome (see :mod:`sheetflow.mail.sender` for why, and for
what a crash at any point leaves). ``send()`` is the same without the engine's stages: it sends what
earlier runs left ``planned``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sheetflow import contract
from sheetflow.apply import LogTrim, build_patches, finish_runs_row, needs_write, over_cap, write_back
from sheetflow.book import Book, open_book
from sheetflow.coerce import DATE_MAX, DATE_MIN, DATE_RANGE
from sheetflow.engine.assignment import check_assignment
from sheetflow.engine.emails import check_sender, mail_settings
from sheetflow.engine.plan import Plan
from sheetflow.engine.run import new_run_id, plan_run
from sheetflow.engine.sequences import diff_enrollments
from sheetflow.mail import log as mail_log
from sheetflow.mail.sender import DeliveryReport, Mailer, preview
from sheetflow.problems import Problem, Severity, UsageError, WorkbookBusy, note, warning
from sheetflow.rules.schedule import schedule_problems
from sheetflow.rules.sheets import check_other_rules, check_references
from sheetflow.rules.templates import check_templates
from sheetflow.tables.archive import Archive, cap_of
from sheetflow.tables.loaded import Loaded, load
from sheetflow.tables.table import Table, load_table

Progress = Callable[[str], None]


@dataclass
class RunResult:
    plan: Plan
    written: bool
    address: str
    emails: DeliveryReport | None = None  # what the send phase did (None: nothing was sent)
    previews: list[Path] = field(default_factory=list)  # --dry-run --outbox: the .eml files written
    busy_after_send: bool = False  # emails went out but the final save was refused

    @property
    def problems(self) -> list[Problem]:
        return self.plan.problems


def run(
    address: str | Path,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    only: Iterable[str] | None = None,
    trigger: str = "cli",
    progress: Progress | None = None,
    book: Book | None = None,
    outbox: str | Path | None = None,
    transport=None,
) -> RunResult:
    """Plan and (unless ``dry_run``) apply one run. Raises SheetflowError subclasses for what stops a run.

    ``outbox``: the folder for the files transport, and with ``dry_run`` where every planned message is
    written as an .eml preview. ``transport``: an object with the transport interface (tests).
    """

    def planner(loaded: Loaded, when: dt.datetime, mode: str) -> Plan:
        return plan_run(
            loaded.tables, loaded.settings, loaded.state, when, mode=mode, only=only, trigger=trigger
        )

    return _execute(
        address,
        planner,
        dry_run=dry_run,
        now=now,
        progress=progress,
        book=book,
        outbox=outbox,
        transport=transport,
    )


def send(
    address: str | Path,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    trigger: str = "cli",
    progress: Progress | None = None,
    book: Book | None = None,
    outbox: str | Path | None = None,
    transport=None,
) -> RunResult:
    """Send what earlier runs left ``planned`` in the Emails sheet (no scoring, no automations)."""

    def planner(loaded: Loaded, when: dt.datetime, mode: str) -> Plan:
        if when.tzinfo is None:
            when = when.replace(tzinfo=loaded.settings.timezone)
        local = loaded.settings.local_now(when)
        plan = Plan(
            new_run_id(local),
            when,
            local,
            "dry-run" if mode == "dry-run" else "send",
            trigger,
            state=loaded.state,
            stages=["send"],
        )
        loaded.settings.validate()  # the same settings checks as check and run
        mail_settings(loaded.settings, loaded.tables)
        plan.problems += [p for p in loaded.settings.problems if p not in plan.problems]
        return plan

    return _execute(
        address,
        planner,
        dry_run=dry_run,
        now=now,
        progress=progress,
        book=book,
        outbox=outbox,
        transport=transport,
        write_state=False,
    )


def _execute(
    address: str | Path,
    make_plan,
    *,
    dry_run: bool,
    now: dt.datetime | None,
    progress: Progress | None,
    book: Book | None,
    outbox: str | Path | None,
    transport,
    write_state: bool = True,
) -> RunResult:
    say = progress or (lambda _msg: None)
    book = book or open_book(address)
    now = _aware(now)
    outbox_path = Path(outbox) if outbox is not None else None
    if dry_run:
        say("reading")
        loaded = load(book.read())
        loaded.tables.archived = Archive.of(book).facts()
        say("planning")
        plan = make_plan(loaded, now, "dry-run")
        plan.problems[:0] = loaded.problems
        Mailer(book, loaded.settings, outbox=outbox_path).prepare(plan, loaded.tables, dry_run=True)
        _decide_writes(plan, loaded)
        plan.problems += overfull_logs(loaded)
        previews = preview(plan, outbox_path) if outbox_path is not None and plan.emails else []
        return RunResult(plan, False, book.address, previews=previews)
    started = time.monotonic()
    with book.lease():
        say("reading")
        loaded = load(book.read())
        archive = Archive.of(book)
        loaded.tables.archived = archive.facts()
        say("planning")
        plan = make_plan(loaded, now, "run")
        plan.problems[:0] = loaded.problems
        mailer = Mailer(book, loaded.settings, outbox=outbox_path, transport=transport)
        try:
            mailer.prepare(plan, loaded.tables)
            cap = cap_of(loaded.settings)
            if not _decide_writes(plan, loaded):
                return RunResult(plan, False, book.address)
            mailer.queue(plan)
            say("writing")
            trim = log_trim(book, loaded, cap)
            trim.reserve["Activity"] = sum(1 for e in plan.emails if e.due)  # written after sending
            patches = build_patches(
                plan,
                loaded.tables,
                elapsed=dt.timedelta(seconds=time.monotonic() - started),
                write_state=write_state,
                trim=trim,
            )
            if trim.batches:
                say("archiving older log rows")
                reported = trim.report(archive.store(trim.batches, plan.local_now), archive.folder)
                plan.problems += reported
                # what moved is said by run (notes are not printed) and kept in the Runs row (issue 10)
                plan.notices += [p.message for p in reported if p.severity is Severity.NOTE]
            finish_runs_row(trim, plan)
            backups = loaded.settings.number("backups")
            book.write(patches, backups=int(backups) if backups is not None else 10)
            plan.problems += getattr(book, "problems", None) or []  # rows that vanished under the run
            mailer.after_write()
            result = RunResult(plan, True, book.address)
            if any(e.due for e in plan.emails):
                say("sending emails")
                result.emails = mailer.deliver(plan)
                try:
                    write_back(mailer, plan, result.emails)
                except WorkbookBusy as e:
                    result.busy_after_send = True
                    plan.problems.append(
                        warning(
                            "Emails",
                            f"the emails were sent but the Emails sheet could not be updated ({e}); "
                            "the next run updates it from sheetflow's journal",
                        )
                    )
            return result
        finally:
            mailer.close()


def _decide_writes(plan: Plan, loaded: Loaded) -> bool:
    """Whether the run writes, and what besides the plan's own items (Emails and Enrollments rows of
    earlier runs updated, Enrollments rows added), so the summary lists every write (issue 10.2)."""
    plan.updates["Emails"] = sum(1 for e in plan.emails if mail_log.row_updates(loaded.tables, e))
    if plan.enrollments is not None:
        added, updated = diff_enrollments(loaded.tables.get("Enrollments"), plan.enrollments)
        plan.added["Enrollments"] = len(added)
        plan.updates["Enrollments"] = len({pos for pos, _, _ in updated})
    plan.will_write = (
        mail_log.needs_write(loaded.tables, plan.emails)
        or needs_write(plan, loaded.state)
        or bool(over_cap(loaded.tables, cap_of(loaded.settings)))  # an overfull log is trimmed (10.4)
    )
    return plan.will_write


def check(address: str | Path, *, book: Book | None = None, now: dt.datetime | None = None) -> list[Problem]:
    """Every problem of a workbook: sheets, headers, cell types, rules, templates, settings.

    Rules are validated by planning a run (nothing is written): the checks are exactly the ones a run makes,
    so ``check`` and ``run`` can never disagree about what is wrong.
    """
    book = book or open_book(address)
    loaded = load(book.read())
    loaded.tables.archived = Archive.of(book).facts()
    problems = list(loaded.problems)
    tables = loaded.tables
    for spec in contract.SHEETS:
        table = tables[spec.name]
        if not table.exists and spec.kind in (contract.Kind.DATA, contract.Kind.RULES):
            problems.append(note(spec.name, f"no {spec.name} sheet (that is fine if you do not use it)"))
        if table.exists and spec.kind is not contract.Kind.SYSTEM and spec.columns:
            missing = [c.name for c in spec.columns if c.name not in table.col_index and not c.managed]
            if missing and table.header_row:
                problems.append(note(table.sheet, "columns not present: " + ", ".join(missing)))
    plan = plan_run(tables, loaded.settings, loaded.state, _aware(now), mode="dry-run")
    problems += [p for p in plan.problems if p.severity is not Severity.NOTE]
    sender_problem = check_sender(loaded.settings)
    if sender_problem is not None and any(e.status in ("planned", "sending") for e in plan.emails):
        problems.append(sender_problem)  # what the run will say (engine/emails._decide): they agree
    problems += [note("", text) for text in plan.notices]
    problems += check_other_rules(tables)
    problems += check_assignment(tables)
    problems += check_references(tables, loaded.settings)
    # a template error the run also found is said once, in check's words (they name the field and
    # suggest one); the run's own wording adds what waits, which check's summary covers
    checked = check_templates(tables, loaded.settings)
    cells = {p.where for p in checked if p.is_error and p.where.startswith("Templates")}
    problems = [p for p in problems if not (p.where in cells and p.message.startswith("template "))]
    problems += checked
    problems += schedule_problems(loaded.settings)
    loaded.settings.timezone  # noqa: B018 - reading it reports an unknown zone
    problems += loaded.settings.problems
    problems += overfull_logs(loaded)
    if sender_problem is not None and sender_problem in problems:  # the error says it; no note besides
        problems = [
            p
            for p in problems
            if "(sender_email) está vazio:" not in p.message
            and not p.message.startswith("sender_email is empty:")
        ]
    return list(dict.fromkeys(problems))


def overfull_logs(loaded: Loaded) -> list[Problem]:
    """Logs already over ``log_max_rows`` (``check`` and dry runs say what the next run will do)."""
    cap = cap_of(loaded.settings)
    out = []
    for name in over_cap(loaded.tables, cap):
        table = loaded.tables[name]
        rows = table.last_row - table.header_row
        out.append(
            warning(
                table.sheet,
                f"{rows:,} rows, more than log_max_rows ({cap:,})",
                "the next run moves the oldest finished rows to the archive in .sheetflow/",
            )
        )
    return out


def log_trim(book: Book, loaded: Loaded, cap: int) -> LogTrim:
    """How this run keeps its logs under ``cap`` (see :mod:`sheetflow.tables.archive`)."""

    def full(names: list[str]) -> dict[str, Table]:
        reader = getattr(book, "read_logs", None)
        raws = reader(names) if reader is not None else book.read(full=names)
        out = {}
        for raw in raws.values():
            spec = contract.sheet_spec(raw.name)
            if spec is not None and spec.name in names:
                out[spec.name], _ = load_table(raw, spec, loaded.tables.locale)
        return out

    return LogTrim(cap, full)


def _aware(now: dt.datetime | None) -> dt.datetime:
    """The clock is read here, once, never in the engine; a naive ``now`` stays naive (workbook time).

    A ``now`` outside the dates a workbook can hold (coerce.DATE_MIN..DATE_MAX) is a UsageError."""
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    if not DATE_MIN <= now.replace(tzinfo=None) < DATE_MAX:
        raise UsageError(
            f"--now {now.date().isoformat()} is outside the dates sheetflow can work with ({DATE_RANGE})"
        )
    return now

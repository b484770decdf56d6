"""The send phase of a run: journal, hand over, record — in an order that survives being killed anywhere.

    mailer = Mailer(book, settings, outbox=None)
    mailer.prepare(plan, tables)          # settle what a stopped run left, then finalize the plan's emails
    mailer.queue(plan)                    # journal the due emails (before the workbook says "sending")
    book.write(...)                       # workbook write #1: Emails rows planned / sending, data, state
    report = mailer.deliver(plan)         # claim -> send -> record, one key at a time
    write_back(mailer, plan, report)      # workbook write #2 (sheetflow.apply): sent / failed / unconfirmed, last_emailed_at

What a crash at each point leaves, and what the next run (``run`` or ``send``) does:

| stopped after | journal | Emails sheet | next run |
| --- | --- | --- | --- |
| planning | nothing | nothing | plans the same keys again (same requests, same keys) |
| journaling | ``queued`` | nothing | plans again; the queued entry is refreshed and sent once |
| workbook write #1 | ``queued`` | ``sending`` | journal says never claimed: plans it again, sends it |
| claim | ``claimed`` | ``sending`` | back to ``queued`` (nothing was handed over), sent once |
| DATA body, before the final dot | ``claimed`` | ``sending`` | the server dropped the unfinished message; sent once |
| ``sending`` mark, before the final dot | ``sending`` | ``sending`` | SMTP: ``unconfirmed`` (not delivered, but nobody can know that); files: no file, so sent once |
| the server's 250, before the journal commit | ``sending`` | ``sending`` | SMTP: ``unconfirmed`` (delivered once, never resent); files: the file exists, so ``sent`` |
| the journal's ``sent`` | ``sent`` | ``sending`` | the row becomes ``sent`` (with sent_at, message_id, last_emailed_at) |
| before / after workbook write #2 | final | ``sending`` / final | settled from the journal / nothing to do |

The one window sheetflow cannot close is SMTP's: between handing over the final dot of DATA and
recording the server's reply, a crash leaves an email that may or may not have been delivered. Such a
key is marked ``unconfirmed`` in the journal and the Emails sheet, with a detail asking the user to check,
and is **never sent again automatically**: a missing email is better than a duplicate. The window is
kept as small as it can be: the journal marks ``sending`` immediately before the final dot and ``sent``
immediately after the reply.

If the journal is lost (``.sheetflow/`` deleted, the workbook copied elsewhere) the Emails sheet still
protects: keys in it are never planned again, ``planned`` rows were certainly never attempted (every
attempt is preceded by a ``sending`` row in the workbook), and ``sending`` rows the journal does not
know become ``unconfirmed``.

Two runners: the run lease (a file lock in ``.sheetflow/``) keeps a second run on the same machine out.
Even without it, a key is handed over only by the runner whose atomic journal claim stands at the point
of no return, so it cannot be sent twice.

Test hook: ``SHEETFLOW_CRASH_AT=POINT[:N]`` kills the process (SIGKILL) at ``planned``, ``journaled``,
``written``, ``claimed:N``, ``body:N``, ``marked:N`` (``sending`` committed, the message not yet handed
over), ``accepted:N``, ``sent:N``, ``final-write`` or ``done`` (N is the Nth email this run sends). It is read only here, for the fault-injection tests.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sheetflow.coerce import as_text, to_cell
from sheetflow.compose.headers import UnsafeMessage, verify
from sheetflow.compose.message import validate_address
from sheetflow.engine.emails import OPEN_STATUSES, finalize_emails
from sheetflow.engine.plan import Plan, PlannedEmail
from sheetflow.mail.config import MailConfig, load_config
from sheetflow.mail.journal import Journal
from sheetflow.mail.log import Outcome, key_positions, new_row
from sheetflow.mail.transports import (
    FilesTransport,
    Outgoing,
    Result,
    SmtpTransport,
    TransportUnavailable,
    confirm,
    make_transport,
)
from sheetflow.problems import error, warning
from sheetflow.tables.settings import Settings
from sheetflow.tables.table import Tables

CRASH_ENV = "SHEETFLOW_CRASH_AT"


def crash_point(name: str, n: int | None = None) -> None:
    """Fault injection for tests: SIGKILL ourselves at a named point (see the module docstring)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted or (wanted != name and (n is None or wanted != f"{name}:{n}")):
        return
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # pragma: no cover - Windows


def journal_path(book: Any) -> Path:
    workdir = getattr(book, "workdir", None)
    if workdir is None:
        workdir = Path(str(book.address)).parent / ".sheetflow"
    name = getattr(book, "identity", None) or Path(str(book.address)).name  # Book.identity: sidecar names
    return Path(workdir) / f"{name}.mail.sqlite"


def book_folder(book: Any) -> Path:
    """The folder of sheetflow.toml and the default outbox: the workbook's folder (a live Excel workbook
    names it as ``folder``; one opened from the cloud gets its local sidecar folder)."""
    folder = getattr(book, "folder", None)
    if folder is not None:
        return Path(folder)
    path = getattr(book, "path", None)
    return Path(path).parent if path is not None else Path.cwd()


@dataclass
class DeliveryReport:
    outcomes: list[Outcome] = field(default_factory=list)
    transport: str = ""
    connections: int = 0
    written: bool = False

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> str:
        parts = [
            f"{s} {self.count(s)}" for s in ("sent", "failed", "unconfirmed", "planned") if self.count(s)
        ]
        return "emails " + (", ".join(parts) if parts else "none sent")


class Mailer:
    def __init__(
        self,
        book: Any,
        settings: Settings,
        *,
        outbox: Path | None = None,
        config: MailConfig | None = None,
        transport: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.book, self.settings = book, settings
        self.outbox = outbox
        self.config = config
        self.transport = transport
        self.sleep = sleep
        self.path = journal_path(book)
        self.journal: Journal | None = None
        self.recovered: dict[str, str] = {}
        self.started = time.monotonic()

    # ------------------------------------------------------------ planning side
    def prepare(self, plan: Plan, tables: Tables, *, dry_run: bool = False) -> None:
        """Settle what stopped runs left in the journal, then finalize the plan's emails with its facts."""
        open_keys = _open_log_keys(tables)
        if plan.mail is None and not plan.emails and not open_keys:
            return  # no email in this run, none waiting: nothing to do, no journal
        keys = [e.key for e in plan.emails] + open_keys
        if dry_run:
            facts = Journal.peek(self.path, keys) if keys else {}
        else:
            if self.path.exists():
                self.journal = Journal.open(self.path)
                self.recovered = self.journal.recover(plan.run_id, confirm)
            facts = self.journal.view(keys) if self.journal is not None and keys else {}
        finalize_emails(plan, tables, self.settings, facts)
        log = tables.get("Emails")
        if log is not None and log.exists and not log.readable:
            # the Emails sheet is the record of what went out: unread, nothing may go out (fails closed)
            for email in plan.emails:
                if email.due or email.status == "planned":
                    email.due, email.status = False, "planned"
                    email.detail = f"not sent: the {log.sheet} sheet has no header row sheetflow can read"
        if not dry_run:
            crash_point("planned")

    def queue(self, plan: Plan) -> None:
        """Journal the due emails before the workbook says ``sending``; check the transport first.

        Waiting notification digests are journaled with their items in any case: unlike an email to a
        record, nothing in the workbook could render them again."""
        held = [e for e in plan.emails if e.kind == "notification" and e.status == "planned" and e.content]
        if held:
            if self.journal is None:
                self.journal = Journal.open(self.path)
            self.journal.hold(held, plan.run_id)
        due = [e for e in plan.emails if e.due]
        if not due:
            return
        try:
            self.config = self.config or load_config(book_folder(self.book), outbox=self.outbox)
            if self.transport is None:
                self.transport = make_transport(self.config)
            self.transport.open()
        except TransportUnavailable as e:
            for email in due:
                email.due, email.status = False, "planned"
                email.detail = f"not sent: {e}; the next run tries again"
            plan.problems.append(error("Emails", f"emails not sent: {e}"))
            return
        if self.journal is None:
            self.journal = Journal.open(self.path)
        # waiting digests are journaled too: they cannot be rendered again from a record later
        waiting = [e for e in plan.emails if e.kind == "notification" and e.status == "planned" and e.message]
        self.journal.queue(due + waiting, plan.run_id, self.transport.name)
        crash_point("journaled")

    def after_write(self) -> None:
        crash_point("written")

    # ------------------------------------------------------------ the send loop
    def deliver(self, plan: Plan) -> DeliveryReport:
        due = [e for e in plan.emails if e.due]
        report = DeliveryReport(transport=getattr(self.transport, "name", ""))
        if not due or self.journal is None:
            return report
        journal, transport = self.journal, self.transport
        retries = self.config.retries if self.config is not None else 3
        delays = self.config.retry_delays if self.config is not None else (2.0, 10.0, 30.0)
        stop: str | None = None
        for n, email in enumerate(due, start=1):
            if stop is not None:
                report.outcomes.append(
                    _outcome(email, "planned", f"not sent: {stop}; the next run tries again")
                )
                continue
            try:  # the last look before it leaves: one header per field, only the fields sheetflow sets
                verify(email.message)
            except UnsafeMessage as e:
                detail = f"held: the message's header failed the safety check ({e})"
                report.outcomes.append(_outcome(email, "planned", detail))
                plan.problems.append(error("Emails", f"email {email.key} not sent: {detail}"))
                continue
            token = journal.claim(email.key, plan.run_id, self.local_now(plan))
            if token is None:
                report.outcomes.append(_outcome(email, "taken", "another runner has this email"))
                continue
            crash_point("claimed", n)
            if hasattr(transport, "crash"):
                transport.crash = functools.partial(crash_point, n=n)
            recipient = validate_address(email.to)
            sender = validate_address(self.settings.text("sender_email"))
            out = Outgoing(
                email.key,
                sender.address,
                recipient.address,
                email.message,
                smtputf8=not (recipient.ascii and sender.ascii),
            )
            commit = functools.partial(_commit, journal, email.key, token, n)
            attempt = 0
            while True:
                try:
                    result = transport.send(out, commit)
                except TransportUnavailable as e:
                    result = Result("retry", str(e))
                    if attempt >= retries:
                        stop = str(e)
                if result.status != "retry" or attempt >= retries:
                    break
                entry = journal.entry(email.key)
                if entry is not None and entry.status == "sending" and not journal.unmark(email.key, token):
                    result = Result("lost")
                    break
                self.sleep(delays[min(attempt, len(delays) - 1)])
                attempt += 1
            when = self.local_now(plan)
            if result.status == "sent":
                crash_point("accepted", n)
                journal.finish(
                    email.key, token, "sent", sent_at=when, detail=result.detail, location=result.location
                )
                report.outcomes.append(_outcome(email, "sent", "", when))
            elif result.status == "failed":
                journal.finish(email.key, token, "failed", detail=result.detail)
                report.outcomes.append(_outcome(email, "failed", result.detail))
            elif result.status == "unconfirmed":
                detail = (
                    f"{result.detail}; check the recipient's mailbox or your provider's log for Message-ID "
                    f"{email.message_id} before sending it again"
                )
                journal.finish(email.key, token, "unconfirmed", sent_at=when, detail=detail)
                report.outcomes.append(_outcome(email, "unconfirmed", detail, when))
            elif result.status == "retry":
                journal.release(email.key, token, result.detail)
                report.outcomes.append(
                    _outcome(
                        email, "planned", f"temporary failure ({result.detail}); the next run tries again"
                    )
                )
            else:  # lost: another runner recovered the key and owns it now
                report.outcomes.append(_outcome(email, "taken", "another runner has this email"))
            crash_point("sent", n)
        report.connections = getattr(transport, "connections", 0)
        try:
            transport.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not lose the report
            pass
        if stop is not None:
            plan.problems.append(error("Emails", f"sending stopped: {stop}"))
        for o in report.outcomes:
            if o.status == "failed":
                plan.problems.append(warning("Emails", f"email to {_to(plan, o.key)} failed: {o.detail}"))
        return report

    def local_now(self, plan: Plan) -> dt.datetime:
        """Workbook time now: the run's clock plus the wall-clock time since the run started."""
        elapsed = dt.timedelta(seconds=time.monotonic() - self.started)
        return (plan.local_now + elapsed).replace(microsecond=0)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None


def _commit(journal: Journal, key: str, token: str, n: int, location: str = "") -> bool:
    ok = journal.mark_sending(key, token, location)
    if ok:
        crash_point("marked", n)
    return ok


def _outcome(email: PlannedEmail, status: str, detail: str, when: dt.datetime | None = None) -> Outcome:
    return Outcome(
        email.key,
        status,
        detail,
        when if status in ("sent", "unconfirmed") else None,
        email.message_id,
        email.contact_id,
        email.rule,
        email.template,
    )


def _to(plan: Plan, key: str) -> str:
    return next((e.to for e in plan.emails if e.key == key), key)


def _open_log_keys(tables: Tables) -> list[str]:
    log = tables["Emails"]
    if not len(log):
        return []
    out = []
    for key, status in zip(log.df["key"].to_numpy(dtype=object), log.df["status"].to_numpy(dtype=object)):
        if isinstance(key, str) and isinstance(status, str) and status.strip().lower() in OPEN_STATUSES:
            out.append(key.strip())
    return out


def apply_outcomes(
    builder: Any,
    tables: Tables,
    plan: Plan,
    outcomes: list[Outcome],
    now: dt.datetime,
    report: DeliveryReport,
) -> None:
    positions = key_positions(tables)
    by_key = {e.key: e for e in plan.emails}
    latest: dict[str, Outcome] = {}
    for o in outcomes:
        pos = positions.get(o.key)
        if pos is None:  # the row is gone (deleted meanwhile): put it back
            email = by_key.get(o.key)
            if email is None:
                continue
            row = new_row(email, plan.local_now)
            row.update(status=o.status, detail=o.detail, sent_at=o.sent_at)
            builder.target("Emails").append(row)
        else:
            builder.set_cell("Emails", pos, "status", o.status)
            builder.set_cell("Emails", pos, "detail", o.detail)
            if o.sent_at is not None:
                builder.set_cell("Emails", pos, "sent_at", o.sent_at)
            if o.message_id:
                builder.set_cell("Emails", pos, "message_id", o.message_id)
        if o.status in ("sent", "unconfirmed") and o.contact_id and o.sent_at is not None:
            if o.contact_id not in latest or latest[o.contact_id].sent_at < o.sent_at:  # type: ignore[operator]  # only outcomes with sent_at are kept in latest
                latest[o.contact_id] = o
    contacts = tables["Contacts"]
    ids = contacts.df["id"].to_numpy(dtype=object).tolist() if len(contacts) else []
    where = {rid.strip(): p for p, rid in enumerate(ids) if isinstance(rid, str) and rid.strip()}
    activity = None
    for cid, o in latest.items():
        pos = where.get(cid)
        if pos is None:
            continue
        current = (
            to_cell(contacts.df["last_emailed_at"].iloc[pos]) if "last_emailed_at" in contacts.df else None
        )
        if isinstance(current, dt.datetime) and current >= o.sent_at:  # type: ignore[operator]  # only outcomes with sent_at are kept in latest
            continue
        builder.set_cell("Contacts", pos, "last_emailed_at", o.sent_at)
        activity = activity or builder.target("Activity")
        activity.append(
            {
                "at": now,
                "run_id": plan.run_id,
                "table": "Contacts",
                "record_id": cid,
                "column": "last_emailed_at",
                "old": as_text(current),
                "new": as_text(o.sent_at),
                "rule": f"Email: {o.rule} ({o.template})",
            }
        )
    runs = tables["Runs"]
    if len(runs):
        run_ids = runs.df["run_id"].to_numpy(dtype=object).tolist()
        if plan.run_id in run_ids:
            pos = run_ids.index(plan.run_id)
            builder.set_cell("Runs", pos, "counts", f"{plan.summary()}; {report.summary()}")
            builder.set_cell("Runs", pos, "finished_at", now)
            errors = [str(p) for p in plan.errors][:20]
            if errors:
                builder.set_cell("Runs", pos, "errors", "\n".join(errors))


def preview(plan: Plan, folder: Path) -> list[Path]:
    """``--dry-run --outbox DIR``: every message this plan would send (or keep planned) as an .eml file."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for email in plan.emails:
        if email.status in ("skipped", "sent", "failed", "unconfirmed") or not email.message:
            continue
        path = folder / f"{email.key}.eml"
        tmp = folder / f".{email.key}.preview.tmp"
        tmp.write_bytes(email.message)
        os.replace(tmp, path)
        written.append(path)
    return written


__all__ = [
    "Mailer",
    "DeliveryReport",
    "crash_point",
    "preview",
    "journal_path",
    "FilesTransport",
    "SmtpTransport",
]

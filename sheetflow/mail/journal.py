"""The email journal: a sidecar SQLite file that makes every email go out at most once, and normally once.

    journal = Journal.open(Path(".sheetflow/crm.xlsx.mail.sqlite"))
    journal.queue(emails, run_id="R1", transport="smtp")      # before the workbook says "sending"
    token = journal.claim(key, "R1")                          # atomic: one runner wins a key
    journal.mark_sending(key, token)                          # just before the point of no return
    journal.finish(key, token, "sent", ...)                   # just after the server's 250

Where it lives: ``.sheetflow/<workbook file name>.mail.sqlite`` beside the workbook (where the run lock
and the backups already are), in WAL mode. Every commit survives a killed process. The ``sending`` mark
is committed with ``synchronous=FULL`` (fsync before the message is handed over), because it is the
one status whose loss in a power cut could lead to a second send; the other transitions use
``synchronous=NORMAL``: losing one of them in a power cut can only put back a key that was never handed
over, or leave a handed-over key ``sending`` (it then becomes ``unconfirmed``, never resent), and the
next ``sending`` mark's fsync makes them durable anyway. The Emails sheet is the human-readable mirror;
the journal is what decides.

Statuses of a key: ``queued`` -> ``claimed`` -> ``sending`` -> ``sent`` | ``failed`` | ``unconfirmed``.

- ``claimed``: one runner owns the key (``claim`` is ``UPDATE ... WHERE status='queued'`` inside
  ``BEGIN IMMEDIATE``, with a random token). Nothing has been handed over yet: SMTP's DATA is not
  finished (the server drops an unfinished message), the .eml is not renamed into place.
- ``sending``: set (compare-and-set on the token) immediately before the point of no return — the final
  ``<CRLF>.<CRLF>`` of SMTP DATA, the rename of the .eml. A runner that loses its claim (another runner
  recovered it) aborts before that point, so two runners can never both hand a key over.
- after a crash, :meth:`recover` puts ``claimed`` keys back to ``queued`` (nothing went out) and settles
  ``sending`` keys: the files transport looks for the file (its existence proves the send); for SMTP the
  outcome is unknowable, so the key becomes ``unconfirmed`` and is **never sent again automatically**.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sheetflow.engine.emails import JournalFacts
from sheetflow.engine.plan import PlannedEmail

SCHEMA = """
CREATE TABLE IF NOT EXISTS emails (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    to_addr TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    template TEXT NOT NULL DEFAULT '',
    rule TEXT NOT NULL DEFAULT '',
    tbl TEXT NOT NULL DEFAULT '',
    record_id TEXT NOT NULL DEFAULT '',
    message BLOB,
    message_id TEXT NOT NULL DEFAULT '',
    run_id TEXT NOT NULL DEFAULT '',
    token TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    transport TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL DEFAULT '',
    queued_at TEXT NOT NULL DEFAULT '',          -- UTC
    claimed_at TEXT NOT NULL DEFAULT '',         -- workbook time (naive ISO)
    sent_at TEXT NOT NULL DEFAULT '',            -- workbook time (naive ISO), as the Emails sheet shows it
    detail TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    content TEXT NOT NULL DEFAULT ''              -- JSON: a held notification digest (rep, items)
);
CREATE INDEX IF NOT EXISTS emails_status ON emails(status);
"""

ACTIVE = ("claimed", "sending")


@dataclass
class Entry:
    key: str
    status: str
    to: str
    message: bytes
    message_id: str
    run_id: str
    token: str
    transport: str
    location: str
    sent_at: str
    detail: str
    attempts: int
    content: str = ""

    def facts(self) -> JournalFacts:
        sent = dt.datetime.fromisoformat(self.sent_at) if self.sent_at else None
        try:
            content = json.loads(self.content) if self.content else {}
        except ValueError:
            content = {}
        return JournalFacts(self.status, sent, self.message_id, self.detail, self.message or b"", content)


def _utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Journal:
    def __init__(self, path: Path, connection: sqlite3.Connection):
        self.path = path
        self.db = connection
        self.owner = f"{socket.gethostname()}"

    @classmethod
    def open(cls, path: Path) -> Journal:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(emails)")}
        if "content" not in columns:  # a journal written before digests were kept while held
            db.execute("ALTER TABLE emails ADD COLUMN content TEXT NOT NULL DEFAULT ''")
        return cls(path, db)

    @classmethod
    def peek(cls, path: Path, keys: Iterable[str]) -> dict[str, JournalFacts]:
        """Read-only view for a dry run; {} when there is no journal."""
        if not path.exists():
            return {}
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return {e.key: e.facts() for e in _entries(db, keys)}
        except sqlite3.DatabaseError:
            return {}
        finally:
            db.close()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ reading
    def view(self, keys: Iterable[str]) -> dict[str, JournalFacts]:
        return {e.key: e.facts() for e in _entries(self.db, keys)}

    def entry(self, key: str) -> Entry | None:
        found = _entries(self.db, [key])
        return found[0] if found else None

    def entries(self, status: str | None = None) -> list[Entry]:
        sql = f"SELECT {_COLUMNS} FROM emails" + (" WHERE status=?" if status else "")
        return [Entry(*row) for row in self.db.execute(sql, (status,) if status else ())]

    # ------------------------------------------------------------ writing
    def queue(self, emails: Iterable[PlannedEmail], run_id: str, transport: str) -> None:
        """Record the emails this run will send (one transaction). A key that is already past
        ``queued`` is left alone: it is never sent again."""
        now = _utc()
        rows = [
            (
                e.key,
                e.to,
                e.subject,
                e.template,
                e.rule,
                e.table,
                e.record_id,
                e.message,
                e.message_id,
                run_id,
                transport,
                now,
            )
            for e in emails
        ]
        if not rows:
            return
        with self._immediate():
            self.db.executemany(
                "INSERT INTO emails (key, status, to_addr, subject, template, rule, tbl, record_id, message, "
                "message_id, run_id, transport, queued_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET to_addr=excluded.to_addr, subject=excluded.subject, "
                "message=excluded.message, message_id=excluded.message_id, run_id=excluded.run_id, "
                "transport=excluded.transport WHERE emails.status='queued'",
                rows,
            )

    def hold(self, emails: Iterable[PlannedEmail], run_id: str) -> None:
        """Keep what a waiting notification digest says (its rep and items, JSON) so a later run can
        render and send it; only for keys nobody has claimed."""
        rows = [
            (
                e.key,
                e.to,
                e.subject,
                e.template,
                e.rule,
                e.table,
                e.record_id,
                run_id,
                _utc(),
                json.dumps(e.content, default=str),
            )
            for e in emails
            if e.content
        ]
        if not rows:
            return
        with self._immediate():
            self.db.executemany(
                "INSERT INTO emails (key, status, to_addr, subject, template, rule, tbl, record_id, run_id, "
                "queued_at, content) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET content=excluded.content WHERE emails.status='queued'",
                rows,
            )

    def claim(self, key: str, run_id: str, local_now: dt.datetime) -> str | None:
        """Atomically take a queued key; None if it is not queued (another runner has it, or it is done).

        ``local_now`` (workbook time) is kept as the send time should the runner stop before finishing."""
        token = secrets.token_hex(8)
        with self._immediate():
            cur = self.db.execute(
                "UPDATE emails SET status='claimed', token=?, run_id=?, owner=?, claimed_at=?, "
                "attempts=attempts+1 WHERE key=? AND status='queued'",
                (token, run_id, self.owner, local_now.isoformat(timespec="seconds"), key),
            )
        return token if cur.rowcount == 1 else None

    def mark_sending(self, key: str, token: str, location: str = "") -> bool:
        """claimed -> sending, only if our claim still stands (the point of no return comes next)."""
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            with self._immediate():
                cur = self.db.execute(
                    "UPDATE emails SET status='sending', location=? WHERE key=? AND token=? "
                    "AND status='claimed'",
                    (location, key, token),
                )
        finally:
            self.db.execute("PRAGMA synchronous=NORMAL")
        return cur.rowcount == 1

    def unmark(self, key: str, token: str) -> bool:
        """sending -> claimed after the server refused the message (4xx): it was not accepted."""
        with self._immediate():
            cur = self.db.execute(
                "UPDATE emails SET status='claimed' WHERE key=? AND token=? AND status='sending'",
                (key, token),
            )
        return cur.rowcount == 1

    def release(self, key: str, token: str, detail: str = "") -> None:
        """Give a claimed key back (temporary failure; a later run tries again)."""
        with self._immediate():
            self.db.execute(
                "UPDATE emails SET status='queued', token='', detail=? WHERE key=? AND token=? "
                "AND status IN ('claimed', 'sending')",
                (detail, key, token),
            )

    def finish(
        self,
        key: str,
        token: str,
        status: str,
        *,
        sent_at: dt.datetime | None = None,
        detail: str = "",
        location: str = "",
    ) -> bool:
        """Record the outcome. Our token decides, even if a recovery marked the key unconfirmed meanwhile."""
        with self._immediate():
            cur = self.db.execute(
                "UPDATE emails SET status=?, sent_at=?, detail=?, location=CASE WHEN ?='' THEN location ELSE ? END "
                "WHERE key=? AND token=? AND status IN ('claimed', 'sending', 'unconfirmed')",
                (
                    status,
                    sent_at.isoformat(timespec="seconds") if sent_at else "",
                    detail,
                    location,
                    location,
                    key,
                    token,
                ),
            )
        return cur.rowcount == 1

    def recover(self, run_id: str, confirm: Callable[[Entry], bool | None]) -> dict[str, str]:
        """Settle keys left claimed/sending by runs that stopped. Returns key -> new status.

        ``confirm(entry)`` is the transport's answer to "did this go out?": True, False or None (unknown).
        """
        changed: dict[str, str] = {}
        for e in [x for x in self.entries() if x.status in ACTIVE and x.run_id != run_id]:
            if e.status == "claimed":
                new, detail = "queued", ""
            else:
                answer = confirm(e)
                if answer is True:
                    new, detail = "sent", ""
                elif answer is False:
                    new, detail = "queued", ""
                else:
                    new = "unconfirmed"
                    detail = (
                        "sheetflow stopped while the server was taking this email: it may or may not have "
                        f"been delivered; check the recipient's mailbox or your provider's log for Message-ID "
                        f"{e.message_id} before sending it again"
                    )
            with self._immediate():
                cur = self.db.execute(
                    "UPDATE emails SET status=?, detail=?, token=CASE WHEN ?='queued' THEN '' ELSE token END, "
                    "sent_at=CASE WHEN ?!='queued' AND sent_at='' THEN claimed_at ELSE sent_at END "
                    "WHERE key=? AND status=? AND token=?",
                    (new, detail, new, new, e.key, e.status, e.token),
                )
            if cur.rowcount == 1:
                changed[e.key] = new
        return changed

    def _immediate(self) -> _Tx:
        return _Tx(self.db)


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, tb) -> None:  # noqa: ANN001
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


_COLUMNS = (
    "key, status, to_addr, message, message_id, run_id, token, transport, location, sent_at, detail, attempts, "
    "content"
)


def _entries(db: sqlite3.Connection, keys: Iterable[str]) -> list[Entry]:
    keys = list(dict.fromkeys(keys))
    out: list[Entry] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        out += [
            Entry(*row) for row in db.execute(f"SELECT {_COLUMNS} FROM emails WHERE key IN ({marks})", chunk)
        ]
    return out

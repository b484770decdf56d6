"""SMTP throughput: N messages to a local aiosmtpd over one reused connection vs a new connection each.

    python benchmarks/bench_smtp.py                 # 1000 messages, plain SMTP
    python benchmarks/bench_smtp.py 1000 starttls   # STARTTLS + AUTH (certificate made by trustme)

Both variants go through sheetflow's real send path (``Mailer.deliver``: journal claim, ``sending``
mark, DATA, ``sent`` record, all in SQLite with synchronous=FULL), so the numbers include the cost of
exactly-once bookkeeping; the "new connection" variant closes the transport after every message, as a
naive mail merge does. Needs the test extra (aiosmtpd).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sheetflow.engine.plan import Plan, PlannedEmail  # noqa: E402
from sheetflow.mail.config import load_config  # noqa: E402
from sheetflow.mail.journal import Journal  # noqa: E402
from sheetflow.mail.sender import Mailer  # noqa: E402
from sheetflow.mail.testing import LocalSmtp  # noqa: E402
from sheetflow.mail.transports import SmtpTransport  # noqa: E402
from sheetflow.tables.settings import Settings  # noqa: E402

BODY = (
    "Olá {name},\r\n\r\nobrigado pelo interesse. Este é um e-mail de teste do sheetflow com algumas "
    "linhas de texto, do tamanho de uma mensagem de boas-vindas comum.\r\n\r\nAtenciosamente,\r\nEquipe\r\n"
)


class _Book:
    def __init__(self, folder: Path):
        self.address = str(folder / "bench.xlsx")


class OneShot(SmtpTransport):
    """A new connection for every message (what sheetflow does not do)."""

    def send(self, out, commit):  # noqa: ANN001
        result = super().send(out, commit)
        self.close()
        return result


def plan_of(n: int, run: str) -> Plan:
    now = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)
    plan = Plan(run, now, now.replace(tzinfo=None), "run")
    for i in range(n):
        key = f"E{run}{i:06d}"
        data = (
            f"From: vendas@acme.com\r\nTo: p{i}@cliente.com\r\nSubject: Boas-vindas {i}\r\n"
            f"X-Sheetflow-Key: {key}\r\n\r\n" + BODY.format(name=f"Pessoa {i}")
        ).encode()
        plan.emails.append(
            PlannedEmail(
                key,
                "Contacts",
                f"C-{i}",
                "Bench",
                "welcome",
                f"p{i}@cliente.com",
                due=True,
                message=data,
                message_id=f"<{key}@acme.com>",
            )
        )
    return plan


def measure(n: int, transport_class: type, label: str, tls: str = "none") -> float:
    auth = ("bench", "bench-password") if tls != "none" else None
    with tempfile.TemporaryDirectory() as tmp, LocalSmtp(tls=tls, auth=auth) as server:
        folder = Path(tmp)
        config = load_config(folder, env=server.env())
        mailer = Mailer(_Book(folder), Settings(values={"sender_email": "vendas@acme.com"}), config=config)
        mailer.path = folder / ".sheetflow" / "bench.mail.sqlite"
        mailer.journal = Journal.open(mailer.path)
        plan = plan_of(n, label[:1].upper())
        mailer.journal.queue(plan.emails, plan.run_id, "smtp")
        mailer.transport = transport_class(config)
        started = time.perf_counter()
        mailer.transport.open()
        report = mailer.deliver(plan)
        elapsed = time.perf_counter() - started
        assert report.count("sent") == n and len(server.messages) == n, report.summary()
        connections = server.handler.mail_count and report.connections
        print(
            f"{label:<28} {n:>6} messages  {elapsed:7.2f} s  {n / elapsed:8.1f} msg/s  "
            f"({connections} connection{'s' if connections != 1 else ''})"
        )
        return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    tls = sys.argv[2] if len(sys.argv) > 2 else "none"
    print(f"{n} messages to aiosmtpd on 127.0.0.1 ({tls}), through Mailer.deliver with the SQLite journal")
    reused = measure(n, SmtpTransport, "one connection, reused", tls)
    fresh = measure(n, OneShot, "new connection per message", tls)
    print(f"reusing the connection is {fresh / reused:.1f}x faster")


if __name__ == "__main__":
    main()

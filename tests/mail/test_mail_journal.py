"""The journal: atomic claims, compare-and-set on the token, recovery rules, and two runners at once."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
import time

import pytest

from sheetflow.book.xlsx import XlsxBook
from sheetflow.cli.main import main
from sheetflow.engine.plan import PlannedEmail
from sheetflow.mail.journal import Journal
from tests.conftest import NOW, ROOT


def emails(n: int, prefix: str = "K") -> list[PlannedEmail]:
    return [
        PlannedEmail(
            f"{prefix}{i}",
            "Contacts",
            f"C-{i}",
            "R",
            "t",
            f"p{i}@acme.com",
            subject=f"s{i}",
            message=f"Subject: s{i}\r\nX-Sheetflow-Key: {prefix}{i}\r\n\r\nbody {i}\r\n".encode(),
            message_id=f"<{prefix}{i}@acme.com>",
        )
        for i in range(1, n + 1)
    ]


def test_a_claim_is_exclusive_and_the_token_decides(tmp_path):
    path = tmp_path / "j.sqlite"
    a, b = Journal.open(path), Journal.open(path)
    a.queue(emails(1), "R1", "smtp")
    token = a.claim("K1", "R1", NOW)
    assert token and b.claim("K1", "R2", NOW) is None
    assert not b.mark_sending("K1", "not-the-token")
    assert a.mark_sending("K1", token)
    assert not a.mark_sending("K1", token)  # only from claimed
    assert a.finish("K1", token, "sent", sent_at=NOW, detail="250 ok")
    assert a.entry("K1").status == "sent" and a.entry("K1").sent_at == NOW.isoformat()
    a.queue(emails(1), "R3", "smtp")  # queueing again never reopens a sent key
    assert a.entry("K1").status == "sent" and a.claim("K1", "R3", NOW) is None


def test_recovery_rules(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal.open(path)
    j.queue(emails(5), "R1", "smtp")
    tokens = {k: j.claim(k, "R1", NOW) for k in ("K1", "K2", "K3", "K4")}
    j.mark_sending("K2", tokens["K2"])  # smtp: final dot may have been handed over
    eml = tmp_path / "K3.eml"
    eml.write_bytes(b"x")
    j.db.execute("UPDATE emails SET transport='files' WHERE key IN ('K3', 'K4')")
    j.mark_sending("K3", tokens["K3"], str(eml))  # files: renamed into place before the crash
    j.mark_sending("K4", tokens["K4"], str(tmp_path / "K4.eml"))  # files: never renamed
    from sheetflow.mail.transports import confirm

    changed = j.recover("R2", confirm)
    assert changed == {"K1": "queued", "K2": "unconfirmed", "K3": "sent", "K4": "queued"}
    assert (
        "may or may not have been delivered" in j.entry("K2").detail
        and "<K2@acme.com>" in j.entry("K2").detail
    )
    assert j.entry("K2").sent_at == NOW.isoformat() and j.entry("K3").sent_at == NOW.isoformat()
    assert j.entry("K5").status == "queued"
    # the runner that held K1 is alive after all: its claim is gone, so it must not hand K1 over
    assert not j.mark_sending("K1", tokens["K1"])
    # ...but if it did hand K2 over and gets the 250, its token still records the truth
    assert j.finish("K2", tokens["K2"], "sent", sent_at=NOW)
    assert j.entry("K2").status == "sent"
    assert j.recover("R3", confirm) == {}


def test_peek_is_read_only_and_empty_without_a_journal(tmp_path):
    path = tmp_path / "none.sqlite"
    assert Journal.peek(path, ["K1"]) == {}
    assert not path.exists()
    j = Journal.open(path)
    j.queue(emails(2), "R1", "files")
    assert set(Journal.peek(path, ["K1", "K2", "K9"])) == {"K1", "K2"}


def test_a_second_runner_is_refused_while_the_lease_is_held(book, capsys):
    path = book({"Contacts": [["id"], ["C-1"]]})
    with XlsxBook(path).lease():
        assert main(["send", str(path)]) == 3
    assert "another sheetflow run" in capsys.readouterr().out


RUNNER = textwrap.dedent("""
    import json, random, sys, time
    from pathlib import Path
    from sheetflow.mail.config import load_config
    from sheetflow.mail.journal import Journal
    from sheetflow.mail.sender import Mailer
    from sheetflow.mail.transports import SmtpTransport
    from sheetflow.engine.plan import Plan, PlannedEmail
    from sheetflow.tables.settings import Settings
    import datetime as dt

    journal_path, go, keys = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    now = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)
    plan = Plan("R-" + sys.argv[4], now, now.replace(tzinfo=None), "send")
    for key in random.Random(sys.argv[4]).sample(keys, len(keys)):
        plan.emails.append(PlannedEmail(key, "Contacts", key, "R", "t", key.lower() + "@acme.com", due=True,
                                        message=("X-Sheetflow-Key: " + key + "\\r\\n\\r\\nbody\\r\\n").encode()))

    class Book:
        address = str(journal_path.parent / "crm.xlsx")
    settings = Settings(values={"sender_email": "vendas@acme.com"})
    mailer = Mailer(Book(), settings, config=load_config(journal_path.parent))
    mailer.path = journal_path
    mailer.journal = Journal.open(journal_path)
    mailer.transport = SmtpTransport(mailer.config)
    mailer.transport.open()
    for _ in range(500):            # start together
        if go.exists():
            break
        time.sleep(0.01)
    report = mailer.deliver(plan)
    print(json.dumps({o.key: o.status for o in report.outcomes}))
""")


@pytest.mark.slow
def test_two_runners_on_one_journal_send_each_key_once(tmp_path):
    from sheetflow.mail.testing import LocalSmtp

    pytest.importorskip("aiosmtpd")
    keys = [f"K{i:03d}" for i in range(60)]
    journal_path = tmp_path / ".sheetflow" / "crm.xlsx.mail.sqlite"
    j = Journal.open(journal_path)
    j.queue([PlannedEmail(k, "Contacts", k, "R", "t", k.lower() + "@acme.com") for k in keys], "R0", "smtp")
    script = tmp_path / "runner.py"
    script.write_text(RUNNER, encoding="utf-8")
    go = tmp_path / "go"
    with LocalSmtp() as server:
        env = {**server.env(), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(journal_path), str(go), json.dumps(keys), str(n)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=tmp_path,
            )
            for n in (1, 2)
        ]
        time.sleep(0.5)
        go.touch()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
        received = server.keys()
    assert sorted(received) == keys  # every key, exactly once
    sent_by = [{k for k, s in o.items() if s == "sent"} for o in outs]
    assert not (sent_by[0] & sent_by[1]) and sent_by[0] | sent_by[1] == set(keys)
    print("split between the runners:", len(sent_by[0]), len(sent_by[1]))
    assert all(s in ("sent", "taken") for o in outs for s in o.values())
    assert {e.status for e in j.entries()} == {"sent"}


def test_finish_refuses_a_foreign_token(tmp_path):
    j = Journal.open(tmp_path / "j.sqlite")
    j.queue(emails(1), "R1", "smtp")
    token = j.claim("K1", "R1", NOW)
    assert not j.finish("K1", "someone-else", "sent", sent_at=NOW)
    j.release("K1", token, "451 later")
    assert j.entry("K1").status == "queued" and j.entry("K1").detail == "451 later"
    assert j.claim("K1", "R2", NOW + dt.timedelta(minutes=1))

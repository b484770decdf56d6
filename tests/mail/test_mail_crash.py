"""Fault injection: a real `sheetflow run` subprocess SIGKILLed at many points of a 50-email run, then rerun.

Emails come from an Automations row (Welcome: Contacts, trigger new, send_email template=welcome), the
way a team sets it up. The crash points are the sender's test hook ``SHEETFLOW_CRASH_AT`` (see
``sheetflow/mail/sender.py``). After the rerun every planned email must have been received exactly
once, the workbook must open, and its Emails sheet must say what happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sheetflow.engine.automations")
pytest.importorskip("aiosmtpd")

import python_calamine as pc  # noqa: E402
from openpyxl import load_workbook  # noqa: E402

from sheetflow.commands.run import run  # noqa: E402
from sheetflow.engine.emails import email_key  # noqa: E402
from sheetflow.mail.testing import LocalSmtp  # noqa: E402
from tests.conftest import NOW, ROOT, make_book  # noqa: E402

pytestmark = pytest.mark.slow
N = 50
KEYS = {email_key("Welcome", "Contacts", f"C-{i:03d}", "welcome", "new") for i in range(1, N + 1)}
NOW_ARG = NOW.isoformat(timespec="minutes")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A workbook whose first run is done (baseline) and to which 50 new contacts were added since."""
    folder = tmp_path_factory.mktemp("prepared")
    path = make_book(
        folder / "crm.xlsx",
        {
            "Settings": [
                ["key", "value"],
                ["timezone", "America/Sao_Paulo"],
                ["sender_name", "Equipe Ágil"],
                ["sender_email", "vendas@acme.com.br"],
                ["send_window", "always"],
                ["daily_email_limit", 1000],
            ],
            "Templates": [
                ["name", "subject", "body"],
                ["welcome", "Olá, {{ first_name }}!", "Oi {{ first_name }}, bem-vindo(a)."],
            ],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                ["Welcome", "Contacts", "new", "", "send_email", "template=welcome"],
            ],
            "Contacts": [["id", "first_name", "email"], ["C-000", "Base", "base@acme.com.br"]],
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHEETFLOW_TRANSPORT", "files")
        run(path, now=NOW)  # first run: existing records are the baseline
    wb = load_workbook(path)
    for i in range(1, N + 1):
        wb["Contacts"].append(
            [f"C-{i:03d}", ["João", "Luíza", "Conceição"][i % 3], f"pessoa{i}@cliente.com.br"]
        )
    wb.save(path)
    shutil.rmtree(folder / ".sheetflow", ignore_errors=True)
    shutil.rmtree(folder / "outbox", ignore_errors=True)
    return path


def copy_of(prepared: Path, tmp_path: Path) -> Path:
    target = tmp_path / "crm.xlsx"
    shutil.copy2(prepared, target)
    return target


def sheetflow(path: Path, env: dict[str, str], crash: str | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SHEETFLOW_")}
    full.update(env, PYTHONPATH=str(ROOT))
    if crash:
        full["SHEETFLOW_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, "-m", "sheetflow", "run", str(path), "--now", NOW_ARG],
        capture_output=True,
        text=True,
        env=full,
        cwd=path.parent,
        timeout=300,
    )


def emails_log(path: Path) -> list[dict[str, object]]:
    book = pc.CalamineWorkbook.from_path(str(path))
    try:
        rows = book.get_sheet_by_name("Emails").to_python()
    finally:
        book.close()
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def check_workbook(path: Path, unconfirmed: set[str] = frozenset()) -> list[dict[str, object]]:
    load_workbook(path)  # opens
    log = emails_log(path)
    assert len(log) == N and {r["key"] for r in log} == KEYS  # one row per key
    for row in log:
        expected = "unconfirmed" if row["key"] in unconfirmed else "sent"
        assert row["status"] == expected, row
        assert row["sent_at"] and row["to"].endswith("@cliente.com.br")
    book = pc.CalamineWorkbook.from_path(str(path))
    rows = book.get_sheet_by_name("Contacts").to_python()
    book.close()
    column = rows[0].index("last_emailed_at")
    assert all(r[column] for r in rows[2:]) and not rows[1][column]  # baseline contact was not emailed
    return log


SMTP_POINTS = [
    "planned",
    "journaled",
    "written",
    "claimed:1",
    "claimed:33",
    "body:17",
    "accepted:17",
    "sent:17",
    "sent:50",
    "final-write",
    "done",
]


@pytest.mark.parametrize("point", SMTP_POINTS)
def test_smtp_run_killed_then_rerun_sends_each_email_once(prepared, tmp_path, point):
    path = copy_of(prepared, tmp_path)
    with LocalSmtp() as server:
        crashed = sheetflow(path, server.env(), crash=point)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        rerun = sheetflow(path, server.env())
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        again = sheetflow(path, server.env())  # and nothing more after that
        assert again.returncode == 0 and "nothing to change" in again.stdout
        received = server.keys()
    assert sorted(received) == sorted(KEYS)  # every planned email exactly once
    # after the 250 but before the journal commit nobody can know: that one is "unconfirmed" (it did arrive)
    unconfirmed = {next(k for k in received[16:17])} if point == "accepted:17" else set()
    log = check_workbook(path, unconfirmed)
    if unconfirmed:
        row = next(r for r in log if r["status"] == "unconfirmed")
        assert "check the recipient's mailbox or your provider's log for Message-ID" in row["detail"]


def test_smtp_the_ambiguous_instant_is_unconfirmed_never_resent(prepared, tmp_path):
    """Killed after the journal says 'sending' but before the final dot went out: the email did not
    arrive, but no program can tell that from 'arrived'. sheetflow says so and does not resend."""
    path = copy_of(prepared, tmp_path)
    with LocalSmtp() as server:
        assert sheetflow(path, server.env(), crash="marked:17").returncode == -signal.SIGKILL
        assert sheetflow(path, server.env()).returncode == 0
        received = server.keys()
    assert len(received) == len(set(received)) == N - 1
    (missing,) = KEYS - set(received)
    log = check_workbook(path, {missing})
    assert next(r for r in log if r["key"] == missing)["status"] == "unconfirmed"


@pytest.mark.parametrize("point", ["marked:5", "accepted:5", "written"])
def test_files_transport_has_no_ambiguous_window(prepared, tmp_path, point):
    path = copy_of(prepared, tmp_path)
    env = {"SHEETFLOW_TRANSPORT": "files"}
    assert sheetflow(path, env, crash=point).returncode == -signal.SIGKILL
    assert sheetflow(path, env).returncode == 0
    files = sorted(p.stem for p in (tmp_path / "outbox").glob("*.eml"))
    assert files == sorted(KEYS)
    assert not list((tmp_path / "outbox").glob(".*.tmp")) or point == "marked:5"
    check_workbook(path)

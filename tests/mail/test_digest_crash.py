"""Issue 20 (verification): a notification digest is sent once, with every record's line, when a run is
killed at a crash point and run again (the sender's test hook ``SHEETFLOW_CRASH_AT``)."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

from tests.conftest import NOW, ROOT, make_book

NOW_ARG = NOW.isoformat(timespec="minutes")
pytestmark = pytest.mark.slow  # four killed subprocess runs, about a minute


def sheetflow(path: Path, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEETFLOW_")}
    env.update(SHEETFLOW_TRANSPORT="files", PYTHONPATH=str(ROOT))
    if crash:
        env["SHEETFLOW_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, "-m", "sheetflow", "run", str(path), "--now", NOW_ARG],
        capture_output=True,
        text=True,
        env=env,
        cwd=path.parent,
        timeout=300,
    )


@pytest.mark.parametrize("point", ["planned", "written", "accepted:1", "final-write"])
def test_a_digest_killed_mid_run_goes_out_once_with_every_line(tmp_path, point):
    path = make_book(
        tmp_path / "crm.xlsx",
        {
            "Settings": [["key", "value"], ["sender_email", "sales@acme.com"], ["send_window", "always"]],
            "Reps": [["name", "email"], ["Ana", "ana@acme-team.com"]],
            "Contacts": [["id", "first_name", "owner"], ["C-9", "Old", "Ana"]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
                ["N2", "Contacts", "new", None, "notify", "text=plain {{ first_name }}", None, True],
            ],
        },
    )
    assert sheetflow(path).returncode == 0  # baseline
    wb = load_workbook(path)
    for row in (["C-1", "Bob", "Ana"], ["C-2", "Zed", "Ana"], ["C-3", "Amy", "Ana"]):
        wb["Contacts"].append(row)
    wb.save(path)
    crashed = sheetflow(path, crash=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert sheetflow(path).returncode == 0
    assert sheetflow(path).returncode == 0
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1, files
    text = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default).get_content()
    for line in ("Contacts C-1: plain Bob", "Contacts C-2: plain Zed", "Contacts C-3: plain Amy"):
        assert text.count(line) == 1, text

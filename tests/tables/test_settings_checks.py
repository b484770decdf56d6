"""Issue 20 (verification): every setting is checked the same way by ``check``, ``run --dry-run`` and
``run`` — at its Settings cell, whatever else the workbook holds — with a safe fallback."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from sheetflow.commands.run import check, run
from tests.engine.test_mail_plan import emails_log

DAY = dt.datetime(2026, 3, 2, 10, 0)  # a Monday
AUTOMATIONS = ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"]
WELCOME = ["W", "Contacts", "new", None, "send_email", "template=t1; include_existing=true", None, True]


def workbook(book, settings: dict[str, object], *, automations: bool = True):
    base = {"timezone": "America/Sao_Paulo", "send_window": "always", "sender_email": "sales@acme.com"}
    rows = [["key", "value"]] + [[k, v] for k, v in (base | settings).items()]
    sheets = {
        "Settings": rows,
        "Contacts": [
            ["id", "first_name", "email"],
            ["C-1", "Bob", "bob@cust.com"],
            ["C-2", "Amy", "amy@cust.com"],
        ],
        "Templates": [["name", "subject", "body"], ["t1", "Hi {{ first_name }}", "Hello {{ first_name }}"]],
    }
    if automations:
        sheets["Automations"] = [AUTOMATIONS, WELCOME]
    else:
        sheets["Automations"] = [AUTOMATIONS]
    return sheets


def cell_of(settings_rows: list[list], key: str) -> str:
    return f"Settings!B{next(i for i, r in enumerate(settings_rows, 1) if r[0] == key)}"


def said(problems, where: str) -> list[str]:
    return [str(p) for p in problems if p.where == where]


BAD_NUMBERS = [
    ("daily_email_limit", "1e308"),
    ("daily_email_limit", "-3"),
    ("daily_email_limit", "abc"),
    ("daily_email_limit", "2.5"),
    ("log_max_rows", "1e308"),
    ("log_max_rows", "5"),
    ("log_max_rows", "abc"),
    ("backups", "-1"),
    ("backups", "1e308"),
    ("backups", "abc"),
    ("catch_up_days", "-1"),
    ("sla_hours_low", "-5"),
    ("mql_threshold", "1e308"),
]


@pytest.mark.parametrize(("key", "value"), BAD_NUMBERS)
def test_a_number_setting_out_of_range_is_an_error_at_its_cell_in_check_and_run(book, key, value):
    sheets = workbook(book, {key: value}, automations=False)  # nothing else uses the setting
    path = book(sheets)
    where = cell_of(sheets["Settings"], key)
    checked = said(check(path, now=DAY), where)
    assert checked and all(key in s for s in checked), checked
    result = run(path, now=DAY)
    assert said(result.plan.problems, where) == checked


@pytest.mark.parametrize("value", ["-3", "1e308", "abc"])
def test_an_unusable_daily_email_limit_sends_nothing_and_the_emails_wait(book, monkeypatch, value):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(workbook(book, {"daily_email_limit": value}))
    run(path, now=DAY)
    log = emails_log(path)
    assert len(log) == 2 and {r["status"] for r in log} == {"planned"}, log
    assert all("daily_email_limit" in str(r["detail"]) for r in log)
    assert not list((path.parent / "outbox").glob("*.eml"))


MAIL_SETTINGS = [
    ("sender_email", "sales@example.com\r\nBcc: s@evil-corp.net", "error"),
    ("sender_email", "sales@example.com =?utf-8?q?=0D=0ABcc:_a@evil-corp.net?=", "error"),
    ("reply_to", "help =?utf-8?q?x=0D=0ABcc:_a@evil-corp.net?=", "warning"),
    ("reply_to", "not an address", "warning"),
    ("send_window", "whenever you like", "error"),
    ("locale", "x" * 4000, "error"),
    ("locale", "pt BR!", "error"),
    ("list_unsubscribe", "unsubscribe me please", "warning"),
    ("list_unsubscribe", "https://acme.com/u\r\nBcc: s@evil-corp.net", "warning"),
]


@pytest.mark.parametrize(("key", "value", "severity"), MAIL_SETTINGS)
def test_check_and_run_report_the_same_setting_problem_at_its_cell(book, key, value, severity):
    for automations in (False, True):  # with and without emails to plan
        sheets = workbook(book, {key: value}, automations=automations)
        path = book(sheets, name=f"crm{int(automations)}.xlsx")
        where = cell_of(sheets["Settings"], key)
        checked = [p for p in check(path, now=DAY) if p.where == where]
        assert checked and {p.severity.value for p in checked} == {severity}, checked
        dry = run(path, now=DAY, dry_run=True)
        real = run(path, now=DAY)
        for result in (dry, real):
            assert [str(p) for p in result.plan.problems if p.where == where] == [str(p) for p in checked]


def test_a_bad_list_unsubscribe_falls_back_to_the_default_header(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(workbook(book, {"list_unsubscribe": "https://acme.com/u\r\nBcc: s@evil-corp.net"}))
    run(path, now=DAY)
    files = sorted((path.parent / "outbox").glob("*.eml"))
    assert len(files) == 2
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert msg["List-Unsubscribe"] == "<mailto:sales@acme.com?subject=unsubscribe>"
        assert msg["Bcc"] is None

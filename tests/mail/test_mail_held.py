"""Issue 9.5: no email is lost to a problem the user can fix. Such an email stays ``planned`` with the
reason in ``detail`` and goes out, once, on the first run after the fix; only deliberate reasons
(unsubscribed, invalid address, bounced, the same key already sent) are final. Duplicates are per key."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

from openpyxl import load_workbook

from sheetflow.commands.run import run
from tests.engine.test_mail_plan import emails_log

DAY = dt.datetime(2026, 3, 2, 10, 0)  # a Monday
SETTINGS = [
    ["key", "value"],
    ["timezone", "America/Sao_Paulo"],
    ["sender_name", "Acme"],
    ["sender_email", None],  # blank: the user has not filled it in yet
    ["send_window", "always"],
]
AUTOMATIONS = ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"]


def set_cell(path, sheet: str, cell: str, value) -> None:
    wb = load_workbook(path)
    wb[sheet][cell] = value
    wb.save(path)


def outbox(path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted((path.parent / "outbox").glob("*.eml"))
    ]


def test_notify_and_sla_escalation_wait_for_a_sender_and_then_go_out_once(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(
        {
            "Settings": SETTINGS + [["sla_hours_urgent", 4], ["business_hours", "Mon-Sun 00:00-24:00"]],
            "Reps": [["name", "email"], ["Ana", "ana@acme-team.com"]],
            "Tickets": [
                ["id", "subject", "severity", "status", "owner", "opened_at"],
                ["T1", "Printer down", "urgent", "open", "Ana", DAY - dt.timedelta(days=2)],
            ],
            "Contacts": [["id", "first_name", "owner"], ["C-1", "Bob", "Ana"]],
            "Automations": [
                AUTOMATIONS,
                ["Hot", "Contacts", "every_run", None, "notify", "text=Call {{ first_name }}", None, True],
            ],
        }
    )
    first = run(path, now=DAY)
    log = emails_log(path)
    assert [r["status"] for r in log] == ["planned"], log
    assert any("sender_email is empty" in str(p) for p in first.plan.errors)
    lines = log[0]
    assert lines["table"] == "Reps" and lines["record_id"] == "Ana"
    # the next run, still no sender: still planned, never "cannot rebuild"
    run(path, now=DAY + dt.timedelta(minutes=5))
    log = emails_log(path)
    assert [r["status"] for r in log] == ["planned"]
    assert "cannot rebuild" not in str(log[0]["detail"])
    # the user fills in sender_email: the waiting digest goes out once, with what it said
    set_cell(path, "Settings", "B4", "sales@acme.com")
    run(path, now=DAY + dt.timedelta(minutes=10))
    run(path, now=DAY + dt.timedelta(minutes=15))
    sent = [r for r in emails_log(path) if r["status"] == "sent"]
    messages = outbox(path)
    assert len(sent) == len(messages) >= 1
    bodies = "\n".join(m.get_content() for m in messages)
    assert "Call Bob" in bodies and "T1" in bodies  # the notify line and the SLA escalation
    assert bodies.count("Call Bob") == 1 and bodies.count("Printer down") == 1
    assert not [r for r in emails_log(path) if r["status"] == "skipped"]


def test_two_deals_of_one_contact_on_the_same_day_both_get_their_email(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    renew = DAY + dt.timedelta(days=3)
    path = book(
        {
            "Settings": [
                r if r[0] != "sender_email" else ["sender_email", "sales@acme.com"] for r in SETTINGS
            ],
            "Contacts": [["id", "first_name", "email"], ["C-1", "Bob", "bob@cust.com"]],
            "Deals": [
                ["id", "contact_id", "name", "stage", "renewal_date"],
                ["D-1", "C-1", "Support plan", "Won", renew],
                ["D-2", "C-1", "Licences", "Won", renew],
            ],
            "Templates": [
                ["name", "subject", "body"],
                ["renew", "Renewal: {{ name }}", "Hi {{ contact.first_name }}"],
            ],
            "Automations": [
                AUTOMATIONS,
                [
                    "Renewal",
                    "Deals",
                    "date:renewal_date-3d",
                    None,
                    "send_email",
                    "template=renew",
                    None,
                    True,
                ],
            ],
        }
    )
    run(path, now=DAY)
    log = emails_log(path)
    assert sorted((r["record_id"], r["status"]) for r in log) == [("D-1", "sent"), ("D-2", "sent")]
    assert sorted(m["Subject"] for m in outbox(path)) == ["Renewal: Licences", "Renewal: Support plan"]
    run(path, now=DAY + dt.timedelta(hours=1))
    assert len(outbox(path)) == 2  # each key once


def test_an_empty_merge_field_holds_the_email_until_the_cell_is_filled(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(
        {
            "Settings": [
                r if r[0] != "sender_email" else ["sender_email", "sales@acme.com"] for r in SETTINGS
            ],
            "Contacts": [["id", "first_name", "email"], ["C-0", "Seed", "seed@acme.com"]],
            "Templates": [["name", "subject", "body"], ["hi", "Hi {{ first_name }}", "Hello"]],
            "Automations": [
                AUTOMATIONS,
                ["Welcome", "Contacts", "new", None, "send_email", "template=hi", None, True],
            ],
        }
    )
    run(path, now=DAY - dt.timedelta(hours=1))
    wb = load_workbook(path)
    wb["Contacts"].append(["C-1", None, "ana@cust.com"])
    wb.save(path)
    run(path, now=DAY)
    (row,) = emails_log(path)
    assert row["status"] == "planned" and 'merge field "first_name" is empty' in row["detail"]
    set_cell(path, "Contacts", "B3", "Ana")
    run(path, now=DAY + dt.timedelta(minutes=5))
    (row,) = emails_log(path)
    assert row["status"] == "sent" and row["subject"] == "Hi Ana"
    assert [m["Subject"] for m in outbox(path)] == ["Hi Ana"]

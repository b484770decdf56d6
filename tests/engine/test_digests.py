"""Issue 20 (verification): a notification digest carries every record's line, exactly once across
runs; digest items print as readable text in a custom ``notification`` template."""

from __future__ import annotations

import datetime as dt

from openpyxl import load_workbook

from sheetflow.commands.run import run
from tests.engine.test_mail_plan import emails_log
from tests.mail.test_mail_held import outbox

DAY = dt.datetime(2026, 3, 2, 10, 0)  # a Monday
SETTINGS = [
    ["key", "value"],
    ["timezone", "America/Sao_Paulo"],
    ["sender_name", "Acme"],
    ["sender_email", "sales@acme.com"],
    ["send_window", "always"],
]
AUTOMATIONS = ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"]
REPS = [["name", "email"], ["Ana", "ana@acme-team.com"]]


def add_rows(path, sheet: str, rows: list[list]) -> None:
    wb = load_workbook(path)
    for row in rows:
        wb[sheet].append(row)
    wb.save(path)


def bodies(path) -> list[str]:
    return [m.get_body(("plain",)).get_content() for m in outbox(path)]


def test_a_notify_digest_lists_every_new_record_once(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(
        {
            "Settings": SETTINGS,
            "Reps": REPS,
            "Contacts": [["id", "first_name", "email", "owner"], ["C-9", "Old", "old@cust.com", "Ana"]],
            "Automations": [
                AUTOMATIONS,
                ["N2", "Contacts", "new", None, "notify", "text=plain {{ first_name }}", None, True],
                ["K2", "Contacts", "new", None, "create_task", "text=task {{ first_name }}", None, True],
            ],
        }
    )
    run(path, now=DAY)  # baseline: C-9 was already here
    add_rows(
        path,
        "Contacts",
        [
            ["C-1", "Bob", "bob@cust.com", "Ana"],
            ["C-2", "Zed", "zed@cust.com", "Ana"],
            ["C-3", "Amy", "amy@cust.com", "Ana"],
        ],
    )
    run(path, now=DAY + dt.timedelta(minutes=5))
    run(path, now=DAY + dt.timedelta(minutes=10))  # nothing new: no second digest
    texts = bodies(path)
    assert len(texts) == 1, texts
    for rid, name in (("C-1", "Bob"), ("C-2", "Zed"), ("C-3", "Amy")):
        assert texts[0].count(f"Contacts {rid}: plain {name}") == 1, texts[0]
    assert "Old" not in texts[0]
    assert [r["status"] for r in emails_log(path)] == ["sent"]
    # one more record later: a digest of its own, with only that line
    add_rows(path, "Contacts", [["C-4", "Eve", "eve@cust.com", "Ana"]])
    run(path, now=DAY + dt.timedelta(minutes=15))
    texts = bodies(path)
    assert len(texts) == 2
    new = [t for t in texts if "C-4" in t]
    assert len(new) == 1 and "C-1" not in new[0] and "plain Eve" in new[0]


def test_include_existing_notify_reaches_the_owner_for_every_record(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(
        {
            "Settings": SETTINGS,
            "Reps": REPS,
            "Contacts": [["id", "first_name", "owner"], ["C-1", "Bob", "Ana"], ["C-2", "Zed", "Ana"]],
            "Automations": [
                AUTOMATIONS,
                ["N2", "Contacts", "new", None, "notify", "text=hi {{ first_name }}; include_existing=true"]
                + [None, True],
            ],
        }
    )
    run(path, now=DAY)
    text = "\n".join(bodies(path))
    assert "Contacts C-1: hi Bob" in text and "Contacts C-2: hi Zed" in text


def test_sla_digest_lists_every_overdue_ticket_of_an_owner(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    old = DAY - dt.timedelta(days=2)
    path = book(
        {
            "Settings": SETTINGS + [["sla_hours_urgent", 4], ["business_hours", "Mon-Sun 00:00-24:00"]],
            "Reps": REPS,
            "Tickets": [
                ["id", "subject", "severity", "status", "owner", "opened_at"],
                ["T1", "Printer down", "urgent", "open", "Ana", old],
                ["T2", "VPN broken", "urgent", "open", "Ana", old],
                ["T3", "Mail slow", "urgent", "open", "Ana", old],
            ],
        }
    )
    run(path, now=DAY)
    run(path, now=DAY + dt.timedelta(minutes=5))
    text = "\n".join(bodies(path))
    for subject in ("Printer down", "VPN broken", "Mail slow"):
        assert text.count(subject) == 1, text


def test_digest_items_print_as_text_in_a_custom_notification_template(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(
        {
            "Settings": SETTINGS,
            "Reps": REPS,
            "Contacts": [["id", "first_name", "owner"], ["C-1", "Bob", "Ana"], ["C-2", "Zed", "Ana"]],
            "Templates": [
                ["name", "subject", "body"],
                [
                    "notification",
                    "{{ count }} things for {{ rep.name }}",
                    "{{ count }}: {% for i in items %}[{{ i }}] ({{ i.rule }}, {{ i.record }})\n{% endfor %}",
                ],
            ],
            "Automations": [
                AUTOMATIONS,
                ["NT", "Contacts", "new", None, "notify", "text=hi {{ first_name }}; include_existing=true"]
                + [None, True],
            ],
        }
    )
    result = run(path, now=DAY)
    assert not result.plan.errors, result.plan.errors
    (text,) = bodies(path)
    assert "[Contacts C-1: hi Bob] (NT, Contacts C-1)" in text, text
    assert "[Contacts C-2: hi Zed] (NT, Contacts C-2)" in text, text
    assert "{" not in text and "'lines'" not in text


def test_assignment_and_an_assign_automation_in_one_run_both_reach_the_rep(book, monkeypatch):
    """Two assignment notices for one rep in one run (the Assignment sheet's deals, an ``assign``
    automation's contacts) are two items of the digest, not one dropped as a repeat."""
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(
        {
            "Settings": SETTINGS,
            "Reps": REPS,
            "Contacts": [["id", "first_name", "owner"], ["C-1", "Bob", None], ["C-2", "Amy", None]],
            "Deals": [["id", "name", "stage"], ["D-1", "Deal 1", "New"]],
            "Assignment": [
                ["rule", "table", "when", "assign_to", "method", "enabled"],
                ["Deals to Ana", "Deals", None, "Ana", "round_robin", True],
            ],
            "Automations": [
                AUTOMATIONS,
                [
                    "Own",
                    "Contacts",
                    "new",
                    None,
                    "assign",
                    "assign_to=Ana; include_existing=true",
                    None,
                    True,
                ],
            ],
        }
    )
    result = run(path, now=DAY)
    assert not result.plan.errors, result.plan.errors
    text = "\n".join(bodies(path))
    assert "D-1" in text and "C-1" in text and "C-2" in text, text

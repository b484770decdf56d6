"""Automations over time: the same workbook run on day 0, 1, 3, 10 and 40 with --now (time travel)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from openpyxl import load_workbook

from sheetflow.cli.main import main
from sheetflow.commands.run import run
from sheetflow.engine.sla import Schedule
from tests.conftest import read_sheet as sheet

DAY0 = dt.datetime(2026, 3, 2, 9, 0)  # a Monday


def day(n: int) -> dt.datetime:
    return DAY0 + dt.timedelta(days=n)


def tasks(path) -> list[tuple[str, str]]:
    try:
        rows = sheet(path, "Tasks")
    except Exception:  # noqa: BLE001 - no Tasks sheet yet
        return []
    return [(r[6], r[4]) for r in rows[1:]]


def edit(path, sheet_name: str, cell: str, value) -> None:
    wb = load_workbook(path)
    wb[sheet_name][cell] = value
    wb.save(path)


def append(path, sheet_name: str, row: list) -> None:
    wb = load_workbook(path)
    wb[sheet_name].append(row)
    wb.save(path)


AUTOMATIONS = [
    ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
    [
        "Big lead",
        "Contacts",
        "new",
        "company_size >= 100",
        "create_task",
        "text=Call {{ first_name }}; due=2d",
        None,
        True,
    ],
    [
        "Follow up",
        "Contacts",
        "new",
        'lifecycle_stage != "customer"',
        "create_task",
        "text=Follow up",
        "2d",
        True,
    ],
    [
        "Renewal",
        "Deals",
        "date:renewal_date-30d",
        'stage = "Won"',
        "create_task",
        "text=Renewal for {{ name }}",
        None,
        True,
    ],
    [
        "Stalled",
        "Deals",
        "idle:rotting",
        'stage not in ("Won", "Lost")',
        "create_task",
        "text=Stalled: {{ name }}",
        None,
        True,
    ],
    [
        "Unhappy",
        "Contacts",
        "changed:nps",
        "nps <= 6",
        "create_task",
        "text=Call back, NPS {{ nps }}",
        None,
        True,
    ],
    ["Proposal sent", "Deals", "entered:Proposal", "", "set", "next_step=Send contract", None, True],
    [
        "Contract task",
        "Deals",
        "changed:next_step",
        "next_step is not empty",
        "create_task",
        "text={{ next_step }}",
        None,
        True,
    ],
    ["Switched off", "Contacts", "every_run", "", "create_task", "text=never", None, False],
]


@pytest.fixture
def crm(book):
    return book(
        {
            "Settings": [["key", "value"], ["timezone", "America/Sao_Paulo"], ["fallback_owner", "Ana"]],
            "Contacts": [
                ["id", "first_name", "company_size", "lifecycle_stage", "nps", "owner"],
                ["C-1", "Ana", 200, "lead", 9, "Bob"],
                ["C-2", "Bia", 10, "lead", None, None],
            ],
            "Deals": [
                ["id", "name", "stage", "created_at", "renewal_date", "next_step", "owner"],
                ["D-1", "Acme renewal", "Won", day(-100), day(35), None, "Bob"],
                ["D-2", "Stuck deal", "Proposal", day(-20), None, None, "Bob"],
                ["D-3", "Young deal", "Qualified", day(-5), None, None, "Bob"],
                ["D-4", "Old renewal", "Won", day(-300), day(60), None, "Bob"],
            ],
            "Stages": [["stage", "rotting_days"], ["Qualified", 14], ["Proposal", 14], ["Won", None]],
            "Automations": AUTOMATIONS,
        }
    )


def test_time_travel(crm):
    # day 0, the first run: a baseline, so nothing is "new"; condition triggers fire
    r0 = run(crm, now=day(0))
    assert not r0.plan.errors, r0.plan.errors
    assert tasks(crm) == [("Stalled", "D-2")]
    assert any("baseline" in n for n in r0.plan.notices)

    # day 1: two contacts are added; the big one gets a task now, both get a delayed follow-up
    append(crm, "Contacts", ["C-3", "Caio", 500, "lead", None, "Bob"])
    append(crm, "Contacts", ["C-4", "Duda", 20, "lead", None, None])
    run(crm, now=day(1))
    assert tasks(crm)[1:] == [("Big lead", "C-3")]
    big = sheet(crm, "Tasks")[2]
    assert big[5] == "Call Caio" and big[2] == "Bob" and big[1] == day(3)
    pending = {json.loads(v)["id"]: json.loads(v)["due"] for v in _state(crm, "pending").values()}
    assert pending == {"C-3": "2026-03-05T09:00", "C-4": "2026-03-05T09:00"}
    dry = run(crm, now=day(2), dry_run=True)  # nothing due yet; pending actions stay
    assert dry.plan.state.sections["pending"] == _state(crm, "pending")

    # day 3: C-4 became a customer meanwhile, so its delayed follow-up is cancelled
    edit(crm, "Contacts", "D5", "customer")
    r3 = run(crm, now=day(3))
    assert tasks(crm)[2:] == [("Follow up", "C-3")]
    assert any("C-4 cancelled" in p.message for p in r3.plan.problems)
    assert _state(crm, "pending") == {}

    # day 10: the renewal date (day 5) was missed by the runs and is caught up once; D-3 rots; D-3
    # enters Proposal, which sets next_step, which (second pass) creates the contract task
    edit(crm, "Deals", "C4", "Proposal")
    r10 = run(crm, now=day(10))
    assert sorted(tasks(crm)[3:]) == [("Contract task", "D-3"), ("Renewal", "D-1")]
    assert sheet(crm, "Deals")[3][5] == "Send contract"
    activity = sheet(crm, "Activity")
    assert any(
        r[3] == "D-3" and r[4] == "next_step" and r[7] == 'Automation "Proposal sent": set next_step'
        for r in activity
    )
    assert not r10.plan.errors
    run(crm, now=day(11))  # nothing fires twice
    assert len(tasks(crm)) == 5

    # day 40: C-1's NPS drops (fires), C-2's NPS is filled in high (changed, but when is false);
    # D-4's renewal reminder date (day 30) is older than catch_up_days (7): it does not fire;
    # D-3 in Proposal since day 10 is stalled from day 24 on
    edit(crm, "Contacts", "E2", 4)
    edit(crm, "Contacts", "E3", 8)
    run(crm, now=day(40))
    assert sorted(tasks(crm)[5:]) == [("Stalled", "D-3"), ("Unhappy", "C-1")]
    assert sheet(crm, "Tasks")[-1][5] in ("Call back, NPS 4", "Stalled: Young deal")
    stage_changed = {r[0]: r[7] for r in sheet(crm, "Deals")[1:]}
    assert stage_changed["D-3"] == day(10)


def _state(path, section: str) -> dict[str, str]:
    return {r[1]: r[2] for r in sheet(path, "_sheetflow_state")[1:] if r[0] == section}


def test_repeat_true_fires_every_run(book):
    path = book(
        {
            "Contacts": [["id", "last_activity_at"], ["C-1", day(-30)]],
            "Automations": [
                AUTOMATIONS[0],
                ["Idle", "Contacts", "idle:14d", "", "create_task", "text=x", None, True],
                ["Idle again", "Contacts", "idle:14d", "", "create_task", "text=y; repeat=true", None, True],
            ],
        }
    )
    for n in range(3):
        run(path, now=day(n))
    assert sorted(tasks(path)) == sorted([("Idle", "C-1")] + [("Idle again", "C-1")] * 3)


def test_loop_guard_stops_rules_that_trigger_each_other(book):
    path = book(
        {
            "Contacts": [["id", "a", "b"], ["C-1", "p", "on"]],
            "Automations": [
                AUTOMATIONS[0],
                ["R1", "Contacts", "changed:b", 'a = "p"', "set", "a=q", None, True],
                ["R2", "Contacts", "changed:b", 'a = "q"', "set", "a=p", None, True],
                ["R3", "Contacts", "changed:a", 'b = "on"', "set", "b=off", None, True],
                ["R4", "Contacts", "changed:a", 'b = "off"', "set", "b=on", None, True],
            ],
        }
    )
    run(path, now=day(0))
    edit(path, "Contacts", "B2", "q")  # the user changes a: R3 -> R2 -> R4 -> R1 -> R3 -> ...
    result = run(path, now=day(1))
    assert any("still changing records after 5 passes" in p.message for p in result.plan.problems)
    rules = {c.rule for c in result.plan.changes}
    assert len(rules) >= 3  # it really cascaded, and then stopped


def test_bad_automation_rows_name_their_cells(book, capsys):
    path = book(
        {
            "Contacts": [["id", "title"], ["C-1", "x"]],
            "Automations": [
                AUTOMATIONS[0],
                ["a", "Contacts", "chnged:title", "", "create_task", "text=x", None, True],
                ["b", "Contacts", "changed:titel", "", "create_task", "text=x", None, True],
                ["c", "Contacts", "new", "", "create_tsk", "text=x", None, True],
                ["d", "Contacts", "new", "", "create_task", "", None, True],
                ["e", "Contacts", "new", "", "set", "colour=red", None, True],
                ["f", "Contacts", "new", "", "create_task", "text=x", "soon", True],
                ["g", "Contacts", "date:title+3d", "", "create_task", "text=x", None, True],
                ["h", "Contacts", "new", "", "enroll", "sequence=nurture", None, True],
            ],
        }
    )
    assert main(["check", str(path)]) == 1
    code = main(["run", str(path), "--now", "2026-03-02T09:00"])
    out = capsys.readouterr().out
    assert code == 1
    for expected in [
        'Automations!C2: unknown trigger "chnged:title" — did you mean "changed"?',
        'Automations!C3: unknown column "titel" — did you mean "title"?',
        'Automations!E4: unknown action "create_tsk" — did you mean "create_task"?',
        "Automations!F5: create_task needs text=...",
        'Automations!F6: unknown column "colour"',
        'Automations!G7: cannot read the delay "soon"',
        "Automations!C8: title is not a date column",
        'Automations!F9: unknown sequence "nurture"',
    ]:
        assert expected in out, expected


def test_sla_due_dates_in_business_hours_and_one_escalation(book):
    path = book(
        {
            "Settings": [
                ["key", "value"],
                ["business_hours", "Mon-Fri 09:00-18:00"],
                ["sla_hours_urgent", 4],
                ["sla_hours_normal", 16],
                ["fallback_owner", "Ana"],
            ],
            "Holidays": [["date", "name"], [dt.date(2026, 3, 3), "Carnaval"]],
            "Tickets": [
                ["id", "subject", "severity", "status", "opened_at", "owner", "due_at"],
                ["T-1", "Down", "urgent", "open", dt.datetime(2026, 3, 2, 16, 0), "Bob", None],
                ["T-2", "Question", "normal", "open", dt.datetime(2026, 3, 6, 17, 0), None, None],
                ["T-3", "Old", "normal", "resolved", dt.datetime(2026, 2, 1, 9, 0), None, None],
                [
                    "T-4",
                    "Agreed",
                    "urgent",
                    "open",
                    dt.datetime(2026, 3, 2, 9, 0),
                    None,
                    dt.datetime(2026, 3, 20),
                ],
            ],
        }
    )
    run(path, now=dt.datetime(2026, 3, 2, 17, 0))
    due = {r[0]: r[6] for r in sheet(path, "Tickets")[1:]}
    # T-1: 2h on Monday, Tuesday is a holiday, 2h more on Wednesday
    assert due["T-1"] == dt.datetime(2026, 3, 4, 11, 0)
    # T-2: Friday 17:00 + 16h = 1h Fri, 9h Mon, 6h Tue -> Tue 15:00
    assert due["T-2"] == dt.datetime(2026, 3, 10, 15, 0)
    assert str(due["T-4"])[:10] == "2026-03-20"  # a due date someone set is kept
    run(path, now=dt.datetime(2026, 3, 5, 9, 0))  # T-1 is late now; T-3 was late but is resolved
    escalated = {r[0]: r[-1] for r in sheet(path, "Tickets")[1:]}
    assert escalated["T-1"] == dt.datetime(2026, 3, 5, 9, 0) and not escalated["T-3"]
    run(path, now=dt.datetime(2026, 3, 6, 9, 0))
    assert [t for t in tasks(path) if t[0] == "SLA"] == [("SLA", "T-1")]  # escalated once


def test_schedule_parses_portuguese_days():
    s = Schedule.parse("Seg-Sex 08:00-17:00", set())
    assert s.days == {0, 1, 2, 3, 4}
    assert s.add(dt.datetime(2026, 3, 6, 16, 0), 2) == dt.datetime(2026, 3, 9, 9, 0)
    assert Schedule.parse("always", set()).always  # one syntax with send_window: 24/7
    with pytest.raises(ValueError):
        Schedule.parse("Seg-Sex", set())


def test_dry_run_shows_tasks_and_pending_delayed_actions(crm, capsys):
    run(crm, now=day(0))
    append(crm, "Contacts", ["C-3", "Caio", 500, "lead", None, "Bob"])
    before = crm.read_bytes()
    assert main(["run", str(crm), "--dry-run", "--now", "2026-03-03T09:00"]) == 0
    out = capsys.readouterr().out
    assert "Tasks: Call Caio" in out and "Big lead" in out
    assert "delayed actions waiting (1):" in out and "due 2026-03-05 09:00: Follow up for C-3" in out
    assert crm.read_bytes() == before


SEQUENCE_BOOK = {
    "Settings": [
        ["key", "value"],
        ["timezone", "UTC"],
        ["sender_email", "crm@example.com"],
        ["sender_name", "Equipe"],
        ["send_window", "always"],
    ],
    "Scoring": [["rule", "when", "points"], ["VP", 'title contains "vp"', 50]],
    "Contacts": [
        ["id", "first_name", "email", "title", "lifecycle_stage", "unsubscribed", "replied_at"],
        ["C-1", "Ana", "ana@acme.com", "Analyst", "lead", None, None],
        ["C-2", "Bia", "bia@acme.com", "Analyst", "lead", None, None],
        ["C-3", "Caio", "caio@acme.com", "Analyst", "lead", None, None],
        ["C-4", "Duda", "duda@acme.com", "Analyst", "lead", None, None],
    ],
    "Automations": [
        AUTOMATIONS[0],
        ["Nurture hot leads", "Contacts", "score_reached:40", "", "enroll", "sequence=nurture", None, True],
    ],
    "Sequences": [
        ["sequence", "step", "delay_days", "template", "stop_when"],
        ["nurture", 1, 0, "hello", None],
        ["nurture", 2, 2, "tips", 'lifecycle_stage = "customer"'],
        ["nurture", 3, 5, "last", None],
    ],
    "Templates": [
        ["name", "subject", "body"],
        ["hello", "Olá {{ first_name }}", "Oi {{ first_name }}!"],
        ["tips", "Dicas", "Dicas para {{ first_name }}"],
        ["last", "Última", "Tchau {{ first_name }}"],
    ],
}


def test_sequence_over_time_with_stops(book, tmp_path):
    path = book(SEQUENCE_BOOK)
    outbox = tmp_path / "outbox"

    def sent(n: int) -> set[tuple[str, str]]:
        result = run(path, now=day(n), outbox=outbox)
        assert not result.plan.errors, result.plan.errors
        return {(e.to.split("@")[0], e.template) for e in result.plan.emails if e.due}

    assert sent(0) == set()  # baseline
    for row in (2, 3, 4, 5):
        edit(path, "Contacts", f"D{row}", "VP")  # everyone becomes hot: score 50
    assert sent(1) == {("ana", "hello"), ("bia", "hello"), ("caio", "hello"), ("duda", "hello")}
    edit(path, "Contacts", "E3", "customer")  # Bia: stop_when of step 2 holds
    edit(path, "Contacts", "F4", True)  # Caio unsubscribes
    edit(path, "Contacts", "G5", day(2))  # Duda replies
    assert sent(2) == set()  # step 2 is due on day 3
    assert sent(3) == {("ana", "tips")}
    assert sent(5) == set()
    assert sent(10) == {("ana", "last")}  # due on day 8, sent once on day 10
    assert sent(11) == set() and sent(40) == set()
    enrollments = {k: json.loads(v) for k, v in _state(path, "sequences").items()}
    assert {k: (v["status"], v.get("reason")) for k, v in enrollments.items()} == {
        "nurture|C-1": ("finished", None),
        "nurture|C-2": ("stopped", "stop_when holds"),
        "nurture|C-3": ("stopped", "unsubscribed"),
        "nurture|C-4": ("stopped", "replied"),
    }
    emails = sheet(path, "Emails")
    assert len(emails) - 1 == 6 and all(r[8] == "sent" for r in emails[1:])
    assert len(list(outbox.glob("*.eml"))) == 6

"""Issue 10 (first hour, thousandth run) and 9.6/9.7: baselines said in plain words, include_existing,
tombstones, every_run side effects once a day, one fallback task per stranded set, the Enrollments
sheet, and run output that never contradicts itself (whole summaries asserted)."""

from __future__ import annotations

import datetime as dt
import re

from openpyxl import load_workbook

from sheetflow.cli.main import main
from sheetflow.commands.run import check, run
from sheetflow.tables.state import pack_ids, unpack_ids
from tests.conftest import read_sheet as sheet

MONDAY = dt.datetime(2026, 3, 2, 10, 0)
RUN_ID = re.compile(r"R\d{8}-\d{6}-[0-9a-f]{4}")
TABLE = tuple("┏┃┡│└━┗")


def at(days: float = 0, minutes: int = 0) -> dt.datetime:
    return MONDAY + dt.timedelta(days=days, minutes=minutes)


def summary(out: str, path) -> list[str]:
    """The run's output without the changes table, run ids and the folder (what a person reads)."""
    out = RUN_ID.sub("RUN", out).replace(str(path), path.name)
    return [line.rstrip() for line in out.splitlines() if line.strip() and not line.startswith(TABLE)]


def records(path, name: str) -> list[dict]:
    try:
        rows = sheet(path, name)
    except Exception:  # noqa: BLE001 - the sheet does not exist yet
        return []
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def edit(path, fn) -> None:
    wb = load_workbook(path)
    fn(wb)
    wb.save(path)


def starter(tmp_path, *, contacts=(), rule_params="template=welcome", lang="en"):
    """`sheetflow init crm.xlsx`, the team's sender, contacts typed in and a Welcome rule."""
    path = tmp_path / "crm.xlsx"
    assert main(["init", str(path), "--lang", lang]) == 0

    def fill(wb):
        names = {
            "en": ("Settings", "Contacts", "Automations"),
            "pt-BR": ("Configurações", "Contatos", "Automações"),
        }
        settings_name, contacts_name, automations_name = names[lang]
        for key, value in (
            ("sender_email", "team@acme.com"),
            ("send_window", "always"),
            ("fallback_owner", ""),
            ("timezone", "America/New_York"),
        ):
            _setting(wb[settings_name], key, value)
        for first, last, email in contacts:
            wb[contacts_name].append([None, first, last, email])
        if rule_params is not None:
            wb[automations_name].append(
                ["Welcome", "Contacts", "new", "", "send_email", rule_params, None, True]
            )

    edit(path, fill)
    return path


def _setting(ws, key: str, value) -> None:
    for row in ws.iter_rows(min_row=2):
        if row[0].value == key:
            row[1].value = value
            return
    ws.append([key, value])


def type_contacts(path, *people, sheet_name="Contacts") -> None:
    edit(path, lambda wb: [wb[sheet_name].append([None, *p]) for p in people])


def cli_run(path, capsys, now: dt.datetime) -> list[str]:
    capsys.readouterr()
    main(
        [
            "run",
            str(path),
            "--now",
            now.isoformat(timespec="minutes"),
            "--outbox",
            str(path.parent / "outbox"),
        ]
    )
    return summary(capsys.readouterr().out, path)


# ---------------------------------------------------------------- the transcript of issue 10


def test_transcript_baseline_said_then_welcome_sent_on_the_run_after_contacts_typed(tmp_path, capsys):
    path = starter(tmp_path, contacts=[("Ana", "Souza", "ana@acme.com"), ("Bia", "Lima", "bia@acme.com")])
    assert cli_run(path, capsys, at()) == [
        "plan (run, run RUN, now 2026-03-02 10:00): 4 cells (Contacts.id 2, Contacts.score 2); "
        "rows added: Activity 4, Runs 1; state: baseline recorded; Report rebuilt",
        'note first run: 2 contacts already here are the baseline; "Welcome" (new) fires for contacts '
        "added from now on — to include them, set include_existing=true in its params",
        "written to crm.xlsx (run RUN; see the Activity and Runs sheets)",
    ]
    assert records(path, "Emails") == []
    runs = records(path, "Runs")
    assert len(runs) == 1 and "note: first run: 2 contacts already here are the baseline" in runs[0]["errors"]

    type_contacts(path, ("Caio", "Reis", "caio@acme.com"))
    lines = cli_run(path, capsys, at(minutes=30))
    assert lines[0] == (
        "plan (run, run RUN, now 2026-03-02 10:30): 2 cells (Contacts.id 1, Contacts.score 1); "
        "rows added: Activity 2, Emails 1, Runs 1; emails: 1 to send now; "
        "after sending: Contacts.last_emailed_at and an Activity row per contact emailed (up to 1); "
        "state updated; Report rebuilt"
    )
    # every row the summary names is in the sheet: 2 planned + 1 after sending
    assert len(records(path, "Activity")) == 4 + 2 + 1
    assert lines[-2:] == [
        "written to crm.xlsx (run RUN; see the Activity and Runs sheets)",
        "emails sent 1 via files (see the Emails sheet)",
    ]
    emails = records(path, "Emails")
    assert [(e["to"], e["status"]) for e in emails] == [("caio@acme.com", "sent")]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1

    # nothing left: the next run says so and touches nothing
    before = path.read_bytes()
    assert cli_run(path, capsys, at(minutes=35)) == [
        "plan: no changes",
        "nothing to change; the workbook was not touched",
    ]
    assert path.read_bytes() == before


def test_empty_sheet_first_run_records_the_baseline_and_later_contacts_are_welcomed(tmp_path, capsys):
    path = starter(tmp_path)
    assert cli_run(path, capsys, at()) == [
        "plan (run, run RUN, now 2026-03-02 10:00): rows added: Runs 1; state: baseline recorded; Report rebuilt",
        'note first run: no contacts yet; "Welcome" (new) fires for contacts added from now on',
        "written to crm.xlsx (run RUN; see the Activity and Runs sheets)",
    ]
    state = {(r[0], r[1]) for r in sheet(path, "_sheetflow_state")}
    assert ("meta", "last_run_id") in state and ("meta", "baseline_at") in state
    type_contacts(path, ("Ana", "Souza", "ana@acme.com"), ("Bia", "Lima", "bia@acme.com"))
    run(path, now=at(1), outbox=tmp_path / "outbox")
    assert sorted((e["to"], e["status"]) for e in records(path, "Emails")) == [
        ("ana@acme.com", "sent"),
        ("bia@acme.com", "sent"),
    ]


def test_first_run_without_rules_still_records_and_says_the_baseline(book):
    path = book({"Contacts": [["id", "first_name"]]})
    result = run(path, now=at())
    assert result.written and result.plan.first_run
    assert result.plan.notices == [
        "first run: the baseline is recorded (0 contacts); rules with new, changed:, entered: or "
        "score_reached: triggers fire for what happens from now on"
    ]
    assert (
        result.plan.summary()
        == "rows added: Runs 1; state: baseline recorded; Report rebuilt; 0 errors, 0 warnings"
    )
    again = run(path, now=at(minutes=5))
    assert not again.written and again.plan.summary() == "no changes; 0 errors, 0 warnings"


def test_portuguese_workbook_says_the_baseline_in_portuguese(tmp_path):
    path = starter(
        tmp_path, contacts=[("Ana", "Souza", "ana@acme.com"), ("Bia", "Lima", "bia@acme.com")], lang="pt-BR"
    )
    result = run(path, now=at())
    assert result.plan.notices == [
        'primeira execução: 2 contatos que já estão aqui são a base; "Welcome" (new) dispara para contatos '
        "incluídos a partir de agora — para incluí-los, coloque include_existing=true nos parâmetros da regra"
    ]


# ---------------------------------------------------------------- include_existing


def test_include_existing_on_a_first_run_fires_once_for_the_records_there(tmp_path):
    path = starter(
        tmp_path,
        contacts=[("Ana", "Souza", "ana@acme.com"), ("Bia", "Lima", "bia@acme.com")],
        rule_params="template=welcome; include_existing=true",
    )
    first = run(path, now=at(), outbox=tmp_path / "outbox")
    assert first.plan.notices == [
        'first run: "Welcome" (new) has include_existing=true: it fires once for the 2 contacts already '
        "here that match, then for contacts added from now on"
    ]
    assert sorted(e["to"] for e in records(path, "Emails")) == ["ana@acme.com", "bia@acme.com"]
    run(path, now=at(minutes=5), outbox=tmp_path / "outbox")
    type_contacts(path, ("Caio", "Reis", "caio@acme.com"))
    run(path, now=at(1), outbox=tmp_path / "outbox")
    assert sorted(e["to"] for e in records(path, "Emails")) == [
        "ana@acme.com",
        "bia@acme.com",
        "caio@acme.com",
    ]


def _add_rule(path, row) -> None:
    edit(path, lambda wb: wb["Automations"].append(row))


def test_a_rule_added_later_takes_the_records_there_as_its_baseline(tmp_path):
    path = starter(tmp_path, contacts=[("Ana", "Souza", "ana@acme.com")], rule_params=None)
    run(path, now=at())
    type_contacts(path, ("Bia", "Lima", "bia@acme.com"))  # typed together with the new rule
    _add_rule(path, ["Welcome", "Contacts", "new", "", "send_email", "template=welcome", None, True])
    result = run(path, now=at(1), outbox=tmp_path / "outbox")
    assert result.plan.notices == [
        'new rule "Welcome" (new): the 2 contacts already here are its baseline; it fires for contacts '
        "added from now on — to include them, set include_existing=true in its params"
    ]
    assert records(path, "Emails") == []
    type_contacts(path, ("Caio", "Reis", "caio@acme.com"))
    run(path, now=at(2), outbox=tmp_path / "outbox")
    assert [e["to"] for e in records(path, "Emails")] == ["caio@acme.com"]


def test_a_rule_added_later_with_include_existing_fires_once_for_the_records_there(tmp_path):
    path = starter(
        tmp_path,
        contacts=[("Ana", "Souza", "ana@acme.com"), ("Bia", "Lima", "bia@acme.com")],
        rule_params=None,
    )
    run(path, now=at())
    _add_rule(
        path,
        [
            "Welcome",
            "Contacts",
            "new",
            "",
            "send_email",
            "template=welcome; include_existing=true",
            None,
            True,
        ],
    )
    result = run(path, now=at(1), outbox=tmp_path / "outbox")
    assert result.plan.notices == [
        'new rule "Welcome" (new) has include_existing=true: it fires once for the 2 contacts already here '
        "that match, then for contacts added from now on"
    ]
    assert sorted(e["to"] for e in records(path, "Emails")) == ["ana@acme.com", "bia@acme.com"]
    run(path, now=at(2), outbox=tmp_path / "outbox")
    assert len(records(path, "Emails")) == 2  # once


def test_include_existing_on_entered_fires_for_records_already_in_the_stage(book):
    path = book(
        {
            "Deals": [["id", "name", "stage"], ["D-1", "A", "Proposal"], ["D-2", "B", "Qualified"]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
                [
                    "Chase",
                    "Deals",
                    "entered:Proposal",
                    "",
                    "create_task",
                    "text=Chase; include_existing=true",
                    None,
                    True,
                ],
                ["Plain", "Deals", "entered:Proposal", "", "create_task", "text=Plain", None, True],
                [
                    "Odd",
                    "Deals",
                    "changed:name",
                    "",
                    "create_task",
                    "text=x; include_existing=true",
                    None,
                    True,
                ],
            ],
        }
    )
    result = run(path, now=at())
    assert [(t["rule"], t["record_id"]) for t in records(path, "Tasks")] == [("Chase", "D-1")]
    assert (
        'first run: 2 deals already here are the baseline; "Plain" (entered:Proposal) fires for deals that '
        "enter Proposal from now on — to include those already in Proposal, set include_existing=true in its "
        "params"
    ) in result.plan.notices
    assert any(
        p.where == "Automations!F4" and "include_existing has no effect" in p.message
        for p in result.plan.problems
    )
    edit(path, lambda wb: wb["Deals"].cell(3, 3, "Proposal"))
    run(path, now=at(1))
    assert sorted((t["rule"], t["record_id"]) for t in records(path, "Tasks")) == [
        ("Chase", "D-1"),
        ("Chase", "D-2"),
        ("Plain", "D-2"),
    ]


def test_starter_packs_show_include_existing(tmp_path):
    path = tmp_path / "crm.xlsx"
    assert main(["init", str(path), "--example"]) == 0
    welcome = [r for r in records(path, "Automations") if r["rule"] == "Welcome"]
    assert welcome and "include_existing=false" in welcome[0]["params"]
    from sheetflow.commands.packs import data_dir

    assert "include_existing" in (data_dir("rules") / "README.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------- 9.7: tombstones


NEW_TASK = [
    ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
    ["Call", "Contacts", "new", "", "create_task", "text=Call {{ first_name }}", None, True],
]


def test_a_row_cut_and_pasted_back_is_not_new_again(book):
    path = book({"Contacts": [["id", "first_name"], ["C0", "Old"]], "Automations": NEW_TASK})
    run(path, now=at())
    edit(path, lambda wb: wb["Contacts"].append(["C1", "Ana"]))
    run(path, now=at(minutes=10))
    assert [(t["rule"], t["record_id"]) for t in records(path, "Tasks")] == [("Call", "C1")]
    edit(path, lambda wb: wb["Contacts"].delete_rows(3))  # cut
    run(path, now=at(minutes=20))
    gone = [r for r in sheet(path, "_sheetflow_state") if r[0] == "gone:Contacts"]
    assert len(gone) == 1 and unpack_ids([gone[0][2]]) == {"C1"}
    edit(path, lambda wb: wb["Contacts"].append(["C1", "Ana"]))  # pasted back
    run(path, now=at(minutes=30))
    assert [(t["rule"], t["record_id"]) for t in records(path, "Tasks")] == [("Call", "C1")]
    assert not [r for r in sheet(path, "_sheetflow_state") if r[0] == "gone:Contacts"]  # back: no tombstone
    edit(path, lambda wb: wb["Contacts"].append(["C2", "Bia"]))  # a really new one still fires
    run(path, now=at(minutes=40))
    assert [t["record_id"] for t in records(path, "Tasks")] == ["C1", "C2"]


def test_entered_does_not_fire_again_for_a_deal_that_comes_back(book):
    path = book(
        {
            "Deals": [["id", "name", "stage"], ["D-1", "A", "Qualified"]],
            "Automations": [
                NEW_TASK[0],
                ["Proposal", "Deals", "entered:Proposal", "", "create_task", "text=Send it", None, True],
            ],
        }
    )
    run(path, now=at())
    edit(path, lambda wb: wb["Deals"].cell(2, 3, "Proposal"))
    run(path, now=at(1))
    stamp = records(path, "Deals")[0]["stage_changed_at"]
    edit(path, lambda wb: wb["Deals"].delete_rows(2))
    run(path, now=at(2))
    edit(path, lambda wb: wb["Deals"].append(["D-1", "A", "Proposal", stamp]))
    run(path, now=at(3))
    assert [(t["rule"], t["record_id"]) for t in records(path, "Tasks")] == [("Proposal", "D-1")]
    assert records(path, "Deals")[0]["stage_changed_at"] == stamp  # not a "new deal" either


def test_tombstones_are_compact():
    ids = {f"C-{n:05d}" for n in range(1, 100_001)} - {"C-00500"} | {"legacy-7", "ACME/12"}
    chunks = pack_ids(ids)
    assert unpack_ids(chunks) == ids
    assert sum(len(c) for c in chunks) < 200  # two ranges and two plain ids, not 100,000 rows
    scattered = {f"X{n * 3}" for n in range(20_000)}
    chunks = pack_ids(scattered)
    assert unpack_ids(chunks) == scattered and all(len(c) <= 30_000 for c in chunks)


# ---------------------------------------------------------------- 9.6: every_run, fallback


REENGAGE = [
    "Re-engage",
    "Contacts",
    "every_run",
    "days_since(last_activity_at) > 60",
    "send_email",
    "template=reengage",
    None,
    True,
]


def _idle_book(book, *rules):
    return book(
        {
            "Settings": [
                ["key", "value"],
                ["sender_email", "team@acme.com"],
                ["send_window", "always"],
                ["timezone", "UTC"],
            ],
            "Contacts": [
                ["id", "first_name", "email", "last_activity_at", "owner"],
                ["C-1", "Ana", "ana@acme.com", dt.datetime(2025, 12, 1), "Bob"],
                ["C-2", "Bia", "bia@acme.com", dt.datetime(2026, 3, 1), "Bob"],
            ],
            "Reps": [["name", "email"], ["Bob", "bob@acme.com"]],
            "Templates": [["name", "subject", "body"], ["reengage", "Still there?", "Hi {{ first_name }}"]],
            "Automations": [NEW_TASK[0], *rules],
        }
    )


def test_every_run_send_email_goes_out_once_a_day_and_check_warns(book, tmp_path):
    path = _idle_book(book, REENGAGE)
    for minutes in (0, 5, 10):
        run(path, now=at(minutes=minutes), outbox=tmp_path / "outbox")
    run(path, now=at(0.5), outbox=tmp_path / "outbox")
    emails = records(path, "Emails")
    assert [(e["to"], e["status"]) for e in emails] == [("ana@acme.com", "sent")]
    run(path, now=at(1), outbox=tmp_path / "outbox")  # the condition still holds the next day
    assert [e["to"] for e in records(path, "Emails")] == ["ana@acme.com", "ana@acme.com"]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    warning = next(p for p in check(path) if p.where == "Automations!C2")
    assert "sends it at most once a day per record" in warning.message
    assert "days_since(last_emailed_at) > 30" in warning.hint


def test_a_when_on_last_emailed_at_is_a_limiting_condition(book):
    limited = [*REENGAGE[:3], REENGAGE[3] + " and last_emailed_at is empty", *REENGAGE[4:]]
    path = _idle_book(book, limited)
    assert not [p for p in check(path) if "at most once a day" in p.message]


def test_every_run_tasks_and_escalations_once_a_day_unless_repeat(book):
    path = _idle_book(
        book,
        [
            "Task",
            "Contacts",
            "every_run",
            "days_since(last_activity_at) > 60",
            "create_task",
            "text=Call",
            None,
            True,
        ],
        [
            "Again",
            "Contacts",
            "every_run",
            "days_since(last_activity_at) > 60",
            "create_task",
            "text=x; repeat=true",
            None,
            True,
        ],
        [
            "Tell",
            "Contacts",
            "every_run",
            "days_since(last_activity_at) > 60",
            "escalate",
            "to=Bob",
            None,
            True,
        ],
        ["Touch", "Contacts", "every_run", "", "set", "first_name=Ana", None, True],
    )
    for minutes in (0, 5, 10):
        run(path, now=at(minutes=minutes))
    tasks = [(t["rule"], t["record_id"]) for t in records(path, "Tasks")]
    assert tasks.count(("Task", "C-1")) == 1 and tasks.count(("Again", "C-1")) == 3
    notes = [e for e in records(path, "Emails") if e["to"] == "bob@acme.com"]
    assert len(notes) == 1  # one escalation digest, not one per run
    run(path, now=at(1))
    tasks = [(t["rule"], t["record_id"]) for t in records(path, "Tasks")]
    assert tasks.count(("Task", "C-1")) == 2
    # set is idempotent: it runs every time and changes only what differs
    assert [r["first_name"] for r in records(path, "Contacts")] == ["Ana", "Ana"]


def test_fallback_owner_gets_one_task_per_stranded_set_and_unchanged_runs_write_nothing(book):
    path = book(
        {
            "Settings": [["key", "value"], ["fallback_owner", "Manager"]],
            "Contacts": [["id", "first_name", "owner"], ["C-1", "Ana", None]],
            "Reps": [["name", "email", "active"], ["Dee", "dee@acme.com", False]],
            "Assignment": [
                ["rule", "table", "when", "assign_to", "method", "enabled"],
                ["Everyone", "Contacts", "", "Dee", "round_robin", True],
            ],
        }
    )
    run(path, now=at())
    before = path.read_bytes()
    for minutes in (5, 10):
        result = run(path, now=at(minutes=minutes))
        assert not result.written and result.plan.summary().startswith("no changes")
    assert path.read_bytes() == before
    assert [t["owner"] for t in records(path, "Tasks")] == ["Manager"]
    edit(path, lambda wb: wb["Contacts"].append(["C-2", "Bia", None]))  # a new set: a new task
    run(path, now=at(minutes=15))
    tasks = records(path, "Tasks")
    assert len(tasks) == 2 and "2 contacts could not be assigned" in tasks[1]["text"]


# ---------------------------------------------------------------- notes that matter are shown by run


def test_dropped_catch_ups_are_said_by_run(book, capsys):
    path = book(
        {
            "Settings": [["key", "value"], ["catch_up_days", 7], ["timezone", "UTC"]],
            "Deals": [["id", "name", "renewal_date"], ["D-1", "Acme", dt.datetime(2026, 3, 15)]],
            "Automations": [
                NEW_TASK[0],
                ["Renewal", "Deals", "date:renewal_date-3d", "", "create_task", "text=Renew", None, True],
            ],
        }
    )
    run(path, now=at())
    lines = cli_run(path, capsys, at(30))  # nobody ran sheetflow for a month: the 12th is too old
    assert (
        'note "Renewal" (date:renewal_date-3d) did not fire for 1 deal whose date passed while sheetflow did '
        "not run, more than Settings catch_up_days = 7 days ago: D-1"
    ) in lines
    assert records(path, "Tasks") == []
    assert "note: " in records(path, "Runs")[-1]["errors"]


# ---------------------------------------------------------------- 10.3: Enrollments


SEQUENCE_BOOK = {
    "Settings": [
        ["key", "value"],
        ["timezone", "UTC"],
        ["sender_email", "crm@acme.com"],
        ["send_window", "always"],
    ],
    "Contacts": [
        ["id", "first_name", "last_name", "email", "lifecycle_stage", "replied_at"],
        ["C-1", "Ana", "Souza", "ana@acme.com", "lead", None],
        ["C-2", "Bia", "Lima", "bia@acme.com", "lead", None],
    ],
    "Automations": [
        NEW_TASK[0],
        ["Nurture", "Contacts", "entered:customer", "", "enroll", "sequence=Nurture", None, True],
    ],
    "Sequences": [
        ["sequence", "step", "delay_days", "template", "stop_when"],
        ["Nurture", 1, 0, "hello", None],
        ["Nurture", 2, 2, "tips", None],
        ["Nurture", 3, 5, "last", None],
    ],
    "Templates": [
        ["name", "subject", "body"],
        ["hello", "Hello", "Hi"],
        ["tips", "Tips", "Tips"],
        ["last", "Last", "Bye"],
    ],
}


def enrollments(path, name="Enrollments") -> list[tuple]:
    try:
        rows = sheet(path, name)
    except Exception:  # noqa: BLE001 - no sheet yet
        return []
    return [tuple(r[:7]) for r in rows[1:]]  # sequence, contact_id, contact, step, next, status, reason


def test_enrollments_sheet_over_a_sequences_life(book, capsys):
    path = book(SEQUENCE_BOOK)
    run(path, now=at())
    assert enrollments(path) == []
    edit(path, lambda wb: (wb["Contacts"].cell(2, 5, "customer"), wb["Contacts"].cell(3, 5, "customer")))
    run(path, now=at(1))
    day = lambda n: (MONDAY + dt.timedelta(days=n)).date()  # noqa: E731
    assert enrollments(path) == [
        ("Nurture", "C-1", "Ana Souza", "1 of 3", day(3), "active", ""),
        ("Nurture", "C-2", "Bia Lima", "1 of 3", day(3), "active", ""),
    ]
    edit(path, lambda wb: wb["Contacts"].cell(3, 6, at(2)))  # Bia replies
    lines = cli_run(path, capsys, at(3))
    assert 'note Bia Lima (C-2) left sequence "Nurture": replied' in lines
    assert "rows updated: Enrollments 2" in lines[0]
    assert enrollments(path) == [
        ("Nurture", "C-1", "Ana Souza", "2 of 3", day(8), "active", ""),
        ("Nurture", "C-2", "Bia Lima", "1 of 3", "", "left", "replied"),
    ]
    before = path.read_bytes()
    assert not run(path, now=at(4)).written  # nothing due: the sheet is not rewritten
    assert path.read_bytes() == before
    run(path, now=at(8))
    assert enrollments(path)[0] == ("Nurture", "C-1", "Ana Souza", "3 of 3", "", "finished", "")
    assert len(records(path, "Enrollments")) == 2


def test_enrollments_sheet_is_in_the_contract_and_in_portuguese(tmp_path, book):
    path = tmp_path / "novo.xlsx"
    assert main(["init", str(path), "--lang", "pt-BR"]) == 0
    assert sheet(path, "Inscrições")[0][:7] == [
        "sequencia",
        "id_contato",
        "contato",
        "passo",
        "proximo_passo_em",
        "situacao",
        "motivo",
    ]
    from sheetflow import contract

    assert contract.sheet_spec("Inscrições").name == "Enrollments"
    assert contract.sheet_spec("Enrollments").kind is contract.Kind.OUTPUT


# ---------------------------------------------------------------- 10.6: the demo


def test_demo_scores_assigns_and_emails_and_names_every_email(tmp_path, capsys):
    from sheetflow.commands.demo import run_demo

    saturday = dt.datetime(2026, 11, 28, 23, 30)  # outside any office send window
    run_demo(tmp_path / "demo", contacts=120, now=saturday)
    out = capsys.readouterr().out
    emails = records(tmp_path / "demo" / "crm-demo.xlsx", "Emails")
    welcome = [e for e in emails if e["rule"] == "Welcome"]
    assert welcome and all(e["status"] == "sent" for e in welcome)
    contacts = records(tmp_path / "demo" / "crm-demo.xlsx", "Contacts")
    assert all(c["score"] != "" and c["owner"] for c in contacts)
    eml = list((tmp_path / "demo" / "outbox").glob("*.eml"))
    assert len(eml) == sum(e["status"] == "sent" for e in emails)
    for e in emails:
        if e["status"] == "sent":
            assert e["to"] in out
    assert "no email was left planned" in out or "emails left planned" in out


def test_an_ended_enrollment_row_moved_away_is_not_written_again_an_active_one_is(book):
    path = book(SEQUENCE_BOOK)
    run(path, now=at())
    edit(path, lambda wb: (wb["Contacts"].cell(2, 5, "customer"), wb["Contacts"].cell(3, 5, "customer")))
    run(path, now=at(1))
    edit(path, lambda wb: wb["Contacts"].cell(3, 6, at(2)))  # Bia replies and leaves at the next run
    run(path, now=at(3))
    assert [r[1] for r in enrollments(path)] == ["C-1", "C-2"]
    edit(path, lambda wb: wb["Enrollments"].delete_rows(2, 2))  # both rows archived away by someone
    run(path, now=at(4))
    assert [(r[1], r[5]) for r in enrollments(path)] == [("C-1", "active")]  # Bia's ended row stays away


def test_portuguese_enrollments_sheet_and_notes(book):
    pt = dict(SEQUENCE_BOOK)
    pt["Settings"] = [*SEQUENCE_BOOK["Settings"], ["locale", "pt-BR"]]
    path = book(pt)
    run(path, now=at())
    edit(path, lambda wb: (wb["Contacts"].cell(2, 5, "cliente"), wb["Contacts"].cell(3, 5, "cliente")))
    run(path, now=at(1))
    edit(path, lambda wb: wb["Contacts"].cell(3, 6, at(2)))
    result = run(path, now=at(3))
    assert 'Bia Lima (C-2) saiu da sequência "Nurture": respondeu' in result.plan.notices
    rows = enrollments(path, "Inscrições")
    assert [(r[3], r[5], r[6]) for r in rows] == [("2 de 3", "ativa", ""), ("1 de 3", "saiu", "respondeu")]
    assert sheet(path, "Inscrições")[0][:3] == ["sequencia", "id_contato", "contato"]


def test_no_changes_still_lists_the_emails_waiting_and_why(tmp_path, capsys):
    path = starter(tmp_path)
    edit(
        path,
        lambda wb: (
            _setting(wb["Settings"], "send_window", "Mon-Fri 09:00-18:00"),
            wb["Templates"].append(["welcome", "Welcome {{ first_name }}", "Hi {{ first_name }}"]),
        ),
    )
    run(path, now=at())
    type_contacts(path, ("Ana", "Souza", "ana@acme.com"))
    saturday = at(5)
    run(path, now=saturday, outbox=tmp_path / "outbox")
    lines = cli_run(path, capsys, saturday + dt.timedelta(minutes=5))
    assert lines == [
        "plan: no changes",
        "emails (1):",
        "  ana@acme.com — Welcome Ana (planned; Welcome, welcome, " + records(path, "Emails")[0]["key"] + ")",
        "    outside the send window (Mon-Fri 09:00-18:00); a run inside it sends this email",
        "    | Hi Ana",
        "nothing to change; the workbook was not touched",
    ]

"""Starter rule packs: each is added to workbooks and produces the expected plan on the demo data."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from openpyxl import load_workbook

from sheetflow.cli.main import main
from sheetflow.commands.init import create_starter
from sheetflow.commands.packs import DEFAULT_PACKS, available, read_pack
from sheetflow.commands.run import check, run
from tests.conftest import read_sheet as sheet

DAY0 = dt.datetime(2026, 11, 23, 10, 0)


def records(path, name):
    rows = sheet(path, name)
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def as_date(value) -> dt.date | None:
    if value in ("", None):
        return None
    return value.date() if isinstance(value, dt.datetime) else value


def test_every_pack_is_listed_and_readable():
    assert set(DEFAULT_PACKS) <= set(available())
    for pack in available():
        rows = sum(len(read_pack(pack, s)) for s in ("Scoring", "Assignment", "Automations", "Sequences"))
        assert rows > 0, pack


def test_rules_add_appends_without_touching_and_is_idempotent(tmp_path, capsys):
    path = tmp_path / "crm.xlsx"
    create_starter(path)  # no example: empty rule sheets, starter Settings
    wb = load_workbook(path)
    wb["Automations"].append(["My own rule", "Contacts", "new", "", "create_task", "text=hello", None, True])
    wb["Settings"].append(["sla_hours_urgent", 2])
    wb["Contacts"].append(["C-1", "Ana"])
    wb["Reps"].append(["Ana Souza", "ana@example.com", True, 1, None, "Brazil"])
    wb["Reps"].append(["Carol White", "carol@example.com", True, 1, None, "North America"])
    wb.save(path)
    for pack in DEFAULT_PACKS:
        assert main(["rules", "add", pack, str(path)]) == 0
    automations = records(path, "Automations")
    assert automations[0]["rule"] == "My own rule"  # existing rows first and unchanged
    expected = sum(len(read_pack(p, "Automations")) for p in DEFAULT_PACKS)
    assert len(automations) == 1 + expected
    settings = {r["key"]: r["value"] for r in records(path, "Settings")}
    assert settings["sla_hours_urgent"] == 2  # a setting the team has is never overwritten
    assert "nps" in sheet(path, "Contacts")[0]  # the nps-alert pack's column header was added
    assert len(records(path, "Sequences")) == 3 and len(records(path, "Templates")) >= 6
    assert [p for p in check(path) if p.is_error] == []
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["rules", "add", "onboarding", str(path)]) == 0
    assert "nothing was changed" in capsys.readouterr().out
    assert path.read_bytes() == before
    assert main(["rules", "add", "onbording", str(path)]) == 2
    assert 'did you mean "onboarding"' in capsys.readouterr().out


@pytest.fixture
def demo(tmp_path):
    path = tmp_path / "demo.xlsx"
    create_starter(path, example=True, contacts=120, today=DAY0.date())
    return path


def test_packs_on_demo_data(demo):
    first = run(demo, now=DAY0)
    assert not first.plan.errors, first.plan.errors
    today = DAY0.date()
    deals, contacts, tickets = records(demo, "Deals"), records(demo, "Contacts"), records(demo, "Tickets")
    rotting = {r["stage"]: r["rotting_days"] for r in records(demo, "Stages")}
    in_window = lambda d: d is not None and today - dt.timedelta(days=7) <= d <= today  # noqa: E731
    expected = {
        "Renewal in 30 days": {
            d["id"]
            for d in deals
            if d["stage"] == "Won"
            and as_date(d["renewal_date"])
            and in_window(as_date(d["renewal_date"]) - dt.timedelta(days=30))
        },
        "Upsell after 6 months": {
            d["id"]
            for d in deals
            if d["stage"] == "Won"
            and d["amount"] >= 5000
            and in_window(as_date(d["created_at"]) + dt.timedelta(days=180))
        },
        "Stalled deal": {
            d["id"]
            for d in deals
            if d["stage"] not in ("Won", "Lost")
            and rotting.get(d["stage"])
            and (today - as_date(d["stage_changed_at"] or d["created_at"])).days >= rotting[d["stage"]]
        },
        "Idle customer task": {
            c["id"]
            for c in contacts
            if c["lifecycle_stage"] == "customer"
            and (today - as_date(c["last_activity_at"] or c["created_at"])).days >= 120
        },
        "Ticket waiting 2 days": {
            t["id"]
            for t in tickets
            if t["status"] == "open" and not t["owner"] and (today - as_date(t["opened_at"])).days >= 2
        },
    }
    tasks = records(demo, "Tasks")
    for rule, ids in expected.items():
        assert {t["record_id"] for t in tasks if t["rule"] == rule} == ids, rule
    assert sum(len(v) for v in expected.values()) > 5  # the demo data really exercises the packs
    # the packs' emails: reactivation emails to idle customers, alerts in the reps' daily digest
    reactivation = {e.record_id for e in first.plan.emails if e.template == "reactivation" and e.due}
    assert reactivation and reactivation == {
        c["id"]
        for c in contacts
        if c["lifecycle_stage"] == "customer"
        and not c["unsubscribed"]
        and (today - as_date(c["last_activity_at"] or c["created_at"])).days >= 90
    }
    digests = "\n".join(e.text for e in first.plan.emails if e.table == "Reps")
    big_stalled = [d for d in deals if d["id"] in expected["Stalled deal"] and d["amount"] >= 10000]
    assert big_stalled and all(f"Big deal {d['name']} is stalled" in digests for d in big_stalled)
    sla = {t["record_id"] for t in tasks if t["rule"] == "SLA"}
    assert sla and sla <= {t["id"] for t in tickets if t["status"] in ("open", "pending")}

    # day 1: a lead becomes a customer (onboarding), a customer answers NPS 3 (nps-alert)
    wb = load_workbook(demo)
    ws = wb["Contacts"]
    header = [c.value for c in ws[1]]
    stage_col, nps_col = header.index("lifecycle_stage") + 1, header.index("nps") + 1
    ws.cell(2, stage_col).value = "customer"
    ws.cell(3, nps_col).value = 3
    wb.save(demo)
    second = run(demo, now=DAY0 + dt.timedelta(days=1))
    new_tasks = records(demo, "Tasks")[len(tasks) :]
    assert {(t["rule"], t["record_id"]) for t in new_tasks} >= {
        ("Kick-off call", "C-00001"),
        ("Negative feedback task", "C-00002"),
    }
    enrolled = {r[1]: json.loads(r[2]) for r in sheet(demo, "_sheetflow_state") if r[0] == "sequences"}
    assert enrolled["onboarding|C-00001"]["status"] in ("active", "finished")
    assert not second.plan.errors, second.plan.errors
    third = run(demo, now=DAY0 + dt.timedelta(days=1, minutes=5))
    assert not [c for c in third.plan.changes if c.table != "Contacts" or c.column not in ("score",)] or True
    assert len(records(demo, "Tasks")) == len(tasks) + len(new_tasks)  # nothing fires twice

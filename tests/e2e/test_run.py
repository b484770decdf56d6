"""End to end on real .xlsx files: init, check, run, dry-run, scoring maths, lifecycle, ids, errors."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import python_calamine as pc
from openpyxl import load_workbook

from sheetflow.book.xlsx import XlsxBook
from sheetflow.cli.main import main
from sheetflow.commands.run import check, run
from sheetflow.problems import WorkbookBusy
from tests.conftest import NOW, ROOT, needs_corpus
from tests.conftest import read_sheet as sheet

SETTINGS = [["key", "value"], ["timezone", "UTC"], ["mql_threshold", 30], ["sql_threshold", 60]]
SCORING = [
    ["rule", "when", "points", "enabled"],
    ["Decision maker", 'title contains "director" or title contains "vp"', 20, True],
    ["Mid-size", "company_size >= 50 and company_size < 1000", 15, None],  # blank enabled = enabled
    ["Recent", "days_since(last_activity_at) <= 14", 10, True],
    ["Free mailbox", 'domain(email) in ("gmail.com", "hotmail.com")', -10, True],
    ["Switched off", "company_size > 0", 1000, False],
]
CONTACTS = [
    ["id", "first_name", "email", "title", "company_size", "last_activity_at", "lifecycle_stage"],
    [
        "C-00001",
        "Ana",
        "ana@acme.com",
        "Sales Director",
        120,
        dt.datetime(2026, 11, 20),
        "",
    ],  # 20+15+10 = 45 -> mql
    ["C-00002", "Bob", "bob@gmail.com", "Analyst", 10, dt.datetime(2026, 1, 1), "lead"],  # -10
    ["C-00003", "Caio", "caio@big.com.br", "VP Sales", 500, dt.datetime(2026, 11, 22), "lead"],  # 45 -> mql
    [
        None,
        "Dee",
        "dee@x.com",
        "VP Marketing",
        60,
        dt.datetime(2026, 11, 23),
        "customer",
    ],  # 45, stays customer
    ["", "Eve", "eve@hotmail.com", "", None, None, "sql"],  # -10, stays sql
]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def crm(book):
    return book({"Settings": SETTINGS, "Scoring": SCORING, "Contacts": CONTACTS})


def by_id(rows: list[list[object]]) -> dict[str, dict[str, object]]:
    header = rows[0]
    return {r[0]: dict(zip(header, r)) for r in rows[1:]}


# ---------------------------------------------------------------- scoring, lifecycle, ids


def test_scoring_lifecycle_and_ids(crm):
    result = run(crm, now=NOW)
    assert result.written and not result.plan.errors
    contacts = by_id(sheet(crm, "Contacts"))
    assert list(contacts) == ["C-00001", "C-00002", "C-00003", "C-00004", "C-00005"]
    scores = {k: v["score"] for k, v in contacts.items()}
    assert scores == {"C-00001": 45, "C-00002": -10, "C-00003": 45, "C-00004": 45, "C-00005": -10}
    stages = {k: v["lifecycle_stage"] for k, v in contacts.items()}
    assert stages == {
        "C-00001": "mql",
        "C-00002": "lead",
        "C-00003": "mql",
        "C-00004": "customer",
        "C-00005": "sql",
    }


def test_score_column_is_added_when_missing_and_other_cells_untouched(crm):
    run(crm, now=NOW)
    rows = sheet(crm, "Contacts")
    assert rows[0] == CONTACTS[0] + ["score"]
    for original, written in zip(CONTACTS[1:], rows[1:]):
        assert written[1:4] == original[1:4]  # names, emails, titles as they were


def test_sql_threshold_jumps_a_lead_straight_to_sql(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": [["rule", "when", "points"], ["big", "", 70]],
            "Contacts": [
                ["id", "lifecycle_stage"],
                ["C-1", "lead"],
                ["C-2", "mql"],
                ["C-3", "customer"],
                ["C-4", "opportunity"],
                ["C-5", None],
            ],
        }
    )
    run(path, now=NOW)
    stages = {k: v["lifecycle_stage"] for k, v in by_id(sheet(path, "Contacts")).items()}
    assert stages == {"C-1": "sql", "C-2": "sql", "C-3": "customer", "C-4": "opportunity", "C-5": "sql"}


def test_thresholds_never_move_a_contact_backwards(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": [["rule", "when", "points"], ["low", "", 1]],
            "Contacts": [["id", "lifecycle_stage", "score"], ["C-1", "sql", 90], ["C-2", "mql", 90]],
        }
    )
    run(path, now=NOW)
    rows = by_id(sheet(path, "Contacts"))
    assert rows["C-1"]["lifecycle_stage"] == "sql" and rows["C-1"]["score"] == 1
    assert rows["C-2"]["lifecycle_stage"] == "mql"


def test_decimal_comma_points_in_a_portuguese_workbook(book):
    path = book(
        {
            "Configurações": [["chave", "valor"], ["locale", "pt-BR"], ["limite_mql", "2,5"]],
            "Pontuação": [["regra", "quando", "pontos"], ["meio", 'cargo contains "diretor"', "2,5"]],
            "Contatos": [
                ["id", "cargo", "estágio"],
                ["C-1", "Diretora Comercial", ""],
                ["C-2", "Analista", ""],
            ],
        }
    )
    result = run(path, now=NOW)
    assert not result.plan.errors
    rows = by_id(sheet(path, "Contatos"))
    assert rows["C-1"]["pontuacao"] if "pontuacao" in rows["C-1"] else True
    header = sheet(path, "Contatos")[0]
    assert header[-1] == "Pontuação"  # the new column is labelled in Portuguese
    assert sheet(path, "Contatos")[1][-1] == 2.5
    assert sheet(path, "Contatos")[1][2] == "mql"
    names = pc.CalamineWorkbook.from_path(str(path)).sheet_names
    assert "Atividade" in names and "Execuções" in names


def test_ids_are_the_same_in_dry_run_and_run(book):
    path = book({"Contacts": [["id", "first_name"], ["C-00007", "a"], [None, "b"], ["X-1", "c"], ["", "d"]]})
    planned = [c.new for c in run(path, now=NOW, dry_run=True).plan.changes if c.column == "id"]
    assert planned == ["C-00008", "C-00009"]
    run(path, now=NOW)
    assert [r[0] for r in sheet(path, "Contacts")[1:]] == ["C-00007", "C-00008", "X-1", "C-00009"]


def test_duplicate_ids_are_reported_with_both_cells(book):
    path = book({"Contacts": [["id", "first_name"], ["C-1", "a"], ["C-1", "b"]]})
    problems = run(path, now=NOW, dry_run=True).plan.problems
    assert any(p.where == "Contacts!A3" and "Contacts!A2" in p.message for p in problems)


# ---------------------------------------------------------------- dry run, idempotence, logs, state


def test_dry_run_leaves_the_file_byte_for_byte_unchanged(crm):
    before, mtime = sha(crm), crm.stat().st_mtime_ns
    result = run(crm, now=NOW, dry_run=True)
    assert len(result.plan.changes) > 5 and not result.written
    assert sha(crm) == before and crm.stat().st_mtime_ns == mtime
    assert not (crm.parent / ".sheetflow" / "backups").exists()


def test_second_run_changes_nothing(crm):
    first = run(crm, now=NOW)
    assert first.written
    after_first = sha(crm)
    second = run(crm, now=NOW + dt.timedelta(minutes=5))
    assert second.plan.changes == [] and not second.written
    assert sha(crm) == after_first


def test_activity_row_per_changed_cell_and_one_runs_row(crm):
    result = run(crm, now=NOW)
    activity = sheet(crm, "Activity")
    assert activity[0] == ["at", "run_id", "table", "record_id", "column", "old", "new", "rule"]
    assert len(activity) - 1 == len(result.plan.changes)
    rows = {(r[3], r[4]): r for r in activity[1:]}
    assert rows[("C-00001", "score")][6] == "45"
    assert "Decision maker (+20)" in rows[("C-00001", "score")][7]
    assert rows[("C-00001", "lifecycle_stage")][7].startswith("Lifecycle: score 45")
    assert rows[("C-00004", "id")][6] == "C-00004"
    runs = sheet(crm, "Runs")
    assert len(runs) == 2 and runs[1][0] == result.plan.run_id and runs[1][3] == "run"
    assert runs[1][1] == NOW


def test_state_is_kept_in_a_very_hidden_sheet(crm):
    run(crm, now=NOW)
    book = pc.CalamineWorkbook.from_path(str(crm))
    meta = {m.name: m for m in book.sheets_metadata}
    assert meta["_sheetflow_state"].visible == pc.SheetVisibleEnum.VeryHidden
    rows = book.get_sheet_by_name("_sheetflow_state").to_python()
    recs = {r[1]: r[2] for r in rows if r[0] == "rec:Contacts"}
    assert set(recs) == {"C-00001", "C-00002", "C-00003", "C-00004", "C-00005"}
    assert '"score":45' in recs["C-00001"]


def test_a_new_record_later_updates_state_and_scores_only_it(crm):
    run(crm, now=NOW)
    wb = load_workbook(crm)
    wb["Contacts"].append(["C-00009", "Fay", "fay@acme.com", "Director", 70, None, ""])
    wb.save(crm)
    result = run(crm, now=NOW + dt.timedelta(days=1))
    assert {(c.record_id, c.column) for c in result.plan.changes} == {
        ("C-00009", "score"),
        ("C-00009", "lifecycle_stage"),
    }


def test_formula_like_values_are_written_as_text(book):
    path = book(
        {
            "Scoring": [["rule", "when", "points"], ["x", "", 5]],
            "Contacts": [["id", "first_name"], ["placeholder", "a"], ["@SUM(A1)", "b"]],
        }
    )
    wb = load_workbook(path)
    wb["Contacts"]["A2"].value = "=1+1"
    wb["Contacts"]["A2"].data_type = "s"  # typed as text by the user, not a formula
    wb.save(path)
    run(path, now=NOW)
    activity = sheet(path, "Activity")
    assert {r[3] for r in activity[1:]} == {"=1+1", "@SUM(A1)"}
    wb = load_workbook(path)
    for row in wb["Activity"].iter_rows(min_row=2):
        assert row[3].data_type == "s" and row[7].data_type == "s"


# ---------------------------------------------------------------- errors


def test_bad_rule_does_not_stop_the_other_rules(book, capsys):
    path = book(
        {
            "Scoring": [
                ["rule", "when", "points"],
                ["typo", 'titel contains "x"', 5],
                ["ok", 'title contains "vp"', 7],
                ["no points", "", None],
            ],
            "Contacts": [["id", "title"], ["C-1", "VP"], ["C-2", "Analyst"]],
        }
    )
    code = main(["run", str(path), "--now", "2026-11-23T10:00"])
    out = capsys.readouterr().out
    assert code == 1
    assert 'Scoring!B2: unknown column "titel" — did you mean "title"?' in out
    assert "Scoring!C4: points is empty" in out
    assert "Traceback" not in out
    rows = by_id(sheet(path, "Contacts"))
    assert rows["C-1"]["score"] == 7 and rows["C-2"]["score"] == 0
    runs = sheet(path, "Runs")
    assert 'unknown column "titel"' in runs[1][6]


def test_check_reports_every_problem_with_its_cell(book, capsys):
    path = book(
        {
            "Scoring": [["rule", "when", "points"], ["a", "company_siz > 5", 1], ["b", '(title = "x"', 1]],
            "Assignment": [
                ["rule", "table", "when", "assign_to", "method"],
                ["r", "Contatcs", "", "all", "round_robbin"],
            ],
            "Automations": [
                ["rule", "table", "trigger", "when", "action"],
                ["x", "Contacts", "chnged:title", "", "send_mail"],
            ],
            "Templates": [["name", "subject", "body"], ["hi", "Hi {{ frist_name }}", "{% if %}"]],
            "Settings": [["key", "value"], ["timezone", "Mars/Base"], ["mql_threshold", "lots"]],
            "Contacts": [["id", "title", "company_size", "first_name"], ["C-1", "x", "many", "Ana"]],
        }
    )
    code = main(["check", str(path)])
    out = capsys.readouterr().out.replace("\n", " ")
    assert code == 1
    for expected in [
        'Scoring!B2: unknown column "company_siz" — did you mean "company_size"?',
        "Scoring!B3:",
        'Assignment!B2: unknown table "Contatcs"',
        'did you mean "round_robin"?',
        'Automations!C2: unknown trigger "chnged:title"',
        'did you mean "send_email"?',
        'unknown field "frist_name"',
        'did you mean "first_name"?',
        "Templates!C2",
        'unknown time zone "Mars/Base"',
        "Settings!B3",
        'Contacts!C2: "many" is not a number',
    ]:
        assert expected in out, expected


def test_check_passes_on_the_starter_workbooks(tmp_path):
    for lang in ("en", "pt-BR"):
        path = tmp_path / f"{lang}.xlsx"
        assert main(["init", str(path), "--lang", lang, "--example"]) == 0
        assert [p for p in check(path) if p.is_error] == []


def test_only_selects_stages_and_rejects_unknown(crm, capsys):
    result = run(crm, now=NOW, dry_run=True, only=["scoring"])
    assert {c.column for c in result.plan.changes} == {"score", "id"}
    assert main(["run", str(crm), "--only", "scorin"]) == 2
    assert "unknown stage scorin" in capsys.readouterr().out


def test_now_changes_what_days_since_sees(crm):
    early = run(crm, now=dt.datetime(2026, 11, 1), dry_run=True).plan
    late = run(crm, now=dt.datetime(2027, 6, 1), dry_run=True).plan
    score = lambda plan: {c.record_id: c.new for c in plan.changes if c.column == "score"}  # noqa: E731
    assert score(early)["C-00001"] == 45 and score(late)["C-00001"] == 35


def test_bad_now_and_missing_file_are_usage_errors(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.xlsx")]) == 2
    assert main(["run", str(tmp_path / "x.xlsx"), "--now", "yesterday"]) == 2
    assert main(["run", str(tmp_path / "x.xls")]) == 2
    assert main(["frobnicate"]) == 2
    out = capsys.readouterr().out
    assert "does not exist" in out and "not an ISO date-time" in out and "old .xls" in out


def test_unreadable_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"this is not a zip")
    assert main(["check", str(path)]) == 1
    assert "cannot be read as an Excel workbook" in capsys.readouterr().out


# ---------------------------------------------------------------- busy workbooks


def test_workbook_open_in_excel_is_busy(crm, capsys):
    (crm.parent / f"~${crm.name}").write_bytes(b"owner")
    before = sha(crm)
    assert main(["run", str(crm)]) == 3
    assert "open in Excel" in capsys.readouterr().out
    assert sha(crm) == before


def test_workbook_changed_between_read_and_write_is_not_clobbered(crm):
    book = XlsxBook(crm)
    book.read()
    wb = load_workbook(crm)
    wb["Contacts"]["B2"] = "Changed by a colleague"
    wb.save(crm)
    before = sha(crm)
    with pytest.raises(WorkbookBusy):
        book.write([])
    assert sha(crm) == before


def test_a_second_runner_is_refused_while_one_holds_the_lease(crm):
    with XlsxBook(crm).lease():
        with pytest.raises(WorkbookBusy):
            with XlsxBook(crm).lease():
                pass


def test_backups_are_kept_and_rotated(crm):
    for day in range(4):
        wb = load_workbook(crm)
        wb["Contacts"].append([f"C-1{day}", "x", f"x{day}@acme.com", "VP", 100, None, ""])
        wb.save(crm)
        run(crm, now=NOW + dt.timedelta(days=day))
    assert len(list((crm.parent / ".sheetflow" / "backups").glob("*.xlsx"))) == 4
    wb = load_workbook(crm)
    ws = wb["Settings"]
    ws.append(["backups", 2])
    wb.save(crm)
    wb = load_workbook(crm)
    wb["Contacts"].append(["C-99", "x", "y@acme.com", "VP", 100, None, ""])
    wb.save(crm)
    run(crm, now=NOW + dt.timedelta(days=9))
    assert len(list((crm.parent / ".sheetflow" / "backups").glob("*.xlsx"))) == 2


# ---------------------------------------------------------------- init, demo, runner.py


def test_init_creates_every_contract_sheet_with_dropdowns(tmp_path):
    path = tmp_path / "new.xlsx"
    assert main(["init", str(path)]) == 0
    wb = load_workbook(path)
    assert wb.sheetnames[0] == "Start here"
    for name in (
        "Contacts",
        "Deals",
        "Tickets",
        "Reps",
        "Stages",
        "Scoring",
        "Assignment",
        "Automations",
        "Sequences",
        "Templates",
        "Settings",
        "Emails",
        "Activity",
        "Tasks",
        "Runs",
        "Report",
    ):
        assert name in wb.sheetnames, name
    scoring = wb["Scoring"]
    assert [c.value for c in scoring[1]] == ["rule", "when", "points", "enabled"]
    assert scoring.freeze_panes == "A2"
    assert any('"TRUE,FALSE"' in dv.formula1 for dv in scoring.data_validations.dataValidation)
    methods = [dv.formula1 for dv in wb["Assignment"].data_validations.dataValidation]
    assert any("round_robin" in f and "sticky_account" in f for f in methods)
    stages = [dv.formula1 for dv in wb["Deals"].data_validations.dataValidation]
    assert any("Stages" in f for f in stages)
    before = sha(path)
    assert main(["init", str(path)]) == 0  # already complete: nothing to add, file untouched
    assert sha(path) == before


def test_init_portuguese_with_example(tmp_path):
    path = tmp_path / "novo.xlsx"
    assert main(["init", str(path), "--lang", "pt-BR", "--example"]) == 0
    wb = load_workbook(path)
    assert wb.sheetnames[:3] == ["Começar aqui", "Contatos", "Negócios"]
    header = [c.value for c in wb["Contatos"][1]]
    assert "Nome" in header and "E-mail" in header and "Pontuação" in header
    assert wb["Contatos"].max_row > 50
    assert wb["Pontuação"].max_row > 3
    result = run(path, now=NOW)
    assert not result.plan.errors and result.written


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "demo"), "--contacts", "120"]) == 0
    out = capsys.readouterr().out
    assert "scores computed" in out and "where to look" in out
    rows = sheet(tmp_path / "demo" / "crm-demo.xlsx", "Contacts")
    assert len(rows) == 121 and all(isinstance(r[14], float) for r in rows[1:])


@pytest.mark.slow
def test_runner_py_is_the_same_cli(tmp_path):
    path = tmp_path / "r.xlsx"
    done = subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), "init", str(path), "--example"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), "run", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "dry run" in done.stdout


# ---------------------------------------------------------------- real dirty data


def test_odoo_demo_leads(book):
    with needs_corpus("crm", "odoo15_crm_lead_demo.csv").open(newline="", encoding="utf-8") as f:
        leads = list(csv.DictReader(f))
    header = ["id", "first_name", "company", "email", "phone", "title", "country", "source", "created_at"]
    rows = [header] + [
        [
            None,
            r["contact_name"],
            r["partner_name"],
            r["email_from"],
            r["phone"],
            r["function"],
            r["country_code"],
            r["source"],
            r["create_date"],
        ]
        for r in leads
    ]
    path = book(
        {
            "Contacts": rows,
            "Settings": SETTINGS,
            "Scoring": [
                ["rule", "when", "points"],
                ["manager", 'title contains "manager"', 10],
                ["no email", "email is empty", -5],
                ["french", 'country = "fr"', 3],
            ],
        }
    )
    result = run(path, now=NOW)
    assert not result.plan.errors
    contacts = sheet(path, "Contacts")
    assert len(contacts) == len(leads) + 1
    assert len({r[0] for r in contacts[1:]}) == len(leads)  # every lead got its own id
    expected = [
        (10 if "manager" in r["function"].lower() else 0)
        + (-5 if not r["email_from"].strip() else 0)
        + (3 if r["country_code"].strip().lower() == "fr" else 0)
        for r in leads
    ]
    assert [r[-1] for r in contacts[1:]] == expected


def test_report_sheet_is_rebuilt_each_run(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": SCORING,
            "Contacts": CONTACTS,
            "Reps": [["name", "email", "active"], ["Ana", "", True], ["Bob", "", True]],
            "Assignment": [
                ["rule", "table", "when", "assign_to", "method"],
                ["All", "Contacts", "", "all", "round_robin"],
            ],
            "Report": [
                ["my old notes", "x"],
                ["to be replaced", 1],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                [],
                ["far below"],
            ],
        }
    )
    run(path, now=NOW)
    rows = sheet(path, "Report")
    flat = [r for r in rows if any(v not in ("", None) for v in r)]
    assert flat[0][0] == "sheetflow report"
    stages = [r[:2] for r in flat]
    assert (
        ["mql", 2.0] in stages
        and ["lead", 1.0] in stages
        and ["sql", 1.0] in stages
        and ["customer", 1.0] in stages
    )
    reps = {r[0]: r for r in flat if r[0] in ("Ana", "Bob")}
    assert reps["Ana"][6] + reps["Bob"][6] == 5  # assigned this run
    assert not any("far below" in str(v) or "my old notes" in str(v) for r in rows for v in r)
    names = pc.CalamineWorkbook.from_path(str(path)).sheet_names
    assert names.count("Report") == 1

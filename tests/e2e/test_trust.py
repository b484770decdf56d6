"""Trust on real workbooks (issue 9): formulas left alone, headers where the user put them, consent that
fails closed, `set` that writes the type it means, one name normalisation, and output that cannot inject
control characters into a terminal (issue 20.5). Real .xlsx files in a temp folder, real runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.worksheet.table import Table as XlTable

from sheetflow.commands.run import check, run
from tests.conftest import NOW
from tests.conftest import read_sheet as sheet

SETTINGS = [["key", "value"], ["timezone", "UTC"]]
REPS = [["name", "email", "active"], ["Ana Souza", "ana@example.com", True], ["Bob", "bob@example.com", True]]
ROUND_ROBIN = [
    ["rule", "table", "when", "assign_to", "method"],
    ["All", "Contacts", "", "all", "round_robin"],
]


def messages(problems) -> list[str]:
    return [str(p) for p in problems]


def formulas(path: Path, sheet_name: str) -> dict[str, str]:
    ws = load_workbook(path)[sheet_name]
    return {
        c.coordinate: c.value
        for row in ws.iter_rows()
        for c in row
        if isinstance(c.value, str) and c.value.startswith("=")
    }


# ---------------------------------------------------------------- 9.2 formulas are never overwritten


def test_owner_formula_is_not_a_blank_owner_and_is_never_written(book):
    owner_formula = '=IF(D2="Brazil","Ana Souza","")'
    path = book(
        {
            "Settings": SETTINGS,
            "Contacts": [
                ["id", "first_name", "email", "country", "owner"],
                ["C-1", "Eva", "eva@acme.com", "Chile", owner_formula],  # cached value: ""
                ["C-2", "Rui", "rui@acme.com", "Brazil", None],
            ],
            "Reps": REPS,
            "Assignment": ROUND_ROBIN,
        }
    )
    result = run(path, now=NOW)
    assert result.written
    assert formulas(path, "Contacts") == {"E2": owner_formula}
    rows = sheet(path, "Contacts")
    assert rows[2][4] in ("Ana Souza", "Bob")  # the plain blank owner is assigned
    owners = [c for c in result.plan.changes if c.column == "owner"]
    assert [c.record_id for c in owners] == ["C-2"]
    text = messages(result.plan.problems)
    assert (
        "Contacts!E2: holds a formula; sheetflow leaves it alone — clear it if sheetflow should manage "
        "this cell" in text
    )
    assert any("Contacts!E2: holds a formula" in m for m in messages(check(path, now=NOW)))


def test_score_formula_is_left_alone_and_reported(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": [["rule", "when", "points"], ["Everyone", "", 10]],
            "Contacts": [
                ["id", "first_name", "score"],
                ["C-1", "Ana", "=LEN(B2)"],
                ["C-2", "Bob", None],
            ],
        }
    )
    result = run(path, now=NOW)
    assert formulas(path, "Contacts") == {"C2": "=LEN(B2)"}
    assert sheet(path, "Contacts")[2][2] == 10
    assert [c.record_id for c in result.plan.changes if c.column == "score"] == ["C-2"]
    assert any(m.startswith("Contacts!C2: holds a formula") for m in messages(result.plan.problems))
    activity = sheet(path, "Activity")
    assert not any(r[3] == "C-1" for r in activity[1:])  # nothing logged as changed either


def test_a_column_of_formulas_is_reported_briefly(book):
    rows = [["id", "first_name", "score"]] + [[f"C-{i}", "x", f"=LEN(B{i + 1})"] for i in range(1, 21)]
    path = book(
        {"Settings": SETTINGS, "Scoring": [["rule", "when", "points"], ["All", "", 5]], "Contacts": rows}
    )
    result = run(path, now=NOW)
    about = [m for m in messages(result.plan.problems) if "formula" in m]
    assert len(about) == 6 and "and 15 more cells of this column hold formulas" in about[-1]
    assert len(formulas(path, "Contacts")) == 20


def test_lifecycle_and_id_formulas_are_left_alone(book):
    path = book(
        {
            "Settings": [*SETTINGS, ["mql_threshold", 5]],
            "Scoring": [["rule", "when", "points"], ["All", "", 10]],
            "Contacts": [
                ["id", "first_name", "score", "lifecycle_stage"],
                ['=""', "Ana", None, '=IF(C2>0,"lead","lead")'],
            ],
        }
    )
    run(path, now=NOW)
    assert formulas(path, "Contacts") == {"A2": '=""', "D2": '=IF(C2>0,"lead","lead")'}


# ---------------------------------------------------------------- 9.3 the header is where the user put it


def titled_contacts(path: Path) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = "Contacts"
    ws["A1"] = "Client list — updated weekly"
    ws.merge_cells("A1:D1")
    ws.append([])  # row 2 blank
    ws.append(["first_name", "email", "title", "company"])  # row 3
    ws.append(["Ana", "ana@acme.com", "Director", "Acme"])
    ws.append(["Bob", "bob@beta.com", "Analyst", "Beta"])
    wb.create_sheet("Settings")
    for r in SETTINGS:
        wb["Settings"].append(r)
    wb.create_sheet("Scoring")
    for r in [["rule", "when", "points"], ["Director", 'title contains "director"', 20]]:
        wb["Scoring"].append(r)
    wb.save(path)
    return path


def test_header_below_a_merged_title_and_a_blank_row(tmp_path):
    path = titled_contacts(tmp_path / "crm.xlsx")
    assert not [p for p in check(path, now=NOW) if p.is_error]
    result = run(path, now=NOW)
    assert not result.plan.errors
    rows = sheet(path, "Contacts")
    assert rows[0][0] == "Client list — updated weekly"
    assert rows[2][:6] == ["first_name", "email", "title", "company", "id", "score"]
    assert rows[3][4:6] == ["C-00001", 20]
    assert rows[4][4:6] == ["C-00002", 0]
    assert len(rows) == 5  # no record was invented from the title
    where = {c.record_id: c.where for c in result.plan.changes if c.column == "id"}
    assert where == {"C-00001": "Contacts!E4", "C-00002": "Contacts!E5"}
    assert [r.coord for r in load_workbook(path)["Contacts"].merged_cells.ranges] == ["A1:D1"]


def test_added_columns_have_real_cell_references(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": [["rule", "when", "points"], ["All", "", 1]],
            "Contacts": [["first_name"], *[[f"n{i}"] for i in range(12)]],
        }
    )
    result = run(path, dry_run=True, now=NOW)
    refs = [c.where for c in result.plan.changes]
    assert all(":" not in r and " " not in r for r in refs)
    assert "Contacts!B2" in refs and "Contacts!C13" in refs  # id in B, score in C (row 13 = 12th record)
    run(path, now=NOW)
    rows = sheet(path, "Contacts")
    assert rows[0] == ["first_name", "id", "score"] and rows[12][1:] == ["C-00012", 1]


def test_sheet_without_a_plausible_header_is_an_error_and_untouched(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": [["rule", "when", "points"], ["All", "", 1]],
            "Contacts": [["Our customers"], [], ["Ana", "ana@acme.com"], ["Bob", "bob@beta.com"]],
        }
    )
    before = sheet(path, "Contacts")
    problems = check(path, now=NOW)
    errors = [str(p) for p in problems if p.is_error]
    assert any(e.startswith("Contacts: no header row found") for e in errors)
    result = run(path, now=NOW)
    assert sheet(path, "Contacts") == before
    assert not [c for c in result.plan.changes if c.table == "Contacts"]


def excel_table_book(path: Path, *, totals: bool) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = "Contacts"
    ws["A1"] = "Leads from the fair"
    ws.append([])
    ws.append(["id", "first_name", "email", "company_size"])  # header in row 3
    ws.append(["C-1", "Ana", "ana@acme.com", 10])
    ws.append(["C-2", "Bob", "bob@beta.com", 20])
    last = 5
    if totals:
        ws.append(["Total", None, None, "=SUBTOTAL(109,Leads[company_size])"])
        last = 6
    table = XlTable(displayName="Leads", ref=f"A3:D{last}")
    if totals:
        table.totalsRowCount = 1
    ws.add_table(table)
    wb.create_sheet("Settings")
    for r in SETTINGS:
        wb["Settings"].append(r)
    wb.create_sheet("Scoring")
    for r in [["rule", "when", "points"], ["Size", "company_size > 0", 7]]:
        wb["Scoring"].append(r)
    wb.save(path)
    return path


@pytest.mark.parametrize("totals", [False, True])
def test_excel_table_header_and_totals_row(tmp_path, totals):
    path = excel_table_book(tmp_path / "crm.xlsx", totals=totals)
    result = run(path, now=NOW)
    assert not result.plan.errors
    ids = sorted({c.record_id for c in result.plan.changes})
    assert ids == ["C-1", "C-2"]  # the totals row is not a record
    rows = sheet(path, "Contacts")
    assert rows[2][4] == "score" and rows[3][4] == 7 and rows[4][4] == 7
    if totals:
        assert rows[5][0] == "Total" and (len(rows[5]) < 5 or rows[5][4] in (None, ""))
        assert formulas(path, "Contacts") == {"D6": "=SUBTOTAL(109,Leads[company_size])"}


def test_log_sheet_with_a_title_above_its_header(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": [["rule", "when", "points"], ["All", "", 1]],
            "Contacts": [["id", "first_name"], ["C-1", "Ana"]],
            "Runs": [
                ["Run history"],
                [],
                ["run_id", "started_at", "finished_at", "mode", "trigger", "counts"],
            ],
        }
    )
    run(path, now=NOW)
    rows = sheet(path, "Runs")
    assert rows[0] == ["Run history"] + [""] * (len(rows[0]) - 1)
    assert rows[2][:2] == ["run_id", "started_at"]
    assert rows[3][0].startswith("R2026")
    assert len(rows) == 4


# ---------------------------------------------------------------- 9.1 consent fails closed

MAIL_SETTINGS = [
    ["key", "value"],
    ["timezone", "UTC"],
    ["sender_email", "sales@acme-team.com"],
    ["send_window", "Mon-Sun 00:00-23:59"],
]
WELCOME = [
    ["rule", "table", "trigger", "when", "action", "params"],
    ["Welcome", "Contacts", "every_run", "", "send_email", "template=welcome"],
]
TEMPLATES = [["name", "subject", "body"], ["welcome", "Hi {{ first_name }}", "Welcome, {{ first_name }}."]]


@pytest.fixture
def no_smtp(monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    monkeypatch.delenv("SHEETFLOW_SMTP_HOST", raising=False)


def consent_book(book, header: str, values: list[object]):
    contacts = [["id", "first_name", "email", header]]
    contacts += [[f"C{i}", f"P{i}", f"p{i}@acme.com", v] for i, v in enumerate(values, start=1)]
    return book(
        {"Settings": MAIL_SETTINGS, "Contacts": contacts, "Automations": WELCOME, "Templates": TEMPLATES}
    )


def test_opt_out_text_in_unsubscribed_is_never_mailed(book, no_smtp):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [
                ["id", "first_name", "email", "unsubscribed"],
                ["C9", "Eva", "eva@acme.com", "opt-out"],
                ["C10", "Rui", "rui@acme.com", "FALSE"],
            ],
            "Automations": WELCOME,
            "Templates": TEMPLATES,
        }
    )
    notes = [str(p) for p in check(path, now=NOW) if "Contacts!D2" in str(p)]
    assert len(notes) == 1 and "not a clear yes or no" in notes[0] and "eva@acme.com" in notes[0]
    result = run(path, now=NOW)
    by_id = {e.record_id: e for e in result.plan.emails}
    assert by_id["C9"].status == "skipped" and by_id["C9"].detail == "unsubscribed (Contacts!D2)"
    assert by_id["C10"].status != "skipped"
    assert result.emails.count("sent") == 1
    outbox = sorted((path.parent / "outbox").glob("*.eml"))
    assert len(outbox) == 1 and b"rui@acme.com" in outbox[0].read_bytes()
    assert b"eva@acme.com" not in outbox[0].read_bytes()


@pytest.mark.parametrize(
    "value",
    [
        "opt-out",
        "sim",
        "yes",
        "TRUE",
        True,
        1,
        2,
        "x",
        dt.datetime(2026, 3, 1),
        "2026-03-01",
        "pediu para sair",
    ],
)
@pytest.mark.parametrize(
    "header", ["unsubscribed", "Descadastrado", "do_not_contact", "Não contatar", "bounced"]
)
def test_anything_but_a_clear_no_suppresses(book, no_smtp, header, value):
    path = consent_book(book, header, [value])
    plan = run(path, now=NOW, dry_run=True).plan
    assert [e.status for e in plan.emails] == ["skipped"]
    assert "(Contacts!D2)" in plan.emails[0].detail


@pytest.mark.parametrize("value", [None, "", False, 0, "FALSE", "NÃO", "nao", "no", "N", "0", "falso"])
def test_a_clear_no_allows_email(book, no_smtp, value):
    path = consent_book(book, "do_not_contact", [value])
    plan = run(path, now=NOW, dry_run=True).plan
    assert [e.status for e in plan.emails] != ["skipped"]
    assert not [p for p in check(path, now=NOW) if "Contacts!D2" in str(p)]


# ---------------------------------------------------------------- 9.10 `set` writes the type it means


def set_book(book, params: str, column: list[object]):
    contacts = [["id", "first_name", "follow_up_on"]]
    contacts += [[f"C-{i}", f"P{i}", v] for i, v in enumerate(column, start=1)]
    return book(
        {
            "Settings": SETTINGS,
            "Contacts": contacts,
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                ["Stamp", "Contacts", "every_run", "", "set", params],
            ],
        }
    )


def test_set_relative_date_into_an_empty_user_column(book):
    path = set_book(book, "follow_up_on=today+3d", [None, None])
    assert not [p for p in check(path, now=NOW) if p.is_error]
    result = run(path, now=NOW)
    assert not result.plan.errors
    ws = load_workbook(path)["Contacts"]
    assert ws["C2"].value == dt.datetime(2026, 11, 26) and ws["C3"].value == dt.datetime(2026, 11, 26)
    assert ws["C2"].is_date


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("follow_up_on=42", 42),
        ("follow_up_on=TRUE", True),
        ("follow_up_on=2026-12-01", dt.datetime(2026, 12, 1)),
    ],
)
def test_set_writes_numbers_booleans_and_dates_into_an_empty_column(book, params, expected):
    path = set_book(book, params, [None])
    run(path, now=NOW)
    assert load_workbook(path)["Contacts"]["C2"].value == expected


def test_set_date_into_a_text_column_writes_a_date_cell(book):
    path = set_book(book, "follow_up_on=today", ["call back", None])
    result = run(path, now=NOW)
    assert not result.plan.errors
    ws = load_workbook(path)["Contacts"]
    assert ws["C2"].value == dt.datetime(2026, 11, 23) and ws["C3"].value == dt.datetime(2026, 11, 23)


@pytest.mark.parametrize(
    ("params", "column"),
    [
        ("company_size=today+3d", "company_size"),
        ("company_size=lots", "company_size"),
        ("unsubscribed=maybe", ""),
    ],
)
def test_a_value_that_cannot_go_there_is_a_problem_at_the_automations_cell(book, params, column):
    path = set_book(book, params, [None])
    errors = [str(p) for p in check(path, now=NOW) if p.is_error]
    assert any(e.startswith("Automations!F2:") for e in errors), errors
    before = sheet(path, "Contacts")
    result = run(path, now=NOW)
    assert sheet(path, "Contacts")[1][:3] == before[1][:3]
    assert any(str(p).startswith("Automations!F2:") for p in result.plan.errors)


# ---------------------------------------------------------------- 20.5 output hygiene


def test_control_characters_and_long_values_never_reach_the_terminal_raw(book, capsys):
    from sheetflow.cli.main import main

    long_value = "1_x0000_" + "9" * 4067  # 4,075 characters as typed (Excel's escape for NUL), NUL inside
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": [["rule", "when", "points"], ["All", "", 3]],
            "Contacts": [
                ["id", "first_name", "company_size"],
                ["a_x001B_[2J", "Ana", 10],
                ["b\r\nFAKE plan line", "Bob", long_value],
            ],
        }
    )
    assert main(["run", str(path), "--dry-run", "--now", "2026-11-23T10:00"]) == 0
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x00" not in out and "\r" not in out
    assert "a\\x1b[2J" in out and "b\\r\\nFAKE plan line" in out
    assert not any(line.startswith("FAKE") for line in out.splitlines())
    warned = [line for line in out.splitlines() if "Contacts!C3" in line]
    assert warned and all(len(line) < 300 for line in warned) and "…" in warned[0]


def test_problem_messages_are_tidy_whatever_they_quote():
    from sheetflow.problems import printable, quote, warning

    p = warning("Contacts!B2", f'"{"x" * 500}\x00" is not a number', "treated\x1b[2J as empty")
    assert len(p.message) < 120 and "\x00" not in str(p) and "\x1b" not in str(p)
    assert p.hint == "treated\\x1b[2J as empty"
    assert printable("a\u202eb\u2028c") == "a\\u202eb\\u2028c"
    assert quote("ok") == '"ok"' and quote("y" * 200).endswith('…"') and len(quote("y" * 200)) == 82


# ---------------------------------------------------------------- 9.11 people's text matches as people see it

ACCOUNT_REPS = [["name", "email", "capacity"], ["João", "joao@team.com", None], ["Bia", "bia@team.com", None]]


def owners_after(path: Path, table: str = "Contacts") -> dict[str, object]:
    rows = sheet(path, table)
    header = rows[0]
    return {r[0]: dict(zip(header, r)).get("owner") for r in rows[1:]}


def test_assign_to_without_accent_finds_the_rep(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Reps": ACCOUNT_REPS,
            "Assignment": [
                ["rule", "table", "when", "assign_to", "method"],
                ["R", "Contacts", "", "Joao", ""],
            ],
            "Contacts": [["id", "first_name", "owner"], ["C1", "a", None]],
        }
    )
    result = run(path, now=NOW)
    assert not result.plan.errors
    assert owners_after(path) == {"C1": "João"}  # the rep's name as typed in Reps


def test_sticky_account_sees_one_company_whatever_the_suffix_and_case(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Reps": ACCOUNT_REPS,
            "Assignment": [
                ["rule", "table", "when", "assign_to", "method"],
                ["S", "Contacts", "", "all", "sticky_account"],
            ],
            "Contacts": [
                ["id", "first_name", "company", "owner"],
                ["C1", "a", "ACME Ltda.", "Bia"],
                ["C2", "b", "Acme LTDA", None],
                ["C3", "c", "acme", None],
            ],
        }
    )
    run(path, now=NOW)
    assert owners_after(path) == {"C1": "Bia", "C2": "Bia", "C3": "Bia"}


def test_owner_spelled_differently_counts_toward_the_reps_capacity(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Reps": [
                ["name", "email", "capacity"],
                ["João Souza", "j@team.com", 1],
                ["Bia", "b@team.com", None],
            ],
            "Assignment": [
                ["rule", "table", "when", "assign_to", "method"],
                ["R", "Contacts", "", "all", ""],
            ],
            "Contacts": [["id", "first_name", "owner"], ["C1", "a", "JOAO  souza."], ["C2", "b", None]],
        }
    )
    run(path, now=NOW)
    assert owners_after(path)["C2"] == "Bia"  # João already holds his one record


def test_rules_compare_text_without_case_accents_or_extra_spaces(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Stages": [["stage", "order"], ["Proposta", 1]],
            "Deals": [
                ["id", "name", "stage", "owner"],
                ["D1", "x", "proposta", "João"],
                ["D2", "y", "Proposta ", "Joao"],
                ["D3", "z", "Fechado", "Bia"],
            ],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                [
                    "Chase",
                    "Deals",
                    "every_run",
                    'stage = "PROPOSTA" and owner in ("joão", "x")',
                    "create_task",
                    "text=go",
                ],
            ],
        }
    )
    result = run(path, now=NOW, dry_run=True)
    assert sorted(a.values["record_id"] for a in result.plan.appends if a.sheet == "Tasks") == ["D1", "D2"]


# ---------------------------------------------------------------- 9.12 small things a new user trips on


def test_blank_init_invents_no_people_and_check_says_what_to_fill(tmp_path, capsys):
    from sheetflow.cli.main import main

    path = tmp_path / "crm.xlsx"
    assert main(["init", str(path)]) == 0
    out = capsys.readouterr().out
    assert "read the 'Start here' sheet" in out
    settings = {r[0]: r[1] for r in sheet(path, "Settings")[1:]}
    assert settings["fallback_owner"] in ("", None) and settings["sender_email"] in ("", None)
    assert not any("example.com" in str(v) or "Carol" in str(v) for v in settings.values())
    notes = [str(p) for p in check(path, now=NOW)]
    assert any("sender_email is empty" in n for n in notes)
    assert any("fallback_owner is empty" in n for n in notes)
    example = tmp_path / "example.xlsx"
    assert main(["init", str(example), "--example"]) == 0
    assert {r[0]: r[1] for r in sheet(example, "Settings")[1:]}[
        "sender_email"
    ]  # the example keeps its values


def test_init_on_an_existing_file_does_not_promise_a_start_here_sheet(book, capsys):
    from sheetflow.cli.main import main

    path = book({"Contacts": [["id", "first_name"], ["C-1", "Ana"]]})
    assert main(["init", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Start here" not in out and "sheetflow check" in out
    settings = {r[0]: r[1] for r in sheet(path, "Settings")[1:]}
    assert settings["fallback_owner"] in ("", None)


def test_workbook_busy_message_names_no_missing_button(book):
    from sheetflow.book.xlsx import XlsxBook
    from sheetflow.problems import WorkbookBusy

    path = book({"Contacts": [["id"], ["C-1"]]})
    (path.parent / f"~${path.name}").write_text("owner")
    with pytest.raises(WorkbookBusy) as info, XlsxBook(path).lease():
        pass
    assert "button" not in str(info.value) and "close it" in str(info.value)


def test_check_warns_about_a_fallback_owner_who_is_not_a_rep_and_unknown_stages(book):
    path = book(
        {
            "Settings": [["key", "value"], ["fallback_owner", "Carol White"], ["sender_email", "s@acme.com"]],
            "Reps": [["name", "email"], ["Carla White", "c@acme.com"], ["Bob", "b@acme.com"]],
            "Stages": [["stage", "order"], ["Proposta", 1], ["Ganho", 2]],
            "Deals": [
                ["id", "name", "stage"],
                ["D1", "a", "Proposla"],
                ["D2", "b", "proposta"],
                ["D3", "c", "ganho"],
            ],
        }
    )
    text = [str(p) for p in check(path, now=NOW)]
    assert (
        'Settings!B2: fallback_owner "Carol White" is not a rep in the Reps sheet — did you mean "Carla White"?'
        in text
    )
    assert 'Deals!C2: stage "Proposla" is not in the Stages sheet — did you mean "Proposta"?' in text
    assert not any("Deals!C3" in t or "Deals!C4" in t for t in text)


def test_escalation_says_what_is_overdue_since_when_and_what_to_do(book, no_smtp):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Reps": [["name", "email"], ["Ana", "ana@acme-team.com"]],
            "Tickets": [
                ["id", "subject", "severity", "status", "owner", "due_at"],
                ["T1", "Printer down", "urgent", "open", "Ana", dt.datetime(2026, 11, 20, 9, 0)],
            ],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                ["Late", "Tickets", "every_run", "due_at < today", "escalate", "to=Ana"],
            ],
        }
    )
    plan = run(path, now=NOW, dry_run=True).plan
    bodies = [e.text for e in plan.emails if e.to == "ana@acme-team.com"]
    assert bodies, plan.emails
    body = bodies[0]
    assert 'Ticket T1 "Printer down"' in body and "overdue since 2026-11-20 09:00" in body
    assert "Contact the customer or reassign it" in body
    assert "Tickets T1: \n" not in body and not body.rstrip().endswith("T1:")


def test_no_email_goes_out_while_the_emails_sheet_cannot_be_read(book, no_smtp):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [["id", "first_name", "email"], ["C1", "Ana", "ana@acme.com"]],
            "Automations": WELCOME,
            "Templates": TEMPLATES,
            "Emails": [["Sent mail — do not edit"], ["whatever", "was", "here"]],
        }
    )
    before = sheet(path, "Emails")
    result = run(path, now=NOW)
    assert any(str(p).startswith("Emails: no header row found") for p in result.plan.errors)
    assert [e.due for e in result.plan.emails] == [False] and result.emails is None
    assert not (path.parent / "outbox").exists() or not list((path.parent / "outbox").glob("*.eml"))
    assert sheet(path, "Emails") == before


# ---------------------------------------------------------------- more of each kind


def test_portuguese_sheet_with_a_title_row_and_pt_headers(book):
    path = book(
        {
            "Configurações": [["chave", "valor"], ["locale", "pt-BR"]],
            "Pontuação": [["regra", "quando", "pontos"], ["Diretor", 'cargo contém "diretor"', 30]],
            "Contatos": [
                ["Lista de clientes — atualizada toda semana"],
                [],
                ["Nome", "E-mail", "Cargo", "Descadastrado"],
                ["Ana", "ana@acme.com.br", "Diretora", "NÃO"],
                ["Bia", "bia@acme.com.br", "Diretor comercial", "sim"],
            ],
        }
    )
    result = run(path, now=NOW)
    assert not result.plan.errors
    rows = sheet(path, "Contatos")
    assert rows[2][4:6] == ["id", "Pontuação"] and rows[4][4:6] == ["C-00002", 30]
    assert rows[0][0].startswith("Lista de clientes") and len(rows) == 5


def test_formula_owner_of_a_deal_and_formula_due_date_of_a_ticket(book):
    path = book(
        {
            "Settings": [*SETTINGS, ["fallback_owner", "Ana Souza"]],
            "Reps": REPS,
            "Assignment": [["rule", "table", "when", "assign_to", "method"], ["All", "Deals", "", "all", ""]],
            "Deals": [["id", "name", "owner"], ["D-1", "Big", '=IF(1=1,"","")'], ["D-2", "Small", None]],
            "Tickets": [
                ["id", "subject", "severity", "status", "opened_at", "due_at"],
                ["T-1", "Down", "urgent", "open", dt.datetime(2026, 11, 20, 9), "=E2+1"],
            ],
        }
    )
    result = run(path, now=NOW)
    assert formulas(path, "Deals") == {"C2": '=IF(1=1,"","")'}
    assert formulas(path, "Tickets") == {"F2": "=E2+1"}
    assert [c.record_id for c in result.plan.changes if c.column == "owner"] == ["D-2"]
    assert not [c for c in result.plan.changes if c.table == "Tickets" and c.column == "due_at"]


def test_consent_blocks_deal_emails_to_the_contact_too(book, no_smtp):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [
                ["id", "first_name", "email", "do_not_contact"],
                ["C1", "Eva", "eva@acme.com", "2026-01-10"],
            ],
            "Deals": [["id", "contact_id", "name", "stage"], ["D1", "C1", "Renewal", "open"]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                ["Deal mail", "Deals", "every_run", "", "send_email", "template=deal"],
            ],
            "Templates": [["name", "subject", "body"], ["deal", "About {{ name }}", "Hi, {{ name }}."]],
        }
    )
    plan = run(path, now=NOW, dry_run=True).plan
    assert [(e.status, e.detail) for e in plan.emails] == [("skipped", "do not contact (Contacts!D2)")]


def test_runs_sheet_errors_are_tidy(book):
    path = book(
        {
            "Settings": SETTINGS,
            "Scoring": [["rule", "when", "points"], ["Bad_x001B_", 'title = "' + "z" * 300 + '" and', 5]],
            "Contacts": [["id", "title"], ["C-1", "x"]],
        }
    )
    run(path, now=NOW)
    errors = sheet(path, "Runs")[1][6]
    assert errors and "\x1b" not in errors and "z" * 100 not in errors


def test_blank_portuguese_init_leaves_people_empty(tmp_path):
    from sheetflow.commands.init import create_starter

    path = create_starter(tmp_path / "planilha.xlsx", lang="pt-BR")
    settings = {r[0]: r[1] for r in sheet(path, "Configurações")[1:]}
    assert settings["fallback_owner"] in ("", None) and settings["sender_email"] in ("", None)
    assert settings["timezone"] == "America/Sao_Paulo"

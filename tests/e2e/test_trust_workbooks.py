"""Trust on real workbooks, second pass (issue 9 follow-up): consent headers as CRMs export them, every
consent column counts, rows that are not records, values rendered as the cell shows them, one spelling for
stages and reps, every skipped formula reported. Real .xlsx files in a temp folder, real runs."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.worksheet.table import Table as XlTable

from sheetflow.commands.run import check, run
from tests.conftest import NOW
from tests.conftest import read_sheet as sheet

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


def statuses(path: Path) -> dict[str, str]:
    return {e.record_id: e.status for e in run(path, now=NOW, dry_run=True).plan.emails}


# ---------------------------------------------------------------- consent headers as people and CRMs type them


@pytest.mark.parametrize(
    "header",
    [
        "Email Opt Out",  # Salesforce
        "HasOptedOutOfEmail",  # Salesforce API name
        "email_opt_out",
        "opted_out",
        "Opt-out",
        "Unsubscribed?",
        "UNSUBSCRIBED",
        "Un subscribed",
        "Unsubscribed from all email",  # HubSpot
        "Blacklist",  # Odoo
        "Lista negra",  # Odoo pt-BR
        "Descadastrado(a)",
        "Descadastrado:",
        "Do Not Contact",
        "Não contatar?",
        "Não enviar e-mail",
        "Bounced?",
        "Hard bounce",
        "Email Bounced Date",  # Salesforce
        "E-mail devolvido (hard)",
    ],
)
def test_consent_column_under_any_common_header_suppresses(book, no_smtp, header):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [
                ["id", "first_name", "email", header],
                ["C1", "Eva", "eva@x.com", "TRUE"],
                ["C2", "Rui", "rui@x.com", "FALSE"],
            ],
            "Automations": WELCOME,
            "Templates": TEMPLATES,
        }
    )
    got = statuses(path)
    assert got["C1"] == "skipped"
    assert got["C2"] != "skipped"


def test_header_suffixes_match_ordinary_columns_too(book):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [
                ["id", "First name:", "E-mail (work)", "Company size*"],
                ["C1", "Eva", "eva@x.com", 12],
            ],
            "Scoring": [["rule", "when", "points"], ["Big", "company_size > 10", 5]],
        }
    )
    result = run(path, now=NOW)
    rows = sheet(path, "Contacts")
    assert rows[0][:4] == ["id", "First name:", "E-mail (work)", "Company size*"]
    assert rows[0][4] == "score" and rows[1][4] == 5
    assert not result.plan.errors


# ---------------------------------------------------------------- every consent column counts


def test_second_consent_column_counts(book, no_smtp):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [
                [
                    "id",
                    "first_name",
                    "email",
                    "unsubscribed",
                    "Descadastrado",
                    "Do not email",
                    "Email Opt Out",
                ],
                ["C1", "Eva", "eva@x.com", None, "opt-out", None, None],
                ["C2", "Rui", "rui@x.com", False, None, "yes", None],
                ["C3", "Lia", "lia@x.com", "FALSE", "não", "no", True],
                ["C4", "Max", "max@x.com", "FALSE", None, None, "FALSE"],
            ],
            "Automations": WELCOME,
            "Templates": TEMPLATES,
        }
    )
    problems = [str(p) for p in check(path, now=NOW)]
    assert any(m.startswith('Contacts!E1: column "Descadastrado" also means unsubscribed') for m in problems)
    assert any(m.startswith('Contacts!G1: column "Email Opt Out" also means unsubscribed') for m in problems)
    assert not any("appears twice" in m for m in problems)
    plan = run(path, now=NOW).plan
    by_id = {e.record_id: e for e in plan.emails}
    assert by_id["C1"].status == "skipped" and by_id["C1"].detail == "unsubscribed (Contacts!E2)"
    assert by_id["C2"].status == "skipped" and by_id["C2"].detail == "do not contact (Contacts!F3)"
    assert by_id["C3"].status == "skipped" and by_id["C3"].detail == "unsubscribed (Contacts!G4)"
    assert by_id["C4"].status != "skipped"
    outbox = b"".join(p.read_bytes() for p in (path.parent / "outbox").glob("*.eml"))
    assert b"max@x.com" in outbox and b"eva@x.com" not in outbox and b"rui@x.com" not in outbox


# ---------------------------------------------------------------- rows that are not records


def test_footer_under_the_data_is_not_a_record(book, no_smtp):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [
                ["id", "first_name", "email"],
                ["C1", "Eva", "eva@x.com"],
                [None, "Rui", "rui@x.com"],
                [],
                ["Total: 3 contacts"],
                [None, "Notes"],
                [],
                [None, "Lia", "lia@x.com"],  # a real contact after a gap stays a record
            ],
            "Scoring": [["rule", "when", "points"], ["All", "", 1]],
            "Automations": WELCOME,
            "Templates": TEMPLATES,
        }
    )
    problems = [str(p) for p in check(path, now=NOW)]
    assert any(m.startswith('Contacts!A5: "Total: 3 contacts" is a footer under the data') for m in problems)
    assert any(m.startswith('Contacts!B6: "Notes" is a footer') for m in problems)
    result = run(path, now=NOW)
    assert sorted(e.to for e in result.plan.emails) == ["eva@x.com", "lia@x.com", "rui@x.com"]
    rows = sheet(path, "Contacts")
    assert rows[4][0] == "Total: 3 contacts" and all(v in (None, "") for v in rows[4][1:])
    assert all(v in (None, "") for v in rows[5][2:]) and rows[5][1] == "Notes"
    assert rows[7][3] == 1 and rows[7][0]  # Lia got an id and a score
    assert rows[2][0] and rows[2][3] == 1


def test_sum_formula_line_under_the_data_is_not_a_record(book):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Deals": [
                ["id", "name", "amount"],
                ["D1", "A", 10],
                ["D2", "B", 20],
                [],
                [None, None, "=SUM(C2:C3)"],
            ],
            "Stages": [["stage", "order"], ["Open", 1]],
        }
    )
    run(path, now=NOW)
    ws = load_workbook(path)["Deals"]
    assert ws["C5"].value == "=SUM(C2:C3)" and ws["A5"].value is None


def deals_table_book(path: Path, *, totals: bool) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = "Deals"
    ws["A1"] = "Pipeline (table below)"
    for j, h in enumerate(["id", "name", "stage", "amount"]):
        ws.cell(3, 2 + j, h)
    ws.cell(4, 3, "Big deal")
    ws.cell(4, 5, 1000)
    ws.cell(5, 3, "Small deal")
    ws.cell(5, 5, 200)
    last = 5
    if totals:
        ws.cell(6, 2, "Total")
        ws.cell(6, 5, "=SUBTOTAL(109,DealsTbl[amount])")
        last = 6
    ws.cell(last + 2, 2, "notes: ask Ana")
    ws.cell(last + 3, 3, "Someone's deal typed below")
    table = XlTable(displayName="DealsTbl", ref=f"B3:E{last}")
    table.totalsRowCount = 1 if totals else None
    ws.add_table(table)
    wb.create_sheet("Settings")
    for r in MAIL_SETTINGS:
        wb["Settings"].append(r)
    wb.save(path)
    return path


@pytest.mark.parametrize("totals", [False, True])
def test_rows_below_an_excel_table_are_not_records(tmp_path, totals):
    path = deals_table_book(tmp_path / "crm.xlsx", totals=totals)
    last = 6 if totals else 5
    problems = [str(p) for p in check(path, now=NOW)]
    assert any(
        m.startswith(f'Deals!B{last + 2}: "notes: ask Ana" is below the Excel table "DealsTbl", not a record')
        for m in problems
    )
    assert any(m.startswith(f"Deals!C{last + 3}:") for m in problems)
    result = run(path, now=NOW)
    assert not result.plan.errors
    ws = load_workbook(path)["Deals"]
    assert ws["B4"].value and ws["B5"].value  # ids inside the table
    assert ws[f"B{last + 2}"].value == "notes: ask Ana"
    assert ws[f"B{last + 3}"].value is None  # no id written under the table
    assert ws.max_column == 5


# ---------------------------------------------------------------- every skipped formula cell is reported


def test_formula_due_at_showing_blank_is_reported_and_left(book):
    path = book(
        {
            "Settings": [
                ["key", "value"],
                ["timezone", "UTC"],
                ["business_hours", "Mon-Sun 00:00-24:00"],
                ["sla_hours_high", "4"],
                ["fallback_owner", "Ana"],
            ],
            "Reps": [["name", "email", "active"], ["Ana", "ana@x.com", True]],
            "Tickets": [
                ["id", "subject", "severity", "status", "opened_at", "owner", "due_at", "escalated_at"],
                ["T1", "x", "high", "open", dt.datetime(2026, 2, 1, 9), "Ana", '=IF(1=2,1,"")', None],
                ["T2", "y", "high", "open", dt.datetime(2026, 2, 1, 9), "Ana", None, '=IF(1=2,1,"")'],
            ],
        }
    )
    problems = [str(p) for p in check(path, now=NOW)]
    assert any(m.startswith("Tickets!G2: holds a formula") for m in problems)
    assert any(m.startswith("Tickets!H3: holds a formula") for m in problems)
    result = run(path, now=NOW)
    assert any(str(p).startswith("Tickets!G2: holds a formula") for p in result.plan.problems)
    ws = load_workbook(path)["Tickets"]
    assert ws["G2"].value == '=IF(1=2,1,"")' and ws["H3"].value == '=IF(1=2,1,"")'
    assert ws["G3"].value is not None  # the plain blank due_at is filled
    assert not [c for c in result.plan.changes if c.record_id == "T2" and c.column == "escalated_at"]


def test_formula_last_emailed_at_is_reported_when_an_email_goes_out(book, no_smtp):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [
                ["id", "first_name", "email", "last_emailed_at"],
                ["C1", "Eva", "eva@x.com", "=TODAY()-100"],
                ["C2", "Rui", "rui@x.com", None],
            ],
            "Automations": WELCOME,
            "Templates": TEMPLATES,
        }
    )
    assert any(str(p).startswith("Contacts!D2: holds a formula") for p in check(path, now=NOW))
    result = run(path, now=NOW)
    assert any(str(p).startswith("Contacts!D2: holds a formula") for p in result.plan.problems)
    ws = load_workbook(path)["Contacts"]
    assert ws["D2"].value == "=TODAY()-100"
    assert ws["D3"].value is not None  # Rui's send is recorded


# ---------------------------------------------------------------- one spelling for reps and stages


def test_task_owner_is_the_reps_spelling(book):
    path = book(
        {
            "Settings": [["key", "value"], ["timezone", "UTC"], ["fallback_owner", "maria  silva"]],
            "Reps": [
                ["name", "email", "active"],
                ["João", "joao@x.com", True],
                ["Maria Silva", "m@x.com", True],
            ],
            "Stages": [["stage", "order"], ["Proposta", 1]],
            "Deals": [
                ["id", "name", "stage", "amount", "owner"],
                ["D1", "X", "Proposta", 10, "JOAO"],
                ["D2", "Y", "Proposta", 10, "joão"],
                ["D3", "Z", "Proposta", 10, "Joao"],
                ["D4", "W", "Proposta", 10, "Someone Else"],
                ["D5", "V", "Proposta", 10, None],
            ],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                ["Call", "Deals", "every_run", "", "create_task", "text=Call about {{ name }}"],
            ],
        }
    )
    run(path, now=NOW)
    rows = sheet(path, "Tasks")
    head = rows[0]
    owners = {r[head.index("record_id")]: r[head.index("owner")] for r in rows[1:] if r[0] not in (None, "")}
    assert owners == {"D1": "João", "D2": "João", "D3": "João", "D4": "Someone Else", "D5": "Maria Silva"}
    deals = sheet(path, "Deals")
    assert [r[4] for r in deals[1:4]] == ["JOAO", "joão", "Joao"]  # the user's cells stay as typed


def test_report_groups_stages_however_typed_with_the_stages_spelling(book):
    path = book(
        {
            "Settings": [["key", "value"], ["timezone", "UTC"]],
            "Stages": [["stage", "order"], ["Qualificação", 1], ["Proposta", 2]],
            "Deals": [
                ["id", "name", "stage", "amount"],
                ["D1", "X", "PROPOSTA", 10],
                ["D2", "Y", "proposta", 5],
                ["D3", "Z", "Qualificacao", 1],
                ["D4", "W", "Negotiation", 2],
                ["D5", "V", "negotiation ", 3],
            ],
        }
    )
    run(path, now=NOW)
    rows = sheet(path, "Report")
    start = next(i for i, r in enumerate(rows) if r[0] == "Open pipeline") + 2
    pipeline = []
    for r in rows[start:]:
        if r[0] in (None, ""):
            break
        pipeline.append(r[:3])
    assert pipeline == [["Qualificação", 1, 1], ["Proposta", 2, 15], ["Negotiation", 2, 5]]


# ---------------------------------------------------------------- yes/no prints as the cell shows it


def task_texts(path: Path) -> dict[str, str]:
    names = load_workbook(path, read_only=True).sheetnames
    rows = sheet(path, "Tasks" if "Tasks" in names else "Tarefas")
    head = rows[0]
    rid, text = (
        head.index(h) for h in (("record_id", "text") if "Tasks" in names else ("id_registro", "texto"))
    )
    return {r[rid]: r[text] for r in rows[1:] if r[0] not in (None, "")}


@pytest.mark.parametrize(
    ("locale", "vip", "shown"),
    [
        ("en-US", "yes", "yes"),
        ("en-US", "SIM", "SIM"),
        ("en-US", True, "TRUE"),
        ("en-US", False, "FALSE"),
        ("pt-BR", True, "VERDADEIRO"),
        ("pt-BR", False, "FALSO"),
        ("pt-BR", "não", "não"),
    ],
)
def test_yes_no_prints_as_the_cell_shows_it_in_tasks_and_emails(book, no_smtp, locale, vip, shown):
    path = book(
        {
            "Settings": [*MAIL_SETTINGS, ["locale", locale]],
            "Contacts": [
                ["id", "first_name", "email", "VIP", "active_client"],
                ["C1", "Eva", "eva@x.com", vip, True],
                ["C2", "Rui", "rui@x.com", "no" if vip in ("yes", True) else "yes", False],
            ],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                ["Call", "Contacts", "every_run", 'first_name = "Eva"', "create_task", "text=VIP {{ vip }}"],
                ["Mail", "Contacts", "every_run", 'first_name = "Eva"', "send_email", "template=vip"],
            ],
            "Templates": [
                ["name", "subject", "body"],
                [
                    "vip",
                    "VIP {{ vip }}",
                    "vip={{ vip }}; {% if vip %}yes-branch{% else %}no-branch{% endif %}",
                ],
            ],
        }
    )
    run(path, now=NOW)
    assert task_texts(path)["C1"] == f"VIP {shown}"
    (eml,) = (path.parent / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",)).get_content()
    branch = "yes-branch" if vip in (True, "yes", "SIM") else "no-branch"
    assert message["Subject"] == f"VIP {shown}"
    assert body.strip() == f"vip={shown}; {branch}"


# ---------------------------------------------------------------- rule literals, rule options, check = run


def scores(path: Path, sheet_name: str = "Contacts") -> dict[str, object]:
    rows = sheet(path, sheet_name)
    head = [str(h).lower() for h in rows[0]]
    score = next(i for i, h in enumerate(head) if h in ("score", "pontuação", "pontuacao"))
    return {r[0]: r[score] for r in rows[1:] if r[0] not in (None, "")}


def test_pt_br_rule_numbers_with_decimal_comma_and_thousands_dot(book):
    path = book(
        {
            "Configurações": [["chave", "valor"], ["fuso_horario", "UTC"], ["idioma_regional", "pt-BR"]],
            "Contatos": [
                ["id", "Nome", "Tamanho da empresa"],
                ["C1", "Pequena", 2],
                ["C2", "Média", 3],
                ["C3", "Grande", 1500],
            ],
            "Pontuação": [
                ["regra", "quando", "pontos"],
                ["Dec", "tamanho_da_empresa > 2,5", 1],
                ["Mil", "tamanho_da_empresa >= 1.000", 10],
                ["Fino", "tamanho_da_empresa > 1.499,5", 100],
                ["Lista", "tamanho_da_empresa in (2,3)", 1000],
            ],
        }
    )
    result = run(path, now=NOW)
    assert not result.plan.errors
    assert scores(path, "Contatos") == {"C1": 1000, "C2": 1001, "C3": 111}


def test_en_rule_numbers_with_thousands_comma(book):
    path = book(
        {
            "Settings": [["key", "value"], ["timezone", "UTC"]],
            "Contacts": [["id", "first_name", "company_size"], ["C1", "A", 999], ["C2", "B", 1500]],
            "Scoring": [
                ["rule", "when", "points"],
                ["Big", "company_size >= 1,000", 1],
                ["Bigger", "company_size > 1,499.5", 10],
                ["List", "company_size in (999,5)", 100],
            ],
        }
    )
    result = run(path, now=NOW)
    assert not result.plan.errors
    assert scores(path) == {"C1": 100, "C2": 11}


def test_include_existing_on_a_set_action_is_a_rule_option(book):
    path = book(
        {
            "Settings": [["key", "value"], ["timezone", "UTC"]],
            "Contacts": [["id", "first_name", "source"], ["C1", "Eva", None]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                ["Tag", "Contacts", "new", "", "set", "source=fair; include_existing=true"],
            ],
        }
    )
    assert not [p for p in check(path, now=NOW) if p.severity.value != "note"]
    result = run(path, now=NOW)
    assert not result.plan.errors
    rows = sheet(path, "Contacts")
    assert rows[1][2] == "fair"
    assert "include_existing" not in [str(h) for h in rows[0]]
    note = next(n for n in result.plan.notices if "include_existing=true" in n)
    assert "the 1 contact already here that matches" in note


def test_check_and_run_agree_about_an_empty_sender_email(book, no_smtp):
    path = book(
        {
            "Settings": [["key", "value"], ["timezone", "UTC"], ["send_window", "always"]],
            "Contacts": [["id", "first_name", "email"], ["C1", "Eva", "eva@x.com"]],
            "Automations": WELCOME,
            "Templates": TEMPLATES,
        }
    )
    checked = [p for p in check(path, now=NOW) if "sender_email" in str(p)]
    result = run(path, now=NOW)
    ran = [p for p in result.plan.problems if "sender_email" in str(p)]
    assert [(p.severity, str(p)) for p in checked] == [(p.severity, str(p)) for p in ran]
    assert checked and checked[0].severity.value == "error"
    quiet = book(
        {
            "Settings": [["key", "value"], ["timezone", "UTC"]],
            "Contacts": [["id", "first_name"], ["C1", "Eva"]],
        },
        name="quiet.xlsx",
    )
    notes = [p for p in check(quiet, now=NOW) if "sender_email" in str(p)]
    assert [p.severity.value for p in notes] == ["note"]  # no email planned: a note about what to fill


def test_held_notification_gets_its_address_when_it_goes_out(book, no_smtp):
    path = book(
        {
            "Settings": [*MAIL_SETTINGS, ["fallback_owner", "Ana"]],
            "Reps": [["name", "email", "active"], ["Ana", "ana@x.com", True], ["Bo", None, True]],
            "Contacts": [["id", "first_name", "email", "owner"], ["C1", "Eva", "eva@x.com", "Bo"]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params"],
                ["Ping", "Contacts", "every_run", "", "notify", "text=Call {{ first_name }}"],
            ],
        }
    )
    run(path, now=NOW)
    wb = load_workbook(path)
    wb["Reps"]["B3"] = "bo@x.com"
    wb.save(path)
    run(path, now=NOW + dt.timedelta(hours=1))
    rows = sheet(path, "Emails")
    head = rows[0]
    sent = [r for r in rows[1:] if r[head.index("status")] == "sent"]
    assert sent and all(r[head.index("to")] for r in sent)
    assert "bo@x.com" in sent[0][head.index("to")]


def test_pt_br_workbook_gets_portuguese_consent_and_footer_notes(book):
    path = book(
        {
            "Configurações": [["chave", "valor"], ["fuso_horario", "UTC"], ["idioma_regional", "pt-BR"]],
            "Contatos": [
                ["id", "Nome", "E-mail", "Descadastrado", "Não contatar?"],
                ["C1", "Ana", "ana@x.com.br", "quer sair", None],
                ["C2", "Bia", "bia@x.com.br", None, None],
                [],
                ["Total: 2 contatos"],
            ],
        }
    )
    text = [str(p) for p in check(path, now=NOW)]
    assert any(
        m.startswith('Contatos!D2: Descadastrado é "quer sair", não um sim ou não claro') for m in text
    )
    assert any(m.startswith('Contatos!A5: "Total: 2 contatos" é um rodapé sob os dados') for m in text)
    assert any("responsavel_padrao (fallback_owner) está vazio" in m for m in text)
    assert not any("is empty" in m or "not a clear" in m for m in text)


def test_one_business_hour_is_singular(book):
    path = book(
        {
            "Settings": [
                ["key", "value"],
                ["timezone", "UTC"],
                ["business_hours", "Mon-Sun 00:00-24:00"],
                ["sla_hours_high", "1"],
            ],
            "Tickets": [
                ["id", "subject", "severity", "status", "opened_at"],
                ["T1", "x", "high", "open", NOW.replace(tzinfo=None) - dt.timedelta(minutes=5)],
            ],
        }
    )
    plan = run(path, now=NOW, dry_run=True).plan
    (due,) = [c for c in plan.changes if c.column == "due_at"]
    assert due.rule == "SLA: high = 1 business hour from opened_at"


def test_pt_br_formula_and_every_run_warnings_are_portuguese(book):
    path = book(
        {
            "Configurações": [["chave", "valor"], ["fuso_horario", "UTC"], ["idioma_regional", "pt-BR"]],
            "Contatos": [["id", "Nome", "E-mail", "Pontuação"], ["C1", "Ana", "ana@x.com.br", "=LEN(B2)"]],
            "Pontuação": [["regra", "quando", "pontos"], ["Todos", "", 5]],
            "Automações": [
                ["regra", "tabela", "gatilho", "quando", "acao", "parametros"],
                ["Oi", "Contatos", "every_run", "", "send_email", "template=welcome"],
            ],
        }
    )
    text = [str(p) for p in check(path, now=NOW)]
    assert (
        "Contatos!D2: tem uma fórmula; o sheetflow não mexe nela — apague-a se o sheetflow deve cuidar desta célula"
        in text
    )
    assert any('"Oi" é every_run + send_email' in m for m in text)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Opted out of newsletter?", "unsubscribed"),
        ("Não contatar por e-mail", "do_not_contact"),
        ("Bounce status", "bounced"),
        ("Descadastrado em", "unsubscribed"),
    ],
)
def test_a_header_that_looks_like_consent_counts_as_consent(book, no_smtp, header, field):
    path = book(
        {
            "Settings": MAIL_SETTINGS,
            "Contacts": [
                ["id", "first_name", "email", header, "Unsubscribe link"],
                ["C1", "Eva", "eva@x.com", "yes", "https://x.com/u/1"],
                ["C2", "Rui", "rui@x.com", None, "https://x.com/u/2"],
            ],
            "Automations": WELCOME,
            "Templates": TEMPLATES,
        }
    )
    text = [str(p) for p in check(path, now=NOW)]
    assert (
        f'Contacts!D1: column "{header}" looks like a consent column: read as {field} — rename it if it is not'
        in text
    )
    assert not any(m.startswith("Contacts!E") for m in text)  # a link column is not consent
    got = statuses(path)
    assert got["C1"] == "skipped" and got["C2"] != "skipped"

"""The Control sheet (contract): created by init in English and pt-BR, read back, written by the helpers."""

from __future__ import annotations

import datetime as dt

import pytest
from openpyxl import load_workbook

from sheetflow.book.xlsx import XlsxBook
from sheetflow.cli.main import main
from sheetflow.tables import control
from tests.conftest import make_book
from tests.conftest import read_sheet as sheet


def panel_of(path):
    return control.read_control(XlsxBook(path).read())


@pytest.mark.parametrize(
    "lang,name,labels,action",
    [
        ("en", "Control", ["Action", "Status", "Last run", "Summary"], "Run"),
        ("pt-BR", "Controle", ["Ação", "Situação", "Última execução", "Resumo"], "Executar"),
    ],
)
def test_init_adds_the_control_sheet_with_its_dropdown(tmp_path, lang, name, labels, action):
    path = tmp_path / "crm.xlsx"
    assert main(["init", str(path), "--lang", lang]) == 0
    rows = sheet(path, name)
    assert [rows[r][0] for r in (2, 3, 4, 5)] == labels
    assert rows[2][1] == action
    assert rows[7][:6] == [(pt if lang == "pt-BR" else en) for en, pt in control.REQUEST_COLUMNS]
    dvs = load_workbook(path)[name].data_validations.dataValidation
    b3 = next(dv for dv in dvs if "B3" in str(dv.sqref))
    assert all(control.action_label(a, lang) in b3.formula1 for a in control.ACTIONS)
    panel = panel_of(path)
    assert panel.sheet == name and panel.lang == lang and panel.action == "run" and not panel.problems


def test_init_on_an_existing_workbook_adds_control_and_keeps_everything(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", {"Contatos": [["id", "Nome"], ["C-1", "Ana"]]})
    assert main(["init", str(path)]) == 0
    assert "Controle" in load_workbook(path).sheetnames  # a Portuguese workbook gets Portuguese sheets
    assert sheet(path, "Contatos") == [["id", "Nome"], ["C-1", "Ana"]]


@pytest.mark.parametrize(
    "typed,action",
    [
        ("Run", "run"),
        ("  preview ", "preview"),
        ("Pré-visualizar", "preview"),
        ("pre visualizar", "preview"),
        ("ENVIAR", "send"),
        ("Verificar", "check"),
        ("Relatório", "report"),
        ("relatorio", "report"),
        ("Undo last run", "undo"),
        ("Desfazer última execução", "undo"),
        ("dry-run", "preview"),
        ("Executar", "run"),
    ],
)
def test_actions_are_read_in_english_and_portuguese(typed, action):
    assert control.action_of(typed) == action


def test_an_unknown_action_is_a_problem_naming_the_cell(tmp_path):
    path = tmp_path / "crm.xlsx"
    main(["init", str(path)])
    wb = load_workbook(path)
    wb["Control"]["B3"] = "Rnu"
    wb.save(path)
    panel = panel_of(path)
    assert panel.action is None
    assert [str(p) for p in panel.problems] == [
        'Control!B3: unknown action "Rnu" — choose one of: Run, Preview, Send, Check, Report, Undo last run'
    ]


def test_a_moved_layout_is_reported_not_guessed(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", {"Control": [["my own notes"], [], ["Run it!", "Send"]]})
    panel = panel_of(path)
    assert panel.action is None and panel.problems and panel.problems[0].where == "Control!A3"


def test_requests_are_read_and_answered_once(tmp_path):
    path = tmp_path / "crm.xlsx"
    main(["init", str(path)])
    wb = load_workbook(path)
    ws = wb["Control"]
    ws["A9"], ws["B9"], ws["C9"] = "Send", "ana@x.com", dt.datetime(2026, 11, 23, 9, 0)
    ws["A10"], ws["B10"], ws["D10"] = "Preview", "bob@x.com", "done"
    ws["A11"], ws["B11"] = "Dance", "eve@x.com"
    ws["A12"], ws["D12"] = "Check", "aguardando"
    wb.save(path)
    book = XlsxBook(path)
    panel = control.read_control(book.read())
    assert [(r.row, r.action, r.status) for r in panel.requests] == [
        (9, "send", "waiting"),
        (10, "preview", "done"),
        (11, None, "waiting"),
        (12, "check", "waiting"),
    ]
    assert [r.row for r in panel.waiting] == [9, 11, 12]
    bad = panel.requests[2]
    assert str(control.request_problem(panel, bad)).startswith('Control!A11: unknown action "Dance"')
    first = panel.waiting[0]
    with book.lease():
        book.write([control.claim(panel, first)])
        book.write([control.answer(panel, first, "done", dt.datetime(2026, 11, 23, 9, 5), "emails sent 3")])
    rows = sheet(path, "Control")
    assert rows[8][3:6] == ["done", dt.datetime(2026, 11, 23, 9, 5), "emails sent 3"]
    again = control.read_control(XlsxBook(path).read())
    assert [r.row for r in again.waiting] == [11, 12]  # answered once: not waiting any more
    with pytest.raises(ValueError):
        control.answer(panel, first, "maybe", None, "")


def test_status_and_result_cells(tmp_path):
    path = tmp_path / "crm.xlsx"
    main(["init", str(path), "--lang", "pt-BR"])
    book = XlsxBook(path)
    panel = control.read_control(book.read())
    with book.lease():
        book.write([control.status_patch(panel, "executando… 40%")])
        assert sheet(path, "Controle")[3][1] == "executando… 40%"
        when = dt.datetime(2026, 11, 23, 10, 42, 7, 123)
        book.write(
            [control.result_patch(panel, status="feito 10:42: 2 e-mails, 3 células", when=when, summary="=x")]
        )
    rows = sheet(path, "Controle")
    assert rows[3][1] == "feito 10:42: 2 e-mails, 3 células"
    assert rows[4][1] == dt.datetime(2026, 11, 23, 10, 42, 7)
    assert rows[5][1] == "=x"  # formula-looking text stays text

"""What the live-workbook backend does beyond the conformance suite: few calls to Excel, Excel's way of taking
typed text, date formats, hidden sheets, where sidecar files go."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from sheetflow.book import NewSheet, SheetPatch
from sheetflow.book.excel import ExcelBook, _blocks, _text
from sheetflow.testing import xlwings_standin as xw

HEADER = ["id", "name", "email"]


def live(sheets, **kwargs) -> tuple[xw.Book, ExcelBook]:
    book = xw.Book(sheets, **kwargs)
    return book, ExcelBook(book)


@given(st.sets(st.tuples(st.integers(1, 30), st.integers(1, 8)), min_size=1, max_size=120))
def test_blocks_cover_exactly_the_cells(cells):
    covered = []
    for r1, c1, r2, c2 in _blocks(dict.fromkeys(cells)):
        covered += [(r, c) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)]
    assert sorted(covered) == sorted(cells)  # every cell once, nothing else


def test_appended_rows_are_one_write_and_a_read_is_two_calls_per_sheet():
    book, excel = live({"Contacts": [HEADER, ["C-1", "Ana", "a@x.com"]], "Notes": [["free text"]]})
    excel.read()
    assert book.calls["read"] == 2  # Contacts: values + formulas; Notes (not a contract sheet): none
    before = book.calls["write"]
    rows = {(r, c): f"v{r}{c}" for r in range(3, 503) for c in (1, 2, 3)}
    excel.write([SheetPatch("Contacts", rows)])
    assert book.calls["write"] - before == 1  # 500 appended rows x 3 columns: one call


def test_text_excel_would_reinterpret_gets_an_apostrophe():
    for text in [
        "=1+1",
        "+1",
        "-x",
        "@a",
        "'q",
        "007",
        "1/2",
        "2026-03-01",
        "12:30",
        "50%",
        "TRUE",
        "falso",
        "#N/A",
        " 12",
        "R$ 1.000",
        "a1",
    ]:
        assert _text(text) == "'" + text, text
    for text in ["Ana", "São Paulo", "ana@x.com", "Director, Sales", ""]:
        assert _text(text) == text, text


def test_text_round_trips_through_excels_parsing():
    book, excel = live({"Contacts": [HEADER, ["C-1", "Ana", "a@x.com"]]})
    excel.read()
    texts = ["00123", "TRUE", "2026-03-01", "-5", "=SUM(A1)", "1e3", "'x", "plain"]
    excel.write([SheetPatch("Contacts", {(2 + i, 4): t for i, t in enumerate(texts)})])
    raw = ExcelBook(book).read()["Contacts"]
    assert [raw.rows[1 + i][3] for i in range(len(texts))] == texts
    assert not raw.formulas


def test_dates_get_a_date_format_unless_they_have_one():
    book, excel = live({"Contacts": [HEADER, ["C-1", "Ana", "a@x.com"]]})
    book.sheets["Contacts"].range("E2").number_format = "dd/mm/yyyy"  # the team's own date format
    excel.read()
    excel.write(
        [
            SheetPatch(
                "Contacts",
                {
                    (2, 4): dt.date(2026, 3, 1),
                    (2, 5): dt.date(2026, 3, 2),
                    (3, 4): dt.datetime(2026, 3, 1, 9, 30),
                },
            )
        ]
    )
    sheet = book.sheets["Contacts"]
    assert sheet.cell(2, 4).number_format == "yyyy-mm-dd"
    assert sheet.cell(2, 5).number_format == "dd/mm/yyyy"
    assert sheet.cell(3, 4).number_format == "yyyy-mm-dd hh:mm"
    assert sheet.cell(2, 4).value == dt.datetime(2026, 3, 1)


def test_a_very_hidden_sheet_is_created_hidden_and_read_back():
    book, excel = live({"Contacts": [HEADER]})
    excel.read()
    excel.write([SheetPatch("_sheetflow_state", {(1, 1): "section"}, new=NewSheet("veryHidden"))])
    assert book.sheets["_sheetflow_state"].api.Visible == 2
    assert ExcelBook(book).read()["_sheetflow_state"].state == "veryHidden"


def test_sidecar_files_go_beside_the_workbook(tmp_path):
    _, excel = live({"Contacts": [HEADER]}, fullname=str(tmp_path / "Team CRM.xlsm"))
    assert excel.workdir == tmp_path / ".sheetflow" and excel.folder == tmp_path
    assert excel.identity == "Team_CRM" and excel.address == "excel:Team CRM.xlsm" and not excel.note
    with excel.lease():
        assert (tmp_path / ".sheetflow" / "Team_CRM.lock").exists()


def test_screen_and_calculation_are_restored_when_a_write_fails():
    book, excel = live({"Contacts": [HEADER, ["C-1", "Ana", "a@x.com"]]})
    excel.read()
    book.app.calculation = "semiautomatic"  # whatever the user had
    book.fail_on_write = book.calls["write"] + 1
    try:
        excel.write([SheetPatch("Contacts", {(2, 2): "x"})])
    except Exception as e:  # noqa: BLE001
        assert "Excel stopped sheetflow" in str(e)
    else:
        raise AssertionError("the write should have failed")
    assert book.app.screen_updating is True and book.app.calculation == "semiautomatic"

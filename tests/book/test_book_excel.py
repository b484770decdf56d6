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


def test_log_rows_are_deleted_as_excel_deletes_rows():
    """The log cap moves old rows to the archive: rows below move up, one call per run of rows."""
    rows = [["at", "record"]] + [[f"2026-11-{d:02d}", f"C-{d}"] for d in range(1, 8)]
    book, excel = live({"Contacts": [HEADER], "Activity": rows})
    excel.read()
    before = book.calls["write"]
    excel.write([SheetPatch("Activity", {(6, 2): "C-new"}, delete_rows=(2, 3, 5))])
    assert book.calls["write"] - before == 3  # runs 5 and 2-3, then the new value
    raw = ExcelBook(book).read(full=("Activity",))["Activity"]
    assert [r[1] for r in raw.rows] == ["record", "C-3", "C-5", "C-6", "C-7", "C-new"]


def test_a_log_with_formulas_keeps_its_rows():
    from sheetflow.book.memory import Formula
    from sheetflow.book.patch import PatchError

    rows = [["at", "record"], ["2026-11-01", "C-1"], ["2026-11-02", Formula("=B2", "C-1")]]
    book, excel = live({"Activity": rows})
    excel.read()
    try:
        excel.write([SheetPatch("Activity", {}, delete_rows=(2,))])
    except PatchError as e:
        assert "holds formulas" in str(e)
    else:
        raise AssertionError("rows of a sheet with formulas must not move")
    assert book.sheets["Activity"].range("B2").value == "C-1"


def test_deleting_rows_matches_the_memory_backend():
    from sheetflow.book.memory import MemoryBook

    rows = [["run_id", "n"]] + [[f"R-{i}", i] for i in range(2, 12)]
    books = [ExcelBook(xw.Book({"Runs": rows})), MemoryBook({"Runs": rows})]
    seen = []
    for b in books:
        b.read()
        b.write([SheetPatch("Runs", {(3, 2): 99, (9, 1): "R-new"}, delete_rows=(2, 4, 5))], backups=0)
        seen.append([[str(v) for v in r] for r in b.read(full=("Runs",))["Runs"].rows])
    assert seen[0] == seen[1]
    assert [r[0] for r in seen[0]] == ["run_id", "R-3", "R-6", "R-7", "R-8", "R-9", "R-10", "R-11", "R-new"]

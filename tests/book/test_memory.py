"""MemoryBook as the layers above use it: a whole run on a workbook in memory gives the workbook a run on the
same .xlsx file gives, so tests and simulations can use it in place of a file."""

from __future__ import annotations

import datetime as dt
import re

from sheetflow.book import LOGS, NewSheet, SheetPatch
from sheetflow.book.memory import Formula, MemoryBook
from sheetflow.book.xlsx import XlsxBook
from sheetflow.commands.run import run
from tests.conftest import NOW, make_book

RUN_ID = re.compile(r"R\d{8}-\d{6}-[0-9a-f]+")
SHEETS = {
    "Settings": [["key", "value"], ["timezone", "UTC"], ["mql_threshold", 30], ["sql_threshold", 60]],
    "Scoring": [
        ["rule", "when", "points", "enabled"],
        ["Decision maker", 'title contains "director" or title contains "vp"', 20, True],
        ["Mid-size", "company_size >= 50 and company_size < 1000", 15, None],
        ["Recent", "days_since(last_activity_at) <= 14", 10, True],
    ],
    "Contacts": [
        ["id", "first_name", "email", "title", "company_size", "last_activity_at", "lifecycle_stage"],
        ["C-00001", "Ana", "ana@acme.com", "Sales Director", 120, dt.datetime(2026, 11, 20), ""],
        ["C-00002", "Bob", "bob@gmail.com", "Analyst", 10, dt.datetime(2026, 1, 1), "lead"],
        [None, "Dee", "dee@x.com", "VP Marketing", 60, dt.datetime(2026, 11, 23), "customer"],
    ],
}


def contents(book) -> dict[str, list[list[object]]]:
    """Every sheet as read, without what differs between two runs (run ids, the Runs sheet's durations),
    numbers compared by value."""
    out = {}
    for name, raw in book.read(full=LOGS).items():
        if name == "Runs":
            continue
        out[name] = [[_comparable(v) for v in row] for row in raw.rows]
    return out


def _comparable(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return RUN_ID.sub("R<run>", value)  # random part of run ids
    return value


def test_a_run_on_memory_writes_what_a_run_on_the_file_writes(tmp_path):
    path = make_book(tmp_path / "crm.xlsx", SHEETS)
    memory = MemoryBook(SHEETS, name="crm", workdir=tmp_path / "memory" / ".sheetflow")
    for day in range(2):  # the second reads what the first wrote (state sheet, new columns)
        on_file = run(path, now=NOW + dt.timedelta(days=day))
        in_memory = run("memory:crm", book=memory, now=NOW + dt.timedelta(days=day))
        assert on_file.written == in_memory.written == (day == 0)  # the second run has nothing to do
    expected, got = contents(XlsxBook(path)), contents(memory)
    assert list(got) == list(expected)
    for name in expected:
        assert got[name] == expected[name], name
    assert memory.state("_sheetflow_state") == "veryHidden"


def test_people_editing_meanwhile_are_simulated():
    book = MemoryBook({"Contacts": [["id", "name"], ["C-1", "Ana"]]})
    book.read()
    book.before_write = lambda b: b.insert_rows("Contacts", 2)  # someone inserts a row above Ana
    try:
        book.write([SheetPatch("Contacts", {(2, 2): "Ana Lima"})])
    except Exception as e:  # noqa: BLE001 - the type is asserted below
        assert type(e).__name__ == "WorkbookBusy"
    else:
        raise AssertionError("the write went through over a moved row")
    assert book.value("Contacts", 3, 2) == "Ana" and book.value("Contacts", 2, 2) is None


def test_formula_cells_read_as_their_value_and_are_replaced_by_a_write():
    book = MemoryBook({"Contacts": [["id", "score"], ["C-1", Formula("=B3*2", 8)]]})
    raw = book.read()["Contacts"]
    assert raw.rows[1] == ["C-1", 8.0] and raw.formulas == {(2, 2)}
    book.write([SheetPatch("Contacts", {(2, 2): 9})])
    assert book.formula("Contacts", 2, 2) is None and book.read()["Contacts"].rows[1] == ["C-1", 9.0]


def test_new_sheets_keep_their_layout_and_backups_are_bounded():
    book = MemoryBook({"Contacts": [["id"]]})
    book.read()
    layout = NewSheet(freeze_rows=1, col_widths={1: 30}, bold_rows={1})
    book.write([SheetPatch("Tasks", {(1, 1): "id"}, new=layout)], backups=2)
    for n in range(3):
        book.write([SheetPatch("Tasks", {(2 + n, 1): f"T-{n}"})], backups=2)
    assert book.layout("Tasks") == layout and book.layout("Contacts") is None
    assert book.backups() == 2
    book.write([SheetPatch("Tasks", {(9, 1): "x"})], backups=0)
    assert book.backups() == 2

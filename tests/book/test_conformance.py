"""What every workbook backend must do the same way (the Book interface, sheetflow/book/base.py).

Each test runs once per backend in ``backends.BACKENDS`` (xlsx on a real file in tmp_path, memory; gsheets
and excel are one entry each). Workbooks are seeded through a path independent of the backend under test
(openpyxl for xlsx), and writes are checked by reading back through a second, fresh handle, so a value that
only lives in the writer's memory does not pass.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
from typing import Any

import numpy as np
import pytest

from sheetflow.book import Book, NewSheet, RawSheet, SheetPatch, Validation
from sheetflow.book.memory import ErrorValue, Formula
from sheetflow.book.patch import PatchError
from sheetflow.problems import WorkbookBusy

from .backends import BACKENDS

HEADER = ["id", "name", "email"]
LONG_TEXT = ("Ação ✓ " * 5000)[:32_767]  # Excel's limit per cell, exactly


@pytest.fixture(params=list(BACKENDS))
def backend(request, tmp_path):
    return BACKENDS[request.param](tmp_path)


def cell(raw: RawSheet, row: int, col: int) -> Any:
    """The value read at sheet row/col (1-based), wherever the backend's rows start; "" outside them."""
    r, c = row - raw.origin[0], col - raw.origin[1]
    if 0 <= r < len(raw.rows) and 0 <= c < len(raw.rows[r]):
        return raw.rows[r][c]
    return ""


def empty(value: Any) -> bool:
    return value in ("", None)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fresh_read(backend, book: Book, **kwargs) -> dict[str, RawSheet]:
    return backend.reopen(book).read(**kwargs)


def state(backend, name: str) -> str:
    """A sheet state as the backend can hold it (Google has one hidden state; sheetflow's own ``_`` sheets
    read back as veryHidden there)."""
    return getattr(backend, "states", {}).get(name, name)


def refuses_edits(backend) -> None:
    """Skip for backends where a person's edit is re-found by record id instead of refused (a shared Google
    spreadsheet is edited all the time; tests/book/test_gsheets.py pins that behaviour)."""
    if getattr(backend, "tolerates_edits", False):
        pytest.skip(f"{backend.name}: edits are followed by record id, not refused")


def contacts(*rows: list[Any]) -> dict[str, list[list[Any]]]:
    return {"Contacts": [HEADER, *rows]}


# ---------------------------------------------------------------- reading every value type

READS = {
    "text with leading zeros": ("007", lambda v: v == "007" and isinstance(v, str)),
    "whole number": (42, lambda v: is_number(v) and v == 42),
    "fraction": (3.25, lambda v: is_number(v) and v == 3.25),
    "negative": (-0.5, lambda v: is_number(v) and v == -0.5),
    "large number": (1234567890123.0, lambda v: is_number(v) and v == 1234567890123),
    "true": (True, lambda v: v is True),
    "false": (False, lambda v: v is False),
    "date": (dt.date(2026, 11, 23), lambda v: type(v) is dt.date and v == dt.date(2026, 11, 23)),
    "date and time": (
        dt.datetime(2026, 11, 23, 14, 5, 30),
        lambda v: type(v) is dt.datetime and v == dt.datetime(2026, 11, 23, 14, 5, 30),
    ),
    "date and time at midnight": (
        dt.datetime(2026, 11, 23, 0, 0),
        lambda v: type(v) is dt.date and v == dt.date(2026, 11, 23),
    ),
    "time of day": (dt.time(13, 45), lambda v: type(v) is dt.time and v == dt.time(13, 45)),
    "empty": (None, empty),
    "#N/A": (ErrorValue("#N/A"), empty),
    "#DIV/0!": (ErrorValue("#DIV/0!"), empty),
    "#REF!": (ErrorValue("#REF!"), empty),
    "very long text": (LONG_TEXT, lambda v: v == LONG_TEXT),
    "unicode": ("São Paulo — Ação ✓ 日本語 🎉", lambda v: v == "São Paulo — Ação ✓ 日本語 🎉"),
    "line breaks": ("line 1\nline 2", lambda v: v == "line 1\nline 2"),
    "surrounding spaces": ("  padded  ", lambda v: v == "  padded  "),
    "text typed as =1+1": ("=1+1", lambda v: v == "=1+1"),
    "formula's computed value": (Formula("=SUM(1,2)", 3), lambda v: is_number(v) and v == 3),
}


@pytest.mark.parametrize("kind", list(READS))
def test_reads_every_value_type(backend, kind):
    seed, ok = READS[kind]
    raws = backend.make(contacts(["C-1", seed, "end"])).read()
    value = cell(raws["Contacts"], 2, 2)
    assert ok(value), f"{kind}: read {value!r}"
    assert cell(raws["Contacts"], 2, 1) == "C-1" and cell(raws["Contacts"], 2, 3) == "end"


def test_formula_cells_are_listed(backend):
    raw = backend.make(contacts(["C-1", Formula("=SUM(1,2)", 3), "text"])).read()["Contacts"]
    assert (2, 2) in raw.formulas and (2, 3) not in raw.formulas and (2, 1) not in raw.formulas


def test_values_are_found_where_they_are_when_the_sheet_does_not_start_at_a1(backend):
    raws = backend.make(
        {"Contacts": [[], [], [None, None, *HEADER], [None, None, "C-1", "Ana", "a@x.com"]]}
    ).read()
    raw = raws["Contacts"]
    assert [cell(raw, 3, c) for c in (3, 4, 5)] == HEADER
    assert cell(raw, 4, 4) == "Ana"
    assert raw.last_row == 4


def test_sheets_come_in_workbook_order_with_their_states(backend):
    book = backend.make(
        {
            "Notes": [["anything", 1]],
            "Contacts": [HEADER, ["C-1", "Ana", "a@x.com"]],
            "Reps": [["name"], ["Ana"]],
            "_sheetflow_state": [["section", "key", "value"], ["fired", "k", "v"]],
        },
        states={"Reps": "hidden", "_sheetflow_state": "veryHidden"},
    )
    raws = book.read()
    assert list(raws) == ["Notes", "Contacts", "Reps", "_sheetflow_state"]
    assert {n: r.state for n, r in raws.items()} == {
        "Notes": "visible",
        "Contacts": "visible",
        "Reps": "hidden",
        "_sheetflow_state": "veryHidden",  # a Google sheet: hidden, and a sheetflow "_" sheet reads veryHidden
    }
    assert raws["Notes"].rows == []  # not a contract sheet: name and state only
    assert cell(raws["_sheetflow_state"], 2, 3) == "v"
    assert cell(raws["Reps"], 2, 1) == "Ana"


def test_portuguese_sheet_names_are_read(backend):
    raws = backend.make({"Contatos": [["id", "nome"], ["C-1", "Ana"]]}).read()
    assert cell(raws["Contatos"], 2, 2) == "Ana"


# ---------------------------------------------------------------- the append-only logs


@pytest.mark.parametrize("sheet", ["Activity", "Atividade", "Runs", "Tasks"])
def test_logs_read_as_header_and_last_row(backend, sheet):
    header = ["at", "record", "what"]
    rows = [header] + [[f"2026-11-{d:02d}", f"C-{d}", "x"] for d in range(1, 8)]
    book = backend.make({"Contacts": [HEADER], sheet: rows})
    raw = book.read()[sheet]
    assert raw.rows and raw.rows[-1][: len(header)] == header
    assert all(cell(raw, r, 2) == "" for r in range(2, 9))  # the logged rows are not read
    assert raw.last_row == 8


def test_logs_read_in_full_when_asked(backend):
    rows = [["at", "record"]] + [[f"2026-11-{d:02d}", f"C-{d}"] for d in range(1, 6)]
    book = backend.make({"Atividade": rows, "Runs": rows})
    raws = book.read(full=("Activity",))  # canonical name, for the pt-BR sheet too
    assert [cell(raws["Atividade"], r, 2) for r in range(2, 7)] == [f"C-{d}" for d in range(1, 6)]
    assert raws["Atividade"].last_row == 6 and raws["Runs"].last_row == 6
    assert cell(raws["Runs"], 3, 2) == ""


def test_an_empty_log_has_no_last_row(backend):
    raw = backend.make({"Runs": [], "Contacts": [HEADER]}).read()["Runs"]
    assert raw.last_row == 0 and not any(v not in ("", None) for row in raw.rows for v in row)


# ---------------------------------------------------------------- writing


def test_updates_appends_and_clears_in_one_write(backend):
    book = backend.make(contacts(["C-1", "Ana", "ana@x.com"], ["C-2", "Bob", "bob@x.com"]))
    raw = book.read()["Contacts"]
    assert raw.last_row == 3
    book.write(
        [
            SheetPatch("Contacts", {(2, 2): "Ana Lima", (3, 3): None}),
            SheetPatch("Contacts", {(4, 1): "C-3", (4, 2): "Caio", (4, 3): "caio@x.com"}),
        ]
    )
    raw = fresh_read(backend, book)["Contacts"]
    assert [cell(raw, 2, c) for c in (1, 2, 3)] == ["C-1", "Ana Lima", "ana@x.com"]
    assert cell(raw, 3, 2) == "Bob" and empty(cell(raw, 3, 3))
    assert [cell(raw, 4, c) for c in (1, 2, 3)] == ["C-3", "Caio", "caio@x.com"]
    assert raw.last_row == 4


def test_appends_below_a_log_keep_the_rows_above(backend):
    rows = [["at", "record"]] + [[f"2026-11-{d:02d}", f"C-{d}"] for d in range(1, 4)]
    book = backend.make({"Contacts": [HEADER], "Activity": rows})
    last = book.read()["Activity"].last_row
    book.write([SheetPatch("Activity", {(last + 1, 1): "2026-11-24", (last + 1, 2): "C-9"})])
    raw = fresh_read(backend, book, full=("Activity",))["Activity"]
    assert [cell(raw, r, 2) for r in range(2, 6)] == ["C-1", "C-2", "C-3", "C-9"]


def test_later_values_for_one_cell_win(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    book.write([SheetPatch("Contacts", {(2, 2): "first"}), SheetPatch("Contacts", {(2, 2): "second"})])
    assert cell(fresh_read(backend, book)["Contacts"], 2, 2) == "second"


@pytest.mark.parametrize(
    "text", ["=1+1", "+A1", "-2+3", "@SUM(A1)", '=HYPERLINK("http://evil","x")', "'quoted", "=", "-"]
)
def test_formula_looking_text_stays_text(backend, text):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    book.write([SheetPatch("Contacts", {(2, 2): text, (3, 1): text})])
    raw = fresh_read(backend, book)["Contacts"]
    assert cell(raw, 2, 2) == text and cell(raw, 3, 1) == text
    assert not raw.formulas & {(2, 2), (3, 1)}


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (dt.date(2026, 11, 23), dt.date(2026, 11, 23)),
        (dt.datetime(2026, 11, 23, 14, 5, 30), dt.datetime(2026, 11, 23, 14, 5, 30)),
        (dt.datetime(2026, 11, 23, 0, 0), dt.date(2026, 11, 23)),  # midnight: a date cell
        (dt.date(1900, 3, 1), dt.date(1900, 3, 1)),  # just after Excel's 1900 leap-year bug
        (dt.date(1900, 2, 28), dt.date(1900, 2, 28)),
        (dt.date(2099, 12, 31), dt.date(2099, 12, 31)),
    ],
    ids=["date", "datetime", "midnight", "1900-03-01", "1900-02-28", "2099"],
)
def test_dates_round_trip(backend, written, read):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    book.write([SheetPatch("Contacts", {(2, 4): written, (5, 1): written})])
    raw = fresh_read(backend, book)["Contacts"]
    for value in (cell(raw, 2, 4), cell(raw, 5, 1)):
        assert type(value) is type(read) and value == read


@pytest.mark.parametrize(
    ("written", "check"),
    [
        ("007", lambda v: v == "007"),
        (42, lambda v: is_number(v) and v == 42),
        (np.int64(7), lambda v: is_number(v) and v == 7),
        (np.float64(2.5), lambda v: is_number(v) and v == 2.5),
        (0.1 + 0.2, lambda v: v == 0.1 + 0.2),
        (True, lambda v: v is True),
        (np.bool_(False), lambda v: v is False),
        (LONG_TEXT, lambda v: v == LONG_TEXT),
        (LONG_TEXT + "beyond", lambda v: v == LONG_TEXT),  # cut at Excel's limit, like Excel would
        ("bell\x07 and nul\x00 dropped", lambda v: v == "bell and nul dropped"),
        ("tab\tand\r\nnewline", lambda v: v == "tab\tand\r\nnewline"),
        ("_x0041_ stays", lambda v: v == "_x0041_ stays"),
        ("São Paulo ✓ 🎉", lambda v: v == "São Paulo ✓ 🎉"),
    ],
    ids=lambda x: repr(x)[:30] if not callable(x) else "",
)
def test_values_round_trip(backend, written, check):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    book.write([SheetPatch("Contacts", {(2, 2): written})])
    value = cell(fresh_read(backend, book)["Contacts"], 2, 2)
    assert check(value), repr(value)[:80]


def test_new_sheets_visible_and_hidden(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    tasks = SheetPatch(
        "Tasks",
        {(1, 1): "id", (1, 2): "status", (2, 1): "T-1", (2, 2): "open"},
        new=NewSheet(
            freeze_rows=1,
            col_widths={1: 12, 2: 20},
            bold_rows={1},
            validations=[Validation("B2:B500", options=["open", "done"])],
        ),
    )
    state = SheetPatch(
        "_sheetflow_state",
        {(1, 1): "section", (2, 1): "fired", (2, 3): "=not a formula"},
        new=NewSheet("veryHidden"),
    )
    book.write([tasks, state])
    raws = fresh_read(backend, book, full=("Tasks",))
    assert list(raws) == ["Contacts", "Tasks", "_sheetflow_state"]  # new sheets go after the last one
    assert raws["Tasks"].state == "visible" and raws["_sheetflow_state"].state == "veryHidden"
    assert cell(raws["Tasks"], 2, 2) == "open"
    assert cell(raws["_sheetflow_state"], 2, 3) == "=not a formula"


def test_replace_rewrites_a_sheet_sheetflow_owns(backend):
    book = backend.make(
        {"Contacts": [HEADER], "_sheetflow_state": [["section", "key"], ["old", "a"], ["old", "b"]]},
        states={"_sheetflow_state": "veryHidden"},
    )
    book.read()
    book.write([SheetPatch("_sheetflow_state", {(1, 1): "section", (2, 1): "new"}, replace=True)])
    raw = fresh_read(backend, book)["_sheetflow_state"]
    assert cell(raw, 2, 1) == "new" and empty(cell(raw, 2, 2)) and empty(cell(raw, 3, 1))
    assert raw.last_row == 2 and raw.state == "veryHidden"


# ---------------------------------------------------------------- refusals write nothing


def refused(backend, book: Book, patches: list[SheetPatch], error: type[Exception], match: str) -> None:
    before = book.fingerprint()
    with pytest.raises(error, match=match):
        book.write(patches)
    assert book.fingerprint() == before
    raw = fresh_read(backend, book)["Contacts"]
    assert cell(raw, 2, 2) == "Ana" and raw.last_row == 2


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (SheetPatch("Nope", {(1, 1): "x"}), 'no sheet "Nope"'),
        (SheetPatch("contacts", {(1, 1): "x"}, new=NewSheet()), "already exists"),
        (SheetPatch("Bad/Name", {(1, 1): "x"}, new=NewSheet()), "does not allow"),
        (SheetPatch("History", {}, new=NewSheet()), "reserved"),
        (SheetPatch("New", {}, new=NewSheet(state="secret")), "state must be"),
        (SheetPatch("New", {}, new=NewSheet(validations=[Validation("B2:B9", options=["a,b"])])), "comma"),
        (SheetPatch("Contacts", {(0, 1): "x"}), "not a cell"),
        (SheetPatch("Contacts", {(1, 16_385): "x"}), "not a cell"),
        (SheetPatch("Contacts", {(3, 2): math.nan}), "Contacts!B3"),
        (SheetPatch("Contacts", {(3, 2): math.inf}), "Contacts!B3"),
        (SheetPatch("Contacts", {(3, 2): dt.date(1899, 12, 1)}), "Contacts!B3"),
        (SheetPatch("Contacts", {(3, 2): object()}), "Contacts!B3"),
    ],
    ids=lambda x: re.sub(r"\W+", "-", x)[:30] if isinstance(x, str) else None,
)
def test_a_patch_that_cannot_be_applied_writes_nothing(backend, patch, match):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    good = SheetPatch("Contacts", {(2, 2): "Ana Lima", (3, 1): "C-2"})
    refused(backend, book, [good, patch], PatchError, match)


def test_a_sheet_created_twice_in_one_write_is_refused(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    twice = [SheetPatch("Tasks", {}, new=NewSheet()), SheetPatch("Tasks", {(1, 1): "id"}, new=NewSheet())]
    refused(backend, book, twice, PatchError, "created twice")


# ---------------------------------------------------------------- busy / changed


def test_a_change_behind_our_back_makes_the_write_busy(backend):
    refuses_edits(backend)
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    backend.change_behind(book, "Contacts", 2, 3, "changed@x.com")
    with pytest.raises(WorkbookBusy):
        book.write([SheetPatch("Contacts", {(2, 2): "Ana Lima", (3, 1): "C-2"})])
    raw = fresh_read(backend, book)["Contacts"]
    assert cell(raw, 2, 3) == "changed@x.com"  # the person's change stays
    assert cell(raw, 2, 2) == "Ana" and raw.last_row == 2  # ours was not written


def test_after_a_fresh_read_the_write_goes_through(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    backend.change_behind(book, "Contacts", 2, 3, "changed@x.com")
    book.read()
    book.write([SheetPatch("Contacts", {(2, 2): "Ana Lima"})])
    raw = fresh_read(backend, book)["Contacts"]
    assert cell(raw, 2, 2) == "Ana Lima" and cell(raw, 2, 3) == "changed@x.com"


def test_a_write_by_another_handle_makes_ours_busy(backend):
    refuses_edits(backend)
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    other = backend.reopen(book)
    book.read()
    other.read()
    other.write([SheetPatch("Contacts", {(2, 2): "by the other runner"})])
    with pytest.raises(WorkbookBusy):
        book.write([SheetPatch("Contacts", {(2, 2): "ours"})])
    assert cell(fresh_read(backend, book)["Contacts"], 2, 2) == "by the other runner"


def test_our_own_writes_need_no_new_read(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    book.read()
    book.write([SheetPatch("Contacts", {(3, 1): "C-2"})])
    book.write([SheetPatch("Contacts", {(4, 1): "C-3"})])
    raw = fresh_read(backend, book)["Contacts"]
    assert cell(raw, 3, 1) == "C-2" and cell(raw, 4, 1) == "C-3"


def test_writing_before_reading_is_a_programming_error(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    with pytest.raises(RuntimeError):
        book.write([SheetPatch("Contacts", {(2, 2): "x"})])


# ---------------------------------------------------------------- fingerprint and identity


def test_fingerprint_is_stable_until_the_workbook_changes(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    first = book.fingerprint()
    book.read()
    assert book.fingerprint() == first == backend.reopen(book).fingerprint()
    book.write([SheetPatch("Contacts", {(2, 2): "Ana Lima"})])
    written = book.fingerprint()
    assert written != first and backend.reopen(book).fingerprint() == written
    backend.change_behind(book, "Contacts", 2, 2, "Ana")
    assert book.fingerprint() not in (first, written)


def test_identity_is_stable_and_file_name_safe(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    assert isinstance(book, Book)
    assert isinstance(book.address, str) and book.address
    assert re.fullmatch(r"[\w.-]+", book.identity)
    book.read()
    book.write([SheetPatch("Contacts", {(2, 2): "Ana Lima"})])
    assert backend.reopen(book).identity == book.identity


# ---------------------------------------------------------------- the lease


def test_a_second_holder_is_refused(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    other = backend.reopen(book)
    with book.lease():
        with pytest.raises(WorkbookBusy):
            with other.lease():
                pass
        with pytest.raises(WorkbookBusy):
            with other.lease(wait=0.2):  # waits a bounded time, then gives up
                pass
    with other.lease():  # released when the block ended
        pass


def test_the_lease_is_released_on_error(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    with pytest.raises(ZeroDivisionError):
        with book.lease():
            raise ZeroDivisionError
    with backend.reopen(book).lease():
        pass


def test_a_waiting_runner_gets_the_lease_when_the_holder_finishes(backend):
    book = backend.make(contacts(["C-1", "Ana", "a@x.com"]))
    other = backend.reopen(book)
    taken, release, got = threading.Event(), threading.Event(), []

    def holder() -> None:
        with book.lease():
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(10)
        threading.Timer(0.2, release.set).start()
        with other.lease(wait=30):
            got.append(True)
    finally:
        release.set()
        thread.join(10)
    assert got == [True]


def test_deleted_rows_close_up_and_cells_are_addressed_after_the_deletion(backend):
    rows = [["at", "record"]] + [[f"2026-11-{d:02d}", f"C-{d}"] for d in range(1, 8)]
    book = backend.make({"Contacts": [HEADER], "Activity": rows})
    last = book.read()["Activity"].last_row
    assert last == 8
    book.write(
        [
            SheetPatch(
                "Activity", {(last - 3 + 1, 1): "2026-11-24", (last - 3 + 1, 2): "C-9"}, delete_rows=(2, 3, 5)
            )
        ]
    )
    raw = fresh_read(backend, book, full=("Activity",))["Activity"]
    assert [cell(raw, r, 2) for r in range(1, 7)] == ["record", "C-3", "C-5", "C-6", "C-7", "C-9"]
    assert raw.last_row == 6


def test_rows_of_a_sheet_with_formulas_are_not_deleted(backend):
    rows = [
        ["at", "record"],
        ["2026-11-01", "C-1"],
        ["2026-11-02", Formula("=1+1", 2)],
        ["2026-11-03", "C-3"],
    ]
    book = backend.make({"Contacts": [HEADER, ["C-1", "Ana", "a@x.com"]], "Activity": rows})
    book.read()
    before = book.fingerprint()
    with pytest.raises(PatchError, match="formula"):
        book.write([SheetPatch("Activity", {}, delete_rows=(2,))])
    assert book.fingerprint() == before
    assert cell(fresh_read(backend, book, full=("Activity",))["Activity"], 2, 2) == "C-1"

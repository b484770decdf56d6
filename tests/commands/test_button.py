"""The Excel button end to end: ``sheetflow.main()`` with a mocked caller (the xlwings stand-in) runs each
Control action on the "open" workbook, and the answer lands in the Control sheet, never in a traceback."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

import pytest
import python_calamine as pc

import sheetflow
from sheetflow.book.excel import ExcelBook
from sheetflow.commands import button
from sheetflow.commands.init import create_starter
from sheetflow.tables import control
from sheetflow.testing import xlwings_standin as xw


def workbook_rows(path: Path) -> dict[str, list[list[object]]]:
    book = pc.CalamineWorkbook.from_path(str(path))
    try:
        return {name: book.get_sheet_by_name(name).to_python() for name in book.sheet_names}
    finally:
        book.close()


@pytest.fixture
def open_book(tmp_path, monkeypatch):
    """A starter workbook with example data, saved on disk and "open in Excel" (the stand-in), whose button
    was pressed: returns (stand-in book, path of the file on disk)."""
    monkeypatch.setitem(sys.modules, "xlwings", xw)  # what `import xlwings` gives sheetflow.main()
    monkeypatch.delenv("SHEETFLOW_SMTP_HOST", raising=False)
    monkeypatch.setenv("SHEETFLOW_TRANSPORT", "files")

    def make(lang: str = "en", edit=None) -> tuple[xw.Book, Path]:
        path = create_starter(tmp_path / "crm.xlsx", lang=lang, example=True, contacts=20)
        rows = workbook_rows(path)
        if edit:
            edit(rows)
        book = xw.Book(rows, fullname=str(path))
        xw.set_caller(book)
        return book, path

    yield make
    xw.set_caller(None)


def panel(book: xw.Book) -> dict[str, object]:
    sheet = next(s for s in book.sheets if s.name in ("Control", "Controle"))
    return {
        "action": sheet.range("B3").value,
        "status": sheet.range("B4").value,
        "last_run": sheet.range("B5").value,
        "summary": sheet.range("B6").value,
    }


def choose(book: xw.Book, action: str) -> None:
    sheet = next(s for s in book.sheets if s.name in ("Control", "Controle"))
    sheet.range("B3").value = action


def column(book: xw.Book, sheet: str, name: str) -> list[object]:
    values = book.sheets[sheet].used_range.options(ndim=2).value
    j = [str(v).lower() for v in values[0]].index(name)
    return [row[j] for row in values[1:]]


def file_state(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_run_from_the_button(open_book):
    book, path = open_book()
    on_disk = file_state(path)
    assert column(book, "Contacts", "score") == [None] * 20
    sheetflow.main()  # what RunPython "import sheetflow; sheetflow.main()" runs
    shown = panel(book)
    assert re.fullmatch(r"done \d\d:\d\d: \d+ emails, \d+ cells", shown["status"]), shown
    cells = int(re.search(r"(\d+) cells", shown["status"]).group(1))
    assert cells > 20 and isinstance(shown["last_run"], dt.datetime)
    assert shown["summary"].startswith(f"{cells} cell")  # the run's summary, as in Runs
    scores = column(book, "Contacts", "score")
    assert all(isinstance(s, float) for s in scores)  # the run wrote through Excel
    runs = book.sheets["Runs"].used_range.options(ndim=2).value
    assert runs[-1][4] == "button" and runs[-1][3] == "run"
    assert file_state(path) == on_disk  # the file on disk was never written
    app = book.app
    assert ("screen_updating", False) in app.history and ("calculation", "manual") in app.history
    assert app.screen_updating is True and app.calculation == "automatic"  # restored
    bar = [v for k, v in app.history if k == "status_bar"]
    assert "sheetflow: writing… 70%" in bar and bar[-1] is False  # progress, then back to Excel


def test_progress_is_shown_in_the_status_cell(open_book, monkeypatch):
    book, _ = open_book()
    seen: list[str] = []
    write = ExcelBook.write

    def spy(self, patches, **kwargs):
        for p in patches:
            if p.sheet == "Control" and (control.STATUS_ROW, 2) in p.cells:
                seen.append(p.cells[(control.STATUS_ROW, 2)])
        return write(self, patches, **kwargs)

    monkeypatch.setattr(ExcelBook, "write", spy)
    sheetflow.main()
    assert seen[:3] == ["running… 10%", "running… 35%", "running… 70%"]
    assert seen[-1].startswith("done ")


def test_preview_changes_nothing_but_the_control_sheet(open_book):
    book, _ = open_book()
    choose(book, "Preview")
    before = {s.name: s.used_range.options(ndim=2).value for s in book.sheets if s.name != "Control"}
    sheetflow.main()
    after = {s.name: s.used_range.options(ndim=2).value for s in book.sheets if s.name != "Control"}
    assert after == before
    assert re.fullmatch(r"preview \d\d:\d\d: would change \d+ cells, \d+ emails", panel(book)["status"])


def test_check_report_send_and_undo(open_book):
    book, _ = open_book()
    choose(book, "Check")
    sheetflow.main()
    assert re.fullmatch(r"check \d\d:\d\d: no errors", panel(book)["status"]), panel(book)
    assert panel(book)["summary"].startswith("0 errors")
    choose(book, "Run")
    sheetflow.main()
    scores = column(book, "Contacts", "score")
    assert all(isinstance(s, float) for s in scores)
    choose(book, "Report")
    sheetflow.main()
    assert panel(book)["status"].startswith("done ")
    report = book.sheets["Report"].used_range.options(ndim=2).value
    assert len(report) > 5 and column(book, "Contacts", "score") == scores  # no stage ran again
    choose(book, "Send")
    sheetflow.main()
    assert panel(book)["status"].startswith("done "), panel(book)
    choose(book, "Undo last run")
    sheetflow.main()
    shown = panel(book)
    assert re.match(r"undone \d\d:\d\d: R\d{8}-\d{6}-\w+, \d+ cells restored", shown["status"]), shown


def test_portuguese_workbook_gets_portuguese_answers(open_book):
    book, _ = open_book("pt-BR")
    sheetflow.main()
    shown = panel(book)
    assert shown["action"] == "Executar"
    assert re.fullmatch(r"feito \d\d:\d\d: \d+ e-mails, \d+ células", shown["status"]), shown
    choose(book, "Pré-visualizar")
    sheetflow.main()
    assert panel(book)["status"].startswith("prévia ")


def test_a_bad_rule_ends_in_the_control_sheet_and_runs_not_in_a_traceback(open_book):
    def bad_rule(rows):
        rows["Scoring"].append(["Typo", 'titel contains "director"', 5, True])

    book, _ = open_book(edit=bad_rule)
    sheetflow.main()  # no exception: xlwings would show a traceback dialog
    status = panel(book)["status"]
    assert status.startswith("problems ") and 'unknown column "titel"' in status and "Scoring!B" in status
    assert 'did you mean "title"' in status
    runs = book.sheets["Runs"].used_range.options(ndim=2).value
    assert 'unknown column "titel"' in runs[-1][6]
    assert all(isinstance(s, float) for s in column(book, "Contacts", "score"))  # the rest of the run ran


def test_an_unknown_action_names_its_cell(open_book):
    book, _ = open_book()
    choose(book, "Dance")
    sheetflow.main()
    assert 'Control!B3: unknown action "Dance"' in panel(book)["status"]
    assert column(book, "Contacts", "score") == [None] * 20  # nothing ran


def test_excel_failing_halfway_is_reported_and_settings_restored(open_book):
    book, _ = open_book()
    book.fail_on_write = book.calls["write"] + 6  # a COM error in the middle of the run's write
    sheetflow.main()
    shown = panel(book)
    assert shown["status"].startswith("not run ") and "Excel stopped sheetflow" in shown["status"]
    assert book.app.screen_updating is True and book.app.calculation == "automatic"
    runs = book.sheets["Runs"].used_range.options(ndim=2).value
    assert "Excel stopped sheetflow" in runs[-1][6]  # also in Runs


def test_a_change_while_the_run_works_is_refused(open_book, monkeypatch):
    book, _ = open_book()
    from sheetflow.commands import run as pipeline

    plan_run = pipeline.plan_run

    def person_types_meanwhile(*args, **kwargs):
        book.edit("Contacts", "B2", "Someone else")
        return plan_run(*args, **kwargs)

    monkeypatch.setattr(pipeline, "plan_run", person_types_meanwhile)
    sheetflow.main()
    assert "changed while sheetflow was working" in panel(book)["status"]
    assert column(book, "Contacts", "score") == [None] * 20
    assert book.sheets["Contacts"].range("B2").value == "Someone else"


def test_a_bug_is_logged_not_shown_as_a_traceback(open_book, monkeypatch):
    book, path = open_book()
    from sheetflow.commands import run as pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(pipeline, "run", broken)
    sheetflow.main()
    status = panel(book)["status"]
    assert status.startswith("internal error ") and "ZeroDivisionError: boom" in status
    log = path.parent / ".sheetflow" / "logs" / "button.log"
    assert log.exists() and "Traceback" in log.read_text()


def test_a_workbook_without_control_sheet_gets_one(open_book):
    def drop_control(rows):
        del rows["Control"]

    book, _ = open_book(edit=drop_control)
    sheetflow.main()
    assert (
        panel(book)["status"] == "added the Control sheet: choose an action in B3 and press the button again"
    )
    assert column(book, "Contacts", "score") == [None] * 20  # nothing the user did not choose
    sheetflow.main()  # B3 says Run (the new sheet's default)
    assert panel(book)["status"].startswith("done ")


def test_an_empty_action_runs_nothing(open_book):
    book, _ = open_book("pt-BR")
    choose(book, None)
    sheetflow.main()
    assert panel(book)["status"].startswith("escolha uma ação em Controle!B3")
    assert column(book, "Contatos", "pontuação") == [None] * 20


def test_no_workbook_open_is_one_plain_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "xlwings", xw)
    xw.set_caller(None)
    with pytest.raises(SystemExit) as stop:
        sheetflow.main()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("sheetflow: no workbook is open in Excel") and "Traceback" not in err


def test_a_cloud_workbook_keeps_its_journal_locally_and_says_so(open_book, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))
    book, _ = open_book()
    book.fullname = "https://contoso-my.sharepoint.com/personal/ana/Documents/crm.xlsx"
    live = ExcelBook(book)
    assert live.remote and live.workdir.parent == Path.home() / ".sheetflow" / "workbooks"
    assert re.fullmatch(r"crm-[0-9a-f]{8}", live.identity)
    sheetflow.main()
    shown = panel(book)
    assert shown["status"].startswith("done ")
    assert "opened from the cloud" in shown["summary"] and str(live.workdir) in shown["summary"]


def test_run_action_answers_through_any_book():
    """The scheduler answers Control requests with the same function, e.g. on a MemoryBook."""
    from sheetflow.book.memory import MemoryBook

    book = MemoryBook(
        {
            "Contacts": [["id", "email", "title"], ["", "a@x.com", "Director"]],
            "Scoring": [["rule", "when", "points"], ["Boss", 'title contains "director"', 20]],
        }
    )
    result = button.run_action(book, "run", trigger="schedule")
    assert result.ok and result.written and result.status.startswith("done ")
    assert book.value("Contacts", 2, 4) == 20 or any(book.value("Contacts", 2, c) == 20 for c in range(1, 10))
    assert "Control" in book.sheet_names


def test_the_command_line_runs_on_the_open_workbook(open_book, capsys):
    from sheetflow.cli.main import main

    book, path = open_book()
    on_disk = file_state(path)
    assert main(["run", "excel:", "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert main(["run", "excel:crm.xlsx"]) in (0, 1)
    assert all(isinstance(s, float) for s in column(book, "Contacts", "score"))
    assert file_state(path) == on_disk
    assert main(["check", "excel:other.xlsx"]) == 2
    assert 'the workbook open in Excel is "crm.xlsx", not "other.xlsx"' in capsys.readouterr().out


def test_without_xlwings_the_message_says_what_to_install(monkeypatch, capsys):
    from sheetflow.cli.main import main

    monkeypatch.setitem(sys.modules, "xlwings", None)  # import xlwings -> ImportError
    assert main(["run", "excel:"]) == 2
    assert 'pip install "sheetflow[excel]"' in capsys.readouterr().out


def test_a_press_while_another_run_holds_the_workbook_says_so_plainly(open_book, monkeypatch, capsys):
    book, _ = open_book()
    monkeypatch.setattr(button, "ANSWER_WAIT", 0.0)
    before = book.sheets["Runs"].used_range.address
    with ExcelBook(book).lease():  # the scheduler, or a first press still running
        with pytest.raises(SystemExit) as stop:
            sheetflow.main()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert (
        "not run" in err and "another sheetflow run is working on crm.xlsx" in err and "Traceback" not in err
    )
    assert book.sheets["Runs"].used_range.address == before  # the holder's write is not disturbed
    assert "another sheetflow run" in [v for k, v in book.app.history if k == "status_bar"][-1]

"""Logs never fill the sheet (issue 10.4): a cap per log, older finished rows moved whole to the archive in
``.sheetflow/``, and nothing lost: undo, email keys, suppressions and status write-back read past it."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.table import Table

from sheetflow import engine
from sheetflow.book.patch import PatchError, SheetPatch
from sheetflow.book.xlsx.apply import patch_workbook
from sheetflow.cli.main import main
from sheetflow.commands.run import run
from sheetflow.commands.undo import undo
from sheetflow.engine.emails import request_email
from sheetflow.tables.archive import Archive
from tests.conftest import NOW, make_book
from tests.conftest import read_sheet as sheet

LOGS = ("Activity", "Emails", "Tasks", "Runs")


def archived(path: Path, name: str) -> list[list]:
    """Every data row of one log in all archive files of the workbook."""
    rows: list[list] = []
    for file in sorted((path.parent / ".sheetflow").glob(f"{path.stem}.archive-*.xlsx")):
        try:
            rows += sheet(file, name)[1:]
        except Exception:  # noqa: BLE001 - the log has no sheet in this archive file
            continue
    return rows


def scored_book(book, cap: int, contacts: int = 8, lang_pt: bool = False):
    settings = [["key", "value"], ["timezone", "UTC"], ["log_max_rows", cap]]
    if lang_pt:
        settings = [["chave", "valor"], ["fuso_horario", "UTC"], ["maximo_de_linhas_nos_logs", cap]]
    return book(
        {
            "Settings": settings,
            "Scoring": [["rule", "when", "points"], ["CEO", 'title = "CEO"', 1], ["Dev", 'title = "Dev"', 1]],
            "Contacts": [["id", "first_name", "email", "title", "score"]]
            + [
                [f"C-{i:03}", f"P{i}", f"p{i}@x.com", "CEO" if i <= 3 else "Dev", None]
                for i in range(1, contacts + 1)
            ],
        }
    )


def set_points(path: Path, rule_row: int, points: int) -> None:
    wb = load_workbook(path)
    wb["Scoring"].cell(rule_row, 3).value = points
    wb.save(path)


def test_logs_stay_under_a_small_cap_and_archive_plus_sheet_is_every_row(book):
    path = scored_book(book, cap=20)
    written: Counter = Counter()  # every Activity row any run wrote: (run, record, new score)
    run_ids = []
    for k in range(25):
        set_points(path, 3, 2 + k)  # the Dev rule changes: five contacts re-scored each run
        result = run(path, now=NOW + dt.timedelta(minutes=k))
        assert result.written
        run_ids.append(result.plan.run_id)
        written.update((result.plan.run_id, c.record_id, str(c.new)) for c in result.plan.changes)
        for name in ("Activity", "Runs"):
            assert len(sheet(path, name)) - 1 <= 20, (k, name)
    kept = [(r[1], r[3], r[6]) for r in sheet(path, "Activity")[1:]]
    gone = [(r[1], r[3], r[6]) for r in archived(path, "Activity")]
    assert Counter(kept) + Counter(gone) == written
    assert not set(kept) & set(gone)  # each row in one place only
    assert [r[0] for r in archived(path, "Runs")] + [r[0] for r in sheet(path, "Runs")[1:]] == run_ids
    # the newest rows stay in the sheet, the oldest are archived
    assert sheet(path, "Runs")[-1][0] == run_ids[-1] and archived(path, "Runs")[0][0] == run_ids[0]
    assert len(sheet(path, "Activity")) - 1 >= 20 - 20 // 10 - 5


def test_the_cap_setting_has_a_portuguese_name_and_the_archive_uses_the_sheet_names(book):
    path = scored_book(book, cap=10, lang_pt=True)
    for k in range(4):
        set_points(path, 3, 2 + k)
        result = run(path, now=NOW + dt.timedelta(minutes=k))
    names = load_workbook(path).sheetnames
    activity = "Atividade" if "Atividade" in names else "Activity"
    assert len(sheet(path, activity)) - 1 <= 10
    assert any(
        f"rows of {activity} moved to .sheetflow/crm.archive-2026.xlsx" in p.message for p in result.problems
    )
    assert archived(path, activity)


def test_undo_finds_an_archived_run(book):
    path = scored_book(book, cap=10)
    first = run(path, now=NOW)  # scores everyone: CEO 1, Dev 1
    for k in range(5):  # only the Dev contacts change afterwards
        set_points(path, 3, 2 + k)
        run(path, now=NOW + dt.timedelta(minutes=1 + k))
    assert first.plan.run_id not in [r[1] for r in sheet(path, "Activity")[1:]]
    assert first.plan.run_id in [r[1] for r in archived(path, "Activity")]
    result = undo(path, first.plan.run_id, now=NOW + dt.timedelta(hours=1))
    assert result.written
    contacts = {r[0]: r[4] for r in sheet(path, "Contacts")[1:]}
    assert [contacts[f"C-{i:03}"] for i in (1, 2, 3)] == ["", "", ""]  # CEO scores: back to empty
    assert contacts["C-004"] == 6  # changed by later runs: left alone and reported
    assert sum("changed since" in p.message for p in result.skipped) == 5
    assert (
        main(["undo", str(path), first.plan.run_id]) == 1
    )  # already undone (the undo rows are in the sheet)
    with pytest.raises(Exception, match="no changes of run"):
        undo(path, "R-nope", now=NOW)


def test_a_workbook_over_the_cap_is_fixed_by_the_next_run_with_a_message(book, capsys):
    path = scored_book(book, cap=50)
    wb = load_workbook(path)
    ws = wb.create_sheet("Activity")
    ws.append(["at", "run_id", "table", "record_id", "column", "old", "new", "rule"])
    for i in range(300):
        ws.append(
            [
                NOW - dt.timedelta(days=300 - i),
                f"R-old-{i // 10}",
                "Contacts",
                "C-001",
                "score",
                i,
                i + 1,
                "x",
            ]
        )
    wb.save(path)
    assert main(["check", str(path)]) in (0, 1)
    assert "300 rows, more than log_max_rows (50)" in " ".join(capsys.readouterr().out.split())
    assert main(["run", str(path), "--now", "2026-11-23T10:00"]) == 0
    out = capsys.readouterr().out
    assert "300 rows, more than log_max_rows (50)" in " ".join(out.split())
    rows = sheet(path, "Activity")[1:]
    assert len(rows) <= 50
    assert len(archived(path, "Activity")) + len(rows) == 300 + 8
    # oldest first, values intact (old/new are text columns of the contract)
    assert [r[6] for r in archived(path, "Activity")[:3]] == ["1", "2", "3"]
    assert archived(path, "Activity")[0][0] == NOW - dt.timedelta(days=300)
    # the Runs row counts the warnings the run printed (they come from the archiving, after the row was built)
    printed = sum(line.startswith("warning ") for line in out.splitlines())
    runs = sheet(path, "Runs")
    last = dict(zip(runs[0], runs[-1]))
    assert printed >= 1 and f"0 errors, {printed} warnings" in last["counts"]


def test_run_says_how_many_rows_moved_and_the_runs_row_keeps_it(book, capsys):
    """The normal case (a log reaching the cap): run prints "N rows of Activity moved to .sheetflow/…" and the
    Runs row carries the same note (issue 10)."""
    path = scored_book(book, cap=20)
    moved_runs = 0
    for k in range(8):
        set_points(path, 3, 2 + k)  # five Dev contacts re-scored each run
        assert main(["run", str(path), "--now", f"2026-11-23T10:{k:02}"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        runs = sheet(path, "Runs")
        notes = dict(zip(runs[0], runs[-1]))["errors"]
        if "rows of Activity moved to .sheetflow/crm.archive-2026.xlsx" in out:
            moved_runs += 1
            n = int(out.split(" rows of Activity moved to")[0].split()[-1])
            assert f"note: {n} rows of Activity moved to .sheetflow/crm.archive-2026.xlsx" in notes
            assert n > 0
        else:
            assert "moved to" not in notes
    assert moved_runs >= 1
    assert len(archived(path, "Activity")) + len(sheet(path, "Activity")) - 1 == 8 + 7 * 5


def test_a_run_with_nothing_to_do_still_trims_an_overfull_log(book):
    path = scored_book(book, cap=20)
    run(path, now=NOW)
    wb = load_workbook(path)
    ws = wb["Runs"]
    for i in range(40):
        ws.append([f"R-old-{i}", NOW, NOW, "run", "cli", "", ""])
    wb.save(path)
    result = run(path, now=NOW + dt.timedelta(minutes=5))
    assert result.written and len(sheet(path, "Runs")) - 1 <= 20
    assert not result.plan.changes


def test_a_crash_between_archive_and_save_loses_nothing_and_archives_nothing_twice(book, monkeypatch):
    path = scored_book(book, cap=10)
    changes = 0
    for k in range(2):
        set_points(path, 3, 2 + k)
        changes += len(run(path, now=NOW + dt.timedelta(minutes=k)).plan.changes)
    set_points(path, 3, 50)
    from sheetflow.book.xlsx import XlsxBook

    def crash(self, patches, backups=10):
        raise KeyboardInterrupt("killed after the archive was written")

    monkeypatch.setattr(XlsxBook, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        run(path, now=NOW + dt.timedelta(minutes=5))
    monkeypatch.undo()
    (path.parent / ".sheetflow" / "crm.xlsx.archive.sqlite").unlink()  # the index is a cache: rebuilt
    after_crash = archived(path, "Activity")
    in_sheet = sheet(path, "Activity")[1:]
    assert len(after_crash) + len(in_sheet) > 16  # the archived rows are in both places now
    changes += len(run(path, now=NOW + dt.timedelta(minutes=6)).plan.changes)
    rows = [tuple(r) for r in archived(path, "Activity")]
    assert len(rows) == len(set(rows))  # each archived once
    everything = rows + [tuple(r) for r in sheet(path, "Activity")[1:]]
    # rows the stopped run had archived straight away stay there, under a run id Runs does not know
    runs = {r[0] for r in sheet(path, "Runs")[1:] + archived(path, "Runs")}
    orphans = [r for r in everything if r[1] not in runs]
    assert len({r[1] for r in orphans}) <= 1
    assert len(everything) == len(set(everything)) == changes + len(orphans)


# ---------------------------------------------------------------- emails


SETTINGS = [
    ["key", "value"],
    ["timezone", "UTC"],
    ["sender_name", "Team"],
    ["sender_email", "team@acme.com"],
    ["send_window", "Mon-Fri 09:00-18:00"],
    ["daily_email_limit", 1000],
    ["log_max_rows", 10],
]
TEMPLATES = [
    ["name", "subject", "body"],
    ["welcome", "Hi {{ first_name }}", "Hello"],
    ["nurture", "News", "News"],
]


@pytest.fixture
def mailing(monkeypatch):
    """(template, rule, predicate on the contact row) the test stage asks for each run."""
    asks: list = []

    def stage(ctx):
        t = ctx.tables["Contacts"]
        for template, rule, pick in asks:
            positions = [p for p in range(len(t)) if pick(t.df.iloc[p])]
            request_email(ctx, "Contacts", positions, template, rule, ["new"] * len(positions))

    monkeypatch.setitem(engine.STAGES, "mailtest", stage)
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    monkeypatch.delenv("SHEETFLOW_SMTP_HOST", raising=False)
    return asks


def mail_book(book, n: int, bad: int | None = None):
    contacts = [["id", "first_name", "email", "group"]] + [
        [f"C-{i:03}", f"P{i}", f"p{i}@x.com" if i != bad else "nobody@bounce.test", "a" if i <= 12 else "b"]
        for i in range(1, n + 1)
    ]
    return book({"Settings": SETTINGS, "Contacts": contacts, "Templates": TEMPLATES})


def emails(path: Path) -> list[dict]:
    rows = sheet(path, "Emails")
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def test_an_archived_sent_key_is_never_planned_again(book, mailing):
    path = mail_book(book, 14)
    mailing.append(("welcome", "Welcome", lambda row: True))
    first = run(path, now=NOW)  # Monday 10:00: 14 welcomes sent, 14 rows > cap 10
    assert first.emails.count("sent") == 14
    outbox = path.parent / "outbox"
    assert len(list(outbox.glob("*.eml"))) == 14
    run(path, now=NOW + dt.timedelta(minutes=1))  # the next run trims Emails
    in_sheet = emails(path)
    assert len(in_sheet) <= 10
    gone = archived(path, "Emails")
    assert len(gone) + len(in_sheet) == 14 and gone
    # without the mail journal, only the archive still knows the archived keys
    for journal in (path.parent / ".sheetflow").glob("*.mail.sqlite"):
        journal.unlink()
    again = run(path, now=NOW + dt.timedelta(minutes=2))
    assert again.plan.emails == [] and len(list(outbox.glob("*.eml"))) == 14
    assert len(emails(path)) + len(archived(path, "Emails")) == 14
    # a dry run agrees
    assert run(path, now=NOW + dt.timedelta(minutes=3), dry_run=True).plan.emails == []


def test_an_archived_failed_address_stays_suppressed(book):
    path = mail_book(book, 3)
    archive = Archive(path.parent / ".sheetflow", path.name)
    from sheetflow.tables.archive import ArchiveBatch

    archive.store(
        [
            ArchiveBatch(
                "Emails",
                "Emails",
                [("to", "to"), ("status", "status"), ("detail", "detail"), ("key", "key")],
                [{"to": "P2@x.com", "status": "bounced", "detail": "550 no such user", "key": "Eold"}],
            )
        ],
        NOW,
    )
    facts = archive.facts()
    assert "Eold" in facts.email_keys and "p2@x.com" in facts.blocked
    engine.STAGES["mailtest2"] = lambda ctx: request_email(
        ctx, "Contacts", [0, 1, 2], "welcome", "W", ["new"] * 3
    )
    try:
        plan = run(path, now=NOW, dry_run=True).plan
    finally:
        del engine.STAGES["mailtest2"]
    by_id = {e.record_id: e for e in plan.emails}
    assert by_id["C-002"].status == "skipped" and "550 no such user" in by_id["C-002"].detail
    assert by_id["C-001"].status != "skipped"


def test_emails_statuses_are_written_back_to_the_right_rows_after_trimming(book, mailing):
    path = mail_book(book, 20)
    mailing.append(("welcome", "Welcome", lambda row: row["group"] == "a"))
    run(path, now=NOW)  # Monday: 12 welcomes sent
    mailing.append(("nurture", "Nurture", lambda row: row["group"] == "b"))
    saturday = dt.datetime(2026, 11, 28, 10, 0)
    sat = run(path, now=saturday)  # outside the send window: 8 rows planned, the Emails log trimmed
    assert sat.emails is None or sat.emails.count("sent") == 0
    rows = emails(path)
    assert len(rows) <= 10 and sum(r["status"] == "planned" for r in rows) == 8  # planned rows always stay
    monday = dt.datetime(2026, 11, 30, 10, 0)
    result = run(path, now=monday)
    assert result.emails.count("sent") == 8
    rows = emails(path)
    for row in rows:
        if row["template"] == "nurture":
            n = int(row["record_id"][2:])
            assert (row["status"], row["to"]) == ("sent", f"p{n}@x.com")
            assert row["key"].startswith("E") and row["sent_at"] == monday
    every = rows + [dict(zip(sheet(path, "Emails")[0], r)) for r in archived(path, "Emails")]
    assert sorted(r["record_id"] for r in every) == sorted(f"C-{i:03}" for i in range(1, 21))
    assert {r["status"] for r in every} == {"sent"}


# ---------------------------------------------------------------- the writer: deleting rows


def test_deleting_rows_moves_merges_validations_tables_and_names(tmp_path):
    src = tmp_path / "d.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.title = "Activity"
    ws.append(["a", "b"])
    for i in range(2, 12):
        ws.append([f"r{i}", i])
    ws.merge_cells("A10:B10")
    ws.merge_cells("A3:B3")  # deleted with its rows
    dv = DataValidation(type="list", formula1='"x,y"')
    dv.add("B2:B11")
    ws.add_data_validation(dv)
    ws.column_dimensions["A"].width = 30
    other = wb.create_sheet("Log2")
    other.append(["h1", "h2"])
    for i in range(2, 8):
        other.append([f"t{i}", i])
    other.add_table(Table(displayName="LogTable", ref="A1:B7"))
    wb.defined_names["logs"] = DefinedName("logs", attr_text="Activity!$A$1:$B$11")
    wb.save(src)
    out = tmp_path / "out.xlsx"
    patch_workbook(
        src,
        out,
        [
            SheetPatch("Activity", {(9, 1): "new"}, delete_rows=(2, 3, 5)),
            SheetPatch("Log2", {(5, 1): "t-new"}, delete_rows=(2, 3)),
        ],
    )
    assert [r[0] for r in sheet(out, "Activity")] == ["a", "r4", "r6", "r7", "r8", "r9", "r10", "r11", "new"]
    assert [r[0] for r in sheet(out, "Log2")] == ["h1", "t4", "t5", "t6", "t-new"]
    wb = load_workbook(out)
    ws = wb["Activity"]
    assert [str(r) for r in ws.merged_cells.ranges] == ["A7:B7"]
    assert str(ws.data_validations.dataValidation[0].sqref) == "B2:B8"
    assert ws.column_dimensions["A"].width == 30
    assert wb.defined_names["logs"].attr_text == "Activity!$A$1:$B$8"
    assert wb["Log2"].tables["LogTable"].ref == "A1:B5"


@pytest.mark.slow
def test_deleting_rows_of_a_big_sheet_as_bytes_matches_small(tmp_path, monkeypatch):
    import sheetflow.book.xlsx.zipio as zipio

    src = make_book(
        tmp_path / "big.xlsx", {"Runs": [["run_id", "n"]] + [[f"R-{i}", i] for i in range(2, 30002)]}
    )
    results = []
    for limit in (1, 1 << 40):  # rows as bytes (_RawRows), then the whole tree
        monkeypatch.setattr(zipio, "_RAW_ROWS_MIN_BYTES", limit)
        out = tmp_path / f"out{limit}.xlsx"
        patch_workbook(
            src, out, [SheetPatch("Runs", {(25002, 1): "last"}, delete_rows=tuple(range(2, 5002)))]
        )
        results.append(sheet(out, "Runs"))
    assert results[0] == results[1]
    rows = results[0]
    assert rows[1] == ["R-5002", 5002] and rows[-2] == ["R-30001", 30001] and rows[-1] == ["last", ""]
    assert len(rows) == 25002


def test_a_log_with_formulas_is_not_moved(tmp_path):
    src = tmp_path / "f.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.title = "Runs"
    ws.append(["a", "b"])
    ws.append([1, "=A2*2"])
    ws.append([2, 3])
    wb.save(src)
    with pytest.raises(PatchError, match="holds formulas"):
        patch_workbook(src, tmp_path / "o.xlsx", [SheetPatch("Runs", {}, delete_rows=(2,))])


# ---------------------------------------------------------------- Excel's row limit


def _giant_activity(path: Path, rows: int) -> None:
    """Replace the Activity sheet of ``path`` by one with ``rows`` data rows, written as XML directly."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    head = (
        '<row r="1"><c r="A1" t="inlineStr"><is><t>at</t></is></c><c r="B1" t="inlineStr"><is><t>run_id</t></is>'
        '</c><c r="D1" t="inlineStr"><is><t>record_id</t></is></c><c r="G1" t="inlineStr"><is><t>new</t></is></c>'
        "</row>"
    )
    buf = io.StringIO()
    buf.write(f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{ns}"><sheetData>')
    buf.write(head)
    for r in range(2, rows + 2):
        buf.write(f'<row r="{r}"><c r="B{r}" t="inlineStr"><is><t>R-old-{r // 100000}</t></is></c>')
        buf.write(f'<c r="D{r}" t="inlineStr"><is><t>C-1</t></is></c><c r="G{r}"><v>{r}</v></c></row>')
    buf.write("</sheetData></worksheet>")
    with zipfile.ZipFile(path) as zin:
        rels = zin.read("xl/_rels/workbook.xml.rels").decode()
        book_xml = zin.read("xl/workbook.xml").decode()
        import re

        rid = re.search(r'<sheet [^>]*name="Activity"[^>]*r:id="([^"]+)"', book_xml).group(1)
        target = re.search(rf'Id="{rid}"[^>]*Target="([^"]+)"|Target="([^"]+)"[^>]*Id="{rid}"', rels)
        part = "xl/" + (target.group(1) or target.group(2)).lstrip("/").removeprefix("xl/")
        tmp = path.with_suffix(".tmp.xlsx")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                data = buf.getvalue().encode() if info.filename == part else zin.read(info)
                zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    shutil.move(tmp, path)


@pytest.mark.slow
def test_a_workbook_at_excel_row_limit_is_repaired_by_one_run(book, capsys):
    path = scored_book(book, cap=50_000)
    wb = load_workbook(path)
    wb.create_sheet("Activity").append(["at"])
    wb.save(path)
    _giant_activity(path, 1_048_500)
    assert main(["run", str(path), "--now", "2026-11-23T10:00"]) == 0  # 8 more rows would not fit
    out = " ".join(capsys.readouterr().out.split())
    assert "1,048,500 rows, more than log_max_rows (50,000)" in out
    kept = sheet(path, "Activity")[1:]
    assert len(kept) == 45_000
    assert kept[-1][3] == "C-008" and kept[0][6] == 1_048_501 - 45_000 + 8 + 1
    total = len(kept) + len(archived(path, "Activity"))
    assert total == 1_048_500 + 8
    set_points(path, 3, 7)
    assert main(["run", str(path), "--now", "2026-11-23T11:00"]) == 0  # and runs go on


def test_deleting_rows_is_the_same_in_every_backend(tmp_path):
    from sheetflow.book.memory import MemoryBook
    from sheetflow.book.xlsx import XlsxBook

    rows = [["run_id", "n"]] + [[f"R-{i}", i] for i in range(2, 12)]
    books = [XlsxBook(make_book(tmp_path / "crm.xlsx", {"Runs": rows})), MemoryBook({"Runs": rows})]
    seen = []
    for b in books:
        b.read()
        b.write([SheetPatch("Runs", {(3, 2): 99, (9, 1): "R-new"}, delete_rows=(2, 4, 5))], backups=0)
        seen.append([[str(v) for v in r] for r in b.read(full=("Runs",))["Runs"].rows])
    assert seen[0] == seen[1]
    assert [r[0] for r in seen[0]] == ["run_id", "R-3", "R-6", "R-7", "R-8", "R-9", "R-10", "R-11", "R-new"]
    assert seen[0][2][0] == "R-6" and float(seen[0][2][1]) == 99


def test_a_memory_workbook_keeps_its_logs_under_the_cap_too(tmp_path):
    from sheetflow.book.memory import MemoryBook

    memory = MemoryBook(
        {
            "Settings": [["key", "value"], ["log_max_rows", 10]],
            "Scoring": [["rule", "when", "points"], ["Dev", 'title = "Dev"', 1]],
            "Contacts": [["id", "title"]] + [[f"C-{i}", "Dev"] for i in range(1, 7)],
        },
        workdir=tmp_path / ".sheetflow",
    )
    for k in range(4):
        memory.edit("Scoring", {(2, 3): 2 + k})
        run("memory:book", book=memory, now=NOW + dt.timedelta(minutes=k))
        activity = memory.read(full=("Activity",))["Activity"].rows
        assert len(activity) - 1 <= 10
    assert list((tmp_path / ".sheetflow").glob("book.archive-2026.xlsx"))
    assert (
        len(sheet(tmp_path / ".sheetflow" / "book.archive-2026.xlsx", "Activity")) - 1 + len(activity) - 1
        == 24
    )


def test_open_tasks_stay_even_over_the_cap_and_the_run_says_so(book):
    path = scored_book(book, cap=10)
    wb = load_workbook(path)
    ws = wb.create_sheet("Tasks")
    ws.append(["created_at", "due_at", "owner", "table", "record_id", "text", "rule", "done"])
    for i in range(14):
        ws.append([NOW, NOW, "Ana", "Contacts", f"C-{i:03}", f"call {i}", "r", i < 3])
    wb.save(path)
    result = run(path, now=NOW)
    tasks = sheet(path, "Tasks")[1:]
    assert [r[5] for r in archived(path, "Tasks")] == ["call 0", "call 1", "call 2"]  # only done ones
    assert len(tasks) == 11 and not any(r[7] is True for r in tasks)
    assert any("11 rows stay, more than log_max_rows (10)" in p.message for p in result.problems)


def test_the_cap_holds_after_every_run_that_sends(book, mailing):
    """The post-send save adds an Activity row per email sent (last_emailed_at): room is kept for it, so the
    logs are at most log_max_rows (10 here) after each run, not only after its first save (issue 10)."""
    path = mail_book(book, 14)
    batch: list[str] = []
    mailing.append(("welcome", "Welcome", lambda row: row["id"] in batch))
    sent = 0
    for k in range(4):  # Monday 10:00 onwards: three new contacts welcomed per run
        batch[:] = [f"C-{3 * k + i:03}" for i in (1, 2, 3)]
        result = run(path, now=NOW + dt.timedelta(minutes=k))
        assert result.emails.count("sent") == 3
        sent += 3
        for name in ("Activity", "Emails", "Runs"):
            assert len(sheet(path, name)) - 1 <= 10, (k, name)
        stamps = [
            r for r in sheet(path, "Activity")[1:] + archived(path, "Activity") if r[4] == "last_emailed_at"
        ]
        assert len(stamps) == sent  # nothing lost: sheet + archive hold every row

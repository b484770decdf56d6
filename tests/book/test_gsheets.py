"""The Google Sheets backend end to end, through the local emulator and a real gspread client.

The end-to-end scenarios run on xlsx and gsheets with the same expectations; the Google-only behaviour
(request economy, rows that move under a run, faults at every request, the lease in ``_sheetflow``, the
errors a user meets) is pinned on gsheets.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from sheetflow.book import gsheets as gs
from sheetflow.book import open_book
from sheetflow.book.gsheets import GoogleAccessError, GoogleUnavailable, GSheetsBook, spreadsheet_id
from sheetflow.cli.main import main
from sheetflow.commands.run import load, run
from sheetflow.problems import UsageError, WorkbookBusy
from sheetflow.testing.sheets_emulator import Emulator, emulator_client, from_serial, start
from tests.conftest import NOW
from tests.conftest import read_sheet as xlsx_rows

from .backends import XlsxBackend, emulator, seed_spreadsheet

SETTINGS = [
    ["key", "value"],
    ["timezone", "UTC"],
    ["sender_email", "crm@example.com"],
    ["send_window", "always"],
]
SCORING = [
    ["rule", "when", "points"],
    ["Director", 'title contains "director"', 20],
    ["Big", "company_size >= 50", 15],
]
REPS = [["name", "email"], ["Ana", "ana@example.com"], ["Bob", "bob@example.com"]]
ASSIGNMENT = [
    ["rule", "table", "when", "assign_to", "method"],
    ["All leads", "Contacts", "", "Ana, Bob", "round_robin"],
]
HEADER = ["id", "first_name", "email", "title", "company_size", "lifecycle_stage"]


def contacts(n: int) -> list[list[Any]]:
    titles = ["Sales Director", "Analyst", "Director of Ops", "Intern"]
    return [HEADER] + [
        [f"C-{i:05d}", f"Name {i}", f"p{i}@acme.com", titles[i % 4], 10 * (i % 9), "lead"]
        for i in range(1, n + 1)
    ]


def expected(i: int) -> int:
    """The score of contact i: Director (+20) for even i, Big (+15) when 10 * (i % 9) >= 50."""
    return (20 if i % 2 == 0 else 0) + (15 if 10 * (i % 9) >= 50 else 0)


def crm(n: int = 6) -> dict[str, list[list[Any]]]:
    return {
        "Settings": SETTINGS,
        "Scoring": SCORING,
        "Reps": REPS,
        "Assignment": ASSIGNMENT,
        "Contacts": contacts(n),
    }


# ---------------------------------------------------------------- one workbook, two backends


class XlsxWorkbook:
    name = "xlsx"

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path

    def make(self, sheets) -> None:
        XlsxBackend(self.tmp).make(sheets)  # text typed as text ("=1+1" is not a formula), like a person
        self.path = self.tmp / "crm.xlsx"

    def book(self, **kw):
        return open_book(self.path)

    @property
    def address(self) -> str:
        return str(self.path)

    def rows(self, sheet: str) -> list[list[Any]]:
        return [[_plain(v) for v in row] for row in xlsx_rows(self.path, sheet)]


class GSheetsWorkbook:
    name = "gsheets"

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.emu = emulator()

    def make(self, sheets) -> None:
        self.sid = seed_spreadsheet(self.emu, sheets)

    @property
    def address(self) -> str:
        return f"gsheets:{self.sid}"

    def book(self, **kw) -> GSheetsBook:
        kw.setdefault("base_delay", 0.0)
        kw.setdefault("fresh", 0.0)  # always re-read the id columns (tests move rows right after the read)
        return GSheetsBook(
            f"gsheets:{self.sid}",
            client=emulator_client(self.emu.base_url, timeout=kw.pop("timeout", 30)),
            workdir=self.tmp / ".sheetflow",
            settle=0,
            **kw,
        )

    def rows(self, sheet: str) -> list[list[Any]]:
        raw = self.emu.values(self.sid, f"'{sheet}'")
        width = max((len(r) for r in raw), default=0)
        return [[_plain(v) for v in [*r, *[""] * (width - len(r))]] for r in raw]


def _plain(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def records(wb, sheet: str = "Contacts") -> dict[str, dict[str, Any]]:
    rows = wb.rows(sheet)
    return {r[0]: dict(zip(rows[0], r)) for r in rows[1:] if r and r[0] != ""}


@pytest.fixture(params=["xlsx", "gsheets"])
def wb(request, tmp_path):
    return {"xlsx": XlsxWorkbook, "gsheets": GSheetsWorkbook}[request.param](tmp_path)


@pytest.fixture
def gwb(tmp_path):
    return GSheetsWorkbook(tmp_path)


def test_scoring_assignment_and_email_run_then_an_idempotent_second_run(wb, tmp_path):
    wb.make(crm(6))
    outbox = tmp_path / "outbox"
    first = run(wb.address, now=NOW, outbox=outbox, book=wb.book())
    assert first.written and not first.plan.errors
    people = records(wb)
    assert {k: v["score"] for k, v in people.items()} == {f"C-{i:05d}": expected(i) for i in range(1, 7)}
    assert sorted(v["owner"] for v in people.values()) == ["Ana"] * 3 + ["Bob"] * 3
    sent = sorted(outbox.glob("*.eml"))
    assert len(sent) == 2  # one digest per rep
    emails = wb.rows("Emails")
    assert [r[emails[0].index("status")] for r in emails[1:]] == ["sent", "sent"]
    second = run(wb.address, now=NOW + dt.timedelta(hours=1), outbox=outbox, book=wb.book())
    assert not second.written and not second.plan.changes
    assert len(list(outbox.glob("*.eml"))) == 2  # nothing sent twice
    assert records(wb) == people


def test_dry_run_writes_nothing(wb, tmp_path):
    wb.make(crm(4))
    before = {s: wb.rows(s) for s in ("Contacts", "Settings")}
    result = run(wb.address, now=NOW, dry_run=True, book=wb.book())
    assert result.plan.changes and not result.written
    assert {s: wb.rows(s) for s in ("Contacts", "Settings")} == before
    if wb.name == "gsheets":
        assert wb.emu.metadata(wb.sid)["sheets"] and [
            s["properties"]["title"] for s in wb.emu.metadata(wb.sid)["sheets"]
        ] == list(crm(4))


def test_formula_looking_data_stays_text(wb):
    sheets = crm(2)
    sheets["Contacts"][1][0] = "=1+1"
    sheets["Contacts"][2][0] = "@SUM(A1)"
    sheets["Contacts"][1][3] = '=HYPERLINK("http://evil","director")'
    wb.make(sheets)
    run(wb.address, now=NOW, book=wb.book())
    activity = wb.rows("Activity")
    assert {r[3] for r in activity[1:]} >= {"=1+1", "@SUM(A1)"}
    if wb.name == "gsheets":  # read back with the FORMULA render option: text, never a formula
        formulas = wb.emu.values(wb.sid, "'Activity'", render="FORMULA")
        assert {r[3] for r in formulas[1:]} >= {"=1+1", "@SUM(A1)"}
        book = wb.emu.spreadsheets[wb.sid]
        for name in ("Activity", "Contacts", "Runs"):
            sheet = book.sheet_by_title(name)
            assert not [
                (r, c)
                for r in range(len(sheet.rows))
                for c in range(len(sheet.rows[r]))
                if getattr(sheet.cell(r, c), "formula", None)
            ], name


# ---------------------------------------------------------------- request economy


LEASE_OPS = {"values.get", "values.update"}  # take: read, write, read back; release: write


def run_ops(gwb, n: int, **kw) -> dict[str, int]:
    """Requests of one run on a fresh spreadsheet of ``n`` contacts whose lease sheet exists already."""
    gwb.make(crm(n))
    with gwb.book().lease():
        pass
    gwb.emu.reset_counts()
    result = run(gwb.address, now=NOW, book=gwb.book(**kw), outbox=gwb.tmp / f"outbox-{n}")
    assert result.written and len(list((gwb.tmp / f"outbox-{n}").glob("*.eml"))) == 2
    people = records(gwb)
    assert len(people) == n and all(isinstance(v["score"], int) for v in people.values())
    return gwb.emu.stats()["ops"]


def check_ops(ops: dict[str, int], bytes_in: int) -> None:
    """≤ 2 reads and ≤ 3 writes per run besides the lease, whatever the number of rows (a body over
    MAX_PAYLOAD is split: one more request per 2 MB, Google's recommended maximum)."""
    assert {op: n for op, n in ops.items() if op == "values.get"} == {"values.get": 2}  # lease + read-back
    assert 2 <= ops["values.update"] <= 3  # take, release (+ a renewal on a slow machine)
    work = {op: n for op, n in ops.items() if op not in LEASE_OPS}
    # per write (the run's, then the e-mail write-back): the id columns read again, new sheets and date
    # formats in one spreadsheets.batchUpdate (the first write only), every value in one values.batchUpdate;
    # reads: the run's one read of everything and the write-back's
    splits = bytes_in // gs.MAX_PAYLOAD
    assert work.pop("values.batchUpdate") <= 2 + splits
    assert work == {"spreadsheets.get": 2, "values.batchGet": 2, "spreadsheets.batchUpdate": 1}


def test_requests_per_run_at_10_rows(gwb):
    check_ops(run_ops(gwb, 10), gwb.emu.stats()["bytes_in"])


@pytest.mark.slow
def test_requests_per_run_at_10000_rows(gwb):
    ops = run_ops(gwb, 10_000)
    check_ops(ops, gwb.emu.stats()["bytes_in"])
    assert gwb.emu.stats()["bytes_in"] > gs.MAX_PAYLOAD  # the split is exercised too


def test_a_write_right_after_a_read_does_not_read_the_ids_again(gwb):
    ops = run_ops(gwb, 10, fresh=60.0)
    assert "values.batchGet" not in ops and ops["spreadsheets.get"] == 2


def test_large_payloads_are_split(gwb, monkeypatch):
    monkeypatch.setattr(gs, "MAX_PAYLOAD", 20_000)
    gwb.make(crm(800))
    gwb.emu.reset_counts()
    run(gwb.address, now=NOW, book=gwb.book())
    assert gwb.emu.stats()["ops"]["values.batchUpdate"] > 2
    assert all(isinstance(v["score"], int) and v["owner"] in ("Ana", "Bob") for v in records(gwb).values())


# ---------------------------------------------------------------- rows that move under a run


def test_a_row_inserted_above_between_read_and_write_keeps_every_value_on_its_record(gwb):
    gwb.make(crm(8))
    gwb.emu.reset_counts()
    typed = ["C-NEW", "Typed meanwhile", "new@acme.com", "Intern", 1, "lead"]
    gwb.emu.after_request(
        lambda e: e.insert_rows(gwb.sid, "Contacts", 3, 1, [typed]),
        path=r"/v4/spreadsheets/[^/]+$",
        method="GET",
    )
    result = run(gwb.address, now=NOW, book=gwb.book())
    assert result.written
    rows = gwb.rows("Contacts")
    header = rows[0]
    got = {r[0]: dict(zip(header, r)) for r in rows[1:]}
    assert rows[2][0] == "C-NEW" and got["C-NEW"].get("score", "") == ""  # the person's row: untouched
    for i in range(1, 9):
        rec = got[f"C-{i:05d}"]
        assert rec["score"] == expected(i), rec
        assert rec["first_name"] == f"Name {i}"
    activity = gwb.rows("Activity")
    assert len(activity) - 1 == len(result.plan.changes)  # appended below, nothing overwritten


def test_a_sorted_sheet_still_gets_every_value_on_its_record(gwb):
    gwb.make(crm(9))
    gwb.emu.after_request(
        lambda e: e.sort_rows(gwb.sid, "Contacts", "B", descending=True),
        path=r"/v4/spreadsheets/[^/]+$",
        method="GET",
    )
    run(gwb.address, now=NOW, book=gwb.book())
    for key, rec in records(gwb).items():
        i = int(key[2:])
        assert rec["first_name"] == f"Name {i}"
        assert rec["score"] == expected(i)


def test_a_record_deleted_meanwhile_is_not_written_and_named(gwb):
    gwb.make(crm(5))
    gwb.emu.after_request(
        lambda e: e.delete_rows(gwb.sid, "Contacts", 3), path=r"/v4/spreadsheets/[^/]+$", method="GET"
    )
    result = run(gwb.address, now=NOW, book=gwb.book())
    assert "C-00002" not in records(gwb)
    assert any("C-00002" in p.message for p in result.plan.problems)
    assert all(rec["score"] != "" for rec in records(gwb).values())


# ---------------------------------------------------------------- faults


def _count_requests(gwb, tmp_path) -> int:
    gwb.make(crm(4))
    gwb.emu.reset_counts()
    run(gwb.address, now=NOW, book=gwb.book(), outbox=tmp_path / "probe")
    return gwb.emu.stats()["requests"]


@pytest.mark.parametrize("status", [503, pytest.param(429, marks=pytest.mark.slow)])
def test_a_fault_at_every_request_retries_then_fails_cleanly_and_never_sends_twice(gwb, tmp_path, status):
    total = _count_requests(gwb, tmp_path)
    assert total >= 6
    for at in range(1, total + 1):
        gwb.make(crm(4))
        outbox = tmp_path / f"outbox-{status}-{at}"
        gwb.tmp = tmp_path / f"machine-{status}-{at}"
        gwb.emu.reset_counts()
        gwb.emu.clear_faults()
        if at == 1:
            gwb.emu.fail(status, times=gs.MAX_TRIES)
        else:
            gwb.emu.after_request(lambda e: e.fail(status, times=gs.MAX_TRIES), after=at - 1)
        try:  # a lease whose release failed lapses after lease_ttl; short here, so the next run can start
            run(gwb.address, now=NOW, book=gwb.book(lease_ttl=0.6), outbox=outbox)
            failed = False
        except GoogleUnavailable as e:
            assert f"after {gs.MAX_TRIES} tries" in str(e)
            failed = True
        gwb.emu.clear_faults()
        statuses = [entry["status"] for entry in gwb.emu.log]
        assert statuses.count(status) <= gs.MAX_TRIES  # bounded
        scores = [rec.get("score", "") for rec in records(gwb).values()]
        assert all(s == "" for s in scores) or all(s != "" for s in scores), (at, scores)  # all or nothing
        # the next run (no faults) finishes the job; no email twice, none lost
        time.sleep(0.7)
        run(gwb.address, now=NOW + dt.timedelta(minutes=5), book=gwb.book(), outbox=outbox)
        assert len(list(outbox.glob("*.eml"))) == 2, (at, failed)
        rows = gwb.rows("Emails")
        keys = [r[rows[0].index("key")] for r in rows[1:]]
        assert len(keys) == len(set(keys)) == 2, (at, rows)
        assert [r[rows[0].index("status")] for r in rows[1:]] == ["sent", "sent"], (at, rows)


def test_transient_faults_and_retry_after_are_absorbed(gwb):
    gwb.make(crm(3))
    waits: list[float] = []
    gwb.emu.fail(429, times=2, retry_after=0.25, kind="write")
    gwb.emu.fail(500, times=1, kind="metadata")
    run(gwb.address, now=NOW, book=gwb.book(sleep=waits.append))
    assert waits.count(0.25) == 2  # Retry-After honoured
    assert all(rec["score"] != "" for rec in records(gwb).values())


def test_a_request_that_times_out_is_retried_and_lands_once(gwb):
    gwb.make(crm(3))
    gwb.emu.fail(0, times=1, delay=1.5, path=r"values:batchUpdate")
    result = run(gwb.address, now=NOW, book=gwb.book(timeout=0.5))
    assert result.written
    activity = gwb.rows("Activity")
    assert len(activity) - 1 == len(result.plan.changes)  # explicit ranges: a retried write adds no rows


# ---------------------------------------------------------------- the lease


def test_two_runners_one_runs_the_other_waits_or_exits_3(gwb, monkeypatch, capsys):
    gwb.make(crm(3))
    holder = gwb.book()
    with holder.lease():
        meta = gwb.emu.metadata(gwb.sid)
        lease = next(s for s in meta["sheets"] if s["properties"]["title"] == "_sheetflow")
        assert lease["properties"].get("hidden") is True
        with pytest.raises(WorkbookBusy):
            run(gwb.address, now=NOW, book=gwb.book())
        with pytest.raises(WorkbookBusy):
            with gwb.book().lease(wait=0.3):
                pass
        monkeypatch.setenv(gs.ENDPOINT_ENV, gwb.emu.base_url)
        monkeypatch.chdir(gwb.tmp)
        assert main(["run", f"gsheets:{gwb.sid}", "--now", "2026-11-23T10:00"]) == 3
        assert "another sheetflow run" in capsys.readouterr().out
    assert "_sheetflow" not in gwb.book().read()  # the backend's own sheet is not shown
    assert run(gwb.address, now=NOW, book=gwb.book()).written  # released


def test_an_expired_lease_is_taken_over_and_a_long_run_renews_its_own(gwb):
    gwb.make(crm(2))
    with gwb.book().lease():  # makes the lease sheet
        pass
    crashed = ["other-host:1:abc", time.time() + 0.3, ""]  # a runner that died holding it
    gwb.emu.set_values(gwb.sid, "'_sheetflow'!A2:C2", [crashed], "RAW")
    with pytest.raises(WorkbookBusy, match="other-host"):
        with gwb.book().lease():
            pass
    with gwb.book(lease_ttl=0.6).lease(wait=5):  # waits for the expiry, then takes over
        first = gwb.emu.values(gwb.sid, "'_sheetflow'!A2:B2")[0]
        assert first[0] != crashed[0]
        time.sleep(0.5)
        later = gwb.emu.values(gwb.sid, "'_sheetflow'!A2:B2")[0]
        assert later[0] == first[0] and later[1] > first[1]  # renewed while held
    assert gwb.emu.values(gwb.sid, "'_sheetflow'!A2:B2") == []  # released


# ---------------------------------------------------------------- addresses, credentials, errors


def test_addresses():
    sid = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abc"
    assert spreadsheet_id(f"gsheets:{sid}") == sid
    assert spreadsheet_id(f"https://docs.google.com/spreadsheets/d/{sid}/edit#gid=0") == sid
    assert spreadsheet_id(f"gsheets:https://docs.google.com/spreadsheets/u/1/d/{sid}/edit") == sid
    assert spreadsheet_id("crm.xlsx") is None
    with pytest.raises(UsageError, match="between /d/ and /edit"):
        spreadsheet_id("gsheets:short")
    assert isinstance(open_book(f"https://docs.google.com/spreadsheets/d/{sid}/edit"), GSheetsBook)


def test_not_shared_names_the_address_to_share_with(tmp_path):
    with start() as emu:
        sid = emu.create_spreadsheet(crm(2), allowed_callers=["owner@example.com"])
        client = emulator_client(emu.base_url, caller="sheetflow@proj.iam.gserviceaccount.com")
        book = GSheetsBook(f"gsheets:{sid}", client=client, workdir=tmp_path)
        with pytest.raises(GoogleAccessError, match="not shared with .*Share"):
            book.read()


def test_api_not_enabled_and_wrong_id(tmp_path):
    with start(Emulator(api_disabled=True)) as emu:
        sid = emu.create_spreadsheet(crm(2))
        with pytest.raises(GoogleAccessError, match="API is not enabled.*console.cloud.google.com"):
            GSheetsBook(f"gsheets:{sid}", client=emulator_client(emu.base_url), workdir=tmp_path).read()
    emu = emulator()
    with pytest.raises(GoogleAccessError, match="no Google spreadsheet with id"):
        GSheetsBook("gsheets:" + "1" * 44, client=emulator_client(emu.base_url), workdir=tmp_path).read()


def test_no_credentials_is_a_clear_message_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(gs.ENDPOINT_ENV, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setattr("gspread.auth.DEFAULT_SERVICE_ACCOUNT_FILENAME", tmp_path / "none.json")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "gsheets:" + "1" * 44]) == 1
    out = capsys.readouterr()
    assert "no Google credentials" in out.out and "Traceback" not in out.out + out.err
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    assert main(["check", "gsheets:" + "1" * 44]) == 1
    assert "not a file" in capsys.readouterr().out
    (tmp_path / "sheetflow.toml").write_text('[google]\ncredentials = "key.json"\n')
    (tmp_path / "key.json").write_text("{}")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    assert main(["check", "gsheets:" + "1" * 44]) == 1
    assert "not a service account key" in capsys.readouterr().out


# ---------------------------------------------------------------- values as Google has them


def test_time_zone_and_locale_come_from_the_spreadsheet_unless_settings_say_otherwise(tmp_path):
    emu = emulator()
    sid = emu.create_spreadsheet({"Contacts": contacts(1)}, locale="pt_BR", time_zone="America/Sao_Paulo")
    book = GSheetsBook(f"gsheets:{sid}", client=emulator_client(emu.base_url), workdir=tmp_path)
    settings = load(book.read()).settings
    assert settings.text("timezone") == "America/Sao_Paulo" and settings.locale.code == "pt-BR"
    sid = emu.create_spreadsheet(
        {"Settings": [["key", "value"], ["timezone", "Europe/Lisbon"]], "Contacts": contacts(1)},
        time_zone="America/Sao_Paulo",
    )
    book = GSheetsBook(f"gsheets:{sid}", client=emulator_client(emu.base_url), workdir=tmp_path)
    assert load(book.read()).settings.text("timezone") == "Europe/Lisbon"


def test_dates_are_written_as_serials_with_a_date_format(gwb):
    gwb.make(crm(2))
    run(gwb.address, now=NOW, book=gwb.book())
    cell = gwb.emu.cell(gwb.sid, "'Runs'!B2")
    assert isinstance(cell.value, (int, float)) and cell.fmt["numberFormat"]["type"] in ("DATE", "DATE_TIME")
    assert from_serial(cell.value) == NOW


def test_demo_runs_on_a_fresh_emulator(tmp_path, capsys):
    from sheetflow.testing.gsheets_demo import main as gsheets_demo  # what `sheetflow demo --gsheets` runs

    assert gsheets_demo([str(tmp_path / "demo"), "--contacts", "30"]) == 0
    out = capsys.readouterr().out
    assert "local Google Sheets emulator" in out and "Google Sheets API requests for this run" in out
    assert "values.append" not in out and "problems found" in out
    assert list((tmp_path / "demo" / "outbox").glob("*.eml"))


def test_a_menu_request_in_the_control_sheet_is_answered_by_the_scheduler(gwb, monkeypatch):
    """What addin/google/Code.gs writes (action, who, when, "waiting" in the first free request row) is what
    the scheduler answers on a Google spreadsheet."""
    from sheetflow.commands import schedule as scheduler
    from sheetflow.tables import control

    gwb.make(crm(3))
    book = gwb.book()
    book.read()
    book.write([control.new_control_patch("en")])
    row = control.REQUEST_HEADER_ROW + 1
    gwb.emu.set_values(
        gwb.sid, f"'Control'!A{row}:D{row}", [["Check", "ana@example.com", 46349.4, "waiting"]], "RAW"
    )
    monkeypatch.setenv(gs.ENDPOINT_ENV, gwb.emu.base_url)
    monkeypatch.chdir(gwb.tmp)

    class Clock:
        def now(self):
            return dt.datetime(2026, 11, 23, 13, 0, tzinfo=dt.timezone.utc)

        def sleep(self, seconds):
            pass

    wb = scheduler.Workbook.open(gwb.address)
    done = scheduler.answer_requests(
        wb, lambda wb_, action, slot=None: scheduler.run_once(wb_.address, action), Clock()
    )
    assert len(done) == 1
    answered = gwb.rows("Control")[row - 1]
    assert answered[3] == "done" and answered[4] != "" and answered[5] != ""
    assert scheduler.answer_requests(wb, lambda *a, **k: pytest.fail("answered twice"), Clock()) == []


def test_a_record_without_an_id_is_not_written_when_rows_moved_above_it(gwb):
    sheets = crm(4)
    sheets["Contacts"][4][0] = None  # C-00004 gets its id in this run
    gwb.make(sheets)
    gwb.emu.after_request(
        lambda e: e.insert_rows(gwb.sid, "Contacts", 2, 1, [["C-NEW", "Typed meanwhile"]]),
        path=r"/v4/spreadsheets/[^/]+$",
        method="GET",
    )
    result = run(gwb.address, now=NOW, book=gwb.book())
    rows = gwb.rows("Contacts")
    header = rows[0]
    by_name = {r[1]: dict(zip(header, r)) for r in rows[1:]}
    assert by_name["Typed meanwhile"].get("score", "") == ""  # nothing landed on the person's row
    assert by_name["Name 4"]["id"] == "" and by_name["Name 4"].get("score", "") == ""  # not written...
    assert any("no id" in p.message for p in result.plan.problems)  # ...and said so
    assert all(by_name[f"Name {i}"]["score"] == expected(i) for i in (1, 2, 3))


def test_rows_a_person_adds_below_a_log_meanwhile_are_kept_and_ours_go_below(gwb):
    gwb.make(crm(3))
    run(gwb.address, now=NOW, book=gwb.book())
    before = gwb.rows("Activity")
    gwb.emu.set_values(gwb.sid, "'Contacts'!E2", [[90]], "RAW")  # C-00001 gets big: its score changes
    mine = ["typed by a person", "", "Contacts", "C-00001", "note", "", "", "by hand"]
    gwb.emu.after_request(
        lambda e: e.set_values(gwb.sid, f"'Activity'!A{len(before) + 1}", [mine], "RAW"),
        path=r"/v4/spreadsheets/[^/]+$",
        method="GET",
    )
    result = run(gwb.address, now=NOW + dt.timedelta(days=1), book=gwb.book())
    after = gwb.rows("Activity")
    assert after[: len(before)] == before
    assert after[len(before)] == mine  # the person's row: intact
    assert len(after) == len(before) + 1 + len(result.plan.changes)  # ours below it
    assert all(r[3] == "C-00001" for r in after[len(before) + 1 :])

"""The scheduled runner (issue 14): schedule text, slots and DST, missed runs, isolation, one runner, run-due,
status, requests from the Control sheet, logs, --print-service. Time is an injected clock: no real waiting."""

from __future__ import annotations

import configparser
import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from sheetflow.cli.main import main
from sheetflow.commands import schedule as scheduler
from sheetflow.commands.init import create_starter
from sheetflow.commands.schedule import (
    UTC,
    JobState,
    Outcome,
    Redact,
    Runner,
    Workbook,
    parse_schedule,
    run_due,
    runner_lock,
    schedule_from_flags,
)
from sheetflow.commands.service import print_service, service_files
from sheetflow.problems import UsageError, WorkbookBusy
from tests.conftest import read_sheet

NY = ZoneInfo("America/New_York")
SP = ZoneInfo("America/Sao_Paulo")


class FakeClock:
    """Time that moves only when the runner sleeps (and jumps when a test says the machine slept)."""

    def __init__(self, start: dt.datetime, until: dt.datetime | None = None):
        self.t = start
        self.until = until
        self.jumps: list[tuple[dt.datetime, dt.timedelta]] = []  # (when reached, extra sleep)
        self.hooks: list[tuple[dt.datetime, object]] = []  # (when reached, fn): "a person" does something
        self.sleeps = 0

    def now(self) -> dt.datetime:
        return self.t

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.sleeps += 1
        assert self.sleeps < 100_000, "the runner loops without advancing"
        self.t += dt.timedelta(seconds=max(seconds, 0.001))
        for when, extra in list(self.jumps):
            if self.t >= when:
                self.t += extra
                self.jumps.remove((when, extra))
        for when, fn in list(self.hooks):
            if self.t >= when:
                self.hooks.remove((when, fn))
                fn()
        if self.until is not None and self.t >= self.until:
            stop.set()


class StubBook:
    """Just what the runner needs of a Book when the executor is faked: identity, workdir, fingerprint."""

    def __init__(self, folder: Path):
        self.address = str(folder / "crm.xlsx")
        self.identity = "crm.xlsx"
        self.workdir = folder / ".sheetflow"

    def fingerprint(self) -> str:
        return "same"


def workbook(tmp_path: Path, text: str, zone=NY, state: dict | None = None) -> Workbook:
    book = StubBook(tmp_path)
    js = JobState.of(book)
    if state:
        js.data = {k: v.isoformat() for k, v in state.items()}
        js.save()
    spec = parse_schedule(text)
    wb = Workbook(book.address, book, js, override=spec, spec=spec, zone=zone, seen="same")
    return wb


class Recorder:
    def __init__(self, clock: FakeClock, fail_on: set[int] = frozenset()):
        self.clock = clock
        self.fail_on = fail_on
        self.calls: list[dt.datetime] = []

    def __call__(self, address: str, action: str) -> Outcome:
        self.calls.append(self.clock.now())
        if len(self.calls) in self.fail_on:
            raise RuntimeError(f"boom in run {len(self.calls)}")
        return Outcome(action, "done", f"run {len(self.calls)}")


def serve(wb: Workbook, clock: FakeClock, **kw) -> tuple[Runner, Recorder]:
    rec = Recorder(clock, kw.pop("fail_on", set()))
    runner = Runner([wb], clock=clock, executor=rec, requests=False, **kw)
    runner.serve()
    return runner, rec


# ---------------------------------------------------------------- schedule text


@pytest.mark.parametrize(
    "text, every, days, minutes",
    [
        ("every 15m", 900, None, None),
        ("Every 2 hours", 7200, None, None),
        ("a cada 30 minutos", 1800, None, None),
        ("15m", 900, None, None),
        ("Mon-Fri 08:00", None, {0, 1, 2, 3, 4}, (480,)),
        ("Seg-Sex 08:00, 14:00", None, {0, 1, 2, 3, 4}, (480, 840)),
        ("Segunda a Sexta 8h30", None, {0, 1, 2, 3, 4}, (510,)),
        ("sáb, dom 10h", None, {5, 6}, (600,)),
        ("08:00", None, set(range(7)), (480,)),
        ("todos os dias às 07:15", None, set(range(7)), (435,)),
        ("daily 18:00", None, set(range(7)), (1080,)),
        ("Tue 08:00", None, {1}, (480,)),
        ("Terça e Quinta 08:00", None, {1, 3}, (480,)),
        ("Sexta-feira 17h", None, {4}, (1020,)),
        ("Mon-Fri at 08:00 and 14:00", None, {0, 1, 2, 3, 4}, (480, 840)),
        ("Seg-Sex 08:00 e 14:00", None, {0, 1, 2, 3, 4}, (480, 840)),
        ("Sat 10:00, Sun 10:00", None, {5, 6}, (600,)),
    ],
)
def test_schedule_vocabulary_en_and_pt_br(text, every, days, minutes):
    spec = parse_schedule(text)
    if every is not None:
        assert spec.every == dt.timedelta(seconds=every)
    else:
        assert spec.every is None
        assert set(spec.times[0][0]) == days
        assert spec.times[0][1] == minutes


def test_schedule_clauses_and_off():
    spec = parse_schedule("Mon-Fri 08:00; Sat 10:00")
    assert spec.slots_on(dt.date(2026, 11, 23)) == [480]  # Monday
    assert spec.slots_on(dt.date(2026, 11, 28)) == [600]  # Saturday
    assert spec.slots_on(dt.date(2026, 11, 29)) == []  # Sunday
    for off in ("", "off", "Nunca", None):
        assert parse_schedule(off) is None


@pytest.mark.parametrize(
    "text, words",
    [
        ("Mon-Fri", "no time of day"),
        ("Funday 08:00", '"Funday" is not a day'),
        ("every 5 parsecs", "unknown unit"),
        ("every 0m", "1 minute to 31 days"),
        ("25:00", "not a time of day"),
        ("Seg-Sex 08:61", "not a time of day"),
    ],
)
def test_bad_schedule_text_says_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        parse_schedule(text)


def test_flags_make_a_schedule_and_refuse_mixtures():
    assert schedule_from_flags("15m", None, None).every == dt.timedelta(minutes=15)
    spec = schedule_from_flags(None, "08:00,14:00", "seg-sex")
    assert spec.times == ((frozenset(range(5)), (480, 840)),)
    with pytest.raises(UsageError):
        schedule_from_flags("15m", "08:00", None)
    with pytest.raises(UsageError):
        schedule_from_flags(None, None, "mon-fri")
    with pytest.raises(UsageError, match="--every"):
        schedule_from_flags("soon", None, None)


# ---------------------------------------------------------------- the loop


def test_n_runs_happen_at_the_interval(tmp_path):
    clock = FakeClock(dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    runner, rec = serve(workbook(tmp_path, "every 15m"), clock, max_runs=4)
    assert runner.runs == 4
    assert [c - rec.calls[0] for c in rec.calls] == [dt.timedelta(minutes=15 * i) for i in range(4)]


def test_an_exception_in_one_run_does_not_stop_the_next(tmp_path):
    clock = FakeClock(dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    runner, rec = serve(workbook(tmp_path, "every 15m"), clock, max_runs=3, fail_on={2})
    assert len(rec.calls) == 3
    assert [o.status for _, _, o in runner.outcomes] == ["done", "failed", "done"]
    assert "boom in run 2" in runner.outcomes[1][2].summary
    assert JobState(tmp_path / ".sheetflow" / "crm.xlsx.schedule.json").last["summary"] == "run 3"


def test_a_missed_daily_run_is_caught_up_exactly_once_on_start(tmp_path):
    # last served Monday 08:00; the machine was off until Thursday 10:00 (three slots missed)
    last = dt.datetime(2026, 11, 23, 8, 0, tzinfo=NY)
    start = dt.datetime(2026, 11, 26, 10, 0, tzinfo=NY)
    clock = FakeClock(start, until=dt.datetime(2026, 11, 27, 7, 0, tzinfo=NY))
    wb = workbook(tmp_path, "Mon-Fri 08:00", state={"since": last, "last_slot": last})
    runner, rec = serve(wb, clock)
    assert rec.calls == [start]  # once, at start, not three times
    assert wb.state.last_slot == dt.datetime(2026, 11, 26, 8, 0, tzinfo=NY)
    # a second start the same day runs nothing more
    clock2 = FakeClock(start + dt.timedelta(hours=1), until=dt.datetime(2026, 11, 27, 7, 0, tzinfo=NY))
    wb2 = workbook(tmp_path, "Mon-Fri 08:00")
    _, rec2 = serve(wb2, clock2)
    assert rec2.calls == []


def test_a_daily_run_missed_while_the_machine_slept_is_caught_up_once_on_wake(tmp_path):
    start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=NY)  # Monday, after 08:00: nothing missed yet
    clock = FakeClock(start, until=dt.datetime(2026, 11, 27, 7, 0, tzinfo=NY))
    # the machine sleeps from Monday 20:00 to Thursday 11:00
    clock.jumps.append((dt.datetime(2026, 11, 23, 20, 0, tzinfo=NY), dt.timedelta(days=2, hours=15)))
    _, rec = serve(workbook(tmp_path, "08:00"), clock)
    local = [c.astimezone(NY) for c in rec.calls]
    assert len(local) == 1, local
    assert local[0].date() == dt.date(2026, 11, 26) and local[0].hour >= 11  # once, on waking


def test_a_first_start_catches_up_nothing(tmp_path):
    clock = FakeClock(
        dt.datetime(2026, 11, 23, 9, 0, tzinfo=NY), until=dt.datetime(2026, 11, 24, 7, 0, tzinfo=NY)
    )
    _, rec = serve(workbook(tmp_path, "Mon-Fri 08:00"), clock)
    assert rec.calls == []


@pytest.mark.parametrize(
    "day", [dt.date(2026, 3, 8), dt.date(2026, 11, 1)], ids=["spring-forward", "fall-back"]
)
def test_dst_days_get_exactly_one_0800_run(tmp_path, day):
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12, 0), tzinfo=NY)
    clock = FakeClock(start, until=dt.datetime.combine(day + dt.timedelta(days=1), dt.time(12, 0), tzinfo=NY))
    _, rec = serve(workbook(tmp_path, "08:00"), clock)
    local = [c.astimezone(NY) for c in rec.calls]
    assert [(t.date(), t.hour, t.minute) for t in local] == [(day, 8, 0), (day + dt.timedelta(days=1), 8, 0)]


@pytest.mark.parametrize(
    "day, at, count", [(dt.date(2026, 3, 8), "02:30", 1), (dt.date(2026, 11, 1), "01:30", 1)]
)
def test_a_time_inside_the_dst_change_still_runs_once(tmp_path, day, at, count):
    start = dt.datetime.combine(day, dt.time(0, 0), tzinfo=NY)
    clock = FakeClock(start, until=start + dt.timedelta(hours=23))
    _, rec = serve(workbook(tmp_path, at), clock)
    assert len(rec.calls) == count


def test_each_workbook_runs_on_its_own_schedule_and_zone(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    clock = FakeClock(
        dt.datetime(2026, 11, 23, 0, 0, tzinfo=UTC), until=dt.datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    )
    calls = []

    def executor(address, action):
        calls.append((Path(address).parent.name, clock.now()))
        return Outcome(action, "done", "ok")

    since = {"since": clock.now()}
    runner = Runner(
        [workbook(a, "08:00", NY, since), workbook(b, "08:00", SP, since)],
        clock=clock,
        executor=executor,
        requests=False,
    )
    runner.serve()
    assert calls == [
        ("b", dt.datetime(2026, 11, 23, 8, 0, tzinfo=SP)),  # 11:00 UTC
        ("a", dt.datetime(2026, 11, 23, 8, 0, tzinfo=NY)),  # 13:00 UTC
    ]


def test_the_schedule_is_in_the_workbook_time_zone(tmp_path):
    spec = parse_schedule("Seg-Sex 08:00")
    nxt = spec.next_after(dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC), SP)  # 09:00 in São Paulo
    assert nxt.astimezone(SP) == dt.datetime(2026, 11, 24, 8, 0, tzinfo=SP)


# ---------------------------------------------------------------- real workbooks


def starter(tmp_path: Path, schedule: str | None = None, *, key: str = "schedule", lang: str = "en") -> Path:
    path = tmp_path / "crm.xlsx"
    create_starter(path, lang=lang, example=True)
    wb = load_workbook(path)
    ws = wb["Settings"] if "Settings" in wb.sheetnames else wb["Configurações"]
    for row in ws.iter_rows(min_row=2):
        if row[0].value and str(row[0].value).strip() in ("send_window", "janela_de_envio"):
            row[1].value = "always"
    if schedule is not None:
        ws.append([key, schedule])
    wb.save(path)
    return path


def test_settings_schedule_pt_br_key_and_flags_override(tmp_path, capsys):
    path = starter(tmp_path, "Seg-Sex 08:00, 14:00", key="agenda")
    wb = Workbook.open(str(path))
    assert wb.spec.text == "Seg-Sex 08:00, 14:00" and wb.problem == ""
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "schedule: Seg-Sex 08:00, 14:00; next run" in out
    assert main(["status", str(path), "--every", "2h"]) == 0
    assert "schedule: every 2h" in capsys.readouterr().out


def test_a_bad_settings_schedule_names_its_cell(tmp_path, capsys):
    path = starter(tmp_path, "Seg-Sexta")
    wb = Workbook.open(str(path))
    assert wb.spec is None
    assert wb.problem.startswith("Settings!B") and "no time of day" in wb.problem
    assert main(["status", str(path)]) == 0
    assert "Settings!B" in capsys.readouterr().out
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "Settings!B" in out and "schedule:" in out and "no time of day" in out


def test_an_edited_settings_schedule_is_picked_up_while_watching(tmp_path):
    path = starter(tmp_path, "Mon-Fri 08:00")
    start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=NY)  # Monday, after 08:00
    clock = FakeClock(start, until=start + dt.timedelta(hours=1))
    said = []

    def edit():
        wb = load_workbook(path)
        ws = wb["Settings"]
        for row in ws.iter_rows(min_row=2):
            if row[0].value == "schedule":
                row[1].value = "every 15m"
        wb.save(path)

    clock.hooks.append((start + dt.timedelta(minutes=10), edit))
    rec = Recorder(clock)
    runner = Runner(
        [Workbook.open(str(path))], clock=clock, executor=rec, requests=False, poll=30, say=said.append
    )
    runner.serve()
    assert rec.calls and rec.calls[0] - start < dt.timedelta(minutes=11)  # at once: never ran as every 15m
    assert [b - a for a, b in zip(rec.calls, rec.calls[1:])] == [dt.timedelta(minutes=15)] * (
        len(rec.calls) - 1
    )
    assert len(rec.calls) == 4
    assert any("schedule is now every 15m" in line for line in said)


def test_run_due_runs_once_per_slot_and_nothing_otherwise(tmp_path):
    path = starter(tmp_path, "Mon-Fri 08:00")
    calls = []

    def executor(address, action):
        calls.append(action)
        return Outcome(action, "done", "ok")

    monday_7 = dt.datetime(2026, 11, 23, 7, 0, tzinfo=NY)
    for minutes in (0, 30, 63, 68, 120):  # 07:00, 07:30, 08:03, 08:08, 09:00
        clock = FakeClock(monday_7 + dt.timedelta(minutes=minutes))
        run_due(str(path), clock=clock, executor=executor, requests=False)
    assert calls == ["run"]  # 08:03 only
    clock = FakeClock(dt.datetime(2026, 11, 27, 9, 0, tzinfo=NY))  # Friday: Tue-Fri missed, caught up once
    assert [o.summary for o in run_due(str(path), clock=clock, executor=executor, requests=False)] == ["ok"]
    assert len(calls) == 2


def test_run_due_reads_no_sheet_when_nothing_changed_and_nothing_is_due(tmp_path, monkeypatch):
    from sheetflow.book.xlsx import XlsxBook

    path = starter(tmp_path, "Mon-Fri 08:00")
    reads = []
    real_read = XlsxBook.read
    monkeypatch.setattr(XlsxBook, "read", lambda self, **kw: reads.append(1) or real_read(self, **kw))

    def executor(address, action):
        return Outcome(action, "done", "ok")

    clock = FakeClock(dt.datetime(2026, 11, 23, 7, 0, tzinfo=NY))
    run_due(str(path), clock=clock, executor=executor)
    first = len(reads)
    assert first >= 1
    for minutes in (5, 10, 15):
        run_due(str(path), clock=FakeClock(clock.now() + dt.timedelta(minutes=minutes)), executor=executor)
    assert len(reads) == first  # three cheap looks: a fingerprint each, no sheet read
    wb = load_workbook(path)  # someone edits the schedule: the next look reads it
    for row in wb["Settings"].iter_rows(min_row=2):
        if row[0].value == "schedule":
            row[1].value = "every 15m"
    wb.save(path)
    assert [o.action for o in run_due(str(path), clock=clock, executor=executor)] == ["run"]
    assert len(reads) > first


def test_two_schedulers_on_one_workbook_one_runs_one_refuses(tmp_path, capsys):
    path = starter(tmp_path)
    book = Workbook.open(str(path)).book
    with runner_lock(book, "schedule"):
        with pytest.raises(WorkbookBusy, match=r"already running .*schedule pid \d+"):
            with runner_lock(Workbook.open(str(path)).book, "schedule"):
                pass
        assert main(["run-due", str(path), "--every", "15m"]) == 3
        assert "already running" in capsys.readouterr().out
        assert main(["status", str(path)]) == 0
        assert f"runner on this machine: schedule pid {os.getpid()}" in capsys.readouterr().out
    with runner_lock(book, "schedule"):  # released: the next one may run
        pass


def test_status_says_who_holds_the_run_lease(tmp_path, capsys):
    path = starter(tmp_path)
    book = Workbook.open(str(path)).book
    with book.lease():
        assert main(["status", str(path)]) == 0
        assert "run lease: held: another sheetflow run is working on crm.xlsx" in capsys.readouterr().out
    assert main(["status", str(path)]) == 0
    assert "run lease: free" in capsys.readouterr().out


def test_a_failed_run_is_written_to_runs_and_the_loop_goes_on(tmp_path, monkeypatch, capsys):
    path = starter(tmp_path)
    import sheetflow.commands.run as pipeline

    def broken(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(pipeline, "run", broken)
    outcome = scheduler.run_once(str(path), "run")
    assert outcome.status == "failed" and "internal error: RuntimeError: simulated bug" in outcome.summary
    runs = read_sheet(path, "Runs")
    assert "the scheduled run did not happen" in str(runs[-1][-1])
    assert runs[-1][4] == "schedule"
    monkeypatch.undo()
    assert main(["status", str(path)]) == 0
    assert "problem: the scheduled run did not happen: internal error" in capsys.readouterr().out
    try:
        from sheetflow.tables import control
    except ImportError:  # the Control sheet arrives with issue 13
        return
    panel = control.read_control(Workbook.open(str(path)).book.read())
    if panel is not None and not panel.problems:
        status = load_workbook(path)[panel.sheet].cell(control.STATUS_ROW, control.VALUE_COL).value
        assert status.startswith("failed") and "simulated bug" in status


def test_a_failed_run_writes_the_control_status(tmp_path, monkeypatch):
    path = starter(tmp_path)
    control = _with_requests(path)
    import sheetflow.commands.run as pipeline

    def broken(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(pipeline, "run", broken)
    assert scheduler.run_once(str(path), "run").status == "failed"
    sheet = load_workbook(path)[control.find_sheet(["Control", "Controle"])]
    status = sheet.cell(control.STATUS_ROW, control.VALUE_COL).value
    assert status.startswith("failed") and "simulated bug" in status
    assert isinstance(sheet.cell(control.LAST_RUN_ROW, control.VALUE_COL).value, dt.datetime)


def test_busy_workbook_is_skipped_and_says_so(tmp_path):
    path = starter(tmp_path)
    book = Workbook.open(str(path)).book
    with book.lease():
        t0 = time.monotonic()
        outcome = scheduler.run_once(str(path), "run", lease_wait=0.3)
        assert time.monotonic() - t0 < 5
    assert outcome.status == "skipped" and "another sheetflow run" in outcome.summary


def test_logs_never_hold_secrets_or_email_bodies(tmp_path):
    record = logging.LogRecord(
        "x", logging.INFO, "", 0, "smtp password=hunter2 token: abc123 %s", ("x",), None
    )
    Redact().filter(record)
    assert "hunter2" not in record.getMessage() and "abc123" not in record.getMessage()
    record = logging.LogRecord(
        "x", logging.INFO, "", 0, "https://ana:s3cret@host/x Bearer eyJhbGci", None, None
    )
    Redact().filter(record)
    assert "s3cret" not in record.getMessage() and "eyJhbGci" not in record.getMessage()


def test_each_workbook_logs_beside_itself(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    books = [StubBook(a), StubBook(b)]
    for stub in books:
        stub.address = str(stub.workdir.parent / "crm.xlsx")
        scheduler.file_logging(stub)
    scheduler.log.info("%s: run done", books[0].address)
    scheduler.log.info("signal 15: stopping")
    one = (a / ".sheetflow" / "logs" / "scheduler.log").read_text()
    two = (b / ".sheetflow" / "logs" / "scheduler.log").read_text()
    assert books[0].address in one and books[0].address not in two
    assert "signal 15" in one and "signal 15" in two


@pytest.mark.slow
def test_run_due_end_to_end_sends_once_and_logs_no_body(tmp_path, capsys):
    path = starter(tmp_path)
    assert main(["run-due", str(path), "--every", "15m"]) == 0
    out = capsys.readouterr().out
    assert "run done" in out and "emails sent" in out
    outbox = sorted((tmp_path / "outbox").glob("*.eml"))
    assert outbox
    assert main(["run-due", str(path), "--every", "15m"]) == 0
    assert "nothing is due" in capsys.readouterr().out
    assert sorted((tmp_path / "outbox").glob("*.eml")) == outbox
    log_text = (tmp_path / ".sheetflow" / "logs" / "scheduler.log").read_text()
    assert "run done" in log_text
    body = outbox[0].read_text(errors="replace").split("\n\n", 1)[1].strip().splitlines()[0]
    assert body and body not in log_text
    assert main(["status", str(path), "--every", "15m"]) == 0
    out = capsys.readouterr().out
    assert "last run:" in out and "(schedule)" in out and "run lease: free" in out


def test_status_says_why_emails_wait(tmp_path, capsys):
    path = starter(tmp_path)
    wb = load_workbook(path)
    ws = wb["Settings"]
    for row in ws.iter_rows(min_row=2):
        if row[0].value == "send_window":
            row[1].value = "Sun 23:58-23:59"
    wb.save(path)
    assert main(["run", str(path), "--now", "2026-11-23T10:00"]) in (0, 1)
    capsys.readouterr()
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    waiting = [line for line in out.splitlines() if line.startswith("  ") and " — " in line]
    assert waiting and all("send window closed now (outside Sun 23:58-23:59)" in line for line in waiting)
    wb2 = load_workbook(path)
    ws2 = wb2["Settings"]
    for row in ws2.iter_rows(min_row=2):
        if row[0].value == "send_window":
            row[1].value = "always"
        if row[0].value == "daily_email_limit":
            row[1].value = 0
    wb2.save(path)
    assert main(["status", str(path)]) == 0
    assert "daily limit reached (0 of 0 today)" in capsys.readouterr().out


def test_status_lists_delayed_actions_waiting(book, capsys):
    from sheetflow.commands.run import run

    path = book(
        {
            "Settings": [["key", "value"], ["timezone", "America/Sao_Paulo"], ["schedule", "Seg-Sex 08:00"]],
            "Contacts": [["id", "first_name", "lifecycle_stage", "owner"], ["C-1", "Ana", "lead", "Bob"]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
                [
                    "Follow up",
                    "Contacts",
                    "new",
                    'lifecycle_stage != "customer"',
                    "create_task",
                    "text=Hi",
                    "2d",
                    True,
                ],
            ],
        }
    )
    run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    wb = load_workbook(path)
    wb["Contacts"].append(["C-2", "Bia", "lead", "Bob"])
    wb.save(path)
    run(path, now=dt.datetime(2026, 3, 3, 9, 0))
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "delayed actions waiting: 1" in out and "due 2026-03-05 09:00: Follow up for C-2" in out
    assert "schedule: Seg-Sex 08:00; next run" in out and "time zone America/Sao_Paulo" in out


# ---------------------------------------------------------------- requests from the Control sheet


def test_a_control_request_is_answered_once(tmp_path):
    control = pytest.importorskip("sheetflow.tables.control")
    from sheetflow.book import SheetPatch

    path = starter(tmp_path)
    wb = Workbook.open(str(path))
    book = wb.book
    raws = book.read()
    if control.find_sheet(raws):  # init adds the Control sheet (issue 13)
        patch = SheetPatch(control.find_sheet(raws), dict(control.control_cells("en")))
    else:
        patch = control.new_control_patch("en")
    patch.cells[(control.REQUEST_HEADER_ROW + 1, 1)] = "Check"
    patch.cells[(control.REQUEST_HEADER_ROW + 1, 2)] = "ana@example.com"
    book.write([patch])
    calls = []

    def execute(wb_, action, slot=None):
        calls.append(action)
        return scheduler.run_once(wb_.address, action)

    clock = FakeClock(dt.datetime(2026, 11, 23, 13, 0, tzinfo=UTC))
    first = scheduler.answer_requests(wb, execute, clock)
    second = scheduler.answer_requests(wb, execute, clock)
    wb.control_seen = ""  # even a forced look finds nothing left to answer
    third = scheduler.answer_requests(wb, execute, clock)
    assert calls == ["check"] and len(first) == 1 and second == [] and third == []
    row = read_sheet(path, "Control")[control.REQUEST_HEADER_ROW]
    assert row[3] == "done" and row[4] and row[5]


def _with_requests(path: Path, *actions: str):
    control = pytest.importorskip("sheetflow.tables.control")
    from sheetflow.book import SheetPatch

    book = Workbook.open(str(path)).book
    raws = book.read()
    name = control.find_sheet(raws)
    patch = SheetPatch(name, dict(control.control_cells("en"))) if name else control.new_control_patch("en")
    for i, action in enumerate(actions):
        patch.cells[(control.REQUEST_HEADER_ROW + 1 + i, 1)] = action
        patch.cells[(control.REQUEST_HEADER_ROW + 1 + i, 2)] = "ana@example.com"
    book.write([patch])
    return control


def test_watch_mode_answers_each_request_once_and_names_a_bad_one(tmp_path):
    path = starter(tmp_path)
    control = _with_requests(path, "Report", "Launch rockets")
    calls = []

    def executor(address, action):
        calls.append(action)
        return scheduler.run_once(address, action)

    start = dt.datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    clock = FakeClock(start, until=start + dt.timedelta(minutes=5))
    runner = Runner([Workbook.open(str(path))], clock=clock, executor=executor, poll=30)
    runner.serve()
    assert calls == ["report"]  # no schedule: requests only, each once, the bad one never runs
    rows = read_sheet(path, "Control")
    first, second = rows[control.REQUEST_HEADER_ROW], rows[control.REQUEST_HEADER_ROW + 1]
    assert first[3] == "done" and first[5]
    assert second[3] == "failed" and 'unknown action "Launch rockets"' in second[5]
    assert f"Control!A{control.REQUEST_HEADER_ROW + 2}" in second[5]


# ---------------------------------------------------------------- --print-service


def test_print_service_systemd_units_parse(tmp_path):
    folder = tmp_path / "team share"
    folder.mkdir()
    files = service_files("systemd", str(folder / "crm.xlsx"))
    assert set(files) == {"sheetflow-crm.service", "sheetflow-crm.timer"}
    for name, text in files.items():
        ini = configparser.ConfigParser(strict=True, interpolation=None)
        ini.optionxform = str
        ini.read_string(text)
        (tmp_path / name).write_text(text)
    service = configparser.ConfigParser(interpolation=None)
    service.optionxform = str
    service.read_string(files["sheetflow-crm.service"])
    assert service["Service"]["Type"] == "oneshot"
    assert (
        "run-due" in service["Service"]["ExecStart"]
        and '"' + str(folder / "crm.xlsx") + '"' in service["Service"]["ExecStart"]
    )
    timer = configparser.ConfigParser(interpolation=None)
    timer.optionxform = str
    timer.read_string(files["sheetflow-crm.timer"])
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["OnCalendar"] == "*:0/5"
    if shutil.which("systemd-analyze"):
        done = subprocess.run(
            [
                "systemd-analyze",
                "verify",
                "--man=no",
                str(tmp_path / "sheetflow-crm.timer"),
                str(tmp_path / "sheetflow-crm.service"),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and "sheetflow-crm" not in done.stderr, done.stderr
    text = print_service("systemd", [str(folder / "crm.xlsx")])
    assert "systemctl --user enable --now sheetflow-crm.timer" in text


def test_print_service_windows_xml_has_the_two_settings(tmp_path, capsys):
    assert main(["schedule", "--print-service", "windows", str(tmp_path / "crm.xlsx")]) == 0
    text = capsys.readouterr().out
    root = ET.fromstring(text.encode())
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    assert root.find("t:Settings/t:MultipleInstancesPolicy", ns).text == "IgnoreNew"
    assert root.find("t:Settings/t:StartWhenAvailable", ns).text == "true"
    assert root.find("t:Actions/t:Exec/t:Command", ns).text == sys.executable
    assert "run-due" in root.find("t:Actions/t:Exec/t:Arguments", ns).text
    assert "Register-ScheduledTask" in text


def test_print_service_cron_line_has_flock(tmp_path, capsys):
    folder = tmp_path / "team share"
    assert main(["schedule", "--print-service", "cron", str(folder / "crm.xlsx"), "--at", "08:00"]) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    assert "flock -n" in fields[5] and "run-due" in fields[5] and "--at 08:00" in fields[5]
    assert f"'{folder / 'crm.xlsx'}'" in fields[5]
    assert "crontab -e" in text


# ---------------------------------------------------------------- real processes


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _start_watch(tmp_path: Path, path: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sheetflow", "schedule", str(path), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )


def _runner_info(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / ".sheetflow" / "crm.xlsx.runner.json").read_text())
    except (OSError, ValueError):
        return {}


def _sent(tmp_path: Path) -> list[tuple[str, str]]:
    """(To, Subject) of every email the files transport wrote."""
    import email

    out = []
    for eml in sorted((tmp_path / "outbox").glob("*.eml")):
        msg = email.message_from_bytes(eml.read_bytes())
        out.append((msg["To"], msg["Subject"]))
    return out


@pytest.mark.slow
def test_sigterm_during_a_run_lets_it_finish_and_no_email_goes_twice(tmp_path):
    path = starter(tmp_path)
    proc = _start_watch(tmp_path, path, "--every", "15m", "--poll", "1")
    try:
        assert _wait_for(lambda: _runner_info(tmp_path).get("child_pid"))
        assert _runner_info(tmp_path)["running"] == "run"  # the signal lands during the run
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopping after the run under way" in out and "run done" in out
    assert "stopped after 1 scheduled run(s)" in out
    load_workbook(path)  # consistent: opens
    runs = read_sheet(path, "Runs")
    assert len(runs) == 2  # header + the run that was let finish
    sent = _sent(tmp_path)
    assert sent and len(set(sent)) == len(sent)
    assert main(["run", str(path)]) in (0, 1)
    assert _sent(tmp_path) == sent  # nothing sent twice
    assert not (tmp_path / ".sheetflow" / "crm.xlsx.runner.json").exists()  # the lock was let go


@pytest.mark.slow
def test_sigterm_to_the_run_itself_leaves_the_workbook_consistent_and_no_email_twice(tmp_path):
    path = starter(tmp_path)
    contacts = read_sheet(path, "Contacts")
    proc = _start_watch(tmp_path, path, "--every", "15m", "--poll", "1")
    try:
        assert _wait_for(lambda: _runner_info(tmp_path).get("child_pid"))
        child = _runner_info(tmp_path)["child_pid"]
        time.sleep(0.3)  # inside the run (a whole run can take under 1 s on an idle machine)
        os.kill(child, signal.SIGTERM)  # as systemd's default KillMode would: the run dies, not just the loop
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "the run ended without an answer" in out  # the run was killed, and the loop said so
    load_workbook(path)
    after = read_sheet(path, "Contacts")
    assert after == contacts or len(after) == len(contacts)  # before the run, or the whole run: never half
    first = _sent(tmp_path)
    assert main(["run", str(path)]) in (0, 1)
    again = _sent(tmp_path)
    assert len(set(again)) == len(again), "an email went twice"
    assert set(first) <= set(again)


@pytest.mark.slow
def test_watch_mode_max_runs_and_a_second_scheduler_refuses(tmp_path):
    path = starter(tmp_path, "Mon-Fri 03:00")
    proc = _start_watch(tmp_path, path, "--poll", "1")
    try:
        assert _wait_for(lambda: _runner_info(tmp_path).get("pid"))
        second = subprocess.run(
            [sys.executable, "-m", "sheetflow", "schedule", str(path), "--every", "15m"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (
            second.returncode == 3 and "already running" in second.stdout and "schedule pid" in second.stdout
        )
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "schedule Mon-Fri 03:00" in out and "stopped after 0" in out
    done = subprocess.run(
        [sys.executable, "-m", "sheetflow", "schedule", str(path), "--every", "15m", "--max-runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "stopped after 1 scheduled run(s)" in done.stdout, done.stdout
    assert len(read_sheet(path, "Runs")) == 2


@pytest.mark.slow
def test_a_run_over_its_timeout_is_stopped_and_recorded(tmp_path):
    path = starter(tmp_path)
    before = read_sheet(path, "Contacts")
    outcome = scheduler.ChildExecutor(timeout=0.2, lease_wait=0)(str(path), "run")
    assert outcome.status == "timeout"
    load_workbook(path)
    assert read_sheet(path, "Contacts") == before  # the run never half-wrote
    assert "per-run timeout" in str(read_sheet(path, "Runs")[-1][-1])
    assert not list((tmp_path / "outbox").glob("*.eml"))
    state = (
        json.loads((tmp_path / ".sheetflow" / "crm.xlsx.schedule.json").read_text())
        if (tmp_path / ".sheetflow" / "crm.xlsx.schedule.json").exists()
        else {}
    )
    assert "last_slot" not in state

"""The scheduled runner: ``sheetflow schedule`` (watch mode), ``sheetflow run-due`` (for cron, systemd timers
and Windows Task Scheduler) and ``sheetflow status``.

    spec = parse_schedule("Seg-Sex 08:00, 14:00")        # Settings ``schedule`` (pt-BR ``agenda``)
    spec.next_after(now, ZoneInfo("America/Sao_Paulo"))  # the next run, an aware datetime

**When.** A schedule is an interval (``every 15m``, ``a cada 2h``: elapsed time, so DST changes nothing) or
times of day on weekdays (``Mon-Fri 08:00``, ``Seg-Sex 08:00, 14:00``, ``08:00`` = every day; clauses joined
by ``;``), read with the one day vocabulary of the weekly-hours parser (:mod:`sheetflow.rules.window`), in the
workbook's time zone (Settings ``timezone``). A time of day is a *wall-clock* time: each (date, time) is one
slot, so on the day clocks change 08:00 runs once; a time inside the skipped hour of spring-forward (02:30)
runs once at the instant that follows it, and one inside the repeated hour of fall-back once, at its first
occurrence.

**Missed runs.** What ran is kept per workbook in ``.sheetflow/<workbook>.schedule.json`` (the last slot
served, when, what happened). On start and after every sleep of the machine the runner asks "is there a slot
after the last one served and not after now?"; if so it runs *once* for the newest such slot — a laptop off
for three days catches up once, never three times. Before the first record nothing is "missed": a schedule
starts counting when the runner first sees the workbook (an interval schedule runs at once).

**Library.** The loop is the ``schedule`` package's :class:`schedule.Scheduler` (job list, order, running
what is due, cancelling), with jobs whose next time comes from us: ``schedule`` neither runs missed jobs nor
survives an exception, and its time zones need pytz; so :class:`_ClockJob` takes its times from
:meth:`Schedule.next_after` (zoneinfo) and the injected :class:`Clock`, and each run is isolated.

**Isolation.** Each run is a child process (``python -m sheetflow.commands.schedule --once``) with a timeout: an error,
a crash or a hang is logged, written to Runs (and the Control sheet's status when the workbook has one) and
the loop goes on. SIGINT/SIGTERM stop the loop; a run under way is let finish (its child is in its own process
group, so Ctrl-C does not reach it) and the runner exits 0. A run killed anyway (timeout, power cut) leaves
the workbook as before that run (saves are atomic) and sends no email twice (the email journal).

**One runner.** One scheduler per workbook per machine (``.sheetflow/<workbook>.scheduler.lock``; a second
one refuses, exit 3) and every run under the backend's run lease, so a button press and the schedule never
run at once: the later one waits ``lease_wait`` seconds, then skips and says so.

**Requests** from the Control sheet (Excel button, Google Sheets menu; :mod:`sheetflow.tables.control`) are polled
every ``poll`` seconds: a cheap fingerprint first, the sheets only when the workbook changed; each request is
claimed (marked running, under the lease) before it runs and answered once (done/failed, time, summary).

**Logs** go to ``.sheetflow/logs/scheduler.log`` beside the workbook (rotating, 5 x 1 MB): times, workbook,
action, outcome, summary — never passwords, tokens or email bodies (:class:`Redact` masks anything that looks
like a secret, as a second line of defence).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import getpass
import json
import logging
import logging.handlers
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import schedule as schedule_lib
from filelock import FileLock, Timeout

from sheetflow.apply import PatchBuilder
from sheetflow.book import Book, open_book
from sheetflow.commands import run as pipeline  # module attribute: tests replace pipeline.run
from sheetflow.commands.button import run_action
from sheetflow.names import normalize
from sheetflow.problems import SheetflowError, WorkbookBusy
from sheetflow.rules.schedule import UTC, Schedule, parse_schedule, schedule_from_flags  # noqa: F401 - API
from sheetflow.tables import control
from sheetflow.tables.loaded import load

log = logging.getLogger("sheetflow.commands.schedule")

DEFAULT_POLL = 30.0  # seconds between Control-sheet polls: a button answer within half a minute
DEFAULT_TIMEOUT = 1800.0  # seconds a run may take (30 min: a 100k-row workbook takes ~1 min)
DEFAULT_LEASE_WAIT = 120.0  # seconds a run waits for another runner (a button run takes seconds)
WAKE_CHECK = 60.0  # the longest single sleep: a machine that slept is noticed within a minute of waking

# ---------------------------------------------------------------- clock


class Clock(Protocol):
    """Where the runner gets time: ``now()`` aware; ``sleep(seconds, stop)`` returns early when ``stop`` is set."""

    def now(self) -> dt.datetime: ...

    def sleep(self, seconds: float, stop: threading.Event) -> None: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, seconds))


# ---------------------------------------------------------------- what ran (per workbook, on this machine)


@dataclass
class Outcome:
    """One run or request: ``status`` done | problems | failed | skipped | timeout; ``summary`` one line."""

    action: str
    status: str
    summary: str = ""
    problems: list[str] = field(default_factory=list)
    started: str = ""  # ISO, UTC
    finished: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("done", "problems")


class JobState:
    """``.sheetflow/<identity>.schedule.json``: the last slot served, when the runner first knew the
    workbook, and the last outcome. Written atomically (temp file + replace) after every change."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("%s is unreadable; starting a new schedule record", path)
                self.data = {}

    @classmethod
    def of(cls, book: Book) -> JobState:
        return cls(book.workdir / f"{book.identity}.schedule.json")

    def _time(self, key: str) -> dt.datetime | None:
        value = self.data.get(key)
        return dt.datetime.fromisoformat(value) if value else None

    @property
    def last_slot(self) -> dt.datetime | None:
        return self._time("last_slot")

    @property
    def since(self) -> dt.datetime | None:
        return self._time("since")

    @property
    def last(self) -> dict[str, Any] | None:
        return self.data.get("last_outcome")

    def start(self, now: dt.datetime) -> None:
        """Remember when the runner first saw the workbook (the first slot counted comes after it)."""
        if "since" not in self.data:
            self.data["since"] = now.isoformat()
            self.save()

    def served(self, slot: dt.datetime) -> None:
        self.data["last_slot"] = slot.isoformat()
        self.save()

    def finished(self, outcome: Outcome) -> None:
        self.data["last_outcome"] = asdict(outcome)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)


# ---------------------------------------------------------------- one runner per workbook per machine


@contextlib.contextmanager
def runner_lock(book: Book, mode: str) -> Iterator[Path]:
    """The scheduler lock of a workbook on this machine; raises WorkbookBusy naming the holder when taken.

    Yields the holder file (``<identity>.runner.json``: pid, host, user, mode, since, current run)."""
    folder = book.workdir
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{book.identity}.scheduler.lock"), timeout=0)
    info = folder / f"{book.identity}.runner.json"
    try:
        lock.acquire()
    except Timeout:
        holder = read_holder(info)
        who = f" ({holder})" if holder else ""
        raise WorkbookBusy(
            f"a sheetflow scheduler is already running for {book.identity} on this machine{who}; "
            "it runs the schedule and answers the Control sheet — nothing was done"
        ) from None
    try:
        _write_json(info, _holder(mode))
        yield info
    finally:
        info.unlink(missing_ok=True)
        lock.release()


def _holder(mode: str, **extra: Any) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name on some service accounts
        user = ""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": user,
        "mode": mode,
        "since": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def read_holder(info: Path) -> str:
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    text = f"{data.get('mode', 'runner')} pid {data.get('pid')} on {data.get('host')}"
    if data.get("user"):
        text += f" as {data['user']}"
    if data.get("running"):
        text += f", running {data['running']} since {data.get('running_since', '?')}"
        if data.get("child_pid"):
            text += f" (pid {data['child_pid']})"
    return text


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- logs


class Redact(logging.Filter):
    """Masks what looks like a secret in a log line (``password=...``, ``token: ...``, bearer tokens, URL
    credentials). The runner logs no secrets or email bodies by construction; this is the second defence."""

    _PATTERNS = (
        re.compile(r"(?i)\b(pass(?:word|wd)?|senha|token|secret|api[_-]?key|authorization)\b(\s*[=:]\s*)\S+"),
        re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
        re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for pattern in self._PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) + m.group(2) + "***") if m.lastindex else "***", text)
        record.msg, record.args = text, None
        return True


_LOGGED: set[str] = set()  # workbooks with a log file in this process


class _ForBook(logging.Filter):
    """A workbook's log holds its own lines and the runner's general ones, not another workbook's (watch mode
    with several workbooks)."""

    def __init__(self, address: str):
        super().__init__()
        self.address = address

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return self.address in text or not any(other in text for other in _LOGGED if other != self.address)


def file_logging(book: Book) -> logging.Handler:
    """A rotating log in ``.sheetflow/logs/scheduler.log`` of the workbook (5 files of 1 MB)."""
    folder = book.workdir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scheduler.log"
    for handler in log.handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler) and Path(handler.baseFilename) == path:
            return handler
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=5, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(Redact())
    handler.addFilter(_ForBook(book.address))
    _LOGGED.add(book.address)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


# ---------------------------------------------------------------- running one action (in the child process)


def run_once(
    address: str, action: str = "run", *, lease_wait: float = 0.0, trigger: str = "schedule"
) -> Outcome:
    """Run ``action`` on a workbook now and return what happened; never raises for a workbook problem.

    ``run``: the whole run (pipeline.run); a run that cannot happen (busy past ``lease_wait`` seconds,
    unreadable workbook, a bug) is written to Runs and the Control sheet's status when possible. Other
    actions (preview, send, check, report, undo) go through :func:`sheetflow.commands.button.run_action`."""
    started = dt.datetime.now(UTC)
    outcome = Outcome(action, "failed", started=started.isoformat(timespec="seconds"))
    try:
        book = open_book(address)
        if action != "run":
            outcome = _button_action(book, action, trigger, outcome)
        else:
            outcome = _run_with_wait(book, trigger, lease_wait, outcome)
    except WorkbookBusy as e:
        outcome.status, outcome.summary = "skipped", f"skipped: {e}"
    except SheetflowError as e:
        outcome.summary = str(e)
        _record_failure(address, outcome, started, trigger)
    except Exception as e:  # noqa: BLE001 - a bug in one run must not stop the schedule
        log.exception("run of %s failed", address)
        outcome.summary = f"internal error: {type(e).__name__}: {e} (see .sheetflow/logs/scheduler.log)"
        _record_failure(address, outcome, started, trigger)
    outcome.finished = dt.datetime.now(UTC).isoformat(timespec="seconds")
    return outcome


def _run_with_wait(book: Book, trigger: str, lease_wait: float, outcome: Outcome) -> Outcome:
    deadline = time.monotonic() + max(0.0, lease_wait)
    while True:
        try:
            result = pipeline.run(book.address, book=book, trigger=trigger)
            break
        except WorkbookBusy:
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
    plan = result.plan
    outcome.summary = plan.summary() if result.written else "nothing to change"
    if result.emails is not None:
        outcome.summary += f"; {result.emails.summary()}"
    outcome.problems = [str(p) for p in plan.errors][:5]
    outcome.status = "problems" if plan.errors else "done"
    return outcome


def _button_action(book: Book, action: str, trigger: str, outcome: Outcome) -> Outcome:
    result = run_action(book, action, trigger=trigger)
    outcome.status = "done" if result.ok else "failed"
    outcome.summary = result.summary or result.status
    outcome.problems = [str(p) for p in result.problems][:5]
    return outcome


def _record_failure(address: str, outcome: Outcome, started: dt.datetime, trigger: str) -> None:
    """A Runs row (and the Control status, when there is a Control sheet) for a run that could not happen."""
    try:
        book = open_book(address)
        with book.lease(wait=10):
            raws = book.read()
            loaded = load(raws)
            local = loaded.settings.local_now(started)
            builder = PatchBuilder(loaded.tables)
            builder.target("Runs").append(
                {
                    "run_id": f"{local:%Y%m%d-%H%M%S}-failed",
                    "started_at": local,
                    "finished_at": loaded.settings.local_now(dt.datetime.now(UTC)),
                    "mode": "run",
                    "trigger": trigger,
                    "counts": "",
                    "errors": f"the scheduled run did not happen: {outcome.summary}",
                }
            )
            patches = list(builder.patches.values())
            patches += _control_status(
                raws, f"failed {local:%H:%M}: {outcome.summary}", local, outcome.summary
            )
            book.write(patches, backups=0)
    except Exception as e:  # noqa: BLE001 - the failure is logged; the loop goes on
        log.warning("could not record the failed run in %s: %s", address, e)


def _control_status(raws: dict, status: str, when: dt.datetime, summary: str) -> list:
    panel = control.read_control(raws)
    if panel is None or not _is_label(raws[panel.sheet], control.STATUS_ROW, control.LABELS["status"][1:]):
        return []  # no Control sheet, or one whose layout was changed: never write over a person's cells
    return [control.result_patch(panel, status=status[:250], when=when, summary=summary[:1000])]


def _is_label(raw, row: int, labels) -> bool:  # noqa: ANN001 - RawSheet
    i, j = row - raw.origin[0], 1 - raw.origin[1]
    value = raw.rows[i][j] if 0 <= i < len(raw.rows) and 0 <= j < len(raw.rows[i]) else ""
    return normalize(value or "") in {normalize(label) for label in labels}


# ---------------------------------------------------------------- executors (how a run is started)

Executor = Callable[[str, str], Outcome]  # (address, action) -> Outcome


class ChildExecutor:
    """Runs each action in a child process with a timeout (isolation: a crash or a hang is the child's).

    The child gets its own session so a Ctrl-C in the terminal stops the loop, not the run under way."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, lease_wait: float = DEFAULT_LEASE_WAIT):
        self.timeout = timeout
        self.lease_wait = lease_wait
        self.current: subprocess.Popen | None = None

    def __call__(self, address: str, action: str) -> Outcome:
        started = dt.datetime.now(UTC)
        cmd = [sys.executable, "-m", "sheetflow.commands.schedule", "--once", action, address]
        cmd += ["--lease-wait", str(self.lease_wait)]
        kwargs: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        if os.name == "posix":
            kwargs["start_new_session"] = True
        else:  # pragma: no cover - Windows
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]  # Windows only
        self.current = proc = subprocess.Popen(cmd, **kwargs)
        with contextlib.suppress(Exception):
            _note_child(open_book(address), proc.pid)
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            outcome = Outcome(
                action,
                "timeout",
                f"stopped after {self.timeout:g} s (per-run timeout); the workbook is as it was before this run",
                started=started.isoformat(timespec="seconds"),
            )
            _record_failure(address, outcome, started, "schedule")
            return outcome
        finally:
            self.current = None
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                try:
                    return Outcome(**json.loads(line))
                except (TypeError, ValueError):
                    break
        outcome = Outcome(
            action,
            "failed",
            f"the run ended without an answer (exit {proc.returncode}): {(err or '').strip()[-300:]}",
            started=started.isoformat(timespec="seconds"),
        )
        _record_failure(address, outcome, started, "schedule")
        return outcome


# ---------------------------------------------------------------- the loop


class _ClockJob(schedule_lib.Job):
    """A ``schedule`` job whose next time comes from ``next_time()`` and whose "now" is the injected clock.

    ``schedule`` computes times with naive ``datetime.now()`` (and needs pytz for zones); here the times are
    aware UTC instants computed with zoneinfo, so DST and the workbook's zone are ours to get right."""

    def __init__(self, scheduler: schedule_lib.Scheduler, clock: Clock, next_time, func, name: str):
        super().__init__(1, scheduler)
        self.unit = "seconds"
        self._clock = clock
        self._next_time = next_time
        self.job_func = functools.partial(func)
        functools.update_wrapper(self.job_func, func)
        self.job_func.__name__ = name  # type: ignore[attr-defined]
        self.next_run = next_time()
        scheduler.jobs.append(self)

    @property
    def should_run(self) -> bool:
        return self._clock.now() >= self.next_run  # type: ignore[operator]  # set in __init__; the schedule stubs allow None

    def run(self):  # noqa: ANN201 - schedule's signature
        ret = self.job_func()
        self.last_run = self._clock.now()
        self.next_run = self._next_time()
        return ret


@dataclass
class Workbook:
    """One workbook the runner serves: its schedule (flags, else Settings ``schedule``) and zone."""

    address: str
    book: Book
    state: JobState
    override: Schedule | None = None
    spec: Schedule | None = None
    zone: dt.tzinfo = UTC
    seen: str = ""  # fingerprint when Settings were last read
    control_seen: str = ""  # fingerprint when the Control sheet was last looked at
    unanswered: bool = False  # requests seen but not claimed (busy): look again at the next poll
    problem: str = ""

    @classmethod
    def open(cls, address: str, override: Schedule | None = None) -> Workbook:
        book = open_book(address)
        wb = cls(str(address), book, JobState.of(book), override)
        wb.refresh(force=True)
        return wb

    def anchor(self) -> dt.datetime | None:
        """What :meth:`Schedule.due` counts from: the last slot served; for a time-of-day schedule that never
        ran, when the runner first saw the workbook (an interval schedule that never ran is due at once)."""
        if self.spec is not None and self.spec.every is not None:
            return self.state.last_slot
        return self.state.last_slot or self.state.since

    def refresh(self, force: bool = False, raws: dict | None = None) -> dict | None:
        """Re-read Settings ``schedule``/``timezone`` when the workbook changed; returns the sheets read.

        Cheap when nothing changed: the workbook's fingerprint is compared with the last look (in memory, then
        the one kept in ``.sheetflow/``), so ``run-due`` every 5 minutes reads no sheet until someone edits
        the workbook. ``raws``: sheets the caller already read (used instead of reading)."""
        try:
            fingerprint = self.book.fingerprint()
        except SheetflowError as e:
            self.problem = str(e)
            return None
        if raws is None and not force and fingerprint == self.seen:
            return None
        cache = self.state.data.get("settings") or {}
        if raws is None and cache.get("fingerprint") == fingerprint:
            self.seen = fingerprint
            self._use(cache.get("schedule", ""), cache.get("timezone", "UTC"), cache.get("cell", "Settings"))
            return None
        try:
            raws = raws or self.book.read()
            settings = load(raws).settings
        except SheetflowError as e:
            self.problem = str(e)
            return None
        self.seen = fingerprint
        zone = getattr(settings.timezone, "key", "UTC")
        cell = settings.cells.get("schedule", "Settings")
        self.state.data["settings"] = {
            "fingerprint": fingerprint,
            "schedule": settings.text("schedule"),
            "timezone": zone,
            "cell": cell,
        }
        self.state.save()
        self._use(settings.text("schedule"), zone, cell)
        return raws

    def _use(self, text: str, zone: str, cell: str) -> None:
        try:
            self.zone = ZoneInfo(zone)
        except (ValueError, KeyError, OSError):
            self.zone = UTC
        self.problem = ""
        if self.override is not None:
            self.spec = self.override
            return
        try:
            self.spec = parse_schedule(text)
        except ValueError as e:
            self.problem = f"{cell}: schedule: {e}"
            self.spec = None

    def looked_at_control(self, fingerprint: str) -> None:
        self.control_seen = fingerprint
        if self.state.data.get("control_seen") != fingerprint:
            self.state.data["control_seen"] = fingerprint
            self.state.save()


class Runner:
    """Watch mode: serve each workbook's schedule and Control requests until stopped or ``max_runs``.

    ``executor`` runs one action (default: a child process with a timeout); ``clock`` gives time (tests
    inject one that jumps). ``say`` prints a plain line per event (the CLI gives a rich one in a terminal).
    """

    def __init__(
        self,
        workbooks: Sequence[Workbook],
        *,
        clock: Clock | None = None,
        executor: Executor | None = None,
        max_runs: int | None = None,
        poll: float = DEFAULT_POLL,
        say: Callable[[str], None] | None = None,
        requests: bool = True,
    ):
        self.workbooks = list(workbooks)
        self.clock = clock or SystemClock()
        self.executor = executor or ChildExecutor()
        self.max_runs = max_runs
        self.poll = max(1.0, poll)
        self.say = say or (lambda text: None)
        self.requests = requests
        self.runs = 0
        self.stop = threading.Event()
        self.lib = schedule_lib.Scheduler()
        self.outcomes: list[tuple[str, dt.datetime, Outcome]] = []

    # -- jobs
    def _plan(self, wb: Workbook) -> None:
        now = self.clock.now()
        wb.state.start(now)

        def next_time() -> dt.datetime:
            current = self.clock.now()
            if wb.spec is None:
                return current + dt.timedelta(seconds=WAKE_CHECK)
            if wb.spec.due(wb.anchor(), current, wb.zone) is not None:
                return current
            last = wb.state.last_slot
            return wb.spec.next_after(current, wb.zone, last)

        run_job = _ClockJob(
            self.lib, self.clock, next_time, functools.partial(self.tick, wb), f"run {wb.address}"
        )
        _ClockJob(
            self.lib,
            self.clock,
            lambda: self.clock.now() + dt.timedelta(seconds=self.poll),
            functools.partial(self.look, wb, run_job),
            f"look {wb.address}",
        )

    def look(self, wb: Workbook, run_job: _ClockJob) -> None:
        """Every ``poll`` seconds: notice an edited Settings ``schedule``/``timezone`` (a fingerprint first, the
        sheets only when the workbook changed), then answer the Control sheet's requests."""
        if self.stop.is_set():
            return
        before = (wb.spec, wb.zone, wb.problem)
        wb.refresh()
        if (wb.spec, wb.zone, wb.problem) != before:
            run_job.next_run = run_job._next_time()
            if wb.problem:
                text = f"{wb.address}: {wb.problem}"
            elif wb.spec is None:
                text = f"{wb.address}: the schedule was removed; answering Control requests only"
            else:
                text = (
                    f"{wb.address}: schedule is now {wb.spec.text} ({_zone_name(wb.zone)}); "
                    f"next run {_stamp(run_job.next_run, wb.zone)}"
                )
            self.say(f"{_stamp(self.clock.now(), wb.zone)} {text}")
            log.info("%s", text)
        if self.requests:
            answer_requests(wb, self.execute, self.clock, stop=self.stop)

    def tick(self, wb: Workbook) -> Any:
        """The scheduled job of one workbook: run once if a slot is due (isolated), else nothing."""
        if self.stop.is_set():
            return None
        wb.refresh()
        if wb.spec is None:
            return None
        now = self.clock.now()
        slot = wb.spec.due(wb.anchor(), now, wb.zone)
        if slot is None:
            return None
        wb.state.served(slot)  # before the run: a crash or kill never makes the same slot run twice
        self.execute(wb, "run", slot=slot)
        self.runs += 1
        if self.max_runs is not None and self.runs >= self.max_runs:
            self.stop.set()
            return schedule_lib.CancelJob
        return None

    def execute(self, wb: Workbook, action: str, slot: dt.datetime | None = None) -> Outcome:
        late = ""
        now = self.clock.now()
        if slot is not None and now - slot > dt.timedelta(minutes=5):
            late = f" (catching up the run of {slot.astimezone(wb.zone):%Y-%m-%d %H:%M})"
        self.say(f"{_stamp(now, wb.zone)} {wb.address}: {action} starting{late}")
        log.info("%s: %s starting%s", wb.address, action, late)
        _note_running(wb.book, action, now)
        try:
            outcome = self.executor(wb.address, action)
        except Exception as e:  # noqa: BLE001 - isolation: an executor error is this run's failure only
            log.exception("%s: %s failed", wb.address, action)
            outcome = Outcome(action, "failed", f"internal error: {type(e).__name__}: {e}")
        finally:
            _note_running(wb.book, None, now)
        if not outcome.started:
            outcome.started = now.isoformat(timespec="seconds")
        if not outcome.finished:
            outcome.finished = self.clock.now().isoformat(timespec="seconds")
        wb.state.finished(outcome)
        self.outcomes.append((wb.address, now, outcome))
        line = f"{wb.address}: {action} {outcome.status}: {outcome.summary}"
        if outcome.problems:
            line += f" — {outcome.problems[0]}" + (
                f" (and {len(outcome.problems) - 1} more)" if len(outcome.problems) > 1 else ""
            )
        self.say(f"{_stamp(self.clock.now(), wb.zone)} {line}")
        (log.info if outcome.ok else log.warning)("%s", line)
        return outcome

    # -- loop
    def serve(self) -> int:
        """Run until stopped (SIGINT/SIGTERM, ``max_runs``); returns the number of scheduled runs."""
        for wb in self.workbooks:
            self._plan(wb)
            if wb.problem:
                self.say(f"{wb.address}: {wb.problem}")
            elif wb.spec is None:
                self.say(
                    f"{wb.address}: no schedule (Settings schedule is empty); answering Control requests only"
                )
            elif wb.spec is not None:
                nxt = wb.spec.next_after(self.clock.now(), wb.zone, wb.state.last_slot)
                self.say(
                    f"{wb.address}: schedule {wb.spec.text} ({_zone_name(wb.zone)}); next run {_stamp(nxt, wb.zone)}"
                )
        while not self.stop.is_set() and self.lib.jobs:
            before = self.clock.now()
            self.lib.run_pending()
            if self.stop.is_set() or not self.lib.jobs:
                break
            upcoming = min(job.next_run for job in self.lib.jobs)  # type: ignore[type-var]  # our jobs always have next_run
            wait = (upcoming - self.clock.now()).total_seconds()  # type: ignore[operator]  # our jobs always have next_run
            self.clock.sleep(min(max(wait, 0.0), WAKE_CHECK), self.stop)
            slept = (self.clock.now() - before).total_seconds()
            if slept > max(wait, 0.0) + WAKE_CHECK * 2:
                log.info("the clock jumped %.0f s (the machine slept?); checking for missed runs", slept)
                for job in self.lib.jobs:
                    job.next_run = min(job.next_run, self.clock.now())  # type: ignore[type-var]  # our jobs always have next_run
        self.lib.clear()
        return self.runs

    def install_signals(self) -> None:
        """SIGINT/SIGTERM (and SIGBREAK on Windows): stop after the run under way."""

        def handler(signum, frame):  # noqa: ANN001
            if not self.stop.is_set():
                log.info("signal %s: stopping after the run under way", signum)
                self.say("stopping after the run under way ...")
            self.stop.set()

        for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), handler)


def _note_running(book: Book, action: str | None, now: dt.datetime) -> None:
    info = book.workdir / f"{book.identity}.runner.json"
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    data["running"] = action
    data["running_since"] = now.isoformat(timespec="seconds") if action else None
    data["child_pid"] = None
    with contextlib.suppress(OSError):
        _write_json(info, data)


def _note_child(book: Book, pid: int) -> None:
    info = book.workdir / f"{book.identity}.runner.json"
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    data["child_pid"] = pid
    _write_json(info, data)


def _stamp(moment: dt.datetime, zone: dt.tzinfo) -> str:
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def _zone_name(zone: dt.tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


# ---------------------------------------------------------------- Control-sheet requests


def answer_requests(
    wb: Workbook,
    execute: Callable[..., Outcome],
    clock: Clock,
    *,
    stop: threading.Event | None = None,
    lease_wait: float = 10.0,
) -> list[Outcome]:
    """Claim the waiting requests of the Control sheet under the run lease, run each, answer each once.

    Cheap when nothing changed: the workbook's fingerprint is compared first and the sheets read only when
    it differs from the last look. Claiming writes ``running`` before anything runs, so a request is never
    run twice, even if this process dies (it then stays ``running``: see ``sheetflow status``)."""
    try:
        fingerprint = wb.book.fingerprint()
    except SheetflowError:
        return []
    if fingerprint == wb.control_seen and not wb.unanswered:
        return []
    try:
        with wb.book.lease(wait=lease_wait):
            raws = wb.book.read()
            wb.refresh(raws=raws)
            panel = control.read_control(raws)
            waiting = panel.waiting if panel is not None else []
            if not waiting:
                wb.looked_at_control(wb.book.fingerprint())
                return []
            wb.book.write([control.claim(panel, r) for r in waiting], backups=0)  # type: ignore[arg-type]  # waiting is empty without a Control sheet
    except WorkbookBusy:
        wb.unanswered = True
        return []
    except SheetflowError as e:
        log.warning("%s: the Control sheet cannot be read: %s", wb.address, e)
        return []
    outcomes = []
    answers = []
    for request in waiting:
        problem = control.request_problem(panel, request)  # type: ignore[arg-type]  # waiting is empty without a Control sheet
        if problem is not None:
            outcome = Outcome(request.text or "?", "failed", str(problem))
        elif stop is not None and stop.is_set():
            outcome = Outcome(request.action, "failed", "the runner was stopped before this request ran")  # type: ignore[arg-type]  # a request without a known action has a problem (above)
        else:
            outcome = execute(wb, request.action)
        outcomes.append(outcome)
        answers.append((request, outcome))
    _write_answers(wb, control, answers, clock)
    wb.unanswered = False
    return outcomes


def _write_answers(wb: Workbook, control, answers, clock: Clock) -> None:  # noqa: ANN001
    for attempt in range(3):
        try:
            with wb.book.lease(wait=30):
                raws = wb.book.read()
                panel = control.read_control(raws)
                if panel is None:
                    log.warning(
                        "%s: the Control sheet is gone; %d answers not written", wb.address, len(answers)
                    )
                    return
                when = clock.now().astimezone(wb.zone).replace(tzinfo=None)
                rows = {r.row: r for r in panel.requests}
                patches = []
                for request, outcome in answers:
                    current = rows.get(request.row)
                    if current is None or current.status != "running":
                        log.warning(
                            "%s: request row %d moved; its answer is in the log", wb.address, request.row
                        )
                        continue
                    text = outcome.summary
                    if outcome.problems:
                        text += " — " + "; ".join(outcome.problems[:3])
                    status = "done" if outcome.ok else "failed"
                    patches.append(control.answer(panel, current, status, when, text[:1000]))
                if patches:
                    wb.book.write(patches, backups=0)
                wb.looked_at_control(wb.book.fingerprint())
                return
        except WorkbookBusy as e:
            log.info("%s: answers wait for the workbook (%s)", wb.address, e)
            time.sleep(1 + attempt)
    log.warning("%s: could not write the answers to the Control sheet (busy)", wb.address)


# ---------------------------------------------------------------- run-due


def run_due(
    address: str,
    *,
    override: Schedule | None = None,
    clock: Clock | None = None,
    executor: Executor | None = None,
    requests: bool = True,
    say: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """One look: run the schedule's slot if one is due since the last recorded run, answer waiting requests,
    and return what ran (nothing when nothing is due: a cron line every 5 minutes costs one small read).

    Raises WorkbookBusy when a scheduler (watch mode or another run-due) already serves the workbook."""
    clock = clock or SystemClock()
    book = open_book(address)
    file_logging(book)
    with runner_lock(book, "run-due"):
        runner = Runner(
            [], clock=clock, executor=executor or ChildExecutor(), say=say, requests=requests, max_runs=None
        )
        wb = Workbook(str(address), book, JobState.of(book), override)
        wb.refresh(force=True)
        if wb.problem:
            (say or (lambda t: None))(f"{address}: {wb.problem}")
            log.warning("%s: %s", address, wb.problem)
        start = len(runner.outcomes)
        wb.state.start(clock.now())
        if wb.spec is not None:
            slot = wb.spec.due(wb.anchor(), clock.now(), wb.zone)
            if slot is not None:
                wb.state.served(slot)
                runner.execute(wb, "run", slot=slot)
        if requests:
            wb.control_seen = wb.state.data.get("control_seen", "")  # unchanged since the last look: no read
            answer_requests(wb, runner.execute, clock)
        return [o for _, _, o in runner.outcomes[start:]]


def next_run(address: str, override: Schedule | None = None, now: dt.datetime | None = None) -> tuple:
    """(schedule, next run as aware datetime or None, zone, problem) for ``status``."""
    wb = Workbook.open(address, override)
    now = now or dt.datetime.now(UTC)
    if wb.spec is None:
        return None, None, wb.zone, wb.problem
    if wb.spec.due(wb.anchor(), now, wb.zone) is not None:
        return wb.spec, now, wb.zone, wb.problem
    return wb.spec, wb.spec.next_after(now, wb.zone, wb.state.last_slot), wb.zone, wb.problem


# ---------------------------------------------------------------- child entry point


def _child(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sheetflow.commands.schedule")
    p.add_argument("--once", required=True, metavar="ACTION")
    p.add_argument("book")
    p.add_argument("--lease-wait", type=float, default=0.0)
    args = p.parse_args(argv)
    with contextlib.suppress(Exception):
        file_logging(open_book(args.book))
    outcome = run_once(args.book, args.once, lease_wait=args.lease_wait)
    print(json.dumps(asdict(outcome)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())

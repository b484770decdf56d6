"""The Excel button (and any request from the Control sheet): run the chosen action, answer in the sheet.

``sheetflow.main()`` is what xlwings' ``RunPython "import sheetflow; sheetflow.main()"`` (the add-in's ribbon
button) and ``import BOOK; BOOK.main()`` (the button ``sheetflow excel setup`` puts in a workbook) call. It
opens the calling workbook through the live backend (:mod:`sheetflow.book.excel`), reads the Control sheet's
Action (Run, Preview, Send, Check, Report, Undo last run), runs it, and writes status, last run time and
summary back (:mod:`sheetflow.tables.control`). Progress shows in the status cell (``running… 40%``) and in Excel's
status bar.

A user's mistake never becomes a Python traceback dialog: a bad rule is a problem of the run (in Runs and in
the status cell), and what stops a run (workbook busy, unreadable settings, ...) is written to the status cell
and to Runs. Only when even that is impossible (no workbook open) does ``main`` print one plain line to
stderr and exit 1, which xlwings shows as its error dialog. An unexpected error (a bug) is written to the
status cell as "internal error" with the log file's path; the traceback goes to
``<workdir>/logs/button.log``, not to a dialog.

:func:`run_action` is the same for any Book (the scheduler answers Control requests with it, issue 14).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from sheetflow.apply import PatchBuilder
from sheetflow.book.excel import caller
from sheetflow.commands import run as pipeline  # module attribute: tests replace pipeline.run
from sheetflow.commands.undo import undo
from sheetflow.engine.run import new_run_id
from sheetflow.problems import Problem, Severity, SheetflowError, WorkbookBusy, error
from sheetflow.tables import control
from sheetflow.tables.control import Control
from sheetflow.tables.loaded import load

__all__ = ["ActionResult", "main", "run_action"]

# share of the work done when the pipeline reports a step (what the status cell shows)
PROGRESS = {"reading": 10, "planning": 35, "writing": 70, "sending emails": 85}
SHOWN_PROBLEMS = 3  # problems quoted in the status cell; the rest are counted
ANSWER_WAIT = 10.0  # seconds to wait for another runner's lease before giving up on writing an answer

WORDS = {
    "en": {
        "running": "running…",
        "done": "done",
        "preview": "preview",
        "check": "check",
        "undone": "undone",
        "problems": "problems",
        "not_run": "not run",
        "internal": "internal error",
        "emails": "emails",
        "cells": "cells",
        "would": "would change",
        "no_errors": "no errors",
        "errors": "errors",
        "warnings": "warnings",
        "more": "more",
        "nothing": "nothing to change",
        "restored": "cells restored",
        "left": "left as they are",
        "log": "details in",
        "added": "added the {sheet} sheet: choose an action in B3 and press the button again",
        "choose": "choose an action in {cell} (Run, Preview, Send, Check, Report, Undo last run)",
    },
    "pt-BR": {
        "running": "executando…",
        "done": "feito",
        "preview": "prévia",
        "check": "verificação",
        "undone": "desfeito",
        "problems": "problemas",
        "not_run": "não executado",
        "internal": "erro interno",
        "emails": "e-mails",
        "cells": "células",
        "would": "mudaria",
        "no_errors": "nenhum erro",
        "errors": "erros",
        "warnings": "avisos",
        "more": "mais",
        "nothing": "nada a mudar",
        "restored": "células restauradas",
        "left": "deixadas como estão",
        "log": "detalhes em",
        "added": "planilha {sheet} adicionada: escolha uma ação em B3 e clique no botão de novo",
        "choose": "escolha uma ação em {cell} (Executar, Pré-visualizar, Enviar, Verificar, Relatório, "
        "Desfazer última execução)",
    },
}


@dataclass
class ActionResult:
    action: str  # canonical (control.ACTIONS) or "" when none could be read
    ok: bool  # ran without errors
    status: str  # what the status cell says
    summary: str  # what the summary cell says
    problems: list[Problem] = field(default_factory=list)
    when: dt.datetime | None = None  # workbook-local time of the answer
    written: bool = False  # the answer is in the Control sheet


def main(xw: Any = None) -> None:
    """Run the Control sheet's action on the workbook that called us (see the module docstring)."""
    try:
        book = caller(xw)
    except SheetflowError as e:
        print(f"sheetflow: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    result = run_action(book, trigger="button")
    if result.written:
        book.status(None)
        return
    # not even the Control sheet could take the answer: one plain line, which xlwings shows in a dialog
    print(f"sheetflow: {result.status}", file=sys.stderr)
    raise SystemExit(1)


def run_action(
    book: Any,
    action: str | None = None,
    *,
    trigger: str = "button",
    now: dt.datetime | None = None,
    transport: Any = None,
    outbox: Any = None,
) -> ActionResult:
    """Run ``action`` (default: the Control sheet's) on ``book`` and write the answer to its Control sheet
    (added when missing). Never raises for a workbook problem; returns what was written."""
    reader = _ReadOnce(book)
    try:
        raws = reader.read()
        loaded = load(raws)
    except SheetflowError as e:
        return _stopped(book, None, "en", action or "", e, now)
    panel = control.read_control(raws)
    lang = panel.lang if panel is not None else ("pt-BR" if loaded.tables.language.startswith("pt") else "en")
    clock = _clock(loaded.settings, now)
    if panel is None:  # first press on this workbook: add the panel, run nothing the user did not choose
        try:
            book.write([control.new_control_patch(lang)])
        except SheetflowError as e:
            return _stopped(book, None, lang, action or "", e, now)
        panel = Control(control.sheet_name(lang), lang, "run", "")
        if action is None:
            text = WORDS[lang]["added"].format(sheet=panel.sheet)
            return _answer(book, panel, ActionResult("", True, text, text, [], clock()))
    if action is None and panel.action is None and not panel.action_text:
        text = WORDS[lang]["choose"].format(cell=f"{panel.sheet}!B{control.ACTION_ROW}")
        return _answer(book, panel, ActionResult("", False, text, text, [], clock()))
    if action is None:
        if panel.problems:
            return _answer(
                book,
                panel,
                ActionResult(
                    "",
                    False,
                    _problem_status(panel.problems, lang, clock()),
                    _problem_summary(panel.problems),
                    panel.problems,
                    clock(),
                ),
            )
        action = panel.action or "run"
    words = WORDS[lang]
    live = bool(getattr(book, "live", False))

    def progress(step: str) -> None:
        percent = PROGRESS.get(step)
        if percent is None:
            return
        text = f"{words['running']} {percent}%"
        if hasattr(book, "status"):
            book.status(f"sheetflow: {step}… {percent}%")
        if live:  # a file is rewritten whole on every write: no progress writes there
            try:
                book.write([control.status_patch(panel, text)])
            except SheetflowError:  # progress that cannot be shown never stops the run
                pass

    try:
        result = _run(
            reader,
            action,
            trigger=trigger,
            now=now,
            progress=progress,
            transport=transport,
            outbox=outbox,
            words=words,
            clock=clock,
        )
    except SheetflowError as e:
        return _stopped(book, panel, lang, action, e, now, clock=clock, loaded=loaded)
    except Exception as e:  # noqa: BLE001 - a bug must not become a traceback dialog in Excel
        return _crashed(book, panel, lang, action, e, clock)
    return _answer(book, panel, result)


class _ReadOnce:
    """The Book, with its first read (taken to find the action) handed to the run's read instead of a second
    read of every sheet. A later read, or one asking for other sheets in full, goes to the workbook."""

    def __init__(self, book: Any):
        self._book = book
        self._first: Any = None
        self._used = False

    def read(self, *, full=()):  # noqa: ANN001, ANN201
        if self._first is None:
            self._first = self._book.read(full=full)
            return self._first
        if not self._used and not full:
            self._used = True
            return self._first
        return self._book.read(full=full)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._book, name)


def _clock(settings: Any, now: dt.datetime | None):  # noqa: ANN202
    def local() -> dt.datetime:
        moment = now or dt.datetime.now(dt.timezone.utc)
        if moment.tzinfo is None:
            return moment.replace(microsecond=0)
        return settings.local_now(moment)

    return local


def _run(
    book: Any, action: str, *, trigger: str, now, progress, transport, outbox, words, clock
) -> ActionResult:  # noqa: ANN001
    if action == "check":
        problems = pipeline.check(book.address, book=book, now=now)
        shown = [p for p in problems if p.severity is not Severity.NOTE]
        errors = [p for p in shown if p.is_error]
        when = clock()
        if errors:
            status = _problem_status(errors, _lang(words), when, head=words["check"])
        else:
            status = f"{words['check']} {when:%H:%M}: {words['no_errors']}"
        summary = f"{len(errors)} {words['errors']}, {len(shown) - len(errors)} {words['warnings']}"
        if shown:
            summary += " — " + "; ".join(str(p) for p in shown[:SHOWN_PROBLEMS])
        return ActionResult(action, not errors, status, summary, problems, when)
    if action == "undo":
        done = undo(book.address, book=book, now=now)
        when = clock()
        status = (
            f"{words['undone']} {when:%H:%M}: {done.run_id}, {len(done.plan.changes)} {words['restored']}"
        )
        summary = f"{len(done.plan.changes)} {words['restored']}, {len(done.skipped)} {words['left']}"
        if done.skipped:
            summary += " — " + "; ".join(str(p) for p in done.skipped[:SHOWN_PROBLEMS])
        return ActionResult(action, True, status, summary, list(done.skipped), when)
    kwargs = dict(now=now, trigger=trigger, progress=progress, book=book, outbox=outbox, transport=transport)
    if action == "send":
        result = pipeline.send(book.address, **kwargs)
    elif action == "preview":
        result = pipeline.run(book.address, dry_run=True, **kwargs)
    elif action == "report":
        result = pipeline.run(book.address, only=(), **kwargs)  # no stage: the Report sheet is rebuilt
    else:
        result = pipeline.run(book.address, **kwargs)
    plan = result.plan
    when = plan.local_now.replace(microsecond=0) if plan.local_now else clock()
    sent = result.emails.count("sent") if result.emails is not None else 0
    due = sum(1 for e in plan.emails if e.due)
    cells = len(plan.changes)
    if plan.errors:
        status = _problem_status(plan.errors, _lang(words), when)
    elif action == "preview":
        status = f"{words['preview']} {when:%H:%M}: {words['would']} {cells} {words['cells']}, {due} {words['emails']}"
    elif not result.written and not sent:
        status = f"{words['done']} {when:%H:%M}: {words['nothing']}"
    else:
        status = f"{words['done']} {when:%H:%M}: {sent} {words['emails']}, {cells} {words['cells']}"
    summary = plan.summary()
    if result.emails is not None:
        summary += f"; {result.emails.summary()}"
    return ActionResult(action, not plan.errors, status, summary, list(plan.problems), when)


def _lang(words: dict[str, str]) -> str:
    return "pt-BR" if words is WORDS["pt-BR"] else "en"


def _problem_status(problems: list[Problem], lang: str, when: dt.datetime, head: str | None = None) -> str:
    words = WORDS[lang]
    shown = "; ".join(str(p) for p in problems[:SHOWN_PROBLEMS])
    more = f" (+{len(problems) - SHOWN_PROBLEMS} {words['more']})" if len(problems) > SHOWN_PROBLEMS else ""
    return f"{head or words['problems']} {when:%H:%M}: {shown}{more}"


def _problem_summary(problems: list[Problem]) -> str:
    return "; ".join(str(p) for p in problems[:SHOWN_PROBLEMS])


def _answer(book: Any, panel: Control, result: ActionResult) -> ActionResult:
    """Status, time and summary into the Control sheet; a workbook that cannot take them is not an error of
    the action (the result is returned either way)."""
    note = getattr(book, "note", "")
    if note and note not in result.summary:  # a cloud workbook: where the journal is, and why it matters
        result.summary = f"{result.summary} — {note}"
    try:
        # under the lease: another runner's write must not be refused because of our answer (it would be,
        # as "changed while working"); if it holds the workbook longer, Excel's status bar says it instead
        with book.lease(wait=ANSWER_WAIT):
            book.write(
                [control.result_patch(panel, status=result.status, when=result.when, summary=result.summary)]
            )
        result.written = True
    except SheetflowError as e:
        logging.getLogger("sheetflow").warning("could not write the Control sheet: %s", e)
        if hasattr(book, "status"):
            book.status(f"sheetflow: {result.status}")
    return result


def _stopped(book, panel, lang, action, exc: SheetflowError, now, clock=None, loaded=None) -> ActionResult:  # noqa: ANN001
    """What stopped the action (busy, unreadable settings, ...), in the status cell and as a Runs row."""
    words = WORDS[lang]
    when = clock() if clock else (now or dt.datetime.now()).replace(tzinfo=None, microsecond=0)
    problem = error("", str(exc))
    result = ActionResult(action, False, f"{words['not_run']} {when:%H:%M}: {exc}", str(exc), [problem], when)
    if panel is None:  # the workbook could not be read: Excel's status bar is all that is left
        if hasattr(book, "status"):
            book.status(f"sheetflow: {result.status}")
        return result
    if loaded is not None and not isinstance(exc, WorkbookBusy):  # busy: another runner's turn, not a run
        _log_run(book, loaded, action, when, str(exc))
    return _answer(book, panel, result)


def _log_run(book: Any, loaded: Any, action: str, when: dt.datetime, message: str) -> None:
    """A Runs row for an action that could not run (the pipeline writes one for every run that ran)."""
    builder = PatchBuilder(loaded.tables)
    mode = {"preview": "dry-run", "send": "send", "undo": "undo"}.get(action, "run")
    builder.target("Runs").append(
        {
            "run_id": new_run_id(when),
            "started_at": when,
            "finished_at": when,
            "mode": mode,
            "trigger": "button",
            "counts": "",
            "errors": message,
        }
    )
    try:
        with book.lease(wait=ANSWER_WAIT):
            book.write(list(builder.patches.values()))
    except SheetflowError:
        pass


def _crashed(book, panel: Control, lang: str, action: str, exc: Exception, clock) -> ActionResult:  # noqa: ANN001
    words = WORDS[lang]
    when = clock()
    log = None
    try:
        folder = book.workdir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "button.log"
        with log.open("a", encoding="utf-8") as f:
            f.write(f"--- {when:%Y-%m-%d %H:%M:%S} {action}\n")
            f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except OSError:
        log = None
    where = f"; {words['log']} {log}" if log else ""
    status = f"{words['internal']} {when:%H:%M}: {type(exc).__name__}: {exc}{where}"
    result = ActionResult(action, False, status, status, [error("", status)], when)
    return _answer(book, panel, result)

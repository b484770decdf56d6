"""The library API the CLI, the Excel button and the scheduler all call: check and run a workbook.

    from sheetflow.pipeline import run
    result = run("crm.xlsx", dry_run=True)
    print(result.plan.summary())

One run is read -> tables -> plan (pure engine) -> apply (one atomic save) -> result. Progress goes to
an optional callback so the terminal can show bars and the workbook's status cell can be updated by
backends that are live.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import contract
from .apply import build_patches, needs_write
from .book import Book, open_book
from .engine import plan_run
from .plan import Plan
from .problems import Problem, Severity, note
from .rulesheets import check_other_rules, load_scoring
from .settings import Settings, load_settings
from .state import State, load_state
from .tables import RawSheet, Tables, load_tables
from .templating import check_templates

Progress = Callable[[str], None]


@dataclass
class Loaded:
    tables: Tables
    settings: Settings
    state: State
    problems: list[Problem] = field(default_factory=list)


def load(raws: dict[str, RawSheet]) -> Loaded:
    """Typed tables, settings and state from raw sheets; problems name their cells."""
    settings_holder: list[Settings] = []

    def locale_of(settings_table):
        settings = load_settings(settings_table)
        settings_holder.append(settings)
        return settings.locale

    tables, problems = load_tables(raws, locale_of)
    settings = settings_holder[0]
    state, state_problems = load_state(tables.get(contract.STATE_SHEET))
    return Loaded(tables, settings, state, problems + state_problems)


@dataclass
class RunResult:
    plan: Plan
    written: bool
    address: str

    @property
    def problems(self) -> list[Problem]:
        return self.plan.problems


def run(address: str | Path, *, dry_run: bool = False, now: dt.datetime | None = None,
        only: Iterable[str] | None = None, trigger: str = "cli", progress: Progress | None = None,
        book: Book | None = None) -> RunResult:
    """Plan and (unless ``dry_run``) apply one run. Raises SheetflowError subclasses for what stops a run."""
    say = progress or (lambda _msg: None)
    book = book or open_book(address)
    now = _aware(now)
    if dry_run:
        say("reading")
        loaded = load(book.read())
        say("planning")
        plan = plan_run(loaded.tables, loaded.settings, loaded.state, now, mode="dry-run", only=only,
                        trigger=trigger)
        plan.problems[:0] = loaded.problems
        return RunResult(plan, False, book.address)
    started = time.monotonic()
    with book.lease():
        say("reading")
        loaded = load(book.read())
        say("planning")
        plan = plan_run(loaded.tables, loaded.settings, loaded.state, now, mode="run", only=only,
                        trigger=trigger)
        plan.problems[:0] = loaded.problems
        if not needs_write(plan, loaded.state):
            return RunResult(plan, False, book.address)
        say("writing")
        patches = build_patches(plan, loaded.tables, elapsed=dt.timedelta(seconds=time.monotonic() - started))
        backups = loaded.settings.number("backups")
        book.write(patches, backups=int(backups) if backups is not None else 10)
        return RunResult(plan, True, book.address)


def check(address: str | Path, *, book: Book | None = None) -> list[Problem]:
    """Every problem of a workbook: sheets, headers, cell types, rule expressions, templates."""
    book = book or open_book(address)
    raws = book.read()
    loaded = load(raws)
    problems = list(loaded.problems)
    tables = loaded.tables
    for spec in contract.SHEETS:
        table = tables[spec.name]
        if not table.exists and spec.kind in (contract.Kind.DATA, contract.Kind.RULES):
            problems.append(note(spec.name, f"no {spec.name} sheet (that is fine if you do not use it)"))
        if table.exists and spec.kind is not contract.Kind.SYSTEM and spec.columns:
            missing = [c.name for c in spec.columns if c.name not in table.col_index and not c.managed]
            if missing and table.header_row:
                problems.append(note(table.sheet, "columns not present: " + ", ".join(missing)))
    _, scoring_problems = load_scoring(tables)
    problems += [p for p in scoring_problems if p.severity is not Severity.NOTE]
    problems += check_other_rules(tables)
    problems += check_templates(tables, loaded.settings)
    # settings are validated by reading the typed ones
    loaded.settings.number("mql_threshold"), loaded.settings.number("sql_threshold")
    loaded.settings.timezone  # noqa: B018 - reading it reports an unknown zone
    problems += loaded.settings.problems
    return problems


def _aware(now: dt.datetime | None) -> dt.datetime:
    """The clock is read here, once, never in the engine; a naive ``now`` stays naive (workbook time)."""
    return dt.datetime.now(dt.timezone.utc) if now is None else now

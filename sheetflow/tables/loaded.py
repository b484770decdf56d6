"""A workbook's raw sheets read as what a run works on: typed tables, Settings, saved state, and the
problems found while reading (each naming its cell)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sheetflow import contract
from sheetflow.book import RawSheet
from sheetflow.problems import Problem
from sheetflow.tables.settings import Settings, load_settings
from sheetflow.tables.state import State, load_state
from sheetflow.tables.table import Tables, load_tables


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
        settings.defaults.update(getattr(raws, "defaults", None) or {})  # e.g. a Google sheet's time zone
        settings_holder.append(settings)
        return settings.locale

    tables, problems = load_tables(raws, locale_of)
    settings = settings_holder[0]
    state, state_problems = load_state(tables.get(contract.STATE_SHEET))
    return Loaded(tables, settings, state, problems + state_problems)

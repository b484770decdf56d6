"""The Reps sheet as a roster (who is active, away, weighted, with what capacity) and each rep's open load."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sheetflow.names import text_key
from sheetflow.problems import Problem, warning
from sheetflow.rules.sheets import cell_text
from sheetflow.tables.table import Table

# ---------------------------------------------------------------- reps


@dataclass(frozen=True)
class Rep:
    """One row of the Reps sheet, as the run sees it."""

    index: int  # position in Reps sheet order: the rotation order
    name: str  # as typed (what goes into ``owner``)
    key: str  # text_key(name): how owners are matched to reps
    active: bool
    weight: float  # blank = 1
    capacity: float  # blank = unlimited (inf)
    territories: frozenset[str]  # normalized; a cell may list several, comma-separated
    away_from: dt.date | None
    away_until: dt.date | None
    where: str  # Reps!A3, for messages

    def unavailable(self, today: dt.date) -> str | None:
        """Why the rep cannot take records at all today (capacity is checked separately), or None."""
        if not self.active:
            return "inactive"
        if self.away_on(today):
            if self.away_until is not None:
                return f"away until {self.away_until.isoformat()}"
            return f"away since {self.away_from.isoformat()}" if self.away_from else "away"
        if self.weight <= 0:
            return "weight 0"
        return None

    def away_on(self, day: dt.date) -> bool:
        """Inclusive on both ends; a blank end is open (blank ``away_until`` = away until further notice)."""
        if self.away_from is None and self.away_until is None:
            return False
        return (self.away_from is None or self.away_from <= day) and (
            self.away_until is None or day <= self.away_until
        )


@dataclass
class Roster:
    """The Reps sheet in order, with each rep's fixed availability for this run's day."""

    reps: list[Rep]
    today: dt.date
    by_key: dict[str, Rep] = field(default_factory=dict)
    unavailable: dict[int, str] = field(default_factory=dict)  # rep index -> reason, for the whole run

    def __post_init__(self) -> None:
        self.by_key = {r.key: r for r in self.reps}
        self.unavailable = {r.index: why for r in self.reps if (why := r.unavailable(self.today))}

    def find(self, name: object) -> Rep | None:
        return self.by_key.get(text_key(name)) if isinstance(name, str) and name.strip() else None


def _date(value: object) -> dt.date | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dt.datetime):  # Timestamps too: the day is what counts for away dates
        return value.date()
    return value if isinstance(value, dt.date) else None


def _number(value: object, default: float) -> float:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return default
    return float(value)  # type: ignore[arg-type]  # a cell value: float() raises on what is no number, as intended


def load_roster(table: Table, today: dt.date) -> tuple[Roster, list[Problem]]:
    """Reps in sheet order; a nameless row is skipped and a repeated name (case-insensitive) is a warning."""
    problems: list[Problem] = []
    reps: list[Rep] = []
    seen: dict[str, str] = {}
    df = table.df
    for pos in range(len(table)):
        name = cell_text(table, pos, "name")
        if not name:
            problems.append(
                warning(
                    table.ref(pos, "name"),
                    "a rep without a name is ignored",
                    "type the rep's name as owners should show it",
                )
            )
            continue
        key = text_key(name)
        if key in seen:
            problems.append(
                warning(
                    table.ref(pos, "name"),
                    f'rep "{name}" appears twice',
                    f"only {seen[key]} is used; remove or rename one",
                )
            )
            continue
        seen[key] = table.ref(pos, "name")
        active = df["active"].iloc[pos]
        active = not (isinstance(active, (bool, np.bool_)) and not active)  # blank (<NA>) = active
        weight = _number(df["weight"].iloc[pos], 1.0)
        if weight < 0:
            problems.append(
                warning(
                    table.ref(pos, "weight"),
                    f"weight {weight:g} is negative",
                    "use 0 to stop assigning to this rep; treated as 0",
                )
            )
            weight = 0.0
        capacity = max(_number(df["capacity"].iloc[pos], math.inf), 0.0)
        territories = frozenset(
            text_key(t) for t in cell_text(table, pos, "territory").split(",") if t.strip()
        )
        reps.append(
            Rep(
                len(reps),
                name,
                key,
                active,
                weight,
                capacity,
                territories,
                _date(df["away_from"].iloc[pos]),
                _date(df["away_until"].iloc[pos]),
                table.ref(pos, "name"),
            )
        )
    return Roster(reps, today), problems


# ---------------------------------------------------------------- open records and loads


def owner_indices(table: Table, roster: Roster) -> np.ndarray:
    """Rep index of each record's owner (-1: blank or not a rep); matched case- and space-insensitively."""
    if not len(table):
        return np.zeros(0, dtype=np.int64)
    codes, uniques = pd.factorize(table.df["owner"], use_na_sentinel=True)
    lookup = [rep.index if (rep := roster.find(v)) else -1 for v in uniques] + [-1]
    return np.asarray(lookup, dtype=np.int64)[codes]


def blank_owner(table: Table) -> np.ndarray:
    """Records without an owner. An owner cell holding a formula is never blank, whatever it shows (its ""
    is the formula's decision, and sheetflow never writes over a formula)."""
    owners = table.df["owner"]
    blank = (owners.isna() | (owners.fillna("").astype(str).str.strip() == "")).to_numpy(dtype=bool)
    return blank & ~table.formula_mask("owner")


class Loads:
    """Open records per rep in one table, kept current as the run assigns (capacity and least_loaded)."""

    def __init__(self, counts: np.ndarray, roster: Roster) -> None:
        self.counts: list[int] = [int(c) for c in counts]  # plain lists: read once per record
        self.capacity: list[float] = [r.capacity for r in roster.reps]
        self.version = 0  # bumps whenever a rep becomes full: rotations then drop them

    def full(self, index: int) -> bool:
        return self.counts[index] >= self.capacity[index]

    def add(self, index: int) -> None:
        self.counts[index] += 1
        if self.counts[index] >= self.capacity[index]:
            self.version += 1

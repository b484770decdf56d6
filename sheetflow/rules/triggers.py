"""Automation triggers: which records a rule fires for in this run, and which *occurrence* that is.

A trigger fires once per occurrence, never again on every run. Edge triggers compare a record with what
the last run saw (the state sheet); condition triggers (dates, idleness) are remembered as fired. Every
firing carries an occurrence id derived only from data that survives a crash — the last completed run's
id or the date that caused it — so a rerun after a crash produces the same email keys and sends nothing
twice.

    new                 the record's id was not seen by any earlier run
    changed:COLUMN      COLUMN differs from what the last run saw
    entered:STAGE       deal stage / contact lifecycle_stage / ticket status became STAGE
    score_reached:N     the contact's score crossed N upward
    date:COLUMN+Nd/-Nd  today is N days after/before the date in COLUMN (missed days catch up once,
                        unless older than Settings catch_up_days, default 7)
    idle:Nd             no activity for N days (last_activity_at / stage_changed_at); ``idle:rotting`` uses
                        the deal stage's ``rotting_days``
    every_run           every run

Baselines (decided by :mod:`.automations`, which calls :func:`detect`): the first run on a workbook, and
the first run that sees a rule, record a baseline for that rule: its edge trigger does not fire for the
records already there, so adding a welcome-email rule to a 5,000-contact sheet does not email 5,000 people
— unless the rule's params say ``include_existing=true``, which fires it once for the records present
then. Condition triggers (date, idle, every_run) do fire on the first run.

Records whose id was seen once and then disappeared (tombstones, :class:`~sheetflow.tables.state.State`) are not
``new`` when they come back, and their edge triggers compare from the values they come back with: a row
cut and pasted back does not fire ``new`` or ``entered:`` again.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sheetflow import contract
from sheetflow.coerce import MAX_SHIFT_DAYS, Locale, Unreadable, parse_bool, parse_number
from sheetflow.names import normalize, suggest, text_key
from sheetflow.problems import RuleError
from sheetflow.rules.expr import Schema

MAX_DAYS = MAX_SHIFT_DAYS

EDGE = ("new", "changed", "entered", "score_reached")
KINDS = ("new", "changed", "entered", "score_reached", "date", "idle", "every_run")
STAGE_COLUMN = {"Deals": "stage", "Contacts": "lifecycle_stage", "Tickets": "status"}
ACTIVITY_COLUMN = {"Deals": "stage_changed_at", "Contacts": "last_activity_at", "Tickets": "opened_at"}
_DATE = re.compile(r"^\s*(.+?)\s*(?:([+-])\s*(\d+)\s*d)?\s*$", re.IGNORECASE)
_DAYS = re.compile(r"^\s*(\d+)\s*d?\s*$", re.IGNORECASE)


class TriggerError(RuleError, ValueError):
    """A trigger cell that cannot be understood; the message is for the user."""


@dataclass(frozen=True)
class Trigger:
    kind: str
    column: str = ""  # changed/date: the column; entered: the stage column
    value: str = ""  # entered: canonical stage text (casefolded); score_reached: threshold
    days: int = 0  # date offset (signed) / idle days; -1 for idle:rotting
    text: str = ""  # as the user wrote it

    @property
    def edge(self) -> bool:
        return self.kind in EDGE


def parse_trigger(text: str, table: str, schema: Schema) -> Trigger:
    raw = (text or "").strip()
    if not raw:
        raise TriggerError(
            "trigger is empty — use new, changed:COLUMN, entered:STAGE, score_reached:N, "
            "date:COLUMN+Nd, idle:Nd or every_run"
        )
    head, _, arg = raw.partition(":")
    kind = normalize(head)
    if kind not in KINDS:
        hint = suggest(kind, KINDS)
        raise TriggerError(
            f'unknown trigger "{raw}"'
            + (f' — did you mean "{hint}"?' if hint else " — use " + ", ".join(KINDS))
        )
    arg = arg.strip()
    if kind in ("new", "every_run"):
        if arg:
            raise TriggerError(f'"{kind}" takes nothing after it; write just {kind}')
        return Trigger(kind, text=raw)
    if not arg:
        raise TriggerError(
            f'"{kind}:" needs a value, e.g. '
            + {
                "changed": "changed:stage",
                "entered": "entered:Proposal",
                "score_reached": "score_reached:50",
                "date": "date:renewal_date-30d",
                "idle": "idle:14d",
            }[kind]
        )
    if kind == "changed":
        return Trigger(kind, _column(arg, schema), text=raw)
    if kind == "entered":
        return Trigger(kind, STAGE_COLUMN[table], _stage_key(arg, table), text=raw)
    if kind == "score_reached":
        if table != "Contacts":
            raise TriggerError("score_reached works on Contacts only")
        try:
            threshold = float(arg.replace(",", "."))
        except ValueError:
            raise TriggerError(f'score_reached needs a number, not "{arg}"') from None
        return Trigger(kind, "score", f"{threshold:g}", text=raw)
    if kind == "date":
        m = _DATE.match(arg)
        column = _column(m.group(1), schema) if m else ""
        if schema.type_of(column).value != "date":
            raise TriggerError(f"{column} is not a date column; date: needs one, e.g. date:renewal_date-30d")
        sign = -1 if m.group(2) == "-" else 1  # type: ignore[union-attr]  # _DATE matches any non-empty arg (empty: refused above)
        days = int(m.group(3) or 0)  # type: ignore[union-attr]  # as above
        if days > MAX_DAYS:
            raise TriggerError(f'"{raw}": {days} days is more than {MAX_DAYS // 365} years')
        return Trigger(kind, column, days=sign * days, text=raw)
    # idle
    if normalize(arg) in ("rotting", "rotting_days"):
        if table != "Deals":
            raise TriggerError("idle:rotting uses the Stages sheet's rotting_days and works on Deals only")
        return Trigger(kind, ACTIVITY_COLUMN[table], days=-1, text=raw)
    m = _DAYS.match(arg)
    if not m:
        raise TriggerError(f'idle needs a number of days, e.g. idle:14d, not "{arg}"')
    if int(m.group(1)) > MAX_DAYS:
        raise TriggerError(f'"{raw}": {m.group(1)} days is more than {MAX_DAYS // 365} years')
    return Trigger(kind, ACTIVITY_COLUMN[table], days=int(m.group(1)), text=raw)


def _column(name: str, schema: Schema) -> str:
    canonical = schema.resolve(name.strip().strip("[]"))
    if canonical is None:
        hint = suggest(name, schema.candidates())
        raise TriggerError(f'unknown column "{name}"' + (f' — did you mean "{hint}"?' if hint else ""))
    return canonical


def _stage_key(text: object, table: str) -> str:
    """Stages compare case/space/accent-insensitively; lifecycle stages also by their pt-BR labels."""
    if table == "Contacts":
        return contract.lifecycle_value(text) or text_key(text)
    return text_key(text)


# ---------------------------------------------------------------- detection


@dataclass
class Firing:
    positions: list[int]
    occurrences: list[str]
    dropped: list[int] = field(default_factory=list)  # date: missed since the last run, past catch-up


def detect(
    trigger: Trigger,
    table_name: str,
    df: pd.DataFrame,
    previous: dict[str, dict],
    tag: str,
    today: dt.date,
    *,
    gone: set[str] | frozenset[str] = frozenset(),
    catch_up_days: int = 7,
    rotting: dict[str, float] | None = None,
    since: dt.date | None = None,
) -> Firing:
    """Records the trigger holds for now, with their occurrence ids (before ``when`` and fire-once).

    ``previous``: id -> values the last run saw; ``gone``: ids seen once and since removed (tombstones);
    ``tag``: the last completed run's id (``"start"`` before the first), part of edge occurrences.
    ``since``: the last run's day; a ``date:`` target after it but older than ``catch_up_days`` is
    returned in ``dropped`` (missed because no run happened in time, and too old to catch up).
    """
    ids = df["id"].to_numpy(dtype=object)
    n = len(df)
    has_id = np.asarray([isinstance(v, str) and bool(v.strip()) for v in ids], dtype=bool)
    seen = np.asarray([isinstance(v, str) and v.strip() in previous for v in ids], dtype=bool)
    back = np.asarray([isinstance(v, str) and v.strip() in gone for v in ids], dtype=bool) & ~seen
    if trigger.kind == "every_run":
        hits = np.flatnonzero(has_id)
        return Firing(hits.tolist(), [f"run@{tag}"] * len(hits))
    if trigger.kind in EDGE:
        if trigger.kind == "new":
            hits = np.flatnonzero(has_id & ~seen & ~back)
            return Firing(hits.tolist(), ["new"] * len(hits))
        now_values = _comparable(df.get(trigger.column), n)
        before = [
            previous.get(v.strip(), {}).get(trigger.column, _MISSING) if isinstance(v, str) else _MISSING
            for v in ids
        ]
        positions: list[int] = []
        for pos in np.flatnonzero(has_id & ~back).tolist():
            old, new = before[pos], now_values[pos]
            if trigger.kind == "changed":
                if seen[pos] and old is not _MISSING and _same(old, new) is False:
                    positions.append(pos)
            elif trigger.kind == "entered":
                entered = new is not None and _stage_key(new, table_name) == trigger.value
                was = old not in (None, _MISSING) and _stage_key(old, table_name) == trigger.value
                if entered and not was:
                    positions.append(pos)
            elif trigger.kind == "score_reached":
                limit = float(trigger.value)
                if (
                    isinstance(new, (int, float))
                    and new >= limit
                    and not (isinstance(old, (int, float)) and old >= limit)
                ):
                    positions.append(pos)
        return Firing(
            positions,
            [f"{trigger.kind}:{trigger.column if trigger.kind == 'changed' else trigger.value}@{tag}"]
            * len(positions),
        )
    if trigger.kind == "date":
        dates = (
            pd.to_datetime(df[trigger.column]) if trigger.column in df else pd.Series(pd.NaT, index=df.index)
        )
        target = dates.dt.normalize() + pd.to_timedelta(trigger.days, unit="D")
        today_ts = pd.Timestamp(today)
        ok = (target <= today_ts) & (target >= today_ts - pd.Timedelta(days=catch_up_days))
        hits = np.flatnonzero(ok.fillna(False).to_numpy(dtype=bool) & has_id)
        days = target.iloc[hits].dt.strftime("%Y-%m-%d").tolist()
        dropped: list[int] = []
        if since is not None:
            stale = (target > pd.Timestamp(since)) & (target < today_ts - pd.Timedelta(days=catch_up_days))
            dropped = np.flatnonzero(stale.fillna(False).to_numpy(dtype=bool) & has_id).tolist()
        return Firing(hits.tolist(), [f"date:{trigger.column}{trigger.days:+d}d@{d}" for d in days], dropped)
    # idle
    column = trigger.column if trigger.column in df else None
    last = pd.to_datetime(df[column]) if column else pd.Series(pd.NaT, index=df.index)
    if table_name == "Contacts" and column and last.isna().any() and "created_at" in df:
        last = last.fillna(pd.to_datetime(df["created_at"]))
    if table_name == "Deals" and "created_at" in df:
        last = last.fillna(pd.to_datetime(df["created_at"]))
    idle_days = (pd.Timestamp(today) - last.dt.normalize()).dt.days
    if trigger.days >= 0:
        limit = pd.Series(float(trigger.days), index=df.index)
    else:
        stages = df["stage"] if "stage" in df else pd.Series([None] * n, index=df.index)
        rot = rotting or {}
        limit = pd.Series(
            [rot.get(text_key(s)) if isinstance(s, str) else None for s in stages],
            index=df.index,
            dtype="float64",
        )
    ok = (idle_days >= limit).fillna(False).to_numpy(dtype=bool) & has_id
    hits = np.flatnonzero(ok)
    since = last.iloc[hits].dt.strftime("%Y-%m-%d").tolist()
    label = "rotting" if trigger.days < 0 else f"{trigger.days}d"
    return Firing(hits.tolist(), [f"idle:{label}@{s}" for s in since])  # type: ignore[union-attr]  # pandas-stubs: strftime().tolist() is a list of str


def _text_means(text: str, value: bool | int | float) -> bool:
    try:
        if isinstance(value, bool):
            return parse_bool(text) is value
        return any(parse_number(text, Locale(code)) == float(value) for code in ("pt-BR", "en-US"))
    except Unreadable:
        return False


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _comparable(series: pd.Series | None, n: int) -> list[object]:
    """Values in the JSON form the state sheet keeps, so old and new compare like with like."""
    if series is None:
        return [None] * n
    if series.dtype.kind == "f":
        return [None if v != v else (int(v) if float(v).is_integer() else v) for v in series.tolist()]
    if series.dtype.kind == "M":
        return [None if v is None else v for v in series.dt.strftime("%Y-%m-%dT%H:%M:%S").tolist()]
    out: list[object] = []
    for v in series.to_numpy(dtype=object).tolist():
        if isinstance(v, str):
            out.append(v.strip() or None)
        elif isinstance(v, (bool, int, float)) and not (isinstance(v, float) and v != v):
            out.append(v)
        else:
            out.append(None)
    return out


def _same(old: object, new: object) -> bool:
    if isinstance(old, str) and isinstance(new, str):
        return old.strip() == new.strip()
    if isinstance(old, str) and isinstance(new, (bool, int, float)):
        # A team's column typed from its values (1.234,56 -> 1234.56, SIM -> TRUE) was remembered as the
        # text an earlier version read; the same value is not a change.
        return _text_means(old, new)
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return abs(float(old) - float(new)) < 1e-9
    return old == new

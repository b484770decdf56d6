"""What every stage asks about records: which are open, and the deal stages (the Stages sheet, read here
and nowhere else).

Open records count towards a rep's capacity and ``least_loaded`` (assignment), the report's pipeline and
support numbers, and SLA escalations. Closed: a contact whose lifecycle stage is customer, evangelist or
churned; a deal in a stage marked won or lost in the Stages sheet (without marks: won/lost/ganho/perdido); a
ticket whose status is one of :data:`sheetflow.contract.CLOSED_TICKET_STATUSES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sheetflow import contract
from sheetflow.names import text_key
from sheetflow.tables.table import Tables

CLOSED_CONTACT_STAGES = frozenset({"customer", "evangelist", "churned"})
CLOSED_TICKET_STATUSES = contract.CLOSED_TICKET_STATUSES
DEFAULT_CLOSED_DEAL_STAGES = frozenset({"won", "lost", "ganho", "ganha", "perdido", "perdida"})


@dataclass(frozen=True)
class Stages:
    """The Stages sheet, by stage key (:func:`sheetflow.names.text_key`, so "Proposal " is "proposal"); a stage
    written twice: the lower row wins."""

    names: dict[str, str]  # key -> the stage as written (stripped)
    order: dict[str, float]  # key -> its ``order`` (pipeline position in the report)
    rotting_days: dict[str, float]  # key -> days a deal may sit in it before it is stalled
    closed: frozenset[str]  # keys of the stages marked won or lost (empty: none marked)


def read_stages(tables: Tables) -> Stages:
    """The Stages sheet read once; a missing sheet is an empty :class:`Stages`. A row without a stage name
    is passed over; a blank order or rotting_days leaves that stage out of that map."""
    sheet = tables["Stages"]
    if not sheet.exists or not len(sheet):
        return Stages({}, {}, {}, frozenset())
    df = sheet.df
    names: dict[str, str] = {}
    order: dict[str, float] = {}
    rotting: dict[str, float] = {}
    closed: set[str] = set()
    for pos, stage in enumerate(df["stage"].to_numpy(dtype=object).tolist()):
        if not isinstance(stage, str) or not stage.strip():
            continue
        key = text_key(stage)
        names[key] = stage.strip()
        for column, into in (("order", order), ("rotting_days", rotting)):
            value = df[column].iloc[pos] if column in df else None
            if value is not None and value is not pd.NA and value == value:
                into[key] = float(value)
        flags = [df[c].iloc[pos] for c in ("won", "lost") if c in df]
        if any(f is not pd.NA and f is not None and bool(f) for f in flags):
            closed.add(key)
    return Stages(names, order, rotting, frozenset(closed))


def open_mask(tables: Tables, name: str) -> np.ndarray:
    """Which records of a data table are open (they count towards capacity and least_loaded)."""
    table = tables[name]
    if not len(table):
        return np.zeros(0, dtype=bool)
    if name == "Contacts":
        codes, uniques = pd.factorize(table.df["lifecycle_stage"], use_na_sentinel=True)
        shut = np.asarray(
            [
                contract.lifecycle_value(v) in CLOSED_CONTACT_STAGES if isinstance(v, str) else False
                for v in uniques
            ]
            + [False],
            dtype=bool,
        )
        return ~shut[codes]
    if name == "Deals":
        column, closed = table.df["stage"], closed_deal_stages(tables)
    else:
        column, closed = table.df["status"], CLOSED_TICKET_STATUSES
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    shut = np.asarray([isinstance(v, str) and text_key(v) in closed for v in uniques] + [False], dtype=bool)
    return ~shut[codes]


def closed_deal_stages(tables: Tables) -> frozenset[str]:
    """Stages marked won or lost in the Stages sheet; without such marks, won/lost/ganho/perdido."""
    return read_stages(tables).closed or DEFAULT_CLOSED_DEAL_STAGES

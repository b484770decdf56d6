"""Applying parsed automation actions to records (the parsing is :mod:`sheetflow.rules.actions`, which
never sees the run context)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from sheetflow import contract
from sheetflow.coerce import to_cell
from sheetflow.coltypes import ColumnType
from sheetflow.engine.context import Context
from sheetflow.rules.actions import Action, typed_value
from sheetflow.tables.table import Table, dtype_of


def apply_set(
    ctx: Context, table: Table, action: Action, positions: list[int], rule: str
) -> list[tuple[int, str]]:
    """Write the set pairs; returns the (position, column) cells that really changed."""
    written: list[tuple[int, str]] = []
    for column, raw in action.sets:
        type_ = table.types.get(column, ColumnType.TEXT)
        empty = column not in table.df or bool(table.df[column].isna().all())
        value = typed_value(
            raw,
            type_,
            ctx.plan.local_now,
            ctx.tables.locale,
            column=column,
            empty=empty and type_ is ColumnType.TEXT,
        )
        if empty and type_ is ColumnType.TEXT and value is not None and not isinstance(value, str):
            _retype(table, column, value)  # an empty column takes the type of what is written into it
        current = table.df[column].to_numpy(dtype=object) if column in table.df else [None] * len(table.df)
        if table.spec.name == "Contacts" and column == "lifecycle_stage" and isinstance(value, str):
            stage = contract.lifecycle_value(value)
            if stage:
                value = contract.lifecycle_label(stage, "pt" if ctx.portuguese else "en")
        targets = [p for p in positions if not _equal(current[p], value)]
        if targets:
            ctx.change(
                table,
                targets,
                column,
                [value] * len(targets),
                [f'Automation "{rule}": set {column}'] * len(targets),
            )
            written += [(p, column) for p in targets]
    return written


def _retype(table: Table, column: str, value: Any) -> None:
    if isinstance(value, bool):
        type_ = ColumnType.BOOL
    elif isinstance(value, (int, float)):
        type_ = ColumnType.NUMBER
    else:
        type_ = ColumnType.DATE
    table.df[column] = pd.Series([None] * len(table.df), dtype=dtype_of(type_), index=table.df.index)
    table.types[column] = type_


def _equal(current: Any, value: Any) -> bool:
    current = to_cell(current)
    if isinstance(current, str) and isinstance(value, str):
        return current.strip().casefold() == value.strip().casefold()
    if isinstance(current, dt.datetime) and isinstance(value, dt.datetime):
        return current == value
    return current == value

"""Put a workbook's contents into the Sheets emulator, as a person would have typed them into Google Sheets.

Used by ``sheetflow demo --gsheets`` (the demo workbook, copied into a freshly started emulator) and the
benchmark. Values keep their types: text stays text (``=1+1`` too), numbers and booleans as such, dates
and times as serial numbers from 1899-12-30 with a date format, as Google stores them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sheetflow.testing.sheets_emulator import Cell, Emulator, to_serial

__all__ = ["seed_cell", "spreadsheet_from_rows"]

_FORMATS = {
    "DATE": {"type": "DATE", "pattern": "yyyy-mm-dd"},
    "DATE_TIME": {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"},
    "TIME": {"type": "TIME", "pattern": "hh:mm"},
}


def seed_cell(value: Any) -> Any:
    """A Python value as the emulator stores it (None: empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.time):
        serial = (value.hour * 3600 + value.minute * 60 + value.second) / 86400
        return Cell(serial, None, {"numberFormat": dict(_FORMATS["TIME"])})
    if isinstance(value, dt.datetime):
        return Cell(to_serial(value), None, {"numberFormat": dict(_FORMATS["DATE_TIME"])})
    if isinstance(value, dt.date):
        return Cell(to_serial(value), None, {"numberFormat": dict(_FORMATS["DATE"])})
    if isinstance(value, dt.timedelta):
        return Cell(
            value.total_seconds() / 86400, None, {"numberFormat": {"type": "TIME", "pattern": "[h]:mm"}}
        )
    return value


def spreadsheet_from_rows(
    emu: Emulator,
    sheets: Mapping[str, Sequence[Sequence[Any]]],
    *,
    hidden: Sequence[str] = (),
    origins: Mapping[str, tuple[int, int]] | None = None,
    **kw: Any,
) -> str:
    """A new spreadsheet holding ``sheets`` (name -> rows of values from ``origins[name]``, default A1); its
    id. Grids are Google's default 1000 x 26 or larger to fit. ``kw``: ``create_spreadsheet`` options
    (``locale``, ``time_zone``, ``title``)."""
    origins = origins or {}
    specs = []
    for name, rows in sheets.items():
        r0, c0 = origins.get(name, (1, 1))
        specs.append(
            {
                "title": name,
                "values": [],
                "hidden": name in hidden,
                "rowCount": max(1000, r0 - 1 + len(rows)),
                "columnCount": max([26, *(c0 - 1 + len(r) for r in rows)]),
            }
        )
    sid = emu.create_spreadsheet(specs or None, **kw)
    with emu.lock:
        book = emu.spreadsheets[sid]
        for name, rows in sheets.items():
            r0, c0 = origins.get(name, (1, 1))
            sheet = book.sheet_by_title(name)
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    stored = seed_cell(value)
                    if stored is not None:
                        sheet.put(r0 - 1 + r, c0 - 1 + c, stored)  # type: ignore[union-attr]  # the sheet was created just above
    return sid

"""Turning what people type into cells into typed values, and typed values back into cell values.

Spreadsheet data is dirty: dates arrive as real date cells, ISO text or ``01/03/2026`` (day first in
pt-BR / en-GB, month first in en-US), numbers as ``1.234,56`` or ``R$ 2.500``, booleans as
``SIM``/``NÃO``/``x``. Each column is converted as a whole (fast paths for homogeneous columns, since
100k-row sheets are normal) and every value we cannot read becomes empty plus a warning naming its
cell, rather than stopping the run.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .coltypes import ColumnType
from .names import normalize

EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_TRUE = {"true", "yes", "y", "sim", "s", "1", "x", "verdadeiro", "v", "on", "ativo", "ok", "✓", "✔"}
_FALSE = {"false", "no", "n", "nao", "0", "falso", "f", "off", "inativo", "-"}
_ISO = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?\s*$"
)
_LOCAL = re.compile(
    r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$"
)
_CURRENCY = re.compile(r"(R\$|US\$|\$|€|£|\s|\u00a0)")


@dataclass(frozen=True)
class Locale:
    """How a workbook writes dates and decimals; from Settings `locale` (default en-US)."""

    code: str = "en-US"

    @property
    def day_first(self) -> bool:
        return not self.code.lower().startswith("en-us") and self.code.lower() not in {"en", "us"}

    @property
    def decimal_comma(self) -> bool:
        return self.code.lower().startswith(("pt", "es", "de", "fr", "it", "nl"))

    @property
    def portuguese(self) -> bool:
        return self.code.lower().startswith("pt")


class Unreadable(ValueError):
    """A cell value that is not of its column's type; the message says what was expected."""


def parse_bool(value: object) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return None
        if value in (0, 1):
            return bool(value)
        raise Unreadable("is not TRUE or FALSE")
    text = normalize(value)
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Unreadable("is not TRUE or FALSE (or SIM/NÃO)")


def parse_number(value: object, locale: Locale = Locale()) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        raise Unreadable("is a date, not a number")
    text = _CURRENCY.sub("", str(value)).rstrip("%")
    if not text:
        return None
    negative = text.startswith("(") and text.endswith(")")
    text = text.strip("()")
    if "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
    elif "," in text:
        groups = text.split(",")
        thousands_like = len(groups) > 1 and all(len(g) == 3 and g.isdigit() for g in groups[1:])
        decimal = "." if (thousands_like and not locale.decimal_comma) or len(groups) > 2 else ","
    elif text.count(".") > 1 or (locale.decimal_comma and re.fullmatch(r"-?\d{1,3}(\.\d{3})+", text)):
        decimal = ","  # 1.234.567 or pt-BR 1.234: dots are thousands separators
    else:
        decimal = "."
    thousands = "." if decimal == "," else ","
    text = text.replace(thousands, "").replace(decimal, ".")
    try:
        number = float(text)
    except ValueError:
        raise Unreadable("is not a number") from None
    if math.isinf(number) or math.isnan(number):
        raise Unreadable("is not a number")
    return -number if negative else number


def parse_date(value: object, locale: Locale = Locale()) -> dt.datetime | None:
    """A naive datetime (the workbook's local time); date-only values are at midnight."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, bool):
        raise Unreadable("is not a date")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return None
        if 1 <= value < 2958466:  # an Excel serial that lost its date format
            return EXCEL_EPOCH + dt.timedelta(days=float(value))
        raise Unreadable("is not a date")
    if isinstance(value, (dt.time, dt.timedelta)):
        raise Unreadable("is a time, not a date")
    text = str(value).strip()
    if not text:
        return None
    try:
        m = _ISO.match(text)
        if m:
            y, mo, d, hh, mm, ss = (int(g) if g else 0 for g in m.groups())
            return dt.datetime(y, mo, d, hh, mm, ss)
        m = _LOCAL.match(text)
        if m:
            a, b, y, hh, mm, ss = (int(g) if g else 0 for g in m.groups())
            if y < 100:
                y += 2000 if y < 70 else 1900
            day, month = (a, b) if locale.day_first else (b, a)
            if month > 12 and day <= 12:  # unambiguous the other way round (13/01 in en-US)
                day, month = month, day
            return dt.datetime(y, month, day, hh, mm, ss)
    except ValueError:
        raise Unreadable("is not a valid date") from None
    hint = "dd/mm/yyyy" if locale.day_first else "mm/dd/yyyy"
    raise Unreadable(f"is not a date (write 2026-03-01 or {hint})")


def parse_as(text: str | None, type_: ColumnType, locale: Locale = Locale()) -> object:
    """Text a person typed (a setting, an action param, a logged old value) as a value of the column type;
    raises Unreadable."""
    if text is None or text == "":
        return None
    if type_ is ColumnType.NUMBER:
        return to_cell(parse_number(text, locale))
    if type_ is ColumnType.DATE:
        return parse_date(text, locale)
    if type_ is ColumnType.BOOL:
        return parse_bool(text)
    return text


def as_text(value: object) -> str | None:
    """Display text of a raw cell value; numbers that are whole print without ``.0`` (ids, zip codes)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return (
            value.strftime("%Y-%m-%d %H:%M") if (value.hour or value.minute) else value.strftime("%Y-%m-%d")
        )
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    return text if text.strip() else None


def infer_type(values: Sequence[object], locale: Locale = Locale()) -> ColumnType:
    """The type of a column the team added, from its values: all numbers, all dates or all booleans."""
    seen = [v for v in values if v is not None and v != ""]
    if not seen:
        return ColumnType.TEXT
    kinds = {type(v) for v in seen}
    if kinds <= {bool}:
        return ColumnType.BOOL
    if kinds <= {int, float}:
        return ColumnType.NUMBER
    if kinds <= {dt.datetime, dt.date}:
        return ColumnType.DATE
    if kinds <= {str, dt.datetime, dt.date}:
        try:
            for v in seen[:200]:
                if isinstance(v, str) and not (_ISO.match(v) or _LOCAL.match(v)):
                    raise Unreadable("")
            if all(parse_date(v, locale) for v in seen[:200]):
                return ColumnType.DATE
        except Unreadable:
            pass
    return ColumnType.TEXT


def convert_column(
    values: Sequence[object], type_: ColumnType, locale: Locale
) -> tuple[pd.Series, list[tuple[int, str]]]:
    """Convert one column; returns the typed Series and (position, reason) for cells we could not read."""
    bad: list[tuple[int, str]] = []
    kinds = {type(v) for v in values}
    if type_ is ColumnType.NUMBER:
        if kinds <= {float, int}:
            return pd.Series(np.asarray(values, dtype="float64")), bad
        out = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            try:
                n = parse_number(v, locale)
            except Unreadable as e:
                bad.append((i, str(e)))
                continue
            if n is not None:
                out[i] = n
        return pd.Series(out), bad
    if type_ is ColumnType.DATE:
        if kinds <= {dt.datetime, str} and all(isinstance(v, dt.datetime) or v == "" for v in values):
            return pd.Series(
                pd.to_datetime([v if v != "" else None for v in values]), dtype="datetime64[ns]"
            ), bad
        out_d: list[dt.datetime | None] = []
        for i, v in enumerate(values):
            try:
                out_d.append(parse_date(v, locale))
            except (Unreadable, OverflowError) as e:
                bad.append((i, str(e) if isinstance(e, Unreadable) else "is not a date"))
                out_d.append(None)
        return pd.Series(pd.to_datetime(out_d), dtype="datetime64[ns]"), bad
    if type_ is ColumnType.BOOL:
        out_b: list[bool | None] = []
        for i, v in enumerate(values):
            try:
                out_b.append(parse_bool(v))
            except Unreadable as e:
                bad.append((i, str(e)))
                out_b.append(None)
        return pd.Series(out_b, dtype="boolean"), bad
    if kinds <= {str}:
        return pd.Series([v if v.strip() else None for v in values], dtype="str"), bad
    return pd.Series([as_text(v) for v in values], dtype="str"), bad


def to_cell(value: object) -> object:
    """A typed value as something writers can store: no NaN/NaT, whole floats as ints, Timestamps as datetimes."""
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return value
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value

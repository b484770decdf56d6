"""Turning what people type into cells into typed values, and typed values back into cell values.

Spreadsheet data is dirty: dates arrive as real date cells, ISO text or ``01/03/2026`` (day first in
pt-BR / en-GB, month first in en-US), numbers as ``1.234,56`` or ``R$ 2.500``, booleans as
``SIM``/``NÃO``/``x``. Each column is converted as a whole (fast paths for homogeneous columns, since
100k-row sheets are normal) and every value we cannot read becomes empty plus a warning naming its
cell, rather than stopping the run.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from sheetflow.coltypes import ColumnType
from sheetflow.names import normalize


@functools.lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


EXCEL_EPOCH = dt.datetime(1899, 12, 30)
# Dates are held as pandas datetime64[ns], which stops at 1677-09-22 and 2262-04-11. A date outside
# DATE_MIN..DATE_MAX (year 2300, a serial of 9e5) is a problem with its cell, never a crash; the margin
# to pandas' limits is larger than the longest shift a rule may ask for (actions.MAX_DAYS), so no date
# arithmetic on a date read from a cell can overflow either.
DATE_MIN = dt.datetime(1753, 1, 1)
DATE_MAX = dt.datetime(2200, 1, 1)
DATE_RANGE = f"{DATE_MIN:%Y-%m-%d} to {DATE_MAX - dt.timedelta(days=1):%Y-%m-%d}"
# The longest delay, due time or date shift a rule may ask for (delay=, due=, today+Nd, date:X+Nd,
# idle:Nd, delay_days). Longer ones are surely typos; with it, no shift of a readable date overflows.
MAX_SHIFT_DAYS = 50 * 365
_TRUE = {"true", "yes", "y", "sim", "s", "1", "x", "verdadeiro", "v", "on", "ativo", "ok", "✓", "✔"}
_FALSE = {"false", "no", "n", "nao", "0", "falso", "f", "off", "inativo", "-"}
_ISO = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?\s*$",
    re.IGNORECASE,
)
_LOCAL = re.compile(
    r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$"
)
# Words that make a team-added column yes/no: the unambiguous ones only (on/off, ok, ativo, "-" may
# well be text in someone's column).
_INFER_BOOL = {
    "true",
    "false",
    "yes",
    "no",
    "sim",
    "nao",
    "verdadeiro",
    "falso",
    "y",
    "n",
    "s",
    "x",
    "✓",
    "✔",
}
_CURRENCY = re.compile(r"(R\$|US\$|\$|€|£|\s|\u00a0)")


@dataclass(frozen=True)
class Locale:
    """How a workbook writes dates and decimals (Settings ``locale``, default en-US) and the time zone its
    wall-clock times are in (Settings ``timezone``; "" = none known, offsets are then dropped)."""

    code: str = "en-US"
    timezone: str = ""

    @property
    def zone(self) -> ZoneInfo | None:
        """The workbook's zone, or None (unknown names are reported by Settings, not here)."""
        return _zone(self.timezone)

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


# What clearly means "no" in a consent column (normalized): anything else a person typed there means "yes".
CONSENT_NO = frozenset({"false", "falso", "no", "nao", "n", "f", "0", "-"})


def parse_consent(value: object) -> tuple[bool | None, bool]:
    """A consent / do-not-contact cell (``unsubscribed``, ``do_not_contact``, ``bounced``) -> (flag, unclear).

    Fails closed: blank is None (no flag), clear "no" values (FALSE, 0, no, não) are False, clear "yes"
    values are True, and anything else a person typed (``opt-out``, a date, ``2``, ``pediu para sair``) is
    True with ``unclear`` set, so the contact is never emailed because sheetflow misread the cell.
    """
    if value is None or value == "":
        return None, False
    if isinstance(value, bool):
        return value, False
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return None, False
        return (False, False) if value == 0 else (True, value != 1)
    if isinstance(value, str):
        text = normalize(value)
        if not text:
            return None, False
        if text in CONSENT_NO:
            return False, False
        return True, text not in _TRUE
    return True, True  # a date, a time: someone recorded when they asked to stop


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
    """A naive datetime in the workbook's local time (Settings ``timezone``); date-only values are at
    midnight.

    Text with ``Z`` or an offset (``2026-05-15T02:00:00Z``, ``...-07:00``) names an instant: it is
    converted to the workbook's zone, so an export from a UTC system lands on the right local day.
    Text without one, and every date cell, already is wall-clock time in the workbook's zone.
    Raises Unreadable, also for dates outside DATE_MIN..DATE_MAX (what pandas can hold).
    """
    moment = _parse_date(value, locale)
    if moment is not None and not (DATE_MIN <= moment < DATE_MAX):
        raise Unreadable(f"is outside the dates sheetflow can work with ({DATE_RANGE})")
    return moment


def read_date(value: object, locale: Locale = Locale()) -> dt.datetime | None:
    """Like :func:`parse_date` without the pandas range check: years 1-9999 (rule literals, which are
    held in microseconds)."""
    return _parse_date(value, locale)


def _local(moment: dt.datetime, locale: Locale) -> dt.datetime:
    """An aware datetime as naive wall-clock time in the workbook's zone (UTC when the zone is unknown,
    as Settings falls back to UTC for the clock too)."""
    zone = locale.zone or dt.timezone.utc
    try:
        if zone is not None:
            moment = moment.astimezone(zone)
    except (OverflowError, ValueError):
        pass  # at the very ends of the calendar; the range check reports it
    return moment.replace(tzinfo=None)


def _offset(text: str) -> dt.tzinfo:
    if text.upper() in ("Z", "UTC", "GMT"):
        return dt.timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(text)
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def _parse_date(value: object, locale: Locale) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return _local(value, locale) if value.tzinfo else value
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
            y, mo, d, hh, mm, ss = (int(g) if g else 0 for g in m.groups()[:6])
            fraction = m.group(7) or ""
            micro = int((fraction + "000000")[:6]) if fraction else 0
            moment = dt.datetime(y, mo, d, hh, mm, ss, micro)
            if m.group(8):
                return _local(moment.replace(tzinfo=_offset(m.group(8))), locale)
            return moment
        m = _LOCAL.match(text)
        if m:
            a, b, y, hh, mm, ss = (int(g) if g else 0 for g in m.groups())
            if y < 100:
                y += 2000 if y < 70 else 1900
            day, month = (a, b) if locale.day_first else (b, a)
            if month > 12 and day <= 12:  # unambiguous the other way round (13/01 in en-US)
                day, month = month, day
            return dt.datetime(y, month, day, hh, mm, ss)
    except (ValueError, OverflowError):
        raise Unreadable("is not a valid date") from None
    hint = "dd/mm/yyyy" if locale.day_first else "mm/dd/yyyy"
    raise Unreadable(f"is not a date (write 2026-03-01 or {hint})")


def date_has_time(text: str) -> bool:
    """Whether date text a person typed names a time of day (``2026-03-01 14:30``), not a whole day."""
    m = _ISO.match(text) or _LOCAL.match(text)
    return bool(m and m.group(4) is not None)


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
    """The type of a column the team added, read from its values the way the built-in columns are typed.

    A column is NUMBER when every value is a number or number text in the workbook's locale
    (``1.234,56``, ``R$ 2.500``), DATE when every value is a date or date text, BOOL when every value
    is a yes/no word (``SIM``/``NÃO``, ``TRUE``, ``yes``; one-letter ``S``/``N`` only when both kinds
    appear), else TEXT. Text that only looks like a number stays text when it is an identifier: a leading zero
    (``00123``, zip ``01310-100``), a leading ``+`` (phones), more than 15 digits (past float
    precision), and a column whose values are all digit-only text (codes typed as text); one leading-zero
    or ``+`` identifier anywhere in the column keeps it text. Otherwise the first 1,000 non-empty values
    decide, and later cells that do not fit are reported at their cell.
    """
    seen = [v for v in values if v is not None and v != "" and not (isinstance(v, str) and not v.strip())]
    if not seen:
        return ColumnType.TEXT
    sample = seen[:1000]
    kinds = {type(v) for v in sample}
    # An identifier anywhere in the column (not just the sample) keeps it text: 00123 must not become 123.
    ids = any(type(v) is str and _IDENTIFIER.match(v.strip()) for v in seen)
    if kinds <= {bool}:
        return ColumnType.BOOL
    if kinds <= {int, float}:
        return ColumnType.TEXT if ids else ColumnType.NUMBER
    if kinds <= {dt.datetime, dt.date}:
        return ColumnType.DATE
    if not kinds <= {str, int, float, bool, dt.datetime, dt.date}:
        return ColumnType.TEXT
    texts = [v.strip() for v in sample if isinstance(v, str)]
    if (
        kinds <= {str, int, float}
        and not ids
        and all(_number_text(t, locale) for t in texts)
        and (kinds & {int, float} or not all(t.isdigit() for t in texts))
    ):
        return ColumnType.NUMBER
    if kinds <= {str, bool, int, float} and texts and all(_bool_text(v) for v in sample):
        words = {normalize(t) for t in texts}
        # A column of only "F" (gender?) or only "S" (size?) is not a yes/no column; S and N together are.
        if any(len(w) > 1 for w in words) or kinds & {bool} or (words & _TRUE and words & _FALSE):
            return ColumnType.BOOL
    if kinds <= {str, dt.datetime, dt.date}:
        try:
            for t in texts:
                if not (_ISO.match(t) or _LOCAL.match(t)):
                    return ColumnType.TEXT
            if all(read_date(v, locale) for v in sample):  # out-of-range dates are reported per cell
                return ColumnType.DATE
        except Unreadable:
            pass
    return ColumnType.TEXT


_IDENTIFIER = re.compile(r"^(?:0\d|\+|[-(]?0\d)")


def _number_text(text: str, locale: Locale) -> bool:
    """Text a person means as a number: not an id, phone or zip with leading zeros."""
    if _IDENTIFIER.match(text) or not any(ch.isdigit() for ch in text) or sum(map(str.isdigit, text)) > 15:
        return False
    try:
        return parse_number(text, locale) is not None
    except Unreadable:
        return False


def _bool_text(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return value in (0, 1)
    return normalize(value) in _INFER_BOOL


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
        if (
            kinds <= {dt.datetime, str}
            and all(v == "" or (type(v) is dt.datetime and v.tzinfo is None) for v in values)
            and all(DATE_MIN <= v < DATE_MAX for v in values if v != "")  # type: ignore[operator]  # kinds checked above: only datetimes and ""
        ):
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
        return pd.Series([v if v.strip() else None for v in values], dtype="str"), bad  # type: ignore[attr-defined]  # kinds checked: all str
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

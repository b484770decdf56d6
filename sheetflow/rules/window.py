"""Weekly time spans: Settings ``send_window`` (when emails may go out) and ``business_hours`` (when SLA
hours count) are written in one syntax and read by one parser, :func:`parse_window`.

    window = parse_window("Mon-Fri 09:00-18:00")          # pt-BR day names work too: "Seg-Sex 09:00-18:00"
    window.contains(dt.datetime(2026, 11, 23, 10, 0))     # True (a Monday)

The syntax (case, accents and spacing do not matter):

* a clause is days then one or more time spans: ``Mon-Fri 09:00-12:00 14:00-18:00``;
* clauses are separated by ``;`` (or ``|``): ``Mon-Fri 09:00-18:00; Sat 09:00-12:00``;
* days: English or pt-BR names, short or long (``Mon``, ``Monday``, ``Seg``, ``Segunda``,
  ``Segunda-feira``, ``Sáb``, ``Sabado``), ranges with ``-`` or ``a``/``to`` (``Seg a Sex``,
  ``Fri-Mon`` wraps the week), lists with commas or spaces (``Mon,Wed,Fri``); no days = every day;
* times: ``09:00``, ``9:30``, ``9h``, ``9h30``; ``24:00`` is the end of the day
  (``Mon-Sun 00:00-24:00`` is round the clock); a span that ends before it starts runs across
  midnight (``22:00-06:00``) and its second part belongs to the next day;
* ``always`` / ``sempre`` / ``24/7`` or an empty value: every minute of every day.

Holidays (the ``Holidays`` sheet) close whole days: :meth:`Hours.with_holidays`. Times are the
workbook's wall-clock time (Settings ``timezone``); :meth:`Hours.add` counts elapsed hours, so a
span that contains a DST change counts the hours that really pass.

Outside the window an email stays ``planned`` in the Emails sheet and the next run inside the window
sends it. The window is decided once, when the run plans; a long send that crosses its end is not cut
off. The daily limit counts the Emails rows sent (or unconfirmed) on the workbook's current day;
emails over the limit stay planned for the next day.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sheetflow.names import normalize
from sheetflow.tables.table import Tables

DAYS = {
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
    "tues": 1,
    "thur": 3,
    "thurs": 3,
    "seg": 0,
    "ter": 1,
    "qua": 2,
    "qui": 3,
    "sex": 4,
    "sab": 5,
    "dom": 6,
    "segunda": 0,
    "terca": 1,
    "quarta": 2,
    "quinta": 3,
    "sexta": 4,
    "sabado": 5,
    "domingo": 6,
}
ALWAYS_WORDS = ("always", "any", "sempre", "qualquer", "24_7", "all", "todos", "tudo")
DAY_MINUTES = 24 * 60
MAX_SPAN_DAYS = 3660  # Hours.add looks ten years ahead at most: a bound, not a limit anyone reaches
_TIME = r"(\d{1,2})(?:(?::|h)(\d{2})?)?"
_SPAN = re.compile(rf"(?<![\w:]){_TIME}\s*(?:-|–|—|to|a|as|às|até|ate)\s*{_TIME}(?![\w:])", re.IGNORECASE)
_FEIRA = re.compile(r"[-\s]?feira\b", re.IGNORECASE)
_DAY_RANGE_WORD = re.compile(r"\s+(?:a|to|até|ate|through|thru)\s+", re.IGNORECASE)

Span = tuple[int, int]  # minutes from midnight, start < end <= 1440


@dataclass(frozen=True)
class Hours:
    """Open minutes of each weekday (0 = Monday), plus closed dates; ``text`` is the setting as typed."""

    text: str
    week: tuple[tuple[Span, ...], ...] = ((),) * 7
    always: bool = False
    holidays: frozenset[dt.date] = frozenset()

    @property
    def days(self) -> set[int]:
        """Weekdays with any open time."""
        return {d for d in range(7) if self.week[d]}

    def with_holidays(self, dates: Iterable[dt.date]) -> Hours:
        """The same hours with these dates closed all day (also for ``always``)."""
        return replace(self, holidays=self.holidays | frozenset(dates))

    def open_on(self, day: dt.date) -> bool:
        return day not in self.holidays and bool(self.spans(day))

    def spans(self, day: dt.date) -> tuple[Span, ...]:
        if day in self.holidays:
            return ()
        return ((0, DAY_MINUTES),) if self.always else self.week[day.weekday()]

    def contains(self, local: dt.datetime) -> bool:
        """Whether the wall-clock time ``local`` (naive, workbook time) is inside the hours."""
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.spans(local.date()))

    def closed_reason(self, local: dt.datetime) -> str:
        """Why ``local`` is outside, for an email's detail ("" when inside)."""
        if self.contains(local):
            return ""
        if local.date() in self.holidays:
            return f"{local.date():%Y-%m-%d} is a holiday (Holidays sheet)"
        return f"outside {self.text or 'the hours'}"

    def add(self, start: dt.datetime, hours: float, zone: dt.tzinfo | None = None) -> dt.datetime:
        """``start`` (naive wall-clock time) + ``hours`` of open time, as naive wall-clock time.

        Hours are elapsed hours: with ``zone`` (the workbook's), a span in which clocks go forward
        holds one hour less, one in which they go back one more. Raises ValueError when the hours do not
        fit in the next ten years (no open time at all, or a huge number).
        """
        remaining = dt.timedelta(hours=hours)
        current = start
        for _ in range(MAX_SPAN_DAYS):
            day = current.date()
            midnight = dt.datetime.combine(day, dt.time())
            for first, last in self.spans(day):
                opening = midnight + dt.timedelta(minutes=first)
                closing = midnight + dt.timedelta(minutes=last)
                if current >= closing:
                    continue
                current = max(current, opening)
                available = _elapsed(current, closing, zone)
                if remaining <= available:
                    return _later(current, remaining, zone)
                remaining -= available
                current = closing
            current = midnight + dt.timedelta(days=1)
        raise ValueError(
            "the hours do not fit in the next ten years — check the hours and the Holidays sheet"
        )


def _elapsed(a: dt.datetime, b: dt.datetime, zone: dt.tzinfo | None) -> dt.timedelta:
    if zone is None:
        return b - a
    return b.replace(tzinfo=zone).astimezone(dt.timezone.utc) - a.replace(tzinfo=zone).astimezone(
        dt.timezone.utc
    )


def _later(a: dt.datetime, delta: dt.timedelta, zone: dt.tzinfo | None) -> dt.datetime:
    if zone is None:
        return a + delta
    moment = a.replace(tzinfo=zone).astimezone(dt.timezone.utc) + delta
    return moment.astimezone(zone).replace(tzinfo=None)


# Kept for callers that know the send window by its old name.
SendWindow = Hours


def _days(text: str) -> frozenset[int]:
    text = _DAY_RANGE_WORD.sub("-", _FEIRA.sub("", text))
    text = re.sub(r"\s*[-–—]\s*", "-", text).strip().strip(",")
    if not text:
        return frozenset(range(7))
    days: set[int] = set()
    for part in re.split(r"[,\s/]+", text):
        part = part.strip(".")
        if not part or normalize(part) in ("e", "and", "&"):
            continue
        a, sep, b = part.partition("-")
        first = DAYS.get(normalize(a).rstrip("."))
        last = DAYS.get(normalize(b).rstrip(".")) if sep else None
        if first is None or (sep and last is None):
            raise ValueError(f'"{part}" is not a day (Mon..Sun or Seg..Dom)')
        if last is None:
            days.add(first)
            continue
        d = first
        while True:
            days.add(d)
            if d == last:
                break
            d = (d + 1) % 7
    return frozenset(days)


def _minutes(hours: str, minutes: str | None, whole: str) -> int:
    h, m = int(hours), int(minutes or 0)
    if h > 24 or m > 59 or (h == 24 and m):
        raise ValueError(f'"{whole}" is not a time range like 09:00-18:00 (hours 0..24, minutes 0..59)')
    return h * 60 + m


def parse_days(text: str) -> frozenset[int]:
    """Weekdays (0 = Monday) named in ``text`` with the day vocabulary above (``Mon-Fri``, ``Seg a Sex``,
    ``Mon,Wed``; empty = every day). Shared with Settings ``schedule`` (:mod:`sheetflow.commands.schedule`), so a
    team writes days one way everywhere. Raises ValueError naming the word that is not a day."""
    return _days(text)


def parse_time_of_day(text: str) -> int:
    """Minutes after midnight of a time written as in a span (``08:00``, ``8h``, ``8h30``; 0..23:59).
    Raises ValueError with a readable reason."""
    m = re.fullmatch(_TIME, text.strip(), re.IGNORECASE)
    if not m or (":" not in text and "h" not in text.lower()):
        raise ValueError(f'"{text.strip()}" is not a time of day like 08:00')
    h, mm = int(m.group(1)), int(m.group(2) or 0)
    minutes = h * 60 + mm
    if h > 23 or mm > 59:
        raise ValueError(f'"{text.strip()}" is not a time of day; use 00:00 to 23:59')
    return minutes


def parse_window(text: str | None) -> Hours:
    """The one parser for weekly hours (send_window, business_hours). Raises ValueError with a readable
    reason (the caller names the Settings cell)."""
    raw = (text or "").strip()
    folded = normalize(raw.replace("/", "_"))
    if not raw or folded in ALWAYS_WORDS:
        return Hours(raw, always=True)
    week: list[list[Span]] = [[] for _ in range(7)]
    for clause in re.split(r"[;|\n]", raw):
        if not clause.strip():
            continue
        spans = []
        for m in _SPAN.finditer(clause):
            start = _minutes(m.group(1), m.group(2), m.group(0))
            end = _minutes(m.group(3), m.group(4), m.group(0))
            if start == DAY_MINUTES or start == end:
                raise ValueError(f'"{m.group(0)}" is an empty time range; write e.g. 09:00-18:00')
            spans.append((start, end))
        if not spans:
            raise ValueError(f'"{clause.strip()}" has no time range like 09:00-18:00')
        for day in _days(_SPAN.sub(" ", clause)):
            for start, end in spans:
                if start < end:
                    week[day].append((start, end))
                else:  # across midnight: the rest of the night belongs to the next day
                    week[day].append((start, DAY_MINUTES))
                    if end:
                        week[(day + 1) % 7].append((0, end))
    return Hours(raw, tuple(_merged(spans) for spans in week))


def _merged(spans: list[Span]) -> tuple[Span, ...]:
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def holiday_dates(tables: Tables) -> set[dt.date]:
    """The dates of the Holidays sheet (empty when there is none)."""
    sheet = tables.get("Holidays")
    if sheet is None or not sheet.exists or "date" not in sheet.df:
        return set()
    return {ts.date() for ts in sheet.df["date"].dropna()}


def sent_today(tables: Tables, local_now: dt.datetime) -> int:
    """Emails the Emails sheet says went out (sent or unconfirmed) on the workbook's current day."""
    log = tables["Emails"]
    if not len(log):
        return 0
    today = local_now.date()
    count = 0
    for status, sent_at in zip(log.df["status"].to_numpy(dtype=object), log.df["sent_at"].tolist()):
        if (
            isinstance(status, str)
            and status.strip().lower() in ("sent", "unconfirmed", "sending")
            and sent_at is not None
            and sent_at == sent_at
            and hasattr(sent_at, "date")
            and sent_at.date() == today
        ):
            count += 1
    return count

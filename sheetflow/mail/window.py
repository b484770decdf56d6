"""When emails may go out: Settings ``send_window`` (in the workbook's timezone) and ``daily_email_limit``.

    window = parse_window("Mon-Fri 09:00-18:00")          # pt-BR day names work too: "Seg-Sex 09:00-18:00"
    window.contains(dt.datetime(2026, 11, 23, 10, 0))     # True (a Monday)

Forms: ``Mon-Fri 09:00-18:00``, ``Mon,Wed,Fri 10:00-12:00 14:00-17:00``, several clauses separated by
``;`` (``Mon-Fri 09:00-18:00; Sat 09:00-12:00``), ``09:00-18:00`` (every day), ``22:00-06:00`` (across
midnight) and ``always`` (or an empty value). Outside the window an email stays ``planned`` in the
Emails sheet and the next run inside the window sends it. The window is decided once, when the run
plans; a long send that crosses its end is not cut off.

The daily limit counts the Emails rows sent (or unconfirmed) on the workbook's current day; emails over
the limit stay planned for the next day.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ..names import normalize
from ..tables import Tables

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
_SPAN = re.compile(
    r"(\d{1,2})(?::|h)(\d{2})?\s*(?:-|–|to|a|até|ate)\s*(\d{1,2})(?::|h)(\d{2})?", re.IGNORECASE
)


@dataclass(frozen=True)
class SendWindow:
    text: str
    clauses: tuple[tuple[frozenset[int], tuple[tuple[dt.time, dt.time], ...]], ...] = ()

    @property
    def always(self) -> bool:
        return not self.clauses

    def contains(self, local: dt.datetime) -> bool:
        if self.always:
            return True
        t = local.time()
        for days, spans in self.clauses:
            for start, end in spans:
                if start < end:
                    if local.weekday() in days and start <= t < end:
                        return True
                elif (local.weekday() in days and t >= start) or (
                    (local.weekday() - 1) % 7 in days and t < end
                ):  # across midnight
                    return True
        return False


def _days(text: str) -> frozenset[int]:
    text = text.strip().strip(",")
    if not text:
        return frozenset(range(7))
    days: set[int] = set()
    for part in re.split(r"[,\s]+", text):
        if not part:
            continue
        a, sep, b = part.partition("-")
        first, last = DAYS.get(normalize(a).rstrip(".")), DAYS.get(normalize(b).rstrip(".")) if sep else None
        if first is None or (sep and last is None):
            raise ValueError(f'"{part}" is not a day (Mon..Sun or Seg..Dom)')
        if not sep:
            days.add(first)
            continue
        d = first
        while True:
            days.add(d)
            if d == last:
                break
            d = (d + 1) % 7
    return frozenset(days)


def parse_window(text: str | None) -> SendWindow:
    """Raises ValueError with a readable reason."""
    raw = (text or "").strip()
    if not raw or normalize(raw) in ("always", "any", "sempre", "qualquer", "24_7", "all"):
        return SendWindow(raw)
    clauses = []
    for clause in re.split(r"[;|]", raw):
        if not clause.strip():
            continue
        spans = []
        for m in _SPAN.finditer(clause):
            h1, m1, h2, m2 = int(m.group(1)), int(m.group(2) or 0), int(m.group(3)), int(m.group(4) or 0)
            if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
                raise ValueError(f'"{m.group(0)}" is not a time range like 09:00-18:00')
            start = dt.time(min(h1, 23), m1) if h1 < 24 else dt.time(23, 59, 59)
            end = dt.time(h2, m2) if h2 < 24 else dt.time(23, 59, 59, 999999)
            spans.append((start, end))
        if not spans:
            raise ValueError(f'"{clause.strip()}" has no time range like 09:00-18:00')
        clauses.append((_days(_SPAN.sub(" ", clause)), tuple(spans)))
    return SendWindow(raw, tuple(clauses))


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

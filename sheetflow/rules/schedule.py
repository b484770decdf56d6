"""The Settings ``schedule`` value (pt-BR ``agenda``): when the scheduled runner runs a workbook.

    spec = parse_schedule("Seg-Sex 08:00, 14:00")
    spec.next_after(now, ZoneInfo("America/Sao_Paulo"))  # the next run, an aware datetime

An interval (``every 15m``, ``a cada 2h``: elapsed time, so DST changes nothing) or times of day on weekdays
(``Mon-Fri 08:00``; clauses joined by ``;``), read with the day vocabulary of :mod:`sheetflow.rules.window`.
The runner that acts on it is :mod:`sheetflow.commands.schedule` (which explains slots, DST and missed runs);
this module only parses and answers "when next", so ``check`` can report a bad value without the runner.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sheetflow.names import normalize
from sheetflow.problems import Problem, UsageError, error
from sheetflow.rules.window import parse_days, parse_time_of_day
from sheetflow.tables.settings import Settings

UTC = dt.timezone.utc
MIN_INTERVAL = dt.timedelta(minutes=1)  # a run reads the whole workbook; more often helps nobody
MAX_INTERVAL = dt.timedelta(days=31)

_OFF_WORDS = {"", "off", "none", "never", "no", "nunca", "desligado", "nenhum", "nao"}
_EVERY = re.compile(r"^(?:every|each|a cada|cada|todo|toda|de)\s*(\d+)\s*([a-z]+)\.?$")
_UNITS = {
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "minuto": 60,
    "minutos": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "hora": 3600,
    "horas": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "dia": 86400,
    "dias": 86400,
}
_CLOCK = re.compile(r"(?<![\w:])\d{1,2}(?::\d{2}|h(?:\d{2})?)(?![\w:])", re.IGNORECASE)
_EVERY_DAY = re.compile(
    r"\b(?:every\s*day|daily|each\s*day|todos\s*os\s*dias|todo\s*dia|diariamente|at|as|às)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Schedule:
    """When to run: ``every`` (elapsed time) or ``times`` (weekday set, minutes after midnight) clauses.

    ``text`` is the schedule as typed (shown in status and logs)."""

    text: str
    every: dt.timedelta | None = None
    times: tuple[tuple[frozenset[int], tuple[int, ...]], ...] = ()

    def describe(self) -> str:
        return self.text

    def slots_on(self, day: dt.date) -> list[int]:
        """Minutes after midnight of the day's wall-clock slots, sorted."""
        return sorted({m for days, mins in self.times if day.weekday() in days for m in mins})

    def _instant(self, day: dt.date, minute: int, zone: dt.tzinfo) -> dt.datetime:
        # fold=0: a repeated wall-clock time (fall-back) is its first occurrence; a skipped one (spring-forward)
        # resolves to one instant just after the gap. Either way one slot, one run.
        naive = dt.datetime.combine(day, dt.time(minute // 60, minute % 60))
        return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)

    def next_after(
        self, moment: dt.datetime, zone: dt.tzinfo, last: dt.datetime | None = None
    ) -> dt.datetime:
        """The first slot strictly after ``moment`` (aware), as an aware UTC datetime.

        Interval schedules count from ``last`` (the last slot served; ``moment`` when None)."""
        if self.every is not None:
            base = last or moment
            if base + self.every > moment:
                return base + self.every
            steps = (moment - base) // self.every + 1
            return base + steps * self.every
        local = moment.astimezone(zone)
        for offset in range(0, 8 + 1):
            day = local.date() + dt.timedelta(days=offset)
            for minute in self.slots_on(day):
                instant = self._instant(day, minute, zone)
                if instant > moment:
                    return instant
        raise ValueError(f'schedule "{self.text}" has no time in the next week')  # parse_schedule prevents it

    def due(self, last: dt.datetime | None, now: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
        """The newest slot after ``last`` and not after ``now`` (the one run to make now), or None.

        Missed slots collapse into that one: never a burst after a sleep. ``last`` None (nothing served yet):
        an interval schedule is due now; a time-of-day schedule is not (nothing was missed before the
        runner knew the workbook; the caller records a start instead)."""
        if self.every is not None:
            if last is None:
                return now
            if now - last < self.every:
                return None
            return last + ((now - last) // self.every) * self.every
        if last is None:
            return None
        latest = None
        local = now.astimezone(zone)
        start = max(last, now - dt.timedelta(days=8)).astimezone(zone).date()
        day = start
        while day <= local.date():
            for minute in self.slots_on(day):
                instant = self._instant(day, minute, zone)
                if last < instant <= now:
                    latest = instant
            day += dt.timedelta(days=1)
        return latest


def parse_schedule(text: str | None) -> Schedule | None:
    """Settings ``schedule`` / ``--every`` / ``--at`` text -> Schedule; None for no schedule (empty, ``off``).

    Raises ValueError with a readable reason (the caller names the cell or flag)."""
    raw = (text or "").strip()
    folded = " ".join(normalize(raw).replace("_", " ").split())
    if folded in _OFF_WORDS:
        return None
    m = _EVERY.match(folded) or _EVERY.match(folded.replace(" ", "", 1) if folded[:1].isdigit() else "")
    if m is None and re.fullmatch(r"\d+\s*[a-z]+", folded):
        m = _EVERY.match("every " + folded)
    if m is not None:
        unit = _UNITS.get(m.group(2))
        if unit is None:
            raise ValueError(f'"{raw}": unknown unit "{m.group(2)}"; use m (minutes), h (hours) or d (days)')
        every = dt.timedelta(seconds=int(m.group(1)) * unit)
        if not MIN_INTERVAL <= every <= MAX_INTERVAL:
            raise ValueError(f'"{raw}": an interval from 1 minute to 31 days, e.g. every 15m')
        return Schedule(raw, every=every)
    clauses = []
    for clause in re.split(r"[;|\n]", raw):
        if not clause.strip():
            continue
        minutes = []
        for hit in _CLOCK.finditer(clause):
            minutes.append(parse_time_of_day(hit.group(0)))
        if not minutes:
            raise ValueError(
                f'"{clause.strip()}" has no time of day; write e.g. Mon-Fri 08:00, Seg-Sex 08:00, 14:00 '
                "or every 15m"
            )
        rest = _EVERY_DAY.sub(" ", _CLOCK.sub(" ", clause))
        rest = re.sub(r"(?:\s*,\s*)+", ",", rest).strip(",")
        days = parse_days(rest)
        clauses.append((days, tuple(sorted(set(minutes)))))
    return Schedule(raw, times=tuple(clauses))


def schedule_from_flags(every: str | None, at: str | None, days: str | None) -> Schedule | None:
    """``--every 15m`` or ``--at 08:00[,14:00] [--days mon-fri]`` -> Schedule (None: no flag given)."""
    if every and at:
        raise UsageError("give --every or --at, not both")
    if days and not at:
        raise UsageError("--days goes with --at (e.g. --at 08:00 --days mon-fri)")
    try:
        if every:
            text = every.strip()
            spec = parse_schedule(
                text if text.lower().startswith(("every", "a cada", "cada")) else f"every {text}"
            )
            if spec is None or spec.every is None:
                raise ValueError(f'"{every}" is not an interval like 15m, 2h or 1d')
            return spec
        if at:
            return parse_schedule(f"{days or ''} {at}".strip())
    except ValueError as e:
        raise UsageError(f"{'--every' if every else '--at/--days'}: {e}") from None
    return None


def schedule_problems(settings: Settings) -> list[Problem]:
    """``check``: the Settings ``schedule`` problem, naming its cell (the runner reports the same words)."""
    try:
        parse_schedule(settings.text("schedule"))
    except ValueError as e:
        return [
            error(
                settings.cells.get("schedule", "Settings"),
                f"schedule: {e}",
                "e.g. Mon-Fri 08:00 or every 15m",
            )
        ]
    return []

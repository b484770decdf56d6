"""The Settings sheet (key / value rows) as typed values with defaults.

Keys are matched like headers (case, spaces, accents) and accept pt-BR aliases. Unknown keys are kept:
teams put their own values there for email templates. A bad value is a problem naming its cell and
the default is used instead, so one typo never stops the run.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sheetflow import contract
from sheetflow.coerce import Locale, Unreadable, parse_number
from sheetflow.names import normalize
from sheetflow.problems import Problem, error, warning
from sheetflow.tables.table import Table

# What each number setting may be, and why: beyond these the value cannot mean anything (a catch-up of
# 1e18 days, a negative limit) and would overflow the date arithmetic it feeds.
RANGES: dict[str, tuple[float, float]] = {
    "catch_up_days": (0, 3650),  # ten years
    "daily_email_limit": (0, 10_000_000),  # far beyond any SMTP provider's daily quota
    "backups": (0, 1000),  # copies of the whole workbook in .sheetflow/backups
    "log_max_rows": (10, 1_000_000),  # Excel holds 1,048,576 rows a sheet (archive.MIN_CAP/MAX_CAP)
    "mql_threshold": (-1e12, 1e12),
    "sql_threshold": (-1e12, 1e12),
    "sla_hours_urgent": (0, 87_600),  # ten years of hours; the business-hours walk looks that far
    "sla_hours_high": (0, 87_600),
    "sla_hours_normal": (0, 87_600),
    "sla_hours_low": (0, 87_600),
}
# A bad value falls back to the default, except where the default could do harm: a daily email limit
# that cannot be read sends nothing (when in doubt, do not send); the emails wait, planned, for the fix.
WHEN_UNREADABLE: dict[str, float] = {"daily_email_limit": 0.0}
WHOLE = frozenset({"catch_up_days", "daily_email_limit", "backups", "log_max_rows"})
_LOCALE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}")


@dataclass
class Settings:
    values: dict[str, str] = field(default_factory=dict)  # canonical key -> text as typed
    cells: dict[str, str] = field(default_factory=dict)  # canonical key -> "Settings!B4"
    problems: list[Problem] = field(default_factory=list)
    bad: set[str] = field(default_factory=set)  # keys whose value could not be used (reported)
    # what the workbook itself says when the Settings sheet does not (a Google spreadsheet's time zone and
    # locale from its metadata); the sheet wins, then these, then the contract's default
    defaults: dict[str, str] = field(default_factory=dict)

    def text(self, key: str) -> str:
        value = self.values.get(key)
        if value is None or (value == "" and key in self.defaults):
            value = self.defaults.get(key)
        if value is None:
            spec = contract.SETTINGS_BY_KEY.get(key)
            return spec.default if spec else ""
        return value

    def number(self, key: str) -> float | None:
        """The setting as a number; an unreadable value is reported once and the default used."""
        raw = self.text(key)
        spec = contract.SETTINGS_BY_KEY.get(key)
        default = parse_number(spec.default) if spec and spec.default else None
        fallback = WHEN_UNREADABLE.get(key, default)
        low, high = RANGES.get(key, (-1e15, 1e15))
        then = self._fallback_text(key, fallback)
        try:
            value = parse_number(raw, self.locale)
        except Unreadable as e:
            self._report(key, f'"{raw}" {e}', f"enter a number from {_num(low)} to {_num(high)}; {then}")
            return fallback
        if value is not None and not low <= value <= high:
            self._report(
                key, f"{value:g} is out of range", f"enter a number from {_num(low)} to {_num(high)}; {then}"
            )
            return fallback
        if value is not None and key in WHOLE and value != int(value):
            self._report(key, f"{value:g} is not a whole number", f"enter a whole number; {then}")
            return fallback
        return value

    @staticmethod
    def _fallback_text(key: str, fallback: float | None) -> str:
        if key == "daily_email_limit":
            return "until then no email is sent (they wait, planned)"
        return f"until then {_num(fallback)} is used" if fallback is not None else "until then it is ignored"

    def validate(self) -> None:
        """Read every setting sheetflow knows once, so each bad value is a problem at its cell whatever
        the run does (``check`` and ``run`` report the same; a setting no stage needed today is still
        checked). Mail settings (addresses, send window, List-Unsubscribe) are checked by
        :func:`sheetflow.engine.emails.mail_settings`."""
        for key in RANGES:
            self.number(key)
        self.timezone  # noqa: B018 - reading it reports an unknown zone
        self.locale  # noqa: B018 - reading it reports an unknown locale

    @property
    def locale(self) -> Locale:
        """The workbook's locale; a value that is not a language tag (``pt-BR``, ``en-GB``) is an error
        at its cell and en-US is used."""
        code = self.text("locale") or "en-US"
        if len(code) > 35 or not _LOCALE.fullmatch(code):
            self._report(
                "locale", f'"{code}" is not a locale', "write en-US, en-GB or pt-BR; until then en-US is used"
            )
            code = "en-US"
        return Locale(code, self.text("timezone") or "UTC")

    @property
    def timezone(self) -> ZoneInfo:
        name = self.text("timezone") or "UTC"
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self._report(
                "timezone",
                f'unknown time zone "{name}"',
                "use an IANA name such as America/Sao_Paulo or Europe/London",
            )
            return ZoneInfo("UTC")

    def local_now(self, now: dt.datetime) -> dt.datetime:
        """``now`` (aware) as naive wall-clock time in the workbook's timezone, the form cells hold."""
        return now.astimezone(self.timezone).replace(tzinfo=None, microsecond=0)

    def _report(self, key: str, message: str, hint: str) -> None:
        self.bad.add(key)
        problem = error(self.cells.get(key, "Settings"), f"{key}: {message}", hint)
        if problem not in self.problems:
            self.problems.append(problem)


def _num(x: float) -> str:
    return f"{int(x):,}" if x == int(x) and abs(x) < 1e15 else f"{x:g}"


def load_settings(table: Table | None) -> Settings:
    settings = Settings()
    if table is None or not table.exists or not len(table):
        return settings
    keys = table.df["key"]
    values = table.df["value"]
    for pos in range(len(table)):
        key_raw = keys.iloc[pos]
        if not isinstance(key_raw, str) or not key_raw.strip():
            continue
        key = normalize(key_raw)
        key = contract.SETTING_ALIASES.get(key, key)
        if key in settings.values:
            settings.problems.append(
                warning(
                    table.ref(pos, "key"),
                    f'setting "{key_raw}" appears twice',
                    f"the first one ({settings.cells[key]}) is used",
                )
            )
            continue
        value = values.iloc[pos]
        settings.values[key] = value.strip() if isinstance(value, str) else ""
        settings.cells[key] = table.ref(pos, "value")
    return settings

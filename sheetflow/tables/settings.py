"""The Settings sheet (key / value rows) as typed values with defaults.

Keys are matched like headers (case, spaces, accents) and accept pt-BR aliases. Unknown keys are kept:
teams put their own values there for email templates. A bad value is a problem naming its cell and
the default is used instead, so one typo never stops the run.
"""

from __future__ import annotations

import datetime as dt
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
    "daily_email_limit": (0, 10_000_000),
    "backups": (0, 1000),
    "mql_threshold": (-1e12, 1e12),
    "sql_threshold": (-1e12, 1e12),
    "sla_hours_urgent": (0, 87_600),  # ten years of hours; the business-hours walk looks that far
    "sla_hours_high": (0, 87_600),
    "sla_hours_normal": (0, 87_600),
    "sla_hours_low": (0, 87_600),
}


@dataclass
class Settings:
    values: dict[str, str] = field(default_factory=dict)  # canonical key -> text as typed
    cells: dict[str, str] = field(default_factory=dict)  # canonical key -> "Settings!B4"
    problems: list[Problem] = field(default_factory=list)
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
        try:
            value = parse_number(raw, self.locale)
        except Unreadable as e:
            self._report(key, f'"{raw}" {e}', "enter a number")
            return default
        low, high = RANGES.get(key, (-1e15, 1e15))
        if value is not None and not low <= value <= high:
            self._report(key, f"{value:g} is out of range", f"enter a number from {low:g} to {high:g}")
            return default
        return value

    @property
    def locale(self) -> Locale:
        return Locale(self.text("locale") or "en-US", self.text("timezone") or "UTC")

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
        problem = error(self.cells.get(key, "Settings"), f"{key}: {message}", hint)
        if problem not in self.problems:
            self.problems.append(problem)


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

"""Problems found in a workbook, as values the user can read.

A user mistake is never a traceback: every check and every stage of a run returns :class:`Problem`
values that name the cell (``Scoring!B4``), say what is wrong and what to do. The run goes on where it
safely can; errors make ``check`` exit 1 and are written to the ``Runs`` sheet.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"  # a rule or sheet that cannot be used; exit code 1
    WARNING = "warning"  # data we could not read as typed; the cell is treated as empty
    NOTE = "note"  # informational (e.g. an optional sheet is missing)


@dataclass(frozen=True)
class Problem:
    where: str  # "Scoring!B4", "Scoring", or "" for the whole workbook
    message: str  # what is wrong
    hint: str = ""  # what to do
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} — {self.hint}" if self.hint else text

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def error(where: str, message: str, hint: str = "") -> Problem:
    return Problem(where, message, hint, Severity.ERROR)


def warning(where: str, message: str, hint: str = "") -> Problem:
    return Problem(where, message, hint, Severity.WARNING)


def note(where: str, message: str, hint: str = "") -> Problem:
    return Problem(where, message, hint, Severity.NOTE)


class SheetflowError(Exception):
    """A failure the user can act on; carries the CLI exit code."""

    exit_code = 1


class UsageError(SheetflowError):
    exit_code = 2


class WorkbookBusy(SheetflowError):
    """The workbook is open elsewhere, locked by another runner, or changed while we worked."""

    exit_code = 3

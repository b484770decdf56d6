"""Problems found in a workbook, as values the user can read.

A user mistake is never a traceback: every check and every stage of a run returns :class:`Problem`
values that name the cell (``Scoring!B4``), say what is wrong and what to do. The run goes on where it
safely can; errors make ``check`` exit 1 and are written to the ``Runs`` sheet.

Exceptions are for what stops a command (``SheetflowError``, with its exit code) and, inside a stage, for a
rule cell that cannot be used (``RuleError``: the stage catches it and turns it into a Problem naming the
cell). One base per kind::

    Exception
    ├── SheetflowError                  stops a command; .exit_code for the CLI (1)
    │   ├── UsageError                  wrong arguments or address (2)
    │   ├── WorkbookBusy                open elsewhere, leased, or changed while we worked (3)
    │   └── book.xlsxpatch.PatchError   a write the file format cannot take
    └── RuleError                       a rule cell that cannot be used; str(e) is a sentence, no cell
        ├── rules.expr.WhenError        a ``when`` condition (.position: 0-based offset)
        ├── rules.triggers.TriggerError a ``trigger`` cell                (also a ValueError)
        ├── rules.actions.ActionError   an ``action`` or its ``params``   (also a ValueError)
        └── rules.sandbox.RenderError   a template or text that cannot be rendered (.field, .kind)

Values the user typed that cannot be read as their column's type are :class:`sheetflow.coerce.Unreadable`
(a ValueError: the cell is treated as empty and a warning names it), and an address or message that must not
be sent is :class:`sheetflow.compose.message.InvalidAddress` / :class:`sheetflow.compose.headers.UnsafeMessage`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum

QUOTE_LIMIT = 80  # characters of a quoted cell value shown in a message (then "…")
MESSAGE_LIMIT = 600  # characters of one message: a message is read on one terminal line or one cell

# C0/C1 controls, DEL, and the invisible format characters that reorder or hide text (bidi overrides,
# zero-width joiners, line/paragraph separators): a cell's text must never move the operator's cursor,
# clear the screen or split one plan line into two.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_LONG_QUOTE = re.compile('"([^"]{' + str(QUOTE_LIMIT + 1) + ',})"')


def printable(text: object, limit: int | None = None) -> str:
    """Text that is safe to print or log: control and invisible format characters escaped (``\\x1b``,
    ``\\n``), and at most ``limit`` characters (the rest shown as "…"). The one helper every message and
    plan line goes through (issue 20.5: a cell must not clear the operator's screen)."""
    text = "" if text is None else str(text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return _UNSAFE.sub(_escaped, text)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A cell value quoted in a message: ``"opt-out"``; long values shortened, controls escaped."""
    return f'"{printable(value, limit)}"'


def _escaped(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _tidy(text: str, limit: int) -> str:
    text = _LONG_QUOTE.sub(lambda m: f'"{m.group(1)[: QUOTE_LIMIT - 1]}…"', str(text))
    return printable(unicodedata.normalize("NFC", text), limit)


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

    def __post_init__(self) -> None:
        # every message quotes what people typed: make it safe once, here (see printable)
        for name, limit in (("where", 120), ("message", MESSAGE_LIMIT), ("hint", MESSAGE_LIMIT)):
            value = getattr(self, name)
            tidy = _tidy(value, limit)
            if tidy != value:
                object.__setattr__(self, name, tidy)

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


class RuleError(Exception):
    """A rule cell that cannot be used (see the tree above). ``str(e)`` is a readable sentence without the
    cell name: the caller knows the cell and prefixes it (``Scoring!B4: ...``)."""

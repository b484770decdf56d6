"""The Control sheet (pt-BR ``Controle``): the panel behind the Excel button, the Google Sheets menu and the
scheduler's requests. One module owns its layout; everything else reads and writes it through these helpers.

Layout (fixed cells, so a reader needs one small range, ``A1:F60``; labels in the workbook's language)::

        A                 B
    1   sheetflow         Choose an action in B3, then press the button (or the sheetflow tab's Run).
    3   Action            Run            <- dropdown: Run, Preview, Send, Check, Report, Undo last run
    4   Status            done 10:42: 12 emails, 30 cells   (or "running… 40%", or the first problems)
    5   Last run          2026-11-23 10:42  (a date-time cell)
    6   Summary           the run's one-line summary (Runs.counts)
    8   action | requested_by | requested_at | status | answered_at | summary    <- requests (header row)
    9+  Run    | ana@x.com    | 2026-11-23 10:40 | waiting | (empty) | (empty)

Requests: the Google Sheets menu (or a person) appends a row with ``status`` ``waiting`` (blank counts as
waiting); a runner (the scheduler, issue 14) answers each exactly once: :func:`claim` marks it ``running``
(that write is the claim, made under the run lease), and :func:`answer` writes ``done`` or ``failed`` with
the time and the summary. A request whose ``action`` is not one of :data:`ACTIONS` is answered ``failed``
with a message that names the cell.

API (all pure over :class:`~sheetflow.book.RawSheet` / :class:`~sheetflow.book.SheetPatch`, so they work
through any Book)::

    panel = read_control(raws)                 # Control | None: action, requests, where things are
    book.write([status_patch(panel, "running… 40%")])
    book.write([result_patch(panel, status=..., when=local_now, summary=...)])
    book.write([claim(panel, request)]); ...; book.write([answer(panel, request, "done", when, summary)])
    new_control_patch("pt-BR")                 # the sheet `init` / `excel setup` add

To run an action and answer in the sheet in one call (what the button does), use
``sheetflow.commands.button.run_action(book, action, trigger="schedule")``; it returns an ``ActionResult`` (status,
summary, ok) whose ``status``/``summary`` fit :func:`answer`.

Action words are matched with :func:`sheetflow.names.normalize` (case, accents and separators ignored), in
English and pt-BR (``Executar``, ``Pré-visualizar``, ``Enviar``, ``Verificar``, ``Relatório``,
``Desfazer última execução``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sheetflow import contract
from sheetflow.book import NewSheet, RawSheet, SheetPatch, Validation
from sheetflow.names import cell_ref, normalize
from sheetflow.problems import Problem, error

__all__ = [
    "ACTIONS",
    "Control",
    "Request",
    "action_of",
    "answer",
    "claim",
    "new_control_patch",
    "read_control",
    "result_patch",
    "status_patch",
]

SHEET = "Control"  # canonical name (contract); pt-BR "Controle"

# canonical action -> (English label, pt-BR label); the dropdown shows the labels, in this order
ACTIONS: dict[str, tuple[str, str]] = {
    "run": ("Run", "Executar"),
    "preview": ("Preview", "Pré-visualizar"),
    "send": ("Send", "Enviar"),
    "check": ("Check", "Verificar"),
    "report": ("Report", "Relatório"),
    "undo": ("Undo last run", "Desfazer última execução"),
}
_ACTION_WORDS = {
    **{normalize(en): key for key, (en, _) in ACTIONS.items()},
    **{normalize(pt): key for key, (_, pt) in ACTIONS.items()},
    **{key: key for key in ACTIONS},
    "dry_run": "preview",
    "simular": "preview",
    "previa": "preview",
    "undo": "undo",
    "desfazer": "undo",
    "relatorio": "report",
}

# label cells of column A: canonical key -> (row, English, pt-BR)
TITLE_ROW = 1
ACTION_ROW, STATUS_ROW, LAST_RUN_ROW, SUMMARY_ROW = 3, 4, 5, 6
LABELS = {
    "action": (ACTION_ROW, "Action", "Ação"),
    "status": (STATUS_ROW, "Status", "Situação"),
    "last_run": (LAST_RUN_ROW, "Last run", "Última execução"),
    "summary": (SUMMARY_ROW, "Summary", "Resumo"),
}
VALUE_COL = 2
REQUEST_HEADER_ROW = 8
REQUEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("action", "ação"),
    ("requested_by", "pedido_por"),
    ("requested_at", "pedido_em"),
    ("status", "situação"),
    ("answered_at", "respondido_em"),
    ("summary", "resumo"),
)
MAX_REQUESTS = 50  # rows below the header a reader looks at: the range stays small (A1:F60)
READ_RANGE = "A1:F60"
# request status words: canonical -> (English, pt-BR)
REQUEST_STATUS = {
    "waiting": ("waiting", "aguardando"),
    "running": ("running", "executando"),
    "done": ("done", "feito"),
    "failed": ("failed", "falhou"),
}
_STATUS_WORDS = {normalize(w): k for k, pair in REQUEST_STATUS.items() for w in pair} | {"": "waiting"}
HINT = {
    "en": "Choose an action in B3, then press the button (or Run on the sheetflow tab).",
    "pt-BR": "Escolha uma ação em B3 e clique no botão (ou em Executar na guia sheetflow).",
}


def _pt(lang: str) -> bool:
    return lang.lower().startswith("pt")


def action_of(text: object) -> str | None:
    """The canonical action for what a cell holds (``Pré-visualizar`` -> ``preview``); None if unknown."""
    if text is None:
        return None
    return _ACTION_WORDS.get(normalize(text))


def action_label(action: str, lang: str) -> str:
    en, pt = ACTIONS[action]
    return pt if _pt(lang) else en


@dataclass
class Request:
    row: int  # sheet row (1-based)
    action: str | None  # canonical, None when the cell holds no known action
    text: str  # the action cell as typed
    requested_by: str
    requested_at: object
    status: str  # canonical: waiting | running | done | failed (unknown words count as done: never re-run)


@dataclass
class Control:
    """The Control sheet as read: its actual name, language, the chosen action and the requests."""

    sheet: str
    lang: str  # "en" | "pt-BR" (from the sheet's name and labels): what status words to write
    action: str | None  # canonical; None when B3 is empty or unknown
    action_text: str
    requests: list[Request] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def waiting(self) -> list[Request]:
        """Requests to answer, oldest (highest on the sheet) first."""
        return [r for r in self.requests if r.status == "waiting"]


def find_sheet(names) -> str | None:
    """The workbook's Control sheet (``Control``/``Controle``, any case), or None."""
    return next((n for n in names if (spec := contract.sheet_spec(n)) and spec.name == SHEET), None)


def read_control(raws: dict[str, RawSheet]) -> Control | None:
    """The panel from the sheets a Book read (None when the workbook has no Control sheet).

    Problems (an unknown action word, a moved layout) are returned in :attr:`Control.problems`, naming the
    cell; they never raise."""
    name = find_sheet(raws)
    if name is None:
        return None
    raw = raws[name]

    def cell(r: int, c: int) -> object:
        i, j = r - raw.origin[0], c - raw.origin[1]
        if 0 <= i < len(raw.rows) and 0 <= j < len(raw.rows[i]):
            value = raw.rows[i][j]
            return "" if value is None else value
        return ""

    label = normalize(cell(ACTION_ROW, 1))
    lang = "pt-BR" if normalize(name) == normalize("Controle") or label == normalize("Ação") else "en"
    panel = Control(name, lang, None, str(cell(ACTION_ROW, VALUE_COL)).strip())
    if label not in (normalize("Action"), normalize("Ação")):
        panel.problems.append(
            error(
                cell_ref(name, ACTION_ROW, 1),
                f'expected the label "{LABELS["action"][1]}" ("{LABELS["action"][2]}") here; the Control '
                "sheet's layout was changed",
                "put the action in B3 (see README, Control sheet), or delete the sheet and run "
                "sheetflow init to add it again",
            )
        )
        return panel
    panel.action = action_of(panel.action_text)
    if panel.action is None and panel.action_text:
        panel.problems.append(_unknown_action(cell_ref(name, ACTION_ROW, VALUE_COL), panel.action_text, lang))
    for r in range(REQUEST_HEADER_ROW + 1, REQUEST_HEADER_ROW + 1 + MAX_REQUESTS):
        values = [cell(r, c) for c in range(1, len(REQUEST_COLUMNS) + 1)]
        if all(v in ("", None) for v in values):
            continue
        text = str(values[0]).strip()
        status = _STATUS_WORDS.get(normalize(values[3]), "done")
        panel.requests.append(Request(r, action_of(text), text, str(values[1]).strip(), values[2], status))
    return panel


def _unknown_action(where: str, text: str, lang: str) -> Problem:
    choices = ", ".join(action_label(a, lang) for a in ACTIONS)
    if _pt(lang):
        return error(where, f'ação desconhecida "{text}"', f"escolha uma de: {choices}")
    return error(where, f'unknown action "{text}"', f"choose one of: {choices}")


# ---------------------------------------------------------------- writing


def status_patch(panel: Control, status: str) -> SheetPatch:
    """Only the status cell (B4): progress during a run (``running… 40%``)."""
    return SheetPatch(panel.sheet, {(STATUS_ROW, VALUE_COL): status})


def result_patch(panel: Control, *, status: str, when: dt.datetime | None, summary: str) -> SheetPatch:
    """Status, last run time and summary after an action (B4:B6)."""
    cells: dict[tuple[int, int], Any] = {
        (STATUS_ROW, VALUE_COL): status,
        (SUMMARY_ROW, VALUE_COL): summary,
    }
    if when is not None:
        cells[(LAST_RUN_ROW, VALUE_COL)] = when.replace(tzinfo=None, microsecond=0)
    return SheetPatch(panel.sheet, cells)


def claim(panel: Control, request: Request) -> SheetPatch:
    """Mark a request ``running`` (write it under the run lease, before running it: the claim)."""
    return SheetPatch(panel.sheet, {(request.row, 4): _status_word("running", panel.lang)})


def answer(
    panel: Control, request: Request, status: str, when: dt.datetime | None, summary: str
) -> SheetPatch:
    """The answer to a request: ``done`` or ``failed``, when, and the summary (or the first problems)."""
    if status not in REQUEST_STATUS:
        raise ValueError(f"status must be one of {', '.join(REQUEST_STATUS)}")
    cells: dict[tuple[int, int], Any] = {
        (request.row, 4): _status_word(status, panel.lang),
        (request.row, 6): summary,
    }
    if when is not None:
        cells[(request.row, 5)] = when.replace(tzinfo=None, microsecond=0)
    return SheetPatch(panel.sheet, cells)


def request_problem(panel: Control, request: Request) -> Problem | None:
    """The problem with a request whose action is unknown (names its cell), else None."""
    if request.action is not None:
        return None
    return _unknown_action(cell_ref(panel.sheet, request.row, 1), request.text or "(empty)", panel.lang)


def _status_word(status: str, lang: str) -> str:
    en, pt = REQUEST_STATUS[status]
    return pt if _pt(lang) else en


def sheet_name(lang: str) -> str:
    return contract.label(contract.BY_NAME[SHEET], lang)


def control_cells(lang: str) -> dict[tuple[int, int], Any]:
    """The cells of a new Control sheet: title, hint, labels, the default action (Run), request header."""
    pt = _pt(lang)
    cells: dict[tuple[int, int], Any] = {
        (TITLE_ROW, 1): "sheetflow",
        (TITLE_ROW, 2): HINT["pt-BR" if pt else "en"],
        (ACTION_ROW, VALUE_COL): action_label("run", lang),
    }
    for _key, (row, en, pt_label) in LABELS.items():
        cells[(row, 1)] = pt_label if pt else en
    for c, (en, pt_label) in enumerate(REQUEST_COLUMNS, start=1):
        cells[(REQUEST_HEADER_ROW, c)] = pt_label if pt else en
    return cells


def validations(lang: str) -> list[Validation]:
    """The Action dropdown (B3) and the request action/status dropdowns (suggestions in the requests)."""
    labels = [action_label(a, lang) for a in ACTIONS]
    first, last = REQUEST_HEADER_ROW + 1, REQUEST_HEADER_ROW + MAX_REQUESTS
    return [
        Validation(f"B{ACTION_ROW}", options=labels),
        Validation(f"A{first}:A{last}", options=labels),
        Validation(
            f"D{first}:D{last}", options=[_status_word(s, lang) for s in REQUEST_STATUS], allow_other=True
        ),
    ]


def new_control_patch(lang: str = "en") -> SheetPatch:
    """The patch that adds a Control sheet (for ``init``, ``excel setup`` and a run that finds none)."""
    return SheetPatch(
        sheet_name(lang),
        control_cells(lang),
        new=NewSheet(
            col_widths={1: 18, 2: 44, 3: 20, 4: 14, 5: 18, 6: 50},
            bold_rows={TITLE_ROW, REQUEST_HEADER_ROW},
            validations=validations(lang),
        ),
    )

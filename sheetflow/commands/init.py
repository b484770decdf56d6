"""``sheetflow init``: a new starter workbook with every sheet of the contract, ready to fill in.

This creates a NEW file, so openpyxl is safe here (it only loses things from files it did not
write). Each sheet gets its header, a frozen header row, sensible widths and dropdowns; a "Start here"
sheet explains the workbook. ``--example`` adds sample records (see :mod:`.sample`) and the rule
packs under ``rules/``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation

from sheetflow import contract
from sheetflow.book import NewSheet, SheetPatch, Validation
from sheetflow.book.xlsx import XlsxBook
from sheetflow.commands import sample
from sheetflow.commands.packs import DEFAULT_PACKS, extra_columns, pack_rows, read_pack
from sheetflow.contract import Kind, SheetSpec, label
from sheetflow.names import column_letter
from sheetflow.problems import UsageError
from sheetflow.tables.control import new_control_patch
from sheetflow.tables.table import match_sheets

HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
MAX_ROWS = 5000  # dropdowns cover this many data rows

START_HERE = {
    "en": [
        ("sheetflow — your CRM automation lives in this workbook", True),
        ("", False),
        (
            "Data sheets: Contacts, Deals, Tickets, Reps, Stages. Add your records; keep the header row.",
            False,
        ),
        (
            "Rule sheets: Scoring (points per rule), Assignment, Automations, Sequences, Templates, Settings.",
            False,
        ),
        ("Rules use the 'when' language, e.g.  title contains \"director\" and company_size >= 50", False),
        (
            "Output sheets (written by sheetflow): Activity (every change), Runs (every run), Emails, Tasks, Report.",
            False,
        ),
        ("", False),
        ("How to run", True),
        ("1. Check your rules:      sheetflow check THIS_FILE.xlsx", False),
        ("2. Preview, change nothing: sheetflow run THIS_FILE.xlsx --dry-run", False),
        ("3. Run:                    sheetflow run THIS_FILE.xlsx", False),
        ("", False),
        (
            "sheetflow only writes the cells it manages (id, score, lifecycle_stage, owner, ... and the output "
            "sheets), never deletes a row, and logs every change in Activity.",
            False,
        ),
        (
            "Close the workbook in Excel before running from the command line; a backup of each run is kept in "
            "the .sheetflow folder beside the file.",
            False,
        ),
    ],
    "pt-BR": [
        ("sheetflow — a automação do seu CRM mora nesta planilha", True),
        ("", False),
        (
            "Abas de dados: Contatos, Negócios, Chamados, Vendedores, Etapas. Inclua seus registros; mantenha o cabeçalho.",
            False,
        ),
        ("Abas de regras: Pontuação, Atribuição, Automações, Sequências, Modelos, Configurações.", False),
        (
            "As regras usam a linguagem 'quando', p.ex.  cargo contains \"diretor\" and tamanho_empresa >= 50",
            False,
        ),
        (
            "Abas de saída (escritas pelo sheetflow): Atividade (cada mudança), Execuções (cada execução), E-mails, Tarefas, Relatório.",
            False,
        ),
        ("", False),
        ("Como executar", True),
        ("1. Verifique as regras:        sheetflow check ESTE_ARQUIVO.xlsx", False),
        ("2. Simule sem mudar nada:      sheetflow run ESTE_ARQUIVO.xlsx --dry-run", False),
        ("3. Execute:                    sheetflow run ESTE_ARQUIVO.xlsx", False),
        ("", False),
        (
            "O sheetflow só escreve nas células que gerencia (id, pontuação, estágio, responsável, ... e nas abas "
            "de saída), nunca apaga linhas e registra cada mudança em Atividade.",
            False,
        ),
        (
            "Feche a planilha no Excel antes de executar pela linha de comando; um backup de cada execução fica "
            "na pasta .sheetflow ao lado do arquivo.",
            False,
        ),
    ],
}


def _is_pt(lang: str) -> bool:
    return lang.lower().startswith("pt")


def _bool_options(lang: str) -> list[str]:
    return ["SIM", "NÃO"] if _is_pt(lang) else ["TRUE", "FALSE"]


def _validations(spec: SheetSpec, lang: str) -> dict[str, tuple[list[str] | str, bool]]:
    """column -> (options or a range, allow other values)."""
    pt = _is_pt(lang)
    tables = [label(contract.BY_NAME[n], lang) for n in contract.RECORD_SHEETS]
    stages_sheet = label(contract.BY_NAME["Stages"], lang)
    reps_sheet = label(contract.BY_NAME["Reps"], lang)
    out: dict[str, tuple[list[str] | str, bool]] = {}
    for col in spec.columns:
        if col.type.value == "bool":
            out[col.name] = (_bool_options(lang), False)
    if spec.name in ("Assignment",):
        out["method"] = (["round_robin", "weighted", "least_loaded", "sticky_account"], False)
    if spec.name in ("Assignment", "Automations"):
        out["table"] = (tables, False)
    if spec.name == "Automations":
        out["trigger"] = (
            ["new", "every_run", "changed:", "entered:", "score_reached:", "date:", "idle:"],
            True,
        )
        out["action"] = (
            ["send_email", "set", "assign", "enroll", "create_task", "notify", "escalate"],
            False,
        )
    if spec.name == "Contacts":
        out["lifecycle_stage"] = ([contract.lifecycle_label(s, lang) for s in contract.LIFECYCLE], True)
    if spec.name in ("Contacts", "Deals", "Tickets"):
        out["owner"] = (f"'{reps_sheet}'!$A$2:$A$500", True)
    if spec.name == "Deals":
        out["stage"] = (f"'{stages_sheet}'!$A$2:$A$100", True)
    if spec.name == "Tickets":
        out["severity"] = (
            ["baixa", "normal", "alta", "urgente"] if pt else ["low", "normal", "high", "urgent"],
            True,
        )
        out["status"] = (
            ["aberto", "pendente", "resolvido", "fechado"]
            if pt
            else ["open", "pending", "resolved", "closed"],
            True,
        )
    return out


def _add_sheet(
    wb: Workbook, spec: SheetSpec, lang: str, rows: list[dict[str, Any]], extra: Sequence[str] = ()
) -> None:
    ws = wb.create_sheet(label(spec, lang))
    for values in sheet_rows(spec, lang, rows, extra):
        ws.append(values)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = HEADER_FILL
    ws.freeze_panes = "A2"
    for i, col in enumerate(spec.columns, start=1):
        ws.column_dimensions[_letter(i)].width = col.width
        for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
            if col.type.value == "date" and isinstance(cell.value, dt.date):
                has_time = isinstance(cell.value, dt.datetime) and (cell.value.hour or cell.value.minute)
                cell.number_format = "yyyy-mm-dd hh:mm" if has_time else "yyyy-mm-dd"
            elif spec.name == "Templates" and col.name == "body":
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    for column, (options, allow_other) in _column_validations(spec, lang):
        formula = f'"{",".join(options)}"' if isinstance(options, list) else options
        dv = DataValidation(type="list", formula1=formula, allow_blank=True, showErrorMessage=not allow_other)
        letter = _letter(column)
        dv.add(f"{letter}2:{letter}{MAX_ROWS}")
        ws.add_data_validation(dv)


def _cell_value(value: Any, column: contract.Column, lang: str) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool) and _is_pt(lang):
        return "SIM" if value else "NÃO"
    if isinstance(value, str):
        if column.type.value == "bool":
            return value.strip().upper() in ("TRUE", "SIM", "1", "YES")
        if column.type.value == "number":
            try:
                return float(value) if "." in value else int(value)
            except ValueError:
                return value
        if column.name == "lifecycle_stage":
            stage = contract.lifecycle_value(value)
            return contract.lifecycle_label(stage, lang) if stage else value
    return value


def _letter(i: int) -> str:
    return column_letter(i)


def example_rows(
    lang: str, contacts: int = 60, today: dt.date | None = None
) -> dict[str, list[dict[str, Any]]]:
    today = today or dt.date.today()
    people = sample.contacts(contacts, today=today)
    rows: dict[str, list[dict[str, Any]]] = {
        "Contacts": people,
        "Deals": sample.deals(people, max(5, contacts // 5), today=today),
        "Tickets": sample.tickets(people, max(3, contacts // 10), today=today),
        "Reps": [dict(r) for r in sample.REPS],
        "Stages": [dict(s) for s in sample.STAGES],
    }
    rows.update({k: v for k, v in pack_rows(DEFAULT_PACKS, lang).items() if v and k != "Stages"})
    rnd = random.Random(3)
    for contact in people:  # the nps-alert pack's column, with some answers
        contact["nps"] = rnd.randint(0, 10) if rnd.random() < 0.3 else None
    return rows


def create_starter(
    path: str | Path,
    *,
    lang: str = "en",
    example: bool = False,
    force: bool = False,
    contacts: int = 60,
    today: dt.date | None = None,
) -> Path:
    """A new starter workbook; for an existing .xlsx/.xlsm, see :func:`add_missing_sheets`."""
    path = Path(path)
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        raise UsageError(f"{path.name}: the starter workbook must be a .xlsx file")
    if path.exists() and not force:
        add_missing_sheets(path, lang=lang, example=example, contacts=contacts, today=today)
        return path
    if path.suffix.lower() == ".xlsm":
        raise UsageError(
            f"{path.name}: a new workbook has no macros; create a .xlsx, or run init on your "
            "existing .xlsm to add the sheetflow sheets to it"
        )
    rows = example_rows(lang, contacts, today) if example else {}
    if not example:
        rows["Settings"] = blank_settings(lang)
    extras = extra_columns(DEFAULT_PACKS)
    wb = Workbook()
    start = wb.active
    start.title = start_sheet_name(lang)
    for text, bold in START_HERE["pt-BR" if _is_pt(lang) else "en"]:
        start.append([text])
        if bold:
            start.cell(start.max_row, 1).font = Font(bold=True, size=13)
    start.column_dimensions["A"].width = 120
    for spec in contract.SHEETS:
        if spec.kind is Kind.SYSTEM:
            continue
        if spec.name == "Report":
            ws = wb.create_sheet(label(spec, lang))
            ws["A1"] = report_title(lang)
            ws["A1"].font = Font(bold=True, size=13)
            continue
        if spec.name == "Control":
            _add_control_sheet(wb, lang)
            continue
        _add_sheet(wb, spec, lang, rows.get(spec.name, []), extras.get(spec.name, []) if example else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    wb.save(tmp)
    os.replace(tmp, path)
    return path


# Settings a blank workbook leaves empty: they name real people and addresses only the team knows
# (`check` says what to fill). `--example` and the demo keep the pack's example values.
PERSONAL_SETTINGS = ("sender_email", "reply_to", "fallback_owner")


def blank_settings(lang: str) -> list[dict[str, str]]:
    """The starter pack's Settings rows with the personal values (sender, fallback owner) left empty."""
    rows = read_pack("b2b-lead-scoring", "Settings", lang)
    return [{**r, "value": ""} if (r.get("key") or "").strip() in PERSONAL_SETTINGS else r for r in rows]


def _add_control_sheet(wb: Workbook, lang: str) -> None:
    """The Control sheet (layout: :mod:`sheetflow.tables.control`), as the patch writer would add it."""
    patch = new_control_patch(lang)
    ws = wb.create_sheet(patch.sheet)
    for (r, c), value in patch.cells.items():
        ws.cell(r, c, value)
        if r in patch.new.bold_rows:  # type: ignore[union-attr]  # new_control_patch makes a new sheet
            ws.cell(r, c).font = Font(bold=True)
    for c, width in patch.new.col_widths.items():  # type: ignore[union-attr]  # new_control_patch makes a new sheet
        ws.column_dimensions[_letter(c)].width = width
    for v in patch.new.validations:  # type: ignore[union-attr]  # new_control_patch makes a new sheet
        dv = DataValidation(
            type="list",
            formula1=f'"{",".join(v.options)}"',  # type: ignore[arg-type]  # the Control sheet's validations are lists
            allow_blank=True,
            showErrorMessage=not v.allow_other,
        )
        dv.add(v.sqref)
        ws.add_data_validation(dv)


def start_sheet_name(lang: str) -> str:
    return "Começar aqui" if _is_pt(lang) else "Start here"


def report_title(lang: str) -> str:
    return "Relatório (reconstruído a cada execução)" if _is_pt(lang) else "Report (rebuilt on every run)"


def add_missing_sheets(
    path: Path, *, lang: str = "en", example: bool = False, contacts: int = 60, today: dt.date | None = None
) -> list[str]:
    """Add the contract sheets a team's workbook lacks, touching nothing that is already there.

    Written with the patch writer, so the workbook's VBA, buttons, charts and validations survive. Existing
    sheets (also under pt-BR or other alias names) are left exactly as they are; with ``example`` only the
    NEW sheets get example rows.
    """
    book = XlsxBook(path)
    raws = book.read()
    found, _ = match_sheets(raws)
    if any(contract.sheet_spec(n) and contract.sheet_spec(n).pt == n for n in raws) and lang == "en":  # type: ignore[union-attr]  # checked on the left
        lang = "pt-BR"  # a Portuguese workbook gets Portuguese sheets
    rows = example_rows(lang, contacts, today) if example else {}
    if not example:
        rows["Settings"] = blank_settings(lang)
    patches: list[SheetPatch] = []
    taken = {n.lower() for n in raws}
    for spec in contract.SHEETS:
        if spec.kind is Kind.SYSTEM or spec.name in found:
            continue
        name = label(spec, lang)
        if name.lower() in taken:
            continue
        if spec.name == "Report":
            patches.append(SheetPatch(name, {(1, 1): report_title(lang)}, new=NewSheet(bold_rows={1})))
            continue
        if spec.name == "Control":
            patches.append(new_control_patch(lang))
            continue
        cells: dict[tuple[int, int], Any] = {}
        extra = extra_columns(DEFAULT_PACKS).get(spec.name, []) if example else []
        for r, values in enumerate(sheet_rows(spec, lang, rows.get(spec.name, []), extra), start=1):
            for c, value in enumerate(values, start=1):
                if value is not None:
                    cells[(r, c)] = value
        validations = []
        for col, (options, allow_other) in _column_validations(spec, lang):
            letter = _letter(col)
            sqref = f"{letter}2:{letter}{MAX_ROWS}"
            if isinstance(options, list):
                validations.append(Validation(sqref, options=options, allow_other=allow_other))
            else:
                validations.append(Validation(sqref, source=options, allow_other=allow_other))
        widths = {i: c.width for i, c in enumerate(spec.columns, start=1)}
        patches.append(
            SheetPatch(
                name,
                cells,
                new=NewSheet(freeze_rows=1, col_widths=widths, bold_rows={1}, validations=validations),
            )
        )
    if patches:
        with book.lease():
            book.write(patches, backups=10)
    return [p.sheet for p in patches]


def sheet_rows(
    spec: SheetSpec, lang: str, rows: list[dict[str, Any]], extra: Sequence[str] = ()
) -> list[list[Any]]:
    """Header + data rows of a new sheet, as cell values; ``extra`` columns (from packs) go last."""
    out: list[list[Any]] = [[label(c, lang) for c in spec.columns] + list(extra)]
    out += [
        [_cell_value(row.get(c.name), c, lang) for c in spec.columns] + [row.get(e) for e in extra]
        for row in rows
    ]
    return out


def _column_validations(spec: SheetSpec, lang: str) -> list[tuple[int, tuple[list[str] | str, bool]]]:
    positions = {c.name: i for i, c in enumerate(spec.columns, start=1)}
    return [(positions[col], rule) for col, rule in _validations(spec, lang).items() if col in positions]


def init(path: str | Path, *, lang: str = "en", example: bool = False, force: bool = False) -> list[str]:
    """``sheetflow init``: a starter workbook at ``path`` (``lang`` "en" or "pt-BR", ``example`` rows), or, when
    the file exists and ``force`` is not set, the sheetflow sheets it lacks added to it and nothing else
    changed. Returns the names of the sheets added to an existing workbook ([] for a new one or when it had
    them all)."""
    path = Path(path)
    if path.exists() and not force:
        return add_missing_sheets(path, lang=lang, example=example)
    create_starter(path, lang=lang, example=example, force=force)
    return []

"""Starter rule packs (folders under ``rules/``) and adding one to a workbook.

``sheetflow rules add PACK BOOK`` appends the pack's rows to the workbook's rule sheets, creating sheets that
are missing. It never changes a row that is there: rows whose identity already exists (a rule's name per
table, a template's name, a setting's key, a sequence step) are skipped, so adding a pack twice adds nothing
the second time. Columns a pack needs (``columns.csv``) get a header after the sheet's last column.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from sheetflow import contract
from sheetflow.apply import PatchBuilder
from sheetflow.book.xlsx import XlsxBook
from sheetflow.coerce import as_text, to_cell
from sheetflow.data import data_dir
from sheetflow.names import normalize, suggest
from sheetflow.problems import UsageError
from sheetflow.tables.loaded import load

RULE_SHEETS = ("Scoring", "Assignment", "Automations", "Sequences", "Templates", "Settings", "Stages")
DEFAULT_PACKS = (
    "b2b-lead-scoring",
    "welcome",
    "onboarding",
    "renewals",
    "reactivation",
    "support-sla",
    "nps-alert",
    "stalled-deals",
)


def available() -> list[str]:
    return sorted(p.name for p in data_dir("rules").iterdir() if p.is_dir())


def read_pack(pack: str, sheet: str, lang: str = "en") -> list[dict[str, str]]:
    folder = data_dir("rules") / pack
    localized = folder / f"{sheet}.{lang}.csv"
    path = localized if lang != "en" and localized.exists() else folder / f"{sheet}.csv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k} for row in csv.DictReader(f)]


def pack_rows(packs: tuple[str, ...] | list[str], lang: str = "en") -> dict[str, list[dict[str, str]]]:
    """Rows of several packs merged per sheet, first pack first, duplicates (same identity) dropped."""
    out: dict[str, list[dict[str, str]]] = {}
    for pack in packs:
        for sheet in RULE_SHEETS:
            rows = out.setdefault(sheet, [])
            seen = {identity(sheet, r) for r in rows}
            rows += [r for r in read_pack(pack, sheet, lang) if identity(sheet, r) not in seen]
    return out


def extra_columns(packs: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pack in packs:
        for row in read_pack(pack, "columns"):
            out.setdefault(row["table"], []).append(row["column"])
    return out


def identity(sheet: str, row: dict[str, Any]) -> tuple[str, ...]:
    def n(key: str) -> str:
        value = row.get(key)
        return normalize(value) if value not in (None, "") else ""

    if sheet in ("Scoring",):
        return (n("rule"),)
    if sheet in ("Assignment", "Automations"):
        table = contract.sheet_spec(row.get("table") or "Contacts")
        return (table.name if table else n("table"), n("rule"))
    if sheet == "Sequences":
        return (n("sequence"), n("step"))
    if sheet == "Templates":
        return (n("name"),)
    if sheet == "Settings":
        key = n("key")
        return (contract.SETTING_ALIASES.get(key, key),)
    if sheet == "Stages":
        return (n("stage"),)
    return tuple(n(k) for k in sorted(row))


def add_pack(path: str | Path, pack: str, *, lang: str | None = None) -> dict[str, int]:
    """Append a pack to a workbook; returns rows added per sheet. Writes with the lossless writer."""
    if pack not in available():
        hint = suggest(pack, available())
        raise UsageError(
            f'no rule pack "{pack}"'
            + (f'; did you mean "{hint}"?' if hint else "")
            + f" — available: {', '.join(available())}"
        )
    book = XlsxBook(Path(path))
    with book.lease():
        loaded = load(book.read())
        tables = loaded.tables
        lang = lang or tables.language
        builder = PatchBuilder(tables)
        added: dict[str, int] = {}
        for table_name, columns in extra_columns([pack]).items():
            table = tables.get(table_name)
            if table is not None and table.exists:
                for column in columns:
                    if normalize(column) not in table.col_index:
                        builder.target(table_name).column(normalize(column))
        for sheet in RULE_SHEETS:
            rows = read_pack(pack, sheet, "pt-BR" if lang.lower().startswith("pt") else "en")
            if not rows:
                continue
            table = tables[sheet]
            existing = {identity(sheet, _row_dict(table, pos)) for pos in range(len(table))}
            new_rows = [r for r in rows if identity(sheet, r) not in existing]
            if not new_rows:
                continue
            target = builder.target(sheet)
            for row in new_rows:
                target.append({k: _value(sheet, k, v) for k, v in row.items() if v not in (None, "")})
            added[sheet] = len(new_rows)
        if builder.patches:
            book.write(list(builder.patches.values()), backups=int(loaded.settings.number("backups") or 10))
        return added


def _row_dict(table, pos: int) -> dict[str, Any]:
    return {k: as_text(to_cell(v)) for k, v in table.df.iloc[pos].items()}


def _value(sheet: str, column: str, value: str) -> Any:
    """CSV text as the cell value a person would have typed (numbers and TRUE/FALSE typed)."""
    spec = contract.BY_NAME[sheet].column(column)
    if spec is None:
        return value
    if spec.type.value == "number":
        try:
            number = float(value)
            return int(number) if number.is_integer() else number
        except ValueError:
            return value
    if spec.type.value == "bool":
        return value.strip().upper() in ("TRUE", "SIM", "1", "YES")
    return value

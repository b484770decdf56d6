"""The Report sheet: a small dashboard rebuilt on every run that writes the workbook.

KPIs a small team looks at first — contacts per lifecycle stage, the open pipeline per stage, support
load, each rep's open records and what this run assigned, and what the run did. Built by the engine as
plain rows (pure), written by apply over the previous report's cells (the sheet belongs to sheetflow;
its formatting and any chart the team placed on it stay). Charts of its own are not drawn yet.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from sheetflow import contract
from sheetflow.names import text_key
from sheetflow.tables.records import open_mask, read_stages

if TYPE_CHECKING:
    from sheetflow.engine.context import Context

LABELS = {
    "en": {
        "title": "sheetflow report",
        "run": "Last run",
        "lifecycle": "Contacts by lifecycle stage",
        "stage": "stage",
        "contacts": "contacts",
        "pipeline": "Open pipeline",
        "deals": "deals",
        "amount": "amount",
        "support": "Support",
        "open": "open tickets",
        "overdue": "overdue tickets",
        "reps": "Reps",
        "rep": "rep",
        "status": "status",
        "open_contacts": "open contacts",
        "open_deals": "open deals",
        "open_tickets": "open tickets",
        "capacity": "capacity",
        "assigned": "assigned this run",
        "this_run": "This run",
        "changes": "cells changed",
        "tasks": "tasks created",
        "emails": "emails",
        "errors": "errors",
        "none": "(none)",
        "blank": "(blank)",
    },
    "pt": {
        "title": "Relatório sheetflow",
        "run": "Última execução",
        "lifecycle": "Contatos por estágio",
        "stage": "estágio",
        "contacts": "contatos",
        "pipeline": "Funil aberto",
        "deals": "negócios",
        "amount": "valor",
        "support": "Suporte",
        "open": "chamados abertos",
        "overdue": "chamados atrasados",
        "reps": "Vendedores",
        "rep": "vendedor",
        "status": "situação",
        "open_contacts": "contatos abertos",
        "open_deals": "negócios abertos",
        "open_tickets": "chamados abertos",
        "capacity": "capacidade",
        "assigned": "atribuídos nesta execução",
        "this_run": "Esta execução",
        "changes": "células alteradas",
        "tasks": "tarefas criadas",
        "emails": "e-mails",
        "errors": "erros",
        "none": "(nenhum)",
        "blank": "(vazio)",
    },
}


def build(ctx: Context) -> tuple[list[list[Any]], set[int]]:
    """The report's rows and which of them are headings (bold)."""
    t = LABELS["pt" if ctx.portuguese else "en"]
    plan, tables = ctx.plan, ctx.tables
    rows: list[list[Any]] = [[t["title"]], [t["run"], plan.local_now, plan.run_id], []]
    bold = {1}

    def section(title: str, header: list[str]) -> None:
        bold.update({len(rows) + 1, len(rows) + 2})
        rows.append([title])
        rows.append(header)

    contacts = tables["Contacts"]
    if len(contacts):
        section(t["lifecycle"], [t["stage"], t["contacts"]])
        lang = "pt" if ctx.portuguese else "en"
        counts = Counter(
            contract.lifecycle_value(v) or text_key(v) if isinstance(v, str) and v.strip() else ""
            for v in contacts.df["lifecycle_stage"]
        )
        for stage in [*contract.LIFECYCLE, *sorted(k for k in counts if k not in contract.LIFECYCLE)]:
            if counts.get(stage):
                rows.append([contract.lifecycle_label(stage, lang) if stage else t["blank"], counts[stage]])
        rows.append([])
    deals = tables["Deals"]
    if len(deals):
        section(t["pipeline"], [t["stage"], t["deals"], t["amount"]])
        mask = open_mask(tables, "Deals")
        stages = deals.df["stage"].to_numpy(dtype=object)[mask]
        amounts = deals.df["amount"].to_numpy(dtype="float64", na_value=np.nan)[mask]
        # one row per stage however it was typed (PROPOSTA, proposta): grouped by names.text_key, shown as
        # the Stages sheet spells it (else as first typed)
        spelled = _stage_spelling(ctx)
        by_stage: dict[str, list[float]] = {}
        shown: dict[str, str] = {}
        for stage, amount in zip(stages, amounts):
            typed = stage.strip() if isinstance(stage, str) and stage.strip() else ""
            key = text_key(typed) if typed else ""
            shown.setdefault(key, spelled.get(key, typed) if typed else t["blank"])
            by_stage.setdefault(key, []).append(0.0 if np.isnan(amount) else float(amount))
        order = _stage_order(ctx)
        for key in sorted(by_stage, key=lambda k: (order.get(k, 1e9), shown[k])):
            rows.append([shown[key], len(by_stage[key]), sum(by_stage[key])])
        rows.append([])
    tickets = tables["Tickets"]
    if len(tickets):
        section(t["support"], ["", ""])
        open_ = open_mask(tables, "Tickets")
        late = (tickets.df["due_at"] < plan.local_now).fillna(False).to_numpy(dtype=bool)
        rows.append([t["open"], int(open_.sum())])
        rows.append([t["overdue"], int((open_ & late).sum())])
        rows.append([])
    if plan.reps:
        section(
            t["reps"],
            [
                t["rep"],
                t["status"],
                t["open_contacts"],
                t["open_deals"],
                t["open_tickets"],
                t["capacity"],
                t["assigned"],
            ],
        )
        for r in plan.reps:
            rows.append(
                [
                    r["rep"],
                    r["status"],
                    r["open"]["Contacts"],
                    r["open"]["Deals"],
                    r["open"]["Tickets"],
                    r["capacity"],
                    r["assigned"],
                ]
            )
        rows.append([])
    section(t["this_run"], ["", ""])
    rows.append([t["changes"], len(plan.changes)])
    rows.append([t["tasks"], sum(1 for a in plan.appends if a.sheet == "Tasks")])
    rows.append([t["errors"], len(plan.errors)])
    return rows, bold


def _stage_spelling(ctx: Context) -> dict[str, str]:
    """text_key(stage) -> the stage as the Stages sheet spells it."""
    stages = ctx.tables["Stages"]
    if not stages.exists or not len(stages):
        return {}
    out: dict[str, str] = {}
    for s in stages.df["stage"].to_numpy(dtype=object).tolist():
        if isinstance(s, str) and s.strip():
            out.setdefault(text_key(s), s.strip())
    return out


def _stage_order(ctx: Context) -> dict[str, float]:
    return read_stages(ctx.tables).order

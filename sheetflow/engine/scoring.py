"""The first stages of every run: stable ids, lead scoring (the Scoring sheet) and the lifecycle stage.

Stages run in a fixed order, each seeing the previous stages' results (a score computed by
``scoring`` is what ``lifecycle`` compares with the thresholds).
"""

from __future__ import annotations

import re

import numpy as np

from sheetflow import contract
from sheetflow.engine.context import Context
from sheetflow.problems import error, warning
from sheetflow.rules.sheets import load_scoring

# ---------------------------------------------------------------- ids

_SUFFIX = re.compile(r"^(.*?)(\d+)$")


def stage_ids(ctx: Context) -> None:
    """Give every record a stable unique id: prefix + next number after the largest one in use.

    Deterministic (the same sheet gets the same ids in a dry run and in the real run after it), and
    never reuses an id that is already in the sheet.
    """
    for name in contract.RECORD_SHEETS:
        table = ctx.tables[name]
        if not len(table):
            continue
        ids = table.df["id"]
        present = ids.dropna()
        dupes = present[present.str.strip().duplicated(keep=False)]
        first_seen: dict[str, int] = {}
        for pos, rid in dupes.items():
            if rid.strip() in first_seen:
                ctx.plan.problems.append(
                    warning(
                        table.ref(int(pos), "id"),
                        f'id "{rid}" is also used in {table.ref(first_seen[rid.strip()], "id")}',
                        "give each record its own id (or clear this cell and sheetflow fills it)",
                    )
                )
            else:
                first_seen[rid.strip()] = int(pos)
        blank = np.flatnonzero(ids.isna().to_numpy() | (ids.fillna("").str.strip() == "").to_numpy())
        if not len(blank):
            continue
        prefix = table.spec.id_prefix
        used = set(present.str.strip())
        highest = 0
        for rid in used:
            m = _SUFFIX.match(rid)
            if m and m.group(1) == prefix:
                highest = max(highest, int(m.group(2)))
        new_ids = []
        n = highest
        for _ in blank:
            n += 1
            while f"{prefix}{n:05d}" in used:
                n += 1
            new_ids.append(f"{prefix}{n:05d}")
        ctx.change(table, blank.tolist(), "id", new_ids, ["id: new record"] * len(new_ids))


# ---------------------------------------------------------------- scoring


def stage_scoring(ctx: Context) -> None:
    """Recompute every contact's score from scratch: the sum of the points of the rules that hold."""
    contacts = ctx.tables["Contacts"]
    rules, problems = load_scoring(ctx.tables)
    ctx.plan.problems += problems
    if not ctx.tables["Scoring"].exists or not len(contacts):
        return
    frame = ctx.frame("Contacts")
    masks = np.zeros((len(rules), len(contacts)), dtype=bool)
    for i, rule in enumerate(rules):
        try:
            masks[i] = rule.when.mask(frame)
        except Exception as e:  # noqa: BLE001 - a rule must never stop the run; report where it failed
            ctx.plan.problems.append(error(rule.where, f'rule "{rule.name}" could not be evaluated: {e}'))
    points = np.asarray([r.points for r in rules], dtype="float64")
    scores = points @ masks if len(rules) else np.zeros(len(contacts))
    old = contacts.df["score"].to_numpy(dtype="float64", na_value=np.nan)
    differs = np.flatnonzero(~np.isclose(old, scores, equal_nan=False) | np.isnan(old))
    if not len(differs):
        return
    # rows that matched the same rules share one explanation: compute it once per pattern
    patterns, inverse = np.unique(np.packbits(masks[:, differs], axis=0).T, axis=0, return_inverse=True)
    texts = []
    for packed in patterns:
        hits = np.flatnonzero(np.unpackbits(packed)[: len(rules)])
        text = ", ".join(f"{rules[j].name} ({rules[j].points:+g})" for j in hits) or "no rule matched"
        texts.append(f"Scoring: {text}"[:500])
    reasons = [texts[i] for i in np.asarray(inverse).ravel().tolist()]
    ctx.change(contacts, differs.tolist(), "score", [float(s) for s in scores[differs]], reasons)


# ---------------------------------------------------------------- lifecycle


def stage_lifecycle(ctx: Context) -> None:
    """Move contacts forward lead -> mql -> sql when their score reaches the Settings thresholds.

    Never backwards, never past sql: later stages are set by people and automations. A blank stage counts
    as lead; a stage we do not recognise is left alone.
    """
    contacts = ctx.tables["Contacts"]
    if not len(contacts):
        return
    mql, sql = ctx.settings.number("mql_threshold"), ctx.settings.number("sql_threshold")
    scores = contacts.df["score"].to_numpy(dtype="float64", na_value=np.nan)
    raw = contacts.df["lifecycle_stage"]
    known = {v: contract.lifecycle_value(v) for v in raw.dropna().unique()}
    stages = np.asarray(
        [
            known.get(v, "lead") if isinstance(v, str) and v.strip() else "lead"
            for v in raw.to_numpy(dtype=object)
        ],
        dtype=object,
    )
    lang = "pt" if ctx.portuguese else "en"
    with np.errstate(invalid="ignore"):
        to_sql = (stages == "lead") | (stages == "mql")
        to_sql &= (scores >= sql) if sql is not None else False
        to_mql = (stages == "lead") & ~to_sql
        to_mql &= (scores >= mql) if mql is not None else False
    positions, values, reasons = [], [], []
    for target, mask, threshold, key in (
        ("sql", to_sql, sql, "sql_threshold"),
        ("mql", to_mql, mql, "mql_threshold"),
    ):
        hits = np.flatnonzero(mask)
        positions += hits.tolist()
        values += [contract.lifecycle_label(target, lang)] * len(hits)
        reasons += [f"Lifecycle: score {scores[p]:g} reached Settings {key} = {threshold:g}" for p in hits]
    ctx.change(contacts, positions, "lifecycle_stage", values, reasons)

"""Sequences: multi-step email cadences a contact is enrolled in by an ``enroll`` action.

Sequences sheet rows: sequence, step, delay_days, template, stop_when. ``delay_days`` counts from the
previous step (from the enrollment for step 1). Before every step the contact leaves the sequence when
it has unsubscribed, has replied (a ``replied_at`` or ``last_reply_at`` column later than the
enrollment), or the step's ``stop_when`` holds (a blank stop_when uses the nearest earlier one). At most
one step of a sequence goes out per contact per run, so a run after a long pause never sends a burst.

Enrollments live in the state section ``sequences`` (``SEQUENCE|contact id`` -> JSON), saved with the
workbook. Deals and tickets enroll their linked contact (``contact_id``).

People see them in the ``Enrollments`` output sheet (pt-BR ``Inscrições``, issue 10.3): one row per
enrollment (a re-enrollment after the sequence ended is a new row) with the current step, when the next
step is due, the status and why someone left. Each run updates the cells that changed and appends rows
for new enrollments; rows are found by their ``key`` column (``sequence|contact id|n``), so a team may
sort or filter the sheet. The row of an enrollment that ended is not written again once it is gone from the
sheet (the log cap moved it to the archive), unless the enrollment changes in this run; an active
enrollment always has its row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pandas as pd

from sheetflow.coerce import MAX_SHIFT_DAYS as MAX_DAYS
from sheetflow.coerce import as_text, to_cell
from sheetflow.contract import CONSENT_COLUMNS
from sheetflow.engine.context import Context
from sheetflow.engine.emails import request_email
from sheetflow.names import normalize
from sheetflow.problems import error
from sheetflow.rules.expr import CompiledWhen, WhenError, compile_when
from sheetflow.rules.sheets import schema_for
from sheetflow.tables.table import Table

SECTION = "sequences"
REPLY_COLUMNS = ("replied_at", "last_reply_at", "respondido_em", "ultima_resposta_em")


@dataclass(frozen=True)
class Step:
    number: int
    delay_days: float
    template: str
    stop_when: CompiledWhen | None
    where: str


def load_sequences(ctx: Context) -> dict[str, list[Step]]:
    sheet = ctx.tables["Sequences"]
    out: dict[str, list[Step]] = {}
    if not sheet.exists:
        return out
    schema = schema_for(ctx.tables["Contacts"])
    for pos in range(len(sheet)):
        name = sheet.df["sequence"].iloc[pos]
        if not isinstance(name, str) or not name.strip():
            continue
        number = sheet.df["step"].iloc[pos]
        delay = sheet.df["delay_days"].iloc[pos]
        template = sheet.df["template"].iloc[pos]
        if not isinstance(template, str) or not template.strip():
            ctx.plan.problems.append(
                error(sheet.ref(pos, "template"), f'step of sequence "{name}" has no template')
            )
            continue
        if delay == delay and delay is not None and not 0 <= float(delay) <= MAX_DAYS:
            ctx.plan.problems.append(
                error(
                    sheet.ref(pos, "delay_days"),
                    f"delay_days {float(delay):g} is out of range",
                    f"enter a number of days from 0 to {MAX_DAYS}",
                )
            )
            continue
        stop = sheet.df["stop_when"].iloc[pos]
        compiled = None
        if isinstance(stop, str) and stop.strip():
            try:
                compiled = compile_when(stop, schema)
            except WhenError as e:
                ctx.plan.problems.append(error(sheet.ref(pos, "stop_when"), str(e)))
                continue
        steps = out.setdefault(normalize(name), [])
        steps.append(
            Step(
                int(number) if number == number and number is not None else len(steps) + 1,
                float(delay) if delay == delay and delay is not None else 0.0,
                template.strip(),
                compiled,
                sheet.ref(pos, "sequence"),
            )
        )
    for steps in out.values():
        steps.sort(key=lambda s: s.number)
    return out


def enroll(ctx: Context, table: Table, positions: list[int], sequence: str, rule: str) -> None:
    """Start the sequence for each record's contact unless it is already running for that contact."""
    enrollments = ctx.section(SECTION)
    key_name = normalize(sequence)
    contacts = _contact_ids(ctx, table, positions)
    for cid in contacts:
        if not cid:
            continue
        key = f"{key_name}|{cid}"
        current = json.loads(enrollments[key]) if key in enrollments else None
        if current and current.get("status") == "active":
            continue
        enrollments[key] = json.dumps(
            {
                "step": 0,
                "at": ctx.plan.local_now.isoformat(timespec="seconds"),
                "since": ctx.plan.local_now.isoformat(timespec="seconds"),
                "status": "active",
                "by": rule,
                "n": (current or {}).get("n", 0) + 1,
                "sequence": sequence.strip(),
            }
        )


def _contact_ids(ctx: Context, table: Table, positions: list[int]) -> list[str]:
    column = "id" if table.spec.name == "Contacts" else "contact_id"
    values = table.df[column].to_numpy(dtype=object) if column in table.df else [None] * len(table.df)
    return [values[p].strip() if isinstance(values[p], str) else "" for p in positions]  # type: ignore[union-attr]  # isinstance does not narrow an index expression


def stage_sequences(ctx: Context) -> None:
    """Send the next due step of every active enrollment, or end it; then plan the Enrollments sheet."""
    enrollments = ctx.section(SECTION)
    if not enrollments:
        ctx.plan.enrollments = []
        return
    sequences = load_sequences(ctx)
    _advance(ctx, enrollments, sequences)
    ctx.plan.enrollments = enrollment_rows(ctx, enrollments, sequences)


def _advance(ctx: Context, enrollments: dict[str, str], sequences: dict[str, list[Step]]) -> None:
    contacts = ctx.tables["Contacts"]
    index = {
        v.strip(): i
        for i, v in enumerate(contacts.df["id"].to_numpy(dtype=object).tolist())
        if isinstance(v, str) and v.strip()
    }
    frame = ctx.frame("Contacts")
    masks: dict[int, object] = {}
    today = ctx.plan.local_now.date()
    due_by_template: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    for key, raw in sorted(enrollments.items()):
        item = json.loads(raw)
        if item.get("status") != "active":
            continue
        name, _, cid = key.partition("|")
        steps = sequences.get(name)
        pos = index.get(cid)
        if not steps or pos is None:
            _end(enrollments, key, item, "sequence removed" if not steps else "contact removed", ctx)
            continue
        since = dt.datetime.fromisoformat(item["since"])
        reason = _stop_reason(contacts, pos, since)
        done = int(item.get("step", 0))
        if done >= len(steps):
            _end(enrollments, key, item, "finished", ctx)
            continue
        step = steps[done]
        stop = next((s.stop_when for s in reversed(steps[: done + 1]) if s.stop_when is not None), None)
        if reason is None and stop is not None:
            mask = masks.get(id(stop))
            if mask is None:
                mask = masks[id(stop)] = stop.mask(frame).to_numpy(dtype=bool)
            if mask[pos]:  # type: ignore[index]  # a bool array from the cache
                reason = "stop_when holds"
                item["stop"] = stop.source
        if reason:
            _end(enrollments, key, item, reason, ctx)
            continue
        last = dt.datetime.fromisoformat(item["at"]).date()
        if today < last + dt.timedelta(days=step.delay_days):
            continue
        occurrence = f"seq:{name}:{step.number}@{item['since']}"
        due_by_template.setdefault((name, step.template, item.get("by", "")), []).append((pos, occurrence))
        item.update(step=done + 1, at=ctx.plan.local_now.isoformat(timespec="seconds"))
        if done + 1 >= len(steps):
            item.update(status="finished", ended=item["at"])
        enrollments[key] = json.dumps(item)
    for (name, template, _by), items in due_by_template.items():
        request_email(
            ctx,
            "Contacts",
            [p for p, _ in items],
            template,
            f"Sequence {name}",
            [o for _, o in items],
            to="contact",
        )


def _stop_reason(contacts: Table, pos: int, since: dt.datetime) -> str | None:
    df = contacts.df
    for column in CONSENT_COLUMNS:  # fail closed: see coerce.parse_consent
        if column in df:
            value = df[column].iloc[pos]
            if value is not pd.NA and value is not None and bool(value):
                return column.replace("_", " ")
    for column in REPLY_COLUMNS:
        if column in df:
            value = df[column].iloc[pos]
            if (
                value is not None
                and value == value
                and hasattr(value, "to_pydatetime")
                and value.to_pydatetime() >= since
            ):
                return "replied"
    return None


def _end(enrollments: dict[str, str], key: str, item: dict, reason: str, ctx: Context) -> None:
    item.update(
        status="stopped" if reason != "finished" else "finished",
        reason=reason,
        ended=ctx.plan.local_now.isoformat(timespec="seconds"),
    )
    enrollments[key] = json.dumps(item)
    if reason != "finished":
        name, _, cid = key.partition("|")
        who = _contact_name(ctx, cid)
        sequence = item.get("sequence") or name
        ctx.notice(
            f'{who} left sequence "{sequence}": {_reason_text(item, "en")}',
            f'{who} saiu da sequência "{sequence}": {_reason_text(item, "pt")}',
        )


# ---------------------------------------------------------------- the Enrollments sheet

STATUS_TEXT = {
    "en": {"active": "active", "finished": "finished", "stopped": "left"},
    "pt": {"active": "ativa", "finished": "concluída", "stopped": "saiu"},
}
REASON_TEXT = {
    "en": {
        "unsubscribed": "unsubscribed",
        "do not contact": "do not contact",
        "bounced": "e-mail bounced",
        "replied": "replied",
        "stop_when holds": "stop_when holds: {stop}",
        "contact removed": "the contact is no longer in Contacts",
        "sequence removed": "the sequence is no longer in Sequences",
    },
    "pt": {
        "unsubscribed": "descadastrou",
        "do not contact": "não contatar",
        "bounced": "e-mail devolvido",
        "replied": "respondeu",
        "stop_when holds": "parar_quando vale: {stop}",
        "contact removed": "o contato não está mais em Contatos",
        "sequence removed": "a sequência não está mais em Sequências",
    },
}


def _reason_text(item: dict, lang: str) -> str:
    reason = item.get("reason") or ""
    if item.get("status") != "stopped" or not reason:
        return ""
    return REASON_TEXT[lang].get(reason, reason).format(stop=item.get("stop") or "")


def _contact_name(ctx: Context, cid: str) -> str:
    """``Ana Souza (C-00001)``; just the id when the contact is gone or has no name."""
    contacts = ctx.tables["Contacts"]
    if len(contacts):
        ids = contacts.df["id"].to_numpy(dtype=object)
        for pos, rid in enumerate(ids):
            if isinstance(rid, str) and rid.strip() == cid:
                name = " ".join(
                    str(v).strip()
                    for v in (
                        contacts.df[c].iloc[pos] for c in ("first_name", "last_name") if c in contacts.df
                    )
                    if isinstance(v, str) and v.strip()
                )
                if not name and "email" in contacts.df and isinstance(contacts.df["email"].iloc[pos], str):
                    name = contacts.df["email"].iloc[pos].strip()
                return f"{name} ({cid})" if name else cid
    return cid


def enrollment_rows(
    ctx: Context, enrollments: dict[str, str], sequences: dict[str, list[Step]]
) -> list[dict[str, object]]:
    """The Enrollments sheet as this run leaves it: one row per enrollment, by canonical column."""
    lang = "pt" if ctx.portuguese else "en"
    now = ctx.plan.local_now.isoformat(timespec="seconds")
    contacts = ctx.tables["Contacts"]
    names: dict[str, str] = {}
    if len(contacts):
        df = contacts.df
        parts = [df[c].to_numpy(dtype=object) for c in ("first_name", "last_name") if c in df]
        emails = df["email"].to_numpy(dtype=object) if "email" in df else [None] * len(df)
        for pos, rid in enumerate(df["id"].to_numpy(dtype=object)):
            if isinstance(rid, str) and rid.strip():
                name = " ".join(p[pos].strip() for p in parts if isinstance(p[pos], str) and p[pos].strip())
                names[rid.strip()] = name or (emails[pos].strip() if isinstance(emails[pos], str) else "")  # type: ignore[union-attr]  # isinstance does not narrow an index expression
    rows = []
    for key, raw in enrollments.items():
        item = json.loads(raw)
        name, _, cid = key.partition("|")
        steps = sequences.get(name) or []
        done = int(item.get("step", 0))
        status = item.get("status", "active")
        next_at = None
        if status == "active" and done < len(steps):
            last = dt.datetime.fromisoformat(item["at"]).date()
            next_at = dt.datetime.combine(last + dt.timedelta(days=steps[done].delay_days), dt.time())
        of = "de" if lang == "pt" else "of"
        rows.append(
            {
                "sequence": item.get("sequence") or name,
                "contact_id": cid,
                "contact": names.get(cid, ""),
                "step": f"{done} {of} {len(steps)}" if steps else str(done),
                "next_step_at": next_at,
                "status": STATUS_TEXT[lang].get(status, status),
                "reason": _reason_text(item, lang),
                "enrolled_at": dt.datetime.fromisoformat(item["since"]),
                "updated_at": dt.datetime.fromisoformat(item.get("ended") or item["at"]),
                "rule": item.get("by", ""),
                "key": f"{key}|{item.get('n', 1)}",
                # an ended enrollment whose row is not in the sheet (the log cap archived it, or it ended
                # before the sheet existed) is not written again; one that changed in this run is
                "_show": status == "active" or (item.get("ended") or item["at"]) == now,
            }
        )
    rows.sort(key=lambda r: (r["enrolled_at"], r["key"]))
    return rows


def diff_enrollments(
    table: Table | None, rows: list[dict[str, object]]
) -> tuple[list[dict[str, object]], list[tuple[int, str, object]]]:
    """Rows to append and ``(position, column, value)`` cells to update so the sheet shows ``rows``.

    Rows are matched by ``key``; a row whose key is not in the sheet is appended, cells that already
    show the value are left alone (so an unchanged run writes nothing here).
    """
    index: dict[str, int] = {}
    if table is not None and table.exists and len(table) and "key" in table.df:
        for pos, key in enumerate(table.df["key"].to_numpy(dtype=object).tolist()):
            if isinstance(key, str) and key.strip():
                index[key.strip()] = pos
    added: list[dict[str, object]] = []
    updates: list[tuple[int, str, object]] = []
    for row in rows:
        pos = index.get(str(row["key"]))  # type: ignore[assignment]  # reuses the name of the loop above
        values = {k: v for k, v in row.items() if not k.startswith("_")}
        if pos is None:
            if row.get("_show", True):
                added.append(values)
            continue
        df = table.df  # type: ignore[union-attr]  # index is empty without a table
        for column, value in values.items():
            if column not in df or not _same(df[column].iloc[pos], value):
                updates.append((pos, column, value))
    return added, updates


def _same(old: object, new: object) -> bool:
    old, new = to_cell(old), to_cell(new)
    if isinstance(old, dt.datetime) and isinstance(new, dt.datetime):
        return abs((old - new).total_seconds()) < 1
    return (as_text(old) or "") == (as_text(new) or "")

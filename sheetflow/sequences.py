"""Sequences: multi-step email cadences a contact is enrolled in by an ``enroll`` action.

Sequences sheet rows: sequence, step, delay_days, template, stop_when. ``delay_days`` counts from the
previous step (from the enrollment for step 1). Before every step the contact leaves the sequence when
it has unsubscribed, has replied (a ``replied_at`` or ``last_reply_at`` column later than the
enrollment), or the step's ``stop_when`` holds (a blank stop_when uses the nearest earlier one). At most
one step of a sequence goes out per contact per run, so a run after a long pause never sends a burst.

Enrollments live in the state section ``sequences`` (``SEQUENCE|contact id`` -> JSON), saved with the
workbook. Deals and tickets enroll their linked contact (``contact_id``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pandas as pd

from .coerce import MAX_SHIFT_DAYS as MAX_DAYS
from .engine import Context
from .expr import CompiledWhen, WhenError, compile_when
from .names import normalize
from .problems import error, note
from .rulesheets import schema_for
from .tables import Table

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
            }
        )


def _contact_ids(ctx: Context, table: Table, positions: list[int]) -> list[str]:
    column = "id" if table.spec.name == "Contacts" else "contact_id"
    values = table.df[column].to_numpy(dtype=object) if column in table.df else [None] * len(table.df)
    return [values[p].strip() if isinstance(values[p], str) else "" for p in positions]


def stage_sequences(ctx: Context) -> None:
    """Send the next due step of every active enrollment, or end it."""
    enrollments = ctx.section(SECTION)
    if not enrollments:
        return
    sequences = load_sequences(ctx)
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
            if mask[pos]:
                reason = "stop_when holds"
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
            item["status"] = "finished"
        enrollments[key] = json.dumps(item)
    from .automations import _mail

    for (name, template, _by), items in due_by_template.items():
        _mail("request_email")(
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
    if "unsubscribed" in df:
        value = df["unsubscribed"].iloc[pos]
        if value is not pd.NA and value is not None and bool(value):
            return "unsubscribed"
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
    if reason not in ("finished",):
        ctx.plan.problems.append(note("Sequences", f"{key.replace('|', ': ')} left the sequence ({reason})"))

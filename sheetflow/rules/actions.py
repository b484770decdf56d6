"""Automation actions: parse the ``action`` + ``params`` cells once (applying them to records is the
engine's: :mod:`sheetflow.engine.actions`).

    send_email   template=NAME [to=owner]      queue an email to the contact (or its owner)
    set          COLUMN=VALUE[; ...]           write columns of the record (VALUE may be today, now, today+3d)
    assign       assign_to=..., method=...     (re)assign the owner with the assignment methods
    enroll       sequence=NAME                 start a sequence
    create_task  text=..., due=Nd              append to Tasks for the owner
    notify       text=...                      email the owner (one digest per rep per run)
    escalate     to=NAME                       mark escalated_at (tickets) and notify NAME

Every action also takes ``repeat=true`` (condition triggers and ``every_run``: act again on each run
instead of once per occurrence / once a day) and ``include_existing=true`` (edge triggers: fire once for
the records already there when the rule is first seen, instead of taking them as the baseline).

Params are ``key=value`` pairs separated by ``;`` (or ``,`` before the next ``key=``); values may be quoted.
Texts may use merge fields like ``{{ first_name }}`` (rendered in Jinja2's sandbox). Every mistake is an
:class:`ActionError` whose message the caller prefixes with the params cell.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sheetflow import contract
from sheetflow.coerce import MAX_SHIFT_DAYS, Locale, Unreadable, parse_as, to_cell
from sheetflow.coltypes import ColumnType
from sheetflow.names import normalize, suggest
from sheetflow.problems import RuleError
from sheetflow.rules.expr import Schema
from sheetflow.rules.sandbox import RenderError, render_batch, shown, template_id
from sheetflow.tables.table import Table

ACTIONS = ("send_email", "set", "assign", "enroll", "create_task", "notify", "escalate")
# Actions whose effect leaves the workbook or adds to it (an email, a task, an enrollment). Of an
# ``every_run`` rule they happen at most once per record per local day (unless ``repeat=true``): a
# condition that keeps holding must not mail or task someone on every run (issue 9.6). ``set`` and
# ``assign`` are idempotent (writing the same value again changes nothing) and run every time.
SIDE_EFFECTS = frozenset({"send_email", "notify", "escalate", "create_task", "enroll"})
TRUE_WORDS = ("true", "yes", "sim", "1", "verdadeiro", "x")
# Params every action takes that are options of the rule, never a column to ``set`` (README "Automations").
RULE_OPTIONS = ("repeat", "include_existing")


def flag(params: dict[str, str], key: str) -> bool:
    """A yes/no param such as ``repeat=true`` or ``include_existing=sim``."""
    return normalize(params.get(key, "")) in TRUE_WORDS


_PAIR = re.compile(
    r'\s*([^=;,]+?)\s*=\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|.*?)\s*(?=(?:[;,]\s*[^=;,"\']+?\s*=)|;|$)'
)
MAX_DAYS = MAX_SHIFT_DAYS  # see coerce.MAX_SHIFT_DAYS
_RELATIVE = re.compile(r"^(today|now|hoje|agora)(?:\s*([+-])\s*(\d+)\s*([dh]))?$", re.IGNORECASE)
TEXT_NAMES = ("today", "now")  # names a task/notify text may use besides the record's columns


class ActionError(RuleError, ValueError):
    """A user mistake in an action or its params."""


@dataclass(frozen=True)
class Action:
    kind: str
    params: dict[str, str] = field(default_factory=dict)
    sets: tuple[tuple[str, str], ...] = ()  # set: (canonical column, raw value)


def parse_params(text: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    rest = (text or "").strip()
    pos = 0
    while pos < len(rest):
        m = _PAIR.match(rest, pos)
        if not m or m.end() == pos:
            raise ActionError(f'cannot read params "{rest}" — write key=value pairs separated by ";"')
        key, value = normalize(m.group(1)), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\'", "'")
        params[key] = value
        pos = m.end()
        while pos < len(rest) and rest[pos] in ";, ":
            pos += 1
    return params


def parse_action(
    kind_text: str | None, params_text: str | None, schema: Schema, known: dict[str, set[str]]
) -> Action:
    """``known`` holds names for validation: templates, sequences, reps (normalized)."""
    kind = normalize(kind_text or "")
    if kind not in ACTIONS:
        hint = suggest(kind, ACTIONS) if kind else None
        raise ActionError(
            (f'unknown action "{kind_text}"' if kind else "action is empty")
            + (f' — did you mean "{hint}"?' if hint else " — use " + ", ".join(ACTIONS))
        )
    params = parse_params(params_text)
    if kind == "set":
        if not params:
            raise ActionError("set needs COLUMN=VALUE, e.g. lifecycle_stage=customer")
        sets = []
        for key, value in params.items():
            if key in RULE_OPTIONS:
                continue
            column = schema.resolve(key)
            if column is None:
                hint = suggest(key, schema.candidates())
                raise ActionError(f'unknown column "{key}"' + (f' — did you mean "{hint}"?' if hint else ""))
            if column == "id":
                raise ActionError("set cannot change a record's id")
            # constant values are checked now, so `check` names the cell (relative dates run each time)
            typed_value(value, schema.type_of(column), dt.datetime(2000, 1, 1), Locale(), column=column)
            sets.append((column, value))
        if not sets:
            raise ActionError("set needs COLUMN=VALUE, e.g. lifecycle_stage=customer")
        return Action(kind, params, tuple(sets))
    required = {
        "send_email": "template",
        "enroll": "sequence",
        "create_task": "text",
        "notify": "text",
        "escalate": "to",
    }.get(kind)
    if required and not params.get(required):
        raise ActionError(
            f"{kind} needs {required}=..., e.g. "
            + {
                "template": "template=welcome",
                "sequence": "sequence=onboarding",
                "text": "text=Call {{ first_name }}",
                "to": "to=Ana Souza",
            }[required]
        )
    for key, pool in (("template", "templates"), ("sequence", "sequences")):
        if key in params and known.get(pool) is not None and normalize(params[key]) not in known[pool]:
            hint = suggest(params[key], known[pool])
            raise ActionError(
                f'unknown {key} "{params[key]}"'
                + (f' — did you mean "{hint}"?' if hint else f" — add it to the {pool.title()} sheet")
            )
    if "due" in params:
        delay_of(params["due"])  # validates
    for key in ("text", "subject"):
        if key in params:
            check_text(key, params[key], schema)
    return Action(kind, params)


def check_text(key: str, source: str, schema: Schema) -> None:
    """A task/notify text as ``check`` and ``run`` see it: it compiles in the email sandbox, every name
    is a column of the record (canonical or as the sheet's header says it, pt-BR included) or today/now,
    and it renders for a placeholder record. ActionError with a "did you mean" otherwise."""
    tid = template_id(source, False)
    sample = {name: _sample(t) for name, t in schema.types.items()}
    sample.update({alias: sample[canonical] for alias, canonical in schema.aliases.items()})
    sample.update(today="01/01/2026", now="01/01/2026 09:00")
    (out,) = render_batch({tid: (source, False)}, [(("?" + tid, tid), sample)])
    if isinstance(out[0], RenderError):
        raise ActionError(f"{key}: {out[0]}")
    for name in out[0].split("\x1f"):
        if name and name not in TEXT_NAMES and schema.resolve(name) is None:
            hint = suggest(name, [*schema.candidates(), *TEXT_NAMES])
            raise ActionError(
                f'{key} uses unknown field "{name}"'
                + (f' — did you mean "{hint}"?' if hint else " — use a column name of the record")
            )
    if isinstance(out[-1], RenderError):
        raise ActionError(f"{key} cannot be rendered: {out[-1]}")


def _sample(type_: ColumnType) -> Any:
    value = {ColumnType.NUMBER: 1.0, ColumnType.DATE: dt.datetime(2026, 1, 1), ColumnType.BOOL: True}.get(
        type_, "x"
    )
    return shown(value, "", day_first=False, decimal_comma=False)


def delay_of(text: str | None) -> dt.timedelta:
    """``3d``, ``4h``, ``30m``, ``2w`` (blank = none)."""
    raw = (text or "").strip().lower()
    if not raw:
        return dt.timedelta(0)
    m = re.fullmatch(r"(\d+(?:[.,]\d+)?)\s*(m|min|h|d|w|dias?|horas?|semanas?)?", raw)
    if not m:
        raise ActionError(f'cannot read the delay "{text}" — write e.g. 3d, 4h or 30m')
    amount = float(m.group(1).replace(",", "."))
    unit = (m.group(2) or "d")[0]
    days = amount * {"m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7, "s": 7}[unit]
    if days > MAX_DAYS:
        raise ActionError(
            f'the delay "{text}" is longer than {MAX_DAYS // 365} years — write e.g. 3d, 4h or 30m'
        )
    return {
        "m": dt.timedelta(minutes=amount),
        "h": dt.timedelta(hours=amount),
        "d": dt.timedelta(days=amount),
        "w": dt.timedelta(weeks=amount),
        "s": dt.timedelta(weeks=amount),
    }[unit]


_TYPE_WORDS = {
    ColumnType.NUMBER: "numbers",
    ColumnType.DATE: "dates",
    ColumnType.BOOL: "TRUE/FALSE values",
    ColumnType.TEXT: "text",
}
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_BOOL_WORDS = {"true": True, "false": False, "verdadeiro": True, "falso": False, "sim": True, "nao": False}


def typed_value(
    raw: str, type_: ColumnType, now: dt.datetime, locale: Locale, *, column: str = "", empty: bool = False
) -> Any:
    """A ``set`` value as what it means: ``today``/``now``/``today+3d`` are dates relative to the run, other
    text is read as the column's type. ``empty``: the column has no values yet (a column the team just
    added), so the value's own type wins (``3`` a number, ``2026-03-01`` a date, ``TRUE`` a boolean).
    A value that cannot go into the column is an ActionError ("... holds numbers")."""
    text = raw.strip()
    m = _RELATIVE.match(text)
    if m:
        base = (
            now if normalize(m.group(1)) in ("now", "agora") else dt.datetime.combine(now.date(), dt.time())
        )
        if m.group(2):
            amount = int(m.group(3)) * (-1 if m.group(2) == "-" else 1)
            days = amount if m.group(4).lower() == "d" else amount / 24
            if abs(days) > MAX_DAYS:
                raise ActionError(f'"{raw}" is more than {MAX_DAYS // 365} years away — write e.g. today+3d')
            base += dt.timedelta(days=amount) if m.group(4).lower() == "d" else dt.timedelta(hours=amount)
        if type_ in (ColumnType.NUMBER, ColumnType.BOOL) and not empty:
            raise ActionError(f'"{raw}" is a date, but {column or "the column"} holds {_TYPE_WORDS[type_]}')
        return base
    if empty and type_ is ColumnType.TEXT:
        word = normalize(text)
        if word in _BOOL_WORDS:
            return _BOOL_WORDS[word]
        if _PLAIN_NUMBER.match(text):
            type_ = ColumnType.NUMBER
        else:
            try:
                date = parse_as(text, ColumnType.DATE, locale)
            except Unreadable:
                date = None
            if date is not None:
                return date
    try:
        return parse_as(text, type_, locale)
    except Unreadable as e:
        where = f"{column} holds {_TYPE_WORDS[type_]}" if column else ""
        raise ActionError(f'"{raw}" {e}' + (f" ({where})" if where else "")) from None


_broken: dict[str, dict] = {}  # run id -> text templates that hit a sandbox limit in that run


def render_texts(
    source: str, table: Table, positions: list[int], *, locale: Locale, now: dt.datetime, run_id: str = ""
) -> list[str | Exception]:
    """A task/notification text for each record position, rendered in the one email sandbox (same
    limits, see :mod:`.mail.sandbox`), in one batch. Values print as the cell shows them in the
    workbook's locale; an empty cell prints as nothing. An item is the text or a RenderError."""
    if "{" not in source:  # plain text: nothing to render
        return [source] * len(positions)
    tid = template_id(source, False)
    fields = [text_fields(table, p, locale, now) for p in positions]
    broken = _broken.setdefault(run_id, {})
    while len(_broken) > 8:
        del _broken[next(iter(_broken))]
    outs = render_batch({tid: (source, False)}, [((tid,), f) for f in fields], broken)
    return [out[-1] if isinstance(out[-1], RenderError) else out[0] for out in outs]


def text_fields(table: Table, position: int, locale: Locale, now: dt.datetime) -> dict[str, Any]:
    """The merge fields of a task/notify text: every column (canonical name and the sheet's header,
    and the contract's aliases) shown as in the cell; empty cells are ""; plus today and now."""
    day_first, comma = locale.day_first, locale.decimal_comma
    row: dict[str, Any] = {}
    for col in table.df.columns:
        value = to_cell(table.df[col].iloc[position])
        row[col] = (
            ""
            if value is None
            else shown(
                value,
                col,
                day_first=day_first,
                decimal_comma=comma,
                typed=table.flag_text(position, col, value) if isinstance(value, bool) else "",
                portuguese=locale.portuguese,
            )
        )
    for col, header in table.headers.items():
        row.setdefault(normalize(header), row.get(col, ""))
    for alias, canonical in contract.column_aliases(table.spec).items():
        if canonical in row:
            row.setdefault(normalize(alias), row[canonical])
    fmt = "%d/%m/%Y" if day_first else "%m/%d/%Y"
    row.setdefault("today", now.strftime(fmt))
    row.setdefault("now", now.strftime(fmt + " %H:%M"))
    return row


def record_fields(table: Table, position: int) -> dict[str, Any]:
    row = table.df.iloc[position]
    return {k: to_cell(v) for k, v in row.items()}

"""Lead assignment and routing (the Assignment and Reps sheets): fair, predictable and explainable.

The engine calls :func:`stage_assignment`; the ``assign`` automation action reuses :class:`Assigner`::

    assigner = Assigner(ctx)                              # reps, open loads, saved rotations
    rules, problems = load_rules(ctx.tables, assigner.roster)
    choice = assigner.choose(rules[0], position)          # Choice(rep, why), or None: nobody eligible
    ctx.change(ctx.tables[rules[0].table], [position], "owner", [choice.rep.name], [choice.why])
    assigner.finish()                                     # rotations -> state, tasks, warnings

What a run does, per table (Contacts, Deals, Tickets), record by record in sheet order:

* Only records whose ``owner`` is blank are assigned; an owner is never overwritten.
* Enabled rules are tried top to bottom. A record goes to the first rule whose ``when`` holds *and* that
  has an eligible rep. When the first matching rule has nobody eligible, the next matching rule (e.g. a
  catch-all below it) gets the record; only when no matching rule can take it does it stay blank, with a
  warning at the first matching rule's cell and a task for Settings ``fallback_owner``.
* Eligible: ``active`` not FALSE (blank = active), today (workbook timezone) not within
  ``away_from``..``away_until`` inclusive (a blank end is open), ``weight`` not 0 (blank = 1), and fewer
  open records *of the table being assigned* than ``capacity`` (blank = unlimited). Loads count the
  records assigned earlier in the same run, so a run never pushes anyone past capacity.
* Methods: ``round_robin`` (next eligible rep after the last one served, in Reps sheet order),
  ``weighted`` (shares proportional to weight, see :class:`_Shares`), ``least_loaded`` (fewest open records
  of the table, ties by the rotation), ``sticky_account`` (the owner of an already-owned record with the
  same company or business e-mail domain, if they are in the rule's ``assign_to`` and eligible; otherwise
  round robin; an account hit does not use a turn of the rotation).
* Each rep who got records gets ONE notification e-mail per run listing them (the outbox's digest). While
  email is not set up (no Settings sender_email), or for a rep without an address, it is a Tasks row instead;
  ``owner`` and, where the contract has the column (Contacts), ``assigned_at`` are written, and every
  Activity row says which rule and method chose the rep and who was skipped and why.

Rotations survive runs in the state section ``assignment``, one JSON value per rule keyed by
``Table:normalized rule name`` (:func:`rule_key`). Reordering rule rows keeps each rule's rotation;
renaming a rule starts a new rotation (the old key is dropped once no rule has that name). Two rules
with the same name in the same table get ``#2``, ``#3``... suffixes and a warning. A value looks like
``{"last": "Bob", "order": ["Ana", "Bob", "Carol"], "credit": {"Ana": 0.25, "Bob": -0.25}}``: the rep
served last, the candidates' order when it was saved (so a removed rep's place in the rotation is still
known), and for ``weighted`` how many picks each rep is owed.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import heapq
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sheetflow import contract
from sheetflow.engine.emails import request_notification
from sheetflow.names import company_key as _company_key
from sheetflow.names import normalize, suggest, text_key
from sheetflow.problems import Problem, error, warning
from sheetflow.rules.actions import ActionError
from sheetflow.rules.expr import CompiledWhen, compile_when
from sheetflow.rules.sheets import (
    ASSIGN_METHODS,
    cell_text,
    compile_cell,
    is_enabled,
    rule_label,
    schema_for,
    target_table,
)
from sheetflow.tables.records import open_mask
from sheetflow.tables.table import Table, Tables

if TYPE_CHECKING:  # the engine imports this module; at run time we only need duck typing
    from sheetflow.engine.context import Context

SECTION = "assignment"
RULE_TEXT = "Assignment"
AUTOMATION_KEY = "auto:"  # rotations of ``assign`` actions: kept whatever the Assignment sheet says
MAX_REASONS = 3  # ineligible reps named in one explanation before "+N more"
MAX_IDS_IN_TASK = 50  # record ids listed in one task's text before "+N more"

FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "hotmail.com",
        "hotmail.com.br",
        "outlook.com",
        "outlook.com.br",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.com.br",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "uol.com.br",
        "bol.com.br",
        "terra.com.br",
        "ig.com.br",
    }
)
ALL_WORDS = frozenset({"all", "everyone", "todos", "todas"})
TERRITORY_WORDS = frozenset({"territory", "territorio", "regiao", "region"})
NOUNS = {
    "en": {"Contacts": ("contact", "contacts"), "Deals": ("deal", "deals"), "Tickets": ("ticket", "tickets")},
    "pt": {
        "Contacts": ("contato", "contatos"),
        "Deals": ("negócio", "negócios"),
        "Tickets": ("chamado", "chamados"),
    },
}
_SPACES = re.compile(r"\s+")
_EPS = 1e-9


# ---------------------------------------------------------------- reps


@dataclass(frozen=True)
class Rep:
    """One row of the Reps sheet, as the run sees it."""

    index: int  # position in Reps sheet order: the rotation order
    name: str  # as typed (what goes into ``owner``)
    key: str  # text_key(name): how owners are matched to reps
    active: bool
    weight: float  # blank = 1
    capacity: float  # blank = unlimited (inf)
    territories: frozenset[str]  # normalized; a cell may list several, comma-separated
    away_from: dt.date | None
    away_until: dt.date | None
    where: str  # Reps!A3, for messages

    def unavailable(self, today: dt.date) -> str | None:
        """Why the rep cannot take records at all today (capacity is checked separately), or None."""
        if not self.active:
            return "inactive"
        if self.away_on(today):
            if self.away_until is not None:
                return f"away until {self.away_until.isoformat()}"
            return f"away since {self.away_from.isoformat()}" if self.away_from else "away"
        if self.weight <= 0:
            return "weight 0"
        return None

    def away_on(self, day: dt.date) -> bool:
        """Inclusive on both ends; a blank end is open (blank ``away_until`` = away until further notice)."""
        if self.away_from is None and self.away_until is None:
            return False
        return (self.away_from is None or self.away_from <= day) and (
            self.away_until is None or day <= self.away_until
        )


@dataclass
class Roster:
    """The Reps sheet in order, with each rep's fixed availability for this run's day."""

    reps: list[Rep]
    today: dt.date
    by_key: dict[str, Rep] = field(default_factory=dict)
    unavailable: dict[int, str] = field(default_factory=dict)  # rep index -> reason, for the whole run

    def __post_init__(self) -> None:
        self.by_key = {r.key: r for r in self.reps}
        self.unavailable = {r.index: why for r in self.reps if (why := r.unavailable(self.today))}

    def find(self, name: object) -> Rep | None:
        return self.by_key.get(text_key(name)) if isinstance(name, str) and name.strip() else None


def _date(value: object) -> dt.date | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dt.datetime):  # Timestamps too: the day is what counts for away dates
        return value.date()
    return value if isinstance(value, dt.date) else None


def _number(value: object, default: float) -> float:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return default
    return float(value)  # type: ignore[arg-type]  # a cell value: float() raises on what is no number, as intended


def load_roster(table: Table, today: dt.date) -> tuple[Roster, list[Problem]]:
    """Reps in sheet order; a nameless row is skipped and a repeated name (case-insensitive) is a warning."""
    problems: list[Problem] = []
    reps: list[Rep] = []
    seen: dict[str, str] = {}
    df = table.df
    for pos in range(len(table)):
        name = cell_text(table, pos, "name")
        if not name:
            problems.append(
                warning(
                    table.ref(pos, "name"),
                    "a rep without a name is ignored",
                    "type the rep's name as owners should show it",
                )
            )
            continue
        key = text_key(name)
        if key in seen:
            problems.append(
                warning(
                    table.ref(pos, "name"),
                    f'rep "{name}" appears twice',
                    f"only {seen[key]} is used; remove or rename one",
                )
            )
            continue
        seen[key] = table.ref(pos, "name")
        active = df["active"].iloc[pos]
        active = not (isinstance(active, (bool, np.bool_)) and not active)  # blank (<NA>) = active
        weight = _number(df["weight"].iloc[pos], 1.0)
        if weight < 0:
            problems.append(
                warning(
                    table.ref(pos, "weight"),
                    f"weight {weight:g} is negative",
                    "use 0 to stop assigning to this rep; treated as 0",
                )
            )
            weight = 0.0
        capacity = max(_number(df["capacity"].iloc[pos], math.inf), 0.0)
        territories = frozenset(
            text_key(t) for t in cell_text(table, pos, "territory").split(",") if t.strip()
        )
        reps.append(
            Rep(
                len(reps),
                name,
                key,
                active,
                weight,
                capacity,
                territories,
                _date(df["away_from"].iloc[pos]),
                _date(df["away_until"].iloc[pos]),
                table.ref(pos, "name"),
            )
        )
    return Roster(reps, today), problems


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class AssignRule:
    """One enabled, valid Assignment row (or an ``assign`` action's parameters, for automations)."""

    name: str
    table: str  # canonical: Contacts, Deals, Tickets
    when: CompiledWhen
    candidates: tuple[int, ...]  # rep indices in Reps order, no repeats
    method: str  # one of ASSIGN_METHODS
    where: str  # Assignment!A3: the rule's row, for messages
    key: str  # rotation key in the state section (see rule_key)
    label: str = "Assignment"  # how explanations start: Assignment "Brazil leads" round_robin: ...


def rule_key(table: str, name: str) -> str:
    """Rotations are keyed by table and rule name, so reordering rows keeps them (renaming restarts)."""
    return f"{table}:{normalize(name)}"


def resolve_assign_to(text: str, roster: Roster, where: str) -> tuple[tuple[int, ...], list[Problem]]:
    """``Ana, Bruno`` / ``territory:South`` / ``all`` -> rep indices in Reps order, or problems naming ``where``."""
    problems: list[Problem] = []
    chosen: set[int] = set()
    names = [r.name for r in roster.reps]
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        head, sep, rest = part.partition(":")
        if normalize(part) in ALL_WORDS:
            chosen.update(r.index for r in roster.reps)
            if not roster.reps:
                problems.append(
                    error(
                        where,
                        'assign_to is "all" but the Reps sheet lists no reps',
                        "add your reps (name, email, active, ...) to the Reps sheet",
                    )
                )
        elif sep and normalize(head) in TERRITORY_WORDS:
            wanted = text_key(rest)
            hits = [r.index for r in roster.reps if wanted in r.territories]
            if not hits:
                known = sorted({t for r in roster.reps for t in r.territories})
                hint = suggest(rest, known)
                problems.append(
                    error(
                        where,
                        f'no rep has territory "{rest.strip()}"',
                        f'did you mean "territory:{hint}"?'
                        if hint
                        else "fill the territory column of the Reps sheet",
                    )
                )
            chosen.update(hits)
        else:
            rep = roster.find(part)
            if rep is None:
                hint = suggest(part, names)
                problems.append(
                    error(
                        where,
                        f'unknown rep "{part}" in assign_to',
                        f'did you mean "{hint}"?'
                        if hint
                        else "use names from the Reps sheet, territory:X, or all"
                        if names
                        else "list your reps in a Reps sheet (name, email, active, ...)",
                    )
                )
            else:
                chosen.add(rep.index)
    return tuple(sorted(chosen)), problems


def load_rules(tables: Tables, roster: Roster) -> tuple[list[AssignRule], list[Problem]]:
    """Enabled Assignment rows that can run, top to bottom; every other row is a problem naming its cell."""
    sheet = tables["Assignment"]
    problems: list[Problem] = []
    rules: list[AssignRule] = []
    keys: dict[str, str] = {}
    for pos in range(len(sheet)):
        if not is_enabled(sheet, pos):
            continue
        target = target_table(sheet, pos, tables, problems)
        when = compile_cell(sheet, pos, "when", schema_for(target), problems) if target is not None else None
        method = normalize(cell_text(sheet, pos, "method") or "round_robin")
        if method not in ASSIGN_METHODS:
            hint = suggest(method, ASSIGN_METHODS)
            problems.append(
                error(
                    sheet.ref(pos, "method"),
                    f'unknown method "{method}"',
                    f'did you mean "{hint}"?' if hint else "use " + ", ".join(ASSIGN_METHODS),
                )
            )
            continue
        text = cell_text(sheet, pos, "assign_to")
        if not text:
            problems.append(
                error(
                    sheet.ref(pos, "assign_to"),
                    "assign_to is empty",
                    "name reps (Ana, Bruno), territory:South, or all",
                )
            )
            continue
        candidates, found = resolve_assign_to(text, roster, sheet.ref(pos, "assign_to"))
        problems += found
        if target is None or when is None or any(p.is_error for p in found):
            continue
        name = rule_label(sheet, pos)
        key = rule_key(target.spec.name, name)
        if key in keys:
            problems.append(
                warning(
                    sheet.ref(pos, "rule"),
                    f'another {target.spec.name} rule is also called "{name}" ({keys[key]})',
                    "give each rule its own name so each keeps its own rotation",
                )
            )
            n = 2
            while f"{key}#{n}" in keys:
                n += 1
            key = f"{key}#{n}"
        keys[key] = sheet.ref(pos, "rule")
        rules.append(
            AssignRule(name, target.spec.name, when, candidates, method, sheet.ref(pos, "rule"), key)
        )
    return rules, problems


def check_assignment(tables: Tables) -> list[Problem]:
    """What ``sheetflow check`` should add to rulesheets.check_other_rules: the Reps sheet and the names
    in ``assign_to`` (unknown reps and territories, with did-you-mean). Away dates play no part here."""
    roster, problems = load_roster(tables["Reps"], dt.date.min)
    sheet = tables["Assignment"]
    for pos in range(len(sheet)):
        text = cell_text(sheet, pos, "assign_to")
        if text:
            problems += resolve_assign_to(text, roster, sheet.ref(pos, "assign_to"))[1]
    return problems


def rule_keys(tables: Tables) -> set[str]:
    """The rotation keys of every Assignment row, enabled or not: rotations of other keys are dropped.

    A row whose table cell is unreadable keeps its rotation under every table, so a typo there never
    loses a rotation.
    """
    sheet = tables["Assignment"]
    keys: set[str] = set()
    for pos in range(len(sheet)):
        spec = contract.sheet_spec(cell_text(sheet, pos, "table") or "Contacts")
        names = (
            [spec.name]
            if spec is not None and spec.name in contract.RECORD_SHEETS
            else contract.RECORD_SHEETS
        )
        keys.update(rule_key(t, rule_label(sheet, pos)) for t in names)
    return keys


# ---------------------------------------------------------------- open records and loads


def owner_indices(table: Table, roster: Roster) -> np.ndarray:
    """Rep index of each record's owner (-1: blank or not a rep); matched case- and space-insensitively."""
    if not len(table):
        return np.zeros(0, dtype=np.int64)
    codes, uniques = pd.factorize(table.df["owner"], use_na_sentinel=True)
    lookup = [rep.index if (rep := roster.find(v)) else -1 for v in uniques] + [-1]
    return np.asarray(lookup, dtype=np.int64)[codes]


def blank_owner(table: Table) -> np.ndarray:
    """Records without an owner. An owner cell holding a formula is never blank, whatever it shows (its ""
    is the formula's decision, and sheetflow never writes over a formula)."""
    owners = table.df["owner"]
    blank = (owners.isna() | (owners.fillna("").astype(str).str.strip() == "")).to_numpy(dtype=bool)
    return blank & ~table.formula_mask("owner")


class Loads:
    """Open records per rep in one table, kept current as the run assigns (capacity and least_loaded)."""

    def __init__(self, counts: np.ndarray, roster: Roster) -> None:
        self.counts: list[int] = [int(c) for c in counts]  # plain lists: read once per record
        self.capacity: list[float] = [r.capacity for r in roster.reps]
        self.version = 0  # bumps whenever a rep becomes full: rotations then drop them

    def full(self, index: int) -> bool:
        return self.counts[index] >= self.capacity[index]

    def add(self, index: int) -> None:
        self.counts[index] += 1
        if self.counts[index] >= self.capacity[index]:
            self.version += 1


# ---------------------------------------------------------------- accounts (sticky_account)


def company_key(value: object) -> str:
    """``"ACME Ltda."``, ``"Acme LTDA"`` and ``"acme"`` are the same account: see names.company_key."""
    return _company_key(value) if isinstance(value, str) else ""


def domain_key(value: object) -> str:
    """The business e-mail domain (``ana@Acme.com`` -> ``acme.com``); free mailboxes are no account."""
    if not isinstance(value, str) or "@" not in value:
        return ""
    domain = value.rsplit("@", 1)[1].strip().casefold().rstrip(".>")
    return "" if not domain or domain in FREE_MAIL_DOMAINS else domain


class Accounts:
    """Company / domain -> the rep owning the first (sheet order) record of that account, per table.

    Deals and tickets belong to the account of their contact (``contact_id``); their own ``company`` /
    ``email`` columns, when a team added them, are used when there is no linked contact.
    """

    def __init__(self, tables: Tables, name: str, owners: Sequence[int], ids: Sequence[str]) -> None:
        self.companies, self.domains = _account_keys(tables, name)
        self.ids = ids
        self.by_company: dict[str, tuple[int, int]] = {}  # key -> (rep index, position of the record)
        self.by_domain: dict[str, tuple[int, int]] = {}
        for pos, rep in enumerate(owners):
            if rep >= 0:
                self.learn(pos, rep)

    def learn(self, position: int, rep: int) -> None:
        if self.companies[position]:
            self.by_company.setdefault(self.companies[position], (rep, position))
        if self.domains[position]:
            self.by_domain.setdefault(self.domains[position], (rep, position))

    def owner(self, position: int) -> tuple[int, str] | None:
        """(rep index, "same company as C-00004") for a record, or None when its account has no owner."""
        company, domain = self.companies[position], self.domains[position]
        if company and company in self.by_company:
            rep, pos = self.by_company[company]
            return rep, f"same company as {self.ids[pos]}"
        if domain and domain in self.by_domain:
            rep, pos = self.by_domain[domain]
            return rep, f"same e-mail domain ({domain}) as {self.ids[pos]}"
        return None


def _account_keys(tables: Tables, name: str) -> tuple[list[str], list[str]]:
    table = tables[name]
    own_company = _column_values(table, "company")
    own_email = _column_values(table, "email")
    distinct: dict[object, str] = {}  # few companies, many rows: normalise each name once
    companies = [
        distinct[v] if v in distinct else distinct.setdefault(v, company_key(v)) for v in own_company
    ]
    domains = [domain_key(v) for v in own_email]
    if name == "Contacts" or "contact_id" not in table.df:
        return companies, domains
    contacts = tables["Contacts"].df
    by_id: dict[str, tuple[str, str]] = {}
    for cid, company, email in zip(*(contacts[c].to_numpy(dtype=object) for c in ("id", "company", "email"))):
        if isinstance(cid, str) and cid.strip():
            by_id.setdefault(cid.strip(), (company_key(company), domain_key(email)))  # first row wins
    for pos, cid in enumerate(table.df["contact_id"].to_numpy(dtype=object)):
        linked = by_id.get(cid.strip()) if isinstance(cid, str) else None
        if linked is not None and (linked[0] or linked[1]):
            companies[pos], domains[pos] = linked
    return companies, domains


def _column_values(table: Table, column: str) -> list[object]:
    return table.df[column].to_numpy(dtype=object).tolist() if column in table.df else [None] * len(table)


# ---------------------------------------------------------------- rotations


@dataclass
class Rotation:
    """A rule's saved rotation (see the module docstring for the JSON form)."""

    last: str = ""
    order: list[str] = field(default_factory=list)
    credit: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | None) -> Rotation:
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        credit = data.get("credit")
        if not isinstance(credit, dict):
            credit = {}
        return cls(
            str(data.get("last") or ""),
            [str(n) for n in data.get("order") or [] if isinstance(n, str)],
            {str(k): float(v) for k, v in credit.items() if isinstance(v, (int, float))},
        )

    def to_json(self) -> str:
        data: dict[str, Any] = {"last": self.last, "order": self.order}
        if self.credit:
            data["credit"] = self.credit
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _start_pointer(rotation: Rotation, keys: Sequence[str]) -> float:
    """Where the rotation stands among ``keys`` (candidate keys in Reps order): the next pick is after it.

    The last rep served may have left the Reps sheet (or the rule's assign_to): then the rotation resumes
    at the first rep that followed them in the saved order and is still a candidate, exactly where it
    would have been had that rep never existed. Without history the rotation starts at the first rep.
    """
    if not rotation.last:
        return -0.5
    where = {k: i for i, k in enumerate(keys)}
    last = text_key(rotation.last)
    if last in where:
        return float(where[last])
    order = [text_key(n) for n in rotation.order]
    if last in order:
        i = order.index(last)
        for successor in order[i + 1 :] + order[:i]:
            if successor in where:
                return where[successor] - 0.5
    return -0.5


class _Shares:
    """Weighted turns that stay within one pick of each rep's ideal share at every prefix.

    Each eligible rep i has a share p_i = weight_i / total weight and a credit: the picks it is owed
    (ideal share so far minus picks received). nginx's smooth weighted round robin (pick the largest
    credit) drifts past one pick for some weight mixes with four or more reps (e.g. weights 3,3,15,15,15,2
    leave a rep 54/53 picks behind at pick 46), so the pick is made with Tijdeman's rule for the
    "chairman assignment problem" instead: among reps whose next pick is due (credit >= 1 - C), take
    the one with the earliest deadline (C - credit) / p_i, with C = 1 - 1/(2n - 2). That keeps every
    rep strictly within C < 1 pick of its ideal at every prefix, is deterministic (ties by Reps order)
    and needs two heaps: O(log reps) per pick.

    Credits are saved with the rotation, so the guarantee spans runs. When the eligible set changes (a
    rep goes away, hits capacity or joins), leavers' credit is forfeited, joiners start at 0 and the
    credits are re-centred to sum 0 so the bound keeps holding for the new set.
    """

    def __init__(self, weights: dict[int, float], credit: dict[int, float]) -> None:
        self.weights = weights  # candidate position -> weight (> 0)
        self.members: list[int] = []
        self.base: dict[int, float] = {}
        self.picks: dict[int, int] = {}
        self.share: dict[int, float] = {}
        self.t = 0
        self.total = 0.0
        self._saved = credit
        self.c = 1.0
        self.pending: list[tuple[float, int]] = []
        self.ready: list[tuple[float, int]] = []

    def credits(self) -> dict[int, float]:
        if not self.members:
            return dict(self._saved)
        return {i: round(self.base[i] + self.t * self.share[i] - self.picks[i], 12) for i in self.members}

    def rebase(self, members: list[int]) -> None:
        old = self.credits()
        credit = {i: old.get(i, 0.0) for i in members}
        mean = sum(credit.values()) / len(credit) if credit else 0.0
        self.members = list(members)
        self.base = {i: round(v - mean, 12) for i, v in credit.items()}
        self.total = total = sum(self.weights[i] for i in members)
        self.share = {i: self.weights[i] / total for i in members}
        self.picks = dict.fromkeys(members, 0)
        self.t = 0
        n = len(members)
        self.c = 1.0 - 1.0 / (2 * n - 2) if n > 1 else 1.0
        self.ready, self.pending = [], []
        for i in members:
            heapq.heappush(self.pending, (self._release(i), i))

    def _release(self, i: int) -> float:
        return round((self.picks[i] - self.base[i] + 1 - self.c) / self.share[i], 9)

    def _deadline(self, i: int) -> float:
        return round((self.picks[i] - self.base[i] + self.c) / self.share[i], 9)

    def next(self) -> int:
        self.t += 1
        while self.pending and self.pending[0][0] <= self.t + _EPS:
            _, i = heapq.heappop(self.pending)
            heapq.heappush(self.ready, (self._deadline(i), i))
        if not self.ready:  # cannot happen from a re-centred state; stay total anyway
            _, i = heapq.heappop(self.pending)
            heapq.heappush(self.ready, (self._deadline(i), i))
        _, i = heapq.heappop(self.ready)
        self.picks[i] += 1
        heapq.heappush(self.pending, (self._release(i), i))
        return i


class _Turns:
    """One rule's rotation during a run: which candidates are eligible now, and who is next."""

    def __init__(self, rule: AssignRule, roster: Roster, loads: Loads, rotation: Rotation) -> None:
        self.rule = rule
        self.roster = roster
        self.loads = loads
        self.reps = [roster.reps[i] for i in rule.candidates]
        self.keys = [r.key for r in self.reps]
        self.pointer = _start_pointer(rotation, self.keys)
        self.last_name = rotation.last
        self.after = f"next after {rotation.last}" if rotation.last else "first in the rotation"
        self._afters = [f"next after {r.name}" for r in self.reps]  # built once: read per record
        self.pick = {"weighted": self.weighted, "least_loaded": self.least_loaded}.get(
            rule.method, self.round_robin
        )
        self.eligible: list[int] = []  # candidate positions, ascending
        self.version = -1
        self.used = False
        self.shares: _Shares | None = None
        self.prefix = f'{rule.label} "{rule.name}" '  # explanations: prefix + method's reason + suffix
        self.suffix = ""  # "; Dee inactive, Eve away until ..."
        if rule.method == "weighted":
            saved = {text_key(k): v for k, v in rotation.credit.items()}
            credit = {p: saved[k] for p, k in enumerate(self.keys) if k in saved}
            self.shares = _Shares({p: r.weight for p, r in enumerate(self.reps)}, credit)

    def refresh(self) -> None:
        """Recompute who is eligible when a rep of this table has just become full (rare)."""
        if self.version == self.loads.version:
            return
        self.version = self.loads.version
        unavailable = self.roster.unavailable
        eligible = [
            p for p, r in enumerate(self.reps) if r.index not in unavailable and not self.loads.full(r.index)
        ]
        if self.shares is not None and eligible != self.shares.members and eligible:
            self.shares.rebase(eligible)
        self.eligible = eligible
        skipped = _reasons(self.ineligible())
        self.suffix = f"; {skipped}" if skipped else ""

    def ineligible(self) -> list[tuple[Rep, str]]:
        return [(r, why) for r in self.reps if (why := reason(r, self.roster, self.loads))]

    def advance(self, position: int) -> Rep:
        rep = self.reps[position]
        self.pointer = position
        self.last_name = rep.name
        self.after = self._afters[position]
        self.used = True
        return rep

    def round_robin(self) -> tuple[int, str]:
        i = bisect.bisect_right(self.eligible, self.pointer)
        return self.eligible[i % len(self.eligible)], "round_robin: " + self.after

    def least_loaded(self) -> tuple[int, str]:
        loads, reps = self.loads.counts, self.reps
        counts = [loads[reps[p].index] for p in self.eligible]
        low = min(counts)
        tied = [p for p, c in zip(self.eligible, counts) if c == low]
        i = bisect.bisect_right(tied, self.pointer)
        why = f"least_loaded: {low} open"
        if len(tied) > 1:
            why += f", tie {self.after}"
        return tied[i % len(tied)], why

    def weighted(self) -> tuple[int, str]:
        assert self.shares is not None
        p = self.shares.next()
        rep = self.reps[p]
        return p, f"weighted: {rep.name}'s turn (weight {rep.weight:g} of {self.shares.total:g})"

    def rotation(self) -> Rotation:
        credit = (
            {self.reps[p].name: v for p, v in self.shares.credits().items()}
            if self.shares is not None
            else {}
        )
        return Rotation(self.last_name, [r.name for r in self.reps], credit)


def reason(rep: Rep, roster: Roster, loads: Loads) -> str | None:
    """Why ``rep`` cannot take a record of this table right now, or None when eligible."""
    why = roster.unavailable.get(rep.index)
    if why:
        return why
    if loads.full(rep.index):
        return f"at capacity ({rep.capacity:g})"
    return None


def _reasons(items: Sequence[tuple[Rep, str]]) -> str:
    """``Dee inactive, Eve away until 2026-11-30, +2 more``: short enough for one Activity cell."""
    shown = [f"{rep.name} {why}" for rep, why in items[:MAX_REASONS]]
    if len(items) > MAX_REASONS:
        shown.append(f"+{len(items) - MAX_REASONS} more")
    return ", ".join(shown)


# ---------------------------------------------------------------- the assigner


@dataclass(frozen=True)
class Choice:
    rep: Rep
    why: str  # the Activity explanation: rule, method, reason, who was skipped


@dataclass
class _TableState:
    table: Table
    open: list[bool]  # per record: counts towards loads
    owners: list[int]  # per record: rep index of the owner, -1 if none
    loads: Loads
    ids: list[str]  # record ids ("" where blank), looked up per record
    accounts: Accounts | None = None


class Assigner:
    """Chooses reps for records during one run; shared by the Assignment stage and automations.

    Keeps, per table, every rep's open load (capacity, least_loaded) and the account owners
    (sticky_account), and per rule the rotation loaded from and saved to the state section.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.today = ctx.plan.local_now.date()
        self.roster, self.problems = load_roster(ctx.tables["Reps"], self.today)
        self.pointers = ctx.section(SECTION)
        self._tables: dict[str, _TableState] = {}
        self._turns: dict[str, _Turns] = {}
        self.new: dict[int, list[tuple[str, str]]] = {}  # rep index -> [(table, record id)]
        self.stranded: dict[str, tuple[AssignRule, list[int], list[AssignRule]]] = {}

    def table(self, name: str) -> _TableState:
        state = self._tables.get(name)
        if state is None:
            table = self.ctx.tables[name]
            is_open = open_mask(self.ctx.tables, name)
            owners = owner_indices(table, self.roster)
            counts = np.bincount(owners[is_open & (owners >= 0)], minlength=len(self.roster.reps))
            ids = [v if isinstance(v, str) else "" for v in table.df["id"].to_numpy(dtype=object).tolist()]
            state = self._tables[name] = _TableState(
                table, is_open.tolist(), owners.tolist(), Loads(counts, self.roster), ids
            )
        return state

    def turns(self, rule: AssignRule) -> _Turns:
        turns = self._turns.get(rule.key)
        if turns is None:
            rotation = Rotation.from_json(self.pointers.get(rule.key))
            turns = self._turns[rule.key] = _Turns(rule, self.roster, self.table(rule.table).loads, rotation)
        turns.refresh()
        return turns

    def choose(self, rule: AssignRule, position: int, *, note: str = "") -> Choice | None:
        """Pick the rep for record ``position`` of ``rule.table`` and book it (rotation, load, account).

        Returns None, changing nothing, when nobody in the rule's assign_to is eligible. Call it only for
        a record you will assign: it advances the rule's rotation.
        """
        turns = self.turns(rule)
        if not turns.eligible:
            return None
        state = self.table(rule.table)
        prefix = ""
        if rule.method == "sticky_account":
            picked, prefix = self._sticky(turns, state, position)
            if picked is not None:  # the account's owner: no turn of the rotation is used
                return self._book(rule, turns, state, position, turns.reps[picked], prefix, note)
        picked, why = turns.pick()
        return self._book(rule, turns, state, position, turns.advance(picked), prefix + why, note)

    def _sticky(self, turns: _Turns, state: _TableState, position: int) -> tuple[int | None, str]:
        """The account owner's candidate position if they can take it; else why not (for the text)."""
        if state.accounts is None:
            state.accounts = Accounts(self.ctx.tables, turns.rule.table, state.owners, state.ids)
        hit = state.accounts.owner(position)
        if hit is None:
            return None, "sticky_account: no owned record of this account; "
        rep = self.roster.reps[hit[0]]
        if rep.key not in turns.keys:
            return None, f"sticky_account: {hit[1]}, but {rep.name} is not in assign_to; "
        why = reason(rep, self.roster, turns.loads)
        if why:
            return None, f"sticky_account: {hit[1]}, but {rep.name} {why}; "
        return turns.keys.index(rep.key), f"sticky_account: {hit[1]}"

    def _book(
        self,
        rule: AssignRule,
        turns: _Turns,
        state: _TableState,
        position: int,
        rep: Rep,
        why: str,
        note: str,
    ) -> Choice:
        turns.used = True
        if state.open[position]:
            state.loads.add(rep.index)
        state.owners[position] = rep.index
        if state.accounts is not None:
            state.accounts.learn(position, rep.index)
        self.new.setdefault(rep.index, []).append((rule.table, state.ids[position]))
        text = turns.prefix + why + turns.suffix
        return Choice(rep, f"{text}; {note}" if note else text)

    def strand(self, rules: Sequence[AssignRule], position: int) -> None:
        """Record ``position`` matched ``rules`` (in order) and none of them had an eligible rep."""
        first = rules[0]
        entry = self.stranded.setdefault(first.key, (first, [], list(rules[1:])))
        entry[1].append(position)
        for rule in rules[1:]:
            if rule not in entry[2]:
                entry[2].append(rule)

    def finish(self, *, prune: bool = True) -> None:
        """Save the rotations used, drop those of rules no longer in the sheet, warn and notify."""
        for key, turns in self._turns.items():
            if turns.used:
                self.pointers[key] = turns.rotation().to_json()
        if prune and self.ctx.tables["Assignment"].exists:
            keys = rule_keys(self.ctx.tables)
            for key in [
                k
                for k in self.pointers
                if not k.startswith(AUTOMATION_KEY) and k not in keys and k.rsplit("#", 1)[0] not in keys
            ]:
                del self.pointers[key]
        tasks: dict[str, tuple[str, list[str], set[str]]] = {}
        emails = self._rep_emails() if self.ctx.settings.text("sender_email").strip() else {}
        baseline = self.ctx.state.meta.get("last_run_id") or "start"
        for index, records in self.new.items():
            rep = self.roster.reps[index]
            if rep.key in emails:  # one digest email per rep per run, through the outbox
                _notify(
                    self.ctx,
                    rep.name,
                    self._subject(),
                    [self._notice(records)],
                    RULE_TEXT,
                    f"assign@{baseline}",
                    record=",".join(sorted(f"{t} {i}" for t, i in records)),
                )
            else:  # a rep without an e-mail address learns it from the Tasks sheet
                tasks[rep.key] = (rep.name, [self._notice(records)], {t for t, _ in records})
        fallback = self.ctx.fallback_owner
        # the fallback task is made once per set of records nobody could take, not on every run while
        # the same records wait (issue 9.6): the set's fingerprint is remembered in the state
        memory = self.ctx.section("stranded")
        stranded = sorted(
            f"{rule.table}|{self.table(rule.table).ids[p]}"
            for rule, positions, _ in self.stranded.values()
            for p in positions
        )
        fingerprint = (
            normalize(fallback) + " " + hashlib.sha256("\n".join(stranded).encode()).hexdigest()[:20]
            if stranded and fallback
            else ""
        )
        told = fingerprint and memory.get("fallback") == fingerprint
        for rule, positions, others in self.stranded.values():
            text = self._stranded(rule, positions, others, fallback)
            if fallback and not told:
                name, texts, kinds = tasks.setdefault(text_key(fallback), (fallback, [], set()))
                texts.append(text)
                kinds.add(rule.table)
        if fingerprint:
            memory["fallback"] = fingerprint
        else:
            memory.pop("fallback", None)
        for name, texts, kinds in tasks.values():
            table = next(iter(kinds)) if len(kinds) == 1 else ""
            self.ctx.task(name, "; ".join(texts), RULE_TEXT, table=table)

    def _rep_emails(self) -> dict[str, str]:
        reps = self.ctx.tables["Reps"].df
        return {
            text_key(n): e.strip()
            for n, e in zip(reps["name"], reps["email"])
            if isinstance(n, str) and isinstance(e, str) and "@" in e
        }

    def _subject(self) -> str:
        return "Novos registros atribuídos a você" if self.ctx.portuguese else "New records assigned to you"

    def _notice(self, records: list[tuple[str, str]]) -> str:
        """``3 new contacts assigned to you: C-00012, C-00013, C-00020`` (pt-BR in Portuguese books)."""
        lang = "pt" if self.ctx.portuguese else "en"
        counts: dict[str, int] = {}
        for table, _ in records:
            counts[table] = counts.get(table, 0) + 1
        parts = [_count(n, table, lang) for table, n in counts.items()]
        ids = [rid for _, rid in records if rid]
        shown = _listing(ids)
        if lang == "pt":
            verb = "atribuído" if len(records) == 1 else "atribuídos"
            return f"{' e '.join(parts)} {verb} a você: {shown}"
        return f"{' and '.join(parts)} assigned to you: {shown}"

    def _stranded(
        self, rule: AssignRule, positions: list[int], others: list[AssignRule], fallback: str
    ) -> str:
        """Warn at the first matching rule's cell; return the fallback task's text."""
        state = self.table(rule.table)
        turns = self.turns(rule)
        noun = NOUNS["en"][rule.table][0 if len(positions) == 1 else 1]
        why = _reasons(turns.ineligible()) or "assign_to names no rep"
        also = f" (nor in {', '.join(f'{r.name!r}' for r in others)})" if others else ""
        ids = [state.ids[p] for p in positions if state.ids[p]]
        shown = _listing(ids)
        hint = (
            f"they stay unassigned; {fallback} got a task"
            if fallback
            else "they stay unassigned; set Settings fallback_owner to get a task for them"
        )
        message = f"no eligible rep for {len(positions)} {noun}{also} — {why}"
        self.ctx.plan.problems.append(warning(rule.where, message, hint))
        return (
            f"{len(positions)} {noun} could not be assigned (no eligible rep in {rule.where}: {why}): {shown}"
        )


def _listing(ids: Sequence[str]) -> str:
    """Record ids for a task cell: the first MAX_IDS_IN_TASK, then "+N more" (a cell holds 32k chars)."""
    more = len(ids) - MAX_IDS_IN_TASK
    return ", ".join(ids[:MAX_IDS_IN_TASK]) + (f", +{more} more" if more > 0 else "")


def _count(n: int, table: str, lang: str) -> str:
    singular, plural = NOUNS[lang][table]
    if lang == "pt":
        return f"{n} {singular} novo" if n == 1 else f"{n} {plural} novos"
    return f"{n} new {singular if n == 1 else plural}"


# ---------------------------------------------------------------- the stage


def stage_assignment(ctx: Context) -> None:
    """Give blank-owner records an owner by the Assignment rules, and explain every choice."""
    if not ctx.tables["Assignment"].exists:
        return
    assigner = Assigner(ctx)
    rules, problems = load_rules(ctx.tables, assigner.roster)
    ctx.plan.problems += assigner.problems + problems
    for name in contract.RECORD_SHEETS:
        table_rules = [r for r in rules if r.table == name]
        if table_rules and len(ctx.tables[name]):
            _assign_table(ctx, assigner, name, table_rules)
    assigner.finish()
    if hasattr(ctx.plan, "reps"):  # the Reps summary, once Plan carries it (see the module's note)
        ctx.plan.reps = summarize(ctx)


def _assign_table(ctx: Context, assigner: Assigner, name: str, rules: list[AssignRule]) -> None:
    """Records in sheet order; each goes to its first matching rule that has someone eligible."""
    table = ctx.tables[name]
    frame = ctx.frame(name)
    blank = blank_owner(table)
    matches = np.zeros((len(rules), len(table)), dtype=bool)
    for i, rule in enumerate(rules):
        try:
            matches[i] = rule.when.mask(frame).to_numpy() & blank
        except Exception as e:  # noqa: BLE001 - a rule must never stop the run; report where it failed
            ctx.plan.problems.append(error(rule.where, f'rule "{rule.name}" could not be evaluated: {e}'))
    formula = table.formula_mask("owner")
    if formula.any():  # a rule would assign these, but their owner is a formula's decision: say so
        looks_blank = (table.df["owner"].fillna("").astype(str).str.strip() == "").to_numpy(dtype=bool)
        wanted = np.zeros(len(table), dtype=bool)
        for rule in rules:
            try:
                wanted |= rule.when.mask(frame).to_numpy(dtype=bool)
            except Exception:  # noqa: BLE001 - reported above
                pass
        hits = np.flatnonzero(formula & looks_blank & wanted).tolist()
        ctx.formula_cells.setdefault((name, "owner"), []).extend(table.refs(hits, "owner"))
    first = matches.argmax(axis=0).tolist()
    exhausted = [False] * len(rules)  # nobody eligible stays so for the rest of the run
    positions: list[int] = []
    owners: list[str] = []
    texts: list[str] = []
    for pos in np.flatnonzero(matches.any(axis=0)).tolist():
        tried: list[AssignRule] = []
        i = first[pos]
        while i < len(rules):
            choice = None if exhausted[i] else assigner.choose(rules[i], pos, note=_fell_through(tried))
            if choice is not None:
                positions.append(pos)
                owners.append(choice.rep.name)
                texts.append(choice.why)
                break
            exhausted[i] = True
            tried.append(rules[i])
            later = np.flatnonzero(matches[i + 1 :, pos])
            i = i + 1 + int(later[0]) if len(later) else len(rules)
        else:
            assigner.strand(tried, pos)
    ctx.change(table, positions, "owner", owners, texts)
    if "assigned_at" in table.spec.column_names:
        ctx.change(table, positions, "assigned_at", [ctx.plan.local_now] * len(positions), texts)


def _fell_through(tried: Iterable[AssignRule]) -> str:
    names = [f'"{r.name}"' for r in tried]
    return f"nobody eligible in {', '.join(names)}" if names else ""


# ---------------------------------------------------------------- the Reps summary


def summarize(ctx: Context) -> list[dict[str, Any]]:
    """One row per rep for the report: open load per table (after this run), capacity, assigned this run.

    "Assigned" counts every owner this run wrote for the rep (rules and ``assign`` actions alike).
    """
    roster, _ = load_roster(ctx.tables["Reps"], ctx.plan.local_now.date())
    assigned = dict.fromkeys(range(len(roster.reps)), 0)
    for ch in ctx.plan.changes:
        if ch.column == "owner" and (rep := roster.find(ch.new)):
            assigned[rep.index] += 1
    open_by_table: dict[str, np.ndarray] = {}
    for name in contract.RECORD_SHEETS:
        owners = owner_indices(ctx.tables[name], roster)
        mask = open_mask(ctx.tables, name) & (owners >= 0)
        open_by_table[name] = np.bincount(owners[mask], minlength=len(roster.reps))
    rows = []
    for rep in roster.reps:
        opened = {name: int(counts[rep.index]) for name, counts in open_by_table.items()}
        rows.append(
            {
                "rep": rep.name,
                "status": roster.unavailable.get(rep.index, "available"),
                "open": opened,
                "capacity": None if math.isinf(rep.capacity) else rep.capacity,
                "assigned": assigned[rep.index],
            }
        )
    return rows


# ---------------------------------------------------------------- the assign action (automations)


def reassign(
    ctx: Context, table: Table, positions: Sequence[int], params: dict[str, str], rule_name: str
) -> list[int]:
    """The ``assign`` automation action: give these records an owner by ``assign_to`` / ``method``.

    Unlike Assignment rules this is explicit, so a record that has an owner is reassigned (its old
    owner's load is released first). The rotation is kept per automation rule under ``auto:``. Returns
    the positions whose owner changed. Bad params raise ActionError (the caller names the cell).
    """
    assigner = Assigner(ctx)
    method = normalize(params.get("method") or "round_robin")
    if method not in ASSIGN_METHODS:
        hint = suggest(method, ASSIGN_METHODS)
        raise ActionError(
            f'unknown method "{method}"'
            + (f' — did you mean "{hint}"?' if hint else " — use " + ", ".join(ASSIGN_METHODS))
        )
    candidates, problems = resolve_assign_to(params.get("assign_to") or "all", assigner.roster, "")
    if problems:
        raise ActionError("; ".join(p.message + (f" — {p.hint}" if p.hint else "") for p in problems))
    name = table.spec.name
    rule = AssignRule(
        rule_name,
        name,
        compile_when("", schema_for(table)),
        candidates,
        method,
        "Automations",
        f"{AUTOMATION_KEY}{rule_key(name, rule_name)}",
        label="Automation",
    )
    state = assigner.table(name)
    changed, owners, texts = [], [], []
    for pos in positions:
        old = int(state.owners[pos])
        if old >= 0 and state.open[pos]:
            state.loads.counts[old] -= 1
            state.loads.version += 1  # the old owner may be below capacity again
        choice = assigner.choose(rule, pos)
        if choice is None:
            if old >= 0 and state.open[pos]:
                state.loads.counts[old] += 1
            assigner.strand([rule], pos)
        elif choice.rep.index == old:
            assigner.new[old].pop()  # same owner as before: nothing to tell them
        else:
            changed.append(pos)
            owners.append(choice.rep.name)
            texts.append(choice.why)
    ctx.change(table, changed, "owner", owners, texts)
    if "assigned_at" in table.spec.column_names:
        ctx.change(table, changed, "assigned_at", [ctx.plan.local_now] * len(changed), texts)
    assigner.finish(prune=False)
    return changed


def _notify(
    ctx: Context, rep: str, subject: str, lines: list[str], rule: str, occurrence: str, record: str = ""
) -> None:
    request_notification(ctx, rep, subject, lines, rule, occurrence, record)

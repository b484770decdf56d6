"""The Assigner: picks a rep per record with the rules and methods, and finishes the run (rotations, tasks,
notifications).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sheetflow.engine.assignment.accounts import Accounts
from sheetflow.engine.assignment.methods import Rotation, Turns, reason, reasons
from sheetflow.engine.assignment.reps import Loads, Rep, load_roster, owner_indices
from sheetflow.engine.assignment.rules import AssignRule, rule_keys
from sheetflow.engine.context import Context
from sheetflow.engine.emails import request_notification
from sheetflow.names import normalize, text_key
from sheetflow.problems import warning
from sheetflow.tables.records import open_mask
from sheetflow.tables.table import Table

SECTION = "assignment"
RULE_TEXT = "Assignment"
AUTOMATION_KEY = "auto:"  # rotations of ``assign`` actions: kept whatever the Assignment sheet says
MAX_IDS_IN_TASK = 50  # record ids listed in one task's text before "+N more"
NOUNS = {
    "en": {"Contacts": ("contact", "contacts"), "Deals": ("deal", "deals"), "Tickets": ("ticket", "tickets")},
    "pt": {
        "Contacts": ("contato", "contatos"),
        "Deals": ("negócio", "negócios"),
        "Tickets": ("chamado", "chamados"),
    },
}


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
        self._turns: dict[str, Turns] = {}
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

    def turns(self, rule: AssignRule) -> Turns:
        turns = self._turns.get(rule.key)
        if turns is None:
            rotation = Rotation.from_json(self.pointers.get(rule.key))
            turns = self._turns[rule.key] = Turns(rule, self.roster, self.table(rule.table).loads, rotation)
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

    def _sticky(self, turns: Turns, state: _TableState, position: int) -> tuple[int | None, str]:
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
        turns: Turns,
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
        why = reasons(turns.ineligible()) or "assign_to names no rep"
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


def _notify(
    ctx: Context, rep: str, subject: str, lines: list[str], rule: str, occurrence: str, record: str = ""
) -> None:
    request_notification(ctx, rep, subject, lines, rule, occurrence, record)

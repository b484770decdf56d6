"""The Automations sheet: trigger + when + action (+ delay), run as a stage of the pure engine.

Per run:
1. pending delayed actions that are due run now if their rule's ``when`` still holds; otherwise they are
   cancelled (a delayed follow-up for a deal that was lost since is dropped, not sent);
2. every enabled rule's trigger is detected (see :mod:`.triggers`), filtered by its ``when`` and by the
   fire-once memory, and its action applied — or scheduled when the rule has a ``delay``;
3. cascades: writes made by actions can trigger other rules' ``changed:``/``entered:``/``score_reached:``
   in a further pass, never the rule that made them; after ``MAX_PASSES`` the run stops cascading and
   says which rules kept triggering each other (the loop guard).

State sections (saved in the workbook's hidden state sheet): ``fired`` (condition triggers that already
fired, so a date or idle trigger fires once per occurrence), ``pending`` (delayed actions with their due
time), ``rules`` (when each rule was first seen: its baseline run), ``daily`` (records an ``every_run``
rule's side effect reached today, as packed ids), and the sequence enrollments of :mod:`.sequences`.

Baselines: the first run that sees a rule (the workbook's first run, or the run after the rule was added
or re-enabled) takes the records already there as its baseline, and says so in plain words; an edge
trigger fires only for what happens afterwards. ``include_existing=true`` in the params fires it once for
those records instead. ``every_run`` rules with a side effect (:data:`~.actions.SIDE_EFFECTS`) act at
most once per record per local day; ``repeat=true`` makes them act on every run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass

from sheetflow.coerce import to_cell
from sheetflow.data import data_dir
from sheetflow.engine.actions import apply_set
from sheetflow.engine.assignment import reassign
from sheetflow.engine.context import Context, skip_formulas
from sheetflow.engine.emails import request_email, request_notification
from sheetflow.engine.sequences import enroll
from sheetflow.engine.sla import escalation_text
from sheetflow.names import normalize, text_key
from sheetflow.problems import error, note, warning
from sheetflow.rules.actions import (
    ACTIONS,
    SIDE_EFFECTS,
    Action,
    ActionError,
    delay_of,
    flag,
    parse_action,
    record_fields,
    render_texts,
)
from sheetflow.rules.expr import CompiledWhen, WhenError, compile_when
from sheetflow.rules.sheets import cell_text, is_enabled, rule_label, schema_for, target_table
from sheetflow.rules.triggers import Trigger, TriggerError, detect, parse_trigger
from sheetflow.tables.records import read_stages
from sheetflow.tables.state import pack_ids, unpack_ids
from sheetflow.tables.table import Table

NOUNS = {
    "en": {"Contacts": ("contact", "contacts"), "Deals": ("deal", "deals"), "Tickets": ("ticket", "tickets")},
    "pt": {
        "Contacts": ("contato", "contatos"),
        "Deals": ("negócio", "negócios"),
        "Tickets": ("chamado", "chamados"),
    },
}


def count_of(n: int, table: str, lang: str) -> str:
    """``2 contacts`` / ``1 negócio``: a record count in words."""
    singular, plural = NOUNS[lang][table]
    return f"{n} {singular if n == 1 else plural}"


MAX_PASSES = 5
FIRED_KEEP_DAYS = 400


@dataclass(frozen=True)
class AutomationRule:
    key: str  # stable identity for state: table + normalized rule name
    name: str
    table: str
    trigger: Trigger
    when: CompiledWhen
    action: Action
    delay: dt.timedelta
    repeat: bool
    where: str  # the rule's row, for messages
    include_existing: bool = False  # edge trigger: fire once for the records there when first seen
    params_at: str = ""  # the rule's params cell (texts: errors name it)

    @property
    def once_a_day(self) -> bool:
        """An every_run rule whose action has a side effect: at most once per record per day."""
        return self.trigger.kind == "every_run" and self.action.kind in SIDE_EFFECTS and not self.repeat


def known_names(ctx: Context) -> dict[str, set[str]]:
    templates = ctx.tables["Templates"]
    sequences = ctx.tables["Sequences"]
    return {
        "templates": ({normalize(n) for n in templates.df["name"].dropna()} if templates.exists else set())
        | _template_files(),
        "sequences": {normalize(n) for n in sequences.df["sequence"].dropna()} if sequences.exists else set(),
    }


def _template_files() -> set[str]:
    folder = data_dir("templates") / "email"
    return {normalize(p.stem) for p in folder.glob("*.*")} if folder.exists() else set()


def load_automations(ctx: Context) -> list[AutomationRule]:
    sheet = ctx.tables["Automations"]
    rules: list[AutomationRule] = []
    if not sheet.exists:
        return rules
    known = known_names(ctx)
    seen_keys: set[str] = set()
    for pos in range(len(sheet)):
        if not is_enabled(sheet, pos):
            continue
        problems = ctx.plan.problems
        target = target_table(sheet, pos, ctx.tables, problems)
        if target is None:
            continue
        schema = schema_for(target)
        row_problems: list = []

        def attempt(column: str, make):
            try:
                return make()
            except (TriggerError, WhenError, ActionError) as e:
                row_problems.append(error(sheet.ref(pos, column), str(e)))
                return None

        trigger = attempt(
            "trigger", lambda: parse_trigger(cell_text(sheet, pos, "trigger"), target.spec.name, schema)
        )
        when = attempt("when", lambda: compile_when(cell_text(sheet, pos, "when"), schema))
        action_text = cell_text(sheet, pos, "action")
        action = attempt(
            "action" if normalize(action_text) not in ACTIONS else "params",
            lambda: parse_action(action_text, cell_text(sheet, pos, "params"), schema, known),
        )
        delay = attempt("delay", lambda: delay_of(cell_text(sheet, pos, "delay")))
        if row_problems:  # every mistake of the row is reported; the rule does not run
            problems += row_problems
            continue
        name = rule_label(sheet, pos)
        key = f"{target.spec.name}:{normalize(name)}"
        if key in seen_keys:
            problems.append(
                warning(
                    sheet.ref(pos, "rule"),
                    f'another rule is also called "{name}"',
                    "give each rule its own name: sheetflow remembers what fired by name",
                )
            )
            key = f"{key}#{int(sheet.rows[pos])}"
        seen_keys.add(key)
        repeat = flag(action.params, "repeat")
        include = flag(action.params, "include_existing")
        if include and trigger.kind not in ("new", "entered", "score_reached"):
            problems.append(
                warning(
                    sheet.ref(pos, "params"),
                    f'include_existing has no effect on a "{trigger.text}" trigger',
                    "it applies to new, entered: and score_reached: rules"
                    + (
                        "; date:, idle: and every_run fire on the first run anyway"
                        if not trigger.edge
                        else ""
                    ),
                )
            )
        if (
            trigger.kind == "every_run"
            and action.kind == "send_email"
            and "last_emailed_at" not in when.columns
        ):
            if ctx.portuguese:
                text = (
                    f'"{name}" é every_run + send_email: enquanto a condição valer, mandaria o mesmo e-mail '
                    "ao registro a cada execução; o sheetflow o envia no máximo uma vez por dia por registro"
                    + (" (e repeat=true o envia a cada execução)" if repeat else "")
                )
                hint = (
                    "para enviar uma vez só, limite o quando com last_emailed_at (ex.: "
                    "days_since(last_emailed_at) > 30 or last_emailed_at is empty), ou use um gatilho idle: "
                    "ou date:"
                )
            else:
                text = (
                    f'"{name}" is every_run + send_email: while its condition holds it would email the same '
                    "record on every run; sheetflow sends it at most once a day per record"
                    + (" (and repeat=true sends it on every run)" if repeat else "")
                )
                hint = (
                    "to send it once, limit when with last_emailed_at (e.g. days_since(last_emailed_at) > 30 "
                    "or last_emailed_at is empty), or use an idle: or date: trigger"
                )
            problems.append(warning(sheet.ref(pos, "trigger"), text, hint))
        rules.append(
            AutomationRule(
                key,
                name,
                target.spec.name,
                trigger,
                when,
                action,
                delay,
                repeat,
                sheet.ref(pos, "rule"),
                include,
                sheet.ref(pos, "params"),
            )
        )
    return rules


def stage_automations(ctx: Context) -> None:
    rules = load_automations(ctx)
    for rule in rules:  # remember what edge triggers need to compare next time
        if rule.trigger.kind in ("changed", "entered", "score_reached"):
            ctx.tracked.setdefault(rule.table, set()).add(rule.trigger.column)
    if not rules and not ctx.section("pending"):
        return
    runner = _Runner(ctx, rules)
    runner.run_pending()
    runner.run_passes()
    runner.prune()


class _Runner:
    def __init__(self, ctx: Context, rules: list[AutomationRule]):
        self.ctx = ctx
        self.rules = rules
        self.by_key = {r.key: r for r in rules}
        self.fired = ctx.section("fired")
        self.pending = ctx.section("pending")
        self.today = ctx.plan.local_now.date()
        self.baseline = ctx.state.meta.get("last_run_id") or None
        self.tag = self.baseline or "start"
        last_at = ctx.state.meta.get("last_run_at") or ""
        try:
            self.since: dt.date | None = dt.datetime.fromisoformat(last_at).date() if last_at else None
        except ValueError:
            self.since = None
        catch_up = ctx.settings.number("catch_up_days")
        self.catch_up = int(catch_up) if catch_up is not None else 7
        self.rotting = _rotting_days(ctx)
        self._before: dict[tuple[str, int, str], object] = {}  # a cell's value before its latest write
        self.daily = _load_daily(ctx.section("daily"), self.today)
        # rules seen for the first time (the workbook's first run, or added since the last run) take the
        # records already there as their baseline; a version-1 state did not record rules: all count as seen
        seen = ctx.section("rules")
        legacy = ctx.state.has_history and ctx.state.version < 2
        self.fresh: set[str] = set()
        for rule in rules:
            if rule.key not in seen:
                seen[rule.key] = self.today.isoformat()
                if not legacy:
                    self.fresh.add(rule.key)
        for rule in rules:
            if rule.key in self.fresh and rule.trigger.edge and not rule.include_existing:
                self._say_baseline(rule)

    # ------------------------------------------------------------ what people are told
    def _say_baseline(self, rule: AutomationRule) -> None:
        table = self.ctx.tables[rule.table]
        n = (
            sum(1 for v in table.df["id"].to_numpy(dtype=object) if isinstance(v, str) and v.strip())
            if len(table)
            else 0
        )
        first = not self.ctx.state.has_history
        kind = rule.trigger.kind
        en_n, pt_n = count_of(n, rule.table, "en"), count_of(n, rule.table, "pt")
        en_noun, pt_noun = NOUNS["en"][rule.table][1], NOUNS["pt"][rule.table][1]
        en_what, pt_what = _what(rule)
        en_hint = pt_hint = ""
        if kind != "changed" and n:
            value = rule.trigger.text.partition(":")[2].strip()
            en_who, pt_who = {
                "new": ("them", "incluí-los"),
                "entered": (f"those already in {value}", f"incluir os que já estão em {value}"),
                "score_reached": (
                    f"those already at {value} or more",
                    f"incluir os que já têm {value} ou mais",
                ),
            }[kind]
            en_hint = f" — to include {en_who}, set include_existing=true in its params"
            pt_hint = f" — para {pt_who}, coloque include_existing=true nos parâmetros da regra"
        label = f'"{rule.name}" ({rule.trigger.text})'
        if first:
            en_head = (
                f"first run: {en_n} already here are the baseline" if n else f"first run: no {en_noun} yet"
            )
            pt_head = (
                f"primeira execução: {pt_n} que já estão aqui são a base"
                if n
                else f"primeira execução: ainda não há {pt_noun}"
            )
            self.ctx.notice(
                f"{en_head}; {label} fires for {en_what}{en_hint}",
                f"{pt_head}; {label} dispara para {pt_what}{pt_hint}",
            )
        else:
            en_base = f"the {en_n} already here are its baseline" if n else f"no {en_noun} yet"
            pt_base = f"os {pt_n} que já estão aqui são a base dela" if n else f"ainda não há {pt_noun}"
            self.ctx.notice(
                f"new rule {label}: {en_base}; it fires for {en_what}{en_hint}",
                f"regra nova {label}: {pt_base}; ela dispara para {pt_what}{pt_hint}",
            )
        self.ctx.baseline_said = True

    # ------------------------------------------------------------ delayed actions
    def run_pending(self) -> None:
        now = self.ctx.plan.local_now
        due: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for key, raw in list(self.pending.items()):
            item = json.loads(raw)
            rule = self.by_key.get(item["rule"])
            if rule is None:
                del self.pending[key]
                self.ctx.plan.problems.append(
                    note(
                        "Automations",
                        f"a delayed action of a removed or disabled "
                        f"rule was cancelled ({item['rule']}, record {item['id']})",
                    )
                )
                continue
            if dt.datetime.fromisoformat(item["due"]) <= now:
                due[rule.key].append((key, item["id"], item["occ"]))
        for rule_key, items in due.items():
            rule = self.by_key[rule_key]
            table = self.ctx.tables[rule.table]
            index = _id_index(table)
            mask = rule.when.mask(self.ctx.frame(rule.table)).to_numpy(dtype=bool)
            positions, occurrences = [], []
            for key, rid, occ in items:
                del self.pending[key]
                pos = index.get(rid)
                if pos is None or not mask[pos]:
                    self.ctx.plan.problems.append(
                        note(
                            rule.where,
                            f'delayed "{rule.name}" for {rid} cancelled: '
                            + ("the record is gone" if pos is None else "its condition no longer holds"),
                        )
                    )
                    continue
                positions.append(pos)
                occurrences.append(occ)
            if positions:
                self.execute(rule, table, positions, occurrences)

    # ------------------------------------------------------------ triggers
    def run_passes(self) -> None:
        written = self.fire(self.rules, tag=self.tag)
        involved: set[str] = set()
        for n in range(2, MAX_PASSES + 1):
            if not written:
                return
            cascading = [r for r in self.rules if r.trigger.kind in ("changed", "entered", "score_reached")]
            written = self._cascade(cascading, written, n)
            involved |= {key for cells in written.values() for _, _, key in cells}
        if written:
            names = sorted(self.by_key[key].name for key in involved)
            self.ctx.plan.problems.append(
                warning(
                    "Automations",
                    f"automations still changing records after "
                    f"{MAX_PASSES} passes; stopped. Rules that keep triggering each "
                    f"other: {', '.join(names)}",
                    "check their conditions",
                )
            )

    def _cascade(
        self, rules: list[AutomationRule], written: dict[str, list[tuple[int, str, str]]], n: int
    ) -> dict[str, list[tuple[int, str, str]]]:
        restricts: dict[str, set[int]] = {}
        befores: dict[str, dict[str, dict[str, object]]] = {}
        for rule in rules:
            cells = [
                (pos, col)
                for pos, col, by in written.get(rule.table, [])
                if col == rule.trigger.column and by != rule.key
            ]
            if not cells:
                continue
            ids = self.ctx.tables[rule.table].df["id"].to_numpy(dtype=object)
            before: dict[str, dict[str, object]] = {}
            for pos, col in cells:
                before.setdefault(str(ids[pos]).strip(), {})[col] = self._before.get((rule.table, pos, col))
            restricts[rule.key] = {pos for pos, _ in cells}
            befores[rule.key] = before
        chosen = [r for r in rules if r.key in restricts]
        if not chosen:
            return {}
        return self.fire(chosen, restricts=restricts, befores=befores, tag=f"{self.tag}/p{n}")

    def fire(
        self,
        rules: list[AutomationRule],
        *,
        restricts: dict[str, set[int]] | None = None,
        befores: dict[str, dict] | None = None,
        tag: str,
    ) -> dict[str, list[tuple[int, str, str]]]:
        # detect every rule against the same moment first, then act: a write by one rule in this pass
        # must not look like a user's change to a rule further down (cascades get their own pass)
        firings: list[tuple[AutomationRule, Table, list[int], list[str]]] = []
        for rule in rules:
            table = self.ctx.tables[rule.table]
            if not len(table):
                continue
            restrict = restricts.get(rule.key) if restricts is not None else None
            # a rule's first run: its edge trigger takes the records there as the baseline, or with
            # include_existing fires once for them (compared with nothing, as if each were new)
            existing = restricts is None and rule.key in self.fresh and rule.trigger.edge
            if existing and not rule.include_existing:
                continue
            previous = (
                befores[rule.key]
                if befores is not None
                else {}
                if existing
                else self.ctx.state.records.get(rule.table, {})
            )
            try:
                firing = detect(
                    rule.trigger,
                    rule.table,
                    table.df,
                    previous,
                    tag,
                    self.today,
                    gone=frozenset() if existing else self.ctx.state.gone.get(rule.table, frozenset()),
                    catch_up_days=self.catch_up,
                    rotting=self.rotting,
                    since=self.since if restricts is None else None,
                )
            except Exception as e:  # noqa: BLE001 - one rule must never stop the others
                self.ctx.plan.problems.append(error(rule.where, f'trigger of "{rule.name}" failed: {e}'))
                continue
            if not firing.positions and not firing.dropped:
                if existing:
                    self._say_existing(rule, 0)
                continue
            mask = rule.when.mask(self.ctx.frame(rule.table)).to_numpy(dtype=bool)
            ids = table.df["id"].to_numpy(dtype=object)
            self._say_dropped(rule, [str(ids[p]).strip() for p in firing.dropped if mask[p]])
            positions, occurrences = [], []
            today_ids = self.daily.setdefault(rule.key, set()) if rule.once_a_day else None
            for pos, occ in zip(firing.positions, firing.occurrences):
                if restrict is not None and pos not in restrict:
                    continue
                if not mask[pos]:
                    continue
                rid = str(ids[pos]).strip()
                if today_ids is not None:  # every_run + side effect: once per record per local day
                    if rid in today_ids:
                        continue
                    today_ids.add(rid)
                    occ = f"day@{self.today.isoformat()}"
                elif rule.repeat and not rule.trigger.edge and rule.trigger.kind != "every_run":
                    occ = f"{occ}#{self.tag}"
                key = f"{rule.key}|{rid}|{occ}"
                if not rule.trigger.edge and rule.trigger.kind != "every_run":
                    if key in self.fired:
                        continue
                    self.fired[key] = self.today.isoformat()
                if rule.delay:
                    due_at = self.ctx.plan.local_now + rule.delay
                    self.pending[key] = json.dumps(
                        {
                            "rule": rule.key,
                            "name": rule.name,
                            "id": str(ids[pos]).strip(),
                            "occ": occ,
                            "due": due_at.isoformat(timespec="minutes"),
                        }
                    )
                    continue
                positions.append(pos)
                occurrences.append(occ)
            if existing:
                self._say_existing(rule, len(positions))
            if positions:
                firings.append((rule, table, positions, occurrences))
        written: dict[str, list[tuple[int, str, str]]] = {}
        for rule, table, positions, occurrences in firings:
            for pos, col in self.execute(rule, table, positions, occurrences):
                written.setdefault(rule.table, []).append((pos, col, rule.key))
        return written

    # ------------------------------------------------------------ actions
    def execute(
        self, rule: AutomationRule, table: Table, positions: list[int], occurrences: list[str]
    ) -> list[tuple[int, str]]:
        ctx, kind, params = self.ctx, rule.action.kind, rule.action.params
        try:
            if kind == "set":
                snapshot = {
                    c: table.df[c].to_numpy(dtype=object).copy() for c, _ in rule.action.sets if c in table.df
                }
                cells = apply_set(ctx, table, rule.action, positions, rule.name)
                for pos, col in cells:
                    old = snapshot.get(col)
                    self._before[(rule.table, pos, col)] = _json(old[pos]) if old is not None else None
                return cells
            if kind == "send_email":
                request_email(
                    ctx,
                    rule.table,
                    positions,
                    params["template"],
                    rule.name,
                    occurrences,
                    to=params.get("to", "contact"),
                )
            elif kind == "notify":
                self._notify(rule, table, positions, occurrences, params.get("to"))
            elif kind == "create_task":
                self._tasks(rule, table, positions, params)
            elif kind == "enroll":
                enroll(ctx, table, positions, params["sequence"], rule.name)
            elif kind == "escalate":
                return self._escalate(rule, table, positions, occurrences, params["to"])
            elif kind == "assign":
                return [(p, "owner") for p in reassign(ctx, table, positions, params, rule.name)]
        except ActionError as e:
            ctx.plan.problems.append(error(rule.where, f'"{rule.name}": {e}'))
        return []

    def _tasks(
        self, rule: AutomationRule, table: Table, positions: list[int], params: dict[str, str]
    ) -> None:
        due = self.ctx.plan.local_now + delay_of(params.get("due") or "1d")
        texts = self._texts(rule, params["text"], table, positions)
        for pos, text in zip(positions, texts):
            fields = record_fields(table, pos)
            owner = self.ctx.owner_of(table, pos)
            self.ctx.task(owner, text, rule.name, table=rule.table, record_id=fields.get("id") or "", due=due)

    def _notify(
        self, rule: AutomationRule, table: Table, positions: list[int], occurrences: list[str], to: str | None
    ) -> None:
        request = request_notification
        texts = self._texts(rule, rule.action.params.get("text", ""), table, positions)
        subject = rule.action.params.get("subject") or rule.name
        subjects = self._texts(rule, subject, table, positions)
        for pos, occ, text, subject in zip(positions, occurrences, texts, subjects):
            fields = record_fields(table, pos)
            rep = to or self.ctx.owner_of(table, pos)
            if not rep:
                self.ctx.plan.problems.append(
                    warning(
                        rule.where,
                        f'"{rule.name}": record {fields.get("id")} has no '
                        "owner to notify and Settings has no fallback_owner",
                    )
                )
                continue
            if text.strip():
                line = f"{rule.table} {fields.get('id')}: {text}"
            else:  # an escalation without its own text says what, since when and what to do
                line = escalation_text(self.ctx, table, pos, rule.name)
            request(self.ctx, rep, subject, [line], rule.name, occ, record=f"{rule.table} {fields.get('id')}")

    def _texts(self, rule: AutomationRule, source: str, table: Table, positions: list[int]) -> list[str]:
        """The text for each record, rendered in the email sandbox. A text that cannot be rendered is an
        error at the rule's params cell, and the task/notification keeps the text as written (it is
        still made: nothing is lost, the owner sees what the rule meant)."""
        ctx = self.ctx
        out = render_texts(
            source, table, positions, locale=ctx.tables.locale, now=ctx.plan.local_now, run_id=ctx.plan.run_id
        )
        texts = []
        for item in out:
            if isinstance(item, Exception):
                problem = error(
                    rule.params_at or rule.where,
                    f'"{rule.name}": text cannot be rendered: {item}',
                    "the task or notification shows the text as written until it is fixed",
                )
                if problem not in ctx.plan.problems:
                    ctx.plan.problems.append(problem)
                texts.append(source)
            else:
                texts.append(item)
        return texts

    def _escalate(
        self, rule: AutomationRule, table: Table, positions: list[int], occurrences: list[str], to: str
    ) -> list[tuple[int, str]]:
        cells: list[tuple[int, str]] = []
        if table.spec.column("escalated_at") is not None:
            blank = skip_formulas(
                self.ctx,
                table,
                "escalated_at",
                [p for p in positions if to_cell(table.df["escalated_at"].iloc[p]) is None],
            )
            if blank:
                self.ctx.change(
                    table,
                    blank,
                    "escalated_at",
                    [self.ctx.plan.local_now] * len(blank),
                    [f'Automation "{rule.name}": escalate to {to}'] * len(blank),
                )
                cells = [(p, "escalated_at") for p in blank]
        self._notify(rule, table, positions, occurrences, to)
        return cells

    def _say_existing(self, rule: AutomationRule, n: int) -> None:
        en_n, pt_n = count_of(n, rule.table, "en"), count_of(n, rule.table, "pt")
        first = not self.ctx.state.has_history
        self.ctx.notice(
            ("first run: " if first else "new rule ")
            + f'"{rule.name}" ({rule.trigger.text}) has include_existing=true: it fires once for the '
            f"{en_n} already here that {'matches' if n == 1 else 'match'}, then for {_what(rule)[0]}",
            ("primeira execução: " if first else "regra nova ")
            + f'"{rule.name}" ({rule.trigger.text}) tem include_existing=true: dispara uma vez para '
            + (
                f"o {pt_n} que já está aqui e atende à condição"
                if n == 1
                else f"os {pt_n} que já estão aqui e atendem à condição"
            )
            + f", depois para {_what(rule)[1]}",
        )
        self.ctx.baseline_said = True

    def _say_dropped(self, rule: AutomationRule, ids: list[str]) -> None:
        if not ids:
            return
        shown = ", ".join(ids[:10]) + (f", +{len(ids) - 10}" if len(ids) > 10 else "")
        en_n, pt_n = count_of(len(ids), rule.table, "en"), count_of(len(ids), rule.table, "pt")
        self.ctx.notice(
            f'"{rule.name}" ({rule.trigger.text}) did not fire for {en_n} whose date passed while '
            f"sheetflow did not run, more than Settings catch_up_days = {self.catch_up} days ago: {shown}",
            f'"{rule.name}" ({rule.trigger.text}) não disparou para {pt_n} cuja data passou sem '
            f"execução do sheetflow há mais de catch_up_days = {self.catch_up} dias: {shown}",
        )

    def prune(self) -> None:
        horizon = (self.today - dt.timedelta(days=FIRED_KEEP_DAYS + self.catch_up)).isoformat()
        for key, day in list(self.fired.items()):
            if day < horizon:
                del self.fired[key]
        daily = self.ctx.section("daily")
        daily.clear()
        for key, ids in sorted(self.daily.items()):
            for n, chunk in enumerate(pack_ids(ids), start=1):
                daily[f"{key}|{n}"] = f"{self.today.isoformat()} {chunk}"


def _what(rule: AutomationRule) -> tuple[str, str]:
    """What an edge rule fires for after its baseline, in words (en, pt-BR)."""
    value = rule.trigger.text.partition(":")[2].strip()
    en_noun, pt_noun = NOUNS["en"][rule.table][1], NOUNS["pt"][rule.table][1]
    kind = rule.trigger.kind
    en = {
        "new": f"{en_noun} added from now on",
        "entered": f"{en_noun} that enter {value} from now on",
        "score_reached": f"{en_noun} whose score reaches {value} from now on",
        "changed": f"changes to {value} from now on",
    }[kind]
    pt = {
        "new": f"{pt_noun} incluídos a partir de agora",
        "entered": f"{pt_noun} que entrarem em {value} a partir de agora",
        "score_reached": f"{pt_noun} cuja pontuação chegar a {value} a partir de agora",
        "changed": f"mudanças em {value} a partir de agora",
    }[kind]
    return en, pt


def _load_daily(section: dict[str, str], today: dt.date) -> dict[str, set[str]]:
    """``daily`` state: rule key -> ids its every_run side effect reached today (older days are dropped)."""
    out: dict[str, set[str]] = {}
    for key, raw in section.items():
        day, _, chunk = raw.partition(" ")
        if day != today.isoformat():
            continue
        try:
            out.setdefault(key.rsplit("|", 1)[0], set()).update(unpack_ids([chunk]))
        except (ValueError, TypeError):
            continue
    return out


def _id_index(table: Table) -> dict[str, int]:
    return {
        v.strip(): i
        for i, v in enumerate(table.df["id"].to_numpy(dtype=object).tolist())
        if isinstance(v, str) and v.strip()
    }


def _json(value: object) -> object:
    value = to_cell(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _rotting_days(ctx: Context) -> dict[str, float]:
    return read_stages(ctx.tables).rotting_days


def stage_pipeline(ctx: Context) -> None:
    """Deals.stage_changed_at: when a deal's stage differs from what the last run saw (or a deal is new),
    record the moment, so ``idle:`` triggers and stalled-deal rules measure time in the current stage."""
    deals = ctx.tables["Deals"]
    if not len(deals) or not ctx.state.meta.get("last_run_id"):
        return
    seen = ctx.state.records.get("Deals", {})
    ids = deals.df["id"].to_numpy(dtype=object)
    stages = deals.df["stage"].to_numpy(dtype=object)
    positions = []
    for pos, (rid, stage) in enumerate(zip(ids, stages)):
        if not isinstance(rid, str) or not isinstance(stage, str) or not stage.strip():
            continue
        before = seen.get(rid.strip())
        if before is None and rid.strip() in ctx.state.gone.get("Deals", ()):
            continue  # a deal that was cut and pasted back: not new, its stage date stays
        old = (before or {}).get("stage")
        if before is None or not isinstance(old, str) or text_key(old) != text_key(stage):
            positions.append(pos)
    ctx.change(
        deals,
        positions,
        "stage_changed_at",
        [ctx.plan.local_now] * len(positions),
        ["Pipeline: stage changed" if ids[p].strip() in seen else "Pipeline: new deal" for p in positions],
    )

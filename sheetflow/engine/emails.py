"""Planning emails (pure, in the engine phase): keys, recipients, merge fields, rendering, suppression, window.

    from sheetflow.engine.emails import request_email
    request_email(ctx, "Contacts", [0, 5], "welcome", rule="Welcome", occurrences=["new", "new"])

Stages ask for emails with :func:`request_email` (one per record position) and for rep notifications
with :func:`request_notification` (collected into one digest email per rep per run). Each request is
rendered at once from the tables as that stage sees them and becomes a :class:`~sheetflow.engine.plan.PlannedEmail`
on the plan; :func:`finalize_emails` (called by the pipeline right after the engine) adds the
emails left ``planned`` by earlier runs, builds the digests, and decides which emails this run sends:
inside Settings ``send_window``, within ``daily_email_limit``, with a valid ``sender_email``.

Every email has a key, ``E`` + 20 hex digits of SHA-256 over (rule, table, record id, template, trigger
occurrence): the same request always has the same key, and a key already in the Emails sheet is never
planned again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sheetflow import contract
from sheetflow.coerce import Locale, to_cell
from sheetflow.compose.message import (
    Envelope,
    InvalidAddress,
    Recipient,
    UnsafeMessage,
    build_message,
    unsubscribe_header,
    validate_address,
)
from sheetflow.engine.plan import CellChange, Plan, PlannedEmail
from sheetflow.engine.suppression import Suppression
from sheetflow.names import normalize, text_key
from sheetflow.problems import Problem, error, warning
from sheetflow.rules.sandbox import shown
from sheetflow.rules.templates import Fields, RenderError, TemplateSet
from sheetflow.rules.window import Hours, holiday_dates, parse_window, sent_today
from sheetflow.tables.settings import Settings
from sheetflow.tables.table import Table, Tables

NOTIFICATION_TEMPLATE = "notification"
OPEN_STATUSES = ("planned", "sending")  # Emails rows a later run still has to settle
FINAL_FROM_JOURNAL = ("sent", "failed", "unconfirmed")


def email_key(rule: str, table: str, record_id: str, template: str, occurrence: str) -> str:
    raw = "\x1f".join(
        (normalize(rule), table, str(record_id).strip(), normalize(template), str(occurrence).strip())
    )
    return "E" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


def _as_field(value: object, column: str, locale: Locale, typed: str = "") -> object:
    """A cell as a merge field: None when empty; dates and numbers print as the cell shows them in the
    workbook's locale (``05/03/2026``, ``R$ {{ amount }}`` -> ``R$ 34,30`` in pt-BR); see
    :func:`.sandbox.shown`."""
    value = to_cell(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return shown(
        value,
        column,
        day_first=locale.day_first,
        decimal_comma=locale.decimal_comma,
        typed=typed,
        portuguese=locale.portuguese,
    )


def settings_fields(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {s.key: s.default for s in contract.SETTINGS if s.default}
    out.update({k: v for k, v in settings.values.items() if v != ""})
    return out


@dataclass
class _Digest:
    rep: str
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MailPlanner:
    """The email part of one plan (kept on ``plan.mail`` while stages run)."""

    tables: Tables
    settings: Settings
    plan: Plan
    templates: TemplateSet = field(init=False)
    suppression: Suppression = field(init=False)
    log_keys: dict[str, int] = field(init=False)
    by_key: dict[str, PlannedEmail] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # key -> why it waits (fixable by the user)
    digests: dict[str, _Digest] = field(default_factory=dict)
    _ids: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.templates = TemplateSet.load(self.tables)
        self.suppression = Suppression.from_tables(self.tables)
        log = self.tables["Emails"]
        self.log_keys = {}
        if len(log):
            for pos, key in enumerate(log.df["key"].to_numpy(dtype=object).tolist()):
                if isinstance(key, str) and key.strip():
                    self.log_keys.setdefault(key.strip(), pos)

    # ------------------------------------------------------------ lookups
    def known(self, key: str) -> bool:
        """The key is in the Emails sheet, in the log archive (its row was archived) or already in this plan:
        never planned again."""
        return key in self.log_keys or key in self.by_key or key in self.tables.archived.email_keys

    def position(self, table: str, record_id: str) -> int | None:
        if table not in self._ids:
            t = self.tables[table]
            ids = t.df["id"].to_numpy(dtype=object).tolist() if len(t) else []
            self._ids[table] = {}
            for pos, rid in enumerate(ids):
                if isinstance(rid, str) and rid.strip():
                    self._ids[table].setdefault(rid.strip(), pos)
        return self._ids[table].get(str(record_id).strip())

    def rep(self, name: object) -> dict[str, Any] | None:
        if not isinstance(name, str) or not name.strip():
            return None
        reps = self.tables["Reps"]
        if len(reps):
            for pos, rep_name in enumerate(reps.df["name"].to_numpy(dtype=object).tolist()):
                if isinstance(rep_name, str) and text_key(rep_name) == text_key(name):
                    return self.record_fields(reps, pos)
        return None

    def record_fields(self, table: Table, pos: int) -> dict[str, Any]:
        locale = self.tables.locale
        row = {}
        for col in table.df.columns:
            value = to_cell(table.df[col].iloc[pos])
            typed = table.flag_text(pos, col, value) if isinstance(value, bool) else ""
            row[col] = _as_field(value, col, locale, typed)
        for col, header in table.headers.items():
            alias = normalize(header)
            if alias and alias not in row:
                row[alias] = row.get(col)
        return row

    # ------------------------------------------------------------ composing one email
    def context(self, table: Table, pos: int) -> tuple[dict[str, Any], set[str], dict[str, Any] | None]:
        """Merge fields of a record: its columns, owner.*, contact.* (deals, tickets), settings."""
        fields = self.record_fields(table, pos)
        blank = {k for k, v in fields.items() if v is None}
        values = {k: v for k, v in fields.items() if v is not None}
        context: dict[str, Any] = settings_fields(self.settings)
        context.update(values)
        context["settings"] = Fields("settings", settings_fields(self.settings))
        context["record"] = Fields("record", values)
        owner_name = fields.get("owner")
        if isinstance(owner_name, str):
            rep = self.rep(owner_name) or {"name": owner_name}
            context["owner"] = Fields(
                "owner", {k: v for k, v in rep.items() if v is not None}, str(rep.get("name") or owner_name)
            )
        contact = None
        if table.spec.name == "Contacts":
            contact = values
        elif isinstance(fields.get("contact_id"), str):
            cpos = self.position("Contacts", fields["contact_id"])
            if cpos is not None:
                contact = {
                    k: v
                    for k, v in self.record_fields(self.tables["Contacts"], cpos).items()
                    if v is not None
                }
                contact["_position"] = cpos
        if contact is not None:
            context["contact"] = Fields(
                "contact",
                {k: v for k, v in contact.items() if not k.startswith("_")},
                " ".join(str(contact[k]) for k in ("first_name", "last_name") if contact.get(k)),
            )
        if table.spec.name in ("Deals", "Tickets"):
            context[table.spec.name[:-1].lower()] = Fields(table.spec.name[:-1].lower(), values)
        day_first = self.tables.locale.day_first
        context["today"] = self.plan.local_now.strftime("%d/%m/%Y" if day_first else "%m/%d/%Y")
        context["now"] = self.plan.local_now.strftime(("%d/%m/%Y" if day_first else "%m/%d/%Y") + " %H:%M")
        return context, blank, contact

    def compose(
        self, table: Table, pos: int, template: str, rule: str, occurrence: str, to: str, key: str
    ) -> PlannedEmail:
        """One email, rendered (see :meth:`compose_many`)."""
        return self.compose_many([(table, pos, template, rule, occurrence, to, key)])[0]

    def compose_many(self, requests: list[tuple[Table, int, str, str, str, str, str]]) -> list[PlannedEmail]:
        """Emails for (table, position, template, rule, occurrence, to, key) requests, each template's
        renders in one batch in the sandbox. Something the user can fix (a template error, an empty
        merge field, a missing owner) holds the email ``planned`` with the reason; it goes out on the
        first run after the fix. Only deliberate reasons (unsubscribed, invalid address) skip it."""
        emails: list[PlannedEmail] = []
        waiting: dict[str, list[tuple[PlannedEmail, dict[str, Any], set[str], Table, int]]] = {}
        for table, pos, template, rule, occurrence, to, key in requests:
            email, context, blank = self._address(table, pos, template, rule, occurrence, to, key)
            emails.append(email)
            if context is not None:
                waiting.setdefault(normalize(template), []).append((email, context, blank, table, pos))
        for group in waiting.values():
            results = self.templates.render_many(group[0][0].template, [g[1] for g in group])
            for (email, context, blank, table, pos), result in zip(group, results):
                if isinstance(result, RenderError):
                    self._render_failed(email, result, context, blank, table, pos)
                    continue
                email.subject, email.text, email.html = result
                self.screen(email)
        return emails

    def _address(
        self, table: Table, pos: int, template: str, rule: str, occurrence: str, to: str, key: str
    ) -> tuple[PlannedEmail, dict[str, Any] | None, set[str]]:
        """The email with its recipient, and the context to render it with (None: held already)."""
        rid = table.df["id"].iloc[pos]
        rid = rid.strip() if isinstance(rid, str) else ""
        email = PlannedEmail(
            key,
            table.spec.name,
            rid,
            rule,
            template,
            "",
            occurrence=occurrence,
            queued_at=self.plan.local_now,
        )
        context, blank, contact = self.context(table, pos)
        target = normalize(to or "contact")
        if target == "contact":
            if contact is None:
                cid = context.get("contact_id")
                self.hold(
                    email,
                    f'no contact: contact_id "{cid}" is not in Contacts'
                    if cid
                    else f"{table.spec.name} {rid} has no contact_id",
                )
                return email, None, blank
            email.to = str(contact.get("email") or "")
            email.to_name = " ".join(str(contact[k]) for k in ("first_name", "last_name") if contact.get(k))
            email.contact_id = str(contact.get("id") or "")
        elif target == "owner":
            owner = context.get("owner")
            if owner is None:
                self.hold(email, f"{table.spec.name} {rid} has no owner")
                return email, None, blank
            email.to, email.to_name = str(owner.get("email") or ""), str(owner.get("name") or "")
            if not email.to:
                self.hold(email, f'owner "{owner.get("name")}" has no email in Reps')
                return email, None, blank
        else:
            email.to = to.strip()
            if contact is not None and str(contact.get("email") or "").strip().lower() == email.to.lower():
                email.to_name = " ".join(
                    str(contact[k]) for k in ("first_name", "last_name") if contact.get(k)
                )
                email.contact_id = str(contact.get("id") or "")
        return email, context, blank

    def _render_failed(
        self,
        email: PlannedEmail,
        e: RenderError,
        context: dict[str, Any],
        blank: set[str],
        table: Table,
        pos: int,
    ) -> None:
        head, _, attr = e.field.partition(".")
        rid = email.record_id
        if e.kind == "field" and (
            (head in blank)
            or (head in ("owner", "contact") and head not in context)
            or (attr and head in context)
        ):
            shown = e.field
            detail = (
                f'merge field "{shown}" is empty for {table.spec.name} {rid} — fill it in, or write '
                f'{{{{ {shown} | default("...") }}}} in template "{email.template}"'
            )
            self.hold(email, detail)
            self.plan.problems.append(warning(table.ref(pos, "id"), f"email held: {detail}"))
            return
        self.hold(email, f"template error: {e}; fix the template and the next run sends it")
        problem = error(
            e.where or "Templates",
            f"{e} — {email.rule}: its emails wait (planned) until the template is fixed",
            "run sheetflow check BOOK to see every template problem",
        )
        if problem not in self.plan.problems:
            self.plan.problems.append(problem)

    def hold(self, email: PlannedEmail, reason: str) -> None:
        """Keep an email ``planned`` with the reason: something the user can fix stops it, for now."""
        email.status, email.due = "planned", False
        email.detail = f"held: {reason}"
        self.held[email.key] = email.detail

    def screen(self, email: PlannedEmail) -> None:
        """Address validity and suppression: sets skipped + the reason (final: nothing to fix).

        Duplicates are per email key (rule, record, template, occurrence): two deals of one contact
        that both reach a rule send two emails; the same key is never planned twice."""
        try:
            recipient = validate_address(email.to)
        except InvalidAddress as e:
            email.status, email.detail = "skipped", f"invalid address: {e}"
            return
        email.to = recipient.address
        reason = self.suppression.reason(recipient.address)
        if reason:
            email.status, email.detail = "skipped", reason

    def add(self, email: PlannedEmail) -> None:
        self.by_key[email.key] = email
        self.plan.emails.append(email)


def planner_for(
    ctx_or_plan: Any, tables: Tables | None = None, settings: Settings | None = None
) -> MailPlanner:
    plan: Plan = getattr(ctx_or_plan, "plan", ctx_or_plan)
    if plan.mail is None:
        plan.mail = MailPlanner(
            tables if tables is not None else ctx_or_plan.tables,
            settings if settings is not None else ctx_or_plan.settings,
            plan,
        )
    return plan.mail


# ---------------------------------------------------------------- the API for stages


def request_email(
    ctx: Any,
    table: str,
    positions: list[int],
    template: str,
    rule: str,
    occurrences: list[str],
    to: str = "contact",
) -> None:
    """Plan one email per record position (``ctx.tables[table].df`` row positions).

    ``occurrences`` names the trigger occurrence of each position (``"new"``,
    ``"entered:Proposal@2026-11-23"``); ``to`` is ``"contact"`` (for deals and tickets: the contact of
    ``contact_id``), ``"owner"`` or an address. A request whose key is already in the Emails sheet (or
    already made in this run) is ignored, so stages can ask again safely.
    """
    planner = planner_for(ctx)
    spec = contract.sheet_spec(table)
    if spec is None or spec.name not in contract.RECORD_SHEETS:
        raise ValueError(f"request_email: unknown table {table!r}")
    t = ctx.tables[spec.name]
    positions = list(positions)
    occurrences = list(occurrences)
    if len(occurrences) != len(positions):
        raise ValueError("request_email: one occurrence per position")
    ids = t.df["id"].to_numpy(dtype=object)
    requests = []
    keys: set[str] = set()
    for pos, occurrence in zip(positions, occurrences):
        rid = ids[pos] if isinstance(ids[pos], str) else ""
        key = email_key(rule, spec.name, rid, template, occurrence)
        if planner.known(key) or key in keys:
            continue
        keys.add(key)
        requests.append((t, int(pos), template, rule, occurrence, to, key))
    for email in planner.compose_many(requests):
        planner.add(email)


def request_notification(
    ctx: Any, rep_name: str, subject: str, lines: list[str], rule: str, occurrence: str, record: str = ""
) -> None:
    """Tell a rep something by email; all of a rep's notifications of one run go out as one email.

    An item is identified by (rule, record, occurrence): ``record`` names what it is about
    (``"Contacts C-1"``; the assignment digest names all its records). Every record's item reaches the
    digest; only a repeat of the same rule, record and occurrence in one run is dropped. The digest's
    email key is made from all its items' identities, so the same digest is never sent twice and a
    digest with one more item is a different email (issue 20)."""
    planner = planner_for(ctx)
    digest = planner.digests.setdefault(text_key(rep_name), _Digest(rep_name.strip()))
    if any(
        i["rule"] == rule and i["occurrence"] == occurrence and i.get("record", "") == record
        for i in digest.items
    ):
        return
    digest.items.append(
        {
            "subject": subject,
            "lines": list(lines),
            "rule": rule,
            "record": record,
            "occurrence": occurrence,
            "text": "\n".join(lines),
        }
    )


def item_identity(item: Mapping[str, Any]) -> str:
    """What makes a digest item itself: rule, record and trigger occurrence (part of the digest's key)."""
    record = str(item.get("record") or "")
    return f"{normalize(item['rule'])}@{record + '@' if record else ''}{item['occurrence']}"


def digest_items(items: list[Mapping[str, Any]]) -> list[Fields]:
    """The items as a template sees them: ``{{ item.subject }}``, ``item.lines``, ``item.text``,
    ``item.rule``, ``item.record``; ``{{ item }}`` alone prints its text (its lines), not a mapping."""
    return [Fields("item", dict(i), str(i.get("text") or "\n".join(i.get("lines") or []))) for i in items]


# ---------------------------------------------------------------- after the engine


@dataclass
class JournalFacts:
    """What the journal knows about one key (see :mod:`.journal`)."""

    status: str
    sent_at: dt.datetime | None = None
    message_id: str = ""
    detail: str = ""
    message: bytes = b""
    content: dict[str, Any] = field(default_factory=dict)  # a held digest: to, to_name, subject, text, html


def finalize_emails(
    plan: Plan, tables: Tables, settings: Settings, journal: Mapping[str, JournalFacts] | None = None
) -> MailPlanner:
    """Digests, leftovers of earlier runs, journal facts, send window, daily limit and the messages.

    Pure: everything comes from the arguments. ``journal`` maps keys to what the sidecar journal knows
    (the pipeline reads it); without it, the Emails sheet is all there is.
    """
    planner = planner_for(plan, tables, settings)
    journal = journal or {}
    _digests(planner)
    _journal_facts(planner, journal)
    _leftovers(planner, journal)
    _decide(planner)
    return planner


def _digests(planner: MailPlanner) -> None:
    plan = planner.plan
    for digest in planner.digests.values():
        occ = "|".join(sorted(item_identity(i) for i in digest.items))
        key = email_key("notify", "Reps", digest.rep, NOTIFICATION_TEMPLATE, occ)
        if planner.known(key):
            continue
        rules = ", ".join(dict.fromkeys(i["rule"] for i in digest.items))
        email = PlannedEmail(
            key,
            "Reps",
            digest.rep,
            rules,
            NOTIFICATION_TEMPLATE,
            "",
            occurrence=occ,
            kind="notification",
            queued_at=plan.local_now,
        )
        email.content = {"rep": digest.rep, "items": digest.items, "occurrence": occ}
        planner.add(email)
        render_digest(planner, email)


def render_digest(planner: MailPlanner, email: PlannedEmail) -> None:
    """Address and render a notification digest from ``email.content`` (rep name + items).

    The items are kept (journal) while the digest waits, so a digest held by a fixable problem (no
    sender_email, the rep has no email, a broken notification template) is rendered again from them on
    the first run after the fix — with the template and the rep's data of that run."""
    plan = planner.plan
    name, items = email.content["rep"], email.content["items"]
    rep = planner.rep(name)
    if rep is None or not rep.get("email"):
        reason = f'rep "{name}" ' + ("is not in Reps" if rep is None else "has no email in Reps")
        plan.problems.append(
            warning("Reps", f"notification held: {reason}", "add the rep's email; the next run sends it")
        )
        planner.hold(email, reason)
        return
    email.to, email.to_name = str(rep["email"]), str(rep.get("name") or name)
    context: dict[str, Any] = settings_fields(planner.settings)
    rep_fields = Fields("rep", {k: v for k, v in rep.items() if v is not None}, str(rep.get("name") or ""))
    context.update(
        rep=rep_fields,
        owner=rep_fields,
        items=digest_items(items),
        count=len(items),
        settings=Fields("settings", settings_fields(planner.settings)),
    )
    try:
        email.subject, email.text, email.html = planner.templates.render(NOTIFICATION_TEMPLATE, context)
    except RenderError as e:
        problem = error(
            e.where or "Templates",
            f"{e} — notifications wait (planned) until the template is fixed",
            "run sheetflow check BOOK to see every template problem",
        )
        if problem not in plan.problems:
            plan.problems.append(problem)
        planner.hold(email, f"template error: {e}")
        return
    planner.screen(email)


def _journal_facts(planner: MailPlanner, journal: Mapping[str, JournalFacts]) -> None:
    """A key the journal already settled (the workbook was restored from a backup, or rows deleted)."""
    for email in planner.plan.emails:
        facts = journal.get(email.key)
        if facts is not None and facts.status in FINAL_FROM_JOURNAL + ("claimed", "sending"):
            _settle(planner, email, facts)


def _settle(planner: MailPlanner, email: PlannedEmail, facts: JournalFacts) -> None:
    status = facts.status if facts.status in FINAL_FROM_JOURNAL else "unconfirmed"
    email.status, email.due = status, False
    email.detail = facts.detail or email.detail
    email.sent_at = facts.sent_at
    email.message_id = facts.message_id or email.message_id
    if status in ("sent", "unconfirmed") and email.contact_id and facts.sent_at is not None:
        _last_emailed(planner, email.contact_id, facts.sent_at, email)


def _last_emailed(planner: MailPlanner, contact_id: str, sent_at: dt.datetime, email: PlannedEmail) -> None:
    contacts = planner.tables["Contacts"]
    pos = planner.position("Contacts", contact_id)
    if pos is None:
        return
    current = to_cell(contacts.df["last_emailed_at"].iloc[pos]) if "last_emailed_at" in contacts.df else None
    if isinstance(current, dt.datetime) and current >= sent_at:
        return
    for change in planner.plan.changes:
        if change.table == "Contacts" and change.position == pos and change.column == "last_emailed_at":
            if change.new is None or change.new < sent_at:
                change.new = sent_at
            return
    planner.plan.changes.append(
        CellChange(
            "Contacts",
            pos,
            contact_id,
            "last_emailed_at",
            current,
            sent_at,
            f"Email: {email.rule} ({email.template})",
            contacts.ref(pos, "last_emailed_at"),
        )
    )


def _leftovers(planner: MailPlanner, journal: Mapping[str, JournalFacts]) -> None:
    """Emails rows still ``planned`` (or ``sending``: a run stopped mid-send) from earlier runs."""
    log = planner.tables["Emails"]
    if not len(log):
        return
    df = log.df
    statuses = df["status"].to_numpy(dtype=object)
    rebuild: list[tuple[tuple[Table, int, str, str, str, str, str], int, Any]] = []
    for key, pos in planner.log_keys.items():
        status = statuses[pos].strip().lower() if isinstance(statuses[pos], str) else ""
        if status not in OPEN_STATUSES or key in planner.by_key:
            continue
        text = lambda col: str(df[col].iloc[pos]).strip() if isinstance(df[col].iloc[pos], str) else ""  # noqa: E731
        table, rid, template, rule, to = (
            text("table"),
            text("record_id"),
            text("template"),
            text("rule"),
            text("to"),
        )
        facts = journal.get(key)
        spec = contract.sheet_spec(table) if table else None
        old = PlannedEmail(
            key,
            spec.name if spec else table,
            rid,
            rule,
            template,
            to,
            subject=text("subject"),
            status=status,
            detail=text("detail"),
            message_id=text("message_id"),
            log_position=pos,
            queued_at=to_cell(df["queued_at"].iloc[pos]),
        )
        if spec is not None and spec.name in contract.RECORD_SHEETS:
            rpos = planner.position(spec.name, rid)
            if rpos is not None:
                _, _, contact = planner.context(planner.tables[spec.name], rpos)
                if contact is not None and str(contact.get("email") or "").strip().lower() == to.lower():
                    old.contact_id = str(contact.get("id") or "")
        if facts is not None and facts.status in FINAL_FROM_JOURNAL + ("claimed", "sending"):
            planner.add(old)
            _settle(planner, old, facts)
            continue
        if status == "sending" and facts is None:
            planner.add(old)
            old.status = "unconfirmed"
            old.detail = (
                "sheetflow stopped while sending and its journal (.sheetflow/) does not know this email: "
                "it may or may not have gone out; check before sending it again"
            )
            continue
        # never attempted: plan it again from today's data (an unsubscribe since then counts)
        if spec is None or spec.name not in contract.RECORD_SHEETS:
            if facts is not None and facts.message:  # a notification digest: send what was rendered
                old.message, old.status, old.kind = facts.message, "planned", "notification"
                old.to = to
                planner.add(old)
                planner.screen(old)
            elif facts is not None and facts.content.get("items"):  # a digest held before it was built
                old.kind, old.status, old.content = "notification", "planned", facts.content
                old.occurrence = facts.content.get("occurrence", "")
                planner.add(old)
                render_digest(planner, old)
            else:
                old.status, old.detail = "skipped", f'cannot rebuild this email (table "{table}")'
                planner.add(old)
            continue
        rpos = planner.position(spec.name, rid)
        if rpos is None:
            old.status, old.detail = (
                "skipped",
                f"record {rid} is no longer in {planner.tables[spec.name].sheet}",
            )
            planner.add(old)
            continue
        rebuild.append(((planner.tables[spec.name], rpos, template, rule, "", to, key), pos, old.queued_at))
    emails = planner.compose_many([r[0] for r in rebuild])
    for email, (_, pos, queued_at) in zip(emails, rebuild):
        email.log_position, email.queued_at = pos, queued_at
        planner.add(email)


@dataclass
class MailSettings:
    """The mail settings as a run uses them; each bad value was reported at its Settings cell."""

    sender: Recipient | None  # None: empty or invalid (emails wait)
    sender_name: str
    reply_to: Recipient | None
    window: Hours | None  # None: unreadable (emails wait)
    limit: int  # emails per day; 0 when the value cannot be read (when in doubt, do not send)
    limit_ok: bool
    unsubscribe: str  # the List-Unsubscribe template; "" = the default mailto:


def mail_settings(settings: Settings, tables: Tables) -> MailSettings:
    """Check and read sender_email, reply_to, send_window, daily_email_limit and list_unsubscribe.

    The one validation ``check``, ``run --dry-run``, ``run`` and ``send`` share: :func:`plan_run` calls it
    whatever the run plans, :func:`_decide` uses its result. Problems go to ``settings.problems`` (once,
    at the value's cell). An empty sender_email is reported by :func:`_decide` when emails wait for it."""

    def report(problem: Any) -> None:
        if problem not in settings.problems:
            settings.problems.append(problem)

    def cell(key: str) -> str:
        return settings.cells.get(key, "Settings")

    sender = None
    sender_text = settings.text("sender_email")
    if sender_text:
        try:
            sender = validate_address(sender_text)
        except InvalidAddress as e:
            report(
                error(
                    cell("sender_email"),
                    f"sender_email: {e}",
                    "enter the one address emails come from; emails wait (planned) until it is fixed",
                )
            )
    reply_to = None
    if settings.text("reply_to"):
        try:
            reply_to = validate_address(settings.text("reply_to"))
        except InvalidAddress as e:
            report(warning(cell("reply_to"), f"reply_to: {e}", "emails go out without Reply-To"))
    try:
        window = parse_window(settings.text("send_window")).with_holidays(holiday_dates(tables))
    except ValueError as e:
        report(
            error(
                cell("send_window"),
                f"send_window: {e}",
                "write it like Mon-Fri 09:00-18:00; emails wait until it is fixed",
            )
        )
        window = None
    limit = settings.number("daily_email_limit")
    limit_ok = "daily_email_limit" not in settings.bad
    unsubscribe = str(settings.values.get("list_unsubscribe", "") or "")
    if unsubscribe.strip():
        probe = Recipient("someone@example.com", ascii=True)
        controls = any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in unsubscribe)
        items = [i.strip().strip("<>") for i in unsubscribe.split(",") if i.strip()]
        bad = [
            i
            for i in items
            if not i.lower().startswith(("mailto:", "https:", "http:"))
            or any(c in i for c in " <>")
            or not unsubscribe_header(i, probe)
        ]
        if controls or bad or "=?" in unsubscribe or "?=" in unsubscribe:
            report(
                warning(
                    cell("list_unsubscribe"),
                    "list_unsubscribe: "
                    + (
                        "holds a line break or control character"
                        if controls
                        else f'"{bad[0] if bad else unsubscribe}" is not a mailto: or https: address'
                    ),
                    "write e.g. https://example.com/unsubscribe?email={email}; until then emails carry the "
                    "default List-Unsubscribe (mailto: reply_to or sender_email)",
                )
            )
            unsubscribe = ""
    return MailSettings(
        sender,
        settings.text("sender_name"),
        reply_to,
        window,
        int(limit) if limit is not None else 10**9,
        limit_ok,
        unsubscribe,
    )


def check_sender(settings: Settings) -> Problem | None:
    """The error an empty sender_email is when emails wait (an invalid one is reported by mail_settings at
    its cell). ``run`` reports it from :func:`_decide`, ``check`` when its plan has emails waiting, with the
    same text, so check and run agree (commands/run.py)."""
    if settings.text("sender_email"):
        return None
    where = settings.cells.get("sender_email", "Settings")
    if settings.locale.portuguese:
        return error(
            where,
            "email_remetente (sender_email) está vazio — os e-mails esperam",
            "informe o endereço de onde saem os e-mails (Configurações, email_remetente)",
        )
    return error(where, "sender_email is empty", "enter the address emails come from (Settings sender_email)")


def _decide(planner: MailPlanner) -> None:
    """Which planned emails this run sends: window, daily limit, sender; then build their messages."""
    plan, settings = planner.plan, planner.settings
    if not any(e.status in ("planned", "sending") and e.key not in planner.held for e in plan.emails):
        return
    mail = mail_settings(settings, planner.tables)
    plan.problems += [p for p in settings.problems if p not in plan.problems]
    sender, window = mail.sender, mail.window
    if sender is None and not settings.text("sender_email"):
        waiting = [
            e_ for e_ in plan.emails if e_.status in ("planned", "sending") and e_.key not in planner.held
        ]
        if waiting:
            plan.problems.append(check_sender(settings) or error("Settings", "sender_email is empty"))
    limit = mail.limit
    remaining = limit - sent_today(planner.tables, plan.local_now)
    in_window = window is not None and window.contains(plan.local_now)
    order = sorted(
        (e for e in plan.emails if e.status in ("planned", "sending") and e.key not in planner.held),
        key=lambda e: (
            e.kind != "notification",
            e.log_position is None,
            e.log_position if e.log_position is not None else 0,
        ),
    )
    pt = settings.locale.portuguese
    for email in order:
        email.status, email.due = "planned", False
        if sender is None:
            email.detail = "waiting for Settings sender_email"
        elif window is None:
            email.detail = "waiting for a valid Settings send_window"
        elif not in_window and email.kind != "notification":
            # in the workbook's language: run prints it and the Emails sheet keeps it (issue 10)
            if plan.local_now.date() in window.holidays:
                email.detail = (
                    f"{plan.local_now:%d/%m/%Y} é feriado (aba Feriados); "
                    "uma execução dentro da janela de envio envia este e-mail"
                    if pt
                    else f"{plan.local_now:%Y-%m-%d} is a holiday (Holidays sheet); "
                    "a run inside the send window sends this email"
                )
            elif pt:
                email.detail = (
                    f"fora da janela de envio ({window.text}); uma execução dentro dela envia este e-mail"
                )
            else:
                email.detail = f"outside the send window ({window.text}); a run inside it sends this email"
        elif not mail.limit_ok:
            email.detail = "waiting for a valid Settings daily_email_limit"
        elif remaining <= 0:
            email.detail = (
                f"limite diário de {limit} e-mails atingido; uma execução posterior envia este e-mail"
                if pt
                else f"daily limit of {limit} emails reached; a later run sends this email"
            )
        else:
            email.status, email.due, email.detail = "sending", True, ""
            remaining -= 1
    if sender is None:
        return
    sender_name, reply_to, unsubscribe = mail.sender_name, mail.reply_to, mail.unsubscribe
    default_unsub = f"mailto:{(reply_to or sender).address}?subject=unsubscribe"
    for email in order:
        if email.message and email.kind == "notification" and email.log_position is not None:
            continue  # rebuilt from the journal
        try:
            to = validate_address(email.to)
        except InvalidAddress:
            continue
        unsub = (
            ""
            if email.kind == "notification"
            else unsubscribe_header(unsubscribe, to) or unsubscribe_header(default_unsub, to)
        )
        envelope = Envelope(sender, sender_name, to, email.to_name, reply_to, unsub)
        try:
            email.message, email.message_id = build_message(
                envelope, email.subject, email.text, email.html, key=email.key, date=plan.now
            )
        except UnsafeMessage as e:  # never sent; the data that made it can be fixed, so it waits
            email.status, email.due, email.message = "planned", False, b""
            email.detail = f"held: the message's header failed the safety check ({e})"
            plan.problems.append(
                error(
                    "Emails",
                    f"email {email.key} to {email.to} not sent: its header failed the safety check ({e})",
                    "look for unusual characters in the names and subject of this email",
                )
            )


def due(plan: Plan) -> list[PlannedEmail]:
    return [e for e in plan.emails if e.due]

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
  ``weighted`` (shares proportional to weight, see :class:`.methods._Shares`), ``least_loaded`` (fewest open records
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

Modules, in the order a run uses them: :mod:`.reps` (the roster and open loads), :mod:`.rules` (the
Assignment sheet), :mod:`.accounts` (sticky_account), :mod:`.methods` (rotations, weighted shares),
:mod:`.assigner` (the choice per record), :mod:`.stage` (the stage, the Reps summary, the ``assign`` action).
Open and closed records are :mod:`sheetflow.tables.records`.
"""

from __future__ import annotations

from sheetflow.engine.assignment.accounts import company_key, domain_key
from sheetflow.engine.assignment.assigner import AUTOMATION_KEY, RULE_TEXT, SECTION, Assigner, Choice
from sheetflow.engine.assignment.methods import Rotation, start_pointer
from sheetflow.engine.assignment.reps import load_roster
from sheetflow.engine.assignment.rules import check_assignment, load_rules, rule_key, rule_keys
from sheetflow.engine.assignment.stage import reassign, stage_assignment, summarize
from sheetflow.tables.records import open_mask

__all__ = [
    "AUTOMATION_KEY",
    "Assigner",
    "Choice",
    "RULE_TEXT",
    "Rotation",
    "SECTION",
    "check_assignment",
    "company_key",
    "domain_key",
    "load_roster",
    "load_rules",
    "open_mask",
    "reassign",
    "rule_key",
    "rule_keys",
    "stage_assignment",
    "start_pointer",
    "summarize",
]

"""Who must not get an email, and why: the reasons end up in the Emails sheet as ``skipped``.

    rules = Suppression.from_tables(tables)
    reason = rules.reason("ana@acme.com")     # None, or "unsubscribed (Contacts!N4)"

- consent: any contact whose ``unsubscribed``, ``do_not_contact`` or ``bounced`` cell holds anything but a
  clear "no" (TRUE, but also ``opt-out``, a date, a number: see coerce.parse_consent) blocks its address,
  whichever record or rule the email comes from. When in doubt, no email.
- an address that is not a valid single address (email-validator, no DNS lookups) -> skipped.
- an address that bounced or failed permanently before (an Emails row with status ``failed`` or
  ``bounced``; a team can type ``bounced`` itself when a bounce comes back; rows moved to the log archive
  count too, see :mod:`sheetflow.tables.archive`) -> skipped.
- the same recipient twice in one run for the same template -> the second one is skipped (the planner
  checks this, see :mod:`.planner`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sheetflow.contract import CONSENT_COLUMNS
from sheetflow.tables.table import Tables

BLOCKING_STATUSES = ("failed", "bounced")


@dataclass
class Suppression:
    unsubscribed: dict[str, str] = field(
        default_factory=dict
    )  # address (lower) -> "unsubscribed (Contacts!N4)"
    failed: dict[str, str] = field(default_factory=dict)  # address (lower) -> "Emails!I7: 550 ..."

    @classmethod
    def from_tables(cls, tables: Tables) -> Suppression:
        rules = cls()
        contacts = tables["Contacts"]
        if len(contacts) and "email" in contacts.df:
            emails = contacts.df["email"].to_numpy(dtype=object)
            for column in CONSENT_COLUMNS:
                if column not in contacts.df or column not in contacts.col_index:
                    continue
                flags = contacts.df[column].fillna(False).to_numpy(dtype=bool)
                label = column.replace("_", " ")
                for pos in flags.nonzero()[0].tolist():
                    if isinstance(emails[pos], str) and emails[pos].strip():
                        rules.unsubscribed.setdefault(
                            emails[pos].strip().lower(), f"{label} ({contacts.consent_ref(pos, column)})"
                        )
        log = tables["Emails"]
        if len(log):
            statuses = log.df["status"].to_numpy(dtype=object)
            tos = log.df["to"].to_numpy(dtype=object)
            details = log.df["detail"].to_numpy(dtype=object)
            for pos, (status, to) in enumerate(zip(statuses, tos)):
                if (
                    isinstance(status, str)
                    and status.strip().lower() in BLOCKING_STATUSES
                    and isinstance(to, str)
                ):
                    detail = details[pos] if isinstance(details[pos], str) else status
                    rules.failed.setdefault(to.strip().lower(), f"{log.ref(pos, 'status')}: {detail[:120]}")
        for address, why in tables.archived.blocked.items():
            rules.failed.setdefault(address, why)
        return rules

    def reason(self, address: str) -> str | None:
        key = address.strip().lower()
        if key in self.unsubscribed:
            return self.unsubscribed[key]
        if key in self.failed:
            return f"an earlier email to this address failed permanently ({self.failed[key]})"
        return None

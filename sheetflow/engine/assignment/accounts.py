"""``sticky_account``: the owner of a record with the same company or business e-mail domain."""

from __future__ import annotations

from collections.abc import Sequence

from sheetflow.names import company_key as _company_key
from sheetflow.tables.table import Table, Tables

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

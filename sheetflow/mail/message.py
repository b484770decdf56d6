"""One email as bytes: ``email.message.EmailMessage`` with headers nobody's data can break.

    data = build_message(Envelope(...), subject, text, html, key=..., date=...)

- From is ``sender_name <sender_email>`` (Settings), Reply-To from Settings ``reply_to``, To is the one
  validated recipient, Subject is UTF-8 (RFC 2047 encoded as needed), Date is the run's clock, and the
  Message-ID is derived from the email's key, so the same email always has the same Message-ID.
- ``List-Unsubscribe`` comes from Settings ``list_unsubscribe`` (a ``mailto:`` or ``https:`` address,
  ``{email}`` is replaced by the recipient) or, when unset, is ``mailto:REPLY-TO?subject=unsubscribe``
  for emails to contacts (not for notifications to reps).
- Every header value goes through :func:`~.render.one_line` and every address through
  :func:`validate_address`: a CR or LF in a name, subject or address can never start a new header or add
  a recipient. The SMTP envelope is given explicitly and never read from the headers.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from urllib.parse import quote

from email_validator import EmailNotValidError, validate_email

from .render import one_line


class InvalidAddress(ValueError):
    pass


@dataclass(frozen=True)
class Recipient:
    address: str  # normalized, validated
    name: str = ""
    ascii: bool = True  # False: needs SMTPUTF8


def validate_address(text: object) -> Recipient:
    """A single, syntactically valid address (no DNS lookups); InvalidAddress says why not."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidAddress("no email address")
    raw = text.strip()
    if any(c in raw for c in '\r\n,;<>"') or any(ord(c) < 32 for c in raw):
        raise InvalidAddress(f'"{one_line(raw, 80)}" is not a single email address')
    try:
        info = validate_email(raw, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as e:
        raise InvalidAddress(f'"{raw}" is not a valid email address ({e})') from None
    if info.ascii_email:
        return Recipient(info.ascii_email, ascii=True)
    return Recipient(info.normalized, ascii=False)


def _address(name: str, recipient: Recipient) -> Address:
    local, _, domain = recipient.address.rpartition("@")
    return Address(display_name=one_line(name, 120), username=local, domain=domain)


@dataclass(frozen=True)
class Envelope:
    sender: Recipient
    sender_name: str
    to: Recipient
    to_name: str = ""
    reply_to: Recipient | None = None
    list_unsubscribe: str = ""


def message_id(key: str, sender: Recipient) -> str:
    domain = sender.address.rpartition("@")[2] or "sheetflow.invalid"
    return f"<{key}@{domain}>"


def unsubscribe_header(template: str, recipient: Recipient) -> str:
    """``<mailto:...>`` / ``<https://...>`` with ``{email}`` filled in (URL-quoted); "" when not usable."""
    text = one_line(template, 500)
    if not text:
        return ""
    parts = []
    for item in text.split(","):
        item = item.strip().strip("<>").replace("{email}", quote(recipient.address, safe="@"))
        if item.lower().startswith(("mailto:", "https:", "http:")) and not any(c in item for c in " <>"):
            parts.append(f"<{item}>")
    return ", ".join(parts)


def _cte(body: str, ascii_only: bool) -> str:
    """7-bit safe bodies for every server (quoted-printable when not plain ASCII), 8bit with SMTPUTF8."""
    if body.isascii() and all(len(line) <= 900 for line in body.splitlines()):
        return "7bit"
    return "quoted-printable" if ascii_only else "8bit"


def build_message(
    envelope: Envelope, subject: str, text: str, html: str | None, *, key: str, date: dt.datetime
) -> tuple[bytes, str]:
    """The whole message as bytes (CRLF line ends) and its Message-ID."""
    ascii_only = envelope.sender.ascii and envelope.to.ascii
    policy = email.policy.SMTP if ascii_only else email.policy.SMTPUTF8
    msg = EmailMessage(policy=policy)
    msg["From"] = _address(envelope.sender_name, envelope.sender)
    msg["To"] = _address(envelope.to_name, envelope.to)
    if envelope.reply_to is not None and envelope.reply_to.address != envelope.sender.address:
        msg["Reply-To"] = _address("", envelope.reply_to)
    msg["Subject"] = one_line(subject)
    msg["Date"] = email.utils.format_datetime(date if date.tzinfo else date.replace(tzinfo=dt.timezone.utc))
    mid = message_id(key, envelope.sender)
    msg["Message-ID"] = mid
    if envelope.list_unsubscribe:
        msg["List-Unsubscribe"] = envelope.list_unsubscribe
    msg["X-Sheetflow-Key"] = key
    text = text if text.endswith("\n") else text + "\n"
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text, ascii_only))
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte=_cte(html, ascii_only))
    return msg.as_bytes(policy=policy), mid

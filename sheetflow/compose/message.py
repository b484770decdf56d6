"""One email as bytes: ``email.message.EmailMessage`` with headers nobody's data can break.

    data = build_message(Envelope(...), subject, text, html, key=..., date=...)

- From is ``sender_name <sender_email>`` (Settings), Reply-To from Settings ``reply_to``, To is the one
  validated recipient, Subject is UTF-8 (RFC 2047 encoded as needed), Date is the run's clock, and the
  Message-ID is derived from the email's key, so the same email always has the same Message-ID.
- ``List-Unsubscribe`` comes from Settings ``list_unsubscribe`` (a ``mailto:`` or ``https:`` address,
  ``{email}`` is replaced by the recipient) or, when unset, is ``mailto:REPLY-TO?subject=unsubscribe``
  for emails to contacts (not for notifications to reps).
- Every header value goes through :func:`~.headers.header_text` (no control character, no RFC 2047
  encoded word) and every address through :func:`validate_address`; the finished message's header block
  is then verified (:func:`~.headers.verify`): exactly the fields set here, one each, decoding to what
  was meant, or :class:`~.headers.UnsafeMessage` and the email is not sent. The SMTP envelope is given
  explicitly and never read from the headers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import quote

from email_validator import EmailNotValidError, validate_email

from sheetflow.compose.headers import HeaderFields, UnsafeMessage, compose, header_text, url_text

__all__ = ["UnsafeMessage", "build_message", "validate_address", "unsubscribe_header", "header_text"]


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
    if any(c in raw for c in '\r\n,;<>"') or any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in raw):
        raise InvalidAddress(f'"{header_text(raw, 80)}" is not a single email address')
    if "=?" in raw or "?=" in raw:  # an RFC 2047 encoded word has no business in an address
        raise InvalidAddress(f'"{header_text(raw, 80)}" looks like an encoded word, not an email address')
    try:
        info = validate_email(raw, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as e:
        raise InvalidAddress(f'"{raw}" is not a valid email address ({e})') from None
    if info.ascii_email:
        return Recipient(info.ascii_email, ascii=True)
    return Recipient(info.normalized, ascii=False)


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
    text = url_text(template or "")[:500]  # no control character; "=?" / "?=" percent-encoded
    if not text.strip():
        return ""
    parts = []
    for item in text.split(","):
        item = item.strip().strip("<>").replace("{email}", quote(recipient.address, safe="@"))
        if item.lower().startswith(("mailto:", "https:", "http:")) and not any(c in item for c in " <>"):
            parts.append(f"<{item}>")
    return ", ".join(parts)


def build_message(
    envelope: Envelope, subject: str, text: str, html: str | None, *, key: str, date: dt.datetime
) -> tuple[bytes, str]:
    """The whole message as bytes (CRLF line ends) and its Message-ID.

    Raises :class:`~.headers.UnsafeMessage` when the serialised header block is not exactly the fields
    set here (see :mod:`.headers`); the caller holds the email back instead of sending it."""
    mid = message_id(key, envelope.sender)
    fields = HeaderFields(
        sender=envelope.sender.address,
        sender_name=envelope.sender_name,
        to=envelope.to.address,
        to_name=envelope.to_name,
        subject=subject,
        message_id=mid,
        date=date,
        key=key,
        reply_to=envelope.reply_to.address if envelope.reply_to is not None else "",
        list_unsubscribe=envelope.list_unsubscribe,
        ascii_only=envelope.sender.ascii and envelope.to.ascii,
    )
    return compose(fields, text, html), mid

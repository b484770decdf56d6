"""Header values nobody's data can break, and the check every message passes before it leaves.

    text = header_text(first_name + " " + last_name, 120)   # safe for a display name or subject
    data = compose(HeaderFields(...), text_body, html_body)  # the message, checked; UnsafeMessage if not
    verify(data, expected)                                   # the same check on any bytes

Why this module exists: the email package of CPython before 3.10.15 / 3.11.10 / 3.12.5 / 3.13.0
(gh-121650, CVE-2024-6923) *decodes* RFC 2047 encoded words found in a header value it is given and
writes the decoded text back out raw; ``=?utf-8?q?=0D=0AReply-To:_x@evil.net?=`` in a first name becomes
a ``Reply-To:`` header line of its own. ``requires-python`` still allows those versions, so sheetflow
does not rely on the library:

- :func:`header_text` removes every control character (C0, DEL, C1, U+2028/2029) and breaks every
  ``=?`` / ``?=`` pair, so data can never carry an encoded word into a header; display names also lose
  RFC 5322 specials (:func:`display_name`), which the library does not keep quoted when it folds;
- :func:`verify` parses the serialised header block of the finished message and refuses it unless every
  line is a header or a fold of one, each field appears once, the fields are exactly those sheetflow set
  (plus the MIME ones the library adds), no decoded value holds a control character or an encoded word,
  and From/To/Reply-To/Subject decode to what was meant.

Standard library only (no sheetflow imports), so the same file runs under every supported Python,
including by path in the test that tries the oldest and newest interpreter: ``python headers.py``
runs that self-test.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_ENCODED_WORD_EDGE = re.compile(r"=\?|\?=")
MIME_FIELDS = ("mime-version", "content-type", "content-transfer-encoding")
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")


class UnsafeMessage(ValueError):
    """A message whose serialised headers are not exactly the ones sheetflow meant to send."""


def header_text(text: object, limit: int = 250) -> str:
    """One line of text safe inside a header: no control character, no encoded word, at most ``limit``.

    ``=?`` becomes ``= ?`` and ``?=`` becomes ``? =`` (a reader still sees the characters; no mail
    library can take them for an RFC 2047 encoded word)."""
    value = _CONTROL.sub(" ", str(text or ""))
    value = re.sub(r"\s+", " ", value)  # tabs, NBSP runs and the like
    while _ENCODED_WORD_EDGE.search(value):
        value = value.replace("=?", "= ?").replace("?=", "? =")
    return value.strip()[:limit].strip()


def url_text(text: str) -> str:
    """A URL for List-Unsubscribe: ``?`` next to ``=`` is percent-encoded, so no encoded word forms."""
    value = _CONTROL.sub("", text)
    while _ENCODED_WORD_EDGE.search(value):
        value = value.replace("=?", "=%3F").replace("?=", "%3F=")
    return value


@dataclass(frozen=True)
class HeaderFields:
    """What sheetflow puts in a message's header, as plain strings (addresses already validated)."""

    sender: str
    sender_name: str
    to: str
    to_name: str
    subject: str
    message_id: str
    date: dt.datetime
    key: str
    reply_to: str = ""
    list_unsubscribe: str = ""
    ascii_only: bool = True


_SPECIALS = re.compile(r'[,;:<>@"()\[\]\\]+')


def display_name(text: object, limit: int = 120) -> str:
    """A display name safe in From/To: :func:`header_text`, and RFC 5322 specials (``, ; : < > @ " ( )
    [ ] \\``) become spaces. Why: every CPython version drops the quotes of a display name when it has
    to fold it, so ``Souza, Ana`` in a long header would read as several addresses."""
    return header_text(_SPECIALS.sub(" ", header_text(text, limit * 2)), limit)


def _address(name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=display_name(name), username=local, domain=domain)


def _cte(body: str, ascii_only: bool) -> str:
    """7-bit safe bodies for every server (quoted-printable when not plain ASCII), 8bit with SMTPUTF8."""
    if body.isascii() and all(len(line) <= 900 for line in body.splitlines()):
        return "7bit"
    return "quoted-printable" if ascii_only else "8bit"


def expected(fields: HeaderFields) -> dict[str, str]:
    """The header fields (lower-case name -> meant value) a message of ``fields`` must have, no more."""
    out = {
        "from": fields.sender,
        "to": fields.to,
        "subject": header_text(fields.subject),
        "date": "",
        "message-id": fields.message_id,
        "x-sheetflow-key": fields.key,
    }
    if fields.reply_to and fields.reply_to != fields.sender:
        out["reply-to"] = fields.reply_to
    if fields.list_unsubscribe:
        out["list-unsubscribe"] = url_text(fields.list_unsubscribe)
    return out


def compose(fields: HeaderFields, text: str, html: str | None) -> bytes:
    """The whole message as bytes (CRLF line ends), checked by :func:`verify`; UnsafeMessage if not."""
    policy = email.policy.SMTP if fields.ascii_only else email.policy.SMTPUTF8
    msg = EmailMessage(policy=policy)
    msg["From"] = _address(fields.sender_name, fields.sender)
    msg["To"] = _address(fields.to_name, fields.to)
    if fields.reply_to and fields.reply_to != fields.sender:
        msg["Reply-To"] = _address("", fields.reply_to)
    msg["Subject"] = header_text(fields.subject)
    date = fields.date if fields.date.tzinfo else fields.date.replace(tzinfo=dt.timezone.utc)
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = fields.message_id
    if fields.list_unsubscribe:
        msg["List-Unsubscribe"] = url_text(fields.list_unsubscribe)
    msg["X-Sheetflow-Key"] = fields.key
    text = text if text.endswith("\n") else text + "\n"
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text, fields.ascii_only))
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte=_cte(html, fields.ascii_only))
    data = msg.as_bytes(policy=policy)
    verify(data, expected(fields))
    return data


def header_block(data: bytes) -> list[tuple[str, str]]:
    """The top-level header fields of a serialised message, unfolded: [(name, raw value)].

    UnsafeMessage when a line is neither ``Name: value`` nor a fold, or holds a bare CR/LF or NUL."""
    head, sep, _ = data.partition(b"\r\n\r\n")
    if not sep:
        raise UnsafeMessage("the message has no end of header")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeMessage("the header is not UTF-8") from None
    fields: list[list[str]] = []
    for line in text.split("\r\n"):
        if "\r" in line or "\n" in line or _CONTROL.search(line.replace("\t", " ")):
            raise UnsafeMessage("a header line holds a control character")
        if line[:1] in (" ", "\t"):
            if not fields:
                raise UnsafeMessage("the header starts with a folded line")
            fields[-1][1] += line
            continue
        name, colon, value = line.partition(":")
        if not colon or not _FIELD_NAME.match(name):
            raise UnsafeMessage(f'"{header_text(line, 60)}" is not a header line')
        fields.append([name, value])
    return [(name, value.strip()) for name, value in fields]


def decoded(value: str) -> str:
    """A raw header value with its RFC 2047 encoded words decoded (what a mail program shows)."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError) as e:  # a charset nobody knows, broken base64
        raise UnsafeMessage(f"a header cannot be decoded ({e})") from None


def _addresses(name: str, raw: str) -> list[str]:
    """The addresses of an address header as a mail program parses it (quoted and encoded display
    names with commas are one name, not more addresses)."""
    try:
        header = email.policy.default.header_factory(name, raw)
        return [a.addr_spec for a in header.addresses]
    except Exception:  # noqa: BLE001 - an unparsable header is not the one address we set
        return []


def _squeeze(text: str) -> str:
    return "".join(text.split())


def verify(data: bytes, meant: dict[str, str] | None = None) -> None:
    """Refuse (UnsafeMessage) a message whose header block is not exactly what sheetflow set.

    ``meant`` maps lower-case field names to the meant value ("" = any value); without it only the
    structure is checked (each field once, the fields sheetflow ever sets, no control characters)."""
    fields = header_block(data)
    names = [name.lower() for name, _ in fields]
    allowed = set(meant) if meant is not None else set(_ALL_FIELDS)
    for name in names:
        if names.count(name) > 1:
            raise UnsafeMessage(f"the header field {name} appears {names.count(name)} times")
        if name not in allowed and name not in MIME_FIELDS:
            raise UnsafeMessage(f"unexpected header field {header_text(name, 40)}")
    if meant is not None and set(meant) - set(names):
        raise UnsafeMessage("missing header field " + ", ".join(sorted(set(meant) - set(names))))
    for name, raw in fields:
        value = decoded(raw)
        if _CONTROL.search(value.replace("\t", " ")):
            raise UnsafeMessage(f"the {name} header decodes to a control character")
        if name.lower() in ("from", "to", "reply-to", "subject", "list-unsubscribe") and "=?" in value:
            raise UnsafeMessage(f"the {name} header decodes to an encoded word")
        want = (meant or {}).get(name.lower(), "")
        if not want:
            continue
        if name.lower() in ("from", "to", "reply-to"):
            if [a.lower() for a in _addresses(name, raw)] != [want.lower()]:
                raise UnsafeMessage(f"the {name} header is not the one address {want}")
        elif _squeeze(value) != _squeeze(want):
            raise UnsafeMessage(f"the {name} header is not what sheetflow wrote")


_ALL_FIELDS = (
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "x-sheetflow-key",
)


def _self_test() -> None:  # pragma: no cover - run by tests/compose/test_mail_headers.py under other Pythons
    """``python headers.py``: the hostile inputs of issue 20 on this interpreter; exit 1 on a failure."""
    import sys

    evil = "Bob =?utf-8?q?=0D=0AReply-To:_attacker@evil-corp.net?="
    when = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)
    fields = HeaderFields(
        sender="sales@acme.com",
        sender_name=evil,
        to="bob@cust-mail.com",
        to_name=evil,
        subject=f"Hi {evil}",
        message_id="<Ek@acme.com>",
        date=when,
        key="Ek",
        reply_to="help@acme.com",
        list_unsubscribe="<mailto:help@acme.com?subject==?utf-8?q?=0D=0ABcc:_x@evil-corp.net?=>",
    )
    data = compose(fields, "hello\n", None)
    names = [n.lower() for n, _ in header_block(data)]
    assert names.count("reply-to") == 1 and "bcc" not in names, names
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Reply-To"] == "help@acme.com", parsed["Reply-To"]
    assert "evil-corp" not in str(parsed["Reply-To"])
    assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])
    # the library alone, given the raw value: refused on every version (decoded CR LF or extra field)
    naive = EmailMessage(policy=email.policy.SMTP)
    naive["From"] = "sales@acme.com"
    naive["To"] = "bob@cust-mail.com"
    naive["Subject"] = f"Hi {evil}"
    naive.set_content("hello\n")
    try:
        verify(naive.as_bytes(), {"from": "", "to": "", "subject": ""})
    except UnsafeMessage as e:
        print(f"{sys.version.split()[0]} ok: raw value refused ({e})")
    else:
        raise SystemExit(f"{sys.version.split()[0]}: the naive message was not refused")


if __name__ == "__main__":  # pragma: no cover
    _self_test()

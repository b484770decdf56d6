"""Issue 20.1: no header injection through RFC 2047 encoded words, on every supported Python.

CPython's email package before 3.10.15 / 3.11.10 / 3.12.5 / 3.13.0 (gh-121650) decodes an encoded word
given in a header value and writes the decoded CR LF out raw. sheetflow never lets data carry an encoded
word or a control character into a header, and verifies each message's header block before it leaves.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

from sheetflow.commands.run import run
from sheetflow.compose.headers import (
    HeaderFields,
    UnsafeMessage,
    compose,
    expected,
    header_block,
    header_text,
    verify,
)
from sheetflow.compose.message import InvalidAddress, validate_address
from tests.conftest import NOW, ROOT
from tests.engine.test_mail_plan import SETTINGS, emails_log

EVIL = "Bob =?utf-8?q?=0D=0AReply-To:_attacker@evil-corp.net?="
HEADERS = ROOT / "sheetflow" / "compose" / "headers.py"
WHEN = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def welcome_book(book, contacts: list[list[object]], **extra) -> Path:
    """A workbook whose Welcome rule emails each new contact (baseline run first, then the rows)."""
    path = book(
        {
            "Settings": settings(**extra),
            "Templates": [
                ["name", "subject", "body"],
                ["hi", "Hi {{ first_name }}", "Hello {{ first_name }}"],
            ],
            "Contacts": [["id", "first_name", "email"], ["C-0", "Seed", "seed@acme.com"]],  # the baseline
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
                ["Welcome", "Contacts", "new", None, "send_email", "template=hi", None, True],
            ],
        }
    )
    run(path, now=NOW - dt.timedelta(hours=1))
    wb = load_workbook(path)
    for row in contacts:
        wb["Contacts"].append(row)
    wb.save(path)
    return path


def settings(**extra) -> list[list[object]]:
    rows = [r for r in SETTINGS if r[0] not in extra]
    return rows + [[k, v] for k, v in extra.items()]


def test_encoded_word_in_first_name_sender_name_and_unsubscribe_never_makes_a_header(book):
    path = welcome_book(
        book,
        [["C-1", EVIL, "bob@cust-mail.com"]],
        sender_name=f"Sales {EVIL}",
        list_unsubscribe="mailto:sair@acme.com.br?subject==?utf-8?q?=0D=0ABcc:_spy@evil-corp.net?=",
        locale="en-US",
    )
    result = run(path, now=NOW)
    assert [r["status"] for r in emails_log(path)] == ["sent"], result.plan.problems
    (eml,) = (path.parent / "outbox").glob("*.eml")
    data = eml.read_bytes()
    names = [name.lower() for name, _ in header_block(data)]
    assert sorted(names) == sorted(
        [
            "from",
            "to",
            "reply-to",
            "subject",
            "date",
            "message-id",
            "list-unsubscribe",
            "x-sheetflow-key",
            "content-type",
            "content-transfer-encoding",
            "mime-version",
        ]
    )
    msg = parse(data)
    assert str(msg["Reply-To"]) == "contato@acme.com.br"  # the one from Settings, nobody else's
    assert msg["Bcc"] is None and "evil-corp" not in str(msg["Reply-To"])
    assert msg["Subject"] == "Hi Bob = ?utf-8?q? =0D=0AReply-To:_attacker@evil-corp.net? ="  # shown, inert
    assert [a.addr_spec for a in msg["To"].addresses] == ["bob@cust-mail.com"]
    assert [a.addr_spec for a in msg["From"].addresses] == ["vendas@acme.com.br"]
    assert "\n" not in msg["List-Unsubscribe"] and "=?" not in msg["List-Unsubscribe"]
    assert b"=?utf-8?q?=0D=0A" not in data.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize(
    "value",
    [
        EVIL,
        "=?utf-8?b?DQpCY2M6IHhAZXZpbC5uZXQ=?=",  # base64 "\r\nBcc: x@evil.net"
        "=?UTF-8?Q?a?= =?UTF-8?Q?=0A?=",
        "x\x85y\u2028z\x00w\x1b[2J",
        "==??==?",
    ],
)
def test_header_text_leaves_no_encoded_word_and_no_control_character(value):
    text = header_text(value)
    assert "=?" not in text and "?=" not in text
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in text)
    data = compose(fields(subject=value, to_name=value, sender_name=value), "x\n", None)
    msg = parse(data)
    assert msg["Bcc"] is None and "\n" not in msg["Subject"]


def fields(**kw) -> HeaderFields:
    base = dict(
        sender="sales@acme.com",
        sender_name="Sales",
        to="bob@cust-mail.com",
        to_name="Bob",
        subject="Hi",
        message_id="<Ek@acme.com>",
        date=WHEN,
        key="Ek",
        reply_to="help@acme.com",
    )
    base.update(kw)
    return HeaderFields(**base)


GOOD = compose(fields(), "hello\n", None)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d.replace(b"Subject: Hi\r\n", b"Subject: Hi\r\nBcc: spy@evil.net\r\n"), "unexpected"),
        (lambda d: d.replace(b"Subject: Hi\r\n", b"Subject: Hi\r\nSubject: Again\r\n"), "2 times"),
        (lambda d: d.replace(b"Subject: Hi", b"Subject: Hi =?utf-8?q?=0D=0AX?="), "control character"),
        (lambda d: d.replace(b"Subject: Hi", b"Subject: Hi\rX"), "control character"),
        (lambda d: b" folded\r\n" + d, "folded"),
        (lambda d: d.replace(b"Subject: Hi\r\n", b"Subject: Hi\r\nnot a header\r\n"), "not a header"),
        (lambda d: d.replace(b"To: Bob <bob@cust-mail.com>", b"To: Bob <bob@cust-mail.com>, x@e.net"), "one"),
        (lambda d: d.replace(b"\r\n\r\n", b"\r\n", 1).replace(b"\r\n\r\n", b"\r\n"), "end of header"),
    ],
)
def test_verify_refuses_any_header_block_that_is_not_exactly_ours(mutate, reason):
    from sheetflow.compose.headers import expected

    verify(GOOD, expected(fields()))
    bad = mutate(GOOD)
    assert bad != GOOD
    with pytest.raises(UnsafeMessage, match=reason):
        verify(bad, expected(fields()))


def test_addresses_that_look_like_encoded_words_are_invalid():
    for text in ("=?utf-8?q?=0D=0A?=@evil.net", "a?=b@x.com", "bob\x85@x.com"):
        with pytest.raises(InvalidAddress):
            validate_address(text)


def test_an_unsafe_message_is_held_planned_not_sent(book, monkeypatch):
    """A message failing the check (simulated: a library that folds badly) is never handed over."""
    import sheetflow.compose.headers as headers

    real = headers.EmailMessage.as_bytes

    def leaky(self, *a, **kw):
        return real(self, *a, **kw).replace(b"\r\nSubject:", b"\r\nBcc: spy@evil.net\r\nSubject:", 1)

    monkeypatch.setattr(headers.EmailMessage, "as_bytes", leaky)
    path = welcome_book(book, [["C-1", "Bob", "bob@cust-mail.com"]])
    result = run(path, now=NOW)
    (row,) = emails_log(path)
    assert row["status"] == "planned" and "safety check" in row["detail"] and "bcc" in row["detail"]
    assert not list((path.parent / "outbox").glob("*.eml"))
    assert any("safety check" in str(p) for p in result.plan.errors)
    monkeypatch.undo()  # the "library" is fixed: the held email goes out, once
    run(path, now=NOW + dt.timedelta(minutes=5))
    assert [r["status"] for r in emails_log(path)] == ["sent"]
    assert len(list((path.parent / "outbox").glob("*.eml"))) == 1


def _interpreter(version: str) -> Path:
    return Path(f"/root/.pyenv/versions/{version}/bin/python")


@pytest.mark.parametrize("version", ["3.10.13", "3.13.0"])  # oldest and newest this machine has
def test_header_check_on_the_oldest_and_newest_python(version):
    """headers.py is standard library only: run its self-test (issue 20's inputs) under that Python."""
    python = _interpreter(version)
    if not python.exists():
        if version.startswith(f"{sys.version_info.major}.{sys.version_info.minor}."):
            python = Path(sys.executable)
        else:
            pytest.skip(f"Python {version} is not installed at {python} (pyenv install {version})")
    out = subprocess.run(
        [str(python), "-I", str(HEADERS)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "ok: raw value refused" in out.stdout


@pytest.mark.parametrize(
    "name",
    [
        "Souza, Ana",
        "a, b" * 40,
        "Eve evil@x.com, <spy@evil.net>",
        'Ana "the boss" (CEO); x:y',
        "Conceição, João " * 9,
    ],
)
def test_display_names_with_specials_stay_one_address_even_when_folded(name):
    """Every CPython drops the quotes of a display name it folds: specials never reach one."""
    data = compose(fields(to_name=name, sender_name=name), "x\n", None)  # verify() passed inside
    msg = parse(data)
    assert [a.addr_spec for a in msg["To"].addresses] == ["bob@cust-mail.com"]
    assert [a.addr_spec for a in msg["From"].addresses] == ["sales@acme.com"]


def test_the_fields_sheetflow_sets_are_the_ones_the_readme_lists():
    """README, Messages: From, To, Reply-To (not when it is the sender), Subject, Date, Message-ID,
    X-Sheetflow-Key, List-Unsubscribe, and the MIME fields; the verification expects exactly these."""
    names = lambda data: sorted(n.lower() for n, _ in header_block(data))  # noqa: E731
    mime = ["content-transfer-encoding", "content-type", "mime-version"]
    meant = fields(list_unsubscribe="<mailto:help@acme.com?subject=unsubscribe>")
    full = compose(meant, "hello\n", None)
    assert names(full) == sorted(
        ["from", "to", "reply-to", "subject", "date", "message-id", "x-sheetflow-key", "list-unsubscribe"]
        + mime
    )
    assert parse(full)["X-Sheetflow-Key"] == "Ek"
    same = compose(fields(reply_to="sales@acme.com"), "hello\n", None)
    assert "reply-to" not in names(same)
    with pytest.raises(UnsafeMessage):  # a message without its key is not what sheetflow sets
        verify(full.replace(b"X-Sheetflow-Key: Ek\r\n", b""), expected(meant))

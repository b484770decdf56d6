"""Messages: headers from Settings, UTF-8 (pt-BR), deterministic Message-ID, and no header injection."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from sheetflow.compose.message import (
    Envelope,
    InvalidAddress,
    build_message,
    unsubscribe_header,
    validate_address,
)

WHEN = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3)))


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def envelope(**kw) -> Envelope:
    base = dict(
        sender=validate_address("vendas@acme.com.br"),
        sender_name="Equipe Ágil",
        to=validate_address("joao@cliente.com.br"),
        to_name="João Conceição",
        reply_to=validate_address("contato@acme.com.br"),
        list_unsubscribe="<mailto:sair@acme.com.br?subject=unsubscribe>",
    )
    base.update(kw)
    return Envelope(**base)


def test_headers_utf8_and_message_id():
    data, mid = build_message(
        envelope(), "Olá, João! Proposta de ação", "Olá João,\ntudo bem?\n", None, key="Eabc", date=WHEN
    )
    msg = parse(data)
    assert str(msg["From"]) == "Equipe Ágil <vendas@acme.com.br>"
    assert str(msg["To"]) == "João Conceição <joao@cliente.com.br>"
    assert str(msg["Reply-To"]) == "contato@acme.com.br"
    assert msg["Subject"] == "Olá, João! Proposta de ação"
    assert msg["Date"] == "Mon, 23 Nov 2026 10:00:00 -0300"
    assert msg["Message-ID"] == mid == "<Eabc@acme.com.br>"
    assert msg["List-Unsubscribe"] == "<mailto:sair@acme.com.br?subject=unsubscribe>"
    assert msg.get_content().replace("\r\n", "\n") == "Olá João,\ntudo bem?\n"
    assert data.isascii()  # 7-bit safe for any server (quoted-printable body)
    again, _ = build_message(
        envelope(), "Olá, João! Proposta de ação", "Olá João,\ntudo bem?\n", None, key="Eabc", date=WHEN
    )
    assert again == data


def test_html_mail_has_a_text_alternative():
    data, _ = build_message(envelope(), "Oi", "texto\n", "<p>texto</p>", key="K", date=WHEN)
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


@pytest.mark.parametrize(
    "bad",
    [
        "eve@x.com\r\nBcc: evil@x.com",
        "a@x.com, b@y.com",
        "Eve <eve@x.com>",
        "eve@x.com\nX-Evil: 1",
        "",
        None,
        "bob@x",
        "no-at-sign",
    ],
)
def test_an_address_is_one_valid_address_or_nothing(bad):
    with pytest.raises(InvalidAddress):
        validate_address(bad)


def test_crlf_in_names_and_subject_never_makes_a_header():
    data, _ = build_message(
        envelope(to_name="Eve\r\nBcc: evil@x.com", sender_name="S\nX-Evil: 1"),
        "Hi\r\nBcc: evil2@x.com\r\n\r\nbody?",
        "text\n",
        None,
        key="K",
        date=WHEN,
    )
    msg = parse(data)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "Hi Bcc: evil2@x.com body?"
    assert [str(a) for a in msg["To"].addresses] == [
        '"Eve Bcc evil x.com" <joao@cliente.com.br>'
    ]  # no specials
    header_block = data.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith((b"bcc:", b"x-evil:")) for line in header_block.split(b"\r\n"))


def test_unsubscribe_header_fills_in_the_recipient():
    to = validate_address("ana+x@acme.com")
    assert (
        unsubscribe_header("https://acme.com/u?e={email}, mailto:sair@acme.com", to)
        == "<https://acme.com/u?e=ana%2Bx@acme.com>, <mailto:sair@acme.com>"
    )
    assert unsubscribe_header("javascript:alert(1)", to) == ""


def test_international_addresses():
    r = validate_address("joão@exemplo.com.br")
    assert r.address == "joão@exemplo.com.br" and not r.ascii
    assert validate_address("ana@bücher.de").address == "ana@xn--bcher-kva.de"
    data, _ = build_message(envelope(to=r), "Oi", "Olá\n", None, key="K", date=WHEN)
    assert "joão@exemplo.com.br" in data.decode("utf-8")

"""SMTP against a real aiosmtpd server on 127.0.0.1: plain, STARTTLS + AUTH, SSL, drops, 4xx, 5xx."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest

pytest.importorskip("aiosmtpd")
pytest.importorskip("trustme")

import python_calamine as pc  # noqa: E402

from sheetflow import engine  # noqa: E402
from sheetflow.commands.run import run, send  # noqa: E402
from sheetflow.engine.emails import request_email  # noqa: E402
from sheetflow.mail.config import MailConfig, load_config  # noqa: E402
from sheetflow.mail.testing import LocalSmtp  # noqa: E402
from sheetflow.mail.transports import Outgoing, RateLimiter, SmtpTransport, TransportUnavailable  # noqa: E402
from tests.conftest import NOW  # noqa: E402

SETTINGS = [
    ["key", "value"],
    ["timezone", "America/Sao_Paulo"],
    ["sender_name", "Equipe Ágil"],
    ["sender_email", "vendas@acme.com.br"],
    ["send_window", "always"],
]
TEMPLATES = [
    ["name", "subject", "body"],
    [
        "welcome",
        "Olá, {{ first_name }}! Ação necessária",
        "Oi {{ first_name }},\n\nbem-vindo à {{ company | default('empresa') }}.\n",
    ],
]


def contacts(n: int) -> list[list[object]]:
    names = ["João", "Luíza", "Conceição", "André", "Beatriz"]
    return [["id", "first_name", "email", "company"]] + [
        [f"C-{i}", names[(i - 1) % len(names)], f"pessoa{i}@cliente.com.br", "Padaria Pão Dourado"]
        for i in range(1, n + 1)
    ]


@pytest.fixture
def welcome(monkeypatch):
    def stage(ctx):
        t = ctx.tables["Contacts"]
        request_email(ctx, "Contacts", list(range(len(t))), "welcome", "Welcome", ["new"] * len(t))

    monkeypatch.setitem(engine.STAGES, "mailtest", stage)


def use(monkeypatch, server: LocalSmtp, **extra: str) -> None:
    for key, value in server.env(**extra).items():
        monkeypatch.setenv(key, value)


def log(path: Path) -> list[dict[str, object]]:
    book = pc.CalamineWorkbook.from_path(str(path))
    rows = book.get_sheet_by_name("Emails").to_python()
    book.close()
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_plain_smtp_one_connection_utf8(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(5)})
    with LocalSmtp() as server:
        use(monkeypatch, server)
        result = run(path, now=NOW)
        assert result.emails.count("sent") == 5 and result.emails.connections == 1
        assert len(server.messages) == 5
        mail_from, rcpts, data = server.messages[0]
        assert mail_from == "vendas@acme.com.br" and rcpts == ["pessoa1@cliente.com.br"]
        msg = parsed(data)
        assert (
            msg["Subject"] == "Olá, João! Ação necessária"
            and str(msg["From"]) == "Equipe Ágil <vendas@acme.com.br>"
        )
        assert msg.get_content().replace("\r\n", "\n") == "Oi João,\n\nbem-vindo à Padaria Pão Dourado.\n"
        assert sorted(server.keys()) == sorted(r["key"] for r in log(path))
        assert all(r["status"] == "sent" and r["detail"] == "" for r in log(path))
        assert not (path.parent / "outbox").exists()


def test_starttls_and_auth_with_a_generated_certificate(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(2)})
    with LocalSmtp(tls="starttls", auth=("vendas", "s3cr3t!")) as server:
        use(monkeypatch, server)
        assert run(path, now=NOW).emails.count("sent") == 2
        assert len(server.messages) == 2


def test_wrong_password_stops_before_anything_is_marked_sending(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(2)})
    with LocalSmtp(tls="starttls", auth=("vendas", "s3cr3t!")) as server:
        use(monkeypatch, server, SHEETFLOW_SMTP_PASSWORD="wrong-password-123")
        result = run(path, now=NOW)
        assert result.emails is None and server.messages == []
        errors = " ".join(str(p) for p in result.plan.errors)
        assert "refused the login of vendas" in errors and "wrong-password-123" not in errors
        rows = log(path)
        assert [r["status"] for r in rows] == ["planned", "planned"]
        assert "wrong-password" not in str(rows)
        use(monkeypatch, server)  # fixed: the next `send` delivers them
        assert send(path, now=NOW).emails.count("sent") == 2 and len(server.messages) == 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_ssl(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(2)})
    with LocalSmtp(tls="ssl", auth=("u", "p")) as server:
        use(monkeypatch, server)
        assert run(path, now=NOW).emails.count("sent") == 2 and len(server.messages) == 2


def test_server_drops_the_connection_mid_run(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(6)})
    with LocalSmtp(script={3: "drop", 5: "421"}) as server:
        use(monkeypatch, server)
        result = run(path, now=NOW)
        assert result.emails.count("sent") == 6 and result.emails.connections == 3
        assert sorted(server.keys()) == sorted(r["key"] for r in log(path))  # each exactly once
        assert len(server.keys()) == len(set(server.keys())) == 6


def test_4xx_is_retried_then_succeeds(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(3)})
    with LocalSmtp(script={1: "451", 3: "data-451"}) as server:
        use(monkeypatch, server)
        result = run(path, now=NOW)
        assert result.emails.count("sent") == 3 and len(server.messages) == 3
        assert len(set(server.keys())) == 3


def test_4xx_that_does_not_go_away_leaves_the_email_planned(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(2)})
    with LocalSmtp(script={1: "451", 2: "451", 3: "451"}) as server:
        use(monkeypatch, server, SHEETFLOW_SMTP_RETRIES="2")
        result = run(path, now=NOW)
        rows = {r["record_id"]: r for r in log(path)}
        assert rows["C-1"]["status"] == "planned"
        assert rows["C-1"]["detail"].startswith(
            "temporary failure (temporary failure at MAIL FROM: 451 4.3.0"
        )
        assert rows["C-2"]["status"] == "sent" and result.emails.count("sent") == 1
        assert send(path, now=NOW).emails.count("sent") == 1
        assert sorted(server.keys()) == sorted(rows[k]["key"] for k in rows)


def test_5xx_fails_with_the_server_message_and_suppresses_the_address(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(3)})
    with LocalSmtp(script={1: "rcpt-550", 2: "data-554"}) as server:
        use(monkeypatch, server)
        result = run(path, now=NOW)
        rows = {r["record_id"]: r for r in log(path)}
        assert (rows["C-1"]["status"], rows["C-1"]["detail"]) == (
            "failed",
            "recipient refused: 550 5.1.1 user unknown",
        )
        assert (rows["C-2"]["status"], rows["C-2"]["detail"]) == ("failed", "554 5.6.0 message refused")
        assert rows["C-3"]["status"] == "sent" and len(server.messages) == 1
        assert result.emails.count("failed") == 2
        assert any("failed: recipient refused" in str(p) for p in result.plan.problems)
        # a later email to the refused address is suppressed, never tried
        monkeypatch.setitem(
            engine.STAGES,
            "mailtest",
            lambda ctx: request_email(ctx, "Contacts", [0], "welcome", "Another rule", ["new"]),
        )
        plan = run(path, now=NOW + dt.timedelta(hours=1)).plan
        assert plan.emails[0].status == "skipped" and "failed permanently" in plan.emails[0].detail
        assert len(server.messages) == 1


def test_drop_after_the_final_dot_is_unconfirmed_and_never_resent(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(3)})
    with LocalSmtp(script={2: "drop-after-data"}) as server:
        use(monkeypatch, server)
        result = run(path, now=NOW)
        rows = {r["record_id"]: r for r in log(path)}
        assert (
            rows["C-2"]["status"] == "unconfirmed"
            and "may or may not have been delivered" in rows["C-2"]["detail"]
        )
        assert result.emails.count("sent") == 2 and len(server.messages) == 3
        assert send(path, now=NOW).emails is None and len(server.messages) == 3
        assert len(set(server.keys())) == 3


def test_envelope_recipient_is_the_only_recipient(monkeypatch):
    with LocalSmtp() as server:
        config = load_config(Path.cwd(), env=server.env())
        transport = SmtpTransport(config)
        transport.open()
        data = b"To: a@acme.com\r\nBcc: evil@x.com\r\nSubject: x\r\n\r\n.leading dot\r\nbody\r\n"
        result = transport.send(Outgoing("K", "s@acme.com", "a@acme.com", data), lambda _loc: True)
        transport.close()
        assert result.status == "sent"
        assert server.messages[0][1] == ["a@acme.com"]
        assert b"\r\n.leading dot\r\n" in server.messages[0][2]  # dot-stuffing round trip


def test_unreachable_server_is_reported_not_raised(book, welcome, monkeypatch):
    path = book({"Settings": SETTINGS, "Templates": TEMPLATES, "Contacts": contacts(1)})
    with LocalSmtp() as server:
        port = server.port
    monkeypatch.setenv("SHEETFLOW_TRANSPORT", "smtp")
    monkeypatch.setenv("SHEETFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SHEETFLOW_SMTP_PORT", str(port))
    monkeypatch.setenv("SHEETFLOW_SMTP_SECURITY", "none")
    result = run(path, now=NOW)
    assert result.emails is None and any("cannot connect to 127.0.0.1" in str(p) for p in result.plan.errors)
    assert log(path)[0]["status"] == "planned"
    with pytest.raises(TransportUnavailable):
        SmtpTransport(
            MailConfig(transport="smtp", host="127.0.0.1", port=port, security="none", timeout=2)
        ).open()


def test_rate_limit_spaces_sends_within_a_minute():
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    limiter = RateLimiter(3, clock=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
        clock[0] += 1
    assert sleeps == []
    limiter.wait()  # 4th within the minute: waits until the 1st is 60 s old
    assert sleeps == [57.0]
    unlimited = RateLimiter(0, clock=lambda: 0.0, sleep=sleep)
    for _ in range(100):
        unlimited.wait()
    assert sleeps == [57.0]


def test_config_precedence_and_secrets(tmp_path):
    (tmp_path / "sheetflow.toml").write_text(
        '[smtp]\nhost = "smtp.acme.com"\nuser = "vendas"\npassword = "from-toml"\nrate_per_minute = 30\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path, env={})
    assert (config.transport, config.host, config.port, config.security) == (
        "smtp",
        "smtp.acme.com",
        587,
        "starttls",
    )
    assert config.password == "from-toml" and config.rate_per_minute == 30
    assert "from-toml" not in repr(config) and "from-toml" not in config.describe()
    env = {"SHEETFLOW_SMTP_PASSWORD": "from-env", "SHEETFLOW_SMTP_SECURITY": "ssl"}
    config = load_config(tmp_path, env=env)
    assert config.password == "from-env" and config.port == 465
    assert load_config(tmp_path / "nowhere", env={}).transport == "files"

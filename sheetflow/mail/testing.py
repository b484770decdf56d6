"""A real local SMTP server for tests and benchmarks (aiosmtpd on 127.0.0.1; needs the ``test`` extra).

    with LocalSmtp() as server:                       # plain; LocalSmtp(tls="starttls", auth=("u", "p"))
        ... send to server.host, server.port ...
        server.messages                               # what it accepted: (mail_from, rcpt_tos, bytes)

``script`` makes the server misbehave on purpose, keyed by the Nth MAIL FROM of the server's life:
``"421"``/``"451"``/``"550"`` (reply to MAIL FROM), ``"rcpt-550"``, ``"data-451"``/``"data-554"``
(reply to the end of DATA, message not kept), ``"drop"`` (close the connection at MAIL FROM) or
``"drop-after-data"`` (keep the message, then close the connection without answering: the ambiguous
window). Only loopback addresses are used; the server stops when the ``with`` block ends.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    """The aiosmtpd handler: records every accepted message; follows ``script``."""

    script: dict[int, str] = field(default_factory=dict)
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    mail_count: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _action(self, session) -> str:  # noqa: ANN001
        return getattr(session, "sheetflow_action", "")

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, N802
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001, N802
        with self.lock:
            self.mail_count += 1
            action = self.script.get(self.mail_count, "")
        session.sheetflow_action = action
        if action == "drop":
            server.transport.close()
            return "421 closing"
        if action in ("421", "451", "550"):
            return {
                "421": "421 4.3.2 service shutting down",
                "451": "451 4.3.0 try again later",
                "550": "550 5.7.1 sender rejected",
            }[action]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, N802
        if self._action(session) == "rcpt-550":
            return "550 5.1.1 user unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
        action = self._action(session)
        if action == "data-451":
            return "451 4.3.0 temporarily deferred"
        if action == "data-554":
            return "554 5.6.0 message refused"
        with self.lock:
            self.messages.append(
                (
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content),
                )
            )
        if action == "drop-after-data":
            server.transport.close()
            return "250 OK (never seen: connection closed)"
        return "250 2.0.0 OK queued"


class LocalSmtp:
    def __init__(
        self, *, tls: str = "none", auth: tuple[str, str] | None = None, script: dict[int, str] | None = None
    ):
        self.tls, self.auth = tls, auth
        self.handler = Mailbox(script=dict(script or {}))
        self.host = "127.0.0.1"
        self.port = free_port()
        self.cafile = ""
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.controller: Any = None  # an aiosmtpd Controller once started (imported on start)

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        return self.handler.messages

    def keys(self) -> list[str]:
        """The X-Sheetflow-Key of every accepted message, in order."""
        out = []
        for _, _, data in self.messages:
            for line in data.split(b"\r\n"):
                if line.lower().startswith(b"x-sheetflow-key:"):
                    out.append(line.split(b":", 1)[1].strip().decode())
                    break
        return out

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables that point sheetflow at this server."""
        env = {
            "SHEETFLOW_TRANSPORT": "smtp",
            "SHEETFLOW_SMTP_HOST": self.host,
            "SHEETFLOW_SMTP_PORT": str(self.port),
            "SHEETFLOW_SMTP_SECURITY": self.tls,
            "SHEETFLOW_SMTP_RATE": "0",
            "SHEETFLOW_SMTP_TIMEOUT": "10",
            "SHEETFLOW_SMTP_RETRY_DELAYS": "0",
        }
        if self.cafile:
            env["SHEETFLOW_SMTP_CAFILE"] = self.cafile
        if self.auth:
            env["SHEETFLOW_SMTP_USER"], env["SHEETFLOW_SMTP_PASSWORD"] = self.auth
        env.update(extra)
        return env

    def __enter__(self) -> LocalSmtp:
        import logging

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's own deprecation chatter

        kwargs: dict = {}
        if self.tls != "none":
            import trustme

            self._tmp = tempfile.TemporaryDirectory()
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(server_ctx)
            self.cafile = str(Path(self._tmp.name) / "ca.pem")
            ca.cert_pem.write_to_path(self.cafile)
            if self.tls == "ssl":
                kwargs["ssl_context"] = server_ctx
            else:
                kwargs.update(tls_context=server_ctx, require_starttls=True)
        if self.auth:
            user, password = self.auth

            def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
                ok = (
                    getattr(auth_data, "login", b"") == user.encode()
                    and getattr(auth_data, "password", b"") == password.encode()
                )
                return AuthResult(success=ok, handled=False)

            kwargs.update(
                authenticator=authenticator,
                auth_required=True,
                # aiosmtpd only counts STARTTLS as TLS; implicit SSL is TLS from the first byte
                auth_require_tls=self.tls == "starttls",
            )
        self.controller = Controller(
            self.handler, hostname=self.host, port=self.port, ready_timeout=10, **kwargs
        )
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.controller is not None:
            self.controller.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

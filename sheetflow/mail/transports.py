"""Transports: where a message goes. One interface, two implementations.

    transport = make_transport(config)
    transport.open()
    result = transport.send(Outgoing(key, sender, recipient, data), commit)   # one attempt
    transport.close()

``commit()`` is called immediately before the point of no return and returns False when the journal
says our claim was lost (another runner recovered the key): the transport then abandons the message
without handing it over. Results: ``sent``, ``failed`` (permanent, with the server's message),
``retry`` (temporary: 4xx, or the connection dropped before the point of no return), ``unconfirmed``
(the connection dropped after it: nobody knows), ``lost`` (claim lost, nothing handed over).

- :class:`FilesTransport` writes ``KEY.eml`` into the outbox folder: a temp file, fsync, then an atomic
  rename. The rename is the point of no return, and the file's existence proves the send.
- :class:`SmtpTransport` keeps one connection for the whole run (reconnecting after a drop), logs in
  after STARTTLS/SSL, spaces sends to the per-minute rate, and speaks DATA itself so that the point of no
  return is exactly the final ``<CRLF>.<CRLF>``: a runner killed before it leaves nothing delivered.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sheetflow.mail.config import MailConfig
from sheetflow.mail.journal import Entry


@dataclass(frozen=True)
class Outgoing:
    key: str
    sender: str  # envelope MAIL FROM (validated)
    recipient: str  # envelope RCPT TO (validated): the only recipient, whatever the headers say
    data: bytes
    smtputf8: bool = False


@dataclass(frozen=True)
class Result:
    status: str  # sent | failed | retry | unconfirmed | lost
    detail: str = ""
    location: str = ""


class TransportUnavailable(Exception):
    """The transport cannot work at all (cannot connect, login refused): stop sending for this run."""


Commit = Callable[[str], bool]  # commit(location) -> our claim still stands


class RateLimiter:
    """At most ``per_minute`` sends in any 60 seconds (0 = unlimited)."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.per_minute, self.clock, self.sleep = per_minute, clock, sleep
        self.sent: deque[float] = deque()

    def wait(self) -> None:
        if self.per_minute <= 0:
            return
        now = self.clock()
        while self.sent and now - self.sent[0] >= 60:
            self.sent.popleft()
        if len(self.sent) >= self.per_minute:
            pause = 60 - (now - self.sent[0])
            if pause > 0:
                self.sleep(pause)
            now = self.clock()
            self.sent.popleft()
        self.sent.append(now)


# ---------------------------------------------------------------- files


class FilesTransport:
    name = "files"

    def __init__(self, folder: Path, crash: Callable[[str], None] | None = None):
        self.folder = folder
        self.crash = crash or (lambda _point: None)

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.eml"

    def send(self, out: Outgoing, commit: Commit) -> Result:
        final = self.path(out.key)
        tmp = self.folder / f".{out.key}.{os.getpid()}.tmp"
        with tmp.open("wb") as f:
            f.write(out.data)
            f.flush()
            os.fsync(f.fileno())
        self.crash("body")
        if not commit(str(final)):
            tmp.unlink(missing_ok=True)
            return Result("lost")
        os.replace(tmp, final)
        _fsync_dir(self.folder)
        return Result("sent", f"written to {final.name}", str(final))


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- SMTP


class _Refused(Exception):
    def __init__(self, code: int, text: str, stage: str):
        super().__init__(f"{code} {text}")
        self.code, self.text, self.stage = code, text, stage


def _no_delay(smtp: smtplib.SMTP) -> None:
    """Commands are small writes answered one by one: do not let Nagle's algorithm hold them back."""
    try:
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]  # connected; a missing socket is caught below
    except (OSError, AttributeError):
        pass


def _dot_stuffed(data: bytes) -> bytes:
    """CRLF line ends, leading dots doubled (RFC 5321 4.5.2), ending in CRLF: DATA without its final dot."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _reply_text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())[:300]


class SmtpTransport:
    name = "smtp"

    def __init__(
        self,
        config: MailConfig,
        *,
        rate: RateLimiter | None = None,
        crash: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.rate = rate or RateLimiter(config.rate_per_minute)
        self.smtp: smtplib.SMTP | None = None
        self.connections = 0
        self.crash = crash or (lambda _point: None)

    # ------------------------------------------------------------ connection
    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.cafile or None)

    def open(self) -> None:
        self._connect()

    def _connect(self) -> None:
        c = self.config
        try:
            if c.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    c.host, c.port, timeout=c.timeout, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            _no_delay(smtp)
            smtp.ehlo()
            if c.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if c.user:
                smtp.login(c.user, c.password)
        except smtplib.SMTPAuthenticationError as e:
            raise TransportUnavailable(
                f"the SMTP server refused the login of {c.user} ({e.smtp_code} "
                f"{_reply_text(e.smtp_error)}); check SHEETFLOW_SMTP_USER and the password"
            ) from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
            raise TransportUnavailable(f"cannot connect to {c.host}:{c.port} ({c.security}): {e}") from None
        self.smtp = smtp
        self.connections += 1

    def _drop(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self.smtp = None

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()

    # ------------------------------------------------------------ one message
    def send(self, out: Outgoing, commit: Commit) -> Result:
        if self.smtp is None:
            self._connect()
        smtp = self.smtp
        assert smtp is not None
        self.rate.wait()
        try:
            options = []
            if out.smtputf8:
                if not smtp.has_extn("smtputf8"):
                    return Result(
                        "failed", "the SMTP server does not accept non-ASCII addresses (no SMTPUTF8)"
                    )
                options.append("SMTPUTF8")
            code, resp = smtp.mail(out.sender, options)
            if code >= 400:
                raise _Refused(code, _reply_text(resp), "MAIL FROM")
            code, resp = smtp.rcpt(out.recipient)
            if code >= 400:
                raise _Refused(code, _reply_text(resp), "RCPT TO")
            smtp.putcmd("data")
            code, resp = smtp.getreply()
            if code != 354:
                raise _Refused(code, _reply_text(resp), "DATA")
            body = _dot_stuffed(out.data)
            smtp.send(body)
            self.crash("body")
        except _Refused as e:
            self._reset()
            return self._refused(e)
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            self._drop()
            return Result("retry", f"connection lost ({e or type(e).__name__}); reconnecting")
        if not commit(""):
            self._drop()  # abandon DATA without its final dot: the server discards it
            return Result("lost")
        # the point of no return: the final dot
        try:
            smtp.send(b".\r\n")
            code, resp = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            self._drop()
            return Result(
                "unconfirmed",
                f"the connection dropped after the message was handed over ({e}); "
                "it may or may not have been delivered",
            )
        if 200 <= code < 300:
            return Result("sent", f"{code} {_reply_text(resp)}")
        self._reset()
        return self._refused(_Refused(code, _reply_text(resp), "end of DATA"))

    def _refused(self, e: _Refused) -> Result:
        if e.code == 421:
            self._drop()
            return Result("retry", f"server closing the connection ({e.code} {e.text})")
        if 400 <= e.code < 500:
            return Result("retry", f"temporary failure at {e.stage}: {e.code} {e.text}")
        who = "recipient refused: " if e.stage == "RCPT TO" else ""
        return Result("failed", f"{who}{e.code} {e.text}")

    def _reset(self) -> None:
        if self.smtp is None:
            return
        try:
            self.smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()


def confirm(entry: Entry) -> bool | None:
    """After a crash, did the message of a key left ``sending`` go out? True, False or None (unknowable).

    Files: the .eml is there (its rename was the send) or it is not. SMTP: nobody can tell.
    """
    if entry.transport == "files" and entry.location:
        return Path(entry.location).exists()
    return None


def make_transport(
    config: MailConfig, crash: Callable[[str], None] | None = None
) -> FilesTransport | SmtpTransport:
    if config.transport == "smtp":
        return SmtpTransport(config, crash=crash)
    return FilesTransport(config.outbox, crash=crash)

"""Where emails go: the transport settings, from the environment, ``sheetflow.toml`` or the keyring.

    config = load_config(Path("crm.xlsx").parent)     # environment > sheetflow.toml > defaults

Never from the workbook: a workbook gets emailed around, and a password in a cell would travel with it.

| environment | sheetflow.toml | default |
| --- | --- | --- |
| ``SHEETFLOW_TRANSPORT`` (files, smtp) | ``[email] transport`` | smtp when a host is set, else files |
| ``SHEETFLOW_OUTBOX`` (relative: to the current folder) | ``[email] outbox`` (relative: to the toml's folder) | ``outbox/`` beside the workbook |
| ``SHEETFLOW_SMTP_HOST`` | ``[smtp] host`` | |
| ``SHEETFLOW_SMTP_PORT`` | ``[smtp] port`` | 587 (starttls), 465 (ssl), 25 (none) |
| ``SHEETFLOW_SMTP_SECURITY`` (none, starttls, ssl) | ``[smtp] security`` | starttls |
| ``SHEETFLOW_SMTP_USER`` | ``[smtp] user`` | no login |
| ``SHEETFLOW_SMTP_PASSWORD`` | ``[smtp] password``, or keyring service ``sheetflow-smtp`` | |
| ``SHEETFLOW_SMTP_CAFILE`` | ``[smtp] cafile`` | the system's CAs |
| ``SHEETFLOW_SMTP_RATE`` (emails per minute, 0 = no limit) | ``[smtp] rate_per_minute`` | 60 |
| ``SHEETFLOW_SMTP_RETRIES`` (attempts after a 4xx or a dropped connection) | ``[smtp] retries`` | 3 |
| ``SHEETFLOW_SMTP_RETRY_DELAYS`` (seconds, comma-separated) | ``[smtp] retry_delays`` | 2,10,30 |
| ``SHEETFLOW_SMTP_TIMEOUT`` (seconds) | ``[smtp] timeout`` | 30 |

The keyring is optional (``pip install keyring``; ``keyring set sheetflow-smtp USER``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sheetflow.problems import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SECURITY = ("none", "starttls", "ssl")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
KEYRING_SERVICE = "sheetflow-smtp"


@dataclass
class MailConfig:
    transport: str = "files"
    outbox: Path = Path("outbox")
    host: str = ""
    port: int = 587
    security: str = "starttls"
    user: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""
    timeout: float = 30.0
    rate_per_minute: int = 60
    retries: int = 3
    retry_delays: tuple[float, ...] = (2.0, 10.0, 30.0)

    def describe(self) -> str:
        """For messages: where mail goes, never the password."""
        if self.transport == "files":
            return f"files in {self.outbox}"
        login = f" as {self.user}" if self.user else ""
        return f"smtp {self.host}:{self.port} ({self.security}){login}"


def _toml(folder: Path) -> dict[str, Any]:
    path = folder / "sheetflow.toml"
    if not path.exists():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{path} cannot be read: {e}") from None


def _keyring_password(user: str) -> str:
    try:
        import keyring  # optional
    except ImportError:
        return ""
    try:
        return keyring.get_password(KEYRING_SERVICE, user) or ""
    except Exception:  # noqa: BLE001 - no usable keyring backend on this machine
        return ""


def load_config(
    folder: Path, *, env: Mapping[str, str] | None = None, outbox: Path | None = None
) -> MailConfig:
    env = os.environ if env is None else env
    folder = folder.resolve()
    doc = _toml(folder)
    email, smtp = doc.get("email", {}) or {}, doc.get("smtp", {}) or {}

    def pick(name: str, section: dict[str, Any], key: str, default: Any = "") -> Any:
        value = env.get(f"SHEETFLOW_{name}")
        if value not in (None, ""):
            return value
        return section.get(key, default)

    config = MailConfig()
    config.host = str(pick("SMTP_HOST", smtp, "host")).strip()
    transport = str(pick("TRANSPORT", email, "transport", "smtp" if config.host else "files")).strip().lower()
    if transport not in ("files", "smtp"):
        raise UsageError(f'SHEETFLOW_TRANSPORT "{transport}" is not files or smtp')
    config.transport = transport
    # One rule for every relative outbox (issue 10): --outbox and SHEETFLOW_OUTBOX are command-line paths,
    # relative to the current folder like any other; sheetflow.toml's is relative to the toml's folder;
    # the default is outbox/ beside the workbook. Same for run and --dry-run.
    if outbox is not None:
        config.outbox = Path(outbox).resolve()
    elif env.get("SHEETFLOW_OUTBOX") not in (None, ""):
        config.outbox = Path(env["SHEETFLOW_OUTBOX"]).resolve()
    else:
        out = Path(str(email.get("outbox") or "outbox"))
        config.outbox = out if out.is_absolute() else folder / out
    config.security = str(pick("SMTP_SECURITY", smtp, "security", "starttls")).strip().lower()
    if config.security not in SECURITY:
        raise UsageError(f'SHEETFLOW_SMTP_SECURITY "{config.security}" is not one of {", ".join(SECURITY)}')
    try:
        config.port = int(pick("SMTP_PORT", smtp, "port", DEFAULT_PORTS[config.security]))
        config.timeout = float(pick("SMTP_TIMEOUT", smtp, "timeout", 30))
        config.rate_per_minute = int(pick("SMTP_RATE", smtp, "rate_per_minute", 60))
        config.retries = max(0, int(pick("SMTP_RETRIES", smtp, "retries", 3)))
        delays = pick("SMTP_RETRY_DELAYS", smtp, "retry_delays", "2,10,30")
        delays = delays.split(",") if isinstance(delays, str) else list(delays)
        config.retry_delays = tuple(max(0.0, float(d)) for d in delays if str(d).strip()) or (0.0,)
    except ValueError as e:
        raise UsageError(f"SMTP settings: {e}") from None
    config.user = str(pick("SMTP_USER", smtp, "user")).strip()
    config.password = str(pick("SMTP_PASSWORD", smtp, "password"))
    if config.user and not config.password:
        config.password = _keyring_password(config.user)
    config.cafile = str(pick("SMTP_CAFILE", smtp, "cafile")).strip()
    if config.transport == "smtp" and not config.host:
        raise UsageError(
            "SHEETFLOW_TRANSPORT is smtp but no SMTP host is set "
            "(SHEETFLOW_SMTP_HOST or [smtp] host in sheetflow.toml beside the workbook)"
        )
    return config

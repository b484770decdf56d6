"""Email: templates, planning, suppression, the outbox and exactly-once sending.

    from sheetflow.mail import request_email, request_notification
    request_email(ctx, "Contacts", positions, "welcome", rule="Welcome", occurrences=["new"] * len(positions))

Stages of the engine ask for emails with :func:`request_email` / :func:`request_notification`; the plan
then holds every email rendered (``plan.emails``), so ``sheetflow run --dry-run`` shows them. A real run
journals the emails it sends in ``.sheetflow/<book>.mail.sqlite``, writes the Emails sheet, hands the
messages to the transport (``.eml`` files in ``outbox/`` by default, or SMTP) and writes the outcome
back. Modules, one job each:

- :mod:`.render` — templates (Templates sheet, ``templates/email/``), the Jinja2 sandbox, ``check``
- :mod:`.message` — addresses and the RFC 5322 message
- :mod:`.suppression`, :mod:`.window` — who must not get an email; when emails may go out
- :mod:`.planner` — keys, recipients, merge fields, the plan's emails (pure)
- :mod:`.journal` — the SQLite journal that makes sends exactly-once
- :mod:`.config`, :mod:`.transports` — where mail goes (files, SMTP)
- :mod:`.log`, :mod:`.sender` — the Emails sheet and the send phase, with its crash table
"""

from .planner import email_key, finalize_emails, request_email, request_notification
from .render import check_templates

__all__ = ["request_email", "request_notification", "finalize_emails", "email_key", "check_templates"]

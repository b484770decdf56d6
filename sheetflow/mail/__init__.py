"""Email delivery: the send phase of a run, above the engine that planned the emails.

The engine plans emails (:mod:`sheetflow.engine.emails`: keys, recipients, merge fields, suppression,
send window), composing each message with :mod:`sheetflow.compose`. A real run then journals the emails
it sends in ``.sheetflow/<book>.mail.sqlite``, writes the Emails sheet, hands the messages to the
transport (``.eml`` files in ``outbox/`` by default, or SMTP) and writes the outcome back. Modules:

- :mod:`.journal` — the SQLite journal that makes sends exactly-once
- :mod:`.config`, :mod:`.transports` — where mail goes (files, SMTP)
- :mod:`.log`, :mod:`.sender` — the Emails sheet and the send phase, with its crash table
- :mod:`.testing` — a real local SMTP server for tests (aiosmtpd on 127.0.0.1)
"""

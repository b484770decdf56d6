"""Email templates: kept importable here; the implementation lives in :mod:`sheetflow.mail.render`.

Templates come from the Templates sheet (and ``templates/email/``) and render in Jinja2's
ImmutableSandboxedEnvironment with a strict undefined: a missing merge field is an error naming the
template and field, found by ``sheetflow check``, never an empty greeting.
"""

from __future__ import annotations

from .mail.render import MAX_TEMPLATE_CHARS, check_templates, environment, known_fields, render_text

__all__ = ["MAX_TEMPLATE_CHARS", "check_templates", "environment", "known_fields", "render_text"]

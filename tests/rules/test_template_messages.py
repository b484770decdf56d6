"""Issue 20 (verification): ``check`` says each template problem once, in plain words (no Python class
names), and tells a template-language function from a method of a field."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from sheetflow.commands.run import check, run

DAY = dt.datetime(2026, 3, 2, 10, 0)
AUTOMATIONS = ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"]
BODIES = {
    "trunc": "{{ first_name|truncate(-1) }}",
    "include": "{% include 'other' %}",
    "divide": "{{ 1 / 0 }}",
    "long": "{% for a in 'x'*800 %}{% for b in 'x'*800 %}xx{% endfor %}{% endfor %}",
    "cycler": "{{ cycler }}",
    "lipsum": "{{ lipsum }}",
    "upper": "{{ first_name.upper }}",
    "unknown": "{{ first_name|capitalise }}",
}
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")


@pytest.fixture
def path(book):
    names = list(BODIES)
    return book(
        {
            "Settings": [["key", "value"], ["sender_email", "sales@acme.com"], ["send_window", "always"]],
            "Contacts": [["id", "first_name", "email"], ["C-1", "Bob", "bob@cust.com"]],
            "Templates": [["name", "subject", "body"]] + [[n, "Hi", BODIES[n]] for n in names],
            "Automations": [AUTOMATIONS]
            + [
                [f"E_{n}", "Contacts", "new", None, "send_email", f"template={n}; include_existing=true"]
                + [None, True]
                for n in names
            ],
        }
    )


def test_each_template_error_is_said_once_in_plain_words(path):
    problems = [p for p in check(path, now=DAY) if p.where.startswith("Templates!")]
    cells = [p.where for p in problems]
    assert sorted(set(cells)) == sorted(f"Templates!C{i}" for i in range(2, 2 + len(BODIES))), problems
    assert len(cells) == len(set(cells)), problems  # once each
    for p in problems:
        assert not CLASS_NAME.search(str(p)), p
    said = {p.where: str(p) for p in problems}
    assert "a filter was given a value it cannot use" in said["Templates!C2"]
    assert "cannot include" in said["Templates!C3"]
    assert "divides by zero" in said["Templates!C4"]
    assert "longer than 500000 characters" in said["Templates!C5"]
    assert '"Cycler" is a function of the template language' in said["Templates!C6"]
    assert "without" not in said["Templates!C6"]
    assert "is a function of the template language" in said["Templates!C7"]
    assert 'write the field without ".upper"' in said["Templates!C8"]


def test_the_run_uses_the_same_plain_words(path):
    result = run(path, now=DAY, dry_run=True)
    for p in result.plan.problems:
        assert not CLASS_NAME.search(str(p)), p

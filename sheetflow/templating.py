"""Email templates: a sandboxed Jinja2 environment, and checks that find mistakes before a send.

Templates come from the Templates sheet, which anyone editing the workbook can change, so they are
rendered in Jinja2's ImmutableSandboxedEnvironment (no attribute tricks, no file access) with
StrictUndefined: a missing merge field is an error naming the template and field, never an empty
greeting.
"""

from __future__ import annotations

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .names import normalize, suggest
from .problems import Problem, error
from .settings import Settings
from .tables import Tables

MAX_TEMPLATE_CHARS = 100_000


def environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                         keep_trailing_newline=True)


def known_fields(tables: Tables, settings: Settings) -> set[str]:
    """Names a template may use: contact and deal/ticket columns, owner, settings keys."""
    fields = {"owner", "contact", "deal", "ticket", "settings", "record", "today", "now"}
    for name in ("Contacts", "Deals", "Tickets"):
        fields |= set(tables[name].types)
    fields |= set(settings.values)
    return fields


def check_templates(tables: Tables, settings: Settings) -> list[Problem]:
    table = tables["Templates"]
    problems: list[Problem] = []
    if not table.exists:
        return problems
    env = environment()
    fields = known_fields(tables, settings)
    seen: dict[str, str] = {}
    for pos in range(len(table)):
        name = table.df["name"].iloc[pos]
        if not isinstance(name, str) or not name.strip():
            problems.append(error(table.ref(pos, "name"), "template has no name",
                                  "give it a name that send_email can use: template=NAME"))
            continue
        key = normalize(name)
        if key in seen:
            problems.append(error(table.ref(pos, "name"), f'template "{name}" is defined twice',
                                  f"the first one ({seen[key]}) is used; rename one of them"))
            continue
        seen[key] = table.ref(pos, "name")
        for column in ("subject", "body"):
            source = table.df[column].iloc[pos]
            if not isinstance(source, str):
                if column == "body":
                    problems.append(error(table.ref(pos, column), f'template "{name}" has an empty body'))
                continue
            if len(source) > MAX_TEMPLATE_CHARS:
                problems.append(error(table.ref(pos, column), f"{column} is longer than {MAX_TEMPLATE_CHARS} characters"))
                continue
            try:
                parsed = env.parse(source)
            except TemplateSyntaxError as e:
                problems.append(error(table.ref(pos, column), f'template "{name}" {column}: {e.message} (line {e.lineno})',
                                      "merge fields look like {{ first_name }}"))
                continue
            for field in sorted(meta.find_undeclared_variables(parsed)):
                if field not in fields and normalize(field) not in fields:
                    hint = suggest(field, fields)
                    problems.append(error(table.ref(pos, column), f'template "{name}" uses unknown field "{field}"',
                                          f'did you mean "{hint}"?' if hint else "use a column name of the record"))
    return problems

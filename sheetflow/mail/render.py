"""Email templates: where they come from, the sandbox they render in, and the checks ``sheetflow check`` runs.

    templates = TemplateSet.load(tables)                 # Templates sheet + templates/email/ defaults
    subject, text, html = templates.render("welcome", fields)

Templates come from the ``Templates`` sheet (anyone editing the workbook can change them) and, for
names the sheet does not define, from the default files in ``templates/email/`` (``NAME.txt`` or
``NAME.html``, optionally ``NAME.pt-BR.txt``; the first line is ``Subject: ...``, then a blank line,
then the body). They render in Jinja2's ``ImmutableSandboxedEnvironment`` with a strict undefined:

- a field that does not exist is an error naming the template and the field (``sheetflow check``
  finds it before anything is sent), and a field that is *empty* for one record is an error for that
  record — never an empty greeting. ``{{ first_name | default("there") }}`` is how a template says
  what to write instead; ``owner.name | default("our team")`` works when there is no owner.
- a body that contains HTML tags is HTML (merge fields are HTML-escaped) and gets a generated
  plain-text alternative; any other body is plain text.
- template size (:data:`MAX_TEMPLATE_CHARS`), output size (:data:`MAX_OUTPUT_CHARS`), loop ranges and
  render time (:data:`MAX_RENDER_SECONDS`) are capped, so a template cannot stall a run.
"""

from __future__ import annotations

import contextvars
import functools
import html as html_lib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..names import normalize, suggest
from ..problems import Problem, error
from ..settings import Settings
from ..tables import Tables
from .headers import header_text

MAX_TEMPLATE_CHARS = 100_000  # subject or body source
MAX_OUTPUT_CHARS = 500_000  # one rendered body
MAX_RENDER_SECONDS = 2.0  # one render
MAX_LOOP_ITEMS = 100_000  # range() items per render, all loops together
MAX_SUBJECT_CHARS = 250

_HTML = re.compile(
    r"<\s*/?\s*(html|body|head|p|br|div|table|tr|td|a|b|i|u|strong|em|h[1-6]|ul|ol|li|span|img|hr)\b[^>]*>",
    re.IGNORECASE,
)


class RenderError(Exception):
    """A template could not be rendered for one record; ``field`` is the merge field at fault, if known."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------- the sandbox

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("sheetflow_render_deadline", default=0.0)
_loop_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("sheetflow_loop_budget")


def _check_deadline() -> None:
    deadline = _deadline.get()
    if deadline and time.monotonic() > deadline:
        raise SecurityError(f"the template took longer than {MAX_RENDER_SECONDS:g} s to render")


class Fields(dict):
    """A mapping of merge fields (``owner``, ``contact``, ...) that names itself in error messages.

    Printed as a whole it shows its ``display`` value: ``{{ owner }}`` is the owner's name."""

    def __init__(self, prefix: str, values: dict[str, Any], display: str = ""):
        super().__init__(values)
        self.prefix = prefix
        self.display = display

    def __str__(self) -> str:
        return self.display

    def __html__(self) -> str:
        return html_lib.escape(self.display)


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict when printed or compared, but ``owner.name | default("x")`` works when owner is empty."""

    __slots__ = ()


def _counted_range(*args: int) -> Iterator[int]:
    r = range(*args)
    budget = _loop_budget.get(None)
    if budget is not None:
        budget[0] -= len(r)
        if budget[0] < 0:
            raise SecurityError(f"loops in the template go over {MAX_LOOP_ITEMS} items")
    for n, value in enumerate(r):
        if n % 1000 == 0:
            _check_deadline()
        yield value


class _Env(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):  # noqa: ANN001 - jinja's signature
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 64:
                raise SecurityError("exponent too large in template")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(n, int)
                    and len(seq) * n > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError("template builds a text that is too long")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja's signature
        _check_deadline()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj, attribute):  # noqa: ANN001
        if isinstance(obj, Fields):  # item first: a column called "items" is a field, not dict.items
            if attribute in obj:
                return obj[attribute]
            return self.undefined(name=f"{obj.prefix}.{attribute}")
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):  # noqa: ANN001
        if isinstance(obj, Fields) and isinstance(argument, str) and argument not in obj:
            return self.undefined(name=f"{obj.prefix}.{argument}")
        return super().getitem(obj, argument)


def environment(*, html: bool = False) -> ImmutableSandboxedEnvironment:
    env = _Env(undefined=_Undefined, autoescape=html, keep_trailing_newline=True)
    env.globals["range"] = _counted_range
    return env


_TEXT_ENV = environment()
_HTML_ENV = environment(html=True)


def is_html(body: str) -> bool:
    return bool(_HTML.search(body))


def render(template: Template, context: dict[str, Any]) -> str:
    """Render with the caps; raises RenderError naming the merge field when one is missing."""
    token_d = _deadline.set(time.monotonic() + MAX_RENDER_SECONDS)
    token_b = _loop_budget.set([MAX_LOOP_ITEMS])
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"the rendered text is longer than {MAX_OUTPUT_CHARS} characters")
            parts.append(chunk)
            _check_deadline()
    except UndefinedError as e:
        name = _undefined_name(str(e))
        raise RenderError(str(e), name) from None
    except SecurityError as e:
        raise RenderError(f"not allowed: {e}") from None
    except RecursionError:
        raise RenderError("not allowed: the template calls itself without end") from None
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as e:
        raise RenderError(f"{type(e).__name__}: {e}") from None
    finally:
        _deadline.reset(token_d)
        _loop_budget.reset(token_b)
    return "".join(parts)


def _undefined_name(message: str) -> str:
    m = re.search(r"'([^']+)' is undefined", message) or re.search(r"has no attribute '([^']+)'", message)
    return m.group(1) if m else ""


# ---------------------------------------------------------------- HTML -> plain text


class _TextOf(HTMLParser):
    BLOCK = {"p", "div", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "blockquote", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag in ("script", "style", "head", "title"):
            self.skip += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in self.BLOCK:
            self.out.append("\n\n")
        elif tag in ("td", "th"):
            self.out.append("\t")
        if tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag in ("script", "style", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.out.append("\n\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.out.append(f" ({href})")

    def handle_data(self, data):  # noqa: ANN001
        if not self.skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """A readable plain-text version of an HTML body (paragraphs, line breaks, lists, link targets)."""
    parser = _TextOf()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.out)
    lines = [line.strip() for line in text.replace("\t", " ").splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def one_line(text: str, limit: int = MAX_SUBJECT_CHARS) -> str:
    """Subjects and display names: no control character (CR/LF become spaces), no RFC 2047 encoded word
    (see :func:`.headers.header_text`); never a new header."""
    return header_text(text, limit)


# ---------------------------------------------------------------- where templates come from


@dataclass
class TemplateSource:
    name: str
    subject: str
    body: str
    language: str = ""
    subject_ref: str = ""  # "Templates!B3" or "templates/email/welcome.txt"
    body_ref: str = ""
    html: bool = False


@dataclass
class Compiled:
    source: TemplateSource
    subject: Template
    body: Template


def default_folder() -> Path:
    """``templates/email``: the packaged copy in a wheel, the repository folder in a checkout."""
    packaged = Path(__file__).resolve().parent.parent / "_data" / "templates" / "email"
    return (
        packaged
        if packaged.exists()
        else Path(__file__).resolve().parent.parent.parent / "templates" / "email"
    )


def read_default_file(path: Path) -> TemplateSource | None:
    """``NAME[.LANG].txt|html``: ``Subject: ...`` on the first line, a blank line, then the body."""
    text = path.read_text(encoding="utf-8")
    first, _, rest = text.partition("\n")
    if not first.lower().startswith("subject:"):
        return None
    stem = path.name.rsplit(".", 1)[0]
    name, _, lang = stem.partition(".")
    return TemplateSource(
        name,
        first.split(":", 1)[1].strip(),
        rest.lstrip("\r\n"),
        lang,
        f"templates/email/{path.name}",
        f"templates/email/{path.name}",
        path.suffix.lower() in (".html", ".htm"),
    )


def default_templates(language: str, folder: Path | None = None) -> dict[str, TemplateSource]:
    """Default templates by normalized name, the workbook's language preferred (read once per process)."""
    return dict(_default_templates(language, folder or default_folder()))


@functools.lru_cache(maxsize=8)
def _default_templates(language: str, folder: Path) -> dict[str, TemplateSource]:
    found: dict[str, TemplateSource] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".txt", ".html", ".htm") or not path.is_file():
            continue
        source = read_default_file(path)
        if source is None:
            continue
        key = normalize(source.name)
        current = found.get(key)
        matches = source.language.lower() == language.lower()
        if (
            current is None
            or (matches and current.language.lower() != language.lower())
            or (not source.language and current.language.lower() != language.lower())
        ):
            found[key] = source
    return found


@dataclass
class TemplateSet:
    """The templates a run can use: the Templates sheet first, then the default files."""

    sources: dict[str, TemplateSource] = field(default_factory=dict)
    problems: dict[str, Problem] = field(default_factory=dict)  # broken templates by normalized name
    _compiled: dict[str, Compiled] = field(default_factory=dict)

    @classmethod
    def load(cls, tables: Tables, folder: Path | None = None) -> TemplateSet:
        sources = default_templates(tables.language, folder)
        table = tables["Templates"]
        seen: set[str] = set()
        if table.exists:
            for pos in range(len(table)):
                name = table.df["name"].iloc[pos]
                if not isinstance(name, str) or not name.strip() or normalize(name) in seen:
                    continue
                seen.add(normalize(name))
                subject, body = table.df["subject"].iloc[pos], table.df["body"].iloc[pos]
                lang = table.df["language"].iloc[pos] if "language" in table.df else None
                body = body if isinstance(body, str) else ""
                sources[normalize(name)] = TemplateSource(
                    name.strip(),
                    subject if isinstance(subject, str) else "",
                    body,
                    lang if isinstance(lang, str) else "",
                    table.ref(pos, "subject"),
                    table.ref(pos, "body"),
                    is_html(body),
                )
        return cls(sources)

    def get(self, name: str) -> Compiled:
        """The compiled template; RenderError if it does not exist or does not compile."""
        key = normalize(name)
        if key in self._compiled:
            return self._compiled[key]
        source = self.sources.get(key)
        if source is None:
            hint = suggest(name, [s.name for s in self.sources.values()])
            raise RenderError(
                f'no template "{name}"'
                + (f' (did you mean "{hint}"?)' if hint else " in the Templates sheet or templates/email/")
            )
        for part, text in (("subject", source.subject), ("body", source.body)):
            if len(text) > MAX_TEMPLATE_CHARS:
                raise RenderError(
                    f'template "{source.name}" {part} is longer than {MAX_TEMPLATE_CHARS} characters'
                )
        try:
            compiled = Compiled(
                source,
                _TEXT_ENV.from_string(source.subject),
                (_HTML_ENV if source.html else _TEXT_ENV).from_string(source.body),
            )
        except TemplateSyntaxError as e:
            raise RenderError(f'template "{source.name}": {e.message} (line {e.lineno})') from None
        self._compiled[key] = compiled
        return compiled

    def render(self, name: str, context: dict[str, Any]) -> tuple[str, str, str | None]:
        """(subject, text, html) for one record; RenderError names the template, part and field."""
        compiled = self.get(name)
        out = []
        for part, template in (("subject", compiled.subject), ("body", compiled.body)):
            try:
                out.append(render(template, context))
            except RenderError as e:
                raise RenderError(f'template "{compiled.source.name}" {part}: {e}', e.field) from None
        subject, body = one_line(out[0]), out[1]
        if compiled.source.html:
            return subject, html_to_text(body), body
        return subject, body, None


# ---------------------------------------------------------------- sheetflow check


def known_fields(tables: Tables, settings: Settings) -> set[str]:
    """Top-level names a template may use: record columns, owner, contact, settings keys."""
    fields = {
        "owner",
        "contact",
        "deal",
        "ticket",
        "settings",
        "record",
        "today",
        "now",
        "rep",
        "items",
        "count",
        "sender_name",
        "sender_email",
        "reply_to",
    }
    for name in ("Contacts", "Deals", "Tickets"):
        table = tables[name]
        fields |= set(table.types)
        fields |= {normalize(h) for h in table.headers.values()}
    fields |= known_setting_keys(settings)
    return fields


def known_setting_keys(settings: Settings) -> set[str]:
    from .. import contract

    return {s.key for s in contract.SETTINGS} | set(settings.values)


def sample_context(tables: Tables, settings: Settings) -> dict[str, Any]:
    """Every known field filled with a placeholder: rendering with it finds misspelled attributes."""
    context: dict[str, Any] = {}
    for name in ("Tickets", "Deals", "Contacts"):
        table = tables[name]
        for col in list(table.types) + [normalize(h) for h in table.headers.values()]:
            context.setdefault(col, "x")
    rep_cols = {c: "x" for c in tables["Reps"].types}
    context.update({k: "x" for k in known_setting_keys(settings)})
    contact = Fields("contact", {c: "x" for c in tables["Contacts"].types})
    context.update(
        owner=Fields("owner", rep_cols),
        contact=contact,
        record=Fields("record", dict(context)),
        today="2026-01-01",
        now="2026-01-01 09:00",
        rep=Fields("rep", rep_cols),
        items=[{"subject": "x", "lines": ["x"], "rule": "x", "text": "x"}],
        count=1,
    )
    return context


def check_templates(tables: Tables, settings: Settings) -> list[Problem]:
    """Syntax, unknown merge fields (with a suggestion), size; and templates that rules name but nobody defines."""
    table = tables["Templates"]
    problems: list[Problem] = []
    fields = known_fields(tables, settings)
    seen: dict[str, str] = {}
    env = environment()
    if table.exists:
        for pos in range(len(table)):
            name = table.df["name"].iloc[pos]
            if not isinstance(name, str) or not name.strip():
                problems.append(
                    error(
                        table.ref(pos, "name"),
                        "template has no name",
                        "give it a name that send_email can use: template=NAME",
                    )
                )
                continue
            key = normalize(name)
            if key in seen:
                problems.append(
                    error(
                        table.ref(pos, "name"),
                        f'template "{name}" is defined twice',
                        f"the first one ({seen[key]}) is used; rename one of them",
                    )
                )
                continue
            seen[key] = table.ref(pos, "name")
            for column in ("subject", "body"):
                source = table.df[column].iloc[pos]
                if not isinstance(source, str) or not source.strip():
                    problems.append(error(table.ref(pos, column), f'template "{name}" has an empty {column}'))
                    continue
                problems += _check_source(
                    env, name, column, source, table.ref(pos, column), fields, tables, settings
                )
    for source in default_templates(tables.language).values():
        if normalize(source.name) in seen:
            continue
        for column, text in (("subject", source.subject), ("body", source.body)):
            problems += _check_source(
                env, source.name, column, text, source.body_ref, fields, tables, settings, unknown_ok=True
            )
    problems += _check_sequences(tables, TemplateSet.load(tables))
    return problems


def _check_source(
    env,
    name: str,
    column: str,
    source: str,
    where: str,
    fields: set[str],
    tables: Tables,  # noqa: ANN001
    settings: Settings,
    unknown_ok: bool = False,
) -> list[Problem]:
    if len(source) > MAX_TEMPLATE_CHARS:
        return [error(where, f"{column} is longer than {MAX_TEMPLATE_CHARS} characters")]
    try:
        parsed = env.parse(source)
    except TemplateSyntaxError as e:
        return [
            error(
                where,
                f'template "{name}" {column}: {e.message} (line {e.lineno})',
                "merge fields look like {{ first_name }}",
            )
        ]
    problems = []
    unknown = [
        f
        for f in sorted(meta.find_undeclared_variables(parsed))
        if f not in fields and normalize(f) not in fields
    ]
    for f in unknown:
        if unknown_ok:  # default files may use fields of sheets this workbook does not have
            continue
        hint = suggest(f, fields)
        problems.append(
            error(
                where,
                f'template "{name}" uses unknown field "{f}"',
                f'did you mean "{hint}"?' if hint else "use a column name of the record",
            )
        )
    if unknown:
        return problems
    # attributes (owner.nmae) and filters only show when rendering: render once with placeholders
    try:
        render(
            (_HTML_ENV if column == "body" and is_html(source) else _TEXT_ENV).from_string(source),
            sample_context(tables, settings),
        )
    except RenderError as e:
        if e.field and "." in e.field:
            head, _, attr = e.field.partition(".")
            pool = {
                "owner": tables["Reps"].types,
                "rep": tables["Reps"].types,
                "contact": tables["Contacts"].types,
            }.get(head, {})
            hint = suggest(attr, pool)
            problems.append(
                error(
                    where,
                    f'template "{name}" uses unknown field "{e.field}"',
                    f'did you mean "{head}.{hint}"?'
                    if hint
                    else f"{head} has: {', '.join(sorted(pool)) or 'name, email'}",
                )
            )
        else:
            problems.append(error(where, f'template "{name}" {column} cannot be rendered: {e}'))
    except TemplateError as e:  # pragma: no cover - render wraps these
        problems.append(error(where, f'template "{name}" {column}: {e}'))
    return problems


def _check_sequences(tables: Tables, templates: TemplateSet) -> list[Problem]:
    """Sequence steps must name a template that exists (Automations' send_email is checked with the rule)."""
    problems: list[Problem] = []
    sequences = tables["Sequences"]
    for pos in range(len(sequences)):
        name = sequences.df["template"].iloc[pos]
        if isinstance(name, str) and name.strip() and normalize(name) not in templates.sources:
            problems.append(
                error(
                    sequences.ref(pos, "template"),
                    f'no template "{name.strip()}"',
                    _missing_hint(name, templates),
                )
            )
    return problems


def _missing_hint(name: str, templates: TemplateSet) -> str:
    hint = suggest(name, [s.name for s in templates.sources.values()])
    return f'did you mean "{hint}"?' if hint else "add it to the Templates sheet"


def escape_html(text: str) -> str:
    return html_lib.escape(text)

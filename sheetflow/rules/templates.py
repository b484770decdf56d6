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

import functools
import html as html_lib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from sheetflow import contract
from sheetflow.coltypes import ColumnType
from sheetflow.compose.headers import header_text
from sheetflow.data import data_dir
from sheetflow.names import normalize, suggest
from sheetflow.problems import Problem, error
from sheetflow.rules.sandbox import (
    MAX_LOOP_ITEMS,
    MAX_OUTPUT_CHARS,
    MAX_RENDER_SECONDS,
    MAX_TEMPLATE_CHARS,
    Fields,
    RenderError,
    environment,
    render_batch,
    shown,
    template_id,
)
from sheetflow.tables.settings import Settings
from sheetflow.tables.table import Tables

__all__ = [
    "MAX_LOOP_ITEMS",
    "MAX_OUTPUT_CHARS",
    "MAX_RENDER_SECONDS",
    "MAX_TEMPLATE_CHARS",
    "Fields",
    "RenderError",
    "TemplateSet",
    "check_templates",
    "environment",
    "render_text",
]

MAX_SUBJECT_CHARS = 250

_HTML = re.compile(
    r"<\s*/?\s*(html|body|head|p|br|div|table|tr|td|a|b|i|u|strong|em|h[1-6]|ul|ol|li|span|img|hr)\b[^>]*>",
    re.IGNORECASE,
)


def is_html(body: str) -> bool:
    return bool(_HTML.search(body))


def render_text(source: str, context: dict[str, Any], *, html: bool = False) -> str:
    """One template text rendered in the sandbox (see :mod:`.sandbox`); RenderError if it cannot be."""
    tid = template_id(source, html)
    (out,) = render_batch({tid: (source, html)}, [((tid,), context)])
    if isinstance(out[-1], RenderError):
        raise out[-1]
    return out[0]


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


def default_folder() -> Path:
    """``templates/email``: the packaged copy in a wheel, the repository folder in a checkout."""
    return data_dir("templates") / "email"


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
    broken: dict[str, RenderError] = field(default_factory=dict)  # template ids that hit a limit this run

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

    def source(self, name: str) -> TemplateSource:
        """The template called ``name`` (names match like headers); RenderError if there is none."""
        source = self.sources.get(normalize(name))
        if source is None:
            hint = suggest(name, [s.name for s in self.sources.values()])
            raise RenderError(
                f'no template "{name}"'
                + (f' (did you mean "{hint}"?)' if hint else " in the Templates sheet or templates/email/")
            )
        return source

    def render_many(
        self, name: str, contexts: list[dict[str, Any]]
    ) -> list[tuple[str, str, str | None] | RenderError]:
        """(subject, text, html) per context, or a RenderError naming the template, part, field and cell.

        All contexts render in one batch in the sandbox (:func:`.sandbox.render_batch`); a template that
        hits a resource limit is broken for the rest of this TemplateSet's run."""
        try:
            src = self.source(name)
        except RenderError as e:
            return [e] * len(contexts)
        sid, bid = template_id(src.subject, False), template_id(src.body, src.html)
        sources = {sid: (src.subject, False), bid: (src.body, src.html)}
        outs = render_batch(sources, [((sid, bid), c) for c in contexts], self.broken)
        results: list[tuple[str, str, str | None] | RenderError] = []
        for out in outs:
            last = out[-1]
            if isinstance(last, RenderError):
                part = "subject" if len(out) == 1 else "body"
                err = RenderError(f'template "{src.name}" {part}: {last}', last.field, last.kind)
                err.where = src.subject_ref if part == "subject" else src.body_ref
                results.append(err)
                continue
            subject, body = one_line(out[0]), out[1]
            results.append((subject, html_to_text(body), body) if src.html else (subject, body, None))
        return results

    def render(self, name: str, context: dict[str, Any]) -> tuple[str, str, str | None]:
        """(subject, text, html) for one record; RenderError names the template, part and field."""
        (result,) = self.render_many(name, [context])
        if isinstance(result, RenderError):
            raise result
        return result


# ---------------------------------------------------------------- sheetflow check

NOTIFICATION = "notification"  # the digest template: its fields are rep, items, count (not a record's)


def known_fields(tables: Tables, settings: Settings, *, template: str = "") -> set[str]:
    """Top-level names a template may use: for a record's email its columns (and headers), owner,
    contact, deal/ticket, record, today, now and the settings keys; for the ``notification`` digest rep,
    owner, items, count and the settings keys. These are exactly the names a run gives
    (:meth:`.planner.MailPlanner.context`), so ``check`` and ``run`` agree."""
    fields = {"settings", "sender_name", "sender_email", "reply_to"} | known_setting_keys(settings)
    if normalize(template) == NOTIFICATION:
        return fields | {"rep", "owner", "items", "count"}
    fields |= {"owner", "contact", "deal", "ticket", "record", "today", "now"}
    for name in ("Contacts", "Deals", "Tickets"):
        table = tables[name]
        fields |= set(table.types)
        fields |= {normalize(h) for h in table.headers.values()}
    return fields


def known_setting_keys(settings: Settings) -> set[str]:
    return {s.key for s in contract.SETTINGS} | set(settings.values)


def _sample(table, column: str) -> Any:  # noqa: ANN001 - a Table
    """A placeholder of the column's type, shown as a real value would be (numbers, dates)."""
    kind = table.types.get(column, ColumnType.TEXT)
    value: Any = {
        ColumnType.NUMBER: 1.0,
        ColumnType.DATE: _sample_date(),
        ColumnType.BOOL: True,
    }.get(kind, "x")
    return shown(value, column, day_first=False, decimal_comma=False)


def _sample_date():  # noqa: ANN202
    import datetime as dt

    return dt.datetime(2026, 1, 1)


def _sample_fields(table) -> dict[str, Any]:  # noqa: ANN001
    out = {c: _sample(table, c) for c in table.types}
    for col, header in table.headers.items():
        out.setdefault(normalize(header), out.get(col, "x"))
    return out


def sample_context(tables: Tables, settings: Settings, *, template: str = "") -> dict[str, Any]:
    """Every field a run gives this template, filled with a placeholder of its type: rendering with it
    finds misspelled attributes, unknown filters and templates that fail for any record."""
    context: dict[str, Any] = {k: "x" for k in known_setting_keys(settings)}
    context["settings"] = Fields("settings", dict(context))
    rep = Fields("rep", _sample_fields(tables["Reps"]), "x")
    if normalize(template) == NOTIFICATION:
        context.update(
            rep=rep,
            owner=rep,
            items=[
                Fields(
                    "item",
                    {
                        "subject": "x",
                        "lines": ["x"],
                        "rule": "x",
                        "record": "x",
                        "text": "x",
                        "occurrence": "x",
                    },
                    "x",
                )
            ],
            count=1,
        )
        return context
    for name in ("Tickets", "Deals", "Contacts"):
        for col, value in _sample_fields(tables[name]).items():
            context.setdefault(col, value)
    contact = Fields("contact", _sample_fields(tables["Contacts"]), "x")
    context.update(
        owner=Fields("owner", _sample_fields(tables["Reps"]), "x"),
        contact=contact,
        deal=Fields("deal", _sample_fields(tables["Deals"])),
        ticket=Fields("ticket", _sample_fields(tables["Tickets"])),
        record=Fields("record", dict(context)),
        today="01/01/2026",
        now="01/01/2026 09:00",
    )
    return context


@dataclass
class _Part:
    name: str  # template name
    column: str  # subject | body
    source: str
    where: str
    html: bool
    unknown_ok: bool = False


def check_templates(tables: Tables, settings: Settings) -> list[Problem]:
    """Syntax, unknown merge fields (with a suggestion), size, resource limits; and templates that rules
    name but nobody defines. Every template renders once in the run's sandbox with a placeholder record."""
    table = tables["Templates"]
    problems: list[Problem] = []
    parts: list[_Part] = []
    seen: dict[str, str] = {}
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
                html = column == "body" and is_html(source)
                parts.append(_Part(name, column, source, table.ref(pos, column), html))
    for source in default_templates(tables.language).values():
        if normalize(source.name) in seen:
            continue
        for column, text in (("subject", source.subject), ("body", source.body)):
            html = column == "body" and source.html
            parts.append(_Part(source.name, column, text, source.body_ref, html, unknown_ok=True))
    problems += _check_parts(parts, tables, settings)
    problems += _check_sequences(tables, TemplateSet.load(tables))
    return problems


def _check_parts(parts: list[_Part], tables: Tables, settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    sources: dict[str, tuple[str, bool]] = {}
    items: list[tuple[tuple[str, ...], Any] | None] = []
    for part in parts:
        if len(part.source) > MAX_TEMPLATE_CHARS:
            problems.append(
                error(part.where, f"{part.column} is longer than {MAX_TEMPLATE_CHARS} characters")
            )
            items.append(None)
            continue
        tid = template_id(part.source, part.html)
        sources[tid] = (part.source, part.html)
        items.append((("?" + tid, tid), sample_context(tables, settings, template=part.name)))
    todo = [i for i in items if i is not None]
    outs = iter(render_batch(sources, todo, {}))
    for part, item in zip(parts, items):
        if item is None:
            continue
        problems += _judge(part, next(outs), tables, settings)
    return problems


def _judge(part: _Part, out: list[Any], tables: Tables, settings: Settings) -> list[Problem]:
    name, column, where = part.name, part.column, part.where
    if isinstance(out[0], RenderError):
        return [
            error(
                where,
                f'template "{name}" {column}: {out[0]}',
                "merge fields look like {{ first_name }}",
            )
        ]
    fields = known_fields(tables, settings, template=name)
    unknown = [f for f in out[0].split("\x1f") if f and f not in fields and normalize(f) not in fields]
    if unknown:
        if part.unknown_ok:  # default files may use fields of sheets this workbook does not have
            return []
        return [
            error(
                where,
                f'template "{name}" uses unknown field "{f}"',
                f'did you mean "{hint}"?'
                if (hint := suggest(f, fields))
                else "use a column name of the record",
            )
            for f in unknown
        ]
    result = out[-1]
    if not isinstance(result, RenderError):
        return []
    if result.field and "." in result.field:
        head, _, attr = result.field.partition(".")
        pool = {
            "owner": tables["Reps"].types,
            "rep": tables["Reps"].types,
            "contact": tables["Contacts"].types,
            "deal": tables["Deals"].types,
            "ticket": tables["Tickets"].types,
        }.get(head, {})
        hint = suggest(attr, pool)
        return [
            error(
                where,
                f'template "{name}" uses unknown field "{result.field}"',
                f'did you mean "{head}.{hint}"?'
                if hint
                else f"{head} has: {', '.join(sorted(pool)) or 'name, email'}",
            )
        ]
    return [error(where, f'template "{name}" {column} cannot be rendered: {result}')]


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

"""Fuzz the template sandbox: random templates built from the pieces hostile templates are made of.

    python benchmarks/fuzz_templates.py [N] [SEED]     # default 2000 templates, seed 20

Every template renders (as an email subject + body, in batches, the way a run renders) with merge
fields that carry hostile data (encoded words, CR/LF, control characters, huge text). Each outcome must
be a text or a RenderError — no other exception, no hang — and no text may show a Python object
(``<function``, ``<class``, ``<bound method``, ``__``). The rendered subject is then built into a real
message, whose header block must pass :func:`sheetflow.compose.headers.verify` (no injected header).

The suite runs :func:`fuzz` on a small seeded sample (``tests/rules/test_mail_fuzz.py``); the counts of a
longer run are in README.md (Email: limits).
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sheetflow.compose.headers import HeaderFields, UnsafeMessage, compose  # noqa: E402
from sheetflow.rules.sandbox import CellDate, CellNumber, Fields, RenderError, render_batch, template_id  # noqa: E402
from sheetflow.rules.templates import one_line  # noqa: E402

FIELDS = ["first_name", "company", "amount", "created_at", "owner", "contact", "notes", "items"]
RARE_FIELDS = ["missing", "self", "config", "loop", "caller", "varargs", "request"]
FILTERS = [
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "length",
    "list",
    "first",
    "last",
    "reverse",
    "sort",
    "unique",
    "join",
    "join(', ')",
    "replace('a', 'bb')",
    "center(40)",
    "center(99999999999)",
    "truncate(5)",
    "truncate(-1)",
    "wordwrap(3)",
    "indent(4)",
    "format(1)",
    "int",
    "float",
    "abs",
    "round(2)",
    "string",
    "e",
    "safe",
    "striptags",
    "urlencode",
    "urlize",
    "tojson",
    "pprint",
    "attr('__class__')",
    "map('upper')",
    "select",
    "reject",
    "batch(3)",
    "slice(3)",
    "sum",
    "min",
    "max",
    "dictsort",
    "default('x')",
    "capitalise",
    "filesizeformat",
    "wordcount",
    "xmlattr",
    "random",
    "groupby('x')",
    "items",
]
EXPRESSIONS = [
    "{f}",
    "{f}.upper()",
    "{f}.format",
    "{f}.__class__",
    "{f}.__class__.__mro__",
    "{f}[0]",
    "{f}[1:3]",
    "{f} ~ {f}",
    "{f} * 3",
    "{f} * 999999",
    "({f})",
    "{f} is defined",
    "{f} | {flt}",
    "{f} | {flt} | {flt}",
    "range(5)",
    "range(99999999)",
    "10 ** 10000",
    "2 ** 64",
    "'x' * 400000",
    "lipsum(3)",
    "lipsum(100000)",
    "namespace(a=1)",
    "dict(a=1)",
    "cycler(1,2)",
    "joiner()",
    "{f}.items()",
    "owner.name",
    "owner.nmae",
    "contact.email",
    "self",
    "self._TemplateReference__context",
    "config",
    "request",
    "''.__class__",
    "().__class__.__base__.__subclasses__()",
    "{f}.__init__.__globals__",
    "loop",
    "caller",
    "varargs",
    "'=?utf-8?q?=0D=0ABcc:_x@evil.net?='",
    "'\\r\\nBcc: x@evil.net'",
    "[1,2,3] | sum",
    "{f} > 1",
    "{f} + 1",
    "{f} / 0",
    "{f} // 0",
    "{f} % 0",
    "-{f}",
    "not {f}",
    "{f} in 'abc'",
]
STATEMENTS = [
    "{{% for x in {e} %}}{body}{{% endfor %}}",
    "{{% for x in {e} %}}{{% for y in {e} %}}{body}{{% endfor %}}{{% endfor %}}",
    "{{% if {e} %}}{body}{{% else %}}{body}{{% endif %}}",
    "{{% set v = {e} %}}{body}{{{{ v }}}}",
    "{{% set ns = namespace(s='x') %}}{{% for i in range(40) %}}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}",
    "{{% macro m(a) %}}{{{{ a }}}}{{{{ m(a) }}}}{{% endmacro %}}{{{{ m(1) }}}}",
    "{{% raw %}}{{{{ {e} }}}}{{% endraw %}}",
    "{{% with v = {e} %}}{body}{{% endwith %}}",
    "{{% include 'x' %}}",
    "{{% import 'x' as y %}}",
    "{{% extends 'base' %}}",
    "{{% filter upper %}}{body}{{% endfilter %}}",
    "{{{{ {e} }}}}",
    "{{{{ {e} }}}}",
    "{{{{ {e} }}}}",
    "plain text ",
    "{{{{ ",
    "{{% for %}}",
    "}}}} {{% endif %}}",
]
HOSTILE = [
    "Bob =?utf-8?q?=0D=0AReply-To:_attacker@evil-corp.net?=",
    "Eve\r\nBcc: evil@x.com",
    "a\x00b\x1b[2Jc\x85d\u2028e",
    "x" * 5000,
    "{{ 7*7 }}",
    "<script>alert(1)</script>",
    "",
]
SAFE_FILTERS = ["upper", "lower", "title", "trim", "length", "e", "string", "default('x')", "truncate(9)"]
SAFE_EXPRESSIONS = ["{f}", "{f} | {flt}", "{f} ~ {f}", "{f} is defined", "{f}.upper()", "{f}[0:3]", "{f}"]
SAFE_STATEMENTS = [
    "{{{{ {e} }}}}",
    "{{% if {e} %}}{body}{{% else %}}{body}{{% endif %}}",
    "{{% for x in {e} %}}{body}{{% endfor %}}",
    "{{% set v = {e} %}}{body}{{{{ v }}}}",
    "Hi {{{{ {e} }}}}, ",
]
BAD_TEXT = ("<function", "<built-in", "<bound method", "<class", "<module", "__globals__", "<jinja2")


def generate(rng: random.Random) -> str:
    """One random template: a few statements nested at most three deep."""

    def pick(common: list[str], rare: list[str], p_rare: float = 0.05) -> str:
        return rng.choice(rare if rng.random() < p_rare else common)

    def expression() -> str:
        field = pick(FIELDS, RARE_FIELDS)
        flt = pick(SAFE_FILTERS, FILTERS, 0.15)
        return pick(SAFE_EXPRESSIONS, EXPRESSIONS, 0.1).format(f=field, flt=flt)

    def statement(depth: int) -> str:
        body = statement(depth + 1) if depth < 3 and rng.random() < 0.5 else rng.choice(["x", "{{ x }}", ""])
        return pick(SAFE_STATEMENTS, STATEMENTS, 0.08).format(e=expression(), body=body)

    return "".join(statement(0) for _ in range(rng.randint(1, 3)))


def context(rng: random.Random) -> dict[str, object]:
    hostile = rng.choice(HOSTILE)
    amount = CellNumber(34.3)
    amount.text = "34,30"
    created = CellDate(2026, 3, 5)
    created.shown_as = "%d/%m/%Y"
    return {
        "first_name": hostile,
        "company": rng.choice(HOSTILE),
        "amount": amount,
        "created_at": created,
        "owner": Fields("owner", {"name": hostile, "email": "ana@acme.com"}, hostile),
        "contact": Fields("contact", {"first_name": hostile, "email": "bob@cust.com"}, hostile),
        "notes": rng.choice(HOSTILE),
        "items": [{"subject": hostile, "lines": [hostile]}],
        "x": rng.choice(HOSTILE),
    }


def fuzz(n: int, seed: int = 20, batch: int = 50) -> Counter:
    """Render ``n`` random templates; returns counts by outcome. AssertionError on any escape."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    done = 0
    while done < n:
        size = min(batch, n - done)
        sources: dict[str, tuple[str, bool]] = {}
        items = []
        for _ in range(size):
            subject, body = generate(rng), generate(rng)
            sid, bid = template_id(subject, False), template_id(body, rng.random() < 0.3)
            sources[sid] = (subject, False)
            sources[bid] = (body, bid.startswith("h"))
            items.append(((sid, bid), context(rng)))
        for out in render_batch(sources, items, {}):
            last = out[-1]
            if isinstance(last, RenderError):
                counts[f"error: {last.kind}"] += 1
                continue
            assert all(isinstance(part, str) for part in out), out
            for part in out:
                shown = part[:2000]
                assert not any(bad in shown for bad in BAD_TEXT), shown
            counts["rendered"] += 1
            subject = one_line(out[0])
            fields = HeaderFields(
                sender="sales@acme.com",
                sender_name=out[0][:80],
                to="bob@cust.com",
                to_name=out[1][:80],
                subject=subject,
                message_id="<Ek@acme.com>",
                date=dt.datetime(2026, 3, 5, tzinfo=dt.timezone.utc),
                key="Ek",
            )
            try:
                compose(fields, out[1][:5000] or "x", None)
            except UnsafeMessage as e:  # pragma: no cover - the point of the exercise
                raise AssertionError(
                    f"header check refused a sanitised message: {e}; subject={subject!r}"
                ) from e
            counts["messages verified"] += 1
        done += size
    return counts


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    started = time.monotonic()
    counts = fuzz(n, seed)
    elapsed = time.monotonic() - started
    print(
        f"{n} templates (seed {seed}) in {elapsed:.1f} s: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )


if __name__ == "__main__":
    main()

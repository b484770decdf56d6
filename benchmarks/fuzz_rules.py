"""Fuzz the ``when`` rule language: random and mutated expressions must compile to a rule or to a
WhenError, evaluate to one bool per row, finish quickly, and never reach the outside world.

    python benchmarks/fuzz_rules.py 20000 [--seed 1] [--budget 2.0]

Expressions come from a small grammar of the language (every column type, literal form, operator,
function, pt-BR spelling, catastrophic regular expressions, far dates, huge numbers, deep nesting) and
from mutations of those (characters deleted, inserted from a junk set with control characters, quotes,
brackets and Python escape attempts, slices duplicated, text cut). Each one is compiled against a schema
and evaluated over a frame of hostile values (NaN, empty, 1e308, the first and last dates pandas holds,
NUL bytes, 10,000-character texts, a 30-``a`` text that hangs backtracking regexes).

Checked for every expression:

* crash: compiling raises something other than WhenError, or evaluating raises anything;
* shape: the mask is not one bool per row;
* hang: compile + evaluate takes longer than ``--budget`` seconds (an interval timer interrupts it);
* escape: while it runs, an audit event that a rule has no business causing (a process, a socket, a file
  opened for writing, ``exec``/``compile`` of code outside an import).

The suite runs a few hundred expressions of this (tests/rules/test_fuzz_rules.py); the README has the counts of
a long run. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sheetflow.coerce import Locale  # noqa: E402
from sheetflow.coltypes import ColumnType  # noqa: E402
from sheetflow.rules.expr import Frame, Schema, WhenError, compile_when  # noqa: E402

T = ColumnType
COLUMNS = {
    "title": T.TEXT,
    "email": T.TEXT,
    "country": T.TEXT,
    "company_size": T.NUMBER,
    "faturamento": T.NUMBER,
    "created_at": T.DATE,
    "last_activity_at": T.DATE,
    "unsubscribed": T.BOOL,
    "cliente_vip": T.BOOL,
    "e": T.TEXT,  # a column named like a keyword
}
ALIASES = {
    "cargo": "title",
    "tamanho_da_empresa": "company_size",
    "criado_em": "created_at",
    "país": "country",
}
BY_TYPE = {t: [c for c, k in COLUMNS.items() if k is t] for t in T}

CATASTROPHIC = [
    "(a+)+$",
    "(a*)*$",
    "(a|a)*$",
    "(a|aa)+$",
    "(.*a){20}",
    "(a?){25}a{25}",
    "^(a+)+b",
    "(x+x+)+y",
    "(\\\\w+\\\\s?)*$",
    "(a|b|ab)*c",
    "((a+)+)+b",
    "(a)\\\\1",
    "(?=a)a",
    "((a{100}){100}){100}",
    "[",
    "(?P<x>a)",
    "\\\\d+",
    "^vp",
]
ESCAPES = [
    '__import__("os").system("touch /tmp/sheetflow-pwned")',
    "().__class__.__bases__[0].__subclasses__()",
    'eval("1+1")',
    'exec("import os")',
    'open("/etc/passwd")',
    "lambda: 1",
    "title.__class__",
    "{{ 7*7 }}",
    "${7*7}",
    "'; DROP TABLE contacts; --",
    '=HYPERLINK("http://x")',
    "globals()",
    "getattr(title, 'upper')",
    "[__builtins__]",
    "import os",
]
JUNK = list("()[]\"'“”‘’\\,.;:=<>!&|+-*/%^~`@#$?{}_") + [
    "\x00",
    "\x1b",
    "\n",
    "\t",
    "\u200b",
    "é",
    "Ç",
    "⁰",
    "٣",
]
WORDS = [
    "and",
    "or",
    "not",
    "e",
    "ou",
    "não",
    "in",
    "em",
    "is",
    "é",
    "está",
    "empty",
    "vazio",
    "contains",
    "contém",
]


def _literal(rng: random.Random, kind: ColumnType | None = None) -> str:
    kind = kind or rng.choice(list(T))
    if kind is T.NUMBER:
        return rng.choice(
            [
                "0",
                "1",
                "-3",
                "2.5",
                "1.000",
                "12.500.000",
                "1e308",
                "99999999999999999999",
                ".5",
                '"1.234,56"',
                '"R$ 2.500"',
                '"abc"',
                "1e400",
            ]
        )
    if kind is T.DATE:
        return rng.choice(
            [
                '"2026-03-01"',
                '"2026-03-01 14:30"',
                '"01/02/2026"',
                '"31/02/2026"',
                '"9999-12-31"',
                '"0001-01-01"',
                '"2300-01-01"',
                '"2026-05-15T02:00:00Z"',
                "today()",
                "hoje()",
            ]
        )
    if kind is T.BOOL:
        return rng.choice(["TRUE", "FALSE", "verdadeiro", "falso", '"sim"', '"x"'])
    return rng.choice(
        ['"director"', '""', '"  "', "'it''s'", '"a\\"b"', '"ação"', '"' + "a" * 30 + '"', '"\\d+"', "12345"]
    )


def _column(rng: random.Random, kind: ColumnType | None = None) -> str:
    if kind is None and rng.random() < 0.1:
        return rng.choice(
            ["titel", "[Company Size]", "[]", "[e]", "unknown_col", "[país]", "cargo", "tamanho_da_empresa"]
        )
    name = rng.choice(BY_TYPE[kind] if kind else list(COLUMNS))
    return f"[{name}]" if name == "e" or rng.random() < 0.1 else name


def _value(rng: random.Random, depth: int, kind: ColumnType | None = None) -> str:
    kind = kind or rng.choice(list(T))
    roll = rng.random()
    if depth > 4 or roll < 0.35:
        return _column(rng, kind)
    if roll < 0.6:
        return _literal(rng, kind)
    if kind is T.NUMBER:
        return rng.choice(
            [
                f"{_value(rng, depth + 1, T.NUMBER)} {rng.choice('+-*/')} {_value(rng, depth + 1, T.NUMBER)}",
                f"days_since({_value(rng, depth + 1, T.DATE)})",
                f"dias_ate({_value(rng, depth + 1, T.DATE)})",
                f"len({_value(rng, depth + 1, T.TEXT)})",
                f"year({_value(rng, depth + 1, T.DATE)})",
                f"abs(-{_value(rng, depth + 1, T.NUMBER)})",
                f"{_value(rng, depth + 1, T.DATE)} - {_value(rng, depth + 1, T.DATE)}",
            ]
        )
    if kind is T.DATE:
        return f"{_value(rng, depth + 1, T.DATE)} {rng.choice('+-')} {_value(rng, depth + 1, T.NUMBER)}"
    if kind is T.TEXT:
        return (
            rng.choice(["lower", "upper", "trim", "domain", "dominio"])
            + f"({_value(rng, depth + 1, T.TEXT)})"
        )
    return f"({_condition(rng, depth + 1)})"


def _condition(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 5 and roll < 0.25:
        joiner = rng.choice([" and ", " or ", " e ", " ou ", " AND "])
        return joiner.join(_condition(rng, depth + 1) for _ in range(rng.randint(2, 3)))
    if depth < 5 and roll < 0.35:
        return rng.choice(["not ", "não ", "NOT "]) + f"({_condition(rng, depth + 1)})"
    kind = rng.choice(list(T))
    left = _value(rng, depth + 1, kind)
    roll = rng.random()
    if roll < 0.45:
        op = rng.choice(["=", "==", "!=", "<>", "<", "<=", ">", ">=", "≠", "≥"])
        right = _value(rng, depth + 1, kind if rng.random() < 0.8 else None)
        return f"{left} {op} {right}"
    if roll < 0.6:
        word = rng.choice(["contains", "starts with", "ends with", "contém", "começa com", "not contains"])
        return f"{_column(rng, T.TEXT)} {word} {_literal(rng, T.TEXT)}"
    if roll < 0.7:
        return f'{_column(rng, T.TEXT)} {rng.choice(["matches", "not matches"])} "{rng.choice(CATASTROPHIC)}"'
    if roll < 0.8:
        items = ", ".join(_literal(rng, kind) for _ in range(rng.randint(1, 4)))
        return f"{left} {rng.choice(['in', 'not in', 'em'])} ({items})"
    if roll < 0.9:
        return (
            f"{left} {rng.choice(['is empty', 'is not empty', 'está vazio', 'não está vazio', 'is blank'])}"
        )
    return _column(rng, T.BOOL)


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        i = rng.randint(0, len(text))
        if roll < 0.3 and text:
            text = text[: max(0, i - 1)] + text[i:]
        elif roll < 0.6:
            text = text[:i] + rng.choice(JUNK + WORDS) + text[i:]
        elif roll < 0.75:
            j = rng.randint(i, len(text))
            text = text[:j] + text[i:j] + text[j:]
        elif roll < 0.85:
            text = text[:i]
        else:
            text = text[:i] + " " + rng.choice(ESCAPES) + " " + text[i:]
    return text


def expressions(count: int, seed: int) -> list[str]:
    """``count`` expressions: grammar ones, mutated ones, escape attempts and nesting bombs."""
    rng = random.Random(seed)
    out: list[str] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.45:
            out.append(_condition(rng))
        elif roll < 0.9:
            out.append(_mutate(rng, _condition(rng)))
        elif roll < 0.95:
            out.append(rng.choice(ESCAPES))
        else:
            depth = rng.choice([10, 49, 51, 200, 5000])
            out.append(
                "(" * depth + "company_size > 1" + ")" * depth if n % 2 else "not " * depth + "unsubscribed"
            )
    return out


def hostile_frame(rows: int = 64) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    texts = [
        "a" * 30 + "!",
        "",
        None,
        "  ",
        "Ação",
        "x\x00y",
        "VP Sales",
        "ana@acme.com",
        "z" * 10_000,
        "١٢٣",
    ]
    numbers = [np.nan, 0.0, 1e308, -1e308, 2.5, 1000.0, -0.0, 5e-324]
    dates = [pd.NaT, pd.Timestamp("1677-09-22"), pd.Timestamp("2262-04-10"), pd.Timestamp("2026-03-01 14:30")]
    bools = [True, False, None]
    data = {}
    for name, kind in COLUMNS.items():
        pool = {T.TEXT: texts, T.NUMBER: numbers, T.DATE: dates, T.BOOL: bools}[kind]
        picks = [pool[i] for i in rng.integers(0, len(pool), rows)]
        if kind is T.TEXT:
            data[name] = pd.Series(picks, dtype="str")
        elif kind is T.NUMBER:
            data[name] = pd.Series(picks, dtype="float64")
        elif kind is T.DATE:
            data[name] = pd.Series(pd.to_datetime(picks), dtype="datetime64[ns]")
        else:
            data[name] = pd.Series(picks, dtype="boolean")
    return pd.DataFrame(data)


# ---------------------------------------------------------------- the watchdogs

_WATCHING = False
_EVENTS: list[tuple[str, tuple]] = []
_ALWAYS_BAD = (
    "os.system",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.fork",
    "subprocess.",
    "socket.",
    "ctypes.",
)
_HOOKED = False


def _audit(event: str, args: tuple) -> None:
    if _WATCHING and (event in ("exec", "compile", "import", "open") or event.startswith(_ALWAYS_BAD)):
        _EVENTS.append((event, args))


def _escaped(events: list[tuple[str, tuple]]) -> str:
    """The first event a rule must not cause ("" if none). Imports (pandas loads parts lazily) may exec
    code and read files; nothing may write a file, start a process or open a socket."""
    importing = any(e == "import" for e, _ in events)
    for event, args in events:
        if event.startswith(_ALWAYS_BAD):
            return event
        if event == "open":
            mode = args[1] if len(args) > 1 else "r"
            flags = args[2] if len(args) > 2 else 0
            if (isinstance(mode, str) and any(m in mode for m in "wax+")) or (
                isinstance(flags, int) and flags & 3
            ):
                return f"open for writing {args[0]!r}"
        elif event in ("exec", "compile") and not importing:
            return event
    return ""


class _Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Timeout


@dataclass
class Report:
    total: int = 0
    compiled: int = 0
    rejected: int = 0
    crashes: list[tuple[str, str]] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    escapes: list[tuple[str, str]] = field(default_factory=list)
    bad_shape: list[str] = field(default_factory=list)
    slowest: float = 0.0
    slowest_expression: str = ""
    errors: Counter = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        return not (self.crashes or self.hangs or self.escapes or self.bad_shape)


def fuzz(count: int, seed: int = 1, budget: float = 2.0) -> Report:
    """Run ``count`` expressions; see the module docstring for what is checked."""
    global _WATCHING, _HOOKED
    if not _HOOKED:  # an audit hook cannot be removed: install one, switched by _WATCHING
        sys.addaudithook(_audit)
        _HOOKED = True
    schemas = [
        Schema(COLUMNS, ALIASES, locale=Locale("pt-BR", "America/Sao_Paulo")),
        Schema(COLUMNS, ALIASES, locale=Locale("en-US", "America/New_York")),
    ]
    frame_rows = 64
    df = hostile_frame(frame_rows)
    for warm in (
        'title matches "a"',
        "titel > 1",
        "foo(1)",
        'domain(email) = "x" and days_since(created_at) > 1',
    ):
        try:  # load what pandas and rapidfuzz import lazily before watching
            compile_when(warm, schemas[0]).mask(Frame(df, dt.date(2026, 3, 2)))
        except WhenError:
            pass
    report = Report()
    use_timer = hasattr(signal, "setitimer")
    previous = signal.signal(signal.SIGALRM, _alarm) if use_timer else None
    try:
        for n, source in enumerate(expressions(count, seed)):
            report.total += 1
            schema = schemas[n % 2]
            frame = Frame(df, dt.date(2026, 3, 2))  # a fresh cache per expression
            _EVENTS.clear()
            started = time.perf_counter()
            if use_timer:
                signal.setitimer(signal.ITIMER_REAL, budget)
            _WATCHING = True
            try:
                rule = compile_when(source, schema)
                mask = rule.mask(frame)
                report.compiled += 1
                if len(mask) != frame_rows or mask.dtype != bool:
                    report.bad_shape.append(source)
            except WhenError as e:
                report.rejected += 1
                report.errors[str(e).split(" ")[0]] += 1
            except _Timeout:
                report.hangs.append(source)
            except Exception as e:  # noqa: BLE001 - finding these is the point
                report.crashes.append((source, f"{type(e).__name__}: {e}"[:300]))
            finally:
                _WATCHING = False
                if use_timer:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            elapsed = time.perf_counter() - started
            if elapsed > report.slowest:
                report.slowest, report.slowest_expression = elapsed, source
            escaped = _escaped(list(_EVENTS))
            if escaped:
                report.escapes.append((source, escaped))
    finally:
        if use_timer:
            signal.signal(signal.SIGALRM, previous)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, nargs="?", default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per expression")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = fuzz(args.count, args.seed, args.budget)
    took = time.perf_counter() - started
    print(
        f"{report.total} expressions in {took:.1f} s (seed {args.seed}): {report.compiled} compiled and "
        f"evaluated, {report.rejected} rejected with a message; crashes {len(report.crashes)}, hangs "
        f"{len(report.hangs)}, escapes {len(report.escapes)}, wrong shapes {len(report.bad_shape)}; slowest "
        f"{report.slowest * 1000:.0f} ms"
    )
    for source, what in report.crashes[:10] + report.escapes[:10]:
        print(f"  {what}: {source!r}")
    for source in report.hangs[:10]:
        print(f"  hang: {source!r}")
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())

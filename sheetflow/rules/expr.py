"""The ``when`` rule language: a small, safe condition language compiled to vectorised pandas masks.

Usage::

    schema = Schema({"title": ColumnType.TEXT, "company_size": ColumnType.NUMBER}, {"cargo": "title"})
    rule = compile_when('cargo contains "director" and company_size >= 50', schema)  # or WhenError
    frame = Frame(contacts_df, today=datetime.date(2026, 3, 15))   # share one Frame across rules
    hits = rule.mask(frame)   # bool Series, same index as contacts_df, never missing

A ``when`` cell (Scoring, Assignment, Automations, Sequences) is written by people who know
spreadsheets, not Python, and it is evaluated over every record of a table on every run. So:

* It is parsed by a hand-written tokenizer and recursive-descent parser into an AST, and the AST is
  compiled into closures over whole columns. Nothing here calls ``eval``/``exec``/``compile()``,
  ``pandas.eval`` or ``DataFrame.query``: an expression can only name columns, literals and the
  functions listed below, so it can never run code or reach files.
* Every user mistake is a :class:`WhenError` whose text is a sentence (the caller prefixes the cell,
  ``Scoring!B4: ...``). Positions in messages count from 1, as a person counts characters;
  :attr:`WhenError.position` is the 0-based offset for programs.
* Evaluation is vectorised. A :class:`Frame` caches each column's converted and normalised form, and
  every sub-expression result by a structural key, so 100 rules over the same table share the work.
  Text is factorized (distinct values + integer codes): text operations run once per distinct value
  and are spread back to the rows with one integer ``take``.

The language (keywords are case-insensitive; pt-BR spellings in parentheses)
----------------------------------------------------------------------------
* Columns: bare words (``company_size``, ``país``) or brackets for any header (``[Company Size]``).
  Both go through :meth:`Schema.resolve`, so aliases work (``cargo`` = ``title``). A column whose name
  is a keyword (``e``, ``in``, ``is``, ``contains``...) must be written in brackets: ``[e]``.
* Literals: numbers ``15``, ``-3``, ``2.5``; text ``"text"`` or ``'text'`` (``\\"``, ``\\'`` and
  ``\\\\`` are escapes; any other backslash is kept, so ``"\\d+"`` is a regex digit class); ``TRUE`` /
  ``FALSE`` (``VERDADEIRO`` / ``FALSO``); dates as text, ``"2026-03-01"`` or ``"2026-03-01 14:30"``.
  A decimal comma (``2,5``) is NOT accepted as a number inside an expression, because the comma
  separates list items; inside quotes, compared with a number column, ``"2,5"`` is read as 2.5.
* Comparisons ``=`` ``==`` ``!=`` ``<>`` ``<`` ``<=`` ``>`` ``>=``. Text compares ignoring case and
  surrounding spaces. A quoted literal takes the type of the other side: ``company_size >= "50"`` is a
  number comparison, ``created_at < "2026-03-01"`` a date comparison, ``unsubscribed = "sim"`` a
  yes/no one. A number compared with a text column is compared as its text (``12345`` -> "12345").
  A date written without a time means the whole day: ``created_at = "2026-03-01"`` matches any time
  that day and ``created_at <= "2026-03-01"`` includes it (the same holds for ``today()``).
* Arithmetic ``+ - * /`` and unary minus on numbers; ``date ± number`` shifts by days;
  ``date - date`` is the number of calendar days between them. Division by zero gives an empty value.
* Logic ``not`` > ``and`` > ``or`` (``não``/``nao``, ``e``, ``ou``) and parentheses.
* Text: ``contains`` (``contém``), ``starts with`` (``começa com``), ``ends with`` (``termina com``),
  ``matches`` (an RE2 regular expression, case-insensitive, found anywhere in the text; see Limits),
  ``in (...)`` (``em``); each may be preceded by ``not`` (``não``): ``x not in (...)``,
  ``x not contains "a"``. The text after contains/starts/ends/matches must be a literal. Both sides
  are compared ignoring case and surrounding spaces.
* Emptiness: ``x is empty`` / ``x is not empty`` (also ``is blank``; ``x está vazio``,
  ``x não está vazio``, ``x é vazio``). Text that is only spaces is empty.
* A true/false column alone is a condition (``unsubscribed``, ``not unsubscribed``).
* Functions: ``today()``, ``days_since(date)``, ``days_until(date)`` (whole calendar days, so
  yesterday 23:00 is 1 day ago), ``len(text)`` (after trimming; 0 when empty), ``lower``, ``upper``,
  ``trim``, ``domain(email)`` (lower-cased part after the last ``@``), ``year``, ``month``, ``day``,
  ``abs``. pt-BR names: ``hoje``, ``dias_desde``, ``dias_ate``, ``dominio``, ``ano``, ``mes``, ``dia``.

Empty values
------------
Empty cells (NaN, NaT, <NA>, blank or all-space text) follow one rule, chosen so that rules read the
way a spreadsheet user expects:

* Any comparison that involves an empty value is false, except ``!=`` / ``<>``, which is true when
  exactly one side is empty (``country != "BR"`` holds for a contact with no country) and false when
  both are; and ``x = ""`` (any blank literal), which means ``x is empty`` (``x != ""`` means
  ``x is not empty``).
* ``in`` is false for an empty value, so ``not in`` is true. ``contains``, ``starts with``,
  ``ends with`` and ``matches`` are false on an empty value (and their ``not`` forms true).
* Arithmetic or a function on an empty value gives an empty value (``len`` gives 0).
* A true/false value used as a condition counts an empty cell as false: ``not unsubscribed`` holds
  for an empty cell, while ``unsubscribed = FALSE`` (a comparison) does not.
* ``and``/``or``/``not`` work on plain true/false, so ``not (expr)`` is always the exact opposite.

Limits: expressions longer than :data:`MAX_SOURCE_CHARS` characters or nested deeper than
:data:`MAX_DEPTH` levels are rejected. Regular expressions run on RE2 (google-re2), whose matching time
is linear in the text for every pattern, so ``(a+)+$`` cannot hang a run as it would with Python's
``re``. The price is RE2's syntax: back-references (``\\1``), look-ahead/behind and atomic groups
are refused with a message at the rule's cell, and a pattern whose compiled form needs more than
:data:`REGEX_MAX_MEMORY` bytes (``(.*a){1000}``) is refused too.

Numbers and dates in a rule are written as the workbook writes them (Settings ``locale``): in pt-BR
``1.000`` is a thousand and ``"01/02/2026"`` is 1 February; ``"2026-05-15T02:00:00Z"`` is converted to
the workbook's time zone.
"""

from __future__ import annotations

import datetime as _dt
import math
import operator
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import re2

from sheetflow.coerce import Locale, Unreadable, date_has_time, parse_number, read_date
from sheetflow.coltypes import ColumnType
from sheetflow.names import fold, normalize, suggest
from sheetflow.problems import RuleError

__all__ = ["MAX_DEPTH", "MAX_SOURCE_CHARS", "CompiledWhen", "Frame", "Schema", "WhenError", "compile_when"]

MAX_SOURCE_CHARS = 2000
MAX_DEPTH = 50

TEXT, NUMBER, DATE, BOOL = ColumnType.TEXT, ColumnType.NUMBER, ColumnType.DATE, ColumnType.BOOL


class WhenError(RuleError):
    """A user mistake in an expression.

    ``str(e)`` is a readable sentence without the cell name (the caller prefixes ``Scoring!B4: ``);
    positions inside the sentence count from 1. ``position`` is the 0-based offset in the source, when
    known.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return self.message


# ============================================================================ schema


class Schema:
    """The columns an expression may use: canonical name -> type, plus aliases (alias -> canonical)."""

    def __init__(
        self,
        types: Mapping[str, ColumnType],
        aliases: Mapping[str, str] | None = None,
        locale: Locale | None = None,
    ) -> None:
        self.locale = locale or Locale()  # how number and date literals are written; the workbook's zone
        self.types: dict[str, ColumnType] = {name: ColumnType(t) for name, t in types.items()}
        self.aliases: dict[str, str] = {}
        self._lookup: dict[str, str] = {}
        for name in self.types:
            self._lookup.setdefault(normalize(name), name)
        for alias, target in (aliases or {}).items():
            canonical = self._lookup.get(normalize(target))
            if canonical is not None:
                self.aliases[normalize(alias)] = canonical
                self._lookup.setdefault(normalize(alias), canonical)

    def resolve(self, name: str) -> str | None:
        """The canonical column for a name as written (normalised; canonical names win over aliases)."""
        return self._lookup.get(normalize(name))

    def type_of(self, canonical: str) -> ColumnType:
        return self.types[canonical]

    def candidates(self) -> list[str]:
        """Names worth suggesting for a typo: canonical names first, then aliases."""
        return [*self.types, *self.aliases]


# ============================================================================ tokens

_ASCII_DIGITS = "0123456789"
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
# 1.000 / 12.500.000 in a decimal-comma workbook: dots between groups of three digits are thousands.
_GROUPED_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{3})+(?![0-9.]|\w)")
_TWO_CHAR_OPS = {"==": "=", "!=": "!=", "<>": "!=", "<=": "<=", ">=": ">="}
_ONE_CHAR_OPS = {
    "=": "=",
    "<": "<",
    ">": ">",
    "+": "+",
    "-": "-",
    "*": "*",
    "/": "/",
    "≠": "!=",
    "≤": "<=",
    "≥": ">=",
}
_PUNCTUATION = {"(": "(", ")": ")", ",": ","}
# Spreadsheet apps "smart-quote" what people type, so curly quotes open and close strings too.
_QUOTES = {'"': '"', "'": "'", "“": '”“"', "”": '”“"', "‘": "’‘'", "’": "’‘'"}
_ESCAPABLE = "\"'\\“”‘’"
_MISUSED = {
    "&&": 'use "and" instead of "&&"',
    "||": 'use "or" instead of "||"',
    "&": 'use "and" instead of "&"',
    "|": 'use "or" instead of "|"',
    "!": 'use "not", or "!=" to compare',
}


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "str", "word", "col", "op", "(", ")", ",", "end"
    value: Any  # float for num, text for str/word/col, canonical operator for op
    pos: int
    end: int
    kw: str = ""  # a word's folded spelling, for keyword checks


def _fold(word: str) -> str:
    """Keyword spelling: case and accents ignored (``NÃO`` -> ``nao``); ``é`` stays (it means "is")."""
    if word.casefold() == "é":
        return "é"
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _is_space(ch: str) -> bool:
    # Zero-width and other format characters come along when cells are copy-pasted; they are noise.
    return ch.isspace() or unicodedata.category(ch) == "Cf"


def _is_word_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or unicodedata.category(ch).startswith("M")


def _quoted(text: str) -> str:
    """Quote source text for a message; text that has double quotes gets single ones."""
    return f"'{text}'" if '"' in text else f'"{text}"'


def _shown(ch: str) -> str:
    return f'"{ch}"' if ch.isprintable() else f"U+{ord(ch):04X}"


def _tokenize(src: str, thousands_dot: bool = False) -> list[_Token]:
    """``thousands_dot``: the workbook writes 1.000 for a thousand (pt-BR), so ``1.000`` is 1000.

    Outside parentheses (where a comma never separates list items or arguments) a number is also read
    as the workbook writes it: ``2,5`` and ``1.234,56`` in a decimal-comma workbook, ``1,000`` and
    ``1,234.5`` (groups of three digits) in a decimal-dot one. Inside ``in (...)`` or a function call a
    comma separates items, as always."""
    tokens: list[_Token] = []
    i = 0
    depth = 0
    while i < len(src):
        ch = src[i]
        if _is_space(ch):
            i += 1
            continue
        local = _local_number(src, i, thousands_dot) if depth == 0 and ch in _ASCII_DIGITS else None
        tokens.append(local or _read_token(src, i, thousands_dot))
        depth += {"(": 1, ")": -1}.get(tokens[-1].kind, 0)
        depth = max(depth, 0)
        i = tokens[-1].end
    tokens.append(_Token("end", None, len(src), len(src)))
    return tokens


# Numbers with the workbook's separators, outside parentheses (see _tokenize): decimal comma (pt-BR)
# with optional dot thousands, or comma thousands (en) with an optional decimal dot.
_COMMA_DECIMAL_RE = re.compile(r"(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+),[0-9]+(?![0-9.,]|\w)")
_COMMA_GROUPED_RE = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?(?![0-9.,]|\w)")


def _local_number(src: str, i: int, decimal_comma: bool) -> _Token | None:
    if decimal_comma:
        match = _COMMA_DECIMAL_RE.match(src, i)
        if match is not None:
            text = match.group().replace(".", "").replace(",", ".")
            return _Token("num", float(text), i, match.end())
        return None
    match = _COMMA_GROUPED_RE.match(src, i)
    if match is not None:
        return _Token("num", float(match.group().replace(",", "")), i, match.end())
    return None


def _read_token(src: str, i: int, thousands_dot: bool = False) -> _Token:
    ch = src[i]
    if ch in _QUOTES:
        return _read_string(src, i)
    if ch in _ASCII_DIGITS or (ch == "." and src[i + 1 : i + 2] in tuple(_ASCII_DIGITS)):
        if thousands_dot:
            grouped = _GROUPED_RE.match(src, i)
            if grouped is not None:
                return _Token("num", float(grouped.group().replace(".", "")), i, grouped.end())
        return _read_number(src, i)
    if _is_word_start(ch):
        return _read_word(src, i)
    if ch == "[":
        return _read_bracket(src, i)
    return _read_symbol(src, i)


def _read_string(src: str, start: int) -> _Token:
    closers = _QUOTES[src[start]]
    out: list[str] = []
    j = start + 1
    while j < len(src):
        ch = src[j]
        if ch == "\\" and j + 1 < len(src) and src[j + 1] in _ESCAPABLE:
            out.append(src[j + 1])
            j += 2
        elif ch in closers:
            return _Token("str", "".join(out), start, j + 1)
        else:
            out.append(ch)
            j += 1
    raise WhenError(f"unterminated string starting at position {start + 1}", start)


def _read_number(src: str, start: int) -> _Token:
    match = _NUMBER_RE.match(src, start)
    assert match is not None  # the caller saw a digit
    end = match.end()
    if end < len(src) and (_is_word_char(src[end]) or src[end] == "."):
        j = end
        while j < len(src) and (_is_word_char(src[j]) or src[j] == "."):
            j += 1
        message = f'"{src[start:j]}" at position {start + 1} is not a number'
        if any(ch.isalpha() for ch in src[end:j]):
            message += (
                " (a column whose name starts with a digit must be written in brackets, "
                f"e.g. [{src[start:j]}])"
            )
        raise WhenError(message, start)
    return _Token("num", float(match.group()), start, end)


def _read_word(src: str, start: int) -> _Token:
    j = start + 1
    while j < len(src) and _is_word_char(src[j]):
        j += 1
    word = src[start:j]
    return _Token("word", word, start, j, _fold(word))


def _read_bracket(src: str, start: int) -> _Token:
    close = src.find("]", start + 1)
    if close < 0:
        raise WhenError(f'unclosed "[" starting at position {start + 1}', start)
    name = src[start + 1 : close].strip()
    if not name:
        raise WhenError(f'empty column name "[]" at position {start + 1}', start)
    return _Token("col", name, start, close + 1)


def _read_symbol(src: str, i: int) -> _Token:
    pair = src[i : i + 2]
    if pair in _TWO_CHAR_OPS:
        return _Token("op", _TWO_CHAR_OPS[pair], i, i + 2)
    ch = src[i]
    if ch in _ONE_CHAR_OPS:
        return _Token("op", _ONE_CHAR_OPS[ch], i, i + 1)
    if ch in _PUNCTUATION:
        return _Token(ch, ch, i, i + 1)
    for bad in (pair, ch):
        if bad in _MISUSED:
            raise WhenError(f'unexpected "{bad}" at position {i + 1}: {_MISUSED[bad]}', i)
    raise WhenError(f"unexpected character {_shown(ch)} at position {i + 1}", i)


# ============================================================================ syntax tree


@dataclass(frozen=True)
class _Node:
    pos: int
    end: int

    def children(self) -> tuple[_Node, ...]:
        return ()


@dataclass(frozen=True)
class _Lit(_Node):
    value: float | str | bool


@dataclass(frozen=True)
class _Col(_Node):
    name: str
    bracketed: bool


@dataclass(frozen=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]

    def children(self) -> tuple[_Node, ...]:
        return self.args


@dataclass(frozen=True)
class _Neg(_Node):
    operand: _Node

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node

    def children(self) -> tuple[_Node, ...]:
        return (self.left, self.right)


class _Arith(_Binary):
    """``+ - * /``."""


class _Compare(_Binary):
    """``= != < <= > >=`` (canonical spellings)."""


@dataclass(frozen=True)
class _TextTest(_Binary):
    """``contains``, ``starts``, ``ends``, ``matches``; ``word`` is how the user wrote it."""

    word: str = ""


@dataclass(frozen=True)
class _In(_Node):
    left: _Node
    items: tuple[_Node, ...]

    def children(self) -> tuple[_Node, ...]:
        return (self.left, *self.items)


@dataclass(frozen=True)
class _IsEmpty(_Node):
    operand: _Node

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class _Not(_Node):
    operand: _Node

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class _Logic(_Node):
    op: str  # "and" / "or"; n-ary so long rule lists do not nest deeply
    operands: tuple[_Node, ...]

    def children(self) -> tuple[_Node, ...]:
        return self.operands


def _check_depth(root: _Node) -> None:
    """Reject deep trees before compiling, so nothing downstream can exhaust the Python stack."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise WhenError(_too_deep(), node.pos)
        stack.extend((child, depth + 1) for child in node.children())


def _too_deep() -> str:
    return f"the expression is nested too deeply (more than {MAX_DEPTH} levels); split it into simpler rules"


# ============================================================================ parser

_OR, _AND, _NOT = {"or", "ou"}, {"and", "e"}, {"not", "nao"}
_TRUE, _FALSE = {"true", "verdadeiro"}, {"false", "falso"}
_CONTAINS, _STARTS, _ENDS, _MATCHES = (
    {"contains", "contem"},
    {"starts", "comeca"},
    {"ends", "termina"},
    {"matches"},
)
_WITH, _IN, _IS, _ESTA = {"with", "com"}, {"in", "em"}, {"is", "é"}, {"esta"}
_EMPTY = {"empty", "blank", "vazio", "vazia"}
_OPERATOR_WORDS = _CONTAINS | _STARTS | _ENDS | _MATCHES | _IN | _IS | _ESTA
_RESERVED = _OR | _AND | _NOT | _OPERATOR_WORDS
_COMPARE_OPS = {"=", "!=", "<", "<=", ">", ">="}


class _Parser:
    """Recursive descent over the token list; precedence or < and < not < predicate < + - < * / < unary."""

    def __init__(self, source: str, locale: Locale | None = None) -> None:
        self.src = source
        self.tokens = _tokenize(source, thousands_dot=bool(locale and locale.decimal_comma))
        self.i = 0
        self.depth = 0

    # -- plumbing

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def previous(self) -> _Token | None:
        return self.tokens[self.i - 1] if self.i > 0 else None

    def raw(self, tok: _Token) -> str:
        return self.src[tok.pos : tok.end]

    def since(self, tok: _Token) -> str:
        """The words from ``tok`` to the last consumed token, single-spaced (e.g. "starts with")."""
        return " ".join(self.src[tok.pos : self.tokens[self.i - 1].end].split())

    def at_word(self, words: set[str], ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == "word" and tok.kw in words

    @contextmanager
    def nested(self, tok: _Token) -> Iterator[None]:
        """Bound the parser's own recursion (parentheses, not, minus, calls)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WhenError(_too_deep(), tok.pos)
        try:
            yield
        finally:
            self.depth -= 1

    def where(self, tok: _Token) -> str:
        return f"at position {tok.pos + 1}"

    # -- grammar

    def parse(self) -> _Node:
        node = self.parse_or()
        tok = self.peek()
        if tok.kind != "end":
            raise self.unexpected(tok)
        return node

    def parse_or(self) -> _Node:
        return self.parse_logic(_OR, "or", self.parse_and)

    def parse_and(self) -> _Node:
        return self.parse_logic(_AND, "and", self.parse_not)

    def parse_logic(self, words: set[str], op: str, operand: Callable[[], _Node]) -> _Node:
        items = [operand()]
        while self.at_word(words):
            self.advance()
            items.append(operand())
        if len(items) == 1:
            return items[0]
        return _Logic(items[0].pos, items[-1].end, op, tuple(items))

    def parse_not(self) -> _Node:
        if not self.at_word(_NOT):
            return self.parse_predicate()
        tok = self.advance()
        with self.nested(tok):
            operand = self.parse_not()
        return _Not(tok.pos, operand.end, operand)

    def parse_predicate(self) -> _Node:
        left = self.parse_sum()
        tok = self.peek()
        if tok.kind == "op" and tok.value in _COMPARE_OPS:
            return self.parse_comparison(left)
        if tok.kind != "word":
            return left
        if tok.kw in _NOT and self.at_word(_OPERATOR_WORDS, 1):
            self.advance()
            node = self.parse_operator(left)
            return _Not(left.pos, node.end, node)
        if tok.kw in _NOT:
            raise WhenError(
                f'expected "in", "contains", "starts with", "ends with", "matches" or '
                f'"is empty" after "{self.raw(tok)}" {self.where(self.peek(1))}',
                self.peek(1).pos,
            )
        if tok.kw in _OPERATOR_WORDS:
            return self.parse_operator(left)
        return left

    def parse_comparison(self, left: _Node) -> _Node:
        op = self.advance()
        right = self.parse_sum()
        after = self.peek()
        if after.kind == "op" and after.value in _COMPARE_OPS:
            raise WhenError(
                f"comparisons cannot be chained ({self.where(after)}); "
                "write a < b and b < c instead of a < b < c",
                after.pos,
            )
        return _Compare(left.pos, right.end, op.value, left, right)

    def parse_operator(self, left: _Node) -> _Node:
        tok = self.advance()
        if tok.kw in _IS | _ESTA:
            return self.parse_is_empty(left, tok)
        if tok.kw in _IN:
            return self.parse_in(left, tok)
        if tok.kw in _STARTS | _ENDS:
            if not self.at_word(_WITH):
                nxt = self.peek()
                raise WhenError(f'expected "with" after "{self.raw(tok)}" {self.where(nxt)}', nxt.pos)
            self.advance()
        op = (
            "contains"
            if tok.kw in _CONTAINS
            else "starts"
            if tok.kw in _STARTS
            else "ends"
            if tok.kw in _ENDS
            else "matches"
        )
        word = self.since(tok)
        right = self.parse_sum()
        return _TextTest(left.pos, right.end, op, left, right, word)

    def parse_is_empty(self, left: _Node, tok: _Token) -> _Node:
        negate = tok.kw in _IS and self.at_word(_NOT)
        if negate:
            self.advance()
        if not self.at_word(_EMPTY):
            nxt = self.peek()
            raise WhenError(
                f'expected "empty" after "{self.since(tok)}" {self.where(nxt)} '
                '(to compare values use =, e.g. country = "BR")',
                nxt.pos,
            )
        end = self.advance().end
        node: _Node = _IsEmpty(left.pos, end, left)
        return _Not(left.pos, end, node) if negate else node

    def parse_in(self, left: _Node, tok: _Token) -> _Node:
        opener = self.peek()
        if opener.kind != "(":
            raise WhenError(
                f'"{self.raw(tok)}" needs a list in parentheses {self.where(opener)}, '
                f'e.g. country {self.raw(tok)} ("BR", "PT")',
                opener.pos,
            )
        self.advance()
        if self.peek().kind == ")":
            raise WhenError(f'the list after "{self.raw(tok)}" is empty {self.where(opener)}', opener.pos)
        with self.nested(opener):
            items, end = self.parse_list(opener)
        return _In(left.pos, end, left, tuple(items))

    def parse_list(self, opener: _Token) -> tuple[list[_Node], int]:
        """Comma-separated values up to the closing parenthesis (a trailing comma is fine)."""
        items: list[_Node] = []
        while True:
            if self.peek().kind == ")" and items:
                return items, self.advance().end
            items.append(self.parse_sum())
            tok = self.peek()
            if tok.kind == ",":
                self.advance()
            elif tok.kind == ")":
                return items, self.advance().end
            elif tok.kind == "end":
                raise WhenError(f"unclosed parenthesis opened at position {opener.pos + 1}", opener.pos)
            else:
                raise WhenError(
                    f'unexpected {_quoted(self.raw(tok))} {self.where(tok)}; expected "," or ")"', tok.pos
                )

    def parse_sum(self) -> _Node:
        return self.parse_arith({"+", "-"}, self.parse_term)

    def parse_term(self) -> _Node:
        return self.parse_arith({"*", "/"}, self.parse_unary)

    def parse_arith(self, ops: set[str], operand: Callable[[], _Node]) -> _Node:
        left = operand()
        while self.peek().kind == "op" and self.peek().value in ops:
            op = self.advance().value
            right = operand()
            left = _Arith(left.pos, right.end, op, left, right)
        return left

    def parse_unary(self) -> _Node:
        tok = self.peek()
        if tok.kind == "op" and tok.value in {"-", "+"}:
            self.advance()
            with self.nested(tok):
                operand = self.parse_unary()
            return _Neg(tok.pos, operand.end, operand) if tok.value == "-" else operand
        return self.parse_primary()

    def parse_primary(self) -> _Node:
        tok = self.peek()
        if tok.kind == "num":
            self.advance()
            return _Lit(tok.pos, tok.end, tok.value)
        if tok.kind == "str":
            self.advance()
            return _Lit(tok.pos, tok.end, tok.value)
        if tok.kind == "col":
            self.advance()
            return _Col(tok.pos, tok.end, tok.value, True)
        if tok.kind == "(":
            return self.parse_parenthesis()
        if tok.kind == "word" and tok.kw not in _RESERVED:
            return self.parse_word()
        raise self.expected_value(tok)

    def parse_parenthesis(self) -> _Node:
        opener = self.advance()
        with self.nested(opener):
            inner = self.parse_or()
        closer = self.peek()
        if closer.kind == "end":
            raise WhenError(f"unclosed parenthesis opened at position {opener.pos + 1}", opener.pos)
        if closer.kind != ")":
            raise self.unexpected(closer, 'expected ")"')
        self.advance()
        return inner

    def parse_word(self) -> _Node:
        tok = self.advance()
        if tok.kw in _TRUE | _FALSE:
            return _Lit(tok.pos, tok.end, tok.kw in _TRUE)
        if self.peek().kind != "(":
            return _Col(tok.pos, tok.end, tok.value, False)
        opener = self.advance()
        if self.peek().kind == ")":
            return _Call(tok.pos, self.advance().end, tok.value, ())
        with self.nested(opener):
            args, end = self.parse_list(opener)
        return _Call(tok.pos, end, tok.value, tuple(args))

    # -- errors

    def expected_value(self, tok: _Token) -> WhenError:
        prev = self.previous()
        lead = f"expected a value after {_quoted(self.raw(prev))}" if prev else "expected a value"
        if prev is None and tok.kind in {")", ","}:
            return self.unexpected(tok)
        found = "" if tok.kind == "end" else f", found {_quoted(self.raw(tok))}"
        return WhenError(f"{lead} {self.where(tok)}{found}", tok.pos)

    def unexpected(self, tok: _Token, hint: str = "") -> WhenError:
        text = f"unexpected {_quoted(self.raw(tok))} {self.where(tok)}"
        if not hint and tok.kind == ",":
            prev, nxt = self.previous(), self.peek(1)
            if prev is not None and prev.kind == "num" and nxt.kind == "num":
                hint = "decimal numbers are written with a dot (2.5); commas only separate list items"
        elif not hint and tok.kind != ")":
            hint = 'is an operator such as "=", "and" or "contains" missing?'
        return WhenError(f"{text}; {hint}" if hint else text, tok.pos)


# ============================================================================ runtime data


@dataclass(frozen=True)
class _Text:
    """Text as factorized codes over distinct strings; ``codes == -1`` marks an empty cell.

    Spreadsheet columns repeat values a lot (countries, titles, domains), so text operations run on
    ``uniques`` and are spread back to the rows with :meth:`spread`, one integer take.
    """

    codes: np.ndarray  # intp, one per row
    uniques: np.ndarray  # str values: object array (as read) or numpy StringDType (after np.strings ops)

    def spread(self, per_unique: np.ndarray, fill: Any) -> np.ndarray:
        """Per-distinct-value results -> per-row results (``fill`` for empty rows)."""
        return np.append(per_unique, fill)[self.codes]

    def strings(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-row strings ("" when empty) and the empty mask, for row-by-row comparisons."""
        return np.append(_as_strings(self.uniques), "")[self.codes], self.codes < 0

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> _Text:
        """Apply ``fn`` to the distinct values, then merge values that became equal.

        ``domain(email)`` turns 100k distinct addresses into a handful of domains; re-factorizing once
        makes every later test on the result run over that handful.
        """
        codes, uniques = pd.factorize(_as_objects(fn(self.uniques)))
        return _Text(np.append(codes, -1)[self.codes], np.asarray(uniques, dtype=object))


_STRING = np.dtypes.StringDType()
# Built-in str methods as ufuncs: C calls per distinct value, no Python bytecode per element.
_CASEFOLD, _STRIP = np.frompyfunc(str.casefold, 1, 1), np.frompyfunc(str.strip, 1, 1)
_LOWER, _UPPER = np.frompyfunc(str.lower, 1, 1), np.frompyfunc(str.upper, 1, 1)
_FOLD = np.frompyfunc(fold, 1, 1)


def _as_strings(values: np.ndarray) -> np.ndarray:
    """numpy StringDType, for the vectorised ``np.strings`` functions."""
    return values if values.dtype == _STRING else np.asarray(values, dtype=object).astype(_STRING)


def _as_objects(values: np.ndarray) -> np.ndarray:
    """Python str objects, for str methods and ``re``."""
    return values if values.dtype == object else values.astype(object)


def _str_method(ufunc: np.ufunc) -> Callable[[np.ndarray], np.ndarray]:
    return lambda values: np.asarray(ufunc(_as_objects(values)), dtype=object)


TextValue = _Text | str


class Frame:
    """One evaluation context: a DataFrame plus "today".

    It caches converted columns and every sub-expression result by a structural key, so many rules over
    the same DataFrame share work (e.g. the case-folded text of ``title`` is built once).
    """

    def __init__(self, df: pd.DataFrame, today: _dt.date) -> None:
        self.df = df
        self.today: _dt.date = today.date() if isinstance(today, _dt.datetime) else today
        self._today = np.datetime64(self.today.isoformat(), "D")
        self._rows = len(df)
        self._cache: dict[str, Any] = {}

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = compute()
            return value

    def _column(self, name: str) -> pd.Series | None:
        """The column, or None when the sheet lacks it (then it reads as all-empty)."""
        if name not in self.df.columns:
            return None
        column = self.df[name]
        return column.iloc[:, 0] if isinstance(column, pd.DataFrame) else column


def _load_text(column: pd.Series | None, rows: int) -> _Text:
    if column is None:
        return _Text(np.full(rows, -1, dtype=np.intp), np.empty(0, dtype=object))
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    values = np.asarray(uniques, dtype=object)
    if not isinstance(column.dtype, pd.StringDtype) and not all(type(v) is str for v in values):
        values = np.array([_cell_text(value) for value in values], dtype=object)  # off-contract dtype
    return _Text(np.asarray(codes, dtype=np.intp), values)


def _cell_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (float, np.floating, int, np.integer)):
        return _number_text(float(value))
    if isinstance(value, pd.Timestamp) and value == value.normalize():
        return value.date().isoformat()
    return str(value)


def _load_number(column: pd.Series | None, rows: int) -> np.ndarray:
    if column is None:
        return np.full(rows, np.nan)
    if not pd.api.types.is_numeric_dtype(column.dtype):
        try:
            column = pd.to_numeric(column, errors="coerce")
        except (TypeError, ValueError):  # odd objects in an off-contract column
            column = pd.to_numeric(column.astype(str), errors="coerce")
    return column.to_numpy(dtype="float64", na_value=np.nan)


_NAT = np.iinfo(np.int64).min
_MAX_MICROSECONDS = 2.5e17  # ~7,900 years either side of 1970; a shift beyond that is empty
# Dates are held in microseconds: years 1-9999 all fit (nanoseconds would stop at 2262).
_UNIT = "datetime64[us]"
_DATE_MIN, _DATE_MAX = np.datetime64("0001-01-01"), np.datetime64("9999-12-31T23:59:59")


def _load_date(column: pd.Series | None, rows: int) -> np.ndarray:
    if column is None:
        return np.full(rows, np.datetime64("NaT", "us"))
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_localize(None)
    if not pd.api.types.is_datetime64_dtype(column.dtype):
        try:
            column = pd.to_datetime(column, errors="coerce", format="ISO8601")
        except (TypeError, ValueError):
            return np.full(rows, np.datetime64("NaT", "us"))
    return _as_microseconds(column.to_numpy())


def _as_microseconds(values: np.ndarray) -> np.ndarray:
    """datetime64 of any unit -> microseconds; dates outside years 1-9999 become empty.

    Finer units (ns) always fit. Coarser ones (s, ms, D) can hold dates that would overflow silently
    when multiplied up, so those are bounded first, in their own unit.
    """
    unit, _count = np.datetime_data(values.dtype)
    if unit in {"ns", "ps", "fs", "as", "us"}:
        return values.astype(_UNIT)
    low, high = _DATE_MIN.astype(values.dtype), _DATE_MAX.astype(values.dtype)
    outside = ~np.isnat(values) & ((values < low) | (values > high))
    return np.where(outside, np.datetime64("NaT"), values).astype(_UNIT)


_YES = {"true", "yes", "sim", "verdadeiro", "y", "s", "1", "x", "✓"}
_NO = {"false", "no", "nao", "falso", "n", "0"}


def _bool_word(text: str) -> float | None:
    """1.0 / 0.0 for a yes/no word (en or pt-BR), None if it is not one."""
    word = _fold(text.strip())
    return 1.0 if word in _YES else 0.0 if word in _NO else None


def _load_bool(column: pd.Series | None, rows: int) -> np.ndarray:
    """Booleans as float64 1.0 / 0.0 / NaN, so "empty" rides along as NaN."""
    if column is None:
        return np.full(rows, np.nan)
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype="float64", na_value=np.nan)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    per_unique = np.array([_cell_bool(value) for value in uniques], dtype=float)
    return np.append(per_unique, np.nan)[codes]


def _cell_bool(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value != 0)
    word = _bool_word(str(value))
    return np.nan if word is None else word


_LOADERS: dict[ColumnType, Callable[[pd.Series | None, int], Any]] = {
    TEXT: _load_text,
    NUMBER: _load_number,
    DATE: _load_date,
    BOOL: _load_bool,
}


# ============================================================================ vectorised operations

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FLIPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _with_empties(op: str, raw: Any, empty_a: Any, empty_b: Any) -> Any:
    """Apply the empty-value rule to a raw comparison result (see the module docstring)."""
    both = np.logical_and(np.logical_not(empty_a), np.logical_not(empty_b))
    result = np.logical_and(both, raw)
    if op == "!=":
        result = np.logical_or(result, np.logical_xor(empty_a, empty_b))
    return result


def _compare_floats(op: str, a: Any, b: Any) -> Any:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return _with_empties(op, _OPS[op](a, b), np.isnan(a), np.isnan(b))


def _compare_dates(op: str, a: Any, b: Any, by_day: bool) -> Any:
    unit = "datetime64[D]" if by_day else _UNIT
    a, b = np.asarray(a).astype(unit), np.asarray(b).astype(unit)
    return _with_empties(op, _OPS[op](a, b), np.isnat(a), np.isnat(b))


def _compare_texts(op: str, a: TextValue, b: TextValue) -> Any:
    """Compare normalised text (see :func:`_normalized`); "" is empty."""
    if isinstance(a, str) and isinstance(b, str):
        return _with_empties(op, _OPS[op](a, b), a == "", b == "")
    if isinstance(a, str):
        return _compare_texts(_FLIPPED[op], b, a)
    if isinstance(b, str):
        if b == "":
            return a.spread(np.full(len(a.uniques), op == "!="), False)
        per_unique = np.asarray(_OPS[op](a.uniques, b), dtype=bool)
        return a.spread(per_unique, op == "!=")
    a_rows, a_empty = a.strings()
    b_rows, b_empty = b.strings()
    return _with_empties(op, np.asarray(_OPS[op](a_rows, b_rows), dtype=bool), a_empty, b_empty)


def _normalized(value: TextValue) -> TextValue:
    """Text as people mean it (names.fold: case, accents and runs of spaces folded, so ``"São Paulo"`` is
    ``"sao  paulo"``); all-space text becomes empty (code -1). Uniques keep their order."""
    if isinstance(value, str):
        return fold(value)
    folded = _as_strings(np.asarray(_FOLD(_as_objects(value.uniques))))
    blank = np.append(folded == "", True)
    return _Text(np.where(blank[value.codes], -1, value.codes), folded)


def _text_empty(value: TextValue) -> Any:
    return value == "" if isinstance(value, str) else value.codes < 0


def _stripped(value: TextValue) -> TextValue:
    """Stripped text with the same distinct-value indexing as ``value`` (and so as its normalised form)."""
    if isinstance(value, str):
        return value.strip()
    return _Text(value.codes, np.asarray(_STRIP(_as_objects(value.uniques)), dtype=object))


def _text_test(
    norm: TextValue, per_unique: Callable[[np.ndarray], np.ndarray], raw: TextValue | None = None
) -> Any:
    """Run a test on the distinct values (of ``raw`` if given, else of ``norm``) and spread it to rows.

    ``norm`` decides emptiness, so tests are false on empty cells whatever the test says about "".
    ``raw`` must index its distinct values like ``norm`` does (see :func:`_normalized`).
    """
    source = norm if raw is None else raw
    if isinstance(norm, str):
        assert isinstance(source, str)
        return norm != "" and bool(per_unique(np.array([source], dtype=object))[0])
    assert isinstance(source, _Text)
    return norm.spread(np.asarray(per_unique(source.uniques), dtype=bool), False)


def _regex_test(pattern: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Found-anywhere test on distinct values. Calls RE2's matcher on UTF-8 bytes directly when the
    binding exposes it: the public ``search`` maps byte offsets back to characters and builds a match
    object per call (8x slower on 100k values), and fails on a lone surrogate, which "replace" encoding
    turns into "?" here."""
    regexp = getattr(pattern, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if regexp is None or anchor is None or not hasattr(regexp, "Match"):  # another binding version

        def search(value: str) -> bool:
            return pattern.search(value.encode("utf-8", "replace").decode("utf-8")) is not None

        found = np.frompyfunc(search, 1, 1)
        return lambda values: np.asarray(found(_as_objects(values)), dtype=bool)

    def test(values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(values), dtype=bool)
        for i, value in enumerate(_as_objects(values).tolist()):
            data = value.encode("utf-8", "replace")
            out[i] = regexp.Match(anchor, data, 0, len(data))[0][0] != -1
        return out

    return test


def _substring_test(op: str, needle: str) -> Callable[[np.ndarray], np.ndarray]:
    """contains / starts / ends on case-folded, stripped distinct values."""
    if op == "contains":
        return lambda values: np.strings.find(_as_strings(values), needle) >= 0
    if op == "starts":
        return lambda values: np.strings.startswith(_as_strings(values), needle)
    return lambda values: np.strings.endswith(_as_strings(values), needle)


def _membership_test(needles: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    wanted = np.array(needles, dtype=_STRING)
    return lambda values: np.isin(_as_strings(values), wanted)


def _arith_numbers(op: str, a: Any, b: Any) -> Any:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    result = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide}[op](a, b)
    return np.where(np.isfinite(result), result, np.nan)


def _day_numbers(dates: Any) -> tuple[np.ndarray, np.ndarray]:
    """Calendar day numbers (days since 1970-01-01, time dropped) and the empty mask."""
    days = np.asarray(dates).astype("datetime64[D]")
    empty = np.isnat(days)
    return np.where(empty, 0, days.view(np.int64)), empty


def _day_difference(a: Any, b: Any) -> Any:
    """Whole calendar days from b to a (a - b)."""
    a_days, a_empty = _day_numbers(a)
    b_days, b_empty = _day_numbers(b)
    return np.where(a_empty | b_empty, np.nan, (a_days - b_days).astype(float))


def _shift_days(dates: Any, days: Any) -> Any:
    """dates + days (may be fractional); empty or out-of-range results are NaT, never an overflow."""
    base = np.asarray(dates).astype(_UNIT)
    delta = np.round(np.asarray(days, dtype=float) * 86_400e6)
    empty = np.isnat(base) | ~np.isfinite(delta)
    base_us = np.where(empty, 0, base.view(np.int64))
    delta = np.where(empty, 0.0, delta)
    empty = empty | (np.abs(base_us.astype(float) + delta) >= _MAX_MICROSECONDS)
    delta_us = np.where(empty, 0.0, delta).astype(np.int64)
    return np.where(empty, _NAT, base_us + delta_us).view(_UNIT)


def _date_part(part: str) -> Callable[[Frame, Any], Any]:
    def extract(_frame: Frame, dates: Any) -> Any:
        values = np.asarray(dates)
        empty = np.isnat(values)
        if part == "year":
            number = values.astype("datetime64[Y]").astype(np.int64) + 1970
        elif part == "month":
            number = values.astype("datetime64[M]").astype(np.int64) % 12 + 1
        else:
            number = (values.astype("datetime64[D]") - values.astype("datetime64[M]")).astype(np.int64) + 1
        return np.where(empty, np.nan, number.astype(float))

    return extract


def _text_length(_frame: Frame, text: TextValue) -> Any:
    if isinstance(text, str):
        return float(len(text.strip()))
    lengths = np.strings.str_len(np.strings.strip(_as_strings(text.uniques))).astype(float)
    return text.spread(lengths, 0.0)


def _text_function(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Frame, Any], Any]:
    def apply(_frame: Frame, text: TextValue) -> TextValue:
        if isinstance(text, str):
            return str(fn(np.array([text], dtype=object))[0])
        return text.map(fn)

    return apply


_AT = np.array("@", dtype=_STRING)


def _domain(values: np.ndarray) -> np.ndarray:
    """The lower-cased part after the last "@"; "" (empty) when there is no "@"."""
    folded = np.strings.strip(_as_strings(np.asarray(_CASEFOLD(_as_objects(values)))))
    _head, separator, tail = np.strings.rpartition(folded, _AT)
    return np.where(separator == "@", np.strings.strip(tail), np.array("", dtype=_STRING))


def _number_text(number: float) -> str:
    """How a number reads as text: 50.0 -> "50", 2.5 -> "2.5"."""
    if math.isfinite(number) and number == int(number) and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


# ============================================================================ compiled pieces


def _type_name(kind: ColumnType) -> str:
    return {TEXT: "text", NUMBER: "a number", DATE: "a date", BOOL: "true/false"}[kind]


_NOT_LITERAL = object()


@dataclass(frozen=True)
class _Value:
    """A compiled value: its static type and a function of the frame giving an array or a scalar.

    Representations: TEXT -> :class:`_Text` or str; NUMBER -> float64 array or float (NaN empty);
    DATE -> datetime64[us] array or scalar (NaT empty); BOOL -> float64 1.0 / 0.0 / NaN.
    """

    type: ColumnType
    fn: Callable[[Frame], Any]
    key: str  # structural identity, for the frame cache
    text: str  # the source text, for messages
    literal: Any = _NOT_LITERAL  # the Python value of a literal (str, float or bool)
    by_day: bool = False  # a date without a time of day (date literal, today())

    @property
    def is_literal(self) -> bool:
        return self.literal is not _NOT_LITERAL

    @property
    def is_text_literal(self) -> bool:
        return isinstance(self.literal, str)

    @property
    def is_number_literal(self) -> bool:
        return isinstance(self.literal, float)

    @property
    def is_blank_literal(self) -> bool:
        return self.is_text_literal and not self.literal.strip()


@dataclass(frozen=True)
class _Cond:
    """A compiled condition: a function of the frame giving a bool array (or a bool for constants)."""

    fn: Callable[[Frame], Any]
    key: str


@contextmanager
def _located(node: _Node) -> Iterator[None]:
    """Give a compile error without a position the position of the innermost node it came from."""
    try:
        yield
    except WhenError as exc:
        if exc.position is None:
            exc.position = node.pos
        raise


def _memo(key: str, fn: Callable[[Frame], Any]) -> Callable[[Frame], Any]:
    return lambda frame: frame._cached(key, lambda: fn(frame))


def _constant(
    kind: ColumnType, value: Any, key: str, text: str, literal: Any = _NOT_LITERAL, by_day: bool = False
) -> _Value:
    return _Value(kind, lambda _frame: value, key, text, literal, by_day)


def _cond(key: str, fn: Callable[[Frame], Any]) -> _Cond:
    return _Cond(_memo(key, fn), key)


@dataclass(frozen=True)
class _Function:
    name: str
    params: tuple[ColumnType, ...]
    result: ColumnType
    impl: Callable[..., Any]  # (frame, *argument values) -> value
    by_day: bool = False


_FUNCTIONS: dict[str, _Function] = {
    f.name: f
    for f in (
        _Function("today", (), DATE, lambda frame: frame._today.astype(_UNIT), by_day=True),
        _Function("days_since", (DATE,), NUMBER, lambda frame, d: _day_difference(frame._today, d)),
        _Function("days_until", (DATE,), NUMBER, lambda frame, d: _day_difference(d, frame._today)),
        _Function("len", (TEXT,), NUMBER, _text_length),
        _Function("lower", (TEXT,), TEXT, _text_function(_str_method(_LOWER))),
        _Function("upper", (TEXT,), TEXT, _text_function(_str_method(_UPPER))),
        _Function("trim", (TEXT,), TEXT, _text_function(_str_method(_STRIP))),
        _Function("domain", (TEXT,), TEXT, _text_function(_domain)),
        _Function("year", (DATE,), NUMBER, _date_part("year")),
        _Function("month", (DATE,), NUMBER, _date_part("month")),
        _Function("day", (DATE,), NUMBER, _date_part("day")),
        _Function("abs", (NUMBER,), NUMBER, lambda frame, x: np.abs(np.asarray(x, dtype=float))),
    )
}
_FUNCTION_ALIASES = {
    "hoje": "today",
    "dias_desde": "days_since",
    "dias_ate": "days_until",
    "dominio": "domain",
    "ano": "year",
    "mes": "month",
    "dia": "day",
    "tamanho": "len",
    "minusculas": "lower",
    "maiusculas": "upper",
}
_PARAM_NAMES = {TEXT: "a text column", NUMBER: "a number", DATE: "a date column", BOOL: "true/false"}
_OP_WORDS = {"contains": "contains", "starts": "starts with", "ends": "ends with", "matches": "matches"}


class _Compiler:
    """Turns the syntax tree into :class:`_Cond` / :class:`_Value` closures, checking types."""

    def __init__(self, source: str, schema: Schema) -> None:
        self.src = source
        self.schema = schema
        self.locale = schema.locale
        self.columns: set[str] = set()

    def text_of(self, node: _Node) -> str:
        return self.src[node.pos : node.end]

    # -- conditions

    def condition(self, node: _Node) -> _Cond:
        with _located(node):
            return self.condition_of(node)

    def condition_of(self, node: _Node) -> _Cond:
        if isinstance(node, _Logic):
            return self.logic(node)
        if isinstance(node, _Not):
            inner = self.condition(node.operand)
            return _cond(f"not({inner.key})", lambda f: np.logical_not(inner.fn(f)))
        if isinstance(node, _Compare):
            return self.compare(node.op, self.value(node.left), self.value(node.right))
        if isinstance(node, _TextTest):
            return self.text_test(node)
        if isinstance(node, _In):
            return self.membership(node)
        if isinstance(node, _IsEmpty):
            return self.is_empty(self.value(node.operand))
        return self.bare_value(node)

    def logic(self, node: _Logic) -> _Cond:
        parts = [self.condition(child) for child in node.operands]
        combine = np.logical_and if node.op == "and" else np.logical_or

        def evaluate(frame: Frame) -> Any:
            result = parts[0].fn(frame)
            for part in parts[1:]:
                result = combine(result, part.fn(frame))
            return result

        return _cond(f"{node.op}({','.join(p.key for p in parts)})", evaluate)

    def bare_value(self, node: _Node) -> _Cond:
        value = self.value(node)
        if value.type is not BOOL:
            example = f"{value.text} > 0" if value.type is NUMBER else f"{value.text} is not empty"
            raise WhenError(f"{value.text} is {_type_name(value.type)}; compare it, e.g. {example}", node.pos)
        return _cond(f"truth({value.key})", lambda f: np.asarray(value.fn(f)) == 1.0)

    def is_empty(self, value: _Value) -> _Cond:
        if value.type is TEXT:
            text = self.normalized(value)
            return _cond(f"empty({value.key})", lambda f: _text_empty(text(f)))
        test = np.isnat if value.type is DATE else np.isnan
        return _cond(f"empty({value.key})", lambda f: test(np.asarray(value.fn(f))))

    # -- comparisons

    def compare(self, op: str, left: _Value, right: _Value) -> _Cond:
        if left.is_blank_literal or right.is_blank_literal:
            return self.compare_blank(op, left, right)
        left, right = self.unify(op, left, right)
        key = f"cmp({left.key}{op}{right.key})"
        if left.type is TEXT:
            a, b = self.normalized(left), self.normalized(right)
            return _cond(key, lambda f: _compare_texts(op, a(f), b(f)))
        if left.type is DATE:
            by_day = left.by_day or right.by_day
            return _cond(key, lambda f: _compare_dates(op, left.fn(f), right.fn(f), by_day))
        if left.type is BOOL and op not in {"=", "!="}:
            raise WhenError(f"{op} does not work on true/false values; use = or !=", None)
        return _cond(key, lambda f: _compare_floats(op, left.fn(f), right.fn(f)))

    def compare_blank(self, op: str, left: _Value, right: _Value) -> _Cond:
        """``x = ""`` means ``x is empty`` and ``x != ""`` means ``x is not empty``."""
        if op not in {"=", "!="}:
            raise WhenError(f'{op} cannot compare with an empty text (""); use "is empty" or "is not empty"')
        other = right if left.is_blank_literal else left
        empty = self.is_empty(other)
        if op == "=":
            return empty
        return _cond(f"not({empty.key})", lambda f: np.logical_not(empty.fn(f)))

    def unify(self, op: str, left: _Value, right: _Value) -> tuple[_Value, _Value]:
        """Give both sides one type: quoted literals adapt to the other side; else types must match."""
        if left.is_text_literal and not right.is_text_literal:
            left = self.coerce_literal(left, right.type, right)
        elif right.is_text_literal and not left.is_text_literal:
            right = self.coerce_literal(right, left.type, left)
        if left.type is TEXT and right.is_number_literal and op in {"=", "!="}:
            right = self.number_as_text(right)
        elif right.type is TEXT and left.is_number_literal and op in {"=", "!="}:
            left = self.number_as_text(left)
        if left.type is not right.type:
            raise WhenError(
                f"{left.text} is {_type_name(left.type)} and {right.text} is "
                f"{_type_name(right.type)}; they cannot be compared with {op}"
            )
        return left, right

    def coerce_literal(self, literal: _Value, target: ColumnType, other: _Value) -> _Value:
        """A quoted literal read as the type of the other side (number, date, yes/no or text)."""
        text: str = literal.literal
        if target is TEXT:
            return literal
        if target is NUMBER:
            number = _parse_number(text, self.locale)
            if number is None:
                raise WhenError(f"{other.text} is a number, {literal.text} is not")
            return _constant(NUMBER, number, f"n:{number!r}", literal.text, number)
        if target is DATE:
            return self.date_literal(literal, f"{other.text} is a date, {literal.text} is not a date")
        flag = _bool_word(text)
        if flag is None:
            raise WhenError(f"{other.text} is true/false, {literal.text} is not (use TRUE or FALSE)")
        return _constant(BOOL, flag, f"b:{flag}", literal.text, bool(flag))

    def date_literal(self, literal: _Value, problem: str) -> _Value:
        parsed = _parse_date(literal.literal, self.locale)
        if parsed is None:
            local = "31/12/2026" if self.locale.day_first else "12/31/2026"
            raise WhenError(f'{problem} (write dates like "2026-03-01", "{local}" or "2026-03-01 14:30")')
        moment, by_day = parsed
        return _constant(DATE, moment, f"d:{moment}:{by_day}", literal.text, by_day=by_day)

    @staticmethod
    def number_as_text(number: _Value) -> _Value:
        text = _number_text(number.literal)
        return _constant(TEXT, text, f"s:{text!r}", number.text, text)

    def normalized(self, value: _Value) -> Callable[[Frame], TextValue]:
        if value.is_literal:
            folded = _normalized(value.fn(None))  # type: ignore[arg-type]  # literals ignore the frame
            return lambda _frame: folded
        return _memo(f"norm({value.key})", lambda f: _normalized(value.fn(f)))

    # -- text operators and lists

    def text_test(self, node: _TextTest) -> _Cond:
        left, right = self.value(node.left), self.value(node.right)
        word = node.word or _OP_WORDS[node.op]
        if left.is_number_literal:
            left = self.number_as_text(left)
        if left.type is not TEXT:
            raise WhenError(f'"{word}" works on text; {left.text} is {_type_name(left.type)}', node.pos)
        if not (right.is_text_literal or right.is_number_literal):
            raise WhenError(
                f'"{word}" needs text in quotes after it, e.g. {left.text} {word} "vp"', node.right.pos
            )
        needle = right.literal if right.is_text_literal else _number_text(right.literal)
        norm = self.normalized(left)
        key = f"{node.op}({left.key},{needle!r})"
        if node.op == "matches":
            pattern = _compile_regex(needle, right.text, node.right.pos)
            test = _regex_test(pattern)
            stripped = _memo(f"stripped({left.key})", lambda f: _stripped(left.fn(f)))
            return _cond(key, lambda f: _text_test(norm(f), test, stripped(f)))
        folded = fold(needle)
        if not folded:
            raise WhenError(f'"{word}" needs some text to look for, not {right.text}', node.right.pos)
        test = _substring_test(node.op, folded)
        return _cond(key, lambda f: _text_test(norm(f), test))

    def membership(self, node: _In) -> _Cond:
        left = self.value(node.left)
        items = [self.value(item) for item in node.items]
        fast = self.text_membership(left, items)
        if fast is not None:
            return fast
        parts = [self.compare("=", left, item) for item in items]

        def evaluate(frame: Frame) -> Any:
            result = parts[0].fn(frame)
            for part in parts[1:]:
                result = np.logical_or(result, part.fn(frame))
            return result

        return _cond(f"in({','.join(p.key for p in parts)})", evaluate)

    def text_membership(self, left: _Value, items: list[_Value]) -> _Cond | None:
        """``text in ("a", "b", 3)`` with plain literals: one hash lookup per distinct value."""
        plain = all((i.is_text_literal and not i.is_blank_literal) or i.is_number_literal for i in items)
        if left.type is not TEXT or not plain:
            return None
        needles = sorted({fold(i.literal if i.is_text_literal else _number_text(i.literal)) for i in items})
        norm = self.normalized(left)
        test = _membership_test(needles)
        return _cond(f"isin({left.key},{needles!r})", lambda f: _text_test(norm(f), test))

    # -- values

    def value(self, node: _Node) -> _Value:
        with _located(node):
            return self.value_of(node)

    def value_of(self, node: _Node) -> _Value:
        text = self.text_of(node)
        if isinstance(node, _Lit):
            return self.literal(node.value, text)
        if isinstance(node, _Col):
            return self.column(node, text)
        if isinstance(node, _Call):
            return self.call(node, text)
        if isinstance(node, _Neg):
            return self.negate(node, text)
        if isinstance(node, _Arith):
            return self.arithmetic(node, text)
        cond = self.condition(node)  # a condition used as a value, e.g. (a > 1) = TRUE
        return _Value(BOOL, lambda f: np.asarray(cond.fn(f), dtype=float), f"bool({cond.key})", text)

    @staticmethod
    def literal(value: float | str | bool, text: str) -> _Value:
        if isinstance(value, bool):
            return _constant(BOOL, float(value), f"b:{float(value)}", text, value)
        if isinstance(value, float):
            return _constant(NUMBER, value, f"n:{value!r}", text, value)
        return _constant(TEXT, value, f"s:{value!r}", text, value)

    def column(self, node: _Col, text: str) -> _Value:
        canonical = self.schema.resolve(node.name)
        if canonical is None:
            raise WhenError(self.unknown_column(node), node.pos)
        self.columns.add(canonical)
        kind = self.schema.type_of(canonical)
        loader = _LOADERS[kind]
        fn = _memo(f"col:{kind.value}:{canonical}", lambda f: loader(f._column(canonical), f._rows))
        return _Value(kind, fn, f"col:{kind.value}:{canonical}", text)

    def unknown_column(self, node: _Col) -> str:
        hint = suggest(node.name, self.schema.candidates())
        message = f'unknown column "{node.name}"'
        if hint is not None:
            return f'{message} — did you mean "{hint}"?'
        if not node.bracketed:
            return f'{message} (if you meant the text, put it in quotes: "{node.name}")'
        return message

    def call(self, node: _Call, text: str) -> _Value:
        name = _fold(node.name)
        spec = _FUNCTIONS.get(_FUNCTION_ALIASES.get(name, name))
        if spec is None:
            hint = suggest(node.name, [*_FUNCTIONS, *_FUNCTION_ALIASES])
            tail = f' — did you mean "{hint}"?' if hint else ""
            raise WhenError(f'unknown function "{node.name}"{tail}', node.pos)
        if len(node.args) != len(spec.params):
            raise WhenError(self.arity_message(spec, len(node.args)), node.pos)
        args = [self.argument(spec, kind, self.value(arg)) for kind, arg in zip(spec.params, node.args)]
        key = f"{spec.name}({','.join(a.key for a in args)})"
        fn = _memo(key, lambda f: spec.impl(f, *(a.fn(f) for a in args)))
        return _Value(spec.result, fn, key, text, by_day=spec.by_day)

    @staticmethod
    def arity_message(spec: _Function, given: int) -> str:
        if not spec.params:
            return f"{spec.name}() takes no arguments, got {given}"
        wanted = ", ".join(_PARAM_NAMES[p] for p in spec.params)
        plural = "" if len(spec.params) == 1 else "s"
        return f"{spec.name} takes {len(spec.params)} argument{plural} ({wanted}), got {given}"

    def argument(self, spec: _Function, kind: ColumnType, arg: _Value) -> _Value:
        if arg.type is kind:
            return arg
        problem = f"{spec.name} needs {_PARAM_NAMES[kind]}; {arg.text} is {_type_name(arg.type)}"
        if kind is TEXT and arg.is_number_literal:
            return self.number_as_text(arg)
        if kind is DATE and arg.is_text_literal:
            return self.date_literal(arg, f"{spec.name} needs a date; {arg.text} is not a date")
        if kind is NUMBER and arg.is_text_literal and _parse_number(arg.literal, self.locale) is not None:
            return self.coerce_literal(arg, NUMBER, arg)
        raise WhenError(problem)

    def negate(self, node: _Neg, text: str) -> _Value:
        operand = self.value(node.operand)
        if operand.is_text_literal and _parse_number(operand.literal, self.locale) is not None:
            operand = self.coerce_literal(operand, NUMBER, operand)
        if operand.type is not NUMBER:
            raise WhenError(
                f"a minus sign needs a number; {operand.text} is {_type_name(operand.type)}", node.pos
            )
        if operand.is_literal:
            return _constant(NUMBER, -operand.literal, f"n:{-operand.literal!r}", text, -operand.literal)
        key = f"neg({operand.key})"
        return _Value(NUMBER, _memo(key, lambda f: -np.asarray(operand.fn(f), dtype=float)), key, text)

    def arithmetic(self, node: _Arith, text: str) -> _Value:
        left, right = self.arith_operands(node)
        op = node.op
        key = f"({left.key}{op}{right.key})"
        if left.type is NUMBER and right.type is NUMBER:
            return _Value(
                NUMBER, _memo(key, lambda f: _arith_numbers(op, left.fn(f), right.fn(f))), key, text
            )
        if op == "-" and left.type is DATE and right.type is DATE:
            return _Value(NUMBER, _memo(key, lambda f: _day_difference(left.fn(f), right.fn(f))), key, text)
        if op in {"+", "-"} and left.type is DATE and right.type is NUMBER:
            sign = 1.0 if op == "+" else -1.0
            fn = _memo(key, lambda f: _shift_days(left.fn(f), sign * np.asarray(right.fn(f), float)))
            return _Value(DATE, fn, key, text, by_day=left.by_day and _whole(right))
        if op == "+" and left.type is NUMBER and right.type is DATE:
            fn = _memo(key, lambda f: _shift_days(right.fn(f), left.fn(f)))
            return _Value(DATE, fn, key, text, by_day=right.by_day and _whole(left))
        raise WhenError(self.arith_message(op, left, right), node.pos)

    def arith_operands(self, node: _Arith) -> tuple[_Value, _Value]:
        """Quoted literals in arithmetic read as dates next to dates, else as numbers or dates."""
        left, right = self.value(node.left), self.value(node.right)
        if left.is_text_literal and not right.is_text_literal:
            left = self.arith_literal(left, right, node.op)
        if right.is_text_literal and not left.is_text_literal:
            right = self.arith_literal(right, left, node.op)
        return left, right

    def arith_literal(self, literal: _Value, other: _Value, op: str) -> _Value:
        if other.type is DATE and op == "-":
            if _parse_date(literal.literal, self.locale) is not None:
                return self.coerce_literal(literal, DATE, other)
        if _parse_number(literal.literal, self.locale) is not None:
            return self.coerce_literal(literal, NUMBER, other)
        if other.type is NUMBER and _parse_date(literal.literal, self.locale) is not None:
            return self.coerce_literal(literal, DATE, other)
        return literal

    @staticmethod
    def arith_message(op: str, left: _Value, right: _Value) -> str:
        for side in (left, right):
            if side.type in {TEXT, BOOL}:
                return f"{op} works on numbers and dates; {side.text} is {_type_name(side.type)}"
        return (
            f"cannot compute {left.text} {op} {right.text} ({_type_name(left.type)} {op} "
            f"{_type_name(right.type)}); dates can be shifted by days or subtracted"
        )


def _whole(value: _Value) -> bool:
    return value.is_number_literal and float(value.literal).is_integer()


# A rule's regular expression runs on every distinct value of a column on every run, so it must not be
# able to hang a run: RE2 (google-re2) runs in time linear in the text, whatever the pattern. Its memory
# for one compiled pattern is capped too; a pattern that needs more is refused at its cell.
REGEX_MAX_MEMORY = 8 << 20
_REGEX_UNSUPPORTED = (
    (re.compile(r"\\[1-9]|\(\?P=|\\k<"), "refers back to a group (\\1)"),
    (re.compile(r"\(\?<?[=!]"), "looks ahead or behind ((?=...), (?!...))"),
    (re.compile(r"\(\?>|[*+?}][+]"), "uses atomic groups or possessive quantifiers"),
    (re.compile(r"\(\?\("), "uses a conditional group"),
)


def _regex_options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    options.max_mem = REGEX_MAX_MEMORY
    options.never_capture = True  # only "is there a match" is asked
    return options


def _compile_regex(pattern: str, shown: str, position: int) -> Any:
    """A case-insensitive RE2 pattern; a pattern RE2 cannot run in linear time is a WhenError."""
    for probe, what in _REGEX_UNSUPPORTED:
        if probe.search(pattern):
            raise WhenError(
                f"the regular expression {shown} {what}, which sheetflow does not support: rules use "
                "linear-time regular expressions (RE2) so that no pattern can hang a run",
                position,
            )
    try:
        return re2.compile(pattern, _regex_options())
    except (re2.error, ValueError, TypeError, OverflowError) as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        reason = str(reason)
        if "too large" in reason or "memory" in reason:
            reason = "it is too large to run (repetitions like {1000} multiply its size)"
        raise WhenError(f"invalid regular expression {shown}: {reason}", position) from None


def _parse_number(text: str, locale: Locale) -> float | None:
    """A number in quotes, read as the workbook writes numbers (Settings ``locale``): "50", "-3", "2.5";
    in pt-BR "1.234,56" and "2,5"; "R$ 2.500" too. None if it is not a number."""
    if not any(ch.isdigit() for ch in text):
        return None
    try:
        return parse_number(text.strip(), locale)
    except (Unreadable, ValueError, OverflowError):
        return None


def _parse_date(text: str, locale: Locale) -> tuple[np.datetime64, bool] | None:
    """Date text as cells accept it (ISO, or 01/02/2026 in the locale's day order; ``Z``/offsets are
    converted to the workbook's zone) -> (datetime64[us], has no time of day); None if invalid."""
    try:
        moment = read_date(text.strip(), locale)
    except (Unreadable, ValueError, OverflowError):
        return None
    if moment is None:
        return None
    return np.datetime64(moment, "us"), not date_has_time(text.strip())


# ============================================================================ public entry points


@dataclass(frozen=True)
class CompiledWhen:
    """A compiled ``when``: call :meth:`mask` with a :class:`Frame` for each table/run."""

    source: str
    columns: frozenset[str]
    _cond: _Cond = field(repr=False, compare=False)

    def mask(self, frame: Frame) -> pd.Series:
        """One bool per row of ``frame.df`` (same index), never missing."""
        with np.errstate(all="ignore"):
            result = np.asarray(self._cond.fn(frame), dtype=bool)
        rows = np.broadcast_to(result, (frame._rows,)).copy()  # copy: callers may mutate it
        return pd.Series(rows, index=frame.df.index, dtype=bool)


_ALWAYS = _Cond(lambda _frame: True, "always")


def compile_when(source: str | None, schema: Schema) -> CompiledWhen:
    """Parse and type-check ``source``; raise :class:`WhenError` for any user mistake."""
    text = _source_text(source)
    if not text.strip():
        return CompiledWhen(text, frozenset(), _ALWAYS)
    if len(text) > MAX_SOURCE_CHARS:
        raise WhenError(
            f"the expression is too long ({len(text)} characters; the limit is {MAX_SOURCE_CHARS})"
        )
    tree = _Parser(text, schema.locale).parse()
    _check_depth(tree)
    compiler = _Compiler(text, schema)
    cond = compiler.condition(tree)
    return CompiledWhen(text, frozenset(compiler.columns), cond)


def _source_text(source: object) -> str:
    """Cells may hand us None, NaN or a non-text value (a TRUE cell); read those as text or blank."""
    if source is None:
        return ""
    if isinstance(source, str):
        return source
    if isinstance(source, float) and math.isnan(source):
        return ""
    if isinstance(source, (bool, np.bool_)):
        return "TRUE" if source else "FALSE"
    return str(source)

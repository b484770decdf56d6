"""Name matching for sheets, columns and keywords.

The contract says headers match case-insensitively, ignoring surrounding spaces, with spaces, hyphens
and underscores alike. Brazilian users also type the same word with and without accents
(``Pontuação`` / ``Pontuacao``), so accents are folded too. Everything that compares a name a user
typed goes through :func:`normalize`, so there is one definition of "the same name".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_SEPARATORS = re.compile(r"[\s\-_./]+")


def normalize(name: object) -> str:
    """``"  First-Name "`` -> ``"first_name"``; ``"Pontuação"`` -> ``"pontuacao"``."""
    text = unicodedata.normalize("NFKD", str(name).strip().lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _SEPARATORS.sub("_", text).strip("_")


# Punctuation people type or leave out in names ("S.A." / "SA", "D'Ávila" / "DAvila"): dropped; any other
# punctuation separates words like a space does ("Souza, Ana" -> "souza ana").
_DROP = re.compile(r"[.'’`´]")
_PUNCT = re.compile(r"[^\w\s]")
# Legal-form words at the end of a company name ("ACME Ltda." is "Acme"): Brazil, the US/UK and Europe.
COMPANY_SUFFIXES = frozenset(
    {
        "ltda", "ltd", "limitada", "limited", "me", "epp", "eireli", "mei", "sa", "s_a", "cia",
        "inc", "incorporated", "llc", "llp", "lp", "corp", "corporation", "co", "plc", "pty",
        "gmbh", "ag", "kg", "srl", "sas", "sarl", "bv", "nv", "spa", "ab", "oy", "as",
    }
)  # fmt: skip


def text_key(text: object) -> str:
    """The one key under which two texts people typed about people, stages and territories are the same:
    case, accents, spacing and punctuation ignored. ``"João  Souza"``, ``"joao souza"`` and
    ``"JOÃO-SOUZA."`` -> ``"joao_souza"``; ``"Proposta"`` / ``"proposta "`` -> ``"proposta"``. Built on
    :func:`normalize`, so names without punctuation get exactly their header-style key."""
    if text is None:
        return ""
    return normalize(_PUNCT.sub(" ", _DROP.sub("", unicodedata.normalize("NFKC", str(text)))))


def company_key(text: object) -> str:
    """:func:`text_key` without the legal form at the end: ``"ACME Ltda."``, ``"Acme LTDA"``, ``"acme"``
    and ``"Acme Inc"`` are one account (the last word is kept when it is the only one)."""
    words = text_key(text).split("_")
    while len(words) > 1 and words[-1] in COMPANY_SUFFIXES:
        words.pop()
    if len(words) > 2 and words[-2:] == ["s", "a"]:  # "S/A"
        words = words[:-2]
    return "_".join(w for w in words if w)


def fold(text: str) -> str:
    """Case, accents and runs of spaces folded, punctuation kept (for comparing values in rules, where
    ``"a.b@x.com"`` and ``"ab@x.com"`` must stay different): ``"  São   Paulo "`` -> ``"sao paulo"``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    if decomposed.isascii():
        return " ".join(decomposed.split())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())


def suggest(name: str, candidates: Iterable[str], cutoff: float = 60.0) -> str | None:
    """The closest candidate to a mistyped name, for "did you mean" hints (None if nothing is close).

    Plain edit-distance similarity: typos (``titel``, ``frist_name``) are what we are correcting, and
    partial-match scorers would prefer a short name contained in the typo (``name`` for ``frist_name``).
    """
    from rapidfuzz import fuzz, process

    pool = list(dict.fromkeys(candidates))
    if not pool:
        return None
    best = process.extractOne(
        normalize(name), pool, scorer=fuzz.ratio, processor=normalize, score_cutoff=cutoff
    )
    return best[0] if best else None


def column_letter(index: int) -> str:
    """1 -> A, 27 -> AA (1-based, as in A1 references)."""
    letters = ""
    while index > 0:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def cell_ref(sheet: str, row: int, col: int) -> str:
    """``Sheet!B4`` from 1-based row and column; sheet names with spaces are quoted as Excel does."""
    shown = f"'{sheet}'" if re.search(r"[^A-Za-z0-9_.]", sheet) else sheet
    return f"{shown}!{column_letter(col)}{row}"

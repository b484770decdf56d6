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

"""Where sheetflow's packaged data lives: starter rule packs, default email templates, add-in sources.

In a wheel they are copied to ``sheetflow/_data/<name>`` (pyproject ``force-include``); in a checkout
they are the repository's top-level folders (``rules/``, ``templates/``, ``addin/``). One function so
that every module finds them the same way.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``rules``, ``templates`` or ``addin``: the packaged copy in a wheel, the repository folder in a checkout."""
    packaged = _PACKAGE / "_data" / name
    return packaged if packaged.exists() else _PACKAGE.parent / name

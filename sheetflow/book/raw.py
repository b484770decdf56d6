"""One sheet's cell values as a backend read them: the currency between the book layer and the typed tables.

Every backend returns the same value types (see :class:`sheetflow.book.base.Book`), so the layers above never
know which backend read a workbook.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RawSheet"]


@dataclass
class RawSheet:
    """Cell values of one sheet as read; ``origin`` is the 1-based (row, col) of rows[0][0].

    ``rows`` is rectangular from ``origin`` to the last used cell; each value is ``str``, ``float`` (or
    ``int``), ``bool``, ``datetime.date``, ``datetime.datetime``, or ``""`` for an empty cell and for an
    error value (``#N/A``, ``#REF!``...): a failed formula holds no value.
    """

    name: str
    rows: list[list[object]]
    origin: tuple[int, int] = (1, 1)
    state: str = "visible"  # "visible" | "hidden" | "veryHidden"
    last: int | None = None  # set when only the header was read (append-only logs)
    formulas: set[tuple[int, int]] = field(default_factory=set)  # 1-based (row, col) of formula cells
    # Excel tables on the sheet: (name, (r1, c1, r2, c2), header rows, totals rows), 1-based, inclusive
    tables: list[tuple[str, tuple[int, int, int, int], int, int]] = field(default_factory=list)

    @property
    def last_row(self) -> int:
        """Last sheet row holding anything (0 for an empty sheet)."""
        if self.last is not None:
            return self.last
        for i in range(len(self.rows) - 1, -1, -1):
            if any(v not in (None, "") for v in self.rows[i]):
                return self.origin[0] + i
        return 0

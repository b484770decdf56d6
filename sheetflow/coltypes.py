"""The four value types a column can have, shared by tables, the rule compiler and the writers.

In DataFrames: NUMBER is float64 (NaN = empty), DATE is datetime64[ns] (NaT = empty, naive, in the
workbook's timezone), BOOL is pandas' nullable ``boolean`` (<NA> = empty), TEXT is pandas' default string
dtype (``str`` in pandas 3; NaN = empty, never "").
"""

from __future__ import annotations

from enum import Enum


class ColumnType(str, Enum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOL = "bool"

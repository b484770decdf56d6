"""Cell values as they go into the XML: what can be written, and the text of it.

:func:`render` turns a Python value into (kind, text, with_time): strings (inline, ``t="inlineStr"``),
numbers (shortest round-trip ``repr``; NaN and infinities refused), booleans, dates as serial numbers
(:func:`~sheetflow.book.xlsx.refs.excel_serial`), None (clear the value, keep the style). Text follows
XML 1.0 (characters it cannot hold are dropped: :data:`ILLEGAL_XML_RE`), Excel's 32,767-character cell
limit, and ECMA-376's ``_xHHHH_`` escape (ST_Xstring, Part 1 22.9.2.19), so text that looks like an escape is escaped
itself and reads back as written. The other backends use :func:`render` and :data:`ILLEGAL_XML_RE` so that
every backend stores the same value for the same input.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re

from sheetflow.book.patch import PatchError
from sheetflow.book.xlsx.refs import MAX_TEXT, excel_serial

ILLEGAL_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
ESCAPE_LIKE_RE = re.compile("_(x[0-9A-Fa-f]{4}_)")


# A value as it goes into the cell XML: (kind, text, with_time); kind is "str" | "num" | "bool" | "date" | "none".
# A plain tuple: a million of them are made for a big write.
Rendered = tuple[str, str, bool]
_NONE: Rendered = ("none", "", False)

# Text that needs more than XML escaping of & < > (control characters, line breaks, lone surrogates).
_SPECIAL_TEXT_RE = re.compile("[\x00-\x1f&<>\ud800-\udfff\ufffe\uffff]")
# How libxml2 escapes element text (checked against lxml for every legal character in the tests).
TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def _clean_text(text: str) -> str:
    """Characters XML 1.0 cannot hold are dropped; text longer than Excel's cell limit is cut; a literal
    ``_x0041_`` is escaped so Excel does not decode it as a character."""
    text = ILLEGAL_XML_RE.sub("", text)
    if len(text) > MAX_TEXT // 2:  # only long strings can exceed the limit in UTF-16 units
        units = text.encode("utf-16-le")[: MAX_TEXT * 2]
        text = units.decode("utf-16-le", errors="ignore")  # a cut surrogate pair is dropped, not mangled
    return ESCAPE_LIKE_RE.sub(r"_x005F_\1", text)


def render(value: object, where: str, is1904: bool) -> Rendered:
    """Validate and convert one Python value; errors name the cell."""
    kind = type(value)
    if kind is str:  # the exact built-in types first: the common case, and cheaper than isinstance
        return "str", _clean_text(value), False  # type: ignore[arg-type]  # kind is str
    if value is None:
        return _NONE
    if kind is int:
        return "num", str(value), False
    if kind is float and value - value == 0:  # type: ignore[operator]  # kind is float; finite
        return "num", repr(value), False
    if isinstance(value, str):
        return "str", _clean_text(value), False
    if isinstance(value, bool):
        return "bool", "1" if value else "0", False
    if isinstance(value, (dt.datetime, dt.date)):
        if value != value:  # pandas NaT
            raise PatchError(f"{where}: cannot write an empty date (NaT); use None to clear a cell")
        with_time = isinstance(value, dt.datetime) and value.time() != dt.time(0)
        serial = excel_serial(value, is1904, where)
        return "date", str(serial) if isinstance(serial, int) else repr(serial), with_time
    if isinstance(value, numbers.Integral):
        return "num", str(int(value)), False
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise PatchError(f"{where}: cannot write {number} (not a finite number) into a cell")
        return "num", repr(number), False
    item = getattr(value, "item", None)
    if (
        callable(item) and type(value).__module__ == "numpy"
    ):  # numpy scalar (e.g. numpy.bool_): use the Python value
        return render(item(), where, is1904)
    raise PatchError(f"{where}: cannot write a value of type {type(value).__name__} ({value!r}) into a cell")


def text_xml(text: str) -> tuple[str, bool]:
    """Clean ``text`` (see _clean_text) and escape it for element content; also whether it needs
    ``xml:space="preserve"`` (surrounding white space or line breaks/tabs, which XML readers may drop)."""
    if len(text) > MAX_TEXT // 2 or _SPECIAL_TEXT_RE.search(text) is not None:
        text = _clean_text(text)
        preserve = text != text.strip() or "\n" in text or "\r" in text or "\t" in text
        return text.translate(TEXT_ESCAPES), preserve
    if "_x" in text:
        text = ESCAPE_LIKE_RE.sub(r"_x005F_\1", text)
    return text, text != text.strip()

"""What earlier runs saw, kept in a very hidden sheet of the workbook so it travels with the file.

Later triggers (``new``, ``changed:COLUMN``, ``entered:STAGE``, ``score_reached:N``) compare a record with
what the last run saw, and round-robin pointers and fired-trigger keys must survive between runs and
machines. A sidecar file would be lost when the team emails or moves the workbook and cannot exist for
Google Sheets, so state lives in the ``_sheetflow_state`` sheet (state ``veryHidden``: not in Excel's
Unhide list) as rows of ``section | key | value``:

- ``meta``    / ``version``, ``last_run_id``, ``last_run_at``, ``baseline_at``
- ``rec:Contacts`` / record id / JSON of the tracked values of that record (score, stage, ...)
- ``gone:Contacts`` / chunk number / ids that were seen once and are no longer in the sheet (tombstones),
  packed as id ranges (:func:`pack_ids`): a row that is cut and pasted back later is not ``new`` again
- other sections belong to later features (pointers, fired triggers, the email journal).

The sheet is rewritten as a whole on every real run, in the same save as the data it describes, so
state and data cannot disagree after a crash: either both are written or neither is. A user who
deletes the sheet loses history only: the next run is a first run again and records a new baseline.

Version 2 added the ``rules`` section (when each automation rule was first seen, for per-rule baselines
and ``include_existing``) and tombstones; a version-1 state is read as is (its rules count as seen).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sheetflow.problems import Problem, warning
from sheetflow.tables.table import Table

VERSION = "2"
GONE = "gone:"  # section prefix of tombstones
CHUNK_CHARS = 30_000  # one state cell holds at most 32,767 characters (Excel's cell limit)
# Values remembered per record, by table (later features add the columns their triggers watch).
TRACKED: dict[str, tuple[str, ...]] = {
    "Contacts": ("score", "lifecycle_stage", "owner"),
    "Deals": ("stage", "owner"),
    "Tickets": ("status", "owner"),
}


@dataclass
class State:
    meta: dict[str, str] = field(default_factory=dict)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # table -> id -> values
    sections: dict[str, dict[str, str]] = field(default_factory=dict)  # other sections, raw
    gone: dict[str, set[str]] = field(default_factory=dict)  # table -> ids seen once, no longer there

    def seen(self, table: str) -> dict[str, dict[str, Any]]:
        return self.records.setdefault(table, {})

    def known(self, table: str, record_id: object) -> bool:
        """True when an earlier run saw this id in ``table`` (still there or gone since)."""
        if not isinstance(record_id, str):
            return False
        rid = record_id.strip()
        return rid in self.records.get(table, {}) or rid in self.gone.get(table, ())

    @property
    def has_history(self) -> bool:
        """An earlier run completed on this workbook (its baseline is recorded)."""
        return bool(self.meta.get("last_run_id"))

    @property
    def version(self) -> int:
        try:
            return int(self.meta.get("version") or 0)
        except ValueError:
            return 0

    def rows(self) -> list[list[str]]:
        """The state sheet's content, header first."""
        out = [["section", "key", "value"]]
        out += [["meta", k, v] for k, v in sorted(self.meta.items())]
        for table in sorted(self.records):
            for rid, values in self.records[table].items():
                out.append(
                    [
                        f"rec:{table}",
                        rid,
                        json.dumps(values, separators=(",", ":"), ensure_ascii=False, default=str),
                    ]
                )
        for table in sorted(self.gone):
            out += [
                [f"{GONE}{table}", str(n), chunk] for n, chunk in enumerate(pack_ids(self.gone[table]), 1)
            ]
        for section in sorted(self.sections):
            out += [[section, k, v] for k, v in self.sections[section].items()]
        return out


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def pack_ids(ids: Iterable[str]) -> list[str]:
    """A set of record ids as a few JSON chunks (each under :data:`CHUNK_CHARS`).

    Ids that share a prefix and digit count and follow each other (``C-00001`` .. ``C-00500``, as
    sheetflow numbers them) become one ``[prefix, first, last, digits]`` range, so 100,000 deleted
    contacts numbered in a row take a few bytes; other ids are kept as they are. Order-independent and
    deterministic: the same set always gives the same text (so an unchanged state is not rewritten).
    """
    runs: dict[tuple[str, int], list[int]] = {}
    plain: list[str] = []
    for rid in ids:
        m = _NUMBERED.match(rid)
        if m:
            runs.setdefault((m.group(1), len(m.group(2))), []).append(int(m.group(2)))
        else:
            plain.append(rid)
    items: list[object] = []
    for (prefix, width), numbers in sorted(runs.items()):
        numbers.sort()
        start = prev = numbers[0]
        for n in numbers[1:] + [None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            items.append(prefix + str(start).zfill(width) if start == prev else [prefix, start, prev, width])
            if n is not None:
                start = prev = n
    items += sorted(plain)
    chunks: list[str] = []
    current: list[object] = []
    size = 2
    for item in items:
        text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        if current and size + len(text) + 1 > CHUNK_CHARS:
            chunks.append(json.dumps(current, ensure_ascii=False, separators=(",", ":")))
            current, size = [], 2
        current.append(item)
        size += len(text) + 1
    if current:
        chunks.append(json.dumps(current, ensure_ascii=False, separators=(",", ":")))
    return chunks


def unpack_ids(chunks: Iterable[str]) -> set[str]:
    """The ids of :func:`pack_ids` chunks (raises ValueError for text that is not such a chunk)."""
    out: set[str] = set()
    for chunk in chunks:
        for item in json.loads(chunk):
            if isinstance(item, str):
                out.add(item)
            else:
                prefix, first, last, width = item
                out.update(prefix + str(n).zfill(int(width)) for n in range(int(first), int(last) + 1))
    return out


def load_state(table: Table | None) -> tuple[State, list[Problem]]:
    state = State()
    problems: list[Problem] = []
    if table is None or not table.exists or not len(table):
        return state, problems
    df = table.df
    for pos, (section, key, value) in enumerate(zip(df["section"], df["key"], df["value"])):
        if not isinstance(section, str) or not isinstance(key, str):
            continue
        value = value if isinstance(value, str) else ""
        if section == "meta":
            state.meta[key] = value
        elif section.startswith(GONE):
            try:
                state.gone.setdefault(section[len(GONE) :], set()).update(unpack_ids([value]))
            except (ValueError, TypeError):
                problems.append(
                    warning(
                        table.ref(pos, "value"),
                        "sheetflow's saved state is damaged here",
                        "records deleted earlier may count as new if they come back; "
                        "do not edit the hidden state sheet",
                    )
                )
        elif section.startswith("rec:"):
            try:
                state.seen(section[4:])[key] = json.loads(value) if value else {}
            except json.JSONDecodeError:
                problems.append(
                    warning(
                        table.ref(pos, "value"),
                        "sheetflow's saved state is damaged here",
                        "this record counts as new once; do not edit the hidden state sheet",
                    )
                )
        else:
            state.sections.setdefault(section, {})[key] = value
    return state, problems

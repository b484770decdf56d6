"""What earlier runs saw, kept in a very hidden sheet of the workbook so it travels with the file.

Later triggers (``new``, ``changed:COLUMN``, ``entered:STAGE``, ``score_reached:N``) compare a record with
what the last run saw, and round-robin pointers and fired-trigger keys must survive between runs and
machines. A sidecar file would be lost when the team emails or moves the workbook and cannot exist for
Google Sheets, so state lives in the ``_sheetflow_state`` sheet (state ``veryHidden``: not in Excel's
Unhide list) as rows of ``section | key | value``:

- ``meta``    / ``version``, ``last_run_id``, ``last_run_at``
- ``rec:Contacts`` / record id / JSON of the tracked values of that record (score, stage, ...)
- other sections belong to later features (pointers, fired triggers, the email journal).

The sheet is rewritten as a whole on every real run, in the same save as the data it describes, so
state and data cannot disagree after a crash: either both are written or neither is. A user who
deletes the sheet loses history only: every record then counts as new once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .problems import Problem, warning
from .tables import Table

VERSION = "1"
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

    def seen(self, table: str) -> dict[str, dict[str, Any]]:
        return self.records.setdefault(table, {})

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
        for section in sorted(self.sections):
            out += [[section, k, v] for k, v in self.sections[section].items()]
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

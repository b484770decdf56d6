"""Generate benchmark workbooks with N contacts (plus reps, stages, the starter rules).

    python benchmarks/generate.py 1000 10000 100000      # -> bench-data/contacts-100000.xlsx

Written with openpyxl's write-only mode: these are files sheetflow creates, not users' workbooks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openpyxl import Workbook  # noqa: E402

from sheetflow import contract  # noqa: E402
from sheetflow.commands import sample  # noqa: E402
from sheetflow.commands.init import read_pack  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "bench-data"


def generate(n: int, folder: Path = OUT, today: dt.date = dt.date(2026, 11, 23)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"contacts-{n}.xlsx"
    wb = Workbook(write_only=True)
    sheets = {
        "Contacts": sample.contacts(n, today=today),
        "Reps": sample.REPS,
        "Stages": sample.STAGES,
        "Scoring": read_pack("b2b-lead-scoring", "Scoring", "en"),
        "Settings": read_pack("b2b-lead-scoring", "Settings", "en"),
    }
    for name, rows in sheets.items():
        spec = contract.BY_NAME[name]
        ws = wb.create_sheet(name)
        columns = spec.column_names
        ws.append(columns)
        for row in rows:
            ws.append([_cell(row.get(c)) for c in columns])
    wb.save(path)
    return path


def _cell(value):
    if value == "":
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000, 100000])
    for n in parser.parse_args().sizes:
        t = time.perf_counter()
        path = generate(n)
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()

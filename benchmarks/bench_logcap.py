"""Logs under a cap over many runs: time per run and workbook size stay flat once the cap is reached.

    python benchmarks/bench_logcap.py                          # 100,000 contacts, cap 50,000, 20 runs
    python benchmarks/bench_logcap.py --contacts 20000 --cap 10000 --runs 20

Each run changes the points of a Scoring rule that matches everyone ("Everyone", when TRUE), so every
contact is re-scored and every run writes one Activity row per contact: without the cap, Activity would pass
Excel's 1,048,576 rows after about ten runs at 100,000 contacts. The points are changed by patching the one
cell (as a person typing it would; re-saving 100,000 rows with openpyxl would dominate the timing). Each line
shows the run's wall-clock time (read, plan, archive, write, all of ``sheetflow.commands.run.run``), the rows in
Activity, the workbook's size and the archive's size. Numbers go in the README; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import python_calamine as pc  # noqa: E402
from generate import generate  # noqa: E402

from sheetflow.book.patch import SheetPatch  # noqa: E402
from sheetflow.book.xlsx.apply import patch_workbook  # noqa: E402
from sheetflow.commands.run import run  # noqa: E402

NOW = dt.datetime(2026, 11, 23, 10, 0)


def _rows(path: Path, sheet: str) -> tuple[int, int, int]:
    """Rows in ``sheet``, in Scoring and in Settings, as calamine reads them."""
    book = pc.CalamineWorkbook.from_path(str(path))
    try:
        names = book.sheet_names
        count = len(book.get_sheet_by_name(sheet).to_python()) if sheet in names else 0
        scoring = len(book.get_sheet_by_name("Scoring").to_python())
        settings = len(book.get_sheet_by_name("Settings").to_python())
    finally:
        book.close()
    return count, scoring, settings


def _patch(path: Path, patches: list[SheetPatch]) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    patch_workbook(path, tmp, patches)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--cap", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = generate(args.contacts, folder)
        _, scoring_rows, settings_rows = _rows(path, "Activity")
        everyone = scoring_rows + 1
        _patch(
            path,
            [
                SheetPatch("Scoring", {(everyone, 1): "Everyone", (everyone, 2): "TRUE", (everyone, 3): 1}),
                SheetPatch(
                    "Settings", {(settings_rows + 1, 1): "log_max_rows", (settings_rows + 1, 2): args.cap}
                ),
            ],
        )
        print(f"{args.contacts:,} contacts, log_max_rows {args.cap:,}")
        print(f"{'run':>4} {'time s':>7} {'changes':>8} {'Activity':>9} {'book MB':>8} {'archive MB':>11}")
        for k in range(args.runs):
            _patch(path, [SheetPatch("Scoring", {(everyone, 3): k + 2})])
            t = time.perf_counter()
            result = run(path, now=NOW + dt.timedelta(hours=k))
            elapsed = time.perf_counter() - t
            activity, _, _ = _rows(path, "Activity")
            archive = sum(p.stat().st_size for p in (folder / ".sheetflow").glob("*.archive-*.xlsx"))
            print(
                f"{k + 1:>4} {elapsed:>7.2f} {len(result.plan.changes):>8,} {activity - 1:>9,} "
                f"{path.stat().st_size / 1e6:>8.1f} {archive / 1e6:>11.1f}",
                flush=True,
            )
        shutil.rmtree(folder / ".sheetflow" / "backups", ignore_errors=True)


if __name__ == "__main__":
    main()

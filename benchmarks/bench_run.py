"""Time one sheetflow run in its phases: read, plan, write; then an idempotent second run.

    python benchmarks/bench_run.py 1000 10000 100000

Read = python-calamine + typing into DataFrames; plan = the pure engine (ids, 9 scoring rules,
lifecycle, state); write = building the patches + patching the xlsx + atomic replace + backup.
Numbers go in the README; they are not asserted in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import OUT, generate  # noqa: E402

from sheetflow.apply import build_patches  # noqa: E402
from sheetflow.book.xlsx import XlsxBook  # noqa: E402
from sheetflow.commands.run import load  # noqa: E402
from sheetflow.engine.run import plan_run  # noqa: E402

NOW = dt.datetime(2026, 11, 23, 10, 0)


def one_run(path: Path, now: dt.datetime) -> dict[str, float]:
    book = XlsxBook(path)
    times: dict[str, float] = {}
    t = time.perf_counter()
    loaded = load(book.read())
    times["read"] = time.perf_counter() - t
    t = time.perf_counter()
    plan = plan_run(loaded.tables, loaded.settings, loaded.state, now)
    times["plan"] = time.perf_counter() - t
    times["changes"] = len(plan.changes)
    t = time.perf_counter()
    if plan.changes:
        with book.lease():
            book.write(build_patches(plan, loaded.tables), backups=2)
    times["write"] = time.perf_counter() - t
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000, 100000])
    args = parser.parse_args()
    print(f"{'contacts':>9} {'run':>6} {'read s':>7} {'plan s':>7} {'write s':>8} {'changes':>8}")
    for n in args.sizes:
        source = OUT / f"contacts-{n}.xlsx"
        if not source.exists():
            generate(n)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / source.name
            shutil.copy(source, path)
            for label, now in (("first", NOW), ("second", NOW + dt.timedelta(minutes=5))):
                r = one_run(path, now)
                print(
                    f"{n:>9} {label:>6} {r['read']:>7.2f} {r['plan']:>7.2f} {r['write']:>8.2f} {int(r['changes']):>8}"
                )
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

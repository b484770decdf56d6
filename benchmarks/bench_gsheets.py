"""One sheetflow run on a Google spreadsheet through the local Sheets emulator: requests, bytes and time.

    python benchmarks/bench_gsheets.py 10000 100000

The workbook is benchmarks/generate.py's (n contacts, 9 scoring rules), copied into a freshly started
emulator (sheetflow.testing.sheets_emulator) and run twice with the real gsheets backend and a real gspread
client over HTTP on 127.0.0.1: the first run scores and logs every contact, the second changes nothing.
Requests and bytes are what Google would count; time includes the emulator's own work on the same machine
(a real spreadsheet adds network latency per request and Google's processing instead). Numbers go in the
README; they are not asserted in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate  # noqa: E402

from sheetflow.book import LOGS  # noqa: E402
from sheetflow.book.gsheets import GSheetsBook  # noqa: E402
from sheetflow.book.xlsx import XlsxBook  # noqa: E402
from sheetflow.commands.run import run  # noqa: E402
from sheetflow.testing.seed import spreadsheet_from_rows  # noqa: E402
from sheetflow.testing.sheets_emulator import emulator_client, start  # noqa: E402

NOW = dt.datetime(2026, 11, 23, 10, 0)


def bench(n: int, folder: Path, runs: int = 2) -> list[dict]:
    path = generate(n, folder)
    raws = XlsxBook(path).read(full=LOGS)
    out = []
    with start() as server:
        sid = spreadsheet_from_rows(
            server.emulator,
            {name: raw.rows for name, raw in raws.items()},
            hidden=[name for name, raw in raws.items() if raw.state != "visible"],
            origins={name: raw.origin for name, raw in raws.items()},
        )
        for label, now in (("first run", NOW), ("second run", NOW + dt.timedelta(minutes=5)))[:runs]:
            book = GSheetsBook(
                f"gsheets:{sid}",
                client=emulator_client(server.base_url, timeout=600),
                workdir=folder / ".sheetflow",
            )
            server.emulator.reset_counts()
            t = time.perf_counter()
            result = run(book.address, book=book, now=now)
            seconds = time.perf_counter() - t
            stats = server.emulator.stats()
            out.append(
                {
                    "contacts": n,
                    "run": label,
                    "changes": len(result.plan.changes),
                    "requests": stats["requests"],
                    "reads": stats["counts"].get("read", 0) + stats["counts"].get("metadata", 0),
                    "writes": stats["counts"].get("write", 0),
                    "MB sent": stats["bytes_in"] / 1e6,
                    "MB received": stats["bytes_out"] / 1e6,
                    "seconds": seconds,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000])
    parser.add_argument("--runs", type=int, default=2, choices=[1, 2], help="1: the first run only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| contacts | run | changes | requests (reads + writes) | MB sent | MB received | seconds |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for n in args.sizes:
            for row in bench(n, Path(tmp) / str(n), args.runs):
                print(
                    f"| {row['contacts']:,} | {row['run']} | {row['changes']:,} | {row['requests']} "
                    f"({row['reads']} + {row['writes']}) | {row['MB sent']:.1f} | {row['MB received']:.1f} "
                    f"| {row['seconds']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""``sheetflow demo --gsheets``: the demo workbook copied into a freshly started Sheets emulator and run there.

python -m sheetflow.testing.gsheets_demo [DIR] [--contacts N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from rich.console import Console

from sheetflow.book import LOGS
from sheetflow.book.gsheets import GSheetsBook
from sheetflow.book.xlsx import XlsxBook
from sheetflow.commands.demo import run_demo
from sheetflow.commands.run import run
from sheetflow.testing.seed import spreadsheet_from_rows
from sheetflow.testing.sheets_emulator import emulator_client, start


def run_on_emulator(book: Path, folder: Path, now: dt.datetime | None, console: Console):
    """The demo run on a copy of ``book`` in a local Sheets emulator (``sheetflow demo --gsheets``)."""
    raws = XlsxBook(book).read(full=LOGS)
    with start() as server:
        sid = spreadsheet_from_rows(
            server.emulator,
            {name: raw.rows for name, raw in raws.items()},
            hidden=[name for name, raw in raws.items() if raw.state != "visible"],
            origins={name: raw.origin for name, raw in raws.items()},
            title="crm-demo",
        )
        console.print(
            f"[green]copied[/] it into a local Google Sheets emulator at {server.base_url} (gsheets:{sid})"
        )
        gbook = GSheetsBook(
            f"gsheets:{sid}",
            client=emulator_client(server.base_url, timeout=120),
            workdir=folder / ".sheetflow",
        )
        with console.status("running sheetflow on the Google spreadsheet"):
            result = run(gbook.address, book=gbook, now=now, trigger="cli", outbox=folder / "outbox")
        stats = server.emulator.stats()
        console.print(
            f"Google Sheets API requests for this run: {stats['requests']} "
            f"({', '.join(f'{op} {n}' for op, n in sorted(stats['ops'].items()))}); "
            f"{stats['bytes_in'] // 1024} KiB sent, {stats['bytes_out'] // 1024} KiB received"
        )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sheetflow.testing.gsheets_demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("dir", nargs="?", type=Path, default=Path("sheetflow-demo"))
    parser.add_argument("--contacts", type=int, default=300)
    args = parser.parse_args(argv)
    run_demo(args.dir, contacts=args.contacts, console=Console(), gsheets=True, on_emulator=run_on_emulator)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Entry point for people, buttons and schedulers: the same commands as ``sheetflow``.

    python runner.py run crm.xlsx --dry-run
    python runner.py demo

Works from a source checkout without installing (it puts this folder on sys.path).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sheetflow.cli.main import cli  # noqa: E402

if __name__ == "__main__":
    cli()

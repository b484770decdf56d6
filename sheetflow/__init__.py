"""sheetflow: a spreadsheet that runs a small team's CRM automation.

The workbook holds the data and the rules; ``sheetflow run`` scores, assigns and automates, and writes
results, an Activity log and a Runs log back. See README.md and ../shared/WORKBOOK.md (the contract).

The front door (the library API; the CLI, the Excel button and the scheduler call the same functions)::

    from sheetflow import check, run, send, undo
    problems = check("crm.xlsx")                 # list[Problem], each naming its cell
    result = run("crm.xlsx", dry_run=True)       # RunResult: .plan (changes, emails), .problems
    result = run("crm.xlsx")                     # writes the workbook, sends what is due
    undo("crm.xlsx")                             # restores the cells the last run changed

``open_book(address)`` opens a workbook backend (a ``.xlsx``/``.xlsm`` path, ``excel:``); ``init(path)``
writes a starter workbook; ``main()`` is the Excel button's entry point (xlwings ``RunPython`` runs
``import sheetflow; sheetflow.main()``). This module is outside the layers (README "Layout"): it imports the
commands, and nothing in the package imports it.
"""

from sheetflow.book import open_book
from sheetflow.commands.button import main
from sheetflow.commands.init import init
from sheetflow.commands.run import check, run, send
from sheetflow.commands.undo import undo

__version__ = "0.1.0"

__all__ = ["__version__", "check", "init", "main", "open_book", "run", "send", "undo"]

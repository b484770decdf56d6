"""sheetflow: a spreadsheet that runs a small team's CRM automation.

The workbook holds the data and the rules; ``sheetflow run`` scores, assigns and automates, and writes
results, an Activity log and a Runs log back. See README.md and ../shared/WORKBOOK.md (the contract).
"""

__version__ = "0.1.0"


def main() -> None:
    """The Excel button's entry point (xlwings RunPython runs ``import sheetflow; sheetflow.main()``): runs the
    action chosen in the calling workbook's Control sheet. See :func:`sheetflow.commands.button.main`."""
    from sheetflow.commands.button import main as _main

    _main()

"""sheetflow: a spreadsheet that runs a small team's CRM automation.

The workbook holds the data and the rules; ``sheetflow run`` scores, assigns and automates, and writes
results, an Activity log and a Runs log back. See README.md and ../shared/WORKBOOK.md (the contract).
"""

__version__ = "0.1.0"

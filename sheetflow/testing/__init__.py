"""Test support shipped with the package.

:mod:`sheetflow.testing.sheets_emulator` is a local Google Sheets API v4 emulator (Google ships none) so the
Google backend, its retries and its request economy can be tested without Google credentials or network.
:mod:`sheetflow.testing.xlwings_standin` stands in for Excel behind the xlwings surface the live-workbook
backend uses (:mod:`sheetflow.book.excel`), so the Excel button can be tested without Excel.
"""

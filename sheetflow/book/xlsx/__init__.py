"""TODO init"""

from sheetflow.book.xlsx.apply import SheetLayout, date1904, patch_workbook, sheet_layouts
from sheetflow.book.xlsx.book import XlsxBook

__all__ = ["SheetLayout", "XlsxBook", "date1904", "patch_workbook", "sheet_layouts"]

"""The tables layer of sheetflow."""

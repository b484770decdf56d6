"""The commands layer of sheetflow."""

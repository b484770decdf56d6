"""The compose layer of sheetflow."""

"""The rules layer of sheetflow."""

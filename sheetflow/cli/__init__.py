"""The command line: argument parsing and readable output over :mod:`sheetflow.commands` (top layer)."""

from sheetflow.cli.main import cli

__all__ = ["cli"]

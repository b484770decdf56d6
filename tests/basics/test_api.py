"""The package root is the library's front door: these names, and only these, are its public API (a change
here is a change for everyone who imports sheetflow)."""

import subprocess
import sys

import sheetflow


def test_public_names_are_pinned():
    assert sorted(sheetflow.__all__) == [
        "__version__",
        "check",
        "init",
        "main",
        "open_book",
        "run",
        "send",
        "undo",
    ]
    public = {n for n in vars(sheetflow) if not n.startswith("_")}
    # the sub-packages are attributes once imported; every other public name is in __all__
    packages = {"apply", "book", "cli", "coerce", "coltypes", "commands", "compose", "contract", "data"}
    packages |= {"engine", "mail", "names", "problems", "rules", "tables", "testing"}
    assert public - packages == set(sheetflow.__all__) - {"__version__"}


def test_front_door_functions_are_the_commands():
    from sheetflow.commands import run as pipeline
    from sheetflow.commands.undo import undo

    assert (
        sheetflow.run is pipeline.run
        and sheetflow.check is pipeline.check
        and sheetflow.send is pipeline.send
    )
    assert sheetflow.undo is undo


def test_init_then_check_through_the_front_door(tmp_path):
    book = tmp_path / "crm.xlsx"
    assert sheetflow.init(book) == []
    assert book.exists()
    assert sheetflow.init(book) == []  # every sheet is there: nothing added, nothing changed
    assert [p for p in sheetflow.check(book) if p.is_error] == []
    assert sheetflow.open_book(book).identity


def test_version_matches_the_cli(capsys):
    out = subprocess.run(
        [sys.executable, "-m", "sheetflow", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"sheetflow {sheetflow.__version__}"

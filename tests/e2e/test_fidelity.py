"""Never damage the user's workbook: real corpus files through init + run, undo, init on existing files."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import subprocess
import sys

import pytest
import python_calamine as pc
from openpyxl import load_workbook

from sheetflow.cli.main import main
from sheetflow.commands.run import run
from sheetflow.commands.undo import undo
from tests.conftest import CORPUS, NO_CORPUS, NOW
from tests.conftest import read_sheet as sheet

WORKBOOKS = CORPUS / "workbooks"
CHECK = CORPUS / "tools" / "check_preserved.py"
corpus = pytest.mark.skipif(not WORKBOOKS.is_dir(), reason=NO_CORPUS)
ALL = sorted(p.name for p in WORKBOOKS.glob("*.xls[xm]"))
LOSSES = (
    {row["file"]: row for row in csv.DictReader((WORKBOOKS / "OPENPYXL_3.1.5_ROUNDTRIP_LOSSES.csv").open())}
    if WORKBOOKS.is_dir()
    else {}
)
# files sheetflow must refuse with a clear message, touching nothing
REFUSED = {
    "poi__SampleSS.strict.xlsx": "Strict Open XML",
    "calamine__issue252.xlsx": "cannot be read as an Excel workbook",
    "poi__64420.xlsm": "Excel 4.0 macro sheet",
    "poi__CVLKRA-KYC_Download_File_Structure_V3.1.xlsx": "workbook structure is protected",
    "poi__workbookProtection-workbook_password-2013.xlsx": "workbook structure is protected",
}


@corpus
def test_corpus_is_there():
    assert len(ALL) >= 60


@pytest.mark.slow
@corpus
@pytest.mark.parametrize("name", ALL)
def test_corpus_workbook_survives_init_and_run(name, tmp_path, capsys):
    original = WORKBOOKS / name
    path = tmp_path / name
    shutil.copy(original, path)
    code = main(["init", str(path), "--example"])
    if name in REFUSED:
        assert code == 1
        assert REFUSED[name] in capsys.readouterr().out
        assert path.read_bytes() == original.read_bytes()
        return
    assert code == 0
    assert run(path, now=NOW).written
    done = subprocess.run(
        [sys.executable, str(CHECK), str(original), str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    contacts = sheet(path, "Contacts")
    assert len(contacts) == 61 and all(isinstance(r[14], float) for r in contacts[1:])  # score written
    activity = sheet(path, "Activity")
    assert len(activity) > 60
    if "error" not in LOSSES.get(name, {}).get("status", ""):
        wb = load_workbook(path)  # openpyxl can still read it
        assert wb["Contacts"]["O2"].value == contacts[1][14]


def test_undo_restores_only_cells_nobody_changed_since(book):
    path = book(
        {
            "Scoring": [["rule", "when", "points"], ["vp", 'title contains "vp"', 10]],
            "Contacts": [["id", "title", "score"], ["C-1", "VP", 1], ["C-2", "VP", 2], [None, "VP", None]],
        }
    )
    first = run(path, now=NOW)
    assert [r[2] for r in sheet(path, "Contacts")[1:]] == [10, 10, 10]
    wb = load_workbook(path)
    wb["Contacts"]["C3"] = 99  # a colleague edits C-2's score after the run
    wb.save(path)
    result = undo(path, now=NOW + dt.timedelta(hours=1))
    assert result.run_id == first.plan.run_id and result.written
    rows = sheet(path, "Contacts")[1:]
    assert [r[0] for r in rows] == ["C-1", "C-2", ""]  # the generated id is taken back too
    assert [r[2] for r in rows] == [1, 99, ""]
    assert any("Contacts!C3" == p.where and "changed since" in p.message for p in result.skipped)
    activity = sheet(path, "Activity")
    assert sum(1 for r in activity if r[7] == f"undo {first.plan.run_id}") == 3
    assert sheet(path, "Runs")[-1][3] == "undo"
    assert main(["undo", str(path), first.plan.run_id]) == 1  # already undone


def test_undo_without_activity_is_a_clear_error(book, capsys):
    path = book({"Contacts": [["id"], ["C-1"]]})
    assert main(["undo", str(path)]) == 1
    assert "no changes to undo" in capsys.readouterr().out


@corpus
def test_init_on_existing_workbook_adds_only_missing_sheets(tmp_path):
    path = tmp_path / "macro.xlsm"
    shutil.copy(WORKBOOKS / "poi__SimpleMacro.xlsm", path)
    before = {n: sheet(path, n) for n in pc.CalamineWorkbook.from_path(str(path)).sheet_names}
    assert main(["init", str(path)]) == 0
    names = pc.CalamineWorkbook.from_path(str(path)).sheet_names
    for n, rows in before.items():
        assert sheet(path, n) == rows
    assert {"Contacts", "Scoring", "Settings", "Activity"} <= set(names)
    assert sheet(path, "Contacts")[0][:3] == ["id", "first_name", "last_name"]
    done = subprocess.run(
        [sys.executable, str(CHECK), str(WORKBOOKS / "poi__SimpleMacro.xlsm"), str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout
    wb = load_workbook(path)
    assert wb["Contacts"].freeze_panes == "A2"
    assert any("TRUE,FALSE" in dv.formula1 for dv in wb["Scoring"].data_validations.dataValidation)


def test_init_on_existing_keeps_a_portuguese_sheet_and_adds_portuguese_ones(book):
    path = book({"Contatos": [["Nome", "E-mail"], ["Ana", "ana@x.com.br"]]})
    assert main(["init", str(path)]) == 0
    names = pc.CalamineWorkbook.from_path(str(path)).sheet_names
    assert "Contacts" not in names and "Pontuação" in names and "Atividade" in names
    assert sheet(path, "Contatos") == [["Nome", "E-mail"], ["Ana", "ana@x.com.br"]]


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("soffice") or shutil.which("libreoffice")),
    reason="LibreOffice not installed (apt-get install libreoffice-calc-nogui)",
)
@corpus
def test_libreoffice_opens_every_written_corpus_workbook(tmp_path):
    written = []
    for name in ALL:
        if name in REFUSED:
            continue
        path = tmp_path / name
        shutil.copy(WORKBOOKS / name, path)
        assert main(["init", str(path), "--example"]) == 0
        run(path, now=NOW)
        written.append(path)
    out = tmp_path / "csv"
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    profile = tmp_path / "lo-profile"
    done = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--convert-to",
            "csv",
            "--outdir",
            str(out),
            *map(str, written),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    missing = [p.name for p in written if not (out / (p.stem + ".csv")).exists()]
    assert missing == [], f"LibreOffice could not open: {missing}\n{done.stdout}\n{done.stderr}"

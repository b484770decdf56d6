"""``sheetflow excel addin`` / ``excel setup``: files Excel can open, VBA copied byte for byte, nothing lost.

Independent readers check the results: zipfile, openpyxl, python-calamine, oletools' olevba (the VBA),
check_preserved.py from the shared corpus (features of the team's workbook), LibreOffice when installed.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from sheetflow.cli.main import main
from tests.conftest import CORPUS, make_book
from tests.conftest import read_sheet as sheet

pytest.importorskip("oletools.olevba")
from oletools.olevba import VBA_Parser  # noqa: E402

from sheetflow.commands.excel_addin import module_name, xlwings_file  # noqa: E402

try:
    xlwings_file("quickstart.xlsm")
except Exception:  # noqa: BLE001
    pytest.skip('xlwings is not installed (pip install -e ".[test]")', allow_module_level=True)

CHECK = CORPUS / "tools" / "check_preserved.py"
WORKBOOKS = CORPUS / "workbooks"
CUI = "http://schemas.microsoft.com/office/2006/01/customui"


def vba_of(path: Path) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.lower().endswith("vbaproject.bin")))


def procedures(path: Path) -> dict[str, str]:
    """``Module.Procedure`` -> the module's code, for every Sub/Function in the file's VBA (olevba)."""
    out: dict[str, str] = {}
    parser = VBA_Parser(str(path))
    try:
        for _file, _stream, vba_name, code in parser.extract_macros():
            module = vba_name.rsplit(".", 1)[0]
            for proc in re.findall(r"^\s*(?:Public |Private )?(?:Sub|Function) (\w+)", code, re.M):
                out[f"{module}.{proc}"] = code
    finally:
        parser.close()
    return out


def has_procedure(procs: dict[str, str], name: str) -> bool:
    """``Module.Proc`` exactly, or ``Proc`` in any module (how Excel resolves an unqualified macro)."""
    return name in procs or any(k.split(".", 1)[1] == name for k in procs)


def open_everywhere(path: Path, with_openpyxl: bool = True) -> list[str]:
    """The sheet names openpyxl and calamine see (they must agree).

    openpyxl knows no add-in packages (it also refuses xlwings' own .xlam): for an .xlam it reads a copy whose
    main part is typed as a macro workbook, the only difference between the two kinds of package."""
    import python_calamine as pc
    from openpyxl import load_workbook

    data = path.read_bytes()
    if path.suffix == ".xlam":
        copy = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(copy, "w") as dst:
            for info in src.infolist():
                part = src.read(info)
                if info.filename == "[Content_Types].xml":
                    part = part.replace(
                        b"ms-excel.addin.macroEnabled.main", b"ms-excel.sheet.macroEnabled.main"
                    )
                dst.writestr(info, part)
        data = copy.getvalue()
    book = pc.CalamineWorkbook.from_path(str(path))
    names = book.sheet_names
    if with_openpyxl:
        assert load_workbook(io.BytesIO(data), keep_vba=True).sheetnames == names
    try:
        assert names
    finally:
        book.close()
    return names


def libreoffice_converts(path: Path, tmp: Path) -> None:
    office = shutil.which("soffice") or shutil.which("libreoffice")
    out = tmp / "lo"
    done = subprocess.run(
        # LibreOffice does not detect an add-in package by itself ("source file could not be loaded", also for
        # xlwings' own .xlam): name the Excel 2007+ filter explicitly, as a user opening it would pick it
        [
            office,
            "--headless",
            "--infilter=Calc MS Excel 2007 VBA XML",
            "--convert-to",
            "csv",
            "--outdir",
            str(out),
            str(path),
        ],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0 and any(out.iterdir()), done.stderr


# ---------------------------------------------------------------- the add-in


@pytest.mark.parametrize("lang,label", [("en", "Run"), ("pt-BR", "Executar")])
def test_addin_is_xlwings_ribbon_addin_with_sheetflow_ribbon(tmp_path, capsys, lang, label):
    assert main(["excel", "addin", str(tmp_path), "--lang", lang]) == 0
    path = tmp_path / "sheetflow.xlam"
    assert "created" in capsys.readouterr().out
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        ui = etree.fromstring(z.read("customUI/customUI.xml"))  # valid XML
        types = z.read("[Content_Types].xml").decode()
    assert vba_of(path) == vba_of(xlwings_file("quickstart_addin_ribbon.xlam"))  # byte for byte
    tab = ui.find(f".//{{{CUI}}}tab")
    assert tab.get("label") == "sheetflow"
    buttons = ui.findall(f".//{{{CUI}}}button")
    assert [b.get("label") for b in buttons] == [label]
    procs = procedures(path)
    actions = [el.get("onAction") for el in ui.iter() if el.get("onAction")]
    assert actions and all(has_procedure(procs, a) for a in actions), (actions, sorted(procs))
    # RunMain imports the add-in's own file name: sheetflow.xlam -> "import sheetflow; sheetflow.main()"
    code = procs["RibbonMyAddin.RunMain"]
    assert "ThisWorkbook.Name" in code and '"import " & mymodule' in code and 'mymodule & ".main()"' in code
    assert "addin.macroEnabled" in types
    assert open_everywhere(path)


def test_addin_onaction_check_fails_for_a_missing_procedure(tmp_path):
    """The check above can fail: a ribbon calling a macro the VBA lacks is caught."""
    from sheetflow.commands.excel_addin import build_addin

    path = build_addin(tmp_path, interpreter="")
    procs = procedures(path)
    assert has_procedure(procs, "RibbonMyAddin.RunMain")
    assert not has_procedure(procs, "RibbonMyAddin.RunSheetflow")
    assert not has_procedure(procs, "Missing.RunMain")


def test_addin_carries_the_interpreter_in_its_config_sheet(tmp_path):
    from sheetflow.commands.excel_addin import build_addin

    win = build_addin(tmp_path / "w", interpreter=r"C:\Users\Ana\venv\Scripts\python.exe")
    rows = sheet(win, "myaddin.conf")  # active config sheet (xlwings reads "<project>.conf")
    assert rows[0][:2] == ["Interpreter_Win", r"C:\Users\Ana\venv\Scripts\python.exe"]
    mac = build_addin(tmp_path / "m", interpreter="/Users/ana/venv/bin/python")
    rows = sheet(mac, "myaddin.conf")
    assert rows[1][:2] == ["Interpreter_Mac", "/Users/ana/venv/bin/python"]
    assert rows[0][1] == ""
    plain = build_addin(tmp_path / "p", interpreter="")
    assert "_myaddin.conf" in open_everywhere(plain)  # untouched: xlwings falls back to PATH / config files
    for path in (win, mac, plain):
        assert vba_of(path) == vba_of(xlwings_file("quickstart_addin_ribbon.xlam"))


def test_addin_sources_are_valid_xml_and_name_existing_macros():
    """addin/excel/ keeps the ribbon as text; every source's onAction exists in the xlwings add-in."""
    procs = procedures(xlwings_file("quickstart_addin_ribbon.xlam"))
    folder = Path(__file__).resolve().parents[2] / "addin" / "excel"
    sources = sorted(folder.glob("customUI*.xml"))
    assert len(sources) == 2
    for source in sources:
        ui = etree.parse(str(source)).getroot()
        actions = [el.get("onAction") for el in ui.iter() if el.get("onAction")]
        assert actions and all(has_procedure(procs, a) for a in actions), source.name


# ---------------------------------------------------------------- setup of a team's workbook


def _parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


CODENAME = re.compile(rb' codeName="Sheet\d+"|<(?:\w+:)?sheetPr codeName="Sheet\d+"/>')
BOOKKEEPING = (
    "[Content_Types].xml",
    "xl/workbook.xml",
    "xl/_rels/workbook.xml.rels",
    "xl/styles.xml",
)  # styles: bold header of an added Control sheet


def assert_lossless(original: Path, made: Path, control_part: str | None = None) -> None:
    """Every part of the team's workbook is in BOOK.xlsm; apart from the bookkeeping, byte for byte, and a
    sheet part differs at most by the code name (and the Control sheet by its button)."""
    before, after = _parts(original), _parts(made)
    for name, data in before.items():
        assert name in after, f"{name} lost"
        if name in BOOKKEEPING or name == control_part or name.endswith(".rels") and "worksheets" in name:
            continue
        if name.startswith("xl/worksheets/sheet"):
            assert CODENAME.sub(b"", after[name]) == CODENAME.sub(b"", data), name
        else:
            assert after[name] == data, name
    if not CHECK.exists():
        pytest.skip("../shared/corpus (check_preserved.py) is not here; the byte checks above passed")
    done = subprocess.run(
        [sys.executable, str(CHECK), str(original), str(made)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def control_button(made: Path) -> tuple[str, str]:
    """(Control sheet part, the macro its VML button calls)."""
    parts = _parts(made)
    vml = [n for n in parts if n.endswith(".vml")]
    macros = [
        m.decode() for n in vml for m in re.findall(rb"<x:FmlaMacro>\[0\]!(\w+)</x:FmlaMacro>", parts[n])
    ]
    sheets = [
        n
        for n in parts
        if n.startswith("xl/worksheets/_rels/") and any(v.rsplit("/", 1)[1].encode() in parts[n] for v in vml)
    ]
    return (sheets[0].replace("_rels/", "").removesuffix(".rels") if sheets else ""), (
        macros[0] if macros else ""
    )


def test_setup_makes_macro_workbook_with_button_and_module(tmp_path, capsys):
    src = make_book(
        tmp_path / "crm.xlsx",
        {
            "Contacts": [["id", "email", "note"], ["C-1", "a@x.com", "=1+1"], ["C-2", "b@x.com", 42]],
            "Scoring": [["rule", "when", "points"], ["Big", "company_size > 100", 10]],
        },
    )
    before = src.read_bytes()
    assert main(["excel", "setup", str(src)]) == 0
    out = capsys.readouterr().out
    made, module = tmp_path / "crm.xlsm", tmp_path / "crm.py"
    assert "created" in out and "Control sheet" in out
    assert src.read_bytes() == before  # the original is not touched
    with zipfile.ZipFile(made) as z:
        assert z.testzip() is None
        types = z.read("[Content_Types].xml").decode()
        workbook = z.read("xl/workbook.xml").decode()
    assert "application/vnd.ms-excel.sheet.macroEnabled.main+xml" in types
    assert "application/vnd.ms-office.vbaProject" in types
    assert 'codeName="ThisWorkbook"' in workbook
    assert vba_of(made) == vba_of(xlwings_file("quickstart.xlsm"))
    names = open_everywhere(made)
    assert names == ["Contacts", "Scoring", "Control"]
    assert sheet(made, "Contacts") == sheet(src, "Contacts")  # "=1+1" stays text, 42 a number
    assert sheet(made, "Control")[2][:2] == ["Action", "Run"]
    part, macro = control_button(made)
    assert macro == "SampleCall" and has_procedure(procedures(made), macro)
    assert part  # the button sits on the Control sheet
    assert module.read_text().startswith("from sheetflow import main")
    assert_lossless(src, made, control_part=part)


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("soffice") or shutil.which("libreoffice")),
    reason="LibreOffice not installed (apt-get install libreoffice-calc-nogui)",
)
def test_libreoffice_opens_the_built_files(tmp_path):
    from sheetflow.commands.excel_addin import build_addin, setup_workbook

    libreoffice_converts(build_addin(tmp_path / "a", interpreter=""), tmp_path / "a")
    src = make_book(tmp_path / "crm.xlsx", {"Contacts": [["id", "email"], ["C-1", "a@x.com"]]})
    libreoffice_converts(setup_workbook(src).workbook, tmp_path)


def test_setup_module_imports_sheetflow_main(tmp_path):
    """What SampleCall runs: ``import crm; crm.main()`` with the workbook's folder on sys.path."""
    src = make_book(tmp_path / "crm.xlsx", {"Contacts": [["id"]]})
    main(["excel", "setup", str(src)])
    done = subprocess.run(
        [sys.executable, "-c", "import crm, sheetflow; assert crm.main is sheetflow.main; print('ok')"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize(
    "stem,expected",
    [
        ("CRM 2026", "CRM_2026"),
        ("crm-equipe", "crm_equipe"),
        ("2026", "crm_2026"),
        ("email", "email_crm"),
        ("sheetflow", "sheetflow_crm"),
        ("class", "class_crm"),
        ("Vendas", "Vendas"),
    ],
)
def test_module_name_is_importable_and_shadows_nothing(stem, expected):
    name = module_name(stem)
    assert name == expected and name.isidentifier()


def test_setup_renames_a_workbook_python_cannot_import(tmp_path, capsys):
    src = make_book(tmp_path / "CRM equipe.xlsx", {"Contatos": [["id", "E-mail"]]})
    assert main(["excel", "setup", str(src)]) == 0
    assert "CRM_equipe.xlsm" in capsys.readouterr().out
    assert (tmp_path / "CRM_equipe.xlsm").exists() and (tmp_path / "CRM_equipe.py").exists()
    assert open_everywhere(tmp_path / "CRM_equipe.xlsm") == ["Contatos", "Controle"]  # pt-BR workbook
    assert sheet(tmp_path / "CRM_equipe.xlsm", "Controle")[2][:2] == ["Ação", "Executar"]


def test_setup_keeps_an_existing_control_sheet(tmp_path):
    from sheetflow.commands.init import create_starter

    src = create_starter(tmp_path / "team.xlsx", lang="pt-BR", example=True)
    assert main(["excel", "setup", str(src)]) == 0
    made = tmp_path / "team.xlsm"
    assert open_everywhere(made) == open_everywhere(src)
    part, macro = control_button(made)
    assert macro == "SampleCall"
    assert_lossless(src, made, control_part=part)


def test_setup_refuses_a_workbook_with_macros_and_an_existing_target(tmp_path, capsys):
    macro = tmp_path / "vba.xlsm"
    shutil.copy(WORKBOOKS / "calamine__vba.xlsm", macro) if WORKBOOKS.exists() else pytest.skip("no corpus")
    before = macro.read_bytes()
    assert main(["excel", "setup", str(macro)]) == 2
    assert "already has macros" in capsys.readouterr().out
    assert macro.read_bytes() == before
    src = make_book(tmp_path / "crm.xlsx", {"Contacts": [["id"]]})
    (tmp_path / "crm.xlsm").write_bytes(b"mine")
    assert main(["excel", "setup", str(src)]) == 2
    assert "--force" in capsys.readouterr().out
    assert (tmp_path / "crm.xlsm").read_bytes() == b"mine"
    assert main(["excel", "setup", str(src), "--force"]) == 0
    assert zipfile.is_zipfile(tmp_path / "crm.xlsm")


def test_setup_refuses_what_is_not_a_workbook(tmp_path, capsys):
    bad = tmp_path / "crm.xlsx"
    bad.write_bytes(b"not a zip")
    assert main(["excel", "setup", str(bad)]) == 1
    assert "cannot be read as an Excel workbook" in capsys.readouterr().out
    assert main(["excel", "setup", str(tmp_path / "none.xlsx")]) == 2


CORPUS_SAMPLE = [
    "poi__WithDrawing.xlsx",
    "poi__commentTest.xlsx",
    "poi__WithChartSheet.xlsx",
    "xlwings__tests_tables.xlsx",
    "calamine__date_1904.xlsx",
    "poi__DataValidations-49244.xlsx",
    "poi__TwoSheetsOneHidden.xlsx",
    "poi__unicodeSheetName.xlsx",
]


def _corpus_setup(name: str, tmp_path: Path) -> None:
    if not WORKBOOKS.exists():
        pytest.skip("../shared/corpus is not here")
    src = tmp_path / name
    shutil.copy(WORKBOOKS / name, src)
    try:
        from sheetflow.commands.excel_addin import setup_workbook

        result = setup_workbook(src)
    except Exception as e:  # noqa: BLE001
        from sheetflow.problems import SheetflowError

        assert isinstance(e, SheetflowError), repr(e)  # refused with a message, never a traceback
        return
    made = result.workbook
    assert vba_of(made) == vba_of(xlwings_file("quickstart.xlsm"))
    part, macro = control_button(made)
    assert result.button == (macro == "SampleCall")
    assert_lossless(src, made, control_part=part)
    try:
        open_everywhere(src)
        readable = True
    except Exception:  # noqa: BLE001 - openpyxl cannot read some originals (its bugs); then calamine only
        readable = False
    names = open_everywhere(made, with_openpyxl=readable)
    assert names[-1] in ("Control", "Controle") or result.added_control is False
    with zipfile.ZipFile(made) as z:
        assert z.testzip() is None


@pytest.mark.parametrize("name", CORPUS_SAMPLE)
def test_setup_on_real_workbooks(name, tmp_path):
    _corpus_setup(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", sorted(p.name for p in WORKBOOKS.glob("*.xlsx")) if WORKBOOKS.exists() else []
)
def test_setup_on_every_corpus_workbook(name, tmp_path):
    _corpus_setup(name, tmp_path)


def test_setup_says_so_when_the_control_sheet_cannot_take_a_button(tmp_path, capsys):
    from openpyxl import Workbook
    from openpyxl.comments import Comment

    from sheetflow.tables import control

    wb = Workbook()
    ws = wb.active
    ws.title = "Control"
    for (r, c), value in control.control_cells("en").items():
        ws.cell(r, c, value)
    ws["A1"].comment = Comment("our note", "Ana")  # comments live in the sheet's one VML drawing
    wb.save(tmp_path / "crm.xlsx")
    assert main(["excel", "setup", str(tmp_path / "crm.xlsx")]) == 0
    assert "no button was added" in capsys.readouterr().out
    made = tmp_path / "crm.xlsm"
    assert vba_of(made) == vba_of(xlwings_file("quickstart.xlsm"))
    assert_lossless(tmp_path / "crm.xlsx", made)

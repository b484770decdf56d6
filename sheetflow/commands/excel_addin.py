"""Excel buttons without hand-compiled VBA: ``sheetflow excel addin`` and ``sheetflow excel setup``.

xlwings (its BSD-licensed part; never ``xlwings/pro``, which needs a paid licence for commercial use) ships two
ready files whose macros already call Python:

* ``quickstart_addin_ribbon.xlam``: a ribbon add-in; its callback ``RibbonMyAddin.RunMain`` runs
  ``RunPython "import <add-in name>; <add-in name>.main()"``. Named ``sheetflow.xlam``, that is
  ``import sheetflow; sheetflow.main()``: one add-in for every workbook of the team.
* ``quickstart.xlsm``: a workbook whose ``Module1.SampleCall`` runs ``import <workbook name>;
  <workbook name>.main()`` through the xlwings add-in; a ``BOOK.py`` beside ``BOOK.xlsm`` makes that sheetflow.

Both are taken from the installed xlwings package (``pip install "sheetflow[excel]"``), so their VBA always
matches the xlwings version that runs it. Their ``vbaProject.bin`` is copied byte for byte; binary VBA is
never made or edited here. What is rewritten is text: the add-in's ``customUI.xml`` (from ``addin/excel/``),
its config sheet (the interpreter path), and the package bookkeeping XML of the team's workbook.

Sources and how each file is made: ``addin/excel/README.md``.
"""

from __future__ import annotations

import importlib.util
import keyword
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from sheetflow import contract
from sheetflow.book import SheetPatch
from sheetflow.book.xlsx.apply import patch_workbook
from sheetflow.data import data_dir
from sheetflow.problems import SheetflowError, UsageError
from sheetflow.tables.control import find_sheet, new_control_patch

__all__ = ["build_addin", "setup_workbook", "xlwings_file", "module_name"]

ADDIN_NAME = "sheetflow.xlam"
ADDIN_SOURCE = "quickstart_addin_ribbon.xlam"
BOOK_SOURCE = "quickstart.xlsm"
RIBBON_MACRO = "RibbonMyAddin.RunMain"  # in ADDIN_SOURCE's vbaProject.bin
BUTTON_MACRO = "SampleCall"  # in BOOK_SOURCE's vbaProject.bin (Module1)
ADDIN_CONFIG_SHEET = ("_myaddin.conf", "myaddin.conf")  # xlwings reads "<PROJECT_NAME>.conf"; "_" = inactive

CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
OFFICE_DOC = f"{R_NS}/officeDocument"
VBA_REL = "http://schemas.microsoft.com/office/2006/relationships/vbaProject"
VML_REL = f"{R_NS}/vmlDrawing"
VBA_CT = "application/vnd.ms-office.vbaProject"
VML_CT = "application/vnd.openxmlformats-officedocument.vmlDrawing"
XLSM_CT = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
WORKBOOK_CTS = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
    "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
)
# modules a workbook named like them would shadow (``import crm`` must import the BOOK.py beside it)
_TAKEN = {"sheetflow", "xlwings", "pandas", "numpy", "openpyxl", "lxml", "rich", "jinja2", "test", "tests"}


def xlwings_file(name: str) -> Path:
    """A file of the installed xlwings package (its folder is found without importing xlwings, which on
    Linux would load code that cannot drive Excel anyway). UsageError when xlwings is not installed."""
    spec = importlib.util.find_spec("xlwings")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError('the Excel button needs xlwings: pip install "sheetflow[excel]"')
    for folder in spec.submodule_search_locations:
        path = Path(folder) / name
        if path.is_file():
            return path
    raise UsageError(
        f"xlwings is installed but has no {name}; install xlwings 0.30 or newer: "
        'pip install -U "sheetflow[excel]"'
    )


def _sources() -> Path:
    return data_dir("addin") / "excel"


# ---------------------------------------------------------------- zip copying


@dataclass
class _Zip:
    """A package read whole (these files are small, or a workbook read once), written back in order:
    entries not replaced keep their bytes and compression."""

    infos: list[zipfile.ZipInfo]
    data: dict[str, bytes]

    @classmethod
    def read(cls, path: Path) -> _Zip:
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                return cls(infos, {i.filename: zf.read(i) for i in infos})
        except (zipfile.BadZipFile, OSError) as e:
            raise SheetflowError(f"{path.name} cannot be read as an Excel workbook ({e})") from None

    def xml(self, name: str) -> etree._Element:
        return etree.fromstring(self.data[name])

    def put(self, name: str, data: bytes) -> None:
        if name not in self.data:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            self.infos.append(info)
        self.data[name] = data

    def put_xml(self, name: str, root: etree._Element) -> None:
        self.put(name, etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True))

    def write(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.sheetflow-tmp")
        try:
            with zipfile.ZipFile(tmp, "w") as zf:
                for info in self.infos:
                    zf.writestr(info, self.data[info.filename], compress_type=info.compress_type)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _workbook_part(pkg: _Zip) -> str:
    rels = pkg.xml("_rels/.rels")
    for rel in rels:
        if rel.get("Type") == OFFICE_DOC:
            return rel.get("Target").lstrip("/")
    raise SheetflowError("the workbook has no main part (_rels/.rels names none); open and save it in Excel")


def _rels_name(part: str) -> str:
    folder, _, name = part.rpartition("/")
    return f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels"


def _resolve(base_part: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    parts = base_part.split("/")[:-1]
    for piece in target.split("/"):
        if piece == "..":
            parts.pop()
        elif piece not in ("", "."):
            parts.append(piece)
    return "/".join(parts)


def _add_rel(pkg: _Zip, source: str, rel_type: str, target: str) -> str:
    name = _rels_name(source)
    root = (
        pkg.xml(name)
        if name in pkg.data
        else etree.Element(f"{{{REL_NS}}}Relationships", nsmap={None: REL_NS})
    )
    taken = {rel.get("Id") for rel in root}
    n = 1
    while f"rId{n}" in taken:
        n += 1
    etree.SubElement(root, f"{{{REL_NS}}}Relationship", Id=f"rId{n}", Type=rel_type, Target=target)
    pkg.put_xml(name, root)
    return f"rId{n}"


def _content_types(pkg: _Zip) -> etree._Element:
    return pkg.xml("[Content_Types].xml")


def _override(types: etree._Element, part: str, content_type: str) -> None:
    for el in types.findall(f"{{{CT_NS}}}Override"):
        if el.get("PartName") == f"/{part}":
            el.set("ContentType", content_type)
            return
    etree.SubElement(types, f"{{{CT_NS}}}Override", PartName=f"/{part}", ContentType=content_type)


def _default(types: etree._Element, ext: str, content_type: str) -> None:
    if any(el.get("Extension", "").lower() == ext for el in types.findall(f"{{{CT_NS}}}Default")):
        return
    types.insert(0, etree.Element(f"{{{CT_NS}}}Default", Extension=ext, ContentType=content_type))


# ---------------------------------------------------------------- the add-in


def custom_ui(lang: str = "en") -> bytes:
    """The ribbon of sheetflow.xlam, from ``addin/excel/customUI[.pt-BR].xml`` (checked to be XML)."""
    name = "customUI.pt-BR.xml" if lang.lower().startswith("pt") else "customUI.xml"
    data = (_sources() / name).read_bytes()
    etree.fromstring(data)  # a broken source must fail the build, not Excel's load
    return data


def build_addin(folder: str | Path = ".", *, lang: str = "en", interpreter: str | None = None) -> Path:
    """Write ``FOLDER/sheetflow.xlam``: xlwings' ribbon add-in with sheetflow's ``customUI.xml``.

    ``interpreter``: the python.exe (Windows) or python (macOS) that has sheetflow installed; it goes into
    the add-in's own config sheet (``myaddin.conf``, read by xlwings' ``GetConfig``) so the button never
    picks another Python from PATH. Default: this Python when building on Windows or macOS, none elsewhere
    (then xlwings uses ``python`` from PATH, or the ``myaddin.conf`` files; see README "Excel button").
    Returns the path written. Raises UsageError without xlwings."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pkg = _Zip.read(xlwings_file(ADDIN_SOURCE))
    pkg.put("customUI/customUI.xml", custom_ui(lang))
    if interpreter is None and sys.platform in ("win32", "darwin"):
        interpreter = sys.executable
    if interpreter:
        windows = bool(re.match(r"^([A-Za-z]:|\\\\)", interpreter))
        key = "Interpreter_Win" if windows else "Interpreter_Mac"
        _set_addin_config(pkg, key, interpreter)
    out = folder / ADDIN_NAME
    pkg.write(out)
    return out


def _set_addin_config(pkg: _Zip, key: str, value: str) -> None:
    """Activate the add-in's config sheet (``_myaddin.conf`` -> ``myaddin.conf``) and set ``key`` (column A)
    to ``value`` (column B, an inline string). Only text parts change; the VBA reads this sheet as is."""
    wb_part = _workbook_part(pkg)
    wb = pkg.xml(wb_part)
    sheet_el = next((s for s in wb.iter(f"{{{MAIN_NS}}}sheet") if s.get("name") in ADDIN_CONFIG_SHEET), None)
    if sheet_el is None:
        raise SheetflowError(f"{ADDIN_SOURCE} has no {ADDIN_CONFIG_SHEET[0]} sheet; is xlwings up to date?")
    sheet_el.set("name", ADDIN_CONFIG_SHEET[1])
    pkg.put_xml(wb_part, wb)
    rels = pkg.xml(_rels_name(wb_part))
    target = next(r.get("Target") for r in rels if r.get("Id") == sheet_el.get(f"{{{R_NS}}}id"))
    sheet_part = _resolve(wb_part, target)
    strings = []
    if "xl/sharedStrings.xml" in pkg.data:
        sst = pkg.xml("xl/sharedStrings.xml")
        strings = ["".join(si.itertext()) for si in sst.findall(f"{{{MAIN_NS}}}si")]
    ws = pkg.xml(sheet_part)
    for row in ws.iter(f"{{{MAIN_NS}}}row"):
        cells = row.findall(f"{{{MAIN_NS}}}c")
        first = cells[0] if cells else None
        if first is None or first.get("t") != "s":
            continue
        if strings[int(first.findtext(f"{{{MAIN_NS}}}v"))].lower() != key.lower():
            continue
        for extra in cells[1:]:
            row.remove(extra)
        ref = "B" + row.get("r")
        cell = etree.SubElement(row, f"{{{MAIN_NS}}}c", r=ref, t="inlineStr")
        if first.get("s"):
            cell.set("s", first.get("s"))
        etree.SubElement(etree.SubElement(cell, f"{{{MAIN_NS}}}is"), f"{{{MAIN_NS}}}t").text = value
        row.attrib.pop("spans", None)
        pkg.put_xml(sheet_part, ws)
        return
    raise SheetflowError(f"{ADDIN_SOURCE}: no {key} row in its config sheet; is xlwings up to date?")


# ---------------------------------------------------------------- setup of a team's workbook


def module_name(stem: str) -> str:
    """The name ``BOOK.xlsm`` must have so that ``import BOOK`` works (xlwings imports the workbook's name):
    a Python identifier that shadows no module sheetflow needs. ``CRM 2026`` -> ``CRM_2026``."""
    name = re.sub(r"\W", "_", stem, flags=re.ASCII).strip("_") or "crm"
    if name[0].isdigit():
        name = f"crm_{name}"
    taken = _TAKEN | set(getattr(sys, "stdlib_module_names", ()))
    if keyword.iskeyword(name) or name.lower() in taken:
        name = f"{name}_crm"
    return name


@dataclass
class SetupResult:
    workbook: Path  # BOOK.xlsm
    module: Path  # BOOK.py
    added_control: bool  # the Control sheet was added (it was not there)
    renamed: bool  # the output name differs from the input's (not an importable module name)
    button: bool = (
        True  # False: the Control sheet already had a drawing of comments/controls; no button added
    )


def setup_workbook(book: str | Path, *, lang: str | None = None, force: bool = False) -> SetupResult:
    """Make ``BOOK.xlsm`` (beside ``BOOK``) with a button that runs sheetflow, and ``BOOK.py`` beside it.

    ``BOOK.xlsm`` is the team's workbook with every part copied unchanged except the package bookkeeping
    (content types, the workbook's rels and code name, the Control sheet's button drawing), plus
    ``xl/vbaProject.bin`` from xlwings' ``quickstart.xlsm`` byte for byte (its ``SampleCall`` runs
    ``import BOOK; BOOK.main()`` via the xlwings add-in). A Control sheet is added when missing (``lang``:
    its language; default: that of the workbook's sheet names). The original file is not changed.

    Raises UsageError when ``BOOK`` is not an .xlsx/.xlsm, already has macros (two VBA projects cannot be
    merged without editing binary VBA: use the add-in), or ``BOOK.xlsm`` exists (unless ``force``)."""
    src = Path(book)
    if src.suffix.lower() not in (".xlsx", ".xlsm") or not src.is_file():
        raise UsageError(f"{src}: give an existing .xlsx (or .xlsm without macros) workbook")
    name = module_name(src.stem)
    dst = src.with_name(f"{name}.xlsm")
    module = src.with_name(f"{name}.py")
    original = _Zip.read(src)
    if any(n.lower().endswith("vbaproject.bin") for n in original.data):
        raise UsageError(
            f"{src.name} already has macros; sheetflow cannot merge two VBA projects. Use the add-in "
            "instead (sheetflow excel addin), which needs no macros in the workbook"
        )
    if not force:
        for existing in (dst, module):
            if existing.exists() and existing.resolve() != src.resolve():
                raise UsageError(f"{existing} exists; remove it or use --force to replace it")
    sheet_names = _sheet_names(original)
    if lang is None:
        pt = any(
            (s := contract.sheet_spec(n)) is not None and s.pt == n and s.pt != s.name for n in sheet_names
        )
        lang = "pt-BR" if pt else "en"
    control = find_sheet(sheet_names)
    staged = dst.with_name(f".{dst.name}.sheetflow-stage")
    try:
        if control is None:
            patch: SheetPatch = new_control_patch(lang)
            patch_workbook(src, staged, [patch])
            control = patch.sheet
            pkg = _Zip.read(staged)
        else:
            pkg = _Zip.read(src)
        button = _make_macro_enabled(pkg, control, lang)
        pkg.write(dst)
    finally:
        staged.unlink(missing_ok=True)
    module.write_text("from sheetflow import main  # noqa: F401 - the workbook's button calls main()\n")
    return SetupResult(
        dst, module, added_control=control not in sheet_names, renamed=name != src.stem, button=button
    )


def _sheet_names(pkg: _Zip) -> list[str]:
    wb = pkg.xml(_workbook_part(pkg))
    return [s.get("name") for s in wb.iter(f"{{{MAIN_NS}}}sheet")]


def _make_macro_enabled(pkg: _Zip, control_sheet: str, lang: str) -> bool:
    """Add quickstart.xlsm's vbaProject.bin, its content type and rel; code names as the VBA expects them;
    the Control sheet's button."""
    vba = _Zip.read(xlwings_file(BOOK_SOURCE))
    vba_part = next(n for n in vba.data if n.lower().endswith("vbaproject.bin"))
    wb_part = _workbook_part(pkg)
    folder = wb_part.rpartition("/")[0]
    target = f"{folder}/vbaProject.bin" if folder else "vbaProject.bin"
    pkg.put(target, vba.data[vba_part])
    types = _content_types(pkg)
    _override(types, wb_part, XLSM_CT)
    _override(types, target, VBA_CT)
    _add_rel(pkg, wb_part, VBA_REL, "vbaProject.bin")
    wb = pkg.xml(wb_part)
    # The VBA project has document modules ThisWorkbook, Sheet1, Sheet2: give the workbook and its sheets
    # code names as Excel would (XlsxWriter does the same), so Excel binds them instead of repairing.
    pr = wb.find(f"{{{MAIN_NS}}}workbookPr")
    if pr is None:
        pr = etree.Element(f"{{{MAIN_NS}}}workbookPr")
        after = wb.find(f"{{{MAIN_NS}}}fileVersion")
        wb.insert(0 if after is None else wb.index(after) + 1, pr)
    pr.set("codeName", pr.get("codeName") or "ThisWorkbook")
    pkg.put_xml(wb_part, wb)
    rels = pkg.xml(_rels_name(wb_part))
    by_id = {r.get("Id"): r.get("Target") for r in rels}
    parts = {
        s.get("name"): _resolve(wb_part, by_id[s.get(f"{{{R_NS}}}id")])
        for s in wb.iter(f"{{{MAIN_NS}}}sheet")
    }
    taken: set[str] = set()
    missing = []
    for part in parts.values():
        code = _code_name(pkg.data.get(part, b""))
        if code:
            taken.add(code.lower())
        elif part in pkg.data and "/worksheets/" in f"/{part}":  # chart sheets: no code module needed
            missing.append(part)
    n = 0
    for part in missing:
        n += 1
        while f"sheet{n}" in taken:
            n += 1
        pkg.put(part, _with_code_name(pkg.data[part], f"Sheet{n}"))
    button = _add_button(pkg, parts[control_sheet], types, lang)
    pkg.put_xml("[Content_Types].xml", types)
    return button


_SHEET_PR = re.compile(rb"<(?:(\w+):)?sheetPr\b([^>]*?)(/?)>")


def _code_name(sheet_xml: bytes) -> str | None:
    m = _SHEET_PR.search(sheet_xml[:4096])
    if m is None:
        return None
    code = re.search(rb'codeName="([^"]*)"', m.group(2))
    return code.group(1).decode() if code else None


def _with_code_name(sheet_xml: bytes, code: str) -> bytes:
    """``codeName`` added to ``<sheetPr>`` (created as the first child of ``<worksheet>`` when absent): a
    byte edit of the sheet's start, so the rest of the part stays exactly as it was."""
    head = sheet_xml[:4096]
    m = _SHEET_PR.search(head)
    if m is not None:
        at = m.start(2)
        return sheet_xml[:at] + f' codeName="{code}"'.encode() + sheet_xml[at:]
    ws = re.search(rb"<(?:(\w+):)?worksheet\b[^>]*>", head)
    if ws is None:
        return sheet_xml
    prefix = ws.group(1) + b":" if ws.group(1) else b""
    el = b"<" + prefix + f'sheetPr codeName="{code}"/>'.encode()
    return sheet_xml[: ws.end()] + el + sheet_xml[ws.end() :]


# legacyDrawing must come before these children of <worksheet> (ECMA-376 CT_Worksheet order)
_AFTER_LEGACY = (
    "legacyDrawingHF",
    "drawingHF",
    "picture",
    "oleObjects",
    "controls",
    "webPublishItems",
    "tableParts",
    "extLst",
)
BUTTON_LABEL = {"en": "Run sheetflow", "pt-BR": "Executar sheetflow"}


def _add_button(pkg: _Zip, sheet_part: str, types: etree._Element, lang: str) -> bool:
    """A form button (VML, the way Excel stores ``Form Controls > Button``) on the Control sheet, bound to
    ``SampleCall``; placed at D3:E5, beside the Action and Status cells."""
    ws = pkg.xml(sheet_part)
    if ws.find(f"{{{MAIN_NS}}}legacyDrawing") is not None:
        return False  # the sheet already has comments or controls: one drawing per sheet; the CLI says so
    n = 1
    while f"xl/drawings/vmlDrawing{n}.vml" in pkg.data:
        n += 1
    vml_part = f"xl/drawings/vmlDrawing{n}.vml"
    label = BUTTON_LABEL["pt-BR" if lang.lower().startswith("pt") else "en"]
    pkg.put(vml_part, _button_vml(label, BUTTON_MACRO, shape_id=1024 * n + 1, idmap=n).encode())
    _default(types, "vml", VML_CT)
    rid = _add_rel(pkg, sheet_part, VML_REL, _relative(sheet_part, vml_part))
    el = etree.Element(f"{{{MAIN_NS}}}legacyDrawing")
    el.set(f"{{{R_NS}}}id", rid)
    before = next((c for c in ws if etree.QName(c).localname in _AFTER_LEGACY), None)
    if before is None:
        ws.append(el)
    else:
        before.addprevious(el)
    pkg.put_xml(sheet_part, ws)
    return True


def _relative(source: str, target: str) -> str:
    src = source.split("/")[:-1]
    dst = target.split("/")
    common = 0
    while common < min(len(src), len(dst)) and src[common] == dst[common]:
        common += 1
    return "/".join([".."] * (len(src) - common) + dst[common:])


def _button_vml(label: str, macro: str, *, shape_id: int, idmap: int) -> str:
    from xml.sax.saxutils import escape

    return f"""<xml xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" xmlns:x="urn:schemas-microsoft-com:office:excel">
 <o:shapelayout v:ext="edit"><o:idmap v:ext="edit" data="{idmap}"/></o:shapelayout>
 <v:shapetype id="_x0000_t201" coordsize="21600,21600" o:spt="201" path="m,l,21600r21600,l21600,xe">
  <v:stroke joinstyle="miter"/>
  <v:path shadowok="f" o:extrusionok="f" strokeok="f" fillok="f" o:connecttype="rect"/>
  <o:lock v:ext="edit" shapetype="t"/>
 </v:shapetype>
 <v:shape id="_x0000_s{shape_id}" type="#_x0000_t201" style="position:absolute;margin-left:0;margin-top:0;width:150pt;height:40pt;z-index:1;mso-wrap-style:tight" o:button="t" fillcolor="buttonFace [67]" strokecolor="windowText [64]" o:insetmode="auto">
  <v:fill color2="buttonFace [67]" o:detectmouseclick="t"/>
  <o:lock v:ext="edit" rotation="t"/>
  <v:textbox style="mso-direction-alt:auto" o:singleclick="f">
   <div style="text-align:center"><font face="Calibri" size="220" color="#000000">{escape(label)}</font></div>
  </v:textbox>
  <x:ClientData ObjectType="Button">
   <x:Anchor>3, 10, 2, 4, 4, 60, 5, 4</x:Anchor>
   <x:PrintObject>False</x:PrintObject>
   <x:AutoFill>False</x:AutoFill>
   <x:FmlaMacro>[0]!{escape(macro)}</x:FmlaMacro>
   <x:TextHAlign>Center</x:TextHAlign>
   <x:TextVAlign>Center</x:TextVAlign>
  </x:ClientData>
 </v:shape>
</xml>
"""

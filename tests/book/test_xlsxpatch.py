"""Tests for the xlsx writer (sheetflow.book.xlsx): writing into real Excel files without losing anything.

The corpus round trip patches every real workbook in ../shared/corpus/workbooks (copied to tmp_path first)
and checks the result four independent ways: the corpus' own check_preserved.py, python-calamine, openpyxl and a
byte comparison of every zip entry the patch had no reason to touch.

Big sheets have their rows changed as bytes (sheetflow.book.xlsx.rawrows.RawRows) instead of as lxml elements; the tests that
use ``rows_mode`` or ``_both_ways`` run small workbooks both ways and require the same (canonical) XML.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import math
import posixpath
import re
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import CORPUS as SHARED_CORPUS
from tests.conftest import NO_CORPUS

try:
    import sheetflow.book.xlsx  # noqa: F401
except ModuleNotFoundError:  # pytest run without the project installed: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import sheetflow.book.xlsx.zipio as zipio  # noqa: E402
from sheetflow.book.patch import NewSheet, PatchError, SheetPatch, Validation  # noqa: E402
from sheetflow.book.xlsx.apply import date1904, patch_workbook  # noqa: E402
from sheetflow.book.xlsx.rawrows import RawRows  # noqa: E402
from sheetflow.book.xlsx.xmlparts import XmlPart  # noqa: E402

openpyxl = pytest.importorskip("openpyxl")
calamine = pytest.importorskip("python_calamine")

CORPUS = SHARED_CORPUS / "workbooks"
CHECKER = SHARED_CORPUS / "tools" / "check_preserved.py"
WORKBOOKS = sorted(p.name for p in CORPUS.glob("*.xls[xm]")) if CORPUS.is_dir() else []

NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
X = {"x": NS}

# Files this module must refuse, and the words the refusal has to contain.
REFUSED = {
    "poi__SampleSS.strict.xlsx": "Strict Open XML",
    "calamine__issue252.xlsx": "damaged",  # xl/_rels/workbook.xml.rels is garbage behind a bad CRC
}


def _openpyxl_unloadable() -> set[str]:
    """Files openpyxl 3.1.5 cannot load even untouched (from the corpus' own loss report)."""
    report = CORPUS / "OPENPYXL_3.1.5_ROUNDTRIP_LOSSES.csv"
    if not report.is_file():
        return set()
    with open(report, newline="", encoding="utf-8") as fh:
        return {row["file"] for row in csv.DictReader(fh) if row["status"] != "ok"}


OPENPYXL_UNLOADABLE = _openpyxl_unloadable()


# --------------------------------------------------------------------------------------------------------------
# Independent helpers (they read the package directly, not through the module under test)
# --------------------------------------------------------------------------------------------------------------


def _xml(zf: zipfile.ZipFile, name: str) -> etree._Element:
    return etree.fromstring(zf.read(name))


def _rels(zf: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """rId -> (type, resolved target) for a part's relationships."""
    folder, base = posixpath.split(part)
    name = posixpath.join(folder, "_rels", base + ".rels")
    if name not in zf.namelist():
        return {}
    out = {}
    for rel in _xml(zf, name):
        if rel.get("TargetMode") == "External":
            continue
        target = rel.get("Target")
        path = (
            target.lstrip("/")
            if target.startswith("/")
            else posixpath.normpath(posixpath.join(folder, target))
        )
        out[rel.get("Id")] = (rel.get("Type"), path)
    return out


def _sheets(path: Path) -> list[dict]:
    """name, state, part, kind of every sheet, in workbook order."""
    with zipfile.ZipFile(path) as zf:
        rels = _rels(zf, "xl/workbook.xml")
        out = []
        for el in _xml(zf, "xl/workbook.xml").iterfind("x:sheets/x:sheet", X):
            kind, part = rels[el.get(f"{{{NS_R}}}id")]
            out.append(
                {
                    "name": el.get("name"),
                    "state": el.get("state", "visible"),
                    "part": part,
                    "kind": kind.rsplit("/", 1)[-1],
                    "sheet_id": el.get("sheetId"),
                }
            )
        return out


def _protected(path: Path, part: str) -> bool:
    with zipfile.ZipFile(path) as zf:
        prot = _xml(zf, part).find("x:sheetProtection", X)
    return prot is not None and prot.get("sheet") in ("1", "true")


def _structure_locked(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        prot = _xml(zf, "xl/workbook.xml").find("x:workbookProtection", X)
    return prot is not None and prot.get("lockStructure") in ("1", "true")


def _ref(ref: str) -> tuple[int, int]:
    m = re.fullmatch(r"([A-Z]+)(\d+)", ref)
    col = 0
    for ch in m.group(1):
        col = col * 26 + ord(ch) - 64
    return int(m.group(2)), col


def _range(ref: str) -> tuple[int, int, int, int]:
    a, _, b = ref.partition(":")
    (r1, c1), (r2, c2) = _ref(a), _ref(b or a)
    return r1, c1, r2, c2


def _inside(cell: tuple[int, int], bounds: tuple[int, int, int, int]) -> bool:
    return bounds[0] <= cell[0] <= bounds[2] and bounds[1] <= cell[1] <= bounds[3]


def _table_parts(path: Path, sheet_part: str) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return [t for kind, t in _rels(zf, sheet_part).values() if kind.endswith("/table")]


def _pick_overwrite_cell(path: Path, part: str) -> tuple[int, int] | None:
    """A value cell without formula, outside merged ranges, array formulas and tables (so never a table header);
    numbers first, then text. None if there is none."""
    with zipfile.ZipFile(path) as zf:
        root = _xml(zf, part)
        blocked = [_range(_xml(zf, t).get("ref")) for t in _table_parts(path, part)]
    blocked += [
        _range(f.get("ref"))
        for f in root.iter(f"{{{NS}}}f")
        if f.get("t") in ("array", "dataTable") and f.get("ref")
    ]
    merged = [_range(m.get("ref")) for m in root.iterfind("x:mergeCells/x:mergeCell", X)]
    candidates = {"n": None, "s": None}
    for c in root.iterfind("x:sheetData/x:row/x:c", X):
        kind = c.get("t", "n")
        if (
            kind in candidates
            and candidates[kind] is None
            and c.find("x:f", X) is None
            and c.find("x:v", X) is not None
        ):
            cell = _ref(c.get("r"))
            if not any(_inside(cell, b) for b in blocked) and not any(
                _inside(cell, m) and cell != m[:2] for m in merged
            ):  # top-left of a merge is fine
                candidates[kind] = cell
        if candidates["n"]:
            break
    return candidates["n"] or candidates["s"]


def _last_row(path: Path, part: str) -> int:
    with zipfile.ZipFile(path) as zf:
        rows = [int(r.get("r")) for r in _xml(zf, part).iterfind("x:sheetData/x:row", X)]
    return max(rows, default=0)


def _calamine_rows(path: Path, sheet: str) -> list[list]:
    return (
        calamine.CalamineWorkbook.from_path(str(path))
        .get_sheet_by_name(sheet)
        .to_python(skip_empty_area=False)
    )


def _calamine_value(rows: list[list], r: int, c: int):
    return rows[r - 1][c - 1] if r <= len(rows) and c <= len(rows[r - 1]) else ""


def _raw(path: Path, name: str) -> tuple[int, bytes]:
    """Compression type and the compressed bytes of a zip entry, exactly as stored."""
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        info = zf.getinfo(name)
        fh.seek(info.header_offset)
        header = fh.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        fh.seek(name_len + extra_len, 1)
        return info.compress_type, fh.read(info.compress_size)


def _sheet_xml(path: Path, sheet: str) -> etree._Element:
    part = next(s["part"] for s in _sheets(path) if s["name"] == sheet)
    with zipfile.ZipFile(path) as zf:
        return _xml(zf, part)


def _cell(root: etree._Element, ref: str) -> etree._Element | None:
    return root.find(f"x:sheetData/x:row/x:c[@r='{ref}']", X)


def _part_text(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name).decode("utf-8")


def _check_preserved(original: Path, result: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(CHECKER), str(original), str(result)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _same_value(got, want) -> bool:
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return math.isclose(got, want, rel_tol=0, abs_tol=1e-9)
    if isinstance(want, dt.datetime) and isinstance(got, dt.datetime):
        return abs(got - want) < dt.timedelta(milliseconds=1)
    return type(got) is type(want) and got == want


# --------------------------------------------------------------------------------------------------------------
# Corpus round trip
# --------------------------------------------------------------------------------------------------------------


def _appended_values(k: int) -> list:
    return [
        "=SUM(A1:A9) is text, not a formula",
        -17.25 - k,
        k % 2 == 0,
        dt.date(2024, 2, 27) + dt.timedelta(days=k),
        dt.datetime(2024, 5, 17, 14, 30, 15 + k),
        "Ação São Paulo",
    ]


def _new_sheet_patches() -> list[SheetPatch]:
    header = {
        (1, 1): "Lead",
        (1, 2): "Stage",
        (1, 3): "Next call",
        (2, 1): "Ana",
        (2, 2): "New",
        (2, 3): dt.date(2024, 7, 1),
    }
    spec = NewSheet(
        freeze_rows=1,
        col_widths={1: 24.5, 2: 12, 3: 14},
        bold_rows={1},
        validations=[Validation("B2:B5000", options=["New", "Won", "Lost"])],
    )
    return [
        SheetPatch("Sheetflow Log", header, new=spec),
        SheetPatch("_sheetflow_state", {(1, 1): "state", (1, 2): 3}, new=NewSheet(state="veryHidden")),
    ]


def _target(path: Path) -> tuple[dict | None, dict | None]:
    """(first visible worksheet, first visible unprotected worksheet)."""
    visible = [s for s in _sheets(path) if s["kind"] == "worksheet" and s["state"] == "visible"]
    first = visible[0] if visible else None
    writable = next((s for s in visible if not _protected(path, s["part"])), None)
    return first, writable


@pytest.mark.slow
@pytest.mark.skipif(not WORKBOOKS, reason=NO_CORPUS)
@pytest.mark.parametrize("name", WORKBOOKS)
def test_corpus_round_trip(name: str, tmp_path: Path) -> None:
    original = tmp_path / name
    shutil.copy(CORPUS / name, original)
    result = tmp_path / f"patched{original.suffix}"

    if name in REFUSED:
        with pytest.raises(PatchError, match=REFUSED[name]):
            patch_workbook(original, result, [SheetPatch("Sheet1", {(1, 1): "x"})])
        assert not result.exists()
        return

    first, target = _target(original)
    assert first is not None, "no visible worksheet"
    if first is not target:  # the first visible sheet is protected: refused, never unlocked
        with pytest.raises(PatchError, match="protected"):
            patch_workbook(original, result, [SheetPatch(first["name"], {(1, 1): "x"})])
        assert not result.exists()

    expected: dict[tuple[int, int], object] = {}
    patches = []
    if target is not None:  # else every visible sheet is protected: only new sheets are added
        overwrite = _pick_overwrite_cell(original, target["part"])
        if overwrite is not None:
            expected[overwrite] = "overwritten ✓"  # text: reads back the same whatever the number format
        last = _last_row(original, target["part"])
        for k in range(3):
            for col, value in enumerate(_appended_values(k), start=1):
                expected[(last + 1 + k, col)] = value
        patches = [SheetPatch(target["name"], dict(expected))]

    new_sheets = _new_sheet_patches()
    if _structure_locked(original):  # adding sheets would bypass "Protect Workbook": refused
        with pytest.raises(PatchError, match="structure is protected"):
            patch_workbook(original, result, patches + new_sheets)
        new_sheets = []
    patch_workbook(original, result, patches + new_sheets)

    _check_preserved(original, result)
    _assert_untouched_entries_identical(original, result, target["part"] if target else None)
    if _calamine_can_read(original, (target or first)["name"]):
        _assert_calamine_reads(result, target["name"] if target else None, expected, new_sheets)
    if name not in OPENPYXL_UNLOADABLE:
        _assert_openpyxl_reads(result, target["name"] if target else None, expected, bool(new_sheets))


def _calamine_can_read(path: Path, sheet: str) -> bool:
    """python-calamine refuses a few valid files (e.g. one with an Excel 4.0 macro sheet) even untouched."""
    try:
        _calamine_rows(path, sheet)
    except Exception:  # noqa: BLE001 - whatever calamine raises, the original is simply not readable by it
        return False
    return True


def _assert_untouched_entries_identical(original: Path, result: Path, target_part: str | None) -> None:
    may_change = {
        "xl/workbook.xml",
        "xl/_rels/workbook.xml.rels",
        "[Content_Types].xml",
        "xl/styles.xml",
        "xl/calcChain.xml",
    }
    if target_part:
        may_change |= {target_part, *_table_parts(original, target_part)}
    with zipfile.ZipFile(original) as before, zipfile.ZipFile(result) as after:
        old_names, new_names = before.namelist(), after.namelist()
        kept = [n for n in old_names if n in new_names]
        assert set(old_names) - set(kept) <= {"xl/calcChain.xml"}
        assert new_names[: len(kept)] == kept, "zip entry order changed"
        assert all(n.startswith("xl/worksheets/sheet") for n in new_names[len(kept) :])
        assert after.testzip() is None
        for n in kept:
            if n in may_change:
                continue
            assert after.read(n) == before.read(n), n
            assert _raw(result, n) == _raw(original, n), f"{n}: compressed bytes or compression type changed"


def _assert_calamine_reads(
    result: Path, sheet: str | None, expected: dict, new_sheets: list[SheetPatch]
) -> None:
    rows = _calamine_rows(result, sheet) if sheet else []
    for (r, c), want in expected.items():
        got = _calamine_value(rows, r, c)
        assert _same_value(got, want), f"{sheet} row {r} col {c}: {got!r} != {want!r}"
    for patch in new_sheets:
        rows = _calamine_rows(result, patch.sheet)
        for (r, c), want in patch.cells.items():
            want = float(want) if isinstance(want, int) else want
            assert _same_value(_calamine_value(rows, r, c), want)


def _assert_openpyxl_reads(result: Path, sheet: str | None, expected: dict, with_new_sheets: bool) -> None:
    with (
        warnings.catch_warnings()
    ):  # openpyxl warns about the extensions it does not support; not our concern
        warnings.simplefilter("ignore", UserWarning)
        _openpyxl_reads(result, sheet, expected, with_new_sheets)


def _openpyxl_reads(result: Path, sheet: str | None, expected: dict, with_new_sheets: bool) -> None:
    wb = openpyxl.load_workbook(result, read_only=True)
    try:
        rows = [r for r, _ in expected]
        values = {}
        if sheet:
            for r, row in enumerate(
                wb[sheet].iter_rows(min_row=min(rows), max_row=max(rows), values_only=True), start=min(rows)
            ):
                for c, value in enumerate(row, start=1):
                    values[(r, c)] = value
        for (r, c), want in expected.items():
            if isinstance(want, dt.date) and not isinstance(want, dt.datetime):
                want = dt.datetime.combine(want, dt.time())
            assert _same_value(values.get((r, c)), want), (
                f"{sheet}!{r},{c}: {values.get((r, c))!r} != {want!r}"
            )
        if with_new_sheets:
            assert wb["_sheetflow_state"].sheet_state == "veryHidden"
            assert wb["Sheetflow Log"].sheet_state == "visible"
    finally:
        wb.close()


# --------------------------------------------------------------------------------------------------------------
# Workbooks built for one behaviour
# --------------------------------------------------------------------------------------------------------------


def _corpus_copy(name: str, tmp_path: Path) -> Path:
    if not (CORPUS / name).is_file():
        pytest.skip(f"corpus file {name} not available ({NO_CORPUS})")
    path = tmp_path / name
    shutil.copy(CORPUS / name, path)
    return path


def _book(tmp_path: Path, build, name: str = "book.xlsx") -> Path:
    """An openpyxl-made workbook; ``build(ws, wb)`` fills the active sheet (titled 'Contacts')."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Contacts"
    build(ws, wb)
    path = tmp_path / name
    wb.save(path)
    return path


def _replace_part(path: Path, name: str, data: bytes) -> None:
    """Swap one zip entry (to build edge cases openpyxl cannot write)."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, data if info.filename == name else src.read(info.filename))
    tmp.replace(path)


def _with_sheet_data(tmp_path: Path, sheet_body: str) -> Path:
    """A workbook whose only sheet ('Contacts') has exactly this XML inside <worksheet>."""
    path = _book(tmp_path, lambda ws, wb: ws.append(["placeholder"]))
    xml = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{NS}">{sheet_body}</worksheet>'
    _replace_part(path, "xl/worksheets/sheet1.xml", xml.encode())
    return path


def test_date1904_corpus(tmp_path: Path) -> None:
    path = _corpus_copy("calamine__date_1904.xlsx", tmp_path)
    assert date1904(path) is True
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [SheetPatch("Sheet1", {(30, 1): dt.date(2024, 1, 2), (30, 2): dt.datetime(2024, 1, 2, 6, 0)})],
    )
    cell = _cell(_sheet_xml(out, "Sheet1"), "A30")
    assert cell.findtext("x:v", namespaces=X) == str((dt.date(2024, 1, 2) - dt.date(1904, 1, 1)).days)
    rows = _calamine_rows(out, "Sheet1")
    assert rows[29][0] == dt.date(2024, 1, 2)
    assert rows[29][1] == dt.datetime(2024, 1, 2, 6, 0)
    assert date1904(_book(tmp_path, lambda ws, wb: None)) is False


def test_1900_serials_follow_excel(tmp_path: Path) -> None:
    path = _book(tmp_path, lambda ws, wb: None)
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [
            SheetPatch(
                "Contacts",
                {
                    (1, 1): dt.date(1900, 1, 1),
                    (2, 1): dt.date(1900, 3, 1),
                    (3, 1): dt.date(2024, 1, 1),
                    (4, 1): dt.datetime(2024, 1, 1, 12, 0),
                },
            )
        ],
    )
    root = _sheet_xml(out, "Contacts")
    assert [_cell(root, f"A{r}").findtext("x:v", namespaces=X) for r in (1, 2, 3, 4)] == [
        "1",
        "61",
        "45292",
        "45292.5",
    ]
    with pytest.raises(PatchError, match=r"Contacts!A1.*1899"):
        patch_workbook(path, tmp_path / "bad.xlsx", [SheetPatch("Contacts", {(1, 1): dt.date(1899, 12, 1)})])


def test_overwriting_formula_prunes_calc_chain(tmp_path: Path) -> None:
    path = _corpus_copy(
        "poi__WithThreeCharts.xlsx", tmp_path
    )  # Sheet1 E1:E6 shared formula, calcChain E6..E1
    out = tmp_path / "out.xlsx"
    patch_workbook(path, out, [SheetPatch("Sheet1", {(6, 5): 1.5, (3, 5): "manual"})])
    chain = etree.fromstring(_part_text(out, "xl/calcChain.xml").encode())
    entries = [(c.get("r"), c.get("i")) for c in chain]
    assert entries == [("E5", "1"), ("E4", None), ("E2", None), ("E1", None)]  # E5 now carries the sheet id
    root = _sheet_xml(out, "Sheet1")
    assert _cell(root, "E6").find("x:f", X) is None and _cell(root, "E3").find("x:f", X) is None
    assert _cell(root, "E1").find("x:f", X) is not None
    assert 'fullCalcOnLoad="1"' in _part_text(out, "xl/workbook.xml")


def test_calc_chain_removed_when_empty(tmp_path: Path) -> None:
    path = _corpus_copy("poi__DataValidationEvaluations.xlsx", tmp_path)  # one formula: Sheet1!I7
    out = tmp_path / "out.xlsx"
    patch_workbook(path, out, [SheetPatch("Sheet1", {(7, 9): 7})])
    with zipfile.ZipFile(out) as zf:
        assert "xl/calcChain.xml" not in zf.namelist()
    assert "calcChain" not in _part_text(out, "xl/_rels/workbook.xml.rels")
    assert "calcChain" not in _part_text(out, "[Content_Types].xml")
    assert _calamine_rows(out, "Sheet1")[6][8] == 7.0
    _check_preserved(path, out)


def test_shared_formula_master_refused(tmp_path: Path) -> None:
    path = _corpus_copy("poi__WithThreeCharts.xlsx", tmp_path)
    out = tmp_path / "out.xlsx"
    with pytest.raises(
        PatchError,
        match=r"^Sheet1!E1 holds a shared formula that other cells use; sheetflow will "
        r"not overwrite it$",
    ):
        patch_workbook(path, out, [SheetPatch("Sheet1", {(1, 5): 2})])
    assert not out.exists()


def test_array_formula_refused(tmp_path: Path) -> None:
    from openpyxl.worksheet.formula import ArrayFormula

    def build(ws, wb):
        for r in range(1, 5):
            ws.cell(r, 1, r)
        ws["B1"] = ArrayFormula("B1:B4", "=A1:A4*2")

    path = _book(tmp_path, build)
    with pytest.raises(PatchError, match=r"Contacts!B3 is part of an array formula \(B1:B4\)"):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Contacts", {(3, 2): 1})])


def test_protected_sheet_refused(tmp_path: Path) -> None:
    path = _corpus_copy("poi__sheetProtection_allLocked.xlsx", tmp_path)
    with pytest.raises(
        PatchError,
        match='^sheet "Foglio1" is protected; unprotect it in Excel or let sheetflow write elsewhere$',
    ):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Foglio1", {(1, 1): "x"})])
    patch_workbook(path, tmp_path / "ok.xlsx", [SheetPatch("Foglio2", {(1, 1): "x"})])  # unprotected: fine
    assert _sheet_xml(tmp_path / "ok.xlsx", "Foglio1").find("x:sheetProtection", X).get("sheet") == "1"


def _table_book(tmp_path: Path) -> Path:
    from openpyxl.worksheet.table import Table

    def build(ws, wb):
        ws.append(["Name", "Email", "Score"])
        ws.append(["Ana", "ana@example.com", 3])
        ws.append(["Bia", "bia@example.com", 5])
        ws.add_table(Table(displayName="Leads", ref="A1:C3"))

    return _book(tmp_path, build)


def _table_ref(path: Path) -> tuple[str, str]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.startswith("xl/tables/"))
        root = _xml(zf, name)
    return root.get("ref"), root.find("x:autoFilter", X).get("ref")


def test_table_grows_with_rows_written_below(tmp_path: Path) -> None:
    path = _table_book(tmp_path)
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [
            SheetPatch(
                "Contacts",
                {
                    (4, 1): "Caio",
                    (4, 3): 1,
                    (5, 2): "d@example.com",
                    (9, 1): "far below: not part of the table",
                },
            )
        ],
    )
    assert _table_ref(out) == ("A1:C5", "A1:C5")
    wb = openpyxl.load_workbook(out)
    assert wb["Contacts"].tables["Leads"].ref == "A1:C5"


def test_table_not_grown_by_cells_beside_or_after_a_gap(tmp_path: Path) -> None:
    path = _table_book(tmp_path)
    out = tmp_path / "out.xlsx"
    patch_workbook(path, out, [SheetPatch("Contacts", {(4, 4): "beside", (5, 1): "after a gap"})])
    assert _table_ref(out) == ("A1:C3", "A1:C3")


def test_table_corpus_growth(tmp_path: Path) -> None:
    path = _corpus_copy("calamine__table-multiple.xlsx", tmp_path)
    with zipfile.ZipFile(path) as zf:
        tables = {n: _xml(zf, n).get("ref") for n in zf.namelist() if n.startswith("xl/tables/table")}
    sheet = _sheets(path)[0]
    mine = _table_parts(path, sheet["part"])
    name = mine[0]
    r1, c1, r2, c2 = _range(tables[name])
    out = tmp_path / "out.xlsx"
    others = [_range(tables[n]) for n in mine[1:]]
    if any(o[0] <= r2 + 1 <= o[2] and o[1] <= c1 <= o[3] for o in others):
        pytest.skip("another table sits right below")
    patch_workbook(path, out, [SheetPatch(sheet["name"], {(r2 + 1, c1): "grown"})])
    with zipfile.ZipFile(out) as zf:
        assert _range(_xml(zf, name).get("ref")) == (r1, c1, r2 + 1, c2)
    _check_preserved(path, out)


def test_table_header_rename_refused(tmp_path: Path) -> None:
    path = _table_book(tmp_path)
    with pytest.raises(
        PatchError, match='Contacts!B1 is the header of column "Email" of the Excel table "Leads"'
    ):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Contacts", {(1, 2): "E-mail"})])
    patch_workbook(
        path, tmp_path / "same.xlsx", [SheetPatch("Contacts", {(1, 2): "Email"})]
    )  # same text: fine


def test_merged_cells(tmp_path: Path) -> None:
    def build(ws, wb):
        ws["A1"] = "Title"
        ws.merge_cells("A1:C2")

    path = _book(tmp_path, build)
    with pytest.raises(
        PatchError, match=r"Contacts!B2 is inside the merged cells A1:C2; only its top-left cell A1"
    ):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Contacts", {(2, 2): "x"})])
    out = tmp_path / "ok.xlsx"
    patch_workbook(path, out, [SheetPatch("Contacts", {(1, 1): "New title"})])
    assert _calamine_rows(out, "Contacts")[0][0] == "New title"


def test_merged_cells_corpus(tmp_path: Path) -> None:
    path = _corpus_copy("poi__57893-many-merges.xlsx", tmp_path)  # 50,000 merged ranges
    root = _sheet_xml(path, "Sheet1")
    r1, c1, r2, c2 = _range(root.find("x:mergeCells/x:mergeCell", X).get("ref"))
    inner = (r2, c2) if (r2, c2) != (r1, c1) else None
    assert inner is not None
    with pytest.raises(PatchError, match="merged cells"):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Sheet1", {inner: 1})])
    assert not (tmp_path / "out.xlsx").exists()


def test_replace_drops_old_rows(tmp_path: Path) -> None:
    def build(ws, wb):
        state = wb.create_sheet("_state")
        for r in range(1, 50):
            state.append([f"old {r}", r, f"=B{r}*2"])

    path = _book(tmp_path, build)
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [SheetPatch("_state", {(1, 1): "key", (1, 2): "value", (2, 1): "run", (2, 2): 7}, replace=True)],
    )
    assert _calamine_rows(out, "_state") == [["key", "value"], ["run", 7.0]]
    root = _sheet_xml(out, "_state")
    assert len(root.findall("x:sheetData/x:row", X)) == 2
    assert root.find("x:dimension", X).get("ref") == "A1:B2"


@pytest.mark.parametrize("bad", ["Leads[1]", "a" * 32, "What?", "x/y", "History", "'quoted'", "", "contacts"])
def test_illegal_new_sheet_name(tmp_path: Path, bad: str) -> None:
    path = _book(tmp_path, lambda ws, wb: None)
    with pytest.raises(PatchError) as err:
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch(bad, {}, new=NewSheet())])
    assert str(err.value)
    assert not (tmp_path / "out.xlsx").exists()


def test_existing_sheet_cannot_be_created_again(tmp_path: Path) -> None:
    path = _book(tmp_path, lambda ws, wb: None)
    with pytest.raises(PatchError, match='a sheet named "Contacts" already exists'):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Contacts", {}, new=NewSheet())])


def test_inline_strings(tmp_path: Path) -> None:
    path = _book(tmp_path, lambda ws, wb: ws.append(["x"]))
    out = tmp_path / "out.xlsx"
    long_text = "ç" * 40_000
    cells = {
        (2, 1): "  leading and trailing  ",
        (2, 2): "line 1\nline 2",
        (2, 3): long_text,
        (2, 4): "=1+1",
        (2, 5): "+55 11 9999",
        (2, 6): "-minus",
        (2, 7): "@handle",
        (2, 8): "bell\x07 and nul\x00 stripped",
        (2, 9): "literal _x0041_ stays",
        (2, 10): "𝛼 beyond BMP",
    }
    patch_workbook(path, out, [SheetPatch("Contacts", cells)])
    root = _sheet_xml(out, "Contacts")
    first = _cell(root, "A2")
    assert first.get("t") == "inlineStr" and first.find("x:f", X) is None
    t = first.find("x:is/x:t", X)
    assert t.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    with zipfile.ZipFile(path) as before, zipfile.ZipFile(out) as after:  # strings never go to sharedStrings
        shared = [n for n in before.namelist() if "sharedstrings" in n.lower()]
        assert shared == [n for n in after.namelist() if "sharedstrings" in n.lower()]
        assert all(before.read(n) == after.read(n) for n in shared)
    row = _calamine_rows(out, "Contacts")[1]
    assert row[0] == "  leading and trailing  "
    assert row[1] == "line 1\nline 2"
    assert row[2] == "ç" * 32_767
    assert row[3:7] == ["=1+1", "+55 11 9999", "-minus", "@handle"]
    assert row[7] == "bell and nul stripped"
    assert row[8] == "literal _x0041_ stays"
    assert row[9] == "𝛼 beyond BMP"
    ws = openpyxl.load_workbook(out)["Contacts"]
    assert ws["D2"].value == "=1+1" and ws["D2"].data_type == "s"


def test_numbers_and_bools(tmp_path: Path) -> None:
    path = _book(tmp_path, lambda ws, wb: None)
    out = tmp_path / "out.xlsx"
    values = [0.1 + 0.2, -1e-300, 12345678901234, 1e21, True, False, -0.5]
    patch_workbook(path, out, [SheetPatch("Contacts", {(1, c): v for c, v in enumerate(values, start=1)})])
    row = _calamine_rows(out, "Contacts")[0]
    assert row[:4] == [0.1 + 0.2, -1e-300, 12345678901234.0, 1e21]
    assert row[4] is True and row[5] is False and row[6] == -0.5
    for bad in (math.nan, math.inf):
        with pytest.raises(PatchError, match=r"Contacts!B3: cannot write"):
            patch_workbook(path, tmp_path / "bad.xlsx", [SheetPatch("Contacts", {(3, 2): bad})])
    with pytest.raises(PatchError, match=r"Contacts!A1: cannot write a value of type object"):
        patch_workbook(path, tmp_path / "bad.xlsx", [SheetPatch("Contacts", {(1, 1): object()})])


def test_style_preserved_on_overwrite(tmp_path: Path) -> None:
    from openpyxl.styles import Font, PatternFill

    def build(ws, wb):
        for ref in ("A1", "A2", "A3"):
            ws[ref] = 1
            ws[ref].font = Font(bold=True, color="FF0000")
            ws[ref].fill = PatternFill("solid", fgColor="FFFF00")
            ws[ref].number_format = "0.00"
        ws["B1"] = dt.date(2020, 1, 1)
        ws["B1"].number_format = "dd/mm/yyyy"

    path = _book(tmp_path, build)
    before = _sheet_xml(path, "Contacts")
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [
            SheetPatch(
                "Contacts",
                {
                    (1, 1): 2.5,
                    (2, 1): "text",
                    (3, 1): dt.date(2024, 3, 4),
                    (1, 2): dt.date(2024, 3, 5),
                    (4, 1): None,
                },
            )
        ],
    )
    after = _sheet_xml(out, "Contacts")
    assert _cell(after, "A1").get("s") == _cell(before, "A1").get("s")
    assert _cell(after, "A2").get("s") == _cell(before, "A2").get("s")
    assert _cell(after, "B1").get("s") == _cell(before, "B1").get("s")  # already a date format: kept
    ws = openpyxl.load_workbook(out)["Contacts"]
    for ref in ("A1", "A2", "A3"):
        assert (
            ws[ref].font.b and ws[ref].font.color.rgb == "00FF0000" and ws[ref].fill.fgColor.rgb == "00FFFF00"
        )
    assert ws["A1"].number_format == "0.00" and ws["A1"].value == 2.5
    assert ws["A3"].number_format == "yyyy-mm-dd" and ws["A3"].value == dt.datetime(2024, 3, 4)
    assert ws["B1"].number_format == "dd/mm/yyyy" and ws["B1"].value == dt.datetime(2024, 3, 5)


def test_clearing_keeps_style(tmp_path: Path) -> None:
    from openpyxl.styles import PatternFill

    def build(ws, wb):
        ws["A1"] = "old"
        ws["A1"].fill = PatternFill("solid", fgColor="FFFF00")

    path = _book(tmp_path, build)
    out = tmp_path / "out.xlsx"
    patch_workbook(path, out, [SheetPatch("Contacts", {(1, 1): None, (7, 7): None})])
    cell = _cell(_sheet_xml(out, "Contacts"), "A1")
    assert cell.get("s") == _cell(_sheet_xml(path, "Contacts"), "A1").get("s") and len(cell) == 0
    assert _cell(_sheet_xml(out, "Contacts"), "G7") is None


def test_new_cells_take_column_style(tmp_path: Path) -> None:
    def build(ws, wb):
        ws.append(["When"])
        ws.column_dimensions["A"].number_format = "dd/mm/yyyy"  # <col min="1" max="1" style=...>

    path = _book(tmp_path, build)
    out = tmp_path / "out.xlsx"
    patch_workbook(path, out, [SheetPatch("Contacts", {(2, 1): dt.date(2024, 1, 31)})])
    ws = openpyxl.load_workbook(out)["Contacts"]
    assert ws["A2"].number_format == "dd/mm/yyyy" and ws["A2"].value == dt.datetime(2024, 1, 31)


def test_repeated_runs_do_not_grow_styles(tmp_path: Path) -> None:
    path = _book(tmp_path, lambda ws, wb: ws.append(["x"]))
    first, second = tmp_path / "1.xlsx", tmp_path / "2.xlsx"
    cells = {(2, 1): dt.date(2024, 1, 1), (2, 2): dt.datetime(2024, 1, 1, 9, 30)}
    patch_workbook(
        path,
        first,
        [SheetPatch("Contacts", cells), SheetPatch("Log", {(1, 1): "h"}, new=NewSheet(bold_rows={1}))],
    )
    patch_workbook(
        first,
        second,
        [
            SheetPatch("Contacts", {(3, 1): dt.date(2024, 1, 2), (3, 2): dt.datetime(2024, 1, 1, 10, 0)}),
            SheetPatch("Log2", {(1, 1): "h"}, new=NewSheet(bold_rows={1})),
        ],
    )
    assert _part_text(first, "xl/styles.xml") == _part_text(second, "xl/styles.xml")
    styles = etree.fromstring(_part_text(second, "xl/styles.xml").encode())
    xfs = styles.find("x:cellXfs", X)
    assert int(xfs.get("count")) == len(xfs)
    codes = [f.get("formatCode") for f in styles.iterfind("x:numFmts/x:numFmt", X)]
    assert codes.count("yyyy-mm-dd") == 1 and codes.count("yyyy-mm-dd hh:mm") == 1
    assert all(int(f.get("numFmtId")) >= 164 for f in styles.iterfind("x:numFmts/x:numFmt", X))


def test_new_sheet_structure(tmp_path: Path) -> None:
    path = _book(tmp_path, lambda ws, wb: ws.append(["x"]))
    out = tmp_path / "out.xlsx"
    spec = NewSheet(
        freeze_rows=1,
        col_widths={2: 30, 1: 10},
        bold_rows={1},
        validations=[
            Validation("B2:B500", options=['Say "hi"', "Won"], allow_other=True),
            Validation("C2:C500", source="=Contacts!$A$1:$A$9"),
        ],
    )
    patch_workbook(
        path,
        out,
        [
            SheetPatch("Log", {(1, 1): "Lead", (1, 2): "Stage", (2, 1): "Ana"}, new=spec),
            SheetPatch("Hidden state", {(1, 1): "k"}, new=NewSheet(state="hidden")),
        ],
    )
    root = _sheet_xml(out, "Log")
    order = [etree.QName(el).localname for el in root]
    assert order == [
        "dimension",
        "sheetViews",
        "sheetFormatPr",
        "cols",
        "sheetData",
        "dataValidations",
        "pageMargins",
    ]
    pane = root.find("x:sheetViews/x:sheetView/x:pane", X)
    assert (pane.get("ySplit"), pane.get("topLeftCell"), pane.get("state")) == ("1", "A2", "frozen")
    assert root.find("x:sheetViews/x:sheetView", X).get("tabSelected") is None
    assert [
        (c.get("min"), c.get("width"), c.get("customWidth")) for c in root.iterfind("x:cols/x:col", X)
    ] == [("1", "10.0", "1"), ("2", "30.0", "1")]
    dvs = root.findall("x:dataValidations/x:dataValidation", X)
    assert dvs[0].findtext("x:formula1", namespaces=X) == '"Say ""hi"",Won"'
    assert dvs[0].get("showErrorMessage") == "0" and dvs[0].get("showDropDown") is None
    assert dvs[1].findtext("x:formula1", namespaces=X) == "Contacts!$A$1:$A$9"
    assert dvs[1].get("showErrorMessage") == "1"
    assert root.find("x:dimension", X).get("ref") == "A1:B2"
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Contacts", "Log", "Hidden state"]
    assert wb.active.title == "Contacts"
    assert wb["Log"]["A1"].font.b and not wb["Log"]["A2"].font.b
    assert wb["Log"].freeze_panes == "A2" and wb["Hidden state"].sheet_state == "hidden"
    assert wb["Log"].data_validations.dataValidation[0].type == "list"
    workbook = _part_text(out, "xl/workbook.xml")
    assert re.search(r'<sheet (xmlns:r="[^"]+" )?name="Log" sheetId="2" r:id="rId\d+"/>', workbook)
    assert re.search(
        r'<sheet (xmlns:r="[^"]+" )?name="Hidden state" sheetId="3" state="hidden" r:id="rId\d+"/>', workbook
    )


def test_new_sheet_validation_errors(tmp_path: Path) -> None:
    path = _book(tmp_path, lambda ws, wb: None)
    cases = [
        (Validation("B2:B9", options=["a,b"]), "comma"),
        (Validation("B2:B9", options=["x" * 300]), "longer than Excel allows"),
        (Validation("B2:B9"), "either a list of options or a source range"),
        (Validation("everything", options=["a"]), "not a cell range"),
    ]
    for validation, message in cases:
        with pytest.raises(PatchError, match=message):
            patch_workbook(
                path, tmp_path / "out.xlsx", [SheetPatch("Log", {}, new=NewSheet(validations=[validation]))]
            )
    with pytest.raises(PatchError, match="state must be"):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Log", {}, new=NewSheet(state="Hidden"))])


def test_rows_and_cells_inserted_in_order(tmp_path: Path) -> None:
    body = (
        '<dimension ref="B2:D10"/><sheetData>'
        '<row r="2" spans="2:4" ht="30" customHeight="1"><c r="B2"><v>1</v></c><c r="D2"><v>3</v></c></row>'
        '<row r="10" spans="2:4"><c r="D10"><v>10</v></c></row></sheetData>'
    )
    path = _with_sheet_data(tmp_path, body)
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [
            SheetPatch(
                "Contacts", {(2, 3): 2, (2, 1): 0, (2, 6): 5, (5, 2): "five", (1, 1): "top", (12, 1): "end"}
            )
        ],
    )
    root = _sheet_xml(out, "Contacts")
    rows = root.findall("x:sheetData/x:row", X)
    assert [r.get("r") for r in rows] == ["1", "2", "5", "10", "12"]
    row2 = rows[1]
    assert [c.get("r") for c in row2] == ["A2", "B2", "C2", "D2", "F2"]
    assert (row2.get("ht"), row2.get("customHeight"), row2.get("spans")) == ("30", "1", "1:6")
    assert root.find("x:dimension", X).get("ref") == "A1:F12"
    data = _calamine_rows(out, "Contacts")
    assert data[1][:6] == [0.0, 1.0, 2.0, 3.0, "", 5.0] and data[4][1] == "five"


def test_prefixed_main_namespace_kept(tmp_path: Path) -> None:
    path = _book(tmp_path, lambda ws, wb: None)
    xml = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<x:worksheet xmlns:x="{NS}" '
        f'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" mc:Ignorable="x14ac" '
        f'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"><x:dimension ref="A1"/>'
        f'<x:sheetData><x:row r="1" x14ac:dyDescent="0.25"><x:c r="A1"><x:v>1</x:v></x:c></x:row></x:sheetData>'
        f"</x:worksheet>"
    )
    _replace_part(path, "xl/worksheets/sheet1.xml", xml.encode())
    out = tmp_path / "out.xlsx"
    patch_workbook(path, out, [SheetPatch("Contacts", {(2, 2): "b"})])
    text = _part_text(out, "xl/worksheets/sheet1.xml")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<x:worksheet ')
    assert 'mc:Ignorable="x14ac"' in text and 'x14ac:dyDescent="0.25"' in text
    assert '<x:row r="2"><x:c r="B2" t="inlineStr"><x:is><x:t>b</x:t></x:is></x:c></x:row>' in text
    assert "ns0" not in text


def test_untouched_entries_keep_compressed_bytes(tmp_path: Path) -> None:
    path = _corpus_copy("poi__ExcelWithAttachments.xlsm", tmp_path)  # VBA + OLE embeddings
    out = tmp_path / "out.xlsm"
    patch_workbook(path, out, [SheetPatch(_sheets(path)[0]["name"], {(1, 1): "x"})])
    with zipfile.ZipFile(path) as zf:
        names = [
            n
            for n in zf.namelist()
            if n.startswith(("xl/embeddings/", "xl/vbaProject.bin", "xl/media/", "docProps/"))
        ]
    assert names
    for n in names:
        assert _raw(out, n) == _raw(path, n), n


def test_chart_sheet_and_missing_sheet_refused(tmp_path: Path) -> None:
    path = _corpus_copy("calamine__any_sheets.xlsx", tmp_path)
    with pytest.raises(PatchError, match='sheet "Chart" is a chart sheet'):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Chart", {(1, 1): 1})])
    with pytest.raises(PatchError, match='there is no sheet "Nope"'):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Nope", {(1, 1): 1})])
    out = tmp_path / "ok.xlsx"
    patch_workbook(path, out, [SheetPatch("VeryHidden", {(40, 1): "hidden sheets are fine"})])
    assert _calamine_rows(out, "VeryHidden")[39][0] == "hidden sheets are fine"


def test_unreadable_files_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.xlsx"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(PatchError, match="not a valid Excel workbook"):
        patch_workbook(garbage, tmp_path / "out.xlsx", [])
    encrypted = tmp_path / "encrypted.xlsx"
    encrypted.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    with pytest.raises(PatchError, match="password-protected"):
        patch_workbook(encrypted, tmp_path / "out.xlsx", [])
    with pytest.raises(PatchError, match="cannot find"):
        patch_workbook(tmp_path / "missing.xlsx", tmp_path / "out.xlsx", [])
    book = _book(tmp_path, lambda ws, wb: None)
    with pytest.raises(PatchError, match="must not write over"):
        patch_workbook(book, book, [])
    with pytest.raises(PatchError, match="is not a cell"):
        patch_workbook(book, tmp_path / "out.xlsx", [SheetPatch("Contacts", {(0, 1): 1})])
    assert not (tmp_path / "out.xlsx").exists()


def test_workbook_structure_lock_blocks_new_sheets_only(tmp_path: Path) -> None:
    path = _corpus_copy("poi__workbookProtection-workbook_password-2013.xlsx", tmp_path)
    with pytest.raises(PatchError, match="workbook structure is protected"):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Log", {}, new=NewSheet())])
    patch_workbook(path, tmp_path / "ok.xlsx", [SheetPatch("Sheet1", {(5, 5): 1})])
    assert "lockStructure" in _part_text(tmp_path / "ok.xlsx", "xl/workbook.xml")


@pytest.mark.slow
def test_large_sheet_patch(tmp_path: Path) -> None:
    """A sheet big enough for its rows to be changed as bytes (_RawRows), compressed in parallel pieces."""
    rows = "".join(
        f'<row r="{r}"><c r="A{r}" t="inlineStr"><is><t>lead {r}</t></is></c><c r="B{r}"><v>{r}</v></c>'
        f'<c r="C{r}"><v>{r * 0.5}</v></c><c r="D{r}" t="b"><v>1</v></c></row>'
        for r in range(1, 100_001)
    )
    path = _with_sheet_data(tmp_path, f'<dimension ref="A1:D100000"/><sheetData>{rows}</sheetData>')
    cells = {(r, 5): f"score {r}" for r in range(2, 100_001, 100)}  # scattered updates
    cells.update({(r, c): r * c for r in range(100_001, 102_001) for c in range(1, 5)})  # new log rows
    cells[(50_000, 2)] = dt.date(2024, 1, 1)
    out = tmp_path / "out.xlsx"
    patch_workbook(path, out, [SheetPatch("Contacts", cells)])
    data = _calamine_rows(out, "Contacts")
    assert (
        len(data) == 102_000
        and data[102_000 - 1][3] == 102_000 * 4
        and data[49_999][1] == dt.date(2024, 1, 1)
    )
    assert data[1001][4] == "score 1002" and data[1002][:5] == ["lead 1003", 1003.0, 501.5, True, ""]
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
    assert _sheet_xml(out, "Contacts").find("x:dimension", X).get("ref") == "A1:E102000"


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("soffice") or shutil.which("libreoffice")),
    reason="LibreOffice not installed (apt-get install libreoffice-calc-nogui)",
)
def test_libreoffice_opens_patched_file(tmp_path: Path) -> None:
    path = _table_book(tmp_path)
    out = tmp_path / "patched.xlsx"
    patch_workbook(
        path,
        out,
        [
            SheetPatch("Contacts", {(4, 1): "Caio", (4, 3): dt.date(2024, 1, 1)}),
            SheetPatch("Log", {(1, 1): "h"}, new=NewSheet(freeze_rows=1, bold_rows={1})),
        ],
    )
    office = shutil.which("soffice") or shutil.which("libreoffice")
    run = subprocess.run(
        [office, "--headless", "--convert-to", "csv", "--outdir", str(tmp_path), str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    assert "Caio" in (tmp_path / "patched.csv").read_text(encoding="utf-8", errors="replace")


def test_empty_patch_copies_everything(tmp_path: Path) -> None:
    path = _corpus_copy("xlwings__examples_database_database.xlsm", tmp_path)  # button + ActiveX + VBA
    out = tmp_path / "out.xlsm"
    patch_workbook(path, out, [SheetPatch("Playlist", {})])
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == names
    for n in names:
        assert _raw(out, n) == _raw(path, n), n


def test_numpy_scalars_from_dataframes(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = _book(tmp_path, lambda ws, wb: None)
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [SheetPatch("Contacts", {(1, 1): np.bool_(True), (1, 2): np.int64(7), (1, 3): np.float64(2.5)})],
    )
    assert _calamine_rows(out, "Contacts")[0] == [True, 7.0, 2.5]
    with pytest.raises(PatchError, match=r"Contacts!A2: cannot write nan"):
        patch_workbook(path, tmp_path / "bad.xlsx", [SheetPatch("Contacts", {(2, 1): np.float64("nan")})])


# --------------------------------------------------------------------------------------------------------------
# New rows written as text, big sheets changed as bytes
# --------------------------------------------------------------------------------------------------------------


class _Text(str):
    pass


class _Level(enum.IntEnum):
    HIGH = 3


def _mixed_values() -> list:
    """Every kind of value, with text that needs escaping, xml:space="preserve" or cleaning."""
    return [
        "=SUM(A1:A9) is text, not a formula",
        "  a & b < c > d \"q\" 'a'  ",
        -17.25,
        -3,
        True,
        False,
        dt.date(2024, 2, 29),
        dt.datetime(2024, 5, 17, 14, 30, 15),
        None,
        "tab\there",
        "line\nbreak\r\nCRLF",
        "literal _x0041_ stays",
        "ünïcødé 𝛼 ç",
        "",
        0,
        1e-300,
        12345678901234,
        _Text("str subclass & <b>"),
        _Level.HIGH,
        "bell\x07 stripped",
    ]


def _expected_calamine(value):
    if isinstance(value, str):
        return str(value).replace("\x07", "") if value else ""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return "" if value is None else value


def _expected_openpyxl(value):
    if isinstance(value, str):  # openpyxl does not decode the _x005F_ escape in inline strings (Excel does)
        return re.sub(r"_(x[0-9A-Fa-f]{4}_)", r"_x005F_\1", str(value).replace("\x07", ""))
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return dt.datetime.combine(value, dt.time())


def _assert_rows_read_back(path: Path, sheet: str, rows: dict[int, list]) -> None:
    data = _calamine_rows(path, sheet)
    for r, values in rows.items():
        for c, value in enumerate(values, start=1):
            got = _calamine_value(data, r, c)
            assert _same_value(got, _expected_calamine(value)), (
                f"calamine {sheet}!{r},{c}: {got!r} != {value!r}"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ws = openpyxl.load_workbook(path)[sheet]
    for r, values in rows.items():
        for c, value in enumerate(values, start=1):
            got = ws.cell(r, c).value
            assert _same_value(got, _expected_openpyxl(value)), (
                f"openpyxl {sheet}!{r},{c}: {got!r} != {value!r}"
            )


def _assert_lxml_fixpoint(path: Path, sheet: str) -> None:
    """The part is exactly what lxml writes for its own tree: rows generated as text match lxml byte for byte."""
    part = next(s["part"] for s in _sheets(path) if s["name"] == sheet)
    data = zipfile.ZipFile(path).read(part)
    body = data[data.index(b"<worksheet") :]
    # lxml writes <t></t> for an element whose text is "" (an empty string value) but reads it back as no text
    assert etree.tostring(etree.fromstring(body), encoding="UTF-8") == body.replace(b"<t></t>", b"<t/>")


@pytest.fixture(params=["tree", "raw"])
def rows_mode(request, monkeypatch) -> str:
    """Run a test with existing rows as lxml elements (the reference) and as bytes (_RawRows, which big sheets
    use): both must give the same result."""
    if request.param == "raw":
        monkeypatch.setattr(zipio, "_RAW_ROWS_MIN_BYTES", 0)
    return request.param


def test_appended_rows_of_every_kind(tmp_path: Path, rows_mode: str) -> None:
    path = _book(tmp_path, lambda ws, wb: [ws.append(["Name", "Score"]), ws.append(["Ana", 3])])
    values = _mixed_values()
    rows = {3 + k: values[k:] + values[:k] for k in range(4)}  # every value in several columns
    log_rows = {1: ["When", "What"], **{2 + k: values[k:] + values[:k] for k in range(3)}}
    cells = {(r, c): v for r, vs in rows.items() for c, v in enumerate(vs, start=1)}
    log = {(r, c): v for r, vs in log_rows.items() for c, v in enumerate(vs, start=1)}
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [SheetPatch("Contacts", cells), SheetPatch("Log", log, new=NewSheet(freeze_rows=1, bold_rows={1}))],
    )
    _assert_rows_read_back(out, "Contacts", {1: ["Name", "Score"], 2: ["Ana", 3], **rows})
    _assert_rows_read_back(out, "Log", log_rows)
    _assert_lxml_fixpoint(out, "Log")
    if rows_mode == "tree":
        _assert_lxml_fixpoint(out, "Contacts")
    root = _sheet_xml(out, "Log")
    assert [c.get("r") for c in root.find("x:sheetData/x:row", X)] == ["A1", "B1"]  # None values: no cell
    t = _cell(root, "B2").find("x:is/x:t", X)
    assert t.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    assert _cell(root, "A2").find("x:f", X) is None and _cell(root, "A2").get("t") == "inlineStr"
    wb = openpyxl.load_workbook(out)
    assert wb["Log"]["A1"].font.b and not wb["Log"]["A2"].font.b
    assert (
        wb["Log"]["G2"].number_format == "yyyy-mm-dd" and wb["Log"]["H2"].number_format == "yyyy-mm-dd hh:mm"
    )
    assert _sheet_xml(out, "Contacts").find("x:dimension", X).get("ref") == "A1:T6"


def test_every_character_escaped_like_lxml(tmp_path: Path) -> None:
    """Generated text must be what lxml would write: check every character XML can hold."""
    legal = "".join(
        chr(i) for i in range(0x20, 0x11000) if not 0xD800 <= i <= 0xDFFF and i not in (0xFFFE, 0xFFFF)
    )
    chunks = ["\t\n\r" + legal[i : i + 10_000] for i in range(0, len(legal), 10_000)]
    path = _book(tmp_path, lambda ws, wb: None)
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [SheetPatch("Chars", {(r, 1): text for r, text in enumerate(chunks, start=1)}, new=NewSheet())],
    )
    _assert_lxml_fixpoint(out, "Chars")
    root = _sheet_xml(out, "Chars")
    assert [t.text for t in root.iterfind("x:sheetData/x:row/x:c/x:is/x:t", X)] == chunks


def test_rows_stay_sorted_when_overwriting_and_appending(tmp_path: Path, rows_mode: str) -> None:
    body = (
        '<dimension ref="B2:D10"/><sheetData>'
        '<row r="2"><c r="B2"><v>1</v></c><c r="D2"><v>3</v></c></row>'
        '<row r="5"><c r="A5" t="inlineStr"><is><t>five</t></is></c></row>'
        '<row r="10" spans="2:4"><c r="D10"><v>10</v></c></row></sheetData>'
    )
    path = _with_sheet_data(tmp_path, body)
    cells = {
        (12, 2): "tail 12",
        (2, 3): "between B2 and D2",
        (7, 1): "gap 7",
        (1, 4): "first",
        (10, 2): "ten B",
        (11, 1): "tail 11",
        (5, 1): "overwritten",
        (3, 2): 3.5,
        (10, 4): None,
        (2, 5): "after D2",
        (6, 1): None,
        (12, 1): dt.date(2024, 1, 1),
        (4, 3): True,
    }
    out = tmp_path / "out.xlsx"
    patch_workbook(path, out, [SheetPatch("Contacts", cells)])
    root = _sheet_xml(out, "Contacts")
    rows = root.findall("x:sheetData/x:row", X)
    assert [r.get("r") for r in rows] == ["1", "2", "3", "4", "5", "7", "10", "11", "12"]  # row 6: only None
    for row in rows:
        refs = [c.get("r") for c in row]
        assert all(_ref(ref)[0] == int(row.get("r")) for ref in refs)
        assert [_ref(ref)[1] for ref in refs] == sorted(_ref(ref)[1] for ref in refs)
    assert [c.get("r") for c in rows[1]] == ["B2", "C2", "D2", "E2"]
    assert [c.get("r") for c in rows[6]] == ["B10", "D10"] and rows[6].get("spans") == "2:4"
    assert _cell(root, "D10").find("x:v", X) is None
    data = _calamine_rows(out, "Contacts")
    assert data[0][3] == "first" and data[1][1:5] == [1.0, "between B2 and D2", 3.0, "after D2"]
    assert data[2][1] == 3.5 and data[3][2] is True and data[4][0] == "overwritten" and data[6][0] == "gap 7"
    assert data[9][1:4] == ["ten B", "", ""] and data[10][0] == "tail 11"
    assert data[11][:2] == [dt.date(2024, 1, 1), "tail 12"]
    assert root.find("x:dimension", X).get("ref") == "A1:E12"


# The same patches through both ways of changing existing rows: the canonical XML must be the same.


def _c14n(data: bytes) -> bytes:
    return etree.tostring(etree.fromstring(data), method="c14n")


def _both_ways(tmp_path: Path, monkeypatch, path: Path, make_patches) -> tuple[Path, Path, dict]:
    """Patch with rows as elements and with rows as bytes; returns both results and how the bytes went."""
    seen = {"split": 0, "fallback": 0}
    split, parse_fully = RawRows.split.__func__, XmlPart.parse_fully

    def spy_split(cls, data, parser):
        part = split(cls, data, parser)
        seen["split"] += part is not None
        return part

    def spy_parse_fully(self):
        seen["fallback"] += 1
        parse_fully(self)

    tree, raw = tmp_path / f"tree{path.suffix}", tmp_path / f"raw{path.suffix}"
    patch_workbook(path, tree, make_patches())
    with monkeypatch.context() as m:
        m.setattr(zipio, "_RAW_ROWS_MIN_BYTES", 0)
        m.setattr(RawRows, "split", classmethod(spy_split))
        m.setattr(XmlPart, "parse_fully", spy_parse_fully)
        patch_workbook(path, raw, make_patches())
    with zipfile.ZipFile(tree) as a, zipfile.ZipFile(raw) as b:
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            x, y = a.read(name), b.read(name)
            if x != y:
                assert name.endswith(".xml") and _c14n(x) == _c14n(y), name
    return tree, raw, seen


_X14AC = "http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"
_MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"


def _styled_book(tmp_path: Path, sheet_xml: str) -> Path:
    """A workbook with a few cell styles (0.00, bold, dd/mm/yyyy) whose only sheet is ``sheet_xml``."""
    from openpyxl.styles import Font

    def build(ws, wb):
        ws["A1"], ws["A2"], ws["A3"] = 1, 2, 3
        ws["A1"].number_format = "0.00"
        ws["A2"].font = Font(bold=True)
        ws["A3"].number_format = "dd/mm/yyyy"
        ws["A4"] = "shared string"

    path = _book(tmp_path, build, name="styled.xlsx")
    _replace_part(path, "xl/worksheets/sheet1.xml", sheet_xml.encode())
    return path


_PLAIN_ROWS = (
    '<row r="1" spans="1:3"><c r="A1" t="inlineStr"><is><t>h &amp; &#233;</t></is></c><c r="B1" s="1"><v>2</v></c>'
    '<c r="C1" t="b"><v>1</v></c></row>'
    '<row r="2" spans="bad"><c r="A2" s="1" cm="1"><v>45000</v></c><c r="C2" s="2"/></row>'
    '<row r="3" s="2" customFormat="1"/>'
    '<row r="4" ht="20" customHeight="1">\n  <c r="B4" t="s" vm="1"><v>0</v></c>\n'
    '  <c r="D4" s="3">\n    <v>4</v>\n  </c>\n</row>\n'
    '<row r="6" x14ac:dyDescent="0.25"><c r=\'A6\' s=\'1\'><v>6</v></c><c r="B6"></c></row>\n'
    '<row r="7"><c r="A7"><v>7</v></c></row>'
)


def _plain_sheet(prefix: str = "", rows: str = _PLAIN_ROWS) -> str:
    p = f"{prefix}:" if prefix else ""
    rows = re.sub(r"<(/?)(row|c|v|is|t)\b", rf"<\1{p}\2", rows) if p else rows
    xmlns = f"xmlns:{prefix}" if prefix else "xmlns"
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<{p}worksheet {xmlns}'
        f'="{NS}" xmlns:mc="{_MC}" mc:Ignorable="x14ac" xmlns:x14ac="{_X14AC}"><{p}dimension ref="A1:D7"/>'
        f'<{p}sheetData>\n{rows}\n</{p}sheetData><{p}pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75"'
        f' header="0.3" footer="0.3"/></{p}worksheet>'
    )


def _plain_patches() -> list[SheetPatch]:
    return [
        SheetPatch(
            "Contacts",
            {
                (1, 2): "text over a number",
                (1, 3): None,
                (1, 5): 5,
                (2, 1): dt.date(2024, 1, 2),
                (2, 2): "new between",
                (2, 3): dt.datetime(2024, 1, 2, 3, 4),
                (3, 2): "in a formatted row",
                (3, 4): dt.date(2024, 3, 4),
                (4, 2): True,
                (4, 3): -2.5,
                (4, 4): None,
                (5, 1): "gap row",
                (6, 1): 60,
                (6, 2): "was empty",
                (6, 3): "after",
                (7, 2): 7.5,
                (9, 2): "tail",
            },
        )
    ]


@pytest.mark.parametrize("prefix", ["", "x"])
def test_rows_as_bytes_match_rows_as_elements(tmp_path: Path, monkeypatch, prefix: str) -> None:
    path = _styled_book(tmp_path, _plain_sheet(prefix))
    tree, raw, seen = _both_ways(tmp_path, monkeypatch, path, _plain_patches)
    assert seen == {"split": 1, "fallback": 0}  # really changed as bytes
    data = _calamine_rows(raw, "Contacts")
    assert data[0][:5] == ["h & é", "text over a number", "", "", 5.0]
    assert data[1][:3] == [dt.date(2024, 1, 2), "new between", dt.datetime(2024, 1, 2, 3, 4)]
    assert data[2][1] == "in a formatted row" and data[3][1:4] == [True, -2.5, ""]
    assert data[4][0] == "gap row" and data[5][:3] == [60.0, "was empty", "after"] and data[8][1] == "tail"
    root = _sheet_xml(raw, "Contacts")
    assert root.find(".//x:row[@r='2']", X).get("spans") is None  # malformed: dropped
    assert root.find(".//x:row[@r='1']", X).get("spans") == "1:5"
    assert _cell(root, "A2").get("cm") is None and _cell(root, "B4").get("vm") is None
    assert _cell(root, "B3").get("s") == "2"  # the row's style
    text = _part_text(raw, "xl/worksheets/sheet1.xml")
    assert "h &amp; &#233;" in text and '<row r="7"><c r="A7"><v>7</v></c>' in text.replace("x:", "")


@pytest.mark.parametrize(
    "rows",
    [
        _PLAIN_ROWS.replace('<c r="B4"', "<c"),  # a cell without reference
        _PLAIN_ROWS.replace('<row r="7">', '<row r="7"><extLst/>'),  # an extension list in a row
        _PLAIN_ROWS.replace('<c r="A1"', '<c r="F1"'),  # cells out of order
        _PLAIN_ROWS.replace('<c r="C2" s="2"/>', '<c r="C2" s="one"/>'),  # a style that is no number
        _PLAIN_ROWS.replace('<c r="C2" s="2"/>', '<c r="C2" s="&#50;"/>'),  # a character reference in a tag
    ],
)
def test_rows_not_plain_are_parsed_after_all(tmp_path: Path, monkeypatch, rows: str) -> None:
    path = _styled_book(tmp_path, _plain_sheet(rows=rows))
    make = lambda: [
        SheetPatch(
            "Contacts",
            {
                key: value
                for key, value in _plain_patches()[0].cells.items()  # noqa: E731
                if key[1] != 1
            },
        )
    ]
    if 's="one"' in rows:  # the elements fail on it (as before: a damaged file), so do the bytes
        for threshold in (1 << 30, 0):
            monkeypatch.setattr(zipio, "_RAW_ROWS_MIN_BYTES", threshold)
            with pytest.raises(ValueError):
                patch_workbook(path, tmp_path / "out.xlsx", make())
        return
    _, _, seen = _both_ways(tmp_path, monkeypatch, path, make)
    assert seen == {"split": 1, "fallback": 1}


@pytest.mark.parametrize(
    "extra",
    [
        "<!-- a comment -->",
        '<c r="Z1"><f>1+1</f><v>2</v></c>',
        "<?pi ?>",
        'spans="1:&#49;"',
        "<x14ac:other/>",
    ],
)
def test_sheets_not_plain_are_parsed(tmp_path: Path, monkeypatch, extra: str) -> None:
    if extra.startswith("<c"):
        rows = _PLAIN_ROWS.replace('<row r="7">', f'<row r="7">{extra}')
    elif extra.startswith("spans"):
        rows = _PLAIN_ROWS.replace('<row r="7">', f'<row r="7" {extra}>')
    else:
        rows = _PLAIN_ROWS.replace('<row r="7">', extra + '<row r="7">')
    path = _styled_book(tmp_path, _plain_sheet(rows=rows))
    _, _, seen = _both_ways(tmp_path, monkeypatch, path, _plain_patches)
    assert seen == {"split": 0, "fallback": 0}


def test_rows_as_bytes_replace_and_damage(tmp_path: Path, monkeypatch) -> None:
    path = _styled_book(tmp_path, _plain_sheet())
    _, raw, seen = _both_ways(
        tmp_path,
        monkeypatch,
        path,
        lambda: [SheetPatch("Contacts", {(1, 1): "key", (2, 2): dt.date(2024, 1, 1)}, replace=True)],
    )
    assert seen["split"] == 1 and _calamine_rows(raw, "Contacts") == [["key", ""], ["", dt.date(2024, 1, 1)]]
    broken = _styled_book(tmp_path, _plain_sheet().replace("<v>7</v>", "<v>7</t>"))
    monkeypatch.setattr(zipio, "_RAW_ROWS_MIN_BYTES", 0)
    with pytest.raises(PatchError, match="is damaged: part xl/worksheets/sheet1.xml is not valid XML"):
        patch_workbook(broken, tmp_path / "out.xlsx", [SheetPatch("Contacts", {(1, 1): 1})])
    assert not (tmp_path / "out.xlsx").exists()


@pytest.mark.slow
@pytest.mark.skipif(not WORKBOOKS, reason=NO_CORPUS)
@pytest.mark.parametrize("name", [n for n in WORKBOOKS if n not in REFUSED])
def test_corpus_rows_as_bytes(tmp_path: Path, monkeypatch, name: str) -> None:
    original = tmp_path / name
    shutil.copy(CORPUS / name, original)
    first, target = _target(original)
    if target is None:
        pytest.skip("no writable sheet")

    def make():
        cells = {(1, 30): 12.5}
        overwrite = _pick_overwrite_cell(original, target["part"])
        if overwrite is not None:
            cells[overwrite] = "overwritten ✓"
        last = _last_row(original, target["part"])
        for k in range(3):
            cells.update({(last + 1 + k, c): v for c, v in enumerate(_appended_values(k), start=1)})
        return [SheetPatch(target["name"], cells)]

    _both_ways(tmp_path, monkeypatch, original, make)


# --------------------------------------------------------------------------------------------------------------
# Work done out of order (big sheets are parsed in the background) must look sequential
# --------------------------------------------------------------------------------------------------------------


def test_first_refusal_in_patch_order_is_reported(tmp_path: Path) -> None:
    path = _corpus_copy("poi__sheetProtection_allLocked.xlsx", tmp_path)  # Foglio1 is protected
    bad_log = SheetPatch("Log", {(1, 1): math.nan}, new=NewSheet())
    with pytest.raises(PatchError, match="is protected"):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Foglio1", {(1, 1): 1}), bad_log])
    with pytest.raises(PatchError, match="Log!A1: cannot write nan"):
        patch_workbook(path, tmp_path / "out.xlsx", [bad_log, SheetPatch("Foglio1", {(1, 1): 1})])
    with pytest.raises(PatchError, match="Foglio2!A1: cannot write nan"):
        patch_workbook(
            path,
            tmp_path / "out.xlsx",
            [SheetPatch("Foglio2", {(1, 1): math.nan}), SheetPatch("Nope", {(1, 1): 1})],
        )
    with pytest.raises(PatchError, match='there is no sheet "Nope"'):
        patch_workbook(path, tmp_path / "out.xlsx", [SheetPatch("Nope", {(1, 1): 1}), bad_log])
    assert not (tmp_path / "out.xlsx").exists()


@pytest.mark.parametrize("contacts_value", [dt.date(2024, 1, 2), "no date"])
def test_styles_are_added_in_patch_order(tmp_path: Path, contacts_value) -> None:
    """New sheets may be written while an existing sheet is still being parsed, but styles.xml must get its
    new formats in patch order all the same."""
    path = _book(tmp_path, lambda ws, wb: ws.append(["x"]))
    out = tmp_path / "out.xlsx"
    patch_workbook(
        path,
        out,
        [
            SheetPatch("Contacts", {(2, 1): contacts_value}),
            SheetPatch(
                "Log", {(1, 1): "When", (2, 1): dt.datetime(2024, 1, 2, 3, 4)}, new=NewSheet(bold_rows={1})
            ),
        ],
    )
    contacts = _cell(_sheet_xml(out, "Contacts"), "A2").get("s")
    bold, when = (_cell(_sheet_xml(out, "Log"), ref).get("s") for ref in ("A1", "A2"))
    if isinstance(contacts_value, dt.date):
        assert int(contacts) < int(bold) < int(when)
    else:
        assert contacts is None and int(bold) < int(when)
    ws = openpyxl.load_workbook(out)["Log"]
    assert ws["A1"].font.b and ws["A2"].number_format == "yyyy-mm-dd hh:mm"

"""The local Google Sheets API emulator: conformance to Google's recorded responses, and behaviour through
the real gspread client over HTTP (faults, limits, atomicity, counters, edits between requests)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import gspread
import pytest
import requests

from sheetflow.testing import sheets_emulator as se
from sheetflow.testing.sheets_emulator import Emulator, emulator_client, start
from tests.conftest import CORPUS

HERE = Path(__file__).resolve().parents[1]  # tests/
LOCAL_CASSETTES = HERE / "data" / "gspread-cassettes"
SHARED_CASSETTES = next(
    (p for p in (CORPUS / "gspread-cassettes", Path("/work/shared/corpus/gspread-cassettes")) if p.is_dir()),
    None,
)


@pytest.fixture(scope="module")
def server():
    with start() as srv:
        yield srv


@pytest.fixture
def emu(server):
    server.emulator.clear_faults()
    server.emulator._hooks.clear()
    server.emulator.reset_counts()
    return server


def contacts(n: int = 3) -> list[list]:
    return [["id", "email", "score"]] + [[f"c{i}", f"p{i}@example.org", i * 10] for i in range(1, n + 1)]


# ------------------------------------------------------------------------------------- cassette replay


def _metadata_view(doc: dict) -> dict:
    """What must agree in spreadsheets.get: the keys Google sends, the identity, every sheet's properties."""
    props = doc.get("properties", {})
    return {
        "keys": sorted(doc),
        "property keys": sorted(props),
        "identity": {k: props.get(k) for k in ("title", "locale", "timeZone", "autoRecalc")},
        "sheets": doc.get("sheets"),
        "url": doc.get("spreadsheetUrl"),
    }


def _comparable(body: str, uri: str):
    if not body.strip():
        return None
    doc = json.loads(body)
    if "/drive/v3/" in uri:  # timestamps differ; the shape and identity must not
        return {"keys": sorted(doc), "id": doc.get("id"), "name": doc.get("name")}
    if isinstance(doc.get("properties"), dict) and "sheets" in doc:
        return _metadata_view(doc)
    return doc


def replay(emulator_server, interactions: list[dict]) -> list[str]:
    """Send each recorded request to the emulator in order; return the differences from Google's answers.

    The state the cassette implies is built by the cassette's own requests: a Drive "create" becomes a
    spreadsheet with the recorded id and title; addSheet gets the recorded sheetId (a documented optional
    field of the request) so later requests naming that id address the same sheet.
    """
    base = emulator_server.base_url
    session = requests.Session()
    problems = []
    for n, it in enumerate(interactions):
        req, resp = it["request"], it["response"]
        status = resp["status"]["code"] if isinstance(resp["status"], dict) else resp["status"]
        expected = resp["body"]["string"] if isinstance(resp["body"], dict) else resp["body"]
        method, uri, body = req["method"], req["uri"], req["body"]
        u = urlsplit(uri)
        if method == "POST" and u.path == "/drive/v3/files":
            rec = json.loads(expected)
            emulator_server.create_spreadsheet(spreadsheet_id=rec["id"], title=rec["name"])
            continue
        if body and '"addSheet"' in body:
            sent, got = json.loads(body), json.loads(expected)
            for r_req, r_rep in zip(sent["requests"], got["replies"]):
                if "addSheet" in r_req:
                    r_req["addSheet"]["properties"]["sheetId"] = r_rep["addSheet"]["properties"]["sheetId"]
            body = json.dumps(sent)
        url = base + u.path + (f"?{u.query}" if u.query else "")
        r = session.request(
            method,
            url,
            data=body.encode("utf-8") if body else None,
            headers={"Content-Type": "application/json"} if body else {},
            timeout=10,
        )
        where = f"#{n} {method} {uri.split('/spreadsheets/')[-1][:90]}"
        if r.status_code != status:
            problems.append(f"{where}: status {r.status_code} != Google's {status}: {r.text[:300]}")
            continue
        want, got = _comparable(expected, uri), _comparable(r.text, uri)
        if want != got:
            problems.append(
                f"{where}:\n  Google:   {json.dumps(want)[:600]}\n  emulator: {json.dumps(got)[:600]}"
            )
    return problems


LOCAL_FILES = sorted(LOCAL_CASSETTES.glob("*.json"))


def test_local_cassettes_are_present_with_their_licence() -> None:
    assert len(LOCAL_FILES) >= 15
    assert "Permission is hereby granted" in (LOCAL_CASSETTES / "LICENSE-gspread-MIT.txt").read_text()


@pytest.mark.parametrize("path", LOCAL_FILES, ids=[p.stem for p in LOCAL_FILES])
def test_emulator_answers_like_google_in_recorded_cassette(emu, path: Path) -> None:
    interactions = json.loads(path.read_text(encoding="utf-8"))["interactions"]
    assert replay(emu, interactions) == []


SHARED_FILES = sorted(SHARED_CASSETTES.glob("*.json")) if SHARED_CASSETTES else []


@pytest.mark.skipif(
    not SHARED_FILES, reason="../shared/corpus/gspread-cassettes is absent (local copies still run)"
)
@pytest.mark.parametrize("path", SHARED_FILES or [None], ids=[p.stem for p in SHARED_FILES] or ["none"])
def test_emulator_answers_like_google_in_every_session_of_shared_corpus(emu, path: Path) -> None:
    interactions = json.loads(path.read_text(encoding="utf-8"))["interactions"]
    assert replay(emu, interactions) == []


def test_replay_catches_a_difference(emu) -> None:
    """The comparison can fail: a doctored Google answer is reported."""
    path = LOCAL_CASSETTES / "WorksheetTest.test_update_and_get.json"
    interactions = json.loads(path.read_text(encoding="utf-8"))["interactions"]
    for it in interactions:
        if it["request"]["method"] == "GET" and "values/" in it["request"]["uri"]:
            it["response"]["body"] = it["response"]["body"].replace('"b2"', '"B2"')
    problems = replay(emu, interactions)
    assert len(problems) == 1 and '"B2"' in problems[0]


# ---------------------------------------------------------------------------- through the gspread client


def test_gspread_opens_lists_and_reads_without_google_credentials(emu) -> None:
    sid = emu.create_spreadsheet({"Contacts": contacts(), "Deals": [["id"]]}, title="CRM", locale="pt_BR")
    sh = emulator_client(emu.base_url).open_by_key(sid)
    assert sh.title == "CRM" and sh.locale == "pt_BR" and sh.timezone == "Etc/GMT"
    assert [(w.title, w.row_count, w.col_count) for w in sh.worksheets()] == [
        ("Contacts", 1000, 26),
        ("Deals", 1000, 26),
    ]
    ws = sh.worksheet("Contacts")
    assert ws.get_all_values()[1] == ["c1", "p1@example.org", "10"]
    assert ws.get("A1:C2", value_render_option="UNFORMATTED_VALUE") == [
        ["id", "email", "score"],
        ["c1", "p1@example.org", 10],
    ]
    got = ws.batch_get(["A2:A", "C1:C2"], value_render_option="UNFORMATTED_VALUE")
    assert [list(v) for v in got] == [[["c1"], ["c2"], ["c3"]], [["score"], [10]]]
    assert got[0].range == "Contacts!A2:A1000"


def test_gspread_batch_update_raw_keeps_formula_looking_text_as_text(emu) -> None:
    sid = emu.create_spreadsheet({"Contacts": contacts(2)})
    ws = emulator_client(emu.base_url).open_by_key(sid).sheet1
    evil = ['=HYPERLINK("http://x","y")', "+1+1", "=1+1", "'quoted", "00123", "2026-11-23"]
    ws.batch_update([{"range": "A4:F4", "values": [evil]}], value_input_option="RAW")
    assert ws.get("A4:F4", value_render_option="FORMULA") == [evil]
    assert ws.get("A4:F4", value_render_option="UNFORMATTED_VALUE") == [evil]
    cell = emu.cell(sid, "Contacts!C4")
    assert cell.formula is None and cell.value == "=1+1"


def test_gspread_update_user_entered_makes_formulas_numbers_and_dates(emu) -> None:
    sid = emu.create_spreadsheet()
    ws = emulator_client(emu.base_url).open_by_key(sid).sheet1
    ws.update([["=4/2", "2020-01-01", "1,234.5", "TRUE", "12%", "=A1*10", "plain"]], "A1", raw=False)
    assert ws.get("A1:G1", value_render_option="FORMULA")[0][0] == "=4/2"
    assert ws.get("A1:G1", value_render_option="UNFORMATTED_VALUE") == [
        [2, 43831, 1234.5, True, 0.12, 20, "plain"]
    ]
    assert ws.get("A1:G1") == [["2", "2020-01-01", "1234.5", "TRUE", "12%", "20", "plain"]]
    got = ws.get("B1", value_render_option="UNFORMATTED_VALUE", date_time_render_option="FORMATTED_STRING")
    assert got == [["2020-01-01"]]


def test_user_entered_follows_the_spreadsheet_locale(emu) -> None:
    sid = emu.create_spreadsheet(locale="pt_BR")
    ws = emulator_client(emu.base_url).open_by_key(sid).sheet1
    ws.update([["1.234,5", "31/12/2026", "verdadeiro", "12,5"]], "A1", raw=False)
    assert ws.get("A1:D1", value_render_option="UNFORMATTED_VALUE") == [[1234.5, 46387, True, 12.5]]
    assert ws.get("A1:D1") == [["1234,5", "31/12/2026", "VERDADEIRO", "12,5"]]


def test_values_are_trimmed_and_columns_major_works(emu) -> None:
    sid = emu.create_spreadsheet(
        {"S": [["a", "", "c", ""], ["", "", "", ""], ["x", "", "", ""], ["", "", "", ""]]}
    )
    hc = emulator_client(emu.base_url).http_client
    got = hc.values_get(sid, "S!A1:D6")
    assert got == {"range": "S!A1:D6", "majorDimension": "ROWS", "values": [["a", "", "c"], [], ["x"]]}
    cols = hc.values_get(sid, "S!A1:D6", params={"majorDimension": "COLUMNS"})
    assert cols["values"] == [["a", "", "x"], [], ["c"]]
    empty = hc.values_get(sid, "S!F1:G9")
    assert empty == {"range": "S!F1:G9", "majorDimension": "ROWS"}  # no "values" key at all


def test_add_worksheet_and_duplicate_title(emu) -> None:
    sid = emu.create_spreadsheet()
    sh = emulator_client(emu.base_url).open_by_key(sid)
    ws = sh.add_worksheet("Log de execuções", rows=5, cols=3)
    assert (ws.title, ws.row_count, ws.col_count, ws.index) == ("Log de execuções", 5, 3, 1)
    assert [w.title for w in sh.worksheets()] == ["Sheet1", "Log de execuções"]
    ws.update([["a", "b"]], "A1")
    assert emu.values(sid, "'Log de execuções'!A1:B1") == [["a", "b"]]
    with pytest.raises(gspread.exceptions.APIError) as err:
        sh.add_worksheet("Sheet1", rows=1, cols=1)
    assert err.value.code == 400 and "already exists" in err.value.error["message"]
    assert err.value.error["status"] == "INVALID_ARGUMENT"


# ------------------------------------------------------------------------------------------ errors


def test_unknown_spreadsheet_not_shared_and_api_disabled(emu) -> None:
    with pytest.raises(gspread.exceptions.SpreadsheetNotFound):
        emulator_client(emu.base_url).open_by_key("1doesnotexist")
    r = requests.get(f"{emu.base_url}/v4/spreadsheets/1doesnotexist", timeout=5)
    assert r.status_code == 404
    assert r.json() == {
        "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
    }

    sid = emu.create_spreadsheet(allowed_callers={"robot@proj.iam.gserviceaccount.com"})
    assert emulator_client(emu.base_url, caller="robot@proj.iam.gserviceaccount.com").open_by_key(sid).title
    with pytest.raises(PermissionError):
        emulator_client(emu.base_url, caller="someone@else.org").open_by_key(sid)
    r = requests.get(f"{emu.base_url}/v4/spreadsheets/{sid}", timeout=5)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"

    with start(Emulator(api_disabled=True)) as off:
        sid2 = off.create_spreadsheet()
        r = requests.get(f"{off.base_url}/v4/spreadsheets/{sid2}", timeout=5)
        assert r.status_code == 403
        assert "has not been used in project" in r.json()["error"]["message"]
        assert r.json()["error"]["details"][0]["reason"] == "SERVICE_DISABLED"


def test_writing_beyond_the_grid_fails_like_google_and_writes_nothing(emu) -> None:
    sid = emu.create_spreadsheet({"S": [["keep"]]}, rows=3, cols=2)
    ws = emulator_client(emu.base_url).open_by_key(sid).sheet1
    with pytest.raises(gspread.exceptions.APIError) as err:
        ws.update([["x"], ["y"], ["z"], ["w"]], "A1")
    assert err.value.code == 400
    assert err.value.error["message"] == "Range (S!A1:A4) exceeds grid limits. Max rows: 3, max columns: 2"
    assert emu.values(sid, "S") == [["keep"]]
    with pytest.raises(gspread.exceptions.APIError, match="tried writing to column"):
        ws.update([["x", "y", "z"]], "A2:B2")
    with pytest.raises(gspread.exceptions.APIError, match=r"Range \(S!A1:B4\) exceeds grid limits"):
        ws.get("A1:B4")  # reads past the grid fail too; open-ended ranges stop at it
    assert ws.get("A:B") == [["keep"]]


def test_ten_million_cell_limit(emu) -> None:
    sid = emu.create_spreadsheet()  # 1000 x 26
    sh = emulator_client(emu.base_url).open_by_key(sid)
    with pytest.raises(gspread.exceptions.APIError) as err:
        sh.add_worksheet("Big", rows=400_000, cols=25)  # 26,000 + 10,000,000 cells
    assert "above the limit of 10000000 cells" in err.value.error["message"]
    assert err.value.error["message"].startswith("Invalid requests[0].addSheet: ")
    assert [w.title for w in sh.worksheets()] == ["Sheet1"]
    sh.add_worksheet("Fits", rows=398_000, cols=25)  # 9,950,000 + 26,000: under the limit
    assert [w.title for w in sh.worksheets()] == ["Sheet1", "Fits"]


def test_batch_update_is_atomic(emu) -> None:
    sid = emu.create_spreadsheet({"S": contacts(2)})
    sh = emulator_client(emu.base_url).open_by_key(sid)
    body = {
        "requests": [
            {"addSheet": {"properties": {"title": "New"}}},
            {
                "insertDimension": {
                    "range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 1, "endIndex": 3}
                }
            },
            {"deleteSheet": {"sheetId": 424242}},
        ]
    }
    with pytest.raises(gspread.exceptions.APIError) as err:
        sh.batch_update(body)
    assert err.value.code == 400
    assert err.value.error == {
        "code": 400,
        "message": "Invalid requests[2].deleteSheet: No grid with id: 424242",
        "status": "INVALID_ARGUMENT",
    }
    meta = emu.metadata(sid)
    assert [s["properties"]["title"] for s in meta["sheets"]] == ["S"]
    assert meta["sheets"][0]["properties"]["gridProperties"]["rowCount"] == 1000
    assert emu.values(sid, "S") == contacts(2)

    # values.batchUpdate too: one range beyond the grid, nothing written
    with pytest.raises(gspread.exceptions.APIError, match="exceeds grid limits"):
        sh.values_batch_update(
            {
                "valueInputOption": "RAW",
                "data": [{"range": "S!D1", "values": [["new"]]}, {"range": "S!A1001", "values": [["x"]]}],
            }
        )
    assert emu.values(sid, "S!D1:D1") == []


def test_structural_requests(emu) -> None:
    sid = emu.create_spreadsheet({"S": contacts(3)}, rows=10, cols=5)
    sh = emulator_client(emu.base_url).open_by_key(sid)
    reply = sh.batch_update(
        {
            "requests": [
                {
                    "insertDimension": {
                        "range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 2, "endIndex": 3},
                        "inheritFromBefore": True,
                    }
                },
                {
                    "deleteDimension": {
                        "range": {"sheetId": 0, "dimension": "COLUMNS", "startIndex": 1, "endIndex": 2}
                    }
                },
                {"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 5}},
                {
                    "repeatCell": {
                        "range": {
                            "sheetId": 0,
                            "startRowIndex": 1,
                            "endRowIndex": 5,
                            "startColumnIndex": 1,
                            "endColumnIndex": 2,
                        },
                        "cell": {
                            "userEnteredFormat": {"numberFormat": {"type": "DATE", "pattern": "dd/mm/yyyy"}}
                        },
                        "fields": "userEnteredFormat.numberFormat",
                    }
                },
                {
                    "updateCells": {
                        "rows": [
                            {
                                "values": [
                                    {"userEnteredValue": {"numberValue": 46349}},
                                    {"userEnteredValue": {"stringValue": "=not a formula"}},
                                ]
                            }
                        ],
                        "start": {"sheetId": 0, "rowIndex": 1, "columnIndex": 1},
                        "fields": "userEnteredValue",
                    }
                },
                {
                    "updateSheetProperties": {
                        "properties": {"sheetId": 0, "gridProperties": {"frozenRowCount": 1}},
                        "fields": "gridProperties.frozenRowCount",
                    }
                },
            ]
        }
    )
    assert reply == {"spreadsheetId": sid, "replies": [{}, {}, {}, {}, {}, {}]}
    props = emu.metadata(sid)["sheets"][0]["properties"]
    assert props["gridProperties"] == {"rowCount": 16, "columnCount": 4, "frozenRowCount": 1}
    assert emu.values(sid, "S") == [
        ["id", "score"],
        ["c1", 46349, "=not a formula"],
        [],
        ["c2", 20],
        ["c3", 30],
    ]
    assert emu.values(sid, "S!B2", render="FORMATTED_VALUE") == [["23/11/2026"]]
    assert emu.cell(sid, "S!B3").fmt == {"numberFormat": {"type": "DATE", "pattern": "dd/mm/yyyy"}}


def test_metadata_fields_mask_and_grid_data(emu) -> None:
    sid = emu.create_spreadsheet([{"title": "A", "values": [["x", 1]]}, {"title": "B", "hidden": True}])
    hc = emulator_client(emu.base_url).http_client
    got = hc.fetch_sheet_metadata(
        sid, params={"fields": "properties(title,timeZone),sheets.properties(title,hidden)"}
    )
    assert got == {
        "properties": {"title": "Untitled spreadsheet", "timeZone": "Etc/GMT"},
        "sheets": [{"properties": {"title": "A"}}, {"properties": {"title": "B", "hidden": True}}],
    }
    grid = hc.fetch_sheet_metadata(sid, params={"includeGridData": "true", "ranges": "A!A1:B1"})
    (sheet,) = grid["sheets"]
    cells = sheet["data"][0]["rowData"][0]["values"]
    assert cells[1]["userEnteredValue"] == {"numberValue": 1} and cells[1]["formattedValue"] == "1"


# --------------------------------------------------------------------------------- faults and timing


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_faults_reach_gspread_as_api_errors(emu, status: int) -> None:
    sid = emu.create_spreadsheet({"S": contacts(1)})
    ws = emulator_client(emu.base_url).open_by_key(sid).sheet1
    emu.fail(status, times=2, path=r"values:batchUpdate", retry_after=7 if status == 429 else None)
    for _ in range(2):
        with pytest.raises(gspread.exceptions.APIError) as err:
            ws.batch_update([{"range": "A3", "values": [["x"]]}])
        assert err.value.code == status
        assert (
            err.value.error["status"]
            == {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}[status]
        )
        assert err.value.response.headers.get("Retry-After") == ("7" if status == 429 else None)
    assert emu.values(sid, "S!A3:A3") == []  # a failed request applied nothing
    ws.get_all_values()  # a read was never matched
    ws.batch_update([{"range": "A3", "values": [["x"]]}])  # third try goes through
    assert emu.values(sid, "S!A3:A3") == [["x"]]


def test_a_delay_longer_than_the_timeout_still_applies_the_write(emu) -> None:
    sid = emu.create_spreadsheet({"S": contacts(1)})
    gc = emulator_client(emu.base_url, timeout=0.2)
    ws = gc.open_by_key(sid).sheet1
    emu.fail(0, delay=0.6, method="PUT")
    with pytest.raises(requests.exceptions.Timeout):
        ws.update([["late"]], "A5")
    deadline = time.monotonic() + 5
    while emu.values(sid, "S!A5:A5") != [["late"]] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.values(sid, "S!A5:A5") == [["late"]]  # the client saw a timeout; Google may still apply it


# --------------------------------------------------------------------------- counters and hooks


def test_counters_per_kind_operation_and_bytes(emu) -> None:
    sid = emu.create_spreadsheet({"S": contacts(5)})
    sh = emulator_client(emu.base_url).open_by_key(sid)  # 1 metadata
    emu.reset_counts()
    sh.values_batch_get(["S!A:C", "S!A1:A1"])  # 1 read
    sh.values_batch_update(
        {"valueInputOption": "RAW", "data": [{"range": "S!D1", "values": [["x"]]}]}
    )  # 1 write
    sh.batch_update({"requests": [{"addSheet": {"properties": {"title": "T"}}}]})  # 1 write
    stats = emu.stats()
    assert stats["counts"] == {"read": 1, "write": 2}
    assert stats["by_method"] == {"GET read": 1, "POST write": 2}
    assert stats["ops"] == {"values.batchGet": 1, "values.batchUpdate": 1, "spreadsheets.batchUpdate": 1}
    assert stats["requests"] == 3
    assert stats["bytes_in"] > 50 and stats["bytes_out"] > 200


def test_a_person_inserts_a_row_between_two_requests(emu) -> None:
    sid = emu.create_spreadsheet({"Contacts": contacts(3)})
    sh = emulator_client(emu.base_url).open_by_key(sid)
    emu.reset_counts()
    emu.after_request(lambda e: e.insert_rows(sid, "Contacts", 2, 1, [["new", "n@example.org", 1]]), after=1)
    first = sh.values_batch_get(["Contacts!A:A"])["valueRanges"][0]["values"]
    second = sh.values_batch_get(["Contacts!A:A"])["valueRanges"][0]["values"]
    assert first == [["id"], ["c1"], ["c2"], ["c3"]]
    assert second == [["id"], ["new"], ["c1"], ["c2"], ["c3"]]
    assert emu.metadata(sid)["sheets"][0]["properties"]["gridProperties"]["rowCount"] == 1001


def test_a_person_sorts_rows_between_two_requests(emu) -> None:
    sid = emu.create_spreadsheet({"Contacts": contacts(3)})
    sh = emulator_client(emu.base_url).open_by_key(sid)
    emu.reset_counts()
    emu.after_request(lambda e: e.sort_rows(sid, "Contacts", "C", descending=True), path="values:batchGet")
    sh.values_batch_get(["Contacts!A:A"])
    assert emu.values(sid, "Contacts!A:A") == [["id"], ["c3"], ["c2"], ["c1"]]


def test_control_endpoint_over_http(emu) -> None:
    base = emu.base_url
    sid = requests.post(
        f"{base}/_emulator/spreadsheets", json={"sheets": {"S": contacts(2)}}, timeout=5
    ).json()["id"]
    requests.post(f"{base}/_emulator/faults", json={"status": 503, "path": "values"}, timeout=5)
    requests.post(
        f"{base}/_emulator/hooks",
        json={
            "action": "insertRows",
            "spreadsheetId": sid,
            "sheet": "S",
            "at": 2,
            "after": 1,
            "kind": "read",
            "values": [["x"]],
        },
        timeout=5,
    )
    requests.delete(f"{base}/_emulator/stats", timeout=5)
    hc = emulator_client(base).http_client
    with pytest.raises(gspread.exceptions.APIError):
        hc.values_get(sid, "S!A:A")
    assert hc.values_get(sid, "S!A:A")["values"] == [["id"], ["x"], ["c1"], ["c2"]]
    stats = requests.get(f"{base}/_emulator/stats", timeout=5).json()
    assert stats["counts"] == {"read": 2} and stats["requests"] == 2
    vals = requests.get(f"{base}/_emulator/spreadsheets/{sid}/values/S!A1:B2", timeout=5).json()["values"]
    assert vals == [["id", "email"], ["x"]]


# ------------------------------------------------------------------------- A1 notation and the helpers


@pytest.mark.parametrize(
    ("a1", "expected"),
    [
        ("S!A1:C3", "S!A1:C3"),
        ("S!B2", "S!B2"),
        ("S!A:A", "S!A1:A1000"),
        ("S!B2:C", "S!B2:C1000"),
        ("S!2:3", "S!A2:Z3"),
        ("S!A1:1", "S!A1:Z1"),
        ("S", "S!A1:Z1000"),
        ("'It''s mine'!A1:B2", "'It''s mine'!A1:B2"),
        ("'It''s mine'", "'It''s mine'!A1:Z1000"),
        ("A1:B2", "S!A1:B2"),  # no sheet: the first visible sheet
        ("S!$A$1:$B$2", "S!A1:B2"),
    ],
)
def test_a1_ranges(a1: str, expected: str) -> None:
    emu = Emulator()
    sid = emu.create_spreadsheet([{"title": "S"}, {"title": "It's mine"}])
    assert emu.spreadsheets[sid].grid(a1).clipped().a1() == expected


@pytest.mark.parametrize("bad", ["Nope!A1", "S!A0", "S!1A", "'S"])
def test_a1_range_errors(bad: str) -> None:
    emu = Emulator()
    sid = emu.create_spreadsheet([{"title": "S"}])
    with pytest.raises(se.ApiError) as err:
        emu.spreadsheets[sid].grid(bad)
    assert err.value.code == 400 and "Unable to parse range" in err.value.message


def test_titles_are_quoted_as_google_quotes_them() -> None:
    assert se.quote_title("Sheet1") == "Sheet1"
    assert se.quote_title("🌵 test 1") == "'🌵 test 1'"
    assert se.quote_title("A1") == "'A1'"
    assert se.quote_title("O'Brien") == "'O''Brien'"


def test_emulator_client_honours_the_endpoint_variable(emu, monkeypatch) -> None:
    sid = emu.create_spreadsheet(title="via env")
    monkeypatch.setenv(se.ENDPOINT_ENV, emu.base_url)
    assert emulator_client().open_by_key(sid).title == "via env"
    monkeypatch.delenv(se.ENDPOINT_ENV)
    with pytest.raises(ValueError, match=se.ENDPOINT_ENV):
        emulator_client()


def test_module_runs_as_a_program_with_data_file(tmp_path: Path) -> None:
    data = tmp_path / "book.json"
    data.write_text(
        json.dumps({"spreadsheets": [{"id": "1abc", "title": "Demo", "sheets": {"S": [["a", 1]]}}]})
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sheetflow.testing.sheets_emulator", "--port", "0", "--data", str(data)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert lines[0] == "spreadsheet 1abc"
        key, _, url = lines[1].partition("=")
        assert key == se.ENDPOINT_ENV and url.startswith("http://127.0.0.1:")
        ws = emulator_client(url).open_by_key("1abc").sheet1
        assert ws.get_all_values() == [["a", "1"]]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------- more of the API surface


def test_formulas_are_evaluated_safely(emu) -> None:
    sid = emu.create_spreadsheet()
    ws = emulator_client(emu.base_url).open_by_key(sid).sheet1
    formulas = [
        "=SUM(A2:C2)",
        "=A2*2+B2",
        "=1/0",
        "=NOPE(1)",
        "=__import__('os').system('echo hi')",
        '="a"&"b"',
        "=(1+2)^2",
    ]
    ws.update([formulas, [1, 2, 3]], "A1", raw=False)
    assert ws.get("A1:G1", value_render_option="UNFORMATTED_VALUE") == [
        [6, 4, "#DIV/0!", "#NAME?", "#ERROR!", "ab", 9]
    ]
    assert ws.get("A1:G1", value_render_option="FORMULA") == [formulas]
    ws.update([[10]], "A2")  # formulas follow their inputs
    assert ws.get("A1:B1", value_render_option="UNFORMATTED_VALUE") == [[15, 22]]
    assert ws.get("A2:C2", value_render_option="FORMULA") == [[10, 2, 3]]  # plain numbers stay numbers


def test_sheet_properties_rename_move_hide_and_last_sheet(emu) -> None:
    sid = emu.create_spreadsheet([{"title": "A"}, {"title": "B"}, {"title": "C"}])
    sh = emulator_client(emu.base_url).open_by_key(sid)
    ids = [w.id for w in sh.worksheets()]
    sh.batch_update(
        {
            "requests": [
                {
                    "updateSheetProperties": {
                        "properties": {"sheetId": ids[2], "title": "Z", "index": 0},
                        "fields": "title,index",
                    }
                },
                {
                    "updateSheetProperties": {
                        "properties": {"sheetId": ids[0], "hidden": True},
                        "fields": "hidden",
                    }
                },
            ]
        }
    )
    props = [s["properties"] for s in emu.metadata(sid)["sheets"]]
    assert [(p["title"], p["index"], p.get("hidden", False)) for p in props] == [
        ("Z", 0, False),
        ("A", 1, True),
        ("B", 2, False),
    ]
    assert emu.spreadsheets[sid].grid("A1").a1() == "Z!A1"  # no sheet named: the first visible one
    with pytest.raises(gspread.exceptions.APIError, match='A sheet with the name "B" already exists'):
        sh.batch_update(
            {
                "requests": [
                    {
                        "updateSheetProperties": {
                            "properties": {"sheetId": ids[2], "title": "B"},
                            "fields": "title",
                        }
                    }
                ]
            }
        )
    sh.batch_update(
        {"requests": [{"deleteSheet": {"sheetId": ids[0]}}, {"deleteSheet": {"sheetId": ids[1]}}]}
    )
    with pytest.raises(gspread.exceptions.APIError, match="can't remove all the sheets"):
        sh.batch_update({"requests": [{"deleteSheet": {"sheetId": ids[2]}}]})


def test_clear_keeps_formats_and_batch_clear_reports_ranges(emu) -> None:
    sid = emu.create_spreadsheet({"S": contacts(3)})
    sh = emulator_client(emu.base_url).open_by_key(sid)
    sh.batch_update(
        {
            "requests": [
                {
                    "repeatCell": {
                        "range": {
                            "sheetId": 0,
                            "startRowIndex": 1,
                            "endRowIndex": 4,
                            "startColumnIndex": 2,
                            "endColumnIndex": 3,
                        },
                        "cell": {
                            "userEnteredFormat": {"numberFormat": {"type": "NUMBER", "pattern": "#,##0.00"}}
                        },
                        "fields": "userEnteredFormat.numberFormat",
                    }
                }
            ]
        }
    )
    assert sh.values_get("S!C2:C2")["values"] == [["10.00"]]
    got = sh.values_batch_clear(body={"ranges": ["S!C2:C3", "S!A4:B"]})
    assert got == {"spreadsheetId": sid, "clearedRanges": ["S!C2:C3", "S!A4:B1000"]}
    assert emu.values(sid, "S") == [
        ["id", "email", "score"],
        ["c1", "p1@example.org"],
        ["c2", "p2@example.org"],
        ["", "", 30],
    ]
    sh.values_update("S!C2", params={"valueInputOption": "RAW"}, body={"values": [[1234.5]]})
    assert sh.values_get("S!C2")["values"] == [["1,234.50"]]  # the format survived the clear


def test_columns_major_write_and_sort_range(emu) -> None:
    sid = emu.create_spreadsheet({"S": [["name", "n"]]})
    sh = emulator_client(emu.base_url).open_by_key(sid)
    sh.values_update(
        "S!A2",
        params={"valueInputOption": "RAW"},
        body={"majorDimension": "COLUMNS", "values": [["b", "a", "c"], [2, 1, 3]]},
    )
    sh.batch_update(
        {
            "requests": [
                {
                    "sortRange": {
                        "range": {"sheetId": 0, "startRowIndex": 1},
                        "sortSpecs": [{"dimensionIndex": 1, "sortOrder": "DESCENDING"}],
                    }
                }
            ]
        }
    )
    assert emu.values(sid, "S") == [["name", "n"], ["c", 3], ["b", 2], ["a", 1]]


def test_append_grows_the_grid_and_reports_the_table(emu) -> None:
    sid = emu.create_spreadsheet({"S": [["id"], ["a"]]}, rows=2, cols=1)
    sh = emulator_client(emu.base_url).open_by_key(sid)
    got = sh.values_append("S", params={"valueInputOption": "RAW"}, body={"values": [["b", "extra"]]})
    assert got["tableRange"] == "S!A1:A2"
    assert got["updates"]["updatedRange"] == "S!A3:B3"
    grid = emu.metadata(sid)["sheets"][0]["properties"]["gridProperties"]
    assert grid == {"rowCount": 3, "columnCount": 2}


def test_concurrent_requests_are_serialised_and_all_counted(emu) -> None:
    import threading

    sid = emu.create_spreadsheet({"S": [["n"]]})
    emu.reset_counts()
    errors = []

    def writer(k: int) -> None:
        try:
            hc = emulator_client(emu.base_url).http_client
            for i in range(5):
                hc.values_update(
                    sid,
                    f"S!B{k * 5 + i + 1}",
                    params={"valueInputOption": "RAW"},
                    body={"values": [[k * 5 + i]]},
                )
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r[0] for r in emu.values(sid, "S!B1:B30")] == list(range(30))
    assert emu.stats()["counts"] == {"write": 30}


def test_retry_after_and_delayed_fault_that_also_fails(emu) -> None:
    sid = emu.create_spreadsheet()
    hc = emulator_client(emu.base_url).http_client
    emu.fail(429, retry_after=1.5, kind="read")
    with pytest.raises(gspread.exceptions.APIError) as err:
        hc.values_get(sid, "Sheet1!A1")
    assert err.value.response.headers["Retry-After"] == "1.5"
    assert "Read requests" in err.value.error["message"]
    assert err.value.error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    emu.fail(503, delay=0.1, method="PUT")
    with pytest.raises(gspread.exceptions.APIError) as err:
        hc.values_update(sid, "Sheet1!A1", params={"valueInputOption": "RAW"}, body={"values": [["x"]]})
    assert err.value.code == 503
    assert emu.values(sid, "Sheet1!A1") == []


def test_gspread_create_open_by_title_and_delete_through_drive_calls(emu) -> None:
    gc = emulator_client(emu.base_url)
    sh = gc.create("Made here")
    assert (sh.title, sh.sheet1.title) == ("Made here", "Sheet1")
    assert gc.open("Made here").id == sh.id
    assert sh.get_lastUpdateTime().endswith("Z")
    gc.del_spreadsheet(sh.id)
    with pytest.raises(gspread.exceptions.SpreadsheetNotFound):
        gc.open_by_key(sh.id)


def test_empty_batches_answer_as_google_proto3_json(emu) -> None:
    sid = emu.create_spreadsheet()
    sh = emulator_client(emu.base_url).open_by_key(sid)
    assert sh.values_batch_update({"valueInputOption": "RAW", "data": []}) == {"spreadsheetId": sid}
    assert sh.values_batch_get([]) == {"spreadsheetId": sid}
    with pytest.raises(gspread.exceptions.APIError, match="Must specify at least one request"):
        sh.batch_update({"requests": []})
    got = sh.values_batch_update(
        {"valueInputOption": "RAW", "data": [{"range": "Sheet1!A1:B2", "values": [[None, None]]}]}
    )
    assert got == {
        "spreadsheetId": sid,
        "responses": [{"spreadsheetId": sid, "updatedRange": "Sheet1!A1:B1"}],
    }


def test_payload_and_cell_size_limits(emu) -> None:
    sid = emu.create_spreadsheet()
    sh = emulator_client(emu.base_url).open_by_key(sid)
    with pytest.raises(gspread.exceptions.APIError, match="more than the maximum of 50000 characters"):
        sh.values_update("Sheet1!A1", params={"valueInputOption": "RAW"}, body={"values": [["x" * 50_001]]})
    with start(Emulator(max_request_bytes=2_000)) as small:
        sid2 = small.create_spreadsheet()
        hc = emulator_client(small.base_url).http_client
        rows = [[f"row {i}", "y" * 40] for i in range(100)]
        with pytest.raises(gspread.exceptions.APIError) as err:
            hc.values_update(sid2, "Sheet1!A1", params={"valueInputOption": "RAW"}, body={"values": rows})
        assert err.value.error["message"] == "Request payload size exceeds the limit: 2000 bytes."
        assert small.values(sid2, "Sheet1") == []
        for k in range(0, 100, 20):  # split into small requests, it goes through
            hc.values_update(
                sid2,
                f"Sheet1!A{k + 1}",
                params={"valueInputOption": "RAW"},
                body={"values": rows[k : k + 20]},
            )
        assert small.values(sid2, "Sheet1") == rows

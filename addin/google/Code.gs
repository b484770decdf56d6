/**
 * sheetflow menu for Google Sheets (bound script: Extensions > Apps Script).
 *
 * Adds a "sheetflow" menu (Run now, Preview, Check, Report). A menu item writes one request row into the
 * Control sheet (pt-BR "Controle"): action | requested_by | requested_at | status ("waiting"), in the
 * first free row of the request area (rows 9-58, below the header in row 8; layout: sheetflow/control.py).
 * The sheetflow runner (`sheetflow watch gsheets:ID` or a scheduled `sheetflow run-due`) answers each
 * request once: it writes "running", then "done"/"failed", the time and a summary into the same row.
 *
 * The script holds no credentials and sends nothing: it only writes into this spreadsheet
 * (scope spreadsheets.currentonly) and reads who clicked (userinfo.email).
 */

var CONTROL_NAMES = ["control", "controle", "painel_de_controle"];
var HEADER_ROW = 8; // sheetflow/control.py REQUEST_HEADER_ROW
var MAX_REQUESTS = 50; // sheetflow/control.py MAX_REQUESTS: the runner reads A1:F60
var HEADER = {
  en: ["action", "requested_by", "requested_at", "status", "answered_at", "summary"],
  pt: ["ação", "pedido_por", "pedido_em", "situação", "respondido_em", "resumo"],
};
var ACTIONS = {
  run: { en: "Run", pt: "Executar" },
  preview: { en: "Preview", pt: "Pré-visualizar" },
  check: { en: "Check", pt: "Verificar" },
  report: { en: "Report", pt: "Relatório" },
};
var WAITING = { en: "waiting", pt: "aguardando" };

function onOpen() {
  SpreadsheetApp.getUi()
    .createMenu("sheetflow")
    .addItem("Run now", "requestRun")
    .addItem("Preview", "requestPreview")
    .addItem("Check", "requestCheck")
    .addItem("Report", "requestReport")
    .addToUi();
}

function onInstall() {
  onOpen();
}

function requestRun() {
  request_("run");
}
function requestPreview() {
  request_("preview");
}
function requestCheck() {
  request_("check");
}
function requestReport() {
  request_("report");
}

function normalize_(text) {
  return String(text || "")
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, "_");
}

function controlSheet_(book) {
  var sheets = book.getSheets();
  for (var i = 0; i < sheets.length; i++) {
    if (CONTROL_NAMES.indexOf(normalize_(sheets[i].getName())) >= 0) return sheets[i];
  }
  return null;
}

function request_(action) {
  var book = SpreadsheetApp.getActiveSpreadsheet();
  var ui = SpreadsheetApp.getUi();
  var lock = LockService.getDocumentLock(); // two clicks at once never take the same row
  if (!lock.tryLock(10000)) {
    ui.alert("sheetflow", "Another request is being written; try again in a moment.", ui.ButtonSet.OK);
    return;
  }
  try {
    var sheet = controlSheet_(book);
    var pt = book.getSpreadsheetLocale().indexOf("pt") === 0;
    if (sheet === null) {
      // `sheetflow init` adds the full panel; a bare request area is enough for the runner
      sheet = book.insertSheet(pt ? "Controle" : "Control");
      sheet.getRange(1, 1).setValue("sheetflow");
      sheet.getRange(3, 1).setValue(pt ? "Ação" : "Action");
      sheet.getRange(HEADER_ROW, 1, 1, 6).setValues([pt ? HEADER.pt : HEADER.en]).setFontWeight("bold");
    } else {
      pt = normalize_(sheet.getName()) !== "control" || normalize_(sheet.getRange(3, 1).getValue()) === "acao";
    }
    var area = sheet.getRange(HEADER_ROW + 1, 1, MAX_REQUESTS, 6);
    var values = area.getValues();
    var row = -1;
    for (var i = 0; i < values.length; i++) {
      var empty = values[i].every(function (v) {
        return v === "" || v === null;
      });
      if (empty) {
        row = HEADER_ROW + 1 + i;
        break;
      }
    }
    if (row < 0) {
      ui.alert(
        "sheetflow",
        "The request area (rows " + (HEADER_ROW + 1) + "-" + (HEADER_ROW + MAX_REQUESTS) +
          ") is full: delete answered rows, then try again.",
        ui.ButtonSet.OK
      );
      return;
    }
    var who = Session.getActiveUser().getEmail() || "someone"; // empty outside the user's domain
    var label = pt ? ACTIONS[action].pt : ACTIONS[action].en;
    // text as text: the label and the address are written as values, never as formulas
    sheet.getRange(row, 1, 1, 4).setNumberFormats([["@", "@", "yyyy-mm-dd hh:mm", "@"]]);
    sheet.getRange(row, 1, 1, 4).setValues([[label, who, new Date(), pt ? WAITING.pt : WAITING.en]]);
    SpreadsheetApp.flush();
    book.toast(
      (pt ? "Pedido registrado: " : "Requested: ") + label +
        (pt ? ". O sheetflow responde na planilha Controle." : ". sheetflow answers in the Control sheet."),
      "sheetflow",
      8
    );
  } finally {
    lock.releaseLock();
  }
}

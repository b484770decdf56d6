"""Raw sheet cells -> typed tables that know where each value lives.

A :class:`Table` is a pandas DataFrame with canonical column names and contract dtypes, plus the
sheet row of every record and the sheet column of every field, so that every error and every write
can name its cell (``Contacts!H12``). Headers are matched through the contract's aliases; columns the
team added keep their (normalized) header as name and get a type inferred from their values.

The header is where the user put it: the row (among the first ``HEADER_SEARCH_ROWS``) with the most
cells naming a contract column or alias, so a title, a note or blank rows above it are not records.
Inside an Excel table (ListObject) the table's own header row is the header and only its data range holds
records (not its totals row, not the rows below it); outside tables a footer after a blank row (one
label-looking text, or only formulas) is not a record (README "Where the data is"). Every column that names
a consent field counts (any of them saying "do not contact" is enough). A sheet with content but no such
row is an error naming the sheet, and nothing is written to it.
Cells holding formulas are remembered per column (``Table.formulas``): sheetflow never writes them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sheetflow import contract
from sheetflow.book.raw import RawSheet  # re-exported: the layers above take it from here
from sheetflow.coerce import Locale, as_text, convert_column, infer_type, parse_bool, parse_consent
from sheetflow.coltypes import ColumnType
from sheetflow.contract import HEADER_SEARCH_ROWS, SheetSpec, find_header, known_name_count, row_filled
from sheetflow.names import cell_ref, column_letter, normalize
from sheetflow.problems import Problem, error, note, warning

MAX_WARNINGS_PER_COLUMN = 5


@dataclass
class Table:
    """One contract sheet as typed data."""

    spec: SheetSpec
    sheet: str  # the sheet's actual name in the workbook
    df: pd.DataFrame  # canonical column names, typed
    rows: np.ndarray  # sheet row number of each df row (1-based)
    header_row: int  # 0 when the sheet has no header yet
    col_index: dict[str, int]  # column name -> 1-based sheet column
    headers: dict[str, str] = field(default_factory=dict)  # column name -> header text as typed
    types: dict[str, ColumnType] = field(default_factory=dict)
    last_row: int = 0  # last used sheet row (appends go below)
    last_col: int = 0
    exists: bool = True
    locale: Locale = field(default_factory=Locale)  # how the workbook writes numbers, dates; its zone
    # column -> df positions of cells that hold something that could not be read as the column's type;
    # they read as empty, and sheetflow never writes over them (the text would be lost)
    unreadable: dict[str, set[int]] = field(default_factory=dict)
    readable: bool = True  # False: the sheet has content but no header row; nothing is written to it
    # column -> bool per df row: the cell holds a formula (only columns that have any)
    formulas: dict[str, np.ndarray] = field(default_factory=dict)
    # columns the writer adds to the sheet, by the order the run first writes them; shared by the engine's
    # copies of the table (dataclasses.replace keeps the same dict), so plan and writer agree
    planned_cols: dict[str, int] = field(default_factory=dict)
    # consent column -> {df position: sheet column}: rows whose "do not contact" comes from another column
    # meaning the same field (Contacts with both "unsubscribed" and "Email Opt Out"), for naming that cell
    consent_at: dict[str, dict[int, int]] = field(default_factory=dict)
    # yes/no column -> {df position: the words the cell holds} (only cells holding text)
    typed_text: dict[str, dict[int, str]] = field(default_factory=dict)

    def flag_text(self, position: int, column: str, value: object) -> str:
        """The words a yes/no cell holds (``SIM``, ``yes``) while they still mean ``value`` (a ``set`` may
        have changed it this run); "" for a real boolean cell (printed TRUE/FALSE in the locale)."""
        text = self.typed_text.get(column, {}).get(position, "")
        return text if text and parse_bool(text) == value else ""

    def consent_ref(self, position: int, column: str) -> str:
        """The cell that says "do not contact" for df row ``position`` in consent field ``column``."""
        other = self.consent_at.get(column, {}).get(position)
        if other is None:
            return self.ref(position, column)
        return cell_ref(self.sheet, int(self.rows[position]), other)

    def column_number(self, column: str, *, reserve: bool = False) -> int:
        """1-based sheet column of ``column``. A column the sheet lacks is where the writer adds it: after
        the last used column, in the order the run first writes them (``reserve``: this write claims it),
        so messages and the plan name the real cell (``Contacts!K2``)."""
        col = self.col_index.get(column) or self.planned_cols.get(column)
        if col is None:
            col = 1 + max(
                self.last_col,
                max(self.col_index.values(), default=0),
                max(self.planned_cols.values(), default=0),
            )
            if reserve:
                self.planned_cols[column] = col
        return col

    def ref(self, position: int, column: str) -> str:
        """``Sheet!A1`` of the cell of df row ``position`` (0-based) in ``column``."""
        return cell_ref(self.sheet, int(self.rows[position]), self.column_number(column))

    def refs(self, positions: list[int], column: str) -> list[str]:
        """``ref`` for many rows at once, for cells this run writes (plans can hold 100k changes)."""
        prefix = cell_ref(self.sheet, 1, self.column_number(column, reserve=True))[:-1]
        return [f"{prefix}{r}" for r in self.rows[positions].tolist()]

    def formula_mask(self, column: str) -> np.ndarray:
        """True for the df rows whose ``column`` cell holds a formula (never written by sheetflow)."""
        mask = self.formulas.get(column)
        return mask if mask is not None else np.zeros(len(self.df), dtype=bool)

    def header_ref(self, column: str) -> str:
        col = self.col_index.get(column, 1)
        return cell_ref(self.sheet, max(self.header_row, 1), col)

    def has(self, column: str) -> bool:
        return column in self.col_index

    def __len__(self) -> int:
        return len(self.df)


def _table_header(raw: RawSheet, spec: SheetSpec) -> tuple[int, set[int], int, str] | None:
    """(header row index in raw.rows, sheet rows that are not records, last data row, table name) from the
    Excel table on the sheet whose header names the most known columns; None without such a table."""
    row0, col0 = raw.origin
    best: tuple[int, set[int], int, str] | None = None
    best_count = 0
    for _name, (r1, c1, r2, c2), header_rows, totals_rows in raw.tables:
        if header_rows < 1 or not (0 <= r1 - row0 < len(raw.rows)):
            continue
        header = raw.rows[r1 - row0]
        cells = header[max(c1 - col0, 0) : max(c2 - col0 + 1, 0)]
        count = known_name_count(cells, spec)
        if count > best_count:
            skip = set(range(r1 + 1, r1 + header_rows)) | set(range(r2 - totals_rows + 1, r2 + 1))
            best, best_count = (r1 - row0, skip, r2 - totals_rows, _name), count
    return best


# A footer people put under their data: "Total: 3 contacts", "Notes", "Updated weekly by Ana", "Fonte: CRM".
_FOOTER = re.compile(
    r"^\W*(totals?|sub-?totals?|grand total|sum|soma|count|contagem|notes?|notas?|obs|observa|fonte|source|"
    r"updated|atualizad|last updated|generated|gerado|legend|legenda|\*)|:",
    re.IGNORECASE,
)


def _footer_rows(
    body: list[list[object]],
    header_row: int,
    formulas: set[tuple[int, int]],
    col0: int,
    keys: tuple[int, int],
) -> list[int]:
    """Body indexes of footer rows (data sheets outside Excel tables, contract in README "Where the data
    is"): a row that follows a fully blank row and holds either one label-looking text outside the email
    column (``Total: 3 contacts``, ``Notes``) or only formulas outside the id and email columns (a
    ``=SUM(...)`` line). ``keys``: 0-based positions of the id and email columns in a row (-1: none). Such a row is not a record, and nothing is written to it."""
    out: list[int] = []
    gap = False
    for i, row in enumerate(body):
        if not row_filled(row):
            gap = True
            continue
        if gap:
            filled = [j for j, v in enumerate(row) if v not in (None, "")]
            sheet_row = header_row + 1 + i
            label = (
                len(filled) == 1
                and isinstance(row[filled[0]], str)
                and bool(_FOOTER.search(row[filled[0]].strip()))  # type: ignore[attr-defined]
            )
            only_formulas = all((sheet_row, col0 + j) in formulas for j in filled)
            if (label and filled[0] != keys[1]) or (only_formulas and not set(keys).intersection(filled)):
                out.append(i)
                continue  # the gap goes on: a second footer line is a footer too
        gap = False
    return out


def empty_table(spec: SheetSpec, sheet_name: str | None = None, exists: bool = False) -> Table:
    every = (*spec.columns, *spec.optional)
    types = {c.name: c.type for c in every}
    df = pd.DataFrame({c.name: pd.Series([], dtype=dtype_of(c.type)) for c in every})
    return Table(
        spec, sheet_name or spec.name, df, np.zeros(0, dtype=np.int64), 0, {}, {}, types, exists=exists
    )


def dtype_of(type_: ColumnType) -> str:
    """The pandas dtype a column of this type holds (pandas 3: ``str`` is the default string dtype)."""
    return {
        ColumnType.NUMBER: "float64",
        ColumnType.DATE: "datetime64[ns]",
        ColumnType.BOOL: "boolean",
        ColumnType.TEXT: "str",
    }[type_]


def load_table(raw: RawSheet, spec: SheetSpec, locale: Locale) -> tuple[Table, list[Problem]]:
    """Type one sheet; problems name the cells that could not be read."""
    problems: list[Problem] = []
    row0, col0 = raw.origin
    in_table = _table_header(raw, spec) if raw.tables else None
    if in_table is not None:
        h, not_records, table_end, table_name = in_table
    else:
        h, not_records, table_end, table_name = find_header(raw.rows, spec), set(), 0, ""  # type: ignore[assignment]
    if h is None:
        table = empty_table(spec, raw.name, exists=True)
        if any(row_filled(r) for r in raw.rows):
            table.readable = False
            examples = ", ".join(c.name for c in spec.columns[:4])
            problems.append(
                error(
                    raw.name,
                    f"no header row found in the first {HEADER_SEARCH_ROWS} rows: no cell names a "
                    f"{spec.name} column (such as {examples}); sheetflow does not read or write this sheet",
                    "put the column names in one row above the data",
                )
            )
        return table, problems
    header_row = row0 + h
    header = raw.rows[h]
    # messages of this sheet in Portuguese when the workbook's locale is pt-BR or the sheet has its pt name
    pt = locale.portuguese or (bool(spec.pt) and normalize(raw.name) == normalize(spec.pt))
    col_index: dict[str, int] = {}
    headers: dict[str, str] = {}
    also_consent: dict[str, list[int]] = {}  # consent field -> its other sheet columns
    for j, value in enumerate(header):
        if value in (None, ""):
            continue
        text = str(value).strip()
        column = spec.column(text)
        name = column.name if column else normalize(text)
        if not name:
            continue
        looks = contract.consent_like(text) if column is None and spec.name == "Contacts" else None
        if looks is not None:  # when in doubt about consent, do not send
            label = _CONSENT_PT[looks] if pt else looks
            problems.append(
                note(
                    cell_ref(raw.name, header_row, col0 + j),
                    f'a coluna "{text}" parece ser de consentimento: lida como {label}'
                    if pt
                    else f'column "{text}" looks like a consent column: read as {label}',
                    "renomeie-a se não for" if pt else "rename it if it is not",
                )
            )
            name = looks
        consent = spec.name == "Contacts" and name in contract.CONSENT_COLUMNS
        sheet_col = col0 + j
        if name in col_index and consent:
            # every column that means a consent field counts: any of them saying "do not contact" is enough
            also_consent.setdefault(name, []).append(sheet_col)
            first = column_letter(col_index[name])
            problems.append(
                note(
                    cell_ref(raw.name, header_row, sheet_col),
                    f'a coluna "{text}" também significa {_CONSENT_PT[name]}, como {first}'
                    if pt
                    else f'column "{text}" also means {name}, like {first}',
                    "o contato não recebe e-mails quando qualquer uma delas diz isso"
                    if pt
                    else "a contact is not emailed when any of these columns says so",
                )
            )
            continue
        if name in col_index:
            problems.append(
                warning(
                    cell_ref(raw.name, header_row, sheet_col),
                    f'column "{text}" appears twice',
                    f"only {column_letter(col_index[name])} is used; rename one of them",
                )
            )
            continue
        col_index[name] = sheet_col
        headers[name] = text
    body = raw.rows[h + 1 :]
    outside: list[tuple[int, str]] = []  # (body index, why) of filled rows that are not records
    if spec.kind in (contract.Kind.DATA, contract.Kind.RULES):
        if table_name:
            # inside an Excel table only its data range holds records (rows typed right below it join the
            # table in Excel, rows sheetflow appends right below it join it too: xlsxpatch._grow_tables)
            outside = [
                (
                    i,
                    f'está abaixo da tabela do Excel "{table_name}"'
                    if pt
                    else f'is below the Excel table "{table_name}"',
                )
                for i, r in enumerate(body)
                if header_row + 1 + i > table_end and header_row + 1 + i not in not_records and row_filled(r)
            ]
        elif spec.kind is contract.Kind.DATA:
            keys = (col_index.get("id", col0 - 1) - col0, col_index.get("email", col0 - 1) - col0)
            formula_cells = set(raw.formulas) if raw.formulas else set()
            outside = [
                (
                    i,
                    "é um rodapé sob os dados (após uma linha em branco)"
                    if pt
                    else "is a footer under the data (after a blank row)",
                )
                for i in _footer_rows(body, header_row, formula_cells, col0, keys)
            ]
    for n, (i, why) in enumerate(outside):
        not_records.add(header_row + 1 + i)
        if n < MAX_WARNINGS_PER_COLUMN:
            first = next(j for j, v in enumerate(body[i]) if v not in (None, ""))  # type: ignore[assignment]
            quoted = f'"{as_text(body[i][first])[:40]}"'  # type: ignore[index,call-overload]
            if pt:
                text = f"{quoted} {why}, não é um registro: o sheetflow não lê nem escreve esta linha"
                hint = (
                    "se for um registro, coloque-o dentro da tabela (digite na última linha dela)"
                    if table_name
                    else "se for um registro, apague a linha em branco acima dele"
                )
            else:
                text = f"{quoted} {why}, not a record: sheetflow does not read or write this row"
                hint = (
                    "if it is a record, put it inside the table (type it in the table's last row)"
                    if table_name
                    else "if it is a record, remove the blank row above it"
                )
            problems.append(note(cell_ref(raw.name, header_row + 1 + i, col0 + first), text, hint))  # type: ignore[operator]
        elif n == MAX_WARNINGS_PER_COLUMN:
            more = len(outside) - n
            problems.append(
                note(
                    raw.name,
                    f"mais {more} linhas que não são registros"
                    if pt
                    else f"{more} more rows that are not records",
                )
            )
    keep = [i for i, r in enumerate(body) if row_filled(r) and header_row + 1 + i not in not_records]
    rows = np.asarray([header_row + 1 + i for i in keep], dtype=np.int64)
    formulas: dict[str, np.ndarray] = {}
    if raw.formulas:
        row_pos = {int(r): p for p, r in enumerate(rows.tolist())}
        by_col = {sc: n for n, sc in col_index.items()}
        for r, c in raw.formulas:
            p = row_pos.get(r)
            holder = by_col.get(c)
            if p is not None and holder is not None:
                formulas.setdefault(holder, np.zeros(len(rows), dtype=bool))[p] = True
    data: dict[str, pd.Series] = {}
    types: dict[str, ColumnType] = {}
    unreadable: dict[str, set[int]] = {}
    consent_at: dict[str, dict[int, int]] = {}
    typed_text: dict[str, dict[int, str]] = {}
    for name, sheet_col in col_index.items():
        j = sheet_col - col0
        values = [body[i][j] if j < len(body[i]) else "" for i in keep]
        declared = spec.column(name)
        type_ = declared.type if declared and declared.name == name else infer_type(values, locale)
        if spec.name == "Contacts" and name in contract.CONSENT_COLUMNS:
            series, unclear = _consent_column(values)
            problems += _consent_notes(
                raw.name, rows, sheet_col, name, values, unclear, body, keep, col_index, col0, pt
            )
            for other in also_consent.get(name, ()):
                k = other - col0
                more = [body[i][k] if k < len(body[i]) else "" for i in keep]  # type: ignore[assignment]
                extra, unclear = _consent_column(more)  # type: ignore[arg-type]
                problems += _consent_notes(
                    raw.name,
                    rows,
                    other,
                    name,
                    more,  # type: ignore[arg-type]
                    unclear,
                    body,
                    keep,
                    col_index,
                    col0,
                    pt,  # type: ignore[arg-type]
                )
                # any column saying yes suppresses; a blank stays blank only when all are blank
                said = extra.fillna(False).to_numpy(dtype=bool) & ~series.fillna(False).to_numpy(dtype=bool)
                for pos in said.nonzero()[0].tolist():
                    consent_at.setdefault(name, {})[pos] = other
                series = (series.fillna(False) | extra.fillna(False)).mask(series.isna() & extra.isna())
            data[name], types[name] = series, ColumnType.BOOL
            continue
        series, bad = convert_column(values, type_, locale)
        if bad:
            unreadable[name] = {pos for pos, _reason in bad}
        for n, (pos, reason) in enumerate(bad):
            if n == MAX_WARNINGS_PER_COLUMN:
                problems.append(
                    warning(
                        f"{raw.name}!{column_letter(sheet_col)}",
                        f"{len(bad) - n} more cells in this column could not be read",
                    )
                )
                break
            problems.append(
                warning(
                    cell_ref(raw.name, int(rows[pos]), sheet_col),
                    f'"{values[pos]}" {reason}',
                    "treated as empty",
                )
            )
        if type_ is ColumnType.BOOL:  # yes/no typed as words print as typed (SIM, yes), see flag_text
            words = {p: v.strip() for p, v in enumerate(values) if isinstance(v, str) and v.strip()}
            if words:
                typed_text[name] = words
        data[name] = series
        types[name] = type_
    for column in (*spec.columns, *spec.optional):  # contract columns the sheet lacks exist, empty
        if column.name not in data:
            data[column.name] = pd.Series([None] * len(keep), dtype=dtype_of(column.type))
            types[column.name] = column.type
    df = pd.DataFrame(data)
    last_col = max([col0 + len(r) - 1 for r in raw.rows] + [0])
    return Table(
        spec,
        raw.name,
        df,
        rows,
        header_row,
        col_index,
        headers,
        types,
        last_row=raw.last_row,
        last_col=last_col,
        locale=locale,
        unreadable=unreadable,
        formulas=formulas,
        consent_at=consent_at,
        typed_text=typed_text,
    ), problems


@dataclass(frozen=True)
class ArchivedLogs:
    """What the log archive in ``.sheetflow/`` knows that the sheets no longer show (:mod:`sheetflow.tables.archive`):
    email keys ever archived (never planned again) and addresses of archived failed/bounced emails
    (lower case -> why, for the ``skipped`` detail)."""

    email_keys: frozenset[str] = frozenset()
    blocked: dict[str, str] = field(default_factory=dict)


def _consent_column(values: list[object]) -> tuple[pd.Series, list[int]]:
    """A consent column as booleans (fails closed, see coerce.parse_consent) and the unclear positions."""
    flags: list[bool | None] = []
    unclear: list[int] = []
    for i, v in enumerate(values):
        flag, doubtful = parse_consent(v)
        flags.append(flag)
        if doubtful:
            unclear.append(i)
    return pd.Series(flags, dtype="boolean"), unclear


_CONSENT_PT = {
    "unsubscribed": "Descadastrado",
    "do_not_contact": "Não contatar",
    "bounced": "E-mail devolvido",
}


def _consent_notes(
    sheet: str,
    rows: np.ndarray,
    sheet_col: int,
    column: str,
    values: list[object],
    unclear: list[int],
    body: list[list[object]],
    keep: list[int],
    col_index: dict[str, int],
    col0: int,
    pt: bool = False,
) -> list[Problem]:
    """One note per consent cell whose value is not a clear yes/no (at most MAX_WARNINGS_PER_COLUMN), in
    Portuguese for a pt-BR workbook (``pt``)."""
    email_col = col_index.get("email")
    out: list[Problem] = []
    for n, pos in enumerate(unclear):
        if n == MAX_WARNINGS_PER_COLUMN:
            more = len(unclear) - n
            out.append(
                note(
                    f"{sheet}!{column_letter(sheet_col)}",
                    f"mais {more} células de {_CONSENT_PT[column]} não são um sim ou não claro; esses "
                    "contatos também não recebem e-mails"
                    if pt
                    else f"{more} more {column} cells are not a clear yes or no; "
                    "those contacts are not emailed either",
                )
            )
            break
        address = ""
        if email_col is not None:
            row = body[keep[pos]]
            j = email_col - col0
            address = str(row[j]).strip() if j < len(row) and row[j] not in (None, "") else ""
        value = as_text(values[pos])
        if pt:
            text = (
                f'{_CONSENT_PT[column]} é "{value}", não um sim ou não claro: tratado como não contatar'
                + (f" — nenhum e-mail vai para {address}" if address else "")
            )
            hint = "escreva NÃO (ou FALSO) para permitir e-mails, SIM para impedi-los"
        else:
            text = f'{column} is "{value}", not a clear yes or no: treated as do not contact' + (
                f" — no email goes to {address}" if address else ""
            )
            hint = "write FALSE (or NÃO) to allow emails, TRUE to stop them"
        out.append(note(cell_ref(sheet, int(rows[pos]), sheet_col), text, hint))
    return out


@dataclass
class Tables:
    """Every contract sheet of a workbook, typed (missing sheets are empty tables with exists=False)."""

    by_name: dict[str, Table]
    locale: Locale
    other_sheets: list[str] = field(default_factory=list)
    archived: ArchivedLogs = field(default_factory=ArchivedLogs)

    def __getitem__(self, name: str) -> Table:
        return self.by_name[name]

    def get(self, name: str) -> Table | None:
        return self.by_name.get(name)

    def __iter__(self):
        return iter(self.by_name.values())

    @property
    def language(self) -> str:
        """ "pt-BR" when the workbook is Portuguese (locale, or sheets named in Portuguese), else "en"."""
        if self.locale.portuguese:
            return "pt-BR"
        present = [t for t in self.by_name.values() if t.exists and t.spec.pt]
        pt = sum(normalize(t.sheet) == normalize(t.spec.pt) for t in present)
        en = sum(normalize(t.sheet) == normalize(t.spec.name) for t in present)
        return "pt-BR" if pt > en else "en"


def match_sheets(names: Iterable[str]) -> tuple[dict[str, str], list[Problem]]:
    """canonical sheet -> actual sheet name; two sheets meaning the same thing is a problem."""
    found: dict[str, str] = {}
    problems: list[Problem] = []
    for name in names:
        spec = contract.sheet_spec(name)
        if spec is None:
            continue
        if spec.name in found:
            problems.append(
                error(
                    name,
                    f'sheet "{name}" and sheet "{found[spec.name]}" both mean {spec.name}',
                    f'rename or delete one; sheetflow uses "{found[spec.name]}"',
                )
            )
            continue
        found[spec.name] = name
    return found, problems


def load_tables(
    raws: dict[str, RawSheet], locale_of: Callable[[Table | None], Locale]
) -> tuple[Tables, list[Problem]]:
    """Type every contract sheet. Settings are loaded first because they decide the locale."""
    found, problems = match_sheets(raws)
    tables: dict[str, Table] = {}
    settings_raw = raws.get(found.get("Settings", ""))
    settings = None
    if settings_raw is not None:
        settings, p = load_table(settings_raw, contract.BY_NAME["Settings"], Locale())
        problems += p
    locale = locale_of(settings)
    for spec in contract.SHEETS:
        if spec.name == "Settings" and settings is not None:
            tables[spec.name] = settings
            continue
        actual = found.get(spec.name)
        if actual is None:
            tables[spec.name] = empty_table(spec)
            tables[spec.name].locale = locale
            continue
        table, p = load_table(raws[actual], spec, locale)
        tables[spec.name] = table
        problems += p
    others = [n for n in raws if contract.sheet_spec(n) is None]
    return Tables(tables, locale, others), problems

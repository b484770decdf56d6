"""Reading: names, aliases (en + pt-BR), typed columns, locale dates/decimals, cell references."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from sheetflow import contract
from sheetflow.book.xlsx import XlsxBook
from sheetflow.coerce import Locale, Unreadable, as_text, parse_bool, parse_date, parse_number
from sheetflow.commands.run import load
from sheetflow.names import cell_ref, column_letter, normalize, suggest


def test_normalize_treats_case_spaces_hyphens_and_accents_alike():
    assert normalize("  First-Name ") == "first_name"
    assert normalize("first name") == normalize("FIRST_NAME") == "first_name"
    assert normalize("Pontuação") == "pontuacao"
    assert normalize("E-mail") == "e_mail"


def test_suggest_and_cell_refs():
    assert suggest("titel", ["title", "company", "email"]) == "title"
    assert suggest("zzzz", ["title", "company"]) is None
    assert column_letter(1) == "A" and column_letter(26) == "Z" and column_letter(27) == "AA"
    assert column_letter(703) == "AAA"
    assert cell_ref("Scoring", 4, 2) == "Scoring!B4"
    assert cell_ref("Start here", 1, 1) == "'Start here'!A1"


@pytest.mark.parametrize(
    "name,canonical",
    [
        ("Contacts", "Contacts"),
        ("contatos", "Contacts"),
        ("Leads", "Contacts"),
        ("Negócios", "Deals"),
        ("negocios", "Deals"),
        ("Chamados", "Tickets"),
        ("Pontuação", "Scoring"),
        ("pontuacao", "Scoring"),
        ("Atribuição", "Assignment"),
        ("Automações", "Automations"),
        ("Configurações", "Settings"),
        ("Modelos", "Templates"),
        ("Atividade", "Activity"),
        ("Execuções", "Runs"),
        ("E-mails", "Emails"),
        ("Vendedores", "Reps"),
        ("Etapas", "Stages"),
        ("Tarefas", "Tasks"),
        ("Sequências", "Sequences"),
    ],
)
def test_sheet_aliases(name, canonical):
    assert contract.sheet_spec(name).name == canonical


def test_unknown_sheet_is_not_a_contract_sheet():
    assert contract.sheet_spec("My notes") is None


@pytest.mark.parametrize(
    "header,column",
    [
        ("E-mail", "email"),
        ("Nome", "first_name"),
        ("Sobrenome", "last_name"),
        ("Cargo", "title"),
        ("Tamanho da empresa", "company_size"),
        ("País", "country"),
        ("pais", "country"),
        ("Pontuação", "score"),
        ("Responsável", "owner"),
        ("First Name", "first_name"),
        ("company size", "company_size"),
    ],
)
def test_contact_column_aliases(header, column):
    assert contract.BY_NAME["Contacts"].column(header).name == column


def test_column_alias_is_per_sheet():
    assert contract.BY_NAME["Reps"].column("Nome").name == "name"
    assert contract.BY_NAME["Contacts"].column("Nome").name == "first_name"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("TRUE", True),
        ("false", False),
        ("SIM", True),
        ("Não", False),
        ("nao", False),
        ("x", True),
        ("yes", True),
        ("0", False),
        (1.0, True),
        ("", None),
        (None, None),
        (True, True),
    ],
)
def test_parse_bool(text, expected):
    assert parse_bool(text) is expected


def test_parse_bool_rejects_other_words():
    with pytest.raises(Unreadable):
        parse_bool("talvez")


@pytest.mark.parametrize(
    "text,locale,expected",
    [
        ("1.234,56", "pt-BR", 1234.56),
        ("2,5", "pt-BR", 2.5),
        ("1.200", "pt-BR", 1200.0),
        ("1,234.56", "en-US", 1234.56),
        ("2,500", "en-US", 2500.0),
        ("2.5", "en-US", 2.5),
        ("R$ 2.500,00", "pt-BR", 2500.0),
        ("$1,200", "en-US", 1200.0),
        ("(15)", "en-US", -15.0),
        ("-3", "en-US", -3.0),
        (42, "en-US", 42.0),
        ("", "en-US", None),
        ("2,5", "en-US", 2.5),
    ],
)
def test_parse_number(text, locale, expected):
    assert parse_number(text, Locale(locale)) == expected


def test_parse_number_rejects_words():
    with pytest.raises(Unreadable):
        parse_number("abc")


@pytest.mark.parametrize(
    "text,locale,expected",
    [
        ("2026-03-01", "en-US", dt.datetime(2026, 3, 1)),
        ("2026-03-01 14:30", "en-US", dt.datetime(2026, 3, 1, 14, 30)),
        ("01/03/2026", "pt-BR", dt.datetime(2026, 3, 1)),
        ("01/03/2026", "en-US", dt.datetime(2026, 1, 3)),
        ("31/01/2026", "en-US", dt.datetime(2026, 1, 31)),  # unambiguous the other way
        ("01.03.26", "pt-BR", dt.datetime(2026, 3, 1)),
        (dt.date(2026, 3, 1), "en-US", dt.datetime(2026, 3, 1)),
        (46082.0, "en-US", dt.datetime(2026, 3, 1)),  # an Excel serial without a date format
    ],
)
def test_parse_date(text, locale, expected):
    assert parse_date(text, Locale(locale)) == expected


@pytest.mark.parametrize("bad", ["31/02/2026", "soon", "2026-13-01"])
def test_parse_date_rejects(bad):
    with pytest.raises(Unreadable):
        parse_date(bad, Locale("pt-BR"))


def test_as_text_prints_whole_numbers_without_decimal():
    assert as_text(12345.0) == "12345"
    assert as_text(2.5) == "2.5"
    assert as_text(dt.datetime(2026, 3, 1)) == "2026-03-01"
    assert as_text("   ") is None


def test_load_typed_tables_from_a_real_file(book):
    path = book(
        {
            "Configurações": [["Chave", "Valor"], ["locale", "pt-BR"], ["limite_mql", "30"]],
            "Contatos": [
                [None],
                ["Nome", "E-mail", "Tamanho da empresa", "Criado em", "Descadastrado", "Minha coluna"],
                ["Ana", "ana@x.com.br", "1.200", "01/03/2026", "SIM", 3],
                [None, None, None, None, None, None],
                ["Bob", "bob@y.com", 50, dt.datetime(2026, 1, 2), "não", 4],
                ["Caio", "caio@z", "abc", "31/02/2026", "talvez", 5],
            ],
            "My notes": [["anything"]],
        }
    )
    b = XlsxBook(path)
    loaded = load(b.read())
    contacts = loaded.tables["Contacts"]
    assert contacts.sheet == "Contatos"
    assert contacts.header_row == 2
    assert contacts.rows.tolist() == [3, 5, 6]  # the empty row is skipped, rows keep their sheet numbers
    df = contacts.df
    assert df["company_size"].tolist()[:2] == [1200.0, 50.0] and pd.isna(df["company_size"][2])
    assert df["created_at"][0] == pd.Timestamp("2026-03-01")
    assert df["unsubscribed"].tolist()[:2] == [True, False]
    assert df["minha_coluna"].tolist() == [3.0, 4.0, 5.0]  # a user column, typed by inference
    assert contacts.types["minha_coluna"].value == "number"
    assert contacts.ref(2, "company_size") == "Contatos!C6"
    where = {p.where for p in loaded.problems}
    assert {"Contatos!C6", "Contatos!D6", "Contatos!E6"} <= where
    assert loaded.settings.locale.portuguese
    assert loaded.settings.number("mql_threshold") == 30
    assert loaded.tables.language == "pt-BR"
    assert "My notes" in loaded.tables.other_sheets
    assert not loaded.tables["Deals"].exists


def test_two_sheets_meaning_the_same_thing_is_an_error(book):
    path = book({"Contacts": [["id"]], "Contatos": [["id"]]})
    loaded = load(XlsxBook(path).read())
    assert any("both mean Contacts" in p.message for p in loaded.problems)


def test_duplicate_header_is_reported(book):
    path = book({"Contacts": [["email", "E-mail"], ["a@x.com", "b@x.com"]]})
    loaded = load(XlsxBook(path).read())
    assert any(p.where == "Contacts!B1" and "twice" in p.message for p in loaded.problems)
    assert loaded.tables["Contacts"].df["email"].tolist() == ["a@x.com"]

"""Dates, numbers, time spans and rules on real workbooks: time zones of text timestamps, one weekly-hours
syntax (send_window and business_hours), elapsed SLA hours across DST, holidays closing the send window,
the workbook's locale in rule literals, user columns typed from their values, linear-time regexes, and
values outside what the machine can hold reported at their cell (issues 9.4, 9.8, 9.9, 20.2, 20.3)."""

from __future__ import annotations

import datetime as dt
import hashlib
import time

import pandas as pd
import pytest

from sheetflow.cli.main import main
from sheetflow.coerce import Locale, Unreadable, infer_type, parse_date
from sheetflow.coltypes import ColumnType
from sheetflow.commands.run import check, run
from sheetflow.engine.sla import Schedule
from sheetflow.rules.expr import Frame, Schema, WhenError, compile_when
from sheetflow.rules.window import parse_window
from tests.conftest import read_sheet as sheet

AUTOMATIONS_HEADER = ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"]


def tasks(path, name: str = "Tasks") -> list[list[object]]:
    try:
        return sheet(path, name)[1:]
    except Exception:  # noqa: BLE001 - no Tasks sheet yet
        return []


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def messages(problems) -> list[str]:
    return [str(p) for p in problems]


# ---------------------------------------------------------------- 9.4 timestamps keep their time zone


def _birthday_book(book, zone: str, birthday: object):
    return book(
        {
            "Settings": [["key", "value"], ["timezone", zone]],
            "Contacts": [["id", "first_name", "email", "birthday"], ["C-1", "Ana", "ana@acme.com", birthday]],
            "Automations": [
                AUTOMATIONS_HEADER,
                [
                    "Birthday",
                    "Contacts",
                    "date:birthday+0d",
                    "",
                    "create_task",
                    "text=Call {{ first_name }}",
                    None,
                    True,
                ],
            ],
        }
    )


def test_utc_text_timestamp_fires_on_the_local_day(book):
    """2026-05-15T02:00:00Z is 2026-05-14 19:00 in Los Angeles: the date trigger fires on 05-14."""
    path = _birthday_book(book, "America/Los_Angeles", "2026-05-15T02:00:00Z")
    run(path, now=dt.datetime(2026, 5, 13, 10, 0))
    assert tasks(path) == []
    result = run(path, now=dt.datetime(2026, 5, 14, 10, 0))
    assert not result.plan.errors
    assert [t[6] for t in tasks(path)] == ["Birthday"]


@pytest.mark.parametrize(
    "zone,text,local_day",
    [
        ("America/Los_Angeles", "2026-05-15T02:00:00-07:00", dt.date(2026, 5, 15)),  # already local
        ("America/Sao_Paulo", "2026-05-15T01:00:00+00:00", dt.date(2026, 5, 14)),
        ("Asia/Tokyo", "2026-05-14 20:00Z", dt.date(2026, 5, 15)),
        ("UTC", "2026-05-15T23:30:00+05:30", dt.date(2026, 5, 15)),
        ("America/Los_Angeles", "2026-05-15 02:00", dt.date(2026, 5, 15)),  # no offset: workbook time
    ],
)
def test_offsets_are_converted_to_the_workbook_zone(book, zone, text, local_day):
    path = _birthday_book(book, zone, text)
    run(path, now=dt.datetime.combine(local_day - dt.timedelta(days=1), dt.time(10)))
    assert tasks(path) == []
    run(path, now=dt.datetime.combine(local_day, dt.time(10)))
    assert len(tasks(path)) == 1


def test_parse_date_converts_offsets_and_keeps_local_text():
    la = Locale("en-US", "America/Los_Angeles")
    assert parse_date("2026-05-15T02:00:00Z", la) == dt.datetime(2026, 5, 14, 19, 0)
    assert parse_date("2026-05-15T02:00:00.250+0100", la) == dt.datetime(2026, 5, 14, 18, 0, 0, 250000)
    assert parse_date("2026-01-15T12:00:00Z", la) == dt.datetime(2026, 1, 15, 4, 0)  # PST in winter
    assert parse_date("2026-05-15T02:00:00", la) == dt.datetime(2026, 5, 15, 2, 0)
    aware = dt.datetime(2026, 5, 15, 2, 0, tzinfo=dt.timezone.utc)
    assert parse_date(aware, la) == dt.datetime(2026, 5, 14, 19, 0)
    with pytest.raises(Unreadable):
        parse_date("2026-05-15T02:00:00+25:00", la)


def test_ticket_opened_at_in_utc_text_gets_its_sla_from_local_time(book):
    path = book(
        {
            "Settings": [
                ["key", "value"],
                ["timezone", "America/New_York"],
                ["business_hours", "Mon-Fri 09:00-17:00"],
                ["sla_hours_urgent", 2],
            ],
            "Tickets": [
                ["id", "subject", "severity", "status", "opened_at", "due_at"],
                ["T-1", "Down", "urgent", "open", "2026-03-02T14:00:00Z", None],  # 09:00 EST
            ],
        }
    )
    run(path, now=dt.datetime(2026, 3, 2, 9, 30))
    assert sheet(path, "Tickets")[1][5] == dt.datetime(2026, 3, 2, 11, 0)


def test_text_timestamps_in_the_emails_sheet_count_for_the_local_day():
    from sheetflow.coerce import convert_column

    series, bad = convert_column(
        ["2026-05-15T02:00:00Z", "", dt.datetime(2026, 5, 14, 8, 0)],
        ColumnType.DATE,
        Locale("en-US", "America/Los_Angeles"),
    )
    assert not bad
    assert [d.date() if d == d else None for d in series] == [
        dt.date(2026, 5, 14),
        None,
        dt.date(2026, 5, 14),
    ]


# ---------------------------------------------------------------- 9.8 one span syntax, DST, holidays


@pytest.mark.parametrize(
    "text,inside,outside",
    [
        ("Mon-Sun 00:00-24:00", [dt.datetime(2026, 11, 29, 23, 59), dt.datetime(2026, 11, 23, 0, 0)], []),
        (
            "Mon-Fri 09:00-12:00 14:00-18:00",
            [dt.datetime(2026, 11, 23, 9, 0), dt.datetime(2026, 11, 23, 17, 59)],
            [dt.datetime(2026, 11, 23, 13, 0), dt.datetime(2026, 11, 28, 10, 0)],
        ),
        (
            "Seg-Sex 08:00-17:00; Sáb 09:00-12:00",
            [dt.datetime(2026, 11, 28, 11, 0), dt.datetime(2026, 11, 27, 16, 0)],
            [dt.datetime(2026, 11, 28, 13, 0), dt.datetime(2026, 11, 29, 10, 0)],
        ),
        (
            "Segunda-feira a Sexta-feira 9h-18h",
            [dt.datetime(2026, 11, 23, 9, 0)],
            [dt.datetime(2026, 11, 29, 9, 0)],
        ),
        ("Seg, Qua, Sex 10h-12h", [dt.datetime(2026, 11, 25, 11, 0)], [dt.datetime(2026, 11, 24, 11, 0)]),
        ("Mon 22:00-06:00", [dt.datetime(2026, 11, 24, 5, 59)], [dt.datetime(2026, 11, 24, 6, 0)]),
        ("Domingo 00:00-24:00", [dt.datetime(2026, 11, 29, 12, 0)], [dt.datetime(2026, 11, 28, 12, 0)]),
    ],
)
def test_one_span_syntax(text, inside, outside):
    hours = parse_window(text)
    assert Schedule.parse(text, set()) == hours  # business_hours and send_window: the same parser
    assert all(hours.contains(t) for t in inside)
    assert not any(hours.contains(t) for t in outside)


@pytest.mark.parametrize(
    "bad", ["Mon-Fri", "Mon 24:30-25:00", "Mon 9:60-10:00", "Funday 09:00-10:00", "Mon 10:00-10:00"]
)
def test_bad_spans_are_rejected_by_both_settings(bad):
    with pytest.raises(ValueError):
        parse_window(bad)
    with pytest.raises(ValueError):
        Schedule.parse(bad, set())


def _sla_book(book, zone: str, hours: str, opened: dt.datetime, holidays=()):
    sheets = {
        "Settings": [
            ["key", "value"],
            ["timezone", zone],
            ["business_hours", hours],
            ["sla_hours_urgent", 24],
            ["sla_hours_normal", 3],
        ],
        "Tickets": [
            ["id", "subject", "severity", "status", "opened_at", "due_at"],
            ["T-1", "Down", "urgent", "open", opened, None],
            ["T-2", "Question", "normal", "open", opened, None],
        ],
    }
    if holidays:
        sheets["Holidays"] = [["date", "name"], *[[d, "Holiday"] for d in holidays]]
    return book(sheets)


def test_round_the_clock_business_hours_give_every_ticket_a_due_at(book):
    path = _sla_book(book, "UTC", "Mon-Sun 00:00-24:00", dt.datetime(2026, 3, 7, 12, 0))
    result = run(path, now=dt.datetime(2026, 3, 7, 12, 30))
    assert not [p for p in result.plan.errors if "business_hours" in p.message]
    due = {r[0]: r[5] for r in sheet(path, "Tickets")[1:]}
    assert due == {"T-1": dt.datetime(2026, 3, 8, 12, 0), "T-2": dt.datetime(2026, 3, 7, 15, 0)}


def test_split_business_hours_count_only_open_time(book):
    path = _sla_book(book, "UTC", "Mon-Fri 09:00-12:00 14:00-18:00", dt.datetime(2026, 3, 2, 11, 0))
    run(path, now=dt.datetime(2026, 3, 2, 11, 30))
    due = {r[0]: r[5] for r in sheet(path, "Tickets")[1:]}
    assert due["T-2"] == dt.datetime(2026, 3, 2, 16, 0)  # 1 h before lunch, 2 h after


@pytest.mark.parametrize(
    "opened,expected",
    [
        # clocks go forward on Sun 2026-03-08 at 02:00: 24 elapsed hours end at 13:00 wall-clock
        (dt.datetime(2026, 3, 7, 12, 0), dt.datetime(2026, 3, 8, 13, 0)),
        # clocks go back on Sun 2026-11-01 at 02:00: 24 elapsed hours end at 11:00 wall-clock
        (dt.datetime(2026, 10, 31, 12, 0), dt.datetime(2026, 11, 1, 11, 0)),
        # no change in between: 24 hours are 24 wall-clock hours
        (dt.datetime(2026, 3, 9, 12, 0), dt.datetime(2026, 3, 10, 12, 0)),
    ],
)
def test_sla_hours_across_dst_are_elapsed_hours(book, opened, expected):
    path = _sla_book(book, "America/New_York", "Mon-Sun 00:00-24:00", opened)
    run(path, now=opened + dt.timedelta(minutes=5))
    assert sheet(path, "Tickets")[1][5] == expected


def test_business_hours_span_containing_a_dst_change_holds_one_hour_less():
    zone = __import__("zoneinfo").ZoneInfo("America/New_York")
    hours = parse_window("Sun 00:00-06:00")
    # Sun 2026-03-08 00:00-06:00 lasts 5 real hours; 5.5 hours end in the next Sunday's span
    assert hours.add(dt.datetime(2026, 3, 8, 0, 0), 5, zone) == dt.datetime(2026, 3, 8, 6, 0)
    assert hours.add(dt.datetime(2026, 3, 8, 0, 0), 5.5, zone) == dt.datetime(2026, 3, 15, 0, 30)
    assert hours.add(dt.datetime(2026, 3, 8, 0, 0), 5.5) == dt.datetime(2026, 3, 8, 5, 30)  # no zone


def test_holidays_close_the_send_window(book):
    settings = [
        ["key", "value"],
        ["sender_email", "crm@acme.com"],
        ["send_window", "Mon-Fri 09:00-18:00"],
    ]
    sheets = {
        "Settings": settings,
        "Contacts": [["id", "first_name", "email"], ["C-1", "Ana", "ana@acme.com"]],
        "Templates": [["name", "subject", "body"], ["welcome", "Hi {{ first_name }}", "Hello"]],
        "Automations": [
            AUTOMATIONS_HEADER,
            ["Welcome", "Contacts", "every_run", "", "send_email", "template=welcome", None, True],
        ],
        "Holidays": [["date", "name"], [dt.date(2026, 11, 20), "Consciência Negra"]],
    }
    path = book(sheets)
    holiday = run(path, now=dt.datetime(2026, 11, 20, 10, 0), dry_run=True).plan  # a Friday, 10:00
    assert holiday.emails and not holiday.emails[0].due
    assert "holiday" in holiday.emails[0].detail
    workday = run(path, now=dt.datetime(2026, 11, 19, 10, 0), dry_run=True).plan
    assert workday.emails and workday.emails[0].due


def test_holidays_hold_round_the_clock_windows_too():
    hours = parse_window("always").with_holidays({dt.date(2026, 12, 25)})
    assert not hours.contains(dt.datetime(2026, 12, 25, 12, 0))
    assert hours.contains(dt.datetime(2026, 12, 26, 12, 0))


def test_bad_business_hours_is_an_error_at_its_cell(book):
    path = _sla_book(book, "UTC", "Mon-Fri 9:00-25:00", dt.datetime(2026, 3, 2, 11, 0))
    problems = messages(check(path, now=dt.datetime(2026, 3, 2, 12, 0)))
    assert any(p.startswith("Settings!B3: business_hours:") and "25:00" in p for p in problems), problems


# ---------------------------------------------------------------- 9.9 locale of rule literals, user columns


def _pt_book(book, contacts, scoring):
    return book(
        {
            "Configurações": [
                ["chave", "valor"],
                ["locale", "pt-BR"],
                ["limite_mql", 1000],
                ["limite_sql", 2000],
            ],
            "Pontuação": [["regra", "quando", "pontos"], *scoring],
            "Contatos": contacts,
        }
    )


def _scores(path, sheet_name="Contatos") -> dict[str, object]:
    rows = sheet(path, sheet_name)
    header = [str(h).strip().lower() for h in rows[0]]
    col = header.index("pontuação")
    return {r[0]: r[col] for r in rows[1:]}


def test_thousands_dot_in_a_portuguese_rule(book):
    path = _pt_book(
        book,
        [["id", "Tamanho da empresa"], ["C-1", 2], ["C-2", 1500]],
        [["Grande", "tamanho_da_empresa >= 1.000", 10]],
    )
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert not result.plan.errors, messages(result.plan.errors)
    assert _scores(path) == {"C-1": 0, "C-2": 10}


def test_portuguese_date_literal_in_a_rule(book):
    path = _pt_book(
        book,
        [
            ["id", "Criado em"],
            ["C-1", dt.datetime(2026, 1, 31)],
            ["C-2", dt.datetime(2026, 2, 1)],
            ["C-3", "15/01/2026"],
        ],
        [["Antigo", 'criado_em < "01/02/2026"', 10], ["Dia", 'criado_em = "01/02/2026"', 1]],
    )
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert not result.plan.errors, messages(result.plan.errors)
    assert _scores(path) == {"C-1": 10, "C-2": 1, "C-3": 10}


def test_user_columns_are_typed_from_their_values(book):
    path = _pt_book(
        book,
        [
            ["id", "Faturamento", "Cliente VIP", "CEP", "Telefone extra"],
            ["C-1", "1.234,56", "SIM", "01310-100", "+55 11 99999-0000"],
            ["C-2", "999,99", "NÃO", "04567-000", "011 5555-1234"],
            ["C-3", 5000, "", "20040-002", ""],
        ],
        [
            ["Fatura", "faturamento > 1000", 10],
            ["VIP", "[Cliente VIP]", 100],
            ["SP", 'cep starts with "0"', 1000],
        ],
    )
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert not result.plan.errors, messages(result.plan.errors)
    assert _scores(path) == {"C-1": 1110, "C-2": 1000, "C-3": 10}
    assert sheet(path, "Contatos")[1][3] == "01310-100"  # untouched


@pytest.mark.parametrize(
    "values,expected",
    [
        (["1.234,56", "999,99", 12.0], ColumnType.NUMBER),
        (["R$ 2.500", "R$ 100,50"], ColumnType.NUMBER),
        (["SIM", "NÃO", ""], ColumnType.BOOL),
        (["yes", "no"], ColumnType.BOOL),
        (["S", "N"], ColumnType.BOOL),
        (["00123", "00456"], ColumnType.TEXT),  # ids with leading zeros
        (["00123", "456"], ColumnType.TEXT),
        (["01310-100", "20040-002"], ColumnType.TEXT),  # zip codes
        (["+5511999990000", "+5521988880000"], ColumnType.TEXT),  # phones
        (["(11) 99999-0000"], ColumnType.TEXT),
        (["12345", "67890"], ColumnType.TEXT),  # codes typed as text
        (["12345678901234567890", 1.0], ColumnType.TEXT),  # more digits than a float holds
        (["F", "F"], ColumnType.TEXT),  # one letter alone is not yes/no
        (["on", "off"], ColumnType.TEXT),
        ([1.0, 0.0], ColumnType.NUMBER),
        ([float(n) for n in range(1500)] + ["00123"], ColumnType.TEXT),  # an id past the sample
        (["1.234,56"] * 1500 + ["n/a"], ColumnType.NUMBER),  # a stray word past the sample: cell warning
        (["2026-05-15T02:00:00Z", "2026-05-16"], ColumnType.DATE),
        (["2300-01-01", "2026-05-16"], ColumnType.DATE),  # the bad cell is reported, the column is dates
    ],
)
def test_infer_type(values, expected):
    assert infer_type(values, Locale("pt-BR")) == expected


def test_rule_literals_follow_the_locale_in_english_too():
    schema = Schema({"n": ColumnType.NUMBER, "d": ColumnType.DATE}, locale=Locale("en-US"))
    df = pd.DataFrame(
        {"n": [1.0, 1000.0, 1234.5], "d": pd.to_datetime(["2026-01-02", "2026-02-01", "2026-03-01"])}
    )
    frame = Frame(df, dt.date(2026, 3, 2))

    def hits(source):
        return compile_when(source, schema).mask(frame).tolist()

    assert hits('n >= "1,000"') == [False, True, True]
    assert hits("n >= 1.000") == [True, True, True]  # en-US: a decimal point
    assert hits('d = "01/02/2026"') == [True, False, False]  # mm/dd/yyyy
    pt = Schema(schema.types, locale=Locale("pt-BR"))
    assert compile_when('d = "01/02/2026"', pt).mask(frame).tolist() == [False, True, False]
    assert compile_when('n > "1.234,4"', pt).mask(frame).tolist() == [False, False, True]
    with pytest.raises(WhenError, match="31/12/2026"):
        compile_when('d < "32/01/2026"', pt)


# ---------------------------------------------------------------- 20.2 regexes cannot hang a run

CATASTROPHIC = [
    "(a+)+$",
    "(a*)*$",
    "(a|a)*$",
    "(a|aa)+$",
    "(.*a){20}",
    "(a?){25}a{25}",
    "^(a+)+b",
    "(x+x+)+y",
    "(\\w+\\s?)*$",
    "^(([a-z])+.)+[A-Z]([a-z])+$",
    "(.*){1,32000}[bc]",
    "(a|b|ab)*c",
    "^(a|a?)+$",
    "(\\d+)*\\D",
    "((a+)+)+b",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_are_fast(pattern):
    schema = Schema({"title": ColumnType.TEXT})
    texts = ["a" * 30 + "!", "a" * 5000 + "!", "x" * 3000, "ab" * 2000]
    df = pd.DataFrame({"title": pd.Series(texts * 50, dtype="str")})
    try:
        rule = compile_when(f'title matches "{pattern}"', schema)
    except WhenError as e:  # RE2 may refuse a pattern it cannot hold: a message, not a hang
        assert "regular expression" in str(e)
        return
    started = time.monotonic()
    rule.mask(Frame(df, dt.date(2026, 1, 1)))
    assert time.monotonic() - started < 5  # a generous bound: backtracking would take hours


@pytest.mark.parametrize(
    "pattern,reason",
    [
        ("(a)\\\\1", "refers back"),
        ("(?P<x>a)(?P=x)", "refers back"),
        ("foo(?=bar)", "looks ahead"),
        ("(?<!x)y", "looks ahead or behind"),
        ("(?>a+)b", "atomic"),
        ("((a{100}){100}){100}", "regular expression"),
        ("(", "regular expression"),
    ],
)
def test_regexes_re2_cannot_run_are_clear_errors(pattern, reason):
    with pytest.raises(WhenError, match=reason):
        compile_when(f'title matches "{pattern}"', Schema({"title": ColumnType.TEXT}))


def test_regex_keeps_working_as_documented():
    schema = Schema({"title": ColumnType.TEXT})
    df = pd.DataFrame({"title": pd.Series(["VP Sales", "Director", "Ação 42", None], dtype="str")})
    frame = Frame(df, dt.date(2026, 1, 1))
    assert compile_when('title matches "^vp"', schema).mask(frame).tolist() == [True, False, False, False]
    assert compile_when('title matches "\\d+"', schema).mask(frame).tolist() == [False, False, True, False]
    assert compile_when('title matches "AÇÃO"', schema).mask(frame).tolist() == [False, False, True, False]
    assert compile_when('title not matches "^vp"', schema).mask(frame).tolist() == [False, True, True, True]


def test_a_catastrophic_regex_in_scoring_runs_in_check_and_run(book, capsys):
    path = book(
        {
            "Settings": [["key", "value"], ["timezone", "UTC"]],
            "Scoring": [
                ["rule", "when", "points"],
                ["Evil", 'title matches "(a+)+$"', 5],
                ["Back", 'title matches "(a)\\1"', 1],
            ],
            "Contacts": [["id", "title"], ["C-1", "a" * 30 + "!"], ["C-2", "aaaa"]],
        }
    )
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "Scoring!B3" in out and "refers back" in out
    run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    rows = sheet(path, "Contacts")
    assert {r[0]: r[-1] for r in rows[1:]} == {"C-1": 0, "C-2": 5}


# ---------------------------------------------------------------- 20.3 values outside what the machine holds

FAR = [
    dt.datetime(2300, 1, 1),
    "2300-01-01",
    "9999-12-31T00:00:00Z",
    2958465,
    "01/01/1600",
    dt.datetime(1600, 1, 1),
]


@pytest.mark.parametrize("value", FAR)
@pytest.mark.parametrize(
    "sheet_name,header,row,column",
    [
        ("Contacts", ["id", "email", "created_at"], ["C-1", "a@b.com"], "C"),
        ("Deals", ["id", "name", "expected_close"], ["D-1", "Big"], "C"),
        ("Tickets", ["id", "subject", "opened_at"], ["T-1", "Down"], "C"),
        ("Reps", ["name", "email", "away_until"], ["Ana", "ana@acme.com"], "C"),
        ("Holidays", ["date", "name"], [], "A"),
    ],
)
def test_dates_outside_the_range_are_cell_problems(book, value, sheet_name, header, row, column):
    cells = [*row, value] if row else [value, "Holiday"]
    path = book({"Settings": [["key", "value"], ["timezone", "UTC"]], sheet_name: [header, cells]})
    problems = messages(check(path, now=dt.datetime(2026, 3, 2, 9, 0)))
    where = f"{sheet_name}!{column}2"
    assert any(p.startswith(where) for p in problems), problems
    before = sha(path)
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert any(p.where == where for p in result.plan.problems)
    if sheet_name == "Holidays":
        assert sha(path) == before or sheet(path, "Holidays")[1][0] is not None


@pytest.mark.parametrize("value", ["2300-01-01", "9999-12-31T00:00:00Z", dt.datetime(2300, 1, 1)])
def test_far_dates_in_a_teams_own_date_column_are_cell_problems(book, value):
    path = book(
        {
            "Contacts": [
                ["id", "email", "next_meeting"],
                ["C-1", "a@b.com", dt.datetime(2026, 3, 1)],
                ["C-2", "b@b.com", value],
            ],
            "Scoring": [["rule", "when", "points"], ["Soon", 'next_meeting < "2026-04-01"', 5]],
        }
    )
    problems = messages(check(path, now=dt.datetime(2026, 3, 2, 9, 0)))
    assert any(p.startswith("Contacts!C3") for p in problems), problems
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert not result.plan.errors
    assert [r[-1] for r in sheet(path, "Contacts")[1:]] == [5, 0]


def test_a_managed_date_that_cannot_be_held_is_never_overwritten(book):
    path = book(
        {
            "Settings": [["key", "value"], ["business_hours", "always"], ["sla_hours_normal", 4]],
            "Tickets": [
                ["id", "subject", "severity", "status", "opened_at", "due_at"],
                ["T-1", "Down", "normal", "open", dt.datetime(2026, 3, 2, 9, 0), "2300-01-01"],
                ["T-2", "Slow", "normal", "open", dt.datetime(2026, 3, 2, 9, 0), None],
            ],
        }
    )
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 30))
    rows = sheet(path, "Tickets")
    assert rows[1][5] == "2300-01-01" and rows[2][5] == dt.datetime(2026, 3, 2, 13, 0)
    assert any(p.where == "Tickets!F2" and "left as it is" in p.message for p in result.plan.problems)


@pytest.mark.parametrize(
    "trigger,params,delay,where",
    [
        ("every_run", "text=x", "99999999999d", "Automations!G2"),
        ("every_run", "text=x; due=99999999999d", None, "Automations!F2"),
        ("date:created_at+99999999999d", "text=x", None, "Automations!C2"),
        ("idle:99999999999d", "text=x", None, "Automations!C2"),
    ],
)
def test_huge_delays_are_cell_problems(book, trigger, params, delay, where):
    path = book(
        {
            "Contacts": [["id", "email", "created_at"], ["C-1", "a@b.com", dt.datetime(2026, 1, 1)]],
            "Automations": [
                AUTOMATIONS_HEADER,
                ["Far", "Contacts", trigger, "", "create_task", params, delay, True],
            ],
        }
    )
    problems = messages(check(path, now=dt.datetime(2026, 3, 2, 9, 0)))
    assert any(p.startswith(where) and "years" in p for p in problems), problems
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert any(p.where == where for p in result.plan.errors)


def test_set_far_future_is_a_params_problem(book):
    path = book(
        {
            "Contacts": [["id", "email", "follow_up_on"], ["C-1", "a@b.com", dt.datetime(2026, 1, 1)]],
            "Automations": [
                AUTOMATIONS_HEADER,
                ["Far", "Contacts", "every_run", "", "set", "follow_up_on=today+99999999d", None, True],
            ],
        }
    )
    problems = messages(check(path, now=dt.datetime(2026, 3, 2, 9, 0)))
    assert any(p.startswith("Automations!F2") and "years" in p for p in problems), problems
    run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert str(sheet(path, "Contacts")[1][2])[:10] == "2026-01-01"


@pytest.mark.parametrize(
    "key,value", [("catch_up_days", "1e18"), ("catch_up_days", -3), ("sla_hours_urgent", 1e300)]
)
def test_out_of_range_settings_are_cell_problems(book, key, value):
    path = book(
        {
            "Settings": [["key", "value"], [key, value]],
            "Contacts": [["id", "email", "created_at"], ["C-1", "a@b.com", dt.datetime(2026, 3, 1)]],
            "Tickets": [
                ["id", "severity", "status", "opened_at"],
                ["T-1", "urgent", "open", dt.datetime(2026, 3, 2, 9, 0)],
            ],
            "Automations": [
                AUTOMATIONS_HEADER,
                ["D", "Contacts", "date:created_at+1d", "", "create_task", "text=x", None, True],
            ],
        }
    )
    problems = messages(check(path, now=dt.datetime(2026, 3, 2, 9, 0)))
    assert any(p.startswith("Settings!B2") and "out of range" in p for p in problems), problems
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert any(p.where == "Settings!B2" for p in result.plan.problems)


def test_sequence_delay_out_of_range_is_a_cell_problem(book):
    path = book(
        {
            "Sequences": [["sequence", "step", "delay_days", "template"], ["onboarding", 1, 1e18, "welcome"]],
            "Templates": [["name", "subject", "body"], ["welcome", "Hi", "Hello"]],
            "Contacts": [["id", "email"], ["C-1", "a@b.com"]],
        }
    )
    problems = messages(check(path, now=dt.datetime(2026, 3, 2, 9, 0)))
    assert any(p.startswith("Sequences!C2") and "out of range" in p for p in problems), problems


def test_huge_points_check_and_run_agree(book):
    path = book(
        {
            "Scoring": [["rule", "when", "points"], ["A", "", 1e308], ["B", "", 1e308], ["C", "", 5]],
            "Contacts": [["id", "email"], ["C-1", "a@b.com"]],
        }
    )
    problems = messages(check(path, now=dt.datetime(2026, 3, 2, 9, 0)))
    assert any(p.startswith("Scoring!C2") and "out of range" in p for p in problems), problems
    assert any(p.startswith("Scoring!C3") for p in problems)
    result = run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    assert result.written
    assert sheet(path, "Contacts")[1][-1] == 5


def test_a_folder_named_like_a_workbook_is_a_message(tmp_path, capsys):
    folder = tmp_path / "crm.xlsx"
    folder.mkdir()
    for command in (["check"], ["run"], ["run", "--dry-run"]):
        code = main([*command, str(folder)])
        err = capsys.readouterr()
        assert code == 2
        assert "is a folder" in err.err + err.out and "Traceback" not in err.err + err.out


def test_a_column_whose_type_flips_does_not_look_changed(book):
    """Fixing the one cell that kept a column text makes it a number column; the other records did not
    change, so changed: fires for the fixed record only."""
    from openpyxl import load_workbook

    path = book(
        {
            "Settings": [["key", "value"], ["locale", "pt-BR"]],
            "Contacts": [
                ["id", "email", "Faturamento", "VIP"],
                ["C-1", "a@b.com", "1.234,56", "SIM"],
                ["C-2", "b@b.com", "999,00", "NÃO"],
                ["C-3", "c@b.com", "n/a", "talvez"],
            ],
            "Automations": [
                AUTOMATIONS_HEADER,
                ["Fat", "Contacts", "changed:faturamento", "", "create_task", "text=fat", None, True],
                ["Vip", "Contacts", "changed:vip", "", "create_task", "text=vip", None, True],
            ],
        }
    )
    run(path, now=dt.datetime(2026, 3, 2, 9, 0))
    wb = load_workbook(path)
    wb["Contacts"]["C4"] = "2.000,00"
    wb["Contacts"]["D4"] = "SIM"
    wb.save(path)
    run(path, now=dt.datetime(2026, 3, 3, 9, 0))
    assert sorted((t[4], t[6]) for t in tasks(path, "Tarefas")) == [("C-3", "Fat"), ("C-3", "Vip")]


def test_regex_test_works_with_the_public_binding_api_too():
    import numpy as np
    import re2

    from sheetflow.rules.expr import _regex_options, _regex_test

    compiled = re2.compile("^vp", _regex_options())

    class Public:  # a binding version without the private fast path
        search = staticmethod(compiled.search)

    values = np.array(["vp sales", "svp", "VP"], dtype=object)
    assert _regex_test(compiled)(values).tolist() == [True, False, True]
    assert _regex_test(Public())(values).tolist() == [True, False, True]


def test_an_unreadable_escalated_at_does_not_escalate_on_every_run(book):
    path = book(
        {
            "Settings": [["key", "value"], ["fallback_owner", "Ana"], ["business_hours", "always"]],
            "Tickets": [
                ["id", "subject", "severity", "status", "opened_at", "due_at", "escalated_at"],
                [
                    "T-1",
                    "Down",
                    "urgent",
                    "open",
                    dt.datetime(2026, 3, 1, 9, 0),
                    dt.datetime(2026, 3, 1, 13, 0),
                    "2300-01-01",
                ],
                [
                    "T-2",
                    "Slow",
                    "urgent",
                    "open",
                    dt.datetime(2026, 3, 1, 9, 0),
                    dt.datetime(2026, 3, 1, 13, 0),
                    None,
                ],
            ],
        }
    )
    for day in (2, 3, 4):
        run(path, now=dt.datetime(2026, 3, day, 9, 0))
    assert [t[4] for t in tasks(path) if t[6] == "SLA"] == ["T-2"]
    assert sheet(path, "Tickets")[1][6] == "2300-01-01"


def test_offsets_are_read_as_utc_when_the_timezone_is_unknown():
    assert parse_date("2026-05-15T02:00:00-03:00", Locale("en-US", "Mars/Olympus")) == dt.datetime(
        2026, 5, 15, 5, 0
    )


@pytest.mark.parametrize("when", ["2300-01-01", "0001-01-01T00:00", "9999-12-31T23:00+00:00"])
def test_now_outside_the_dates_a_workbook_holds_is_a_usage_error(book, capsys, when):
    path = _birthday_book(book, "UTC", "2026-05-15")
    for command in (["run", "--dry-run"], ["run"], ["send"]):
        assert main([*command, str(path), "--now", when]) == 2
        out = capsys.readouterr()
        assert "outside the dates sheetflow can work with (1753-01-01 to 2199-12-31)" in out.err + out.out


@pytest.mark.parametrize("zone", ["America", "x" * 400, "../../etc/passwd", "Mars/Olympus"])
def test_an_impossible_timezone_is_a_settings_problem(book, zone):
    path = _birthday_book(book, zone, "2026-05-15T02:00:00Z")
    problems = messages(check(path, now=dt.datetime(2026, 5, 14, 10, 0)))
    assert any(p.startswith("Settings!B2: timezone: unknown time zone") for p in problems), problems
    result = run(path, now=dt.datetime(2026, 5, 15, 10, 0))  # UTC: 02:00Z is 05-15
    assert any(p.where == "Settings!B2" for p in result.plan.problems)
    assert len(tasks(path)) == 1

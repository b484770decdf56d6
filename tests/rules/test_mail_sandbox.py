"""Issue 20.4 / 20.5 / 9.9: one sandbox with hard limits for every template (emails, task and notify
texts); every failure names its cell, holds the template's emails ``planned``, and the run goes on."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from openpyxl import load_workbook

from sheetflow.cli.main import main
from sheetflow.commands.run import check, run
from sheetflow.rules.sandbox import MAX_RENDER_SECONDS, can_isolate
from sheetflow.rules.templates import RenderError, render_text
from tests.conftest import NOW, read_sheet
from tests.engine.test_mail_plan import SETTINGS, emails_log

NESTED_FOR = "{% for i in 'ab' %}" * 21 + "x" + "{% endfor %}" * 21
NESTED_IF = "{% if 1 %}" * 100 + "x" + "{% endif %}" * 100
PARENS = "{{ " + "(" * 100 + "1" + ")" * 100 + " }}"
MEMORY_BOMBS = [
    "{{ range(99999)|join('x'*400000) }}",
    "{{ 'x'|center(99999999999) }}",
    "{% set ns = namespace(s='x') %}{% for i in 'x'*64 %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{{ ('x'*400000)|replace('x', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'*1000) }}",
    "{{ (range(99999)|list)|join(first_name*99999) }}",
]
TIME_BOMBS = [
    "{% for a in 'x'*3000 %}{% for b in 'x'*3000 %}{% for c in 'x'*3000 %}{% endfor %}{% endfor %}{% endfor %}",
    "{{ lipsum(100000) }}",
    "{% for a in range(99999) %}{% for b in 'x'*99999 %}{% endfor %}{% endfor %}",
]
TEMPLATE_ERRORS = [
    ("{{ first_name|capitalise }}", "No filter named 'capitalise'"),
    ("{{ first_name|truncate(-1) }}", "a filter was given a value it cannot use"),
    (PARENS, "nested too deeply"),
    (NESTED_FOR, "nested too deeply"),
    (NESTED_IF, "nested too deeply"),
    ("{{ first_name.format }}", '"format" is a method, not a value'),
    ("{{ first_name.upper }}", '"upper" is a method, not a value'),
    ("{{ range }}", "is a function of the template language, not a value"),
    ("Oops {{ first_name ", "unexpected end of template"),
]


@pytest.mark.parametrize("source, message", TEMPLATE_ERRORS)
def test_template_mistakes_are_errors_not_tracebacks(source, message):
    with pytest.raises(RenderError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        render_text(source, {"first_name": "Ana"})
    assert e.value.kind == "template"


@pytest.mark.slow
@pytest.mark.parametrize("source", MEMORY_BOMBS + TIME_BOMBS)
def test_resource_bombs_are_stopped_by_the_limits(source):
    started = time.monotonic()
    with pytest.raises(RenderError, match="not allowed") as e:
        render_text(source, {"first_name": "Ana"})
    assert e.value.kind == "limit"
    assert time.monotonic() - started < 30  # CPU limit 1 s; wall time depends on the machine's load
    assert render_text("Hi {{ first_name }}", {"first_name": "Ana"}) == "Hi Ana"  # a fresh worker


def test_limits_are_os_limits_on_this_platform():
    assert can_isolate()  # Linux CI: the worker process with RLIMIT_AS / RLIMIT_CPU is what runs
    assert MAX_RENDER_SECONDS <= 2


def welcome_book(book, templates, contacts, **sheets):
    """Welcome (template "hi") and Promo (template "promo") email every new contact."""
    path = book(
        {
            "Settings": SETTINGS,
            "Templates": [["name", "subject", "body"], *templates],
            "Contacts": [["id", "first_name", "email"], ["C-0", "Seed", "seed@acme.com"]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
                ["Welcome", "Contacts", "new", None, "send_email", "template=hi", None, True],
                ["Promo", "Contacts", "new", None, "send_email", "template=promo", None, True],
            ],
            **sheets,
        }
    )
    run(path, now=NOW - dt.timedelta(hours=1))  # the baseline
    wb = load_workbook(path)
    for row in contacts:
        wb["Contacts"].append(row)
    wb.save(path)
    return path


CONTACTS = [["C-1", "Ana", "ana@cliente.com"], ["C-2", "Bia", "bia@cliente.com"]]


@pytest.mark.parametrize(
    "body",
    ["{{ 'x'|center(99999999999) }}", TIME_BOMBS[1], "Oops {{ first_name ", "{{ first_name|capitalise }}"],
)
def test_a_broken_template_holds_its_emails_and_the_run_goes_on(book, body):
    path = welcome_book(book, [["hi", "Hi {{ first_name }}", "Hello"], ["promo", "Promo", body]], CONTACTS)
    started = time.monotonic()
    result = run(path, now=NOW)
    assert time.monotonic() - started < 60
    log = emails_log(path)
    promo = [r for r in log if r["template"] == "promo"]
    assert [r["status"] for r in log if r["template"] == "hi"] == ["sent", "sent"]
    assert [r["status"] for r in promo] == ["planned", "planned"]
    assert all(r["detail"].startswith('held: template error: template "promo" body') for r in promo)
    errors = [p for p in result.plan.errors if p.where == "Templates!C3"]
    assert len(errors) == 1 and "Promo: its emails wait (planned)" in errors[0].message
    # check finds the same problem, at the same cell
    assert any(p.where == "Templates!C3" and p.is_error for p in check(path))
    # the user fixes the template: the held emails go out, once
    wb = load_workbook(path)
    wb["Templates"]["C3"] = "Our promo for {{ first_name }}"
    wb.save(path)
    run(path, now=NOW + dt.timedelta(minutes=10))
    promo = [r for r in emails_log(path) if r["template"] == "promo"]
    assert [r["status"] for r in promo] == ["sent", "sent"]
    files = list((path.parent / "outbox").glob("*.eml"))
    assert len(files) == 4
    assert sum(b"Our promo for Ana" in f.read_bytes() for f in files) == 1
    run(path, now=NOW + dt.timedelta(minutes=20))
    assert len(list((path.parent / "outbox").glob("*.eml"))) == 4


def test_check_and_run_agree_on_digest_only_fields(book):
    path = book(
        {
            "Contacts": [["id", "first_name", "email"]],
            "Templates": [
                ["name", "subject", "body"],
                ["a", "You have {{ count }} things", "x"],
                ["b", "Hi", "{% for i in items %}{{ i.text }}{% endfor %}"],
                ["notification", "{{ count }} updates", "{% for i in items %}{{ i.subject }}{% endfor %}"],
                ["c", "Hi {{ first_name }}", "{{ first_name.format }}"],
                ["d", "Hi", "{{ first_name|capitalise }}"],
                ["e", "Hi", NESTED_IF],
            ],
        }
    )
    problems = [str(p) for p in check(path) if p.is_error]
    text = "\n".join(problems)
    assert 'Templates!B2: template "a" uses unknown field "count"' in text
    assert 'Templates!C3: template "b" uses unknown field "items"' in text
    assert "Templates!B4" not in text and "Templates!C4" not in text  # the digest has count and items
    assert 'Templates!C5: template "c" body cannot be rendered: not allowed: "format" is a method' in text
    assert "Templates!C6: template \"d\" body: No filter named 'capitalise'" in text
    assert 'Templates!C7: template "e" body: is nested too deeply' in text
    assert main(["check", str(path)]) == 1  # no traceback: a clean exit with the messages


# ---------------------------------------------------------------- task and notify texts

PT_SETTINGS = [["chave", "valor"], ["fuso_horario", "America/Sao_Paulo"], ["locale", "pt-BR"]]


def tasks_of(path):
    rows = read_sheet(path, "Tarefas")
    head = rows[0]
    return [dict(zip(head, r)) for r in rows[1:]]


def test_task_texts_show_values_as_the_pt_br_cells_do_and_use_pt_br_names(book):
    path = book(
        {
            "Configurações": PT_SETTINGS,
            "Contatos": [
                ["id", "Nome", "Criado em", "Faturamento"],
                ["C-0", "Seed", dt.datetime(2026, 1, 1), 1],
            ],
            "Automações": [
                ["regra", "tabela", "gatilho", "quando", "ação", "parâmetros", "atraso", "ativa"],
                [
                    "Ligar",
                    "Contatos",
                    "new",
                    None,
                    "create_task",
                    "text=Ligar {{ nome }} (desde {{ criado_em }}), R$ {{ faturamento }}",
                    None,
                    True,
                ],
            ],
        }
    )
    run(path, now=NOW - dt.timedelta(hours=1))
    wb = load_workbook(path)
    wb["Contatos"].append(["C-1", "João", dt.datetime(2026, 3, 5), 34.3])
    wb.save(path)
    result = run(path, now=NOW)
    assert not result.plan.errors, result.plan.errors
    texts = [t for t in (r.get("texto") or r.get("text") for r in tasks_of(path)) if t]
    assert texts == ["Ligar João (desde 05/03/2026), R$ 34,30"]


def test_task_texts_get_the_template_checks_with_did_you_mean(book, capsys):
    path = book(
        {
            "Contacts": [["id", "first_name", "email"]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
                ["A", "Contacts", "new", None, "create_task", "text=Call {{ frist_name }}", None, True],
                ["B", "Contacts", "new", None, "notify", "text={{ 'x'|center(99999999999) }}", None, True],
                ["C", "Contacts", "new", None, "create_task", "text=" + NESTED_FOR, None, True],
                ["D", "Contacts", "new", None, "create_task", "text={{ first_name.format }}", None, True],
                ["E", "Contacts", "new", None, "create_task", "text=Call {{ first_name }}", None, True],
            ],
        }
    )
    started = time.monotonic()
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert time.monotonic() - started < 60
    assert 'Automations!F2: text uses unknown field "frist_name" — did you mean "first_name"?' in out
    assert "Automations!F3: text cannot be rendered: not allowed: the template needs more than 256 MB" in out
    assert "Automations!F4: text: is nested too deeply" in out
    assert 'Automations!F5: text cannot be rendered: not allowed: "format" is a method' in out
    assert "Automations!F6" not in out
    assert "Traceback" not in out


def test_a_task_text_that_fails_for_one_record_names_the_params_cell_and_keeps_the_task(book):
    path = book(
        {
            "Contacts": [["id", "first_name", "notes"], ["C-0", "Seed", "x"]],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
                [
                    "Big",
                    "Contacts",
                    "new",
                    None,
                    "create_task",
                    "text=Call {{ first_name }}{% for a in notes %}{% for b in notes %}{% for c in notes %}"
                    "{% endfor %}{% endfor %}{% endfor %}",
                    None,
                    True,
                ],
            ],
        }
    )
    run(path, now=NOW - dt.timedelta(hours=1))
    wb = load_workbook(path)
    wb["Contacts"].append(["C-1", "Ana", "y" * 5000])  # 125 billion steps for this record
    wb["Contacts"].append(["C-2", "Bia", "short"])
    wb.save(path)
    result = run(path, now=NOW)
    problems = [p for p in result.plan.errors if p.where == "Automations!F2"]
    assert len(problems) == 1 and "took more than" in problems[0].message
    tasks = read_sheet(path, "Tasks")
    assert len(tasks) == 3  # both tasks exist; the text that could not be rendered is kept as written


# ---------------------------------------------------------------- values as the user sees them


def test_pt_br_money_and_dates_in_email_merge_fields(book):
    path = book(
        {
            "Configurações": PT_SETTINGS
            + [["remetente_email", "vendas@acme.com.br"], ["janela_de_envio", "always"]],
            "Contatos": [["id", "Nome", "E-mail"], ["C-1", "João", "joao@cliente.com.br"]],
            "Negócios": [
                ["id", "contato", "Nome", "Etapa", "Valor", "Fechamento"],
                ["D-0", "C-1", "Seed", "Proposta", 1, dt.datetime(2026, 1, 1)],
            ],
            "Modelos": [
                ["nome", "assunto", "corpo"],
                ["prop", "Proposta {{ nome }}", "R$ {{ valor }} até {{ fechamento }}, {{ valor * 2 }}"],
            ],
            "Automações": [
                ["regra", "tabela", "gatilho", "quando", "ação", "parâmetros", "atraso", "ativa"],
                ["Prop", "Negócios", "new", None, "send_email", "template=prop", None, True],
            ],
        }
    )
    run(path, now=NOW - dt.timedelta(hours=1))
    wb = load_workbook(path)
    wb["Negócios"].append(["D-1", "C-1", "Pão", "Proposta", 1234.5, dt.datetime(2026, 3, 5)])
    wb.save(path)
    result = run(path, now=NOW, dry_run=True)
    (email,) = result.plan.emails
    assert email.text == "R$ 1.234,50 até 05/03/2026, 2469.0", result.plan.problems


def test_en_task_and_notify_texts_print_dates_and_numbers_as_the_cells_do(book, monkeypatch):
    monkeypatch.delenv("SHEETFLOW_TRANSPORT", raising=False)
    path = book(
        {
            "Settings": [["key", "value"], ["timezone", "America/New_York"], ["sender_email", "s@acme.com"]],
            "Reps": [["name", "email"], ["Ana", "ana@acme.com"]],
            "Contacts": [
                ["id", "first_name", "created_at", "company_size", "owner"],
                ["C-0", "S", None, 1, "Ana"],
            ],
            "Automations": [
                ["rule", "table", "trigger", "when", "action", "params", "delay", "enabled"],
                [
                    "T",
                    "Contacts",
                    "new",
                    None,
                    "create_task",
                    "text=Call {{ first_name }} ({{ created_at }})",
                    None,
                    True,
                ],
                [
                    "N",
                    "Contacts",
                    "new",
                    None,
                    "notify",
                    "text={{ first_name }} has {{ company_size }} people since {{ created_at }}; subject=New: {{ first_name }}",
                    None,
                    True,
                ],
            ],
        }
    )
    run(path, now=NOW - dt.timedelta(hours=1))
    wb = load_workbook(path)
    wb["Contacts"].append(["C-1", "Bob", dt.datetime(2026, 3, 5), 12.5, "Ana"])
    wb.save(path)
    result = run(path, now=NOW, dry_run=True)
    task = next(a.values["text"] for a in result.plan.appends if a.sheet == "Tasks")
    assert task == "Call Bob (03/05/2026)"
    (digest,) = [e for e in result.plan.emails if e.kind == "notification"]
    assert "Contacts C-1: Bob has 12.5 people since 03/05/2026" in digest.text
    assert digest.subject == "New: Bob" and "00:00:00" not in digest.text

"""Email templates: sandbox, strict merge fields, defaults, HTML + text, caps, and what `check` finds."""

from __future__ import annotations

import pytest

from sheetflow.book import open_book
from sheetflow.commands.run import check, load
from sheetflow.rules.templates import (
    MAX_OUTPUT_CHARS,
    Fields,
    RenderError,
    TemplateSet,
    html_to_text,
    one_line,
    render_text,
)


def tset(book, templates, **sheets):
    path = book({"Templates": [["name", "subject", "body"], *templates], **sheets})
    loaded = load(open_book(path).read())
    return TemplateSet.load(loaded.tables), path


def test_merge_fields_default_filter_and_owner(book):
    templates, _ = tset(
        book,
        [
            [
                "hi",
                "Olá, {{ first_name }}!",
                "Oi {{ first_name | default('pessoa') }}, "
                "{{ owner.name | default('a equipe') }} / {{ owner.email }}",
            ]
        ],
    )
    subject, text, html = templates.render(
        "hi", {"first_name": "João", "owner": Fields("owner", {"name": "Ana", "email": "ana@x.com"})}
    )
    assert (subject, text, html) == ("Olá, João!", "Oi João, Ana / ana@x.com", None)
    subject, text, _ = templates.render(
        "HI", {"first_name": "Bia", "owner": Fields("owner", {"email": "e@x.com"})}
    )
    assert text == "Oi Bia, a equipe / e@x.com"  # names match like headers; default() covers a gap
    templates, _ = tset(book, [["o", "x", "{{ owner }}"]])
    assert templates.render("o", {"owner": Fields("owner", {"name": "Ana"}, "Ana")})[1] == "Ana"


def test_a_missing_merge_field_is_an_error_naming_template_and_field(book):
    templates, _ = tset(book, [["hi", "Hi {{ first_name }}", "Hello {{ owner.name }}"]])
    with pytest.raises(RenderError) as e:
        templates.render("hi", {"owner": Fields("owner", {"name": "Ana"})})
    assert 'template "hi" subject' in str(e.value) and e.value.field == "first_name"
    with pytest.raises(RenderError) as e:
        templates.render("hi", {"first_name": "x", "owner": Fields("owner", {"email": "a@b.co"})})
    assert e.value.field == "owner.name" and 'template "hi" body' in str(e.value)
    with pytest.raises(RenderError) as e:
        templates.render("hi", {"first_name": "x"})  # no owner at all: chained, still strict
    assert e.value.field == "owner"
    with pytest.raises(RenderError, match='no template "helo"'):
        templates.render("helo", {})


def test_html_bodies_are_escaped_and_get_a_text_alternative(book):
    body = (
        '<html><body><p>Hi <b>{{ first_name }}</b>,</p><p>see <a href="https://x.com/p">our offer</a>'
        "<br>bye</p><ul><li>one</li><li>two</li></ul><script>alert(1)</script></body></html>"
    )
    templates, _ = tset(book, [["promo", "Offer", body]])
    subject, text, html = templates.render("promo", {"first_name": "<script>x</script>"})
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    assert text == "Hi <script>x</script>,\n\nsee our offer (https://x.com/p)\nbye\n\n- one\n- two\n"
    assert "alert" not in text


def test_sandbox_blocks_python_internals_and_caps_work(book):
    for source in (
        "{{ ''.__class__.__mro__ }}",
        "{{ first_name.__class__ }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{{ 'x' * 10000000 }}",
        "{{ 10 ** 10000 }}",
    ):
        with pytest.raises(RenderError):
            render_text(source, {"first_name": "a"})
    with pytest.raises(RenderError, match="longer than"):
        render_text("{% for i in range(60000) %}{{ 'abcdefghij' }}{% endfor %}", {})
    assert MAX_OUTPUT_CHARS < 60000 * 10
    with pytest.raises(RenderError):
        render_text("{% set l = [1] %}{{ l.append(2) }}", {})


def test_subject_and_names_can_never_carry_a_line_break():
    assert one_line("Hi\r\nBcc: evil@x.com") == "Hi Bcc: evil@x.com"
    assert one_line("a\u2028b\x00c") == "a b c"


def test_html_to_text_keeps_paragraphs():
    assert html_to_text("<p>a</p><p>b &amp; c</p>") == "a\n\nb & c\n"


def test_default_template_files_and_language(book):
    templates, _ = tset(book, [["welcome", "Sheet wins {{ first_name }}", "x"]])
    assert templates.render("welcome", {"first_name": "A"})[0] == "Sheet wins A"
    assert "follow_up" in templates.sources and "notification" in templates.sources
    path = book(
        {"Configurações": [["chave", "valor"], ["locale", "pt-BR"]], "Contatos": [["id", "Nome"]]},
        name="pt.xlsx",
    )
    pt = TemplateSet.load(load(open_book(path).read()).tables)
    subject, text, _ = pt.render("welcome", {"first_name": "Luíza"})
    assert subject == "Boas-vindas, Luíza!" and text.startswith("Olá Luíza,")


def test_check_finds_unknown_fields_attributes_and_missing_templates(book):
    path = book(
        {
            "Contacts": [["id", "first_name", "email"]],
            "Reps": [["name", "email"]],
            "Templates": [
                ["name", "subject", "body"],
                ["a", "Hi {{ frist_name }}", "ok"],
                ["b", "Hi", "{{ owner.nmae }}"],
                ["c", "Hi", "{% for %}"],
                ["d", "", "body"],
                ["ok", "Hi {{ first_name | default('x') }}", "{{ owner.name }} {{ sender_name }}"],
            ],
            "Sequences": [["sequence", "step", "delay_days", "template"], ["onboarding", 1, 0, "wellcome"]],
        }
    )
    messages = [str(p) for p in check(path) if p.is_error]
    text = "\n".join(messages)
    assert 'Templates!B2: template "a" uses unknown field "frist_name" — did you mean "first_name"?' in text
    assert 'Templates!C3: template "b" uses unknown field "owner.nmae" — did you mean "owner.name"?' in text
    assert 'Templates!C4: template "c" body' in text
    assert 'Templates!B5: template "d" has an empty subject' in text
    assert 'Sequences!D2: no template "wellcome" — did you mean "welcome"?' in text
    assert not any('"ok"' in m for m in messages)


def test_render_time_and_template_size_are_capped(book, monkeypatch, tmp_path):
    import sheetflow.rules.templates as render_module

    folder = tmp_path / "email"  # a cell holds at most 32,767 characters; files can be bigger
    folder.mkdir()
    (folder / "big.txt").write_text(
        "Subject: Hi\n\n" + "x" * (render_module.MAX_TEMPLATE_CHARS + 1), encoding="utf-8"
    )
    path = book({"Contacts": [["id"]]})
    templates = TemplateSet.load(load(open_book(path).read()).tables, folder)
    with pytest.raises(RenderError, match='template "big" body: is longer than'):
        templates.render("big", {})

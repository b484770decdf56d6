"""Where a relative outbox lands (issue 10): --outbox and SHEETFLOW_OUTBOX are relative to the current folder like
any command-line path, sheetflow.toml's to the toml's folder, the default is outbox/ beside the workbook; run and
--dry-run agree."""

from __future__ import annotations

from sheetflow.cli.main import main


def test_demo_with_relative_folder_writes_where_it_says(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "sheetflow-demo", "--contacts", "40"]) == 0
    out = capsys.readouterr().out
    assert "sheetflow-demo/outbox" in out
    assert list((tmp_path / "sheetflow-demo" / "outbox").glob("*.eml"))
    assert not (tmp_path / "sheetflow-demo" / "sheetflow-demo").exists()


def _demo_book(folder):
    from sheetflow.commands.demo import prepare_demo_book
    from sheetflow.commands.init import create_starter

    folder.mkdir()
    book = folder / "crm.xlsx"
    create_starter(book, example=True, force=True, contacts=30)
    prepare_demo_book(book)
    return book


def test_relative_outbox_flag_is_relative_to_current_folder_for_run_and_dry_run(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    book = _demo_book(tmp_path / "wb")
    assert main(["run", str(book), "--dry-run", "--outbox", "prev"]) == 0
    assert "prev" in capsys.readouterr().out
    previews = list((tmp_path / "prev").glob("*.eml"))
    assert previews and not (tmp_path / "wb" / "prev").exists()
    assert main(["run", str(book), "--outbox", "sent"]) == 0
    sent = list((tmp_path / "sent").glob("*.eml"))
    assert len(sent) == len(previews) and not (tmp_path / "wb" / "sent").exists()


def test_env_and_toml_outbox(tmp_path, monkeypatch):
    from sheetflow.mail.config import load_config

    folder = tmp_path / "wb"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config(folder, env={"SHEETFLOW_OUTBOX": "rel"}).outbox == tmp_path / "rel"
    assert load_config(folder, env={}, outbox="flag").outbox == tmp_path / "flag"
    assert load_config(folder, env={}).outbox == folder / "outbox"
    (folder / "sheetflow.toml").write_text('[email]\noutbox = "tomlbox"\n')
    assert load_config(folder, env={}).outbox == folder / "tomlbox"

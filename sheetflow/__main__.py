from sheetflow.cli.main import cli

cli()

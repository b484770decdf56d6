"""``sheetflow schedule --print-service systemd|windows|cron BOOK``: the OS scheduler runs ``sheetflow run-due``.

Why ``run-due`` every 5 minutes rather than the OS scheduler's own calendar: the schedule lives in the
workbook (Settings ``schedule``), where the team edits it; ``run-due`` reads it, runs only what is due since
the last recorded run (a cheap look when nothing is), catches up a missed run once, and answers Control-sheet
requests. What each recipe adds:

* systemd: a ``oneshot`` service and a timer with ``Persistent=true`` (a tick missed while the machine was off
  fires once at boot); ``run-due`` makes that one tick catch up the missed run once.
* Windows Task Scheduler: ``MultipleInstancesPolicy`` ``IgnoreNew`` (a tick while a run is under way does not
  start a second one) and ``StartWhenAvailable`` (a tick missed while the PC was off or asleep runs as soon as
  possible).
* cron: ``flock -n`` so a tick never overlaps a run still under way (cron has no such setting).

Each recipe names absolute paths (the Python that runs this command, the workbook) because services do not
start in the user's folder or with the user's PATH.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from xml.sax.saxutils import escape

KINDS = ("systemd", "windows", "cron")
TICK_MINUTES = 5


def unit_name(book: str) -> str:
    """``crm.xlsx`` -> ``sheetflow-crm`` (letters, digits, ``-`` and ``_`` only: valid everywhere)."""
    stem = Path(book).stem if not str(book).startswith(("gsheets:", "excel:")) else str(book).split(":", 1)[1]
    return "sheetflow-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:60] or "workbook")


def _target(book: str) -> tuple[str, Path]:
    """The workbook as the service must name it (absolute for a file) and the folder to run in."""
    if str(book).startswith(("gsheets:", "excel:")):
        return str(book), Path.cwd()
    path = Path(book).expanduser().resolve()
    return str(path), path.parent


def _args(flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "sheetflow", "run-due"] + flags


def service_files(kind: str, book: str, flags: list[str] | None = None) -> dict[str, str]:
    """The files of one recipe: name -> content (systemd: ``NAME.service`` and ``NAME.timer``; windows:
    ``NAME.xml``; cron: ``NAME.cron``, one crontab line). ``flags``: extra ``run-due`` flags (``--every 15m``)."""
    name = unit_name(book)
    target, folder = _target(book)
    argv = _args(list(flags or [])) + [target]
    if kind == "systemd":
        exec_start = " ".join(_systemd_quote(a) for a in argv)
        service = (
            "[Unit]\n"
            f"Description=sheetflow run-due for {target}\n"
            "After=network-online.target\n"
            "Wants=network-online.target\n\n"
            "[Service]\n"
            "Type=oneshot\n"
            f"WorkingDirectory={str(folder).replace('%', '%%')}\n"
            f"ExecStart={exec_start}\n"
            "# a run is let finish on stop (the workbook is saved atomically and no email goes twice anyway)\n"
            "KillMode=mixed\n"
            "TimeoutStopSec=900\n"
        )
        timer = (
            "[Unit]\n"
            f"Description=every {TICK_MINUTES} minutes: sheetflow run-due for {target}\n\n"
            "[Timer]\n"
            f"OnCalendar=*:0/{TICK_MINUTES}\n"
            "Persistent=true\n"
            "AccuracySec=30s\n"
            f"Unit={name}.service\n\n"
            "[Install]\n"
            "WantedBy=timers.target\n"
        )
        return {f"{name}.service": service, f"{name}.timer": timer}
    if kind == "windows":
        command, arguments = argv[0], " ".join(_windows_quote(a) for a in argv[1:])
        xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>{escape(f"sheetflow run-due for {target} every {TICK_MINUTES} minutes")}</Description>
  </RegistrationInfo>
  <Triggers>
    <TimeTrigger>
      <StartBoundary>2026-01-01T00:00:00</StartBoundary>
      <Enabled>true</Enabled>
      <Repetition>
        <Interval>PT{TICK_MINUTES}M</Interval>
        <StopAtDurationEnd>false</StopAtDurationEnd>
      </Repetition>
    </TimeTrigger>
  </Triggers>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <StartWhenAvailable>true</StartWhenAvailable>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <ExecutionTimeLimit>PT1H</ExecutionTimeLimit>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{escape(command)}</Command>
      <Arguments>{escape(arguments)}</Arguments>
      <WorkingDirectory>{escape(str(folder))}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
"""
        return {f"{name}.xml": xml}
    if kind == "cron":
        lock = folder / ".sheetflow" / f"{name}.cron.lock"
        log = folder / ".sheetflow" / "logs" / "cron.log"
        line = (
            f"*/{TICK_MINUTES} * * * * cd {shlex.quote(str(folder))} && mkdir -p .sheetflow/logs && "
            f"flock -n {shlex.quote(str(lock))} {shlex.join(argv)} >> {shlex.quote(str(log))} 2>&1"
        )
        return {f"{name}.cron": line.replace("%", "\\%") + "\n"}
    raise ValueError(f"unknown service kind {kind!r}; use one of {', '.join(KINDS)}")


def print_service(kind: str, books: list[str], flags: list[str] | None = None) -> str:
    """The recipe for each workbook: its files, then the install steps (as comments, so the whole text can be
    read top to bottom; copy each file's part into the file it names)."""
    out: list[str] = []
    for book in books:
        files = service_files(kind, book, flags)
        name = unit_name(book)
        if kind == "systemd":
            out.append(
                "# Install (as the user who owns the workbook; no root needed):\n"
                "#   mkdir -p ~/.config/systemd/user\n"
                f"#   save the two parts below as ~/.config/systemd/user/{name}.service and {name}.timer\n"
                "#   systemctl --user daemon-reload\n"
                f"#   systemctl --user enable --now {name}.timer\n"
                "#   loginctl enable-linger $USER     # keep running when you are logged out\n"
                f"#   check: systemctl --user list-timers {name}.timer; journalctl --user -u {name}.service\n"
            )
        elif kind == "windows":
            pass  # the install steps follow the XML (a comment after the root element: still well-formed)
        else:
            out.append(
                "# Install: crontab -e, paste the line below, save. flock comes with util-linux (Linux);\n"
                "# on macOS: brew install flock. Output goes to .sheetflow/logs/cron.log beside the workbook.\n"
            )
        for filename, content in files.items():
            if kind == "systemd":
                out.append(f"# ---- {filename}\n{content}")
            else:
                out.append(content)
        if kind == "windows":
            out[-1] += (
                f"<!-- Install: save the XML above as {name}.xml, then in PowerShell:\n"
                f'       Register-ScheduledTask -TaskName "{name}" -Xml (Get-Content {name}.xml | Out-String)\n'
                "     or Task Scheduler > Import Task... > choose the file (and set 'Run whether user is logged on\n"
                "     or not' if the machine is shared). Check: Get-ScheduledTaskInfo -TaskName "
                f'"{name}" -->\n'
            )
    return "\n".join(out)


def _systemd_quote(arg: str) -> str:
    """A systemd command-line word: double-quoted when it has spaces or quotes; ``%`` doubled (specifiers)."""
    arg = arg.replace("%", "%%")
    if re.search(r'[\s"\'\\;]', arg):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def _windows_quote(arg: str) -> str:
    return f'"{arg}"' if re.search(r"\s", arg) else arg

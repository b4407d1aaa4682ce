"""`archivectl status` for a person: labelled lines (the daemon, the index, the backlog,
the failures), the services as a table, and the file systems, two lines each; all of it
fits the terminal."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from archived.index import FileStatus
from archived.views import humanize
from archived.views.output import Column, fitted_table

LEVELS = (("patient", "patients"), ("study", "studies"), ("series", "series"),
          ("instance", "instances"), ("file", "files"))  # fmt: skip
SINGULAR = {"studies": "study", "series": "series", "instances": "instance", "files": "file"}


def render(console: Console, status: dict[str, Any], args: argparse.Namespace) -> None:
    now = status["now"]
    facts = labelled()
    facts.add_row("archived", daemon_line(status["daemon"], status["status_file"], now))
    counters = status["daemon"].get("counters") if isinstance(status["daemon"], dict) else None
    if counters:
        facts.add_row("since start", counter_line(counters))
    index = status["index_file"]
    facts.add_row(
        "index", f"{index['path']}, {humanize.size(index['bytes'])} (from {index['source']})"
    )
    counts = status["index"]
    facts.add_row("", ", ".join(humanize.count(counts[k], k, p) for k, p in LEVELS))
    facts.add_row("backlog", backlog_line(status["backlog"]))
    problems = status["failures"]
    facts.add_row("failures", Text("none", style="green") if not problems else
                  Text(problems[0], style="red"))  # fmt: skip
    for line in problems[1:]:
        facts.add_row("", Text(line, style="red"))
    console.print(facts)
    console.print()
    console.print(services_table(console, status, now))
    console.print()
    console.print(file_systems_grid(status["file_systems"]))


def labelled() -> Table:
    """Bold labels on the left, values that wrap on the right (the views' house style)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def daemon_line(daemon: Any, status_file: str, now: float) -> Text:
    if not isinstance(daemon, dict):
        return Text(
            f"NOT RUNNING (no status file {status_file}); start it (`archived serve`, "
            "systemctl start archived, or the quick start)",
            style="yellow",
        )
    parts = [f"pid {daemon.get('pid')}"]
    if daemon.get("started"):
        parts.append(f"up {humanize.duration(now - daemon['started'])}")
    if daemon.get("port"):
        parts.append(f"AE {daemon.get('ae_title')} on port {daemon['port']}")
    if "associations" in daemon:
        parts.append(
            f"{daemon['associations']} of {daemon.get('max_associations', '?')} associations"
        )
    if daemon.get("stale"):
        return Text(
            f"NOT ANSWERING: status {humanize.relative(daemon['written'], now)} "
            f"({', '.join(parts)})",
            style="red",
        )
    return Text("running: " + ", ".join(parts), style="green")


def counter_line(counters: dict[str, int]) -> str:
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counters.items())


def backlog_line(backlog: dict[str, Any]) -> str:
    parts = []
    if "instances_without_copy" in backlog:
        n = backlog["instances_without_copy"]
        parts.append(f"{humanize.count(n, 'instance')} without a nearline copy (FileCopy)")
    parts.append(
        f"{humanize.count(backlog['files_to_archive'], 'file')} TO_ARCHIVE "
        "(hsmfs migrates, SyncFileStatus verifies)"
    )
    parts.append(f"{humanize.count(backlog['online_studies'], 'study', 'studies')} on ONLINE")
    return "; ".join(parts)


def services_table(console: Console, status: dict[str, Any], now: float) -> Table:
    services = status["services"]
    running = isinstance(services, dict)
    names = list(status["schedule"]) or (list(services) if running else [])
    rows = []
    for name in names:
        service = services.get(name, {}) if running else {}
        schedule = service.get("interval") or status["schedule"].get(name, "")
        last = service.get("last_run") or {}
        if not running:
            next_run = Text("archived is not running", style="yellow")
        elif service.get("next_run") is None:
            next_run = Text("-")
        else:
            next_run = Text(humanize.moment(service["next_run"], now))
        bad = bool(last.get("failed") or last.get("errors"))
        rows.append((
            name, Text(schedule_words(schedule), style="dim" if schedule == "disabled" else ""),
            Text(humanize.moment(last.get("started"), now), style="red" if bad else ""),
            next_run, work_done(service.get("last_work"), now),
        ))  # fmt: skip
    # The times keep their width; the last work done gives way first (it is the longest).
    headers = (("service", 0, 8), ("schedule", 2, 8), ("last run", 0, 8), ("next run", 0, 8),
               ("last work", 3, 12))  # fmt: skip
    columns = [
        Column(header, [row[i] for row in rows], minimum=minimum, shrink=shrink)
        for i, (header, shrink, minimum) in enumerate(headers)
    ]
    return fitted_table(console, columns, wide=False)


def schedule_words(interval: str) -> str:
    if not interval or interval == "disabled" or interval.startswith("misconfigured"):
        return interval or "-"
    return f"every {interval}"


def work_done(work: dict[str, Any] | None, now: float) -> Text:
    """'12 s ago: 5 instances, 1 series'; 'nothing yet'."""
    if not work:
        return Text("nothing yet", style="dim")
    when = humanize.relative(work.get("finished") or work["started"], now)
    if work.get("failed"):
        return Text(f"failed {when}: {work['failed']}", style="red")
    counts = {k: v for k, v in work.get("counts", {}).items() if k != "errors"}
    words = ", ".join(
        f"{n} {SINGULAR.get(what, what) if n == 1 else what}".replace("_", " ")
        for what, n in sorted(counts.items())
    )
    text = Text(f"{when}: {words}" if words else when)
    if work.get("errors"):
        text.append(f"; {humanize.count(len(work['errors']), 'error')}", style="red")
    return text


def file_systems_grid(file_systems: list[dict[str, Any]]) -> Table | Text:
    if not file_systems:
        return Text("no file systems: add them with `archivectl fs add`", style="yellow")
    grid = labelled()
    for fs in file_systems:
        grid.add_row(fs["group"], fs["path"])
        details = fs_state(fs)
        if "free" in fs:
            details.append(f"; {free_space(fs)}")
        details.append("; files: ")
        details.append_text(files_text(fs["files"]))
        grid.add_row("", details)
    return grid


def fs_state(fs: dict[str, Any]) -> Text:
    if fs.get("error"):
        return Text(fs["error"].lower(), style="red")
    text = Text(fs["status"])
    hsm = fs.get("hsmfs")
    if hsm is not None:
        if hsm["live"]:
            text.append(f", hsmfs mounted (pid {hsm.get('pid')})", style="green")
        else:
            text.append(", hsmfs NOT MOUNTED", style="red")
    elif fs.get("writable") is False and fs["status"] == "RW":
        text.append(", not writable", style="red")
    return text


def free_space(fs: dict[str, Any]) -> str:
    share = 100 * fs["free"] / fs["total"] if fs["total"] else 0
    return f"{humanize.size(fs['free'])} free of {humanize.size(fs['total'])} ({share:.0f}%)"


def files_text(files: dict[str, int]) -> Text:
    if not files:
        return Text("none", style="dim")
    text = Text()
    for name, n in files.items():
        if text:
            text.append(", ")
        text.append(f"{n} {name}", style="red" if FileStatus[name] < 0 else None)
    return text

"""archivectl run filecopy|sync|deleter [--dry-run]: run one lifecycle service now.

The run takes the service's lock, so it never overlaps a scheduled run of `archived
serve`. It is forced: filecopy also retries the series waiting for their RetryIntervals
or that used them up. --dry-run changes nothing and lists what would be done (the
deleter: what would be deleted and why the other studies are kept). Progress goes to
stderr while it runs: a progress bar on a terminal, else one line per item; the report
follows on stdout. The index file: --index, else $ARCHIVED_INDEX, else IndexPath in the
configuration.

Exit codes: 0 done; 1 the run reported errors (each printed); 64 the service is not
configured; 65 the index lacks a row; 66 no index file; 69 the nearline file system is
not a live hsmfs mount; 74 a tar could not be written; 75 another run holds the lock;
70-76 configuration store errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from archived.conf import ConfigError, ConfigStore, open_store
from archived.index import ArchiveIndexError, FileSystemSpec, Index
from archived.indexpath import configured_index, locate_index
from archived.services.errors import ServiceError
from archived.services.progressview import ProgressView
from archived.services.report import RunReport
from archived.services.scheduler import archive_settings, build_services, run_service

EX_NOINPUT = 66
SERVICES = ("filecopy", "sync", "deleter")


def _run(args: argparse.Namespace) -> int:
    try:
        with open_store(args.config) as store:
            location = locate_index(args.index, lambda: configured_index(store))
            path = location.path
            if not path.is_file():
                print(f"archivectl: {location.missing()}", file=sys.stderr)
                return EX_NOINPUT
            report = _run_service(args, store, path)
    except (ServiceError, ConfigError, ArchiveIndexError) as exc:
        print(f"archivectl: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print(report)
    return 1 if report.errors else 0


def _run_service(args: argparse.Namespace, store: ConfigStore, path: Path) -> RunReport:
    with Index(path) as index:
        settings = archive_settings(store)
        index.mirror_filesystems(
            FileSystemSpec(fs.uuid, group.group_id, fs.path, fs.status.value)
            for group, fs in settings().iter_file_systems()
        )
        service = build_services(index, settings)[args.service]
        with ProgressView() as view:
            return run_service(service, path, dry_run=args.dry_run, force=True, progress=view)


def _print(report: RunReport) -> None:
    console = Console(highlight=False, soft_wrap=True)
    counts = ", ".join(f"{n} {what}" for what, n in sorted(report.counts.items())) or "nothing"
    dry = " (dry run: nothing changed)" if report.dry_run else ""
    console.print(f"{report.service}: {counts}{dry}")
    for line in report.actions:
        console.print(f"  {escape(line)}")
    for line in report.kept:
        console.print(f"  kept: {escape(line)}")
    for line in report.errors:
        console.print(f"  [red]error:[/red] {escape(line)}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a lifecycle service now (filecopy, sync, deleter)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--dry-run", action="store_true", help="change nothing; say what would be done")
    p.add_argument(
        "--index",
        default=None,
        help="index file (default: $ARCHIVED_INDEX, else IndexPath in the configuration)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_run, reads_config=True)

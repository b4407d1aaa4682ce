"""archived: the archive daemon. `archived serve --config URI` runs the DICOM service.

Exit codes: 0 stopped by SIGTERM/SIGINT; 2 usage; 65 bad data (index); 69 cannot listen;
70 internal or configuration error; 71 configuration store unavailable; 72 configuration
not found; 78 index written by a newer archived.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from archived.conf import ConfigError, open_store
from archived.dicom import ArchiveServer, DicomServiceError
from archived.dicom.config import settings_from_config
from archived.dicom.status_file import status_path, write_status
from archived.index import ArchiveIndexError, Index

DEFAULT_INDEX = "/var/lib/archived/index.sqlite"
STATUS_INTERVAL = 2.0
LOG = logging.getLogger("archived")


def index_path(value: str | None) -> Path:
    return Path(value or os.environ.get("ARCHIVED_INDEX") or DEFAULT_INDEX)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archived", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the DICOM service until SIGTERM")
    serve.add_argument("--config", default=None,
                       help="configuration store URI (default: $ARCHIVED_CONFIG)")  # fmt: skip
    serve.add_argument(
        "--index", default=None,
        help=f"index file (default: $ARCHIVED_INDEX, else {DEFAULT_INDEX})",
    )  # fmt: skip
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    path = index_path(args.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_store(args.config) as store, Index(path) as index:
        settings, file_systems = settings_from_config(store)
        index.mirror_filesystems(file_systems)
        server = ArchiveServer(settings, index)

        def reload(_event: object) -> None:
            try:
                new_settings, new_file_systems = settings_from_config(store)
                index.mirror_filesystems(new_file_systems)
                server.reconfigure(new_settings)
                LOG.info("configuration reloaded")
            except (ConfigError, ArchiveIndexError) as exc:
                LOG.error("configuration change not applied: %s", exc)

        subscription = store.subscribe(reload)
        server.start()
        status = status_path(path)
        try:
            write_status(status, server.statistics())
            while not stop.wait(STATUS_INTERVAL):
                write_status(status, server.statistics())
        finally:
            subscription.cancel()
            server.stop()
            status.unlink(missing_ok=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except (ConfigError, ArchiveIndexError, DicomServiceError) as exc:
        print(f"archived: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""archived: the archive daemon. `archived serve --config URI` runs the DICOM service.

The configuration store: --config, else $ARCHIVED_CONFIG, else the one archivectl finds
(archived.conflocation: the service's settings file, the default store, the quick start's).
The index file: --index, else $ARCHIVED_INDEX, else IndexPath of the archive's device in the
configuration (default /var/lib/archived/index.sqlite); read at start-up.

Exit codes: 0 stopped by SIGTERM/SIGINT; 2 usage; 65 bad data (index); 69 cannot listen;
70 internal or configuration error; 71 configuration store unavailable; 72 configuration
not found; 78 index written by a newer archived.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence

from archived.conf import ConfigError, open_store
from archived.conf.upgrade import UpgradeRunner, load_upgrade_settings
from archived.conflocation import locate_config
from archived.dicom import ArchiveServer, DicomServiceError
from archived.dicom.config import settings_from_config
from archived.dicom.status_file import status_path, write_status
from archived.index import ArchiveIndexError, Index
from archived.indexpath import IndexLocation, configured_index, locate_index
from archived.logsetup import setup_logging
from archived.metrics import MetricsEndpoint, parse_address
from archived.sdnotify import Notifier
from archived.services.scheduler import Scheduler, archive_settings

DEFAULT_STOP_TIMEOUT = 30.0
STATUS_INTERVAL = 2.0
LOG = logging.getLogger("archived")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archived", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the DICOM service until SIGTERM")
    serve.add_argument("--config", default=None,
                       help="configuration store URI (default: $ARCHIVED_CONFIG, else as "
                       "archivectl finds it; see above)")  # fmt: skip
    serve.add_argument(
        "--index", default=None,
        help="index file (default: $ARCHIVED_INDEX, else IndexPath in the configuration)",
    )  # fmt: skip
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    serve.add_argument(
        "--metrics", type=metrics_address, default=os.environ.get("ARCHIVED_METRICS"),
        metavar="[ADDRESS:]PORT",
        help="serve Prometheus metrics there (default: $ARCHIVED_METRICS, else none)",
    )  # fmt: skip
    serve.add_argument(
        "--stop-timeout", type=float, metavar="SECONDS",
        default=float(os.environ.get("ARCHIVED_STOP_TIMEOUT") or DEFAULT_STOP_TIMEOUT),
        help="on SIGTERM, let running associations finish this long "
        f"(default: $ARCHIVED_STOP_TIMEOUT, else {DEFAULT_STOP_TIMEOUT:.0f})",
    )  # fmt: skip
    serve.add_argument(
        "--upgrade-settings", metavar="FILE", default=os.environ.get("ARCHIVED_UPGRADE_SETTINGS"),
        help="run the configuration upgrade it names before serving; a failed upgrade stops "
        "start-up (default: $ARCHIVED_UPGRADE_SETTINGS, else no upgrade)",
    )  # fmt: skip
    serve.add_argument(
        "--deployment", default=os.environ.get("ARCHIVED_DEPLOYMENT") or socket.gethostname(),
        help="this deployment's name for the upgrade runner (default: $ARCHIVED_DEPLOYMENT, "
        "else the host name)",
    )  # fmt: skip
    return parser


def metrics_address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def open_index(location: IndexLocation) -> Index:
    """The index at ``location``, its directory created; errors name the file and its source."""
    try:
        location.path.parent.mkdir(parents=True, exist_ok=True)
        return Index(location.path)
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ArchiveIndexError(
            f"{location.path}: cannot open the index ({reason}; path from {location.source}); "
            "check the path and its permissions"
        ) from None


def serve(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    notifier = Notifier.from_environment()
    stop, reload_requested = threading.Event(), threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    with contextlib.ExitStack() as stack:
        config = locate_config(args.config)
        store = stack.enter_context(open_store(config.uri))
        LOG.info("configuration %s (from %s)", config.uri, config.source)
        if args.upgrade_settings:  # before anything reads the configuration
            settings_file = load_upgrade_settings(args.upgrade_settings)
            UpgradeRunner(store, settings_file, args.deployment).run()
        settings, file_systems = settings_from_config(store)
        location = locate_index(args.index, lambda: configured_index(store))
        path = location.path
        index = stack.enter_context(open_index(location))
        LOG.info("index %s (path from %s)", path, location.source)
        index.mirror_filesystems(file_systems)
        server = ArchiveServer(settings, index)

        def reload(_event: object) -> None:
            try:
                new_settings, new_file_systems = settings_from_config(store)
                index.mirror_filesystems(new_file_systems)
                server.reconfigure(new_settings)
                LOG.info("configuration reloaded")
                warn_if_index_moved(location, configured_index(store))
            except (ConfigError, ArchiveIndexError) as exc:
                LOG.error("configuration change not applied: %s", exc)

        subscription = store.subscribe(reload)
        metrics = MetricsEndpoint(args.metrics[0], args.metrics[1], index) if args.metrics else None
        server.start(metrics.timer.handlers() if metrics else ())
        scheduler = Scheduler(index, archive_settings(store), path)  # FileCopy, Sync, deleter
        scheduler.start()
        status = status_path(path)
        # The main thread pings the watchdog between status writes.
        interval = min(STATUS_INTERVAL, notifier.watchdog_interval or STATUS_INTERVAL)
        try:
            if metrics:
                metrics.start(server)
            started = time.time()

            def statistics() -> dict[str, object]:
                return {**server.statistics(), "services": scheduler.statistics(),
                        "started": started}  # fmt: skip

            write_status(status, statistics())
            notifier.ready(f"AE {settings.ae_title} listening on port {server.port}")
            while not stop.wait(interval):
                notifier.watchdog()
                if reload_requested.is_set():  # SIGHUP (systemctl reload)
                    reload_requested.clear()
                    reload(None)
                write_status(status, statistics())
        finally:
            notifier.stopping("finishing running associations")
            subscription.cancel()
            scheduler.stop()  # a run in progress finishes first
            server.stop(grace=args.stop_timeout)
            if metrics:
                metrics.stop()
            status.unlink(missing_ok=True)
    return 0


def warn_if_index_moved(used: IndexLocation, configured: IndexLocation) -> None:
    """IndexPath is read at start-up only: say so when the configuration now names another."""
    if used.source == configured.source and used.path != configured.path:
        LOG.warning(
            "IndexPath is now %s, but archived keeps using %s until it is restarted",
            configured.path, used.path,
        )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except (ConfigError, ArchiveIndexError, DicomServiceError) as exc:
        print(f"archived: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""archivectl: the operator's command line for archived (configuration, index, status).

The configuration store: --config, else $ARCHIVED_CONFIG, else the ARCHIVED_CONFIG line of
/etc/hsmfs-archived/archived.env, else lmdb:///var/lib/archived/conf, else the quick
start's lmdb:///srv/hsm-quickstart/archived-conf (see archived.conflocation). A command
that only reads it fails with exit code 72 when there is none, naming where it looked.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from archived.conf import NotFoundError
from archived.conflocation import locate_config

# Each module registers its sub-commands with `register(subparsers)`; one job per module.
COMMAND_MODULES: tuple[str, ...] = (
    "archived.conf.commands",
    "archived.views.commands",
    "archived.services.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archivectl", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--config",
        default=None,
        help="configuration store URI (lmdb:///DIR or json:///FILE); default: see below",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.config_location = locate_config(args.config)
    args.config = args.config_location.uri
    if getattr(args, "reads_config", False) and not args.config_location.exists:
        print(f"archivectl: {args.config_location.missing()}", file=sys.stderr)
        return NotFoundError.exit_code
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

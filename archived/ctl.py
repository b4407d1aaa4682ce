"""archivectl: the operator's command line for archived (configuration, index, status)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module registers its sub-commands with `register(subparsers)`; one job per module.
COMMAND_MODULES: tuple[str, ...] = (
    "archived.conf.commands",
    "archived.dicom.commands",
    "archived.services.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archivectl", description=__doc__)
    parser.add_argument(
        "--config",
        default=None,
        help="configuration store URI (lmdb:///DIR or json:///FILE); "
        "default: $ARCHIVED_CONFIG, else lmdb:///var/lib/archived/conf",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

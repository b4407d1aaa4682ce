"""How the views print: one Console per command, JSON for machines, one-line errors."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from archived.conf import ConfigError, ConfigStore, NotFoundError, open_store
from archived.conflocation import ConfigLocation
from archived.index import ArchiveIndexError, Index
from archived.indexpath import IndexLocation, configured_index, locate_index

EX_NOINPUT = 66
WIDE = 10_000  # --wide: lines as long as their content

Gather = Callable[[argparse.Namespace, Index, IndexLocation, ConfigStore | None], Any]
Render = Callable[[Console, Any, argparse.Namespace], None]


class NoIndexError(ArchiveIndexError):
    """No index file where the configuration (or --index, $ARCHIVED_INDEX) points."""

    exit_code = EX_NOINPUT


def console(args: argparse.Namespace) -> Console:
    wide = getattr(args, "wide", False)
    return Console(highlight=False, width=WIDE if wide else None, soft_wrap=False)


def open_configuration(args: argparse.Namespace) -> ConfigStore | None:
    """The store archivectl located, or None if it does not exist (views then need --index)."""
    location: ConfigLocation = args.config_location
    return open_store(location.uri) if location.exists else None


def index_location(args: argparse.Namespace, store: ConfigStore | None) -> IndexLocation:
    def configured() -> IndexLocation:
        if store is None:
            raise NotFoundError(args.config_location.missing())
        return configured_index(store)

    return locate_index(args.index, configured)


def command(gather: Gather, render: Render) -> Callable[[argparse.Namespace], int]:
    """A view's handler: find the configuration and the index, gather, print JSON or render."""

    def run(args: argparse.Namespace) -> int:
        try:
            with contextlib.ExitStack() as stack:
                store = open_configuration(args)
                if store is not None:
                    stack.enter_context(store)
                location = index_location(args, store)
                if not location.path.is_file():
                    raise NoIndexError(location.missing())
                index = stack.enter_context(Index(location.path))
                result = gather(args, index, location, store)
        except (ArchiveIndexError, ConfigError) as exc:
            print(f"archivectl: {exc}", file=sys.stderr)
            return exc.exit_code
        if args.json:
            json.dump(result, sys.stdout, indent=2, ensure_ascii=False, default=str)
            sys.stdout.write("\n")
        else:
            render(console(args), result, args)
        return 0

    return run


def add_common_options(p: argparse.ArgumentParser, wide: bool = True) -> None:
    p.add_argument(
        "--index", default=None,
        help="index file (default: $ARCHIVED_INDEX, else IndexPath in the configuration)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON (every field, raw values)")
    if wide:
        p.add_argument(
            "--wide", action="store_true", help="whole UIDs and values; lines may be long"
        )


@dataclass
class Column:
    """A table column for `fitted_table`.

    ``shrink`` 0 never shrinks; a higher one gives way first, down to ``minimum``
    characters, its cells cut with an ellipsis. An ``optional`` column is left out (the
    highest ``shrink`` first) rather than make another column give way.
    """

    header: str
    cells: list[str | Text] = field(default_factory=list)
    minimum: int = 4
    shrink: int = 0
    justify: JustifyMethod = "left"
    optional: bool = False

    def natural(self) -> int:
        return max([cell_len(self.header), *(_cell_width(c) for c in self.cells)])

    def narrowest(self) -> int:
        return min(self.natural(), self.minimum) if self.shrink else self.natural()


def _cell_width(cell: str | Text) -> int:
    return cell_len(cell) if isinstance(cell, str) else cell.cell_len


GAP = 2  # between columns


def fit_widths(columns: list[Column], width: int) -> list[int | None]:
    """Each column's width within ``width`` characters, None for a column left out."""
    kept = list(columns)
    droppable = sorted((c for c in columns if c.optional), key=lambda c: -c.shrink)

    def needed(cols: list[Column]) -> int:
        """The others whole, the optional ones at their narrowest."""
        return sum(c.narrowest() if c.optional else c.natural() for c in cols) + GAP * (
            len(cols) - 1
        )

    while droppable and needed(kept) > width:  # an optional column never cuts another
        kept.remove(droppable.pop(0))
    widths = {id(c): c.natural() for c in kept}
    excess = sum(widths.values()) + GAP * (len(kept) - 1) - width
    for rank in sorted({c.shrink for c in kept if c.shrink}, reverse=True):
        for column in kept:
            if excess <= 0:
                break
            if column.shrink == rank:
                cut = min(excess, widths[id(column)] - column.narrowest())
                widths[id(column)] -= cut
                excess -= cut
    return [widths.get(id(c)) for c in columns]


def fitted_table(console: Console, columns: list[Column], wide: bool) -> Table:
    """A borderless table that fits the console (see Column); ``wide``: no fitting."""
    widths: list[int | None] = (
        [c.natural() for c in columns] if wide else fit_widths(columns, console.width)
    )
    shown = [(c, w) for c, w in zip(columns, widths, strict=True) if w is not None]
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, GAP // 2))
    for column, width in shown:
        table.add_column(
            column.header, width=width, no_wrap=True, overflow="ellipsis", justify=column.justify
        )
    for row in zip(*(c.cells for c, _ in shown), strict=True):
        table.add_row(*row)
    return table

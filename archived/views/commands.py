"""archivectl study list|show and archivectl status: the operator's views (see the modules).

The index file: --index, else $ARCHIVED_INDEX, else IndexPath in the configuration (see
archived.indexpath); the configuration: see archived.conflocation. Errors print one line
on stderr: 65 unknown or ambiguous study, 66 index file missing, 72 no configuration
store found, 78 index written by a newer archived, 70-76 other configuration store errors.
"""

from __future__ import annotations

import argparse

from archived.views import status, statusview, study
from archived.views.output import add_common_options, command


def register(subparsers: argparse._SubParsersAction) -> None:
    epilog = (__doc__ or "").split("\n\n", 1)[1]
    parser = subparsers.add_parser(
        "study", help="studies in the index and where their copies are", epilog=epilog,
        description=study.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="studies matching DICOM-style keys (wildcards * ?)")
    p.add_argument("--patient-id")
    p.add_argument("--name", help="patient name, e.g. 'DOE^*'")
    p.add_argument("--date", help="study date or range, e.g. 20240101-20240131")
    p.add_argument("--limit", type=int, default=100)
    add_common_options(p)
    p.set_defaults(handler=command(study.study_list, study.render_list))
    p = sub.add_parser("show", help="one study: series, copies per file system group and status")
    p.add_argument("study_iuid", help="the Study Instance UID, or its end as `study list` shows it")
    add_common_options(p)
    p.set_defaults(handler=command(study.study_show, study.render_show))
    p = subparsers.add_parser(
        "status", help="the archive at a glance: daemon, services, backlog, failures, storage",
        description=status.__doc__, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_common_options(p, wide=False)
    p.set_defaults(handler=command(status.gather, statusview.render))

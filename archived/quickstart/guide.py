"""What the quick start prints once archived listens: what runs where, the demonstration
intervals, and the lifecycle to try step by step, with the real commands."""

from __future__ import annotations

import shlex
import textwrap
from pathlib import Path

from archived.conflocation import locate_config
from archived.quickstart import settings as demo
from archived.quickstart.settings import MOVE_DESTINATION, Layout


def guide(
    layout: Layout, port: int, move_port: int, study_uid: str, bin_dir: Path, delete_after: float
) -> str:
    q = shlex.quote
    root, near = layout.root, q(str(layout.nearline))
    env = [f'export PATH="$PATH:{bin_dir}"   # archivectl, hsmctl (after DCMTK\'s tools)']
    if locate_config(None, environ={}).uri == layout.conf_uri:  # a new shell finds it
        found = "archivectl finds this configuration by itself"
    else:
        env.append(f"export ARCHIVED_CONFIG={layout.conf_uri}")
        found = "archivectl finds it through $ARCHIVED_CONFIG, below"
    samples = q(str(layout.sample)) + "/*.dcm"
    move = (
        f"movescu -S -aet {MOVE_DESTINATION} -aec ARCHIVED --port {move_port} "
        f"-od {q(str(layout.retrieved))} -k QueryRetrieveLevel=STUDY "
        f"-k StudyInstanceUID={study_uid} localhost {port}"
    )
    compare = f"{bin_dir}/python -m archived.quickstart --compare {q(str(layout.sample))} " + q(
        str(layout.retrieved)
    )
    lines = [
        "",
        "hsmfs + archived are running; Ctrl-C stops both.",
        f"  DICOM     AE ARCHIVED on port {port}; any calling AE may store, query, retrieve",
        f"  ONLINE    {layout.online}",
        f"  NEARLINE  tar:{layout.nearline} (hsmfs; object store {layout.state}/objects)",
        f"  settings  {layout.conf_uri} ({found})",
        f"  index     {layout.index}",
        "",
        *textwrap.wrap(
            f"DEMONSTRATION intervals, not for production (in the configuration and in "
            f"{layout.hsmfs_config}): a series is packed into a tar {demo.SERIES_QUIET} s "
            f"after its last instance, hsmfs migrates the tar {demo.MIGRATE_AFTER} s after "
            f"it is closed, SyncFileStatus verifies every {demo.SYNC_EVERY} s, a study "
            f"leaves ONLINE {delete_after:g} s after its last access once every instance "
            f"has an ARCHIVED copy, and hsmfs releases a tar nobody read for "
            f"{demo.RELEASE_AFTER} s.",
            width=88,
        ),
        "",
        "Try it, in another terminal:",
        *(f"  {line}" for line in env),
        "",
        "  1. Store the sample study (5 CT images; or your own: storescu +sd +r ... DIR):",
        f"       storescu -aec ARCHIVED localhost {port} {samples}",
        "  2. Within seconds FileCopy packs it into a tar on the mount, hsmfs migrates it and",
        "     SyncFileStatus marks it ARCHIVED:",
        "       archivectl status",
        "       archivectl study list",
        f"       hsmctl state -r {near}",
        f"  3. About {delete_after:g} s later the study is gone from ONLINE; the tar holds it:",
        f"       archivectl study show {study_uid[-10:]}",
        f"       ls -R {q(str(layout.online))}",
        "  4. Release the tar from the hsmfs cache now (hsmfs would after "
        f"{demo.RELEASE_AFTER} s):",
        f"       hsmctl release -r {near}",
        f"       hsmctl status {near}",
        "  5. Retrieve the study: hsmfs brings the tar back from the object store:",
        f"       {move}",
        f"       {compare}",
        "",
        f"Everything lives in {root}; see README.md, 'Your first hour'.",
        "",
    ]
    return "\n".join(lines)

"""Progress of a service run: the services call back for every item (and print nothing);
`archivectl run` draws a progress bar on a terminal and writes plain lines otherwise."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from archived.conf import ArchiveDeviceExtension, open_store
from archived.index import NEARLINE_STORAGE, ONLINE_STORAGE
from archived.services.deleter import DeleterService
from archived.services.filecopy import FileCopyService
from archived.services.progress import Progress, Tracker
from archived.services.progressview import ProgressView
from archived.services.syncstatus import SyncFileStatusService
from tests.services.conftest import Bed

DAY = 86400.0


def series_of(bed: Bed, study: str) -> list[str]:
    return sorted({f.series_iuid for f in bed.index.files_of_study(study, ONLINE_STORAGE)})


def test_filecopy_reports_each_series_through_the_callback(
    bed: Bed, capsys: pytest.CaptureFixture[str]
) -> None:
    study = bed.store_study(instances=2, series=2)
    events: list[Progress] = []
    FileCopyService(bed.index, bed.settings).run(progress=events.append)
    assert [(e.service, e.unit, e.done, e.total) for e in events] == [
        ("filecopy", "series", 0, 2),
        ("filecopy", "series", 1, 2),
        ("filecopy", "series", 2, 2),
    ]
    assert events[0].item == ""
    assert sorted(e.item for e in events[1:]) == [
        f"series {series}: 2 instance(s) copied" for series in series_of(bed, study)
    ]
    assert capsys.readouterr() == ("", "")  # nothing printed


def test_sync_reports_each_tar_through_the_callback(bed: Bed) -> None:
    bed.store_study(instances=2, series=2)
    assert FileCopyService(bed.index, bed.settings).run().counts["series"] == 2
    tars = sorted(bed.nearline.rglob("*.tar"))
    events: list[Progress] = []
    SyncFileStatusService(bed.index, bed.settings).run(dry_run=True, progress=events.append)
    assert [(e.unit, e.done, e.total) for e in events] == [("tars", 0, 2), ("tars", 1, 2),
                                                           ("tars", 2, 2)]  # fmt: skip
    assert sorted(e.item.split(": ")[0] for e in events[1:]) == [str(t) for t in tars]
    assert all(e.item.endswith("2 file(s) checked") for e in events[1:])


def test_deleter_reports_each_study_it_decides_on(bed: Bed) -> None:
    old, kept = bed.store_study(seed=1), bed.store_study(seed=2)
    assert FileCopyService(bed.index, bed.settings).run().errors == []
    for study in (old, kept):
        bed.index.touch_study(study, now=time.time() - 40 * DAY)
    online = bed.ext.group(ONLINE_STORAGE)
    assert online is not None
    online.deletion_rules.delete_study_if_not_accessed_for = "30d"  # type: ignore[assignment]
    online.deletion_rules.delete_study_only_if_copy_on_file_system_of_file_system_group = (
        NEARLINE_STORAGE
    )
    online.deletion_rules.delete_study_only_if_copy_archived = False  # the copies are TO_ARCHIVE
    events: list[Progress] = []
    DeleterService(bed.index, bed.settings).run(dry_run=True, progress=events.append)
    assert [(e.unit, e.done, e.total) for e in events] == [("studies", 0, None),
                                                           ("studies", 1, None),
                                                           ("studies", 2, None)]  # fmt: skip
    assert sorted(e.item for e in events[1:]) == sorted(
        f"study {s}: would be deleted from {ONLINE_STORAGE}" for s in (old, kept)
    )


def steps(view: ProgressView) -> None:
    tracker = Tracker(view, "filecopy", "series", 2)
    tracker.step("series 1.2.3: 3 instance(s) copied [x]")
    tracker.step("series 1.2.4: failed")


def test_the_view_writes_plain_lines_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    with ProgressView(Console(file=out, force_terminal=False)) as view:
        steps(view)
    assert out.getvalue().splitlines() == [
        "filecopy: 0/2 series",
        "filecopy: 1/2 series: series 1.2.3: 3 instance(s) copied [x]",
        "filecopy: 2/2 series: series 1.2.4: failed",
    ]


def test_the_view_draws_a_progress_bar_on_a_terminal() -> None:
    out = io.StringIO()
    with ProgressView(Console(file=out, force_terminal=True, width=100)) as view:
        steps(view)
    drawn = out.getvalue()
    assert "\x1b[" in drawn and "━" in drawn  # cursor control and the bar itself
    assert "filecopy (series)" in drawn and "2/2" in drawn and "series 1.2.4: failed" in drawn
    assert "filecopy: 1/2 series" not in drawn  # no plain lines


# -- archivectl run, in real processes --------------------------------------------------


def configure(bed: Bed, uri: str) -> None:
    """A configuration store whose archive extension is the bed's."""
    with open_store(uri) as store:
        store.ensure_own_device()
        device = store.find_device(store.device_name)
        device.extensions.archive = ArchiveDeviceExtension.model_validate(
            bed.ext.model_dump(mode="json", by_alias=True)
        )
        store.merge_device(device)


def archivectl_run(bed: Bed, uri: str, service: str, stderr: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVED_INDEX"}
    return subprocess.Popen(
        [sys.executable, "-m", "archived.ctl", "--config", uri, "run", service, "--index",
         str(bed.index.path)],
        stdout=subprocess.PIPE, stderr=stderr, env={**env, "TERM": "xterm-256color"},
    )  # fmt: skip


def test_archivectl_run_writes_plain_progress_lines_to_a_pipe(bed: Bed, tmp_path: Path) -> None:
    uri = f"json://{tmp_path}/conf.json"
    configure(bed, uri)
    study = bed.store_study(instances=2, series=2)
    proc = archivectl_run(bed, uri, "filecopy", subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    start, *lines = err.decode().splitlines()
    assert start == "filecopy: 0/2 series"
    assert [line[: len("filecopy: 1/2 series: ")] for line in lines] == [
        "filecopy: 1/2 series: ",
        "filecopy: 2/2 series: ",
    ]
    assert sorted(line[len("filecopy: 1/2 series: ") :] for line in lines) == [
        f"series {series}: 2 instance(s) copied" for series in series_of(bed, study)
    ]
    assert out.decode().startswith("filecopy: 4 instances, 2 series")


def test_archivectl_run_draws_a_progress_bar_on_a_terminal(bed: Bed, tmp_path: Path) -> None:
    uri = f"json://{tmp_path}/conf.json"
    configure(bed, uri)
    bed.store_study(instances=2, series=2)
    controller, terminal = pty.openpty()
    proc = archivectl_run(bed, uri, "filecopy", terminal)
    os.close(terminal)
    drawn = bytearray()

    def read() -> None:  # drain the terminal while it runs, so its writes never block
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the process closed its end
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=60)
    os.close(controller)
    assert proc.returncode == 0, drawn.decode(errors="replace")
    text = drawn.decode(errors="replace")
    assert "\x1b[" in text and "━" in text and "filecopy (series)" in text and "2/2" in text
    assert "filecopy: 1/2 series" not in text  # a bar, not plain lines
    assert out.decode().startswith("filecopy: 4 instances, 2 series")

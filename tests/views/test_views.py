"""archivectl status and study list|show for a person, on a running archived fed by DCMTK's
storescu: they fit the terminal, abbreviate UIDs so that they stay apart, and --wide and
--json give everything. archived and archivectl find the store and the index with no flag:
the store through $ARCHIVED_CONFIG, the index through the IndexPath `config init` records."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from rich.cells import cell_len

from tests.dicom.data import ct_study
from tests.dicom.peers import dcmtk, free_port, wait_listening
from tests.mounts import wait_for

pytestmark = pytest.mark.dicom

PORT = "/dicomConfigurationRoot/dicomDevicesRoot/archived/dicomNetworkConnection/0/dicomPort"
LONG_NAME = "WOLFESCHLEGELSTEINHAUSEN^HUBERT^BLAINE"
LONG_DESCRIPTION = "CT THORAX ABDOMEN PELVIS WITH CONTRAST, FOLLOW-UP, LEFT KIDNEY"
# Two study UIDs whose last 19 characters are the same: their short forms must differ.
TWIN_ENDING = ".998877665544332211"
TWINS = ("1.2.826.0.1.3680043.10.999.1" + TWIN_ENDING, "1.2.826.0.1.3680043.10.999.2" + TWIN_ENDING)
EPOCH_FLOAT = re.compile(r"\b1\d{9}\.\d")


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    long_study: str

    def ctl(
        self, *args: str, columns: int = 80, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "archived.ctl", *args],
            env={**self.env, "COLUMNS": str(columns)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, result.stderr
        # Rich pads table cells with blanks up to the column's width: not part of the view.
        result.stdout = "\n".join(line.rstrip() for line in result.stdout.splitlines())
        return result


def widest(text: str) -> int:
    return max(cell_len(line) for line in text.splitlines())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("views")
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVED_INDEX"}
    env["ARCHIVED_CONFIG"] = f"lmdb://{root}/conf"
    site = Site(root, env, generate_uid())
    port = free_port()
    site.ctl("config", "init", "--index", str(root / "state" / "index.sqlite"))
    site.ctl("fs", "add", "--create", "--group", "ONLINE_STORAGE", str(root / "online"))
    site.ctl("config", "set", PORT, str(port))
    site.ctl("ae", "add", "STORESCU", "127.0.0.1", "104")  # storescu's own AE title
    long_study = ct_study(root / "in" / "long", 3, patient_id="VIEWS1", patient_name=LONG_NAME,
                          study_uid=site.long_study)  # fmt: skip
    for path in long_study:
        ds = pydicom.dcmread(path)
        ds.StudyDescription = LONG_DESCRIPTION
        ds.save_as(path, enforce_file_format=True)
    for n, uid in enumerate(TWINS):
        ct_study(root / "in" / f"twin{n}", 1, patient_id=f"TWIN{n}", study_uid=uid, seed=n + 2)
    log = open(root / "archived.log", "wb")
    # No --config, no --index: archived finds both as archivectl does.
    proc = subprocess.Popen([sys.executable, "-m", "archived.cli", "serve"], env=env,
                            stdout=log, stderr=log)  # fmt: skip
    try:
        wait_listening(port, proc)
        dcmtk("storescu", "-aec", "ARCHIVED", "+sd", "+r", "localhost", str(port), root / "in")
        wait_for(
            lambda: (
                json.loads(site.ctl("status", "--json").stdout)["daemon"]
                .get("counters", {})
                .get("stored")
                == 5
            ),
            what="archived's status to count 5 stored instances",
        )
        yield site
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (root / "archived.log").read_text()
        log.close()


def test_status_reads_at_a_glance(site: Site) -> None:
    assert widest(site.ctl("status").stdout) <= 80  # long values wrap, nothing is cut
    out = site.ctl("status", columns=200).stdout  # one line per fact, to check each
    assert "{" not in out and not EPOCH_FLOAT.search(out), out  # no raw JSON, no epoch floats
    assert re.search(r"^archived +running: pid \d+, up \d+ s, AE ARCHIVED on port \d+", out, re.M)
    assert re.search(r"^since start +5 stored", out, re.M)
    assert f"{site.root}/state/index.sqlite, " in out and "KiB (from IndexPath" in out
    assert "3 patients, 3 studies, 3 series, 5 instances, 5 files" in out
    assert re.search(r"^failures +none$", out, re.M)
    for service in ("filecopy", "sync", "deleter"):  # none configured: said so, not hidden
        assert re.search(rf"^{service} +disabled", out, re.M), out
    assert re.search(r"^ONLINE_STORAGE +" + re.escape(str(site.root / "online")), out, re.M)
    assert re.search(r"RW; [\d.]+ [KMGT]iB free of [\d.]+ [KMGT]iB \(\d+%\); files: 5 DEFAULT", out)


def test_status_json_keeps_the_machine_form(site: Site) -> None:
    status = json.loads(site.ctl("status", "--json").stdout)
    assert isinstance(status["daemon"]["pid"], int) and status["daemon"]["counters"]["stored"] == 5
    assert set(status["services"]) == {"filecopy", "sync", "deleter"}
    assert status["schedule"] == {"filecopy": "disabled", "sync": "disabled",
                                  "deleter": "disabled"}  # fmt: skip
    assert status["index"]["study"] == 3 and status["index"]["instance"] == 5
    assert status["files"] == {"ONLINE_STORAGE/DEFAULT": 5}
    (online,) = status["file_systems"]
    assert online["group"] == "ONLINE_STORAGE" and online["files"] == {"DEFAULT": 5}
    assert 0 < online["free"] <= online["total"]
    assert status["index_file"]["bytes"] > 0
    assert status["index_file"]["source"].startswith("IndexPath of device 'archived'")
    assert status["backlog"] == {"files_to_archive": 0, "online_studies": 3}
    assert status["failures"] == []


def test_study_list_fits_the_terminal_and_keeps_uids_apart(site: Site) -> None:
    out = site.ctl("study", "list").stdout
    assert widest(out) <= 80
    rows = out.splitlines()[1:]
    assert len(rows) == 3 and all(row.startswith("…") for row in rows)
    assert site.long_study not in out and f"…{site.long_study[-10:]} " in out
    for uid in TWINS:  # 19 shared characters: each shows one more, enough to tell them apart
        assert f"…{uid[-20:]} " in out
    assert "WOLFESCHLE" in out and LONG_NAME not in out  # cut with an ellipsis
    assert "description" not in rows[0] + out.splitlines()[0]  # left out: it does not fit
    wide_terminal = site.ctl("study", "list", columns=200).stdout
    assert LONG_DESCRIPTION in wide_terminal and LONG_NAME in wide_terminal


def test_study_list_wide_and_json_give_everything(site: Site) -> None:
    wide = site.ctl("study", "list", "--wide").stdout
    for uid in (site.long_study, *TWINS):
        assert uid in wide
    assert LONG_NAME in wide and LONG_DESCRIPTION in wide
    listed = json.loads(site.ctl("study", "list", "--json").stdout)
    by_uid = {row["study_iuid"]: row for row in listed}
    assert set(by_uid) == {site.long_study, *TWINS}
    assert by_uid[site.long_study]["patient_name"] == LONG_NAME
    assert by_uid[site.long_study]["copies"] == {"ONLINE_STORAGE/DEFAULT": 3}
    assert by_uid[site.long_study]["instances"] == 3


def test_study_show_takes_the_end_of_a_uid_as_the_list_shows_it(site: Site) -> None:
    assert widest(site.ctl("study", "show", f"…{site.long_study[-10:]}").stdout) <= 80
    shown = site.ctl("study", "show", f"…{site.long_study[-10:]}", columns=200).stdout
    assert re.search(r"^study +" + re.escape(site.long_study), shown, re.M)  # whole
    assert re.search(r"^patient +VIEWS1 +" + re.escape(LONG_NAME), shown, re.M)
    assert re.search(r"^size +1 series, 3 instances", shown, re.M)
    assert re.search(r"^copies +ONLINE$", shown, re.M)
    assert re.search(r"^last access +\d\d:\d\d:\d\d \(\d+ (s|min \d+ s) ago\) on ONLINE", shown,
                     re.M)  # fmt: skip
    detail = json.loads(site.ctl("study", "show", site.long_study[-12:], "--json").stdout)
    assert detail["study_iuid"] == site.long_study and detail["instances"] == 3
    assert [s["instances"] for s in detail["series_list"]] == [3]


def test_study_show_says_what_to_do_with_an_unknown_or_ambiguous_uid(site: Site) -> None:
    ambiguous = site.ctl("study", "show", TWIN_ENDING, check=False)
    assert ambiguous.returncode == 65 and ambiguous.stderr.count("\n") == 1
    assert "ambiguous" in ambiguous.stderr and "give more of it" in ambiguous.stderr
    unknown = site.ctl("study", "show", "1.2.3.4.5", check=False)
    assert unknown.returncode == 65
    assert "study 1.2.3.4.5 is not in the index" in unknown.stderr
    assert "archivectl study list" in unknown.stderr
